//! Resolution: inheritance through superclass chains and variable
//! expansion, keeping for every value where it came from.

mod interpolate;

pub use interpolate::{pieces, referenced_names, sole_reference, Piece};

use crate::diag::{Diagnostic, Diagnostics};
use crate::schema::{suggest, Kind, LineTy, Schema, Ty};
use crate::source::Span;
use crate::definitions::{DefId, DefKind, Item, Section, Text, Definitions, ValueDef, GLOBAL};
use crate::definitions::KeyMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub const BUILTINS: [&str; 2] = ["hostname", "project"];

/// A variable reference met while resolving a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarUse {
    pub name: String,
    /// Where the reference is written.
    pub at: Span,
    /// Where the variable is defined; None for built-ins.
    pub defined: Option<Span>,
    pub value: String,
    /// References inside the variable's own value.
    pub inner: Vec<VarUse>,
    /// Undefined, or part of a cycle (already reported).
    pub broken: bool,
}

/// Where a resolved value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The statement that set the winning value.
    pub span: Span,
    /// The definition it is written in.
    pub scope: DefId,
    pub vars: Vec<VarUse>,
    /// Other statements that set the same key and lost (earlier in the same
    /// block, or further up the superclass chain), nearest first.
    pub shadowed: Vec<Span>,
}

