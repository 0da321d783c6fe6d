//! The project as written, checked against the schema: definitions
//! (`global`, hosts, superclasses, switches), their variables, and for each
//! keyword every place it was set. Nothing is inherited or expanded yet.

use crate::diag::{Diagnostic, Diagnostics};
use crate::plugin::{Context, Registry};
use crate::schema::{suggest, CoreSchemas, Kind, Schema};
use crate::source::{FileId, Span};
use crate::syntax::{Entry, Loaded as FileIdTrees, Statement, Word};
use indexmap::IndexMap;
use std::collections::HashMap;

/// The maps of a section's keys and labels, looked up for every key of
/// every host. Keys come from project files, which are untrusted, so the
/// hasher is randomly seeded (foldhash), not a fixed one; SipHash was
/// ~15% of planning 100,000 hosts.
pub type KeyMap<K, V> = IndexMap<K, V, foldhash::fast::RandomState>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefKind {
    Global,
    Host,
    Superclass,
    Switch,
}

impl DefKind {
    pub fn word(self) -> &'static str {
        match self {
            DefKind::Global => "global",
            DefKind::Host => "host",
            DefKind::Superclass => "superclass",
            DefKind::Switch => "switch",
        }
    }
}

/// A value as written: source words, or text made by a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    Words(Vec<Word>),
    Literal(String),
}

#[derive(Clone, Debug)]
pub struct ValueDef {
    pub text: Text,
    /// The whole statement.
    pub span: Span,
    /// The definition whose variables the value sees.
    pub scope: DefId,
}

#[derive(Clone, Debug)]
pub struct VarDef {
    pub name: String,
    pub text: Text,
    pub span: Span,
    pub scope: DefId,
}

#[derive(Clone, Debug)]
pub enum Item {
    /// Every time the keyword was set, in order; the last one wins.
    Value(Vec<ValueDef>),
    Lines(Vec<ValueDef>),
    // Boxed: every entry of every section is as large as the largest
    // variant, and a generated project has a section per host.
    Block(Box<Section>),
    Named(Box<KeyMap<String, Section>>),
}

#[derive(Clone, Debug, Default)]
pub struct Section {
    /// The block's header (`network eth0`), for messages.
    pub span: Span,
    pub entries: KeyMap<String, Item>,
}

impl Section {
    /// Gives back the room maps and lists were given to grow: a generated
    /// project makes a section per host, most maps holding one entry in
    /// room for three.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        for item in self.entries.values_mut() {
            match item {
                Item::Value(v) | Item::Lines(v) => v.shrink_to_fit(),
                Item::Block(b) => b.shrink_to_fit(),
                Item::Named(m) => {
                    m.shrink_to_fit();
                    m.values_mut().for_each(Section::shrink_to_fit);
                }
            }
        }
    }

    pub fn value(&self, key: &str) -> Option<&ValueDef> {
        match self.entries.get(key) {
            Some(Item::Value(v)) => v.last(),
            _ => None,
        }
    }
    pub fn set_value(&mut self, key: &str, v: ValueDef) {
        match self.entries.entry(key.to_string()).or_insert_with(|| Item::Value(vec![])) {
            Item::Value(list) => list.push(v),
            other => *other = Item::Value(vec![v]),
        }
    }
    pub fn push_line(&mut self, key: &str, v: ValueDef) {
        match self.entries.entry(key.to_string()).or_insert_with(|| Item::Lines(vec![])) {
            Item::Lines(list) => list.push(v),
            other => *other = Item::Lines(vec![v]),
        }
    }
    pub fn named_mut(&mut self, key: &str, label: &str, span: Span) -> &mut Section {
        let item = self.entries.entry(key.to_string()).or_insert_with(|| Item::Named(Box::default()));
        if !matches!(item, Item::Named(_)) {
            *item = Item::Named(Box::default());
        }
        let Item::Named(map) = item else { unreachable!() };
        map.entry(label.to_string()).or_insert_with(|| Section { span, ..Section::default() })
    }
}

