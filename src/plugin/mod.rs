//! Plugins extend the language with blocks of their own, one-line keywords
//! and keywords inside core blocks, and hook into two stages: *expand* (before resolution: add hosts, like MLN's `postParse`)
//! and *configure* (after resolution: files and startup commands per host).
//! They run in the order their blocks first appear, never in hash order.

mod external;

use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::{Plan, PluginOutput};
use crate::resolve::{RItem, RSection};
use crate::schema::{CoreSchemas, Keyword, Kind, Schema};
use crate::source::Span;
use crate::syntax::{Entry, Loaded};
use std::sync::Arc;
use crate::definitions::{Def, DefId, Definitions};
use indexmap::IndexMap;
use std::path::PathBuf;

pub use external::{External, PROTOCOL_VERSION};

/// Checks the values in a plugin's settings against the types declared
/// for them, pointing at each that does not fit; false if one did not.
pub fn check_values(plugin: &str, settings: &RSection, schema: &Schema, diags: &mut Diagnostics) -> bool {
    external::check_section(plugin, settings, schema, diags)
}

/// The core block a plugin's keyword stands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Context {
    Global,
    /// Hosts and superclasses: they share one set of keywords.
    #[serde(alias = "superclass")]
    Host,
    /// `network IFACE { }` in hosts and superclasses.
    Network,
    Switch,
}

impl Context {
    pub fn word(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Host => "host",
            Context::Network => "network",
            Context::Switch => "switch",
        }
    }
}

/// What a plugin adds to the language, and where each keyword stands: its
/// own blocks (`openstack { }`), one-line keywords (`iscsi sanserver`), and
/// keywords inside core blocks (`net netsys_net` in `network eth0 { }`). A
/// block's `Schema::nest` names the core blocks that may stand inside it.
#[derive(Clone, Debug, Default)]
pub struct Declaration {
    pub blocks: Vec<(Context, Keyword)>,
}

/// One block of a plugin, resolved (variables expanded, spans kept).
#[derive(Clone, Debug)]
pub struct PluginBlock {
    /// The block's keyword (`autoenum`).
    pub key: String,
    /// `autoenum web { }` has label `web`; an unnamed block has "".
    pub label: String,
    pub span: Span,
    pub section: RSection,
}

impl PluginBlock {
    /// The span of `key`'s statement in this block, or the block header.
    pub fn span_of(&self, key: &str) -> Span {
        self.section.value(key).map(|v| v.origin.span).unwrap_or(self.span)
    }
}

pub struct ExpandCtx<'a> {
    pub tree: &'a mut Definitions,
    pub blocks: Vec<PluginBlock>,
    pub diags: &'a mut Diagnostics,
}

impl ExpandCtx<'_> {
    /// Adds a host made by the plugin, placed where the plugins' blocks
    /// stand among the hosts.
    pub fn add_host(&mut self, def: Def) -> DefId {
        self.tree.add_generated_host(def)
    }
}

pub struct ConfigureCtx<'a> {
    pub plan: &'a Plan,
    /// The plugin's blocks in `global`.
    pub blocks: Vec<PluginBlock>,
    /// What the plugin's keywords say in `global`: its blocks and one-line
    /// keywords ([`settings`]).
    pub global: RSection,
    /// The same for each host that writes or inherits one, by host name;
    /// its keywords in the host's interfaces under `network` → IFACE.
    pub hosts: IndexMap<String, RSection>,
    /// The same for each switch that has one.
    pub switches: IndexMap<String, RSection>,
    pub diags: &'a mut Diagnostics,
}

impl ConfigureCtx<'_> {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.global.entries.is_empty() && self.hosts.is_empty() && self.switches.is_empty()
    }
}

/// What `plugin`'s keywords say in a resolved section of `schema`: its own
/// blocks and one-line keywords, and inside `network` blocks its keywords
/// there (other keys left out). Empty when the plugin is not used there.
pub fn settings(section: &RSection, schema: &Schema, core: &CoreSchemas, plugin: &str) -> RSection {
    let mut out = RSection { span: section.span, entries: Default::default() };
    for (key, item) in &section.entries {
        let Some(kw) = schema.get(key) else { continue };
        if kw.plugin.as_deref() == Some(plugin) {
            out.entries.insert(key.clone(), item.clone());
        } else if key == "network" && kw.plugin.is_none() {
            let RItem::Named(ifaces) = item else { continue };
            let mut mine = crate::definitions::KeyMap::default();
            for (iface, sec) in ifaces.iter() {
                let one = settings(sec, core.network(), core, plugin);
                if !one.entries.is_empty() {
                    mine.insert(iface.clone(), one);
                }
            }
            if !mine.is_empty() {
                out.entries.insert(key.clone(), RItem::Named(Box::new(mine)));
            }
        }
    }
    out
}