impl VarUse {
    fn is_broken(&self) -> bool {
        self.broken || self.inner.iter().any(VarUse::is_broken)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RValue {
    /// Each word, unquoted and expanded.
    pub words: Vec<String>,
    /// The words joined by one space (glued where they touched); for shell
    /// lines, the line as written, expanded.
    pub text: String,
    pub origin: Origin,
}

impl RValue {
    /// True when a variable it uses is undefined or cyclic: that was
    /// reported, so the value is not checked again (no cascades).
    pub fn is_broken(&self) -> bool {
        self.origin.vars.iter().any(VarUse::is_broken)
    }
}

/// Values and lines are shared (`Arc`) between the hosts that inherit the
/// same statement, when the result is the same for every host (no
/// `$hostname` in it, nothing reported): 100,000 hosts of one superclass
/// then hold one copy of its `memory`, not 100,000.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RItem {
    Value(Arc<RValue>),
    Lines(Arc<Vec<RValue>>),
    // Boxed: every entry of every host's map is as large as the largest
    // variant, and most entries are values.
    Block(Box<RSection>),
    Named(Box<KeyMap<String, RSection>>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RSection {
    pub span: Span,
    pub entries: KeyMap<String, RItem>,
}

impl RSection {
    pub fn value(&self, key: &str) -> Option<&RValue> {
        match self.entries.get(key) {
            Some(RItem::Value(v)) => Some(v),
            _ => None,
        }
    }
    pub fn text(&self, key: &str) -> Option<&str> {
        self.value(key).map(|v| v.text.as_str())
    }
    pub fn lines(&self, key: &str) -> &[RValue] {
        match self.entries.get(key) {
            Some(RItem::Lines(l)) => l,
            _ => &[],
        }
    }
    pub fn block(&self, key: &str) -> Option<&RSection> {
        match self.entries.get(key) {
            Some(RItem::Block(b)) => Some(&**b),
            _ => None,
        }
    }
    pub fn named(&self, key: &str) -> Option<&KeyMap<String, RSection>> {
        match self.entries.get(key) {
            Some(RItem::Named(m)) => Some(&**m),
            _ => None,
        }
    }
    pub fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// As JSON: `values` (text), `lines` (lists of text) and `blocks`
    /// (nested, by name, then by label for named blocks). Plugins see this.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let (mut values, mut lines, mut blocks) = (Map::new(), Map::new(), Map::new());
        for (k, item) in &self.entries {
            match item {
                RItem::Value(v) => {
                    values.insert(k.clone(), Value::String(v.text.clone()));
                }
                RItem::Lines(ls) => {
                    lines.insert(k.clone(), ls.iter().map(|l| Value::String(l.text.clone())).collect());
                }
                RItem::Block(b) => {
                    blocks.insert(k.clone(), b.to_json());
                }
                RItem::Named(m) => {
                    blocks.insert(k.clone(), m.iter().map(|(l, b)| (l.clone(), b.to_json())).collect());
                }
            }
        }
        json!({"values": values, "lines": lines, "blocks": blocks})
    }
}

/// A host with everything inherited and expanded.
#[derive(Clone, Debug)]
pub struct ResolvedHost {
    pub def: DefId,
    pub name: String,
    /// The host, then its superclasses, nearest first.
    pub chain: Vec<DefId>,
    pub section: RSection,
}

/// What a pruned host keeps at its top level and in each `network` block:
/// what the checks across hosts point at (duplicate addresses and MACs,
/// unknown switches).
const KEEP_HOST: [&str; 1] = ["mac"];
const KEEP_NETWORK: [&str; 3] = ["address", "mac", "switch"];

impl ResolvedHost {
    /// The host with only what is read after typing: the values the checks
    /// across hosts label, and plugins' keywords (their configure hooks
    /// read them). `explain` and `parse` need the whole host and do not
    /// prune.
    pub fn pruned(self, core: &crate::schema::CoreSchemas) -> ResolvedHost {
        fn keep(s: RSection, schema: &Schema, names: &[&str], nested: Option<(&Schema, &[&str])>) -> RSection {
            let mut entries = KeyMap::default();
            for (key, item) in s.entries {
                let plugin = schema.get(&key).is_some_and(|k| k.plugin.is_some());
                match item {
                    RItem::Named(m) if !plugin && key == "network" => {
                        if let Some((inner, inner_names)) = nested {
                            let m: KeyMap<String, RSection> =
                                m.into_iter().map(|(l, sec)| (l, keep(sec, inner, inner_names, None))).collect();
                            entries.insert(key, RItem::Named(Box::new(m)));
                        }
                    }
                    item if plugin || names.contains(&key.as_str()) => {
                        entries.insert(key, item);
                    }
                    _ => {}
                }
            }
            entries.shrink_to_fit();
            RSection { span: s.span, entries }
        }
        let section = keep(self.section, &core.host, &KEEP_HOST, Some((core.network(), &KEEP_NETWORK)));
        ResolvedHost { section, ..self }
    }
}

pub struct Resolver<'t> {
    pub tree: &'t Definitions,
    parents: Vec<Option<DefId>>,
    project: String,
    shared: Shared,
}

/// What a value or a list of lines resolved to, where that does not depend
/// on the host, by the address of its first statement (the tree is
/// borrowed, so addresses are stable while the resolver lives).
#[derive(Default)]
struct Shared {
    values: RwLock<HashMap<usize, (Typed, Arc<RValue>), foldhash::fast::RandomState>>,
    lines: RwLock<HashMap<usize, SharedLines, foldhash::fast::RandomState>>,
}

/// A key's lines: the statements they came from, their type, the result.
type SharedLines = (Vec<usize>, Option<LineTy>, Arc<Vec<RValue>>);

/// The type a value was resolved as: it decides quoting and expansion.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Typed(Option<Ty>);

fn addr<T>(t: &T) -> usize {
    t as *const T as usize
}

/// True when the value used `$hostname` anywhere (directly or through a
/// variable): then it differs per host.
fn uses_hostname(vars: &[VarUse]) -> bool {
    vars.iter().any(|u| (u.name == "hostname" && u.defined.is_none()) || uses_hostname(&u.inner))
}

/// The host a value is being resolved for (for `$hostname`).
#[derive(Clone, Copy)]
struct HostCtx<'a> {
    name: &'a str,
    /// The statements written in the host itself (their addresses): only
    /// inherited ones are worth sharing with other hosts.
    own: &'a [usize],
}

impl HostCtx<'_> {
    fn inherits(&self, d: &ValueDef) -> bool {
        !self.own.contains(&addr(d))
    }
}

/// The addresses of every statement in a section, nested ones included.
fn own_statements(s: &Section, out: &mut Vec<usize>) {
    for item in s.entries.values() {
        match item {
            Item::Value(vs) | Item::Lines(vs) => out.extend(vs.iter().map(addr)),
            Item::Block(b) => own_statements(b, out),
            Item::Named(m) => m.values().for_each(|b| own_statements(b, out)),
        }
    }
}