/// Statements made on demand. A plugin that stamps out many hosts gives
/// one recipe for all of them instead of a section per host: the sections
/// of 100,000 generated hosts were half of what planning held in memory,
/// and each is read only while its host is resolved.
pub trait Recipe: Send + Sync + std::fmt::Debug {
    /// The statements of the `index`th host the recipe makes. Its values
    /// are `Text::Literal`: they refer to no variable.
    fn section(&self, index: u32) -> Section;
    /// Its `superclass` statement, the same for every host of the recipe:
    /// read for every definition when inheritance is linked, so without
    /// making the whole section.
    fn superclass(&self) -> Option<&ValueDef>;
    /// The `superclass` statement of the `index`th host, for recipes whose
    /// hosts differ in it.
    fn superclass_of(&self, _index: u32) -> Option<&ValueDef> {
        self.superclass()
    }
}

/// A definition whose statements a [`Recipe`] makes.
#[derive(Clone, Debug)]
pub struct Made {
    pub recipe: std::sync::Arc<dyn Recipe>,
    pub index: u32,
}

#[derive(Clone, Debug)]
pub struct Def {
    pub kind: DefKind,
    pub name: String,
    pub name_span: Span,
    /// The statements as written; empty when [`Def::made`] makes them
    /// (read them through [`Def::statements`]).
    pub section: Section,
    pub made: Option<Made>,
    pub vars: IndexMap<String, VarDef>,
    /// The plugin that made this definition, if one did.
    pub plugin: Option<String>,
}