pub trait Plugin {
    fn name(&self) -> &str;
    fn declaration(&self) -> Declaration;
    /// Whether mln checks the values of the plugin's keywords against the
    /// types it declared (an external plugin cannot report with spans as
    /// well as mln can); built-in plugins check their own.
    fn wants_type_checks(&self) -> bool {
        false
    }
    fn expand(&self, _ctx: &mut ExpandCtx) {}
    /// Files and startup commands per host name.
    fn configure(&self, _ctx: &mut ConfigureCtx) -> IndexMap<String, PluginOutput> {
        IndexMap::new()
    }
}

/// The plugins a compilation can use: built-in ones, and external ones
/// found on the plugin path, by the name of a keyword the core does not
/// know, before the project is read ([`Registry::discover`]).
pub struct Registry {
    plugins: Vec<Box<dyn Plugin>>,
    plugin_path: Vec<PathBuf>,
    /// Plugins whose keywords appeared, in order of first appearance.
    used: Vec<usize>,
    /// Names already looked for on the plugin path.
    tried: std::collections::HashSet<String>,
}

impl Registry {
    pub fn new(plugin_path: Vec<PathBuf>) -> Registry {
        Registry { plugins: crate::builtin_plugins(), plugin_path, used: vec![], tried: Default::default() }
    }

    /// A registry with only the given plugins and no plugin path.
    pub fn with_plugins(plugins: Vec<Box<dyn Plugin>>) -> Registry {
        Registry { plugins, plugin_path: vec![], used: vec![], tried: Default::default() }
    }

    /// Loads the external plugins a project names. A keyword the core does
    /// not know where it stands (in `global`, a host, a superclass, a switch
    /// or an interface) may be a plugin's: it is looked for once as
    /// `mln-plugin-KEYWORD`. A plugin found so declares all its keywords,
    /// wherever they stand (`openstack` also brings `net` in `network`).
    pub fn discover(&mut self, loaded: &Loaded, core: &CoreSchemas, diags: &mut Diagnostics) {
        let Some(root) = loaded.root else { return };
        let mut names = Vec::new();
        candidates(loaded, &loaded.trees[&root], None, core, &mut names);
        for (name, span) in names {
            if self.declares(&name) || !self.tried.insert(name.clone()) {
                continue;
            }
            // The keyword becomes a file name on the plugin path: only a
            // valid plugin name may (no `/`, no `..`).
            if crate::name::check(crate::name::NameKind::Plugin, &name).is_err() {
                continue;
            }
            let exe = format!("mln-plugin-{name}");
            let Some(path) = self.plugin_path.iter().map(|d| d.join(&exe)).find(|p| is_executable(p)) else { continue };
            match External::load(path) {
                Ok(p) => self.plugins.push(Box::new(p)),
                Err(e) => diags.push(
                    Diagnostic::error("mln::plugin::load", format!("plugin `{exe}` failed to declare itself: {e}"))
                        .label(span, "this keyword names the plugin"),
                ),
            }
        }
    }