impl<'t> Resolver<'t> {
    /// Links every host and superclass to its parent, reporting unknown
    /// superclasses and cycles.
    pub fn new(tree: &'t Definitions, diags: &mut Diagnostics) -> Resolver<'t> {
        let mut parents = vec![None; tree.defs.len()];
        for (i, def) in tree.defs.iter().enumerate() {
            if !matches!(def.kind, DefKind::Host | DefKind::Superclass) {
                continue;
            }
            let Some(v) = def.superclass() else { continue };
            let name = match &v.text {
                Text::Literal(s) => s.clone(),
                Text::Words(w) => {
                    if w.len() > 1 {
                        diags.push(
                            Diagnostic::error("mln::superclass::several", "a host or superclass has one parent")
                                .label(w[1].span.to(w[w.len() - 1].span), "a second parent is not possible")
                                .help("inheritance is single: make one superclass inherit from the other"),
                        );
                    }
                    if w[0].raw.contains('$') {
                        diags.push(
                            Diagnostic::error("mln::superclass::variable", "a superclass name cannot use variables")
                                .label(w[0].span, "")
                                .help("variables are looked up through the superclass chain, so the chain itself must be plain names"),
                        );
                        continue;
                    }
                    w[0].unquoted()
                }
            };
            match tree.find(DefKind::Superclass, &name) {
                Some(p) => parents[i] = Some(p),
                None => {
                    let mut d = Diagnostic::error("mln::superclass::unknown", format!("superclass `{name}` does not exist"))
                        .label(v.span, "");
                    let names = tree.ids(DefKind::Superclass).map(|id| tree.def(id).name.as_str());
                    if let Some(m) = suggest(&name, names) {
                        d = d.help(format!("did you mean `{m}`?"));
                    } else if tree.find(DefKind::Host, &name).is_some() {
                        d = d.help(format!("`{name}` is a host; only superclasses can be inherited from"));
                    }
                    diags.push(d);
                }
            }
        }
        // Cycles: walk each chain; a definition met twice closes a cycle.
        // Only superclasses can be in one (hosts have no children).
        let mut in_cycle = vec![false; tree.defs.len()];
        for start in tree.ids(DefKind::Superclass) {
            let mut seen = vec![start];
            let mut at = start;
            while let Some(p) = parents[at.0] {
                if p == start {
                    if !in_cycle[start.0] {
                        for id in &seen {
                            in_cycle[id.0] = true;
                        }
                        let names: Vec<_> = seen.iter().map(|id| tree.def(*id).name.clone()).collect();
                        let mut d = Diagnostic::error(
                            "mln::superclass::cycle",
                            format!("inheritance cycle: {} -> {}", names.join(" -> "), names[0]),
                        );
                        for id in &seen {
                            if let Some(v) = tree.def(*id).section.value("superclass") {
                                d = d.label(v.span, "");
                            }
                        }
                        diags.push(d.help("a superclass cannot inherit from itself, directly or not"));
                    }
                    break;
                }
                if seen.contains(&p) {
                    break; // a cycle further up, reported from its own start
                }
                seen.push(p);
                at = p;
            }
        }
        for (i, c) in in_cycle.iter().enumerate() {
            if *c {
                parents[i] = None;
            }
        }
        // Break cycles reachable from hosts too: a chain never revisits.
        let mut r = Resolver { tree, parents, project: String::new(), shared: Shared::default() };
        r.project = tree
            .global()
            .section
            .value("project")
            .map(|v| r.value_text(v, None, Some(Ty::Name), &mut Diagnostics::default()).text)
            .unwrap_or_default();
        r
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn parent(&self, id: DefId) -> Option<DefId> {
        self.parents[id.0]
    }

    /// The definition and its ancestors, nearest first.
    pub fn chain(&self, id: DefId) -> Vec<DefId> {
        let mut out = vec![id];
        let mut at = id;
        while let Some(p) = self.parents[at.0] {
            if out.contains(&p) {
                break;
            }
            out.push(p);
            at = p;
        }
        out
    }

    pub fn host(&self, id: DefId, diags: &mut Diagnostics) -> ResolvedHost {
        let chain = self.chain(id);
        let def = self.tree.def(id);
        let name = def.name.clone();
        // Made for this resolution and dropped after it (only hosts are
        // made; superclasses are written).
        let statements = def.statements();
        let mut merged = MSection::default();
        for d in chain[1..].iter().rev() {
            merged.merge(&self.tree.def(*d).section);
        }
        merged.merge(&statements);
        merged.span = statements.span;
        let mut own = Vec::new();
        own_statements(&statements, &mut own);
        let section = self.section(&merged, &self.tree.core.host, Some(HostCtx { name: &name, own: &own }), diags);
        ResolvedHost { def: id, name, chain, section }
    }

    /// A block of the global or a switch definition (no inheritance).
    pub fn plain(&self, section: &Section, schema: &Schema, diags: &mut Diagnostics) -> RSection {
        let mut merged = MSection::default();
        merged.merge(section);
        merged.span = section.span;
        self.section(&merged, schema, None, diags)
    }

    fn section(&self, m: &MSection, schema: &Schema, host: Option<HostCtx>, diags: &mut Diagnostics) -> RSection {
        let mut out = RSection { span: m.span, entries: KeyMap::with_capacity_and_hasher(m.entries.len(), Default::default()) };
        for (key, item) in &m.entries {
            let kind = schema.get(key).or_else(|| schema.get("*")).map(|k| &k.kind);
            let r = match item {
                MItem::Value(history) => {
                    let ty = match kind {
                        Some(Kind::Value(t)) => Some(*t),
                        _ => None,
                    };
                    let (win, rest) = history.split_last().expect("a value item has a value");
                    // `superclass` names were checked when linking (no
                    // variables there): do not report them twice.
                    let ty = if *key == "superclass" { Some(Ty::Hash) } else { ty };
                    let mut v = self.shared_value(win, host, ty, diags);
                    if !rest.is_empty() {
                        Arc::make_mut(&mut v).origin.shadowed = rest.iter().rev().map(|d| d.span).collect();
                    }
                    RItem::Value(v)
                }
                MItem::Lines(lines) => {
                    let lt = match kind {
                        Some(Kind::Lines(t)) => Some(*t),
                        _ => None,
                    };
                    RItem::Lines(self.shared_lines(lines, host, lt, diags))
                }
                MItem::Block(b) => {
                    let s = match kind {
                        Some(Kind::Block(s)) | Some(Kind::Named { schema: s, .. }) => s.as_ref(),
                        _ => &EMPTY,
                    };
                    RItem::Block(Box::new(self.section(b, s, host, diags)))
                }
                MItem::Named(map) => {
                    let s = match kind {
                        Some(Kind::Block(s)) | Some(Kind::Named { schema: s, .. }) => s.as_ref(),
                        _ => &EMPTY,
                    };
                    RItem::Named(Box::new(map.iter().map(|(k, b)| (k.to_string(), self.section(b, s, host, diags))).collect()))
                }
            };
            out.entries.insert(key.to_string(), r);
        }
        out
    }

    /// [`Self::value_text`], shared with every host that gets the same.
    fn shared_value(&self, d: &ValueDef, host: Option<HostCtx>, ty: Option<Ty>, diags: &mut Diagnostics) -> Arc<RValue> {
        if !host.is_some_and(|h| h.inherits(d)) {
            return Arc::new(self.value_text(d, host, ty, diags));
        }
        let key = addr(d);
        if let Some((t, v)) = self.shared.values.read().expect("no panics while held").get(&key) {
            if *t == Typed(ty) {
                return v.clone();
            }
        }
        // Resolved aside: a value that reports something is not shared, so
        // each host reports (and deduplicates) as it did.
        let mut local = Diagnostics::default();
        let v = Arc::new(self.value_text(d, host, ty, &mut local));
        if local.is_empty() && !uses_hostname(&v.origin.vars) {
            self.shared.values.write().expect("no panics while held").insert(key, (Typed(ty), v.clone()));
        } else {
            diags.extend(local.into_vec());
        }
        v
    }

    /// A key's lines, each once (the first of equal lines is kept); shared
    /// as [`Self::shared_value`] is.
    fn shared_lines(&self, lines: &[&ValueDef], host: Option<HostCtx>, lt: Option<LineTy>, diags: &mut Diagnostics) -> Arc<Vec<RValue>> {
        if !host.is_some_and(|h| lines.iter().all(|l| h.inherits(l))) {
            let mut out: Vec<RValue> = Vec::with_capacity(lines.len());
            for l in lines {
                let v = self.line(l, host, lt, diags);
                if !out.iter().any(|o| o.text == v.text) {
                    out.push(v);
                }
            }
            return Arc::new(out);
        }
        let ids: Vec<usize> = lines.iter().map(|l| addr(*l)).collect();
        let key = ids.first().copied().unwrap_or(0);
        if let Some((k, t, v)) = self.shared.lines.read().expect("no panics while held").get(&key) {
            if *k == ids && *t == lt {
                return v.clone();
            }
        }
        let mut local = Diagnostics::default();
        let mut out: Vec<RValue> = Vec::with_capacity(lines.len());
        for l in lines {
            let v = self.line(l, host, lt, &mut local);
            if !out.iter().any(|o| o.text == v.text) {
                out.push(v);
            }
        }
        let out = Arc::new(out);
        if !ids.is_empty() && local.is_empty() && !out.iter().any(|v| uses_hostname(&v.origin.vars)) {
            self.shared.lines.write().expect("no panics while held").insert(key, (ids, lt, out.clone()));
        } else {
            diags.extend(local.into_vec());
        }
        out
    }

    fn value_text(&self, d: &ValueDef, host: Option<HostCtx>, ty: Option<Ty>, diags: &mut Diagnostics) -> RValue {
        let mut vars = Vec::new();
        let words: Vec<String> = match &d.text {
            Text::Literal(s) => s.split_whitespace().map(str::to_string).collect(),
            Text::Words(ws) => {
                if ty == Some(Ty::Hash) && !(ws.len() == 1 && self.is_defined_reference(&ws[0], d.scope)) {
                    ws.iter().map(|w| w.unquoted()).collect()
                } else {
                    ws.iter().map(|w| self.word(w, d.scope, host, &mut vars, &mut Vec::new(), diags)).collect()
                }
            }
        };
        let text = match &d.text {
            Text::Literal(s) => s.clone(),
            Text::Words(ws) => join(ws, &words),
        };
        // Kept per host: no room for more references than were found.
        vars.shrink_to_fit();
        RValue { words, text, origin: Origin { span: d.span, scope: d.scope, vars, shadowed: vec![] } }
    }

    fn line(&self, d: &ValueDef, host: Option<HostCtx>, lt: Option<LineTy>, diags: &mut Diagnostics) -> RValue {
        let Text::Words(ws) = &d.text else {
            return self.value_text(d, host, None, diags);
        };
        let mut vars = Vec::new();
        let mut words = Vec::with_capacity(ws.len());
        for (i, w) in ws.iter().enumerate() {
            let literal = match lt {
                Some(LineTy::Users) => i == 1 && !self.is_defined_reference(w, d.scope),
                _ => false,
            };
            words.push(if literal { w.unquoted() } else { self.word(w, d.scope, host, &mut vars, &mut Vec::new(), diags) });
        }
        // Shell and raw lines keep their quoting: the shell needs it. A line
        // that is one quoted string is that string.
        let text = if matches!(lt, Some(LineTy::Shell | LineTy::Raw)) && !(ws.len() == 1 && ws[0].quoted) {
            let mut t = String::new();
            let mut prev_end = None;
            for (i, w) in ws.iter().enumerate() {
                if let Some(e) = prev_end {
                    if w.span.start > e {
                        t.push(' ');
                    }
                }
                if w.quoted {
                    // Expand variables but keep the quotes and escapes.
                    t.push('"');
                    let inner = crate::syntax::Word { raw: w.raw[1..w.raw.len() - 1].into(), quoted: false, span: w.span };
                    t.push_str(&raw_expand(self, &inner, d.scope, host, &mut Vec::new(), diags));
                    t.push('"');
                } else {
                    t.push_str(&words[i]);
                }
                prev_end = Some(w.span.end);
            }
            t
        } else {
            join(ws, &words)
        };
        // Kept per host: no room for more references than were found.
        vars.shrink_to_fit();
        RValue { words, text, origin: Origin { span: d.span, scope: d.scope, vars, shadowed: vec![] } }
    }

    fn is_defined_reference(&self, w: &crate::syntax::Word, scope: DefId) -> bool {
        sole_reference(w).is_some_and(|n| BUILTINS.contains(&n.as_str()) || self.lookup(&n, scope).is_some())
    }

    /// Finds a variable from the definition a value is written in: its own
    /// variables, then up its superclass chain, then global.
    fn lookup(&self, name: &str, scope: DefId) -> Option<&crate::definitions::VarDef> {
        let mut at = Some(scope);
        // Chains are cycle-free (cycles were cut in `new`), but bound the
        // walk anyway.
        for _ in 0..self.tree.defs.len() {
            let Some(d) = at else { break };
            if let Some(v) = self.tree.def(d).vars.get(name) {
                return Some(v);
            }
            at = self.parents[d.0];
        }
        self.tree.def(GLOBAL).vars.get(name)
    }

    fn word(
        &self,
        w: &crate::syntax::Word,
        scope: DefId,
        host: Option<HostCtx>,
        uses: &mut Vec<VarUse>,
        stack: &mut Vec<(String, DefId)>,
        diags: &mut Diagnostics,
    ) -> String {
        if !w.raw.contains('$') && !w.raw.contains('\\') {
            return if w.quoted { w.unquoted() } else { w.raw.to_string() };
        }
        let mut out = String::new();
        for p in pieces(w) {
            match p {
                Piece::Text(t) => out.push_str(&t),
                Piece::Var { name, span } => {
                    let u = self.var(&name, span, scope, host, stack, diags);
                    out.push_str(&u.value);
                    uses.push(u);
                }
            }
        }
        out
    }

    fn var(
        &self,
        name: &str,
        at: Span,
        scope: DefId,
        host: Option<HostCtx>,
        stack: &mut Vec<(String, DefId)>,
        diags: &mut Diagnostics,
    ) -> VarUse {
        let builtin = |value: String| VarUse { name: name.to_string(), at, defined: None, value, inner: vec![], broken: false };
        match name {
            "hostname" => {
                return match host {
                    Some(h) => builtin(h.name.to_string()),
                    None => {
                        diags.push(
                            Diagnostic::error("mln::variable::no_host", "`$hostname` is only known in host settings")
                                .label(at, "not inside a host here"),
                        );
                        VarUse { broken: true, ..builtin(String::new()) }
                    }
                }
            }
            "project" => return builtin(self.project.clone()),
            _ => {}
        }
        let Some(def) = self.lookup(name, scope) else {
            let mut candidates: Vec<&str> = BUILTINS.to_vec();
            for d in self.chain(scope).into_iter().chain([GLOBAL]) {
                candidates.extend(self.tree.def(d).vars.keys().map(String::as_str));
            }
            let mut d = Diagnostic::error("mln::variable::undefined", format!("undefined variable `${name}`"))
                .label(at, "not defined here, in its superclasses or in global");
            d = match suggest(name, candidates.into_iter()) {
                Some(m) => d.help(format!("did you mean `${m}`?")),
                None => d.help(format!("define it with `${name} = VALUE`, or write `\\${name}` for a literal dollar sign")),
            };
            diags.push(d);
            return VarUse { name: name.to_string(), at, defined: None, value: format!("${name}"), inner: vec![], broken: true };
        };
        let key = (name.to_string(), def.scope);
        if stack.contains(&key) {
            diags.push(
                Diagnostic::error("mln::variable::cycle", format!("variable `${name}` refers to itself"))
                    .label(at, "this reference loops")
                    .label(def.span, "defined here"),
            );
            return VarUse { name: name.to_string(), at, defined: Some(def.span), value: String::new(), inner: vec![], broken: true };
        }
        stack.push(key);
        let mut inner = Vec::new();
        let value = match &def.text {
            Text::Literal(s) => s.clone(),
            Text::Words(ws) => {
                let words: Vec<String> =
                    ws.iter().map(|w| self.word(w, def.scope, host, &mut inner, stack, diags)).collect();
                join(ws, &words)
            }
        };
        stack.pop();
        VarUse { name: name.to_string(), at, defined: Some(def.span), value, inner, broken: false }
    }

    /// Warnings for variables nobody refers to.
    pub fn unused_variables(&self, diags: &mut Diagnostics) {
        let mut used = std::collections::HashSet::new();
        for def in &self.tree.defs {
            for v in def.vars.values() {
                if let Text::Words(ws) = &v.text {
                    used.extend(referenced_names(ws));
                }
            }
            // A made section holds literals only (`Recipe::section`), or
            // plain text, which has no `$` (`definitions::Reread`).
            collect_refs(&def.section, &mut used);
        }
        for def in &self.tree.defs {
            for v in def.vars.values() {
                if BUILTINS.contains(&v.name.as_str()) {
                    diags.push(
                        Diagnostic::error("mln::variable::builtin", format!("`${}` is built in and cannot be redefined", v.name))
                            .label(v.span, ""),
                    );
                } else if !used.contains(&v.name) {
                    diags.push(
                        Diagnostic::warning("mln::variable::unused", format!("variable `${}` is never used", v.name))
                            .label(v.span, "defined here")
                            .help("remove it, or refer to it as `$name` or `$[name]`"),
                    );
                }
            }
        }
    }
}

static EMPTY: std::sync::LazyLock<Schema> = std::sync::LazyLock::new(Schema::default);

fn collect_refs(s: &Section, used: &mut std::collections::HashSet<String>) {
    for item in s.entries.values() {
        match item {
            Item::Value(vs) | Item::Lines(vs) => {
                for v in vs {
                    if let Text::Words(ws) = &v.text {
                        used.extend(referenced_names(ws));
                    }
                }
            }
            Item::Block(b) => collect_refs(b, used),
            Item::Named(m) => m.values().for_each(|b| collect_refs(b, used)),
        }
    }
}

/// Joins expanded words with one space, gluing words that touched.
fn join(ws: &[crate::syntax::Word], words: &[String]) -> String {
    if words.len() == 1 {
        return words[0].clone();
    }
    let mut t = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 && ws[i].span.start > ws[i - 1].span.end {
            t.push(' ');
        }
        t.push_str(w);
    }
    t
}

/// Expands variables in the inside of a quoted word, keeping escapes as
/// written (for shell lines).
fn raw_expand(
    r: &Resolver,
    inner: &crate::syntax::Word,
    scope: DefId,
    host: Option<HostCtx>,
    uses: &mut Vec<VarUse>,
    diags: &mut Diagnostics,
) -> String {
    let shifted = crate::syntax::Word { span: Span { start: inner.span.start + 1, ..inner.span }, ..inner.clone() };
    // Read as a bare word, whose `\X` would lose the backslash: every
    // escape but `\$` (a literal dollar) is hidden and put back as written.
    // Control characters cannot be in a source, so they cannot clash.
    let mut raw_escaped = String::with_capacity(shifted.raw.len());
    let mut chars = shifted.raw.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, false) => raw_escaped.push(c),
            _ => match chars.next() {
                // Two bytes for two, so references keep their spans.
                Some('"') => raw_escaped.push_str("\u{0}\u{0}"),
                Some('\\') => raw_escaped.push_str("\u{1}\u{1}"),
                Some('$') => raw_escaped.push_str("\\$"),
                Some(n) => {
                    raw_escaped.push('\u{2}');
                    raw_escaped.push(n);
                }
                None => raw_escaped.push('\u{2}'),
            },
        }
    }
    let w = crate::syntax::Word { raw: raw_escaped.into(), ..shifted };
    r.word(&w, scope, host, uses, &mut Vec::new(), diags).replace("\u{0}\u{0}", "\\\"").replace("\u{1}\u{1}", "\\\\").replace('\u{2}', "\\")
}

