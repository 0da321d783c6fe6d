//! Plugins extend the language with blocks of their own and hook into two
//! stages: *expand* (before resolution: add hosts, like MLN's `postParse`)
//! and *configure* (after resolution: files and startup commands per host).
//! They run in the order their blocks first appear, never in hash order.

mod external;

use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::{Plan, PluginOutput};
use crate::resolve::RSection;
use crate::schema::Keyword;
use crate::source::Span;
use crate::definitions::{Def, DefId, Definitions};
use indexmap::IndexMap;
use std::path::PathBuf;

pub use external::{External, PROTOCOL_VERSION};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Context {
    Global,
    Host,
    Switch,
}

/// What a plugin adds to the language: block keywords and where they stand.
#[derive(Clone, Debug)]
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
    /// The plugin's block in each host that has one, by host name.
    pub host_blocks: IndexMap<String, RSection>,
    pub diags: &'a mut Diagnostics,
}

pub trait Plugin {
    fn name(&self) -> &str;
    fn declaration(&self) -> Declaration;
    fn expand(&self, _ctx: &mut ExpandCtx) {}
    /// Files and startup commands per host name.
    fn configure(&self, _ctx: &mut ConfigureCtx) -> IndexMap<String, PluginOutput> {
        IndexMap::new()
    }
}

/// The plugins a compilation can use: built-in ones, and external ones
/// found on the plugin path the first time their block is met.
pub struct Registry {
    plugins: Vec<Box<dyn Plugin>>,
    plugin_path: Vec<PathBuf>,
    /// Plugins whose blocks appeared, in order of first appearance.
    used: Vec<usize>,
}

impl Registry {
    pub fn new(plugin_path: Vec<PathBuf>) -> Registry {
        Registry { plugins: crate::builtin_plugins(), plugin_path, used: vec![] }
    }

    /// A registry with only the given plugins and no plugin path.
    pub fn with_plugins(plugins: Vec<Box<dyn Plugin>>) -> Registry {
        Registry { plugins, plugin_path: vec![], used: vec![] }
    }

    /// The keyword `name` in `ctx`, if some plugin declares it.
    pub fn keyword(&mut self, ctx: Context, name: &str, diags: &mut Diagnostics) -> Option<Keyword> {
        let find = |plugins: &[Box<dyn Plugin>]| {
            plugins.iter().enumerate().find_map(|(i, p)| {
                p.declaration().blocks.into_iter().find(|(c, k)| *c == ctx && k.name == name).map(|(_, k)| (i, k))
            })
        };
        let found = find(&self.plugins).or_else(|| {
            // The keyword becomes a file name on the plugin path: only a
            // valid plugin name may (no `/`, no `..`).
            if ctx == Context::Switch || crate::name::check(crate::name::NameKind::Plugin, name).is_err() {
                return None;
            }
            let exe = format!("mln-plugin-{name}");
            let path = self.plugin_path.iter().map(|d| d.join(&exe)).find(|p| is_executable(p))?;
            match External::load(path) {
                Ok(p) => {
                    self.plugins.push(Box::new(p));
                    find(&self.plugins)
                }
                Err(e) => {
                    diags.push(Diagnostic::error("mln::plugin::load", format!("plugin `{exe}` failed to declare itself: {e}")));
                    None
                }
            }
        });
        let (i, mut k) = found?;
        if !self.used.contains(&i) {
            self.used.push(i);
        }
        k.plugin = Some(self.plugins[i].name().to_string());
        Some(k)
    }

    /// Where a loaded plugin's block `name` belongs, if some plugin has one.
    pub fn declared_context(&self, name: &str) -> Option<Context> {
        self.plugins.iter().find_map(|p| p.declaration().blocks.into_iter().find(|(_, k)| k.name == name).map(|(c, _)| c))
    }

    /// The plugins in use, in hook order.
    pub fn used(&self) -> impl Iterator<Item = &dyn Plugin> {
        self.used.iter().map(|i| self.plugins[*i].as_ref())
    }
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}