    fn declares(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p.declaration().blocks.iter().any(|(_, k)| k.name == name))
    }

    /// Merges every plugin's keywords into the core schemas, then fills in
    /// the core blocks that may nest in plugin blocks (so a nested
    /// `network` knows every plugin's interface keywords). A keyword that
    /// is already there (the core's, or an earlier plugin's) stays as it
    /// was, and the plugin is told.
    pub fn extend(&self, core: &mut CoreSchemas, diags: &mut Diagnostics) {
        for p in &self.plugins {
            for (ctx, kw) in p.declaration().blocks {
                let schema = match ctx {
                    Context::Global => &mut core.global,
                    Context::Host => &mut core.host,
                    Context::Switch => &mut core.switch,
                    Context::Network => core.network_mut(),
                };
                if let Some(had) = schema.get(kw.name) {
                    let whose = match &had.plugin {
                        Some(q) => format!("plugin `{q}`"),
                        None => "mln".to_string(),
                    };
                    diags.push(
                        Diagnostic::error("mln::plugin::conflict", format!("plugin `{}` declares `{}` in {}, which {whose} already has there", p.name(), kw.name, ctx.word()))
                            .help(format!("the plugin's `{}` is ignored; rename it in the plugin", kw.name)),
                    );
                    continue;
                }
                let mut kw = kw;
                kw.plugin = Some(p.name().to_string());
                schema.keywords.insert(kw.name.to_string(), kw);
            }
        }
        // Interfaces first: the blocks that nest `network` elsewhere then
        // get it complete.
        let net = core.network().clone();
        for kw in core.network_mut().keywords.values_mut() {
            if let Some(p) = kw.plugin.clone() {
                nest(&mut kw.kind, &net, Context::Network, &p, diags);
            }
        }
        let snapshot = core.clone();
        for (ctx, schema) in [(Context::Global, &mut core.global), (Context::Host, &mut core.host), (Context::Switch, &mut core.switch)] {
            let base = match ctx {
                Context::Global => &snapshot.global,
                Context::Switch => &snapshot.switch,
                _ => &snapshot.host,
            };
            for kw in schema.keywords.values_mut() {
                if let Some(p) = kw.plugin.clone() {
                    nest(&mut kw.kind, base, ctx, &p, diags);
                }
            }
        }
    }

    /// Records that a keyword of `plugin` appeared: plugins run in the
    /// order their keywords first appear.
    pub fn mark_used(&mut self, plugin: &str) {
        if let Some(i) = self.plugins.iter().position(|p| p.name() == plugin) {
            if !self.used.contains(&i) {
                self.used.push(i);
            }
        }
    }

    /// Every loaded plugin's keywords and where each belongs, the first
    /// plugin's where two declare one ([`Registry::declared_context`] of
    /// each, for work done away from the registry).
    pub fn declared_contexts(&self) -> std::collections::HashMap<String, Context> {
        let mut out = std::collections::HashMap::new();
        for p in &self.plugins {
            for (c, k) in p.declaration().blocks {
                out.entry(k.name.to_string()).or_insert(c);
            }
        }
        out
    }

    /// Where a loaded plugin's keyword `name` belongs, if some plugin has one.
    pub fn declared_context(&self, name: &str) -> Option<Context> {
        self.plugins.iter().find_map(|p| p.declaration().blocks.into_iter().find(|(_, k)| k.name == name).map(|(c, _)| c))
    }

    /// The plugins in use, in hook order.
    pub fn used(&self) -> impl Iterator<Item = &dyn Plugin> {
        self.used.iter().map(|i| self.plugins[*i].as_ref())
    }
}

/// Puts the core blocks a plugin block lets in (its schema's `nest`) into
/// it, as the core (with every plugin's keywords) reads them; and so on in
/// the plugin's blocks inside it.
fn nest(kind: &mut Kind, core: &Schema, ctx: Context, plugin: &str, diags: &mut Diagnostics) {
    let (Kind::Block(schema) | Kind::Named { schema, .. }) = kind else { return };
    let schema = Arc::make_mut(schema);
    for name in schema.nest.clone() {
        match core.get(&name) {
            Some(k) if k.plugin.is_none() && matches!(k.kind, Kind::Lines(_) | Kind::Block(_) | Kind::Named { .. }) => {
                schema.keywords.insert(name.clone(), k.clone());
            }
            _ => diags.push(
                Diagnostic::error("mln::plugin::nest", format!("plugin `{plugin}` lets `{name}` stand in its block `{}`, but {} has no core block `{name}`", schema.name, ctx.word()))
                    .help("a plugin block may hold the core blocks of the block it stands in (`network`, `startup`, ... in a host)"),
            ),
        }
    }
    for kw in schema.keywords.values_mut() {
        if kw.plugin.is_some() {
            nest(&mut kw.kind, core, ctx, plugin, diags);
        }
    }
}

/// Keywords the core does not know where they stand, in file order, with
/// where each is first written: the names plugins may be found by.
fn candidates(loaded: &Loaded, entries: &[Entry], ctx: Option<Context>, core: &CoreSchemas, out: &mut Vec<(String, Span)>) {
    for e in entries {
        match e {
            Entry::Include(i) => {
                if let Some(f) = i.file.and_then(|f| loaded.trees.get(&f)) {
                    candidates(loaded, f, ctx, core, out);
                }
            }
            Entry::Statement(s) => {
                let Some(key) = s.key() else { continue };
                let k = key.unquoted();
                let (inner, schema) = match ctx {
                    None => {
                        let inner = match k.as_str() {
                            "global" => Context::Global,
                            "host" | "superclass" => Context::Host,
                            "switch" => Context::Switch,
                            _ => continue,
                        };
                        if let Some(b) = &s.block {
                            candidates(loaded, &b.entries, Some(inner), core, out);
                        }
                        continue;
                    }
                    Some(Context::Global) => (None, &core.global),
                    Some(Context::Host) => (Some(Context::Network), &core.host),
                    Some(Context::Switch) => (None, &core.switch),
                    Some(Context::Network) => (None, core.network()),
                };
                match schema.get(&k) {
                    Some(_) if k == "network" && inner.is_some() => {
                        if let Some(b) = &s.block {
                            candidates(loaded, &b.entries, inner, core, out);
                        }
                    }
                    Some(_) => {}
                    None if !out.iter().any(|(n, _)| *n == k) => out.push((k, key.span)),
                    None => {}
                }
            }
            _ => {}
        }
    }
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}