impl Def {
    /// The definition's statements, written or made.
    pub fn statements(&self) -> std::borrow::Cow<'_, Section> {
        match &self.made {
            Some(m) => std::borrow::Cow::Owned(m.recipe.section(m.index)),
            None => std::borrow::Cow::Borrowed(&self.section),
        }
    }

    /// Its `superclass` statement, without making the whole section.
    pub fn superclass(&self) -> Option<&ValueDef> {
        match &self.made {
            Some(m) => m.recipe.superclass_of(m.index),
            None => self.section.value("superclass"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Definitions {
    pub defs: Vec<Def>,
    /// Shared with the recipe that reads written hosts again ([`Reread`]).
    pub core: std::sync::Arc<CoreSchemas>,
    /// Hosts in plan order: as defined, with plugin-made hosts where the
    /// `global` block (holding the plugin blocks) stands.
    pub hosts: Vec<DefId>,
    /// Where in `hosts` the next plugin-made host goes.
    anchor: usize,
    /// Definitions by kind and name: projects have tens of thousands.
    by_name: std::collections::HashMap<(DefKind, String), DefId, foldhash::fast::RandomState>,
}

pub const GLOBAL: DefId = DefId(0);

impl Definitions {
    pub fn def(&self, id: DefId) -> &Def {
        &self.defs[id.0]
    }
    pub fn global(&self) -> &Def {
        &self.defs[0]
    }
    pub fn ids(&self, kind: DefKind) -> impl Iterator<Item = DefId> + '_ {
        self.defs.iter().enumerate().filter(move |(_, d)| d.kind == kind).map(|(i, _)| DefId(i))
    }
    pub fn find(&self, kind: DefKind, name: &str) -> Option<DefId> {
        self.by_name.get(&(kind, name.to_string())).copied()
    }
    /// Adds a definition; the first of a kind and name is the one `find`
    /// returns (callers report duplicates before adding).
    pub fn add(&mut self, def: Def) -> DefId {
        let id = DefId(self.defs.len());
        self.by_name.entry((def.kind, def.name.clone())).or_insert(id);
        self.defs.push(def);
        id
    }
    pub fn add_generated_host(&mut self, def: Def) -> DefId {
        let id = self.add(def);
        self.hosts.insert(self.anchor, id);
        self.anchor += 1;
        id
    }
    pub fn project_name(&self) -> Option<String> {
        match &self.global().section.value("project")?.text {
            Text::Words(w) => Some(w.iter().map(|w| w.unquoted()).collect::<Vec<_>>().join(" ")),
            Text::Literal(s) => Some(s.clone()),
        }
    }
}

/// Lowers the syntax tree of a loaded project into definitions.
pub fn build(trees: &FileIdTrees, registry: &mut Registry, diags: &mut Diagnostics) -> Definitions {
    let mut core = crate::schema::core();
    // Every plugin's keywords are known before the first statement is
    // read: `net` in a `network` block may come before the `openstack`
    // block that names the plugin declaring it.
    registry.discover(trees, &core, diags);
    registry.extend(&mut core, diags);
    let global = Def {
        kind: DefKind::Global,
        name: "global".into(),
        name_span: Span::default(),
        section: Section::default(),
        made: None,
        vars: IndexMap::new(),
        plugin: None,
    };
    let core = std::sync::Arc::new(core);
    let mut tree = Definitions { defs: vec![], core: core.clone(), hosts: vec![], anchor: 0, by_name: Default::default() };
    tree.add(global);
    let reread = Reread { core: core.clone(), texts: vec![], hosts: vec![] };
    // Lowering a plain host block reads only the schemas and where the
    // plugins' keywords belong, so the project file's are lowered on
    // every core first (the plugins they use are marked in order after).
    let ahead = match trees.root {
        Some(root) => lower_ahead(&core, &registry.declared_contexts(), &trees.trees[&root]),
        None => Vec::new(),
    };
    let mut b = Builder { tree, trees, registry: Some(registry), declared: None, marked: vec![], diags, global_seen: false, reread };
    if let Some(root) = trees.root {
        b.top_ahead(&trees.trees[&root], ahead);
    }
    let Builder { mut tree, reread, .. } = b;
    if !reread.hosts.is_empty() {
        let ids: Vec<DefId> = reread.hosts.iter().map(|h| h.id).collect();
        let recipe: std::sync::Arc<dyn Recipe> = std::sync::Arc::new(reread);
        for (index, id) in ids.into_iter().enumerate() {
            let def = &mut tree.defs[id.0];
            def.section = Section::default();
            def.made = Some(Made { recipe: recipe.clone(), index: index as u32 });
        }
    }
    tree
}

/// Written hosts whose blocks are plain text ([`crate::syntax::is_plain`]:
/// no includes, variables, quotes or escapes), kept as where they are
/// written and read again each time they are resolved, as a plugin's made
/// hosts are: the sections of 100,000 written hosts were ~150 MB held
/// through planning, and each is read only while its host is resolved.
/// Reading one again gives the section it gave the first time (the same
/// bytes, the same schema); what it reported then was kept, and is not
/// reported again.
#[derive(Debug)]
struct Reread {
    core: std::sync::Arc<CoreSchemas>,
    /// The files the hosts are written in.
    texts: Vec<(FileId, std::sync::Arc<str>)>,
    hosts: Vec<Written>,
}

#[derive(Debug)]
struct Written {
    id: DefId,
    /// In `texts`.
    text: u32,
    /// The `host NAME { ... }` statement.
    start: u32,
    end: u32,
    /// Its `superclass` statement, read for every host when inheritance is
    /// linked, so kept rather than read again.
    superclass: Option<ValueDef>,
}

impl Recipe for Reread {
    fn section(&self, index: u32) -> Section {
        let w = &self.hosts[index as usize];
        let (file, text) = &self.texts[w.text as usize];
        let mut quiet = Diagnostics::default();
        let mut entries = Vec::new();
        crate::syntax::parse_plain(*file, text, w.start as usize, w.end as usize, &mut entries, &mut quiet);
        let Some(Entry::Statement(s)) = entries.first() else { return Section::default() };
        let Some(block) = &s.block else { return Section::default() };
        let no_files = FileIdTrees::default();
        let tree = Definitions { defs: vec![], core: self.core.clone(), hosts: vec![], anchor: 0, by_name: Default::default() };
        let mut b = Builder { tree, trees: &no_files, registry: None, declared: None, marked: vec![], diags: &mut quiet, global_seen: true, reread: Reread { core: self.core.clone(), texts: vec![], hosts: vec![] } };
        let mut section = Section { span: s.head_span(), ..Section::default() };
        b.section(w.id, Context::Host, None, &block.entries, &mut section);
        section
    }

    fn superclass(&self) -> Option<&ValueDef> {
        None
    }

    fn superclass_of(&self, index: u32) -> Option<&ValueDef> {
        self.hosts[index as usize].superclass.as_ref()
    }
}

/// A written host's block lowered ahead ([`lower_ahead`]): what lowering it
/// reported and its `superclass` statement (its scope the host's id once
/// known), all that is kept of a host read again when resolved.
struct Lowered {
    superclass: Option<ValueDef>,
    diags: Vec<Diagnostic>,
    /// The plugins whose keywords it used, in order.
    plugins: Vec<String>,
}

/// Lowers the plain `host NAME { }` blocks among `entries` (the project
/// file's top level) on every core: what the hosts written there will be
/// read as ([`Builder::top_statement`] lowers every other block, and
/// decides names and duplicates, in order). By index in `entries`, in order.
fn lower_ahead(core: &std::sync::Arc<CoreSchemas>, declared: &HashMap<String, Context>, entries: &[Entry]) -> Vec<(usize, Lowered)> {
    let hosts: Vec<(usize, &Statement)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Entry::Statement(s) if written_plain_host(s) => Some((i, s)),
            _ => None,
        })
        .collect();
    // A few thousand hosts a batch: enough to share out, few enough
    // batches that taking one costs nothing.
    let batches: Vec<&[(usize, &Statement)]> = hosts.chunks(2048).collect();
    let lowered = crate::parallel::map_each(&batches, |batch| {
        let no_files = FileIdTrees::default();
        let tree = Definitions { defs: vec![], core: core.clone(), hosts: vec![], anchor: 0, by_name: Default::default() };
        let mut diags = Diagnostics::default();
        let reread = Reread { core: core.clone(), texts: vec![], hosts: vec![] };
        let mut b = Builder { tree, trees: &no_files, registry: None, declared: Some(declared), marked: vec![], diags: &mut diags, global_seen: true, reread };
        let mut out = Vec::with_capacity(batch.len());
        for &(i, s) in batch.iter() {
            let Some(block) = &s.block else { continue };
            let mut section = Section { span: s.head_span(), ..Section::default() };
            b.section(GLOBAL, Context::Host, None, &block.entries, &mut section);
            let diags = std::mem::take(b.diags).into_vec();
            let plugins = std::mem::take(&mut b.marked);
            out.push((i, Lowered { superclass: section.value("superclass").cloned(), diags, plugins }));
        }
        out
    });
    lowered.into_iter().flatten().collect()
}