/// The chain of a definition merged root first: what a host inherits.
#[derive(Default)]
struct MSection<'t> {
    span: Span,
    entries: KeyMap<&'t str, MItem<'t>>,
}

enum MItem<'t> {
    Value(Vec<&'t ValueDef>),
    Lines(Vec<&'t ValueDef>),
    Block(MSection<'t>),
    Named(KeyMap<&'t str, MSection<'t>>),
}

impl<'t> MSection<'t> {
    fn merge(&mut self, s: &'t Section) {
        // The nearest header names the block in messages.
        if !s.span.is_empty() {
            self.span = s.span;
        }
        self.entries.reserve(s.entries.len());
        for (key, item) in &s.entries {
            match item {
                Item::Value(vs) => match self.entries.entry(key.as_str()).or_insert_with(|| MItem::Value(vec![])) {
                    MItem::Value(h) => h.extend(vs.iter()),
                    other => *other = MItem::Value(vs.iter().collect()),
                },
                Item::Lines(vs) => match self.entries.entry(key.as_str()).or_insert_with(|| MItem::Lines(vec![])) {
                    MItem::Lines(h) => h.extend(vs.iter()),
                    other => *other = MItem::Lines(vs.iter().collect()),
                },
                Item::Block(b) => {
                    let e = self.entries.entry(key.as_str()).or_insert_with(|| MItem::Block(MSection::default()));
                    if !matches!(e, MItem::Block(_)) {
                        *e = MItem::Block(MSection::default());
                    }
                    if let MItem::Block(m) = e {
                        m.merge(b);
                    }
                }
                Item::Named(map) => {
                    let e = self.entries.entry(key.as_str()).or_insert_with(|| MItem::Named(KeyMap::default()));
                    if !matches!(e, MItem::Named(_)) {
                        *e = MItem::Named(KeyMap::default());
                    }
                    if let MItem::Named(m) = e {
                        for (label, b) in map.iter() {
                            m.entry(label.as_str()).or_default().merge(b);
                        }
                    }
                }
            }
        }
    }
}