/// A `host NAME { ... }` statement whose text is plain
/// ([`crate::syntax::is_plain`]: no variables or includes), so whose
/// lowering reads only the schemas, and which is read again when resolved.
fn written_plain_host(s: &Statement) -> bool {
    let Some(key) = s.key() else { return false };
    &*key.raw == "host"
        && s.block.is_some()
        && !s.args().is_empty()
        && key.raw.source().get(s.span.range()).is_some_and(crate::syntax::is_plain)
}

struct Builder<'a> {
    tree: Definitions,
    trees: &'a FileIdTrees,
    /// None when a written host is read again ([`Reread`]): its plugins
    /// were marked used the first time.
    registry: Option<&'a mut Registry>,
    /// Without `registry` when lowering ahead ([`lower_ahead`]): where
    /// plugins' keywords belong, and the plugins whose keywords were read.
    declared: Option<&'a HashMap<String, Context>>,
    marked: Vec<String>,
    diags: &'a mut Diagnostics,
    global_seen: bool,
    reread: Reread,
}

const TOP: [&str; 4] = ["global", "host", "superclass", "switch"];

impl Builder<'_> {
    /// [`Builder::top`] with the host blocks among `entries` lowered ahead.
    fn top_ahead(&mut self, entries: &[Entry], ahead: Vec<(usize, Lowered)>) {
        let mut ahead = ahead.into_iter().peekable();
        for (i, e) in entries.iter().enumerate() {
            match (e, ahead.next_if(|(at, _)| *at == i)) {
                (Entry::Statement(s), Some((_, l))) => self.top_statement(s, Some(l)),
                _ => self.top(std::slice::from_ref(e)),
            }
        }
    }

    fn top(&mut self, entries: &[Entry]) {
        for e in entries {
            match e {
                Entry::Statement(s) => self.top_statement(s, None),
                Entry::Include(i) => {
                    if let Some(f) = i.file {
                        let trees = self.trees;
                        self.top(&trees.trees[&f])
                    }
                }
                Entry::Assignment(a) => self.diags.push(
                    Diagnostic::error("mln::misplaced_variable", format!("variable `${}` outside any block", a.name))
                        .label(a.span, "")
                        .help("define project-wide variables inside `global { }`"),
                ),
                Entry::Comment(_) | Entry::Error(_) => {}
            }
        }
    }

    fn top_statement(&mut self, s: &Statement, ahead: Option<Lowered>) {
        let Some(key) = s.key() else {
            self.diags.push(
                Diagnostic::error("mln::unnamed_block", "block without a keyword")
                    .label(s.head_span(), "")
                    .help("top-level blocks are `global`, `host NAME`, `superclass NAME` and `switch NAME`"),
            );
            return;
        };
        let k = key.unquoted();
        let kind = match k.as_str() {
            "global" => DefKind::Global,
            "host" => DefKind::Host,
            "superclass" => DefKind::Superclass,
            "switch" => DefKind::Switch,
            _ => {
                let mut d = if self.tree.core.host.get(&k).is_some() || self.tree.core.global.get(&k).is_some() {
                    Diagnostic::error("mln::misplaced_keyword", format!("`{k}` cannot stand outside a block"))
                        .label(key.span, "")
                        .help(if self.tree.core.global.get(&k).is_some() {
                            "put it inside `global { }`"
                        } else {
                            "put it inside a `host` or `superclass` block"
                        })
                } else {
                    Diagnostic::error("mln::unknown_keyword", format!("unknown block `{k}`")).label(key.span, "")
                };
                if let Some(m) = suggest(&k, TOP.into_iter()) {
                    d = d.help(format!("did you mean `{m}`?"));
                }
                self.diags.push(d);
                return;
            }
        };
        let Some(block) = &s.block else {
            let name = if kind == DefKind::Global { "" } else { " NAME" };
            self.diags.push(
                Diagnostic::error("mln::expected_block", format!("`{k}` needs a block: `{k}{name} {{ ... }}`"))
                    .label(s.head_span(), ""),
            );
            return;
        };
        let args = s.args();
        let id = if kind == DefKind::Global {
            if !args.is_empty() {
                self.diags.push(
                    Diagnostic::error("mln::unexpected_name", "`global` takes no name").label(args[0].span, ""),
                );
            }
            if !self.global_seen {
                self.tree.anchor = self.tree.hosts.len();
            }
            self.global_seen = true;
            crate::definitions::GLOBAL
        } else {
            let Some(name) = args.first() else {
                self.diags.push(
                    Diagnostic::error("mln::missing_name", format!("`{k}` needs a name: `{k} NAME {{ ... }}`"))
                        .label(key.span, ""),
                );
                return;
            };
            if args.len() > 1 {
                self.diags.push(
                    Diagnostic::error("mln::unexpected_name", format!("a {k} has one name"))
                        .label(args[1].span.to(args[args.len() - 1].span), "unexpected")
                        .help("names cannot contain spaces"),
                );
            }
            let n = name.unquoted();
            // A bad name is reported and the definition kept, so that what
            // refers to it does not fail as well.
            let (name_kind, noun) = match kind {
                DefKind::Switch => (crate::name::NameKind::Switch, None),
                DefKind::Superclass => (crate::name::NameKind::Host, Some("superclass name")),
                _ => (crate::name::NameKind::Host, None),
            };
            if let Some(d) = crate::name::diagnose(name_kind, noun, &n, name.span) {
                self.diags.push(d);
            }
            if let Some(prev) = self.tree.find(kind, &n) {
                self.diags.push(
                    Diagnostic::error("mln::duplicate_definition", format!("{k} `{n}` is defined twice"))
                        .label(name.span, "defined again here")
                        .label(self.tree.def(prev).name_span, "first defined here"),
                );
                return;
            }
            let id = self.tree.add(Def {
                kind,
                name: n,
                name_span: name.span,
                section: Section { span: s.head_span(), ..Section::default() },
                made: None,
                vars: IndexMap::new(),
                plugin: None,
            });
            if kind == DefKind::Host {
                self.tree.hosts.push(id);
            }
            id
        };
        let ctx = match kind {
            DefKind::Global => Context::Global,
            DefKind::Switch => Context::Switch,
            _ => Context::Host,
        };
        let mut section = std::mem::take(&mut self.tree.defs[id.0].section);
        if kind == DefKind::Global && section.span.is_empty() {
            section.span = s.head_span();
            self.tree.defs[id.0].name_span = key.span;
        }
        if let Some(l) = ahead {
            // Lowered ahead: a plain host block (see `lower_ahead`).
            if let Some(r) = self.registry.as_mut() {
                for p in &l.plugins {
                    r.mark_used(p);
                }
            }
            self.diags.extend(l.diags);
            let superclass = l.superclass.map(|v| ValueDef { scope: id, ..v });
            self.read_again(id, s, key.raw.source().clone(), superclass);
            return;
        }
        self.section(id, ctx, None, &block.entries, &mut section);
        // Lists and maps grow in steps of four: most hold one statement,
        // and a project may have 100,000 hosts.
        section.shrink_to_fit();
        if kind == DefKind::Host {
            if let Some(text) = key.raw.source().get(s.span.range()).filter(|t| crate::syntax::is_plain(t)).map(|_| key.raw.source().clone()) {
                let superclass = section.value("superclass").cloned();
                self.read_again(id, s, text, superclass);
                return;
            }
        }
        self.tree.defs[id.0].section = section;
    }

    /// Host `id`, written as `s` in `text`, is read again when resolved:
    /// its section is not held until every host is read (100,000 sections
    /// beside the syntax tree were the peak of a project of written hosts).
    fn read_again(&mut self, id: DefId, s: &Statement, text: std::sync::Arc<str>, superclass: Option<ValueDef>) {
        let slot = match self.reread.texts.iter().position(|(f, _)| *f == s.span.file) {
            Some(i) => i,
            None => {
                self.reread.texts.push((s.span.file, text));
                self.reread.texts.len() - 1
            }
        };
        self.reread.hosts.push(Written { id, text: slot as u32, start: s.span.start, end: s.span.end, superclass });
    }

    fn schema(&self, ctx: Context) -> &Schema {
        match ctx {
            Context::Global => &self.tree.core.global,
            Context::Host => &self.tree.core.host,
            Context::Switch => &self.tree.core.switch,
            Context::Network => self.tree.core.network(),
        }
    }

    /// Lowers the entries of a block with schema `nested` (or the
    /// definition's own schema when `nested` is None).
    fn section(&mut self, def: DefId, ctx: Context, nested: Option<&Schema>, entries: &[Entry], out: &mut Section) {
        for e in entries {
            match e {
                Entry::Statement(s) => self.statement(def, ctx, nested, s, out),
                Entry::Assignment(a) => self.variable(def, a),
                Entry::Include(i) => {
                    if let Some(f) = i.file {
                        let trees = self.trees;
                        self.section(def, ctx, nested, &trees.trees[&f], out)
                    }
                }
                Entry::Comment(_) | Entry::Error(_) => {}
            }
        }
    }

    fn statement(&mut self, def: DefId, ctx: Context, nested: Option<&Schema>, s: &Statement, out: &mut Section) {
        let Some(key_word) = s.key() else {
            self.diags.push(Diagnostic::error("mln::unnamed_block", "block without a keyword").label(s.head_span(), ""));
            return;
        };
        let key = key_word.unquoted();
        let found = match nested {
            Some(schema) => schema.get(&key).or_else(|| schema.get("*")).cloned(),
            None => self.schema(ctx).get(&key).cloned(),
        };
        if let Some(p) = found.as_ref().and_then(|k| k.plugin.as_deref()) {
            match self.registry.as_mut() {
                Some(r) => r.mark_used(p),
                None if self.declared.is_some() => self.marked.push(p.to_string()),
                None => {}
            }
        }
        let Some(kw) = found else {
            let here = nested.map(|n| n.name.clone()).unwrap_or_else(|| self.schema(ctx).name.clone());
            self.diags.push(self.unknown(&key, key_word.span, &here, nested.unwrap_or(self.schema(ctx)), s.block.is_some()));
            return;
        };
        let canonical = kw.alias_of.unwrap_or(kw.name);
        let canonical = if canonical == "*" { key.as_str() } else { canonical };
        let args = s.args();
        if ctx == Context::Host && nested.is_none() && kw.plugin.is_none() {
            self.host_keyword(canonical, s);
        }
        // MLN's manual has these for User-Mode Linux guests (who runs them,
        // with sudo or not, a host-side TUN device): read, said, ignored.
        let uml = matches!((nested.map(|n| n.name.as_str()), canonical), (None, "owner" | "group" | "sudo") | (Some("network"), "tun_iface" | "tun_address"));
        if uml && kw.plugin.is_none() && ctx != Context::Global {
            self.diags.push(
                Diagnostic::warning("mln::uml::no_effect", format!("`{canonical}` is for User-Mode Linux and has no effect on KVM or Xen guests"))
                    .label(s.head_span(), "ignored"),
            );
        }
        let vdef = |words: &[Word]| ValueDef { text: Text::Words(words.to_vec()), span: s.head_span(), scope: def };
        // `groups { NAME { members } }`: a group's name is its key.
        if kw.name == "*" && nested.is_some_and(|n| n.name == "groups") {
            if let Some(d) = crate::name::diagnose(crate::name::NameKind::Group, None, &key, key_word.span) {
                self.diags.push(d);
            }
        }
        match &kw.kind {
            Kind::Value(_) | Kind::Flag => {
                if let Some(b) = &s.block {
                    self.diags.push(
                        Diagnostic::error("mln::unexpected_block", format!("`{key}` takes a value, not a block"))
                            .label(b.open, ""),
                    );
                    return;
                }
                if args.is_empty() && matches!(kw.kind, Kind::Value(_)) {
                    self.diags.push(
                        Diagnostic::error("mln::missing_value", format!("`{key}` needs a value"))
                            .label(key_word.span, format!("write `{key} VALUE`")),
                    );
                    return;
                }
                out.set_value(canonical, vdef(args));
            }
            Kind::Lines(_) => match &s.block {
                None if !args.is_empty() => out.push_line(canonical, vdef(args)),
                None => self.diags.push(
                    Diagnostic::error("mln::expected_block", format!("`{key}` needs a block: `{key} {{ ... }}`"))
                        .label(key_word.span, ""),
                ),
                Some(b) => {
                    out.entries.entry(canonical.to_string()).or_insert_with(|| Item::Lines(vec![]));
                    self.lines(def, canonical, &b.entries, out)
                }
            },
            Kind::Block(schema) | Kind::Named { schema, .. } => {
                let Some(b) = &s.block else {
                    self.diags.push(
                        Diagnostic::error("mln::expected_block", format!("`{key}` needs a block: `{key} {{ ... }}`"))
                            .label(s.head_span(), ""),
                    );
                    return;
                };
                let schema = schema.clone();
                let label = match &kw.kind {
                    Kind::Named { label_required, .. } => match args {
                        [] if *label_required => {
                            self.diags.push(
                                Diagnostic::error("mln::missing_name", format!("`{key}` needs a name: `{key} NAME {{ }}`"))
                                    .label(key_word.span, ""),
                            );
                            return;
                        }
                        [] => Some(String::new()),
                        [one] => Some(one.unquoted()),
                        [_, extra @ ..] => {
                            self.diags.push(
                                Diagnostic::error("mln::unexpected_name", format!("`{key}` takes one name"))
                                    .label(extra[0].span.to(extra[extra.len() - 1].span), "unexpected"),
                            );
                            return;
                        }
                    },
                    _ => {
                        if let Some(a) = args.first() {
                            self.diags.push(
                                Diagnostic::error("mln::unexpected_name", format!("`{key}` takes no name"))
                                    .label(a.span, ""),
                            );
                        }
                        None
                    }
                };
                let span = s.head_span();
                let target = match label {
                    Some(l) => out.named_mut(canonical, &l, span),
                    None => {
                        let item = out
                            .entries
                            .entry(canonical.to_string())
                            .or_insert_with(|| Item::Block(Box::new(Section { span, ..Section::default() })));
                        if !matches!(item, Item::Block(_)) {
                            *item = Item::Block(Box::new(Section { span, ..Section::default() }));
                        }
                        let Item::Block(sec) = item else { unreachable!() };
                        sec
                    }
                };
                let mut sec = std::mem::take(target);
                self.section(def, ctx, Some(&schema), &b.entries, &mut sec);
                // Taken out above so `self` can be borrowed; put it back.
                let target = match out.entries.get_mut(canonical) {
                    Some(Item::Named(m)) => m.get_mut(&args.first().map(|a| a.unquoted()).unwrap_or_default()).unwrap(),
                    Some(Item::Block(b)) => b,
                    _ => unreachable!(),
                };
                *target = sec;
            }
        }
    }

    /// MLN keywords mln accepts only to say what becomes of them: where
    /// they are written, whether or not a host inherits them.
    fn host_keyword(&mut self, key: &str, s: &Statement) {
        let args = s.args();
        let value_span = match (args.first(), args.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => s.head_span(),
        };
        match key {
            "term" => self.diags.push(
                Diagnostic::warning("mln::term::no_effect", "`term` has no effect: it chose the terminal of User-Mode Linux consoles")
                    .label(s.head_span(), "ignored")
                    .help("KVM and Xen guests have a serial console, which `mln console HOST` reads; remove `term`"),
            ),
            "filepath" if !args.is_empty() => self.diags.push(
                Diagnostic::error("mln::filepath::refused", "`filepath` is refused: a project file does not choose where disks go")
                    .label(value_span, "a disk here would be written wherever the project file says")
                    .help("disks are kept in mln's state directory, in a directory per project and host; `--state-dir` moves it; remove `filepath`"),
            ),
            "xen_extra" if s.block.is_some() || !args.is_empty() => self.diags.push(
                Diagnostic::error("mln::xen_extra::refused", "`xen_extra` is refused: raw Xen configuration lines have no place in a libvirt domain")
                    .label(s.head_span(), "these lines would be dropped")
                    .help("mln defines Xen guests through libvirt, whose domain XML has no way to pass `xl` configuration lines; remove `xen_extra`, or say in an issue which setting you need"),
            ),
            _ => {}
        }
    }

    fn lines(&mut self, def: DefId, key: &str, entries: &[Entry], out: &mut Section) {
        for e in entries {
            match e {
                Entry::Statement(s) => {
                    if let Some(b) = &s.block {
                        self.diags.push(
                            Diagnostic::error("mln::unexpected_block", format!("lines of `{key}` cannot open blocks"))
                                .label(b.open, ""),
                        );
                    }
                    if !s.words.is_empty() {
                        let v = ValueDef { text: Text::Words(s.words.clone()), span: s.head_span(), scope: def };
                        out.push_line(key, v);
                    }
                }
                Entry::Assignment(a) => self.variable(def, a),
                Entry::Include(i) => {
                    if let Some(f) = i.file {
                        let trees = self.trees;
                        self.lines(def, key, &trees.trees[&f], out)
                    }
                }
                Entry::Comment(_) | Entry::Error(_) => {}
            }
        }
    }

    /// A variable belongs to the host, superclass, switch or global around
    /// it, however deep the block it is written in.
    fn variable(&mut self, def: DefId, a: &crate::syntax::Assignment) {
        let v = VarDef { name: a.name.clone(), text: Text::Words(a.value.clone()), span: a.span, scope: def };
        // A host read again has no variables (plain text has no `$`), and
        // no definitions around it.
        if let Some(d) = self.tree.defs.get_mut(def.0) {
            d.vars.insert(a.name.clone(), v);
        }
    }

    fn unknown(&self, key: &str, span: Span, here: &str, schema: &Schema, block: bool) -> Diagnostic {
        // A keyword of another block: say where it belongs.
        let elsewhere = [
            (&self.tree.core.global, "the `global` block"),
            (&self.tree.core.host, "a `host` or `superclass` block"),
            (self.tree.core.network(), "a `network IFACE { }` block"),
            (&self.tree.core.switch, "a `switch` block"),
        ];
        let declared = match &self.registry {
            Some(r) => r.declared_context(key),
            None => self.declared.and_then(|d| d.get(key).copied()),
        };
        let plugin_place = match declared {
            Some(Context::Global) => Some("the `global` block"),
            Some(Context::Host) => Some("a `host` or `superclass` block"),
            Some(Context::Network) => Some("a `network IFACE { }` block"),
            Some(Context::Switch) => Some("a `switch` block"),
            None => None,
        };
        if let Some(place) = plugin_place {
            return Diagnostic::error("mln::misplaced_keyword", format!("`{key}` cannot stand in {here}"))
                .label(span, "not allowed here")
                .help(format!("`{key}` is a plugin's keyword; it belongs in {place}"));
        }
        for (schema, place) in elsewhere {
            if schema.get(key).is_some() {
                return Diagnostic::error("mln::misplaced_keyword", format!("`{key}` cannot stand in {here}"))
                    .label(span, "not allowed here")
                    .help(format!("`{key}` belongs in {place}"));
            }
        }
        let mut d = Diagnostic::error("mln::unknown_keyword", format!("unknown keyword `{key}` in {here}")).label(span, "");
        if let Some(m) = schema.suggest(key) {
            d = d.help(format!("did you mean `{m}`?"));
        } else if (here == "global" || here == "host") && crate::name::check(crate::name::NameKind::Plugin, key).is_ok() {
            // A plugin may add a block or a one-line keyword: say which was
            // written, not a block where a value stands (`iscsi sanserver`).
            let written = if block { format!("`{key} {{ }}`") } else { format!("`{key}`") };
            d = d.help(format!(
                "if {written} is a plugin's, it needs the plugin: an executable `mln-plugin-{key}` on the plugin path"
            ));
        } else if here == "network" {
            d = d.help("if it is a plugin's, the plugin is found by a keyword named for it elsewhere (`openstack { }` in a host for `mln-plugin-openstack`)");
        }
        d
    }
}
