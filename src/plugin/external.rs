//! External plugins: an executable `mln-plugin-NAME` speaking a versioned
//! JSON protocol, one request on stdin and one response on stdout per run.
//! The protocol is documented in the book's plugin guide.

use super::{ConfigureCtx, Context, Declaration, ExpandCtx, Plugin, PluginBlock};
use crate::diag::{Diagnostic, Severity};
use crate::plan::PluginOutput;
use crate::schema::{Keyword, Kind, LineTy, Schema, Ty};
use crate::definitions::{Def, DefKind, Section, Text, ValueDef, GLOBAL};
use crate::resolve::RSection;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2: keywords declared by the core block they stand in (one-line ones,
/// keywords in `network`, core blocks nested in a plugin's), and
/// `configure` told what they say per host. 1 had plugin blocks only.
pub const PROTOCOL_VERSION: u32 = 2;
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct External {
    path: PathBuf,
    name: String,
    decl: Declaration,
    hooks: Vec<String>,
}

#[derive(Deserialize)]
struct DeclareResponse {
    name: String,
    /// By the core block they stand in, then by name.
    #[serde(default)]
    keywords: IndexMap<Context, IndexMap<String, KeywordDecl>>,
    #[serde(default)]
    hooks: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockDecl {
    /// `none`, `optional` or `required`.
    #[serde(default = "label_none")]
    label: String,
    #[serde(default)]
    keywords: IndexMap<String, KeywordDecl>,
    /// Core blocks that may stand in this one (`network`).
    #[serde(default)]
    nest: Vec<String>,
}

fn label_none() -> String {
    "none".into()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeywordDecl {
    /// A value type (`text`, `int`, `size`...) or `flag`.
    Simple(String),
    Lines { lines: LineTy },
    Block { block: BlockDecl },
}

/// What protocol 1 answered, to say so rather than "bad declaration".
const OLD_PROTOCOL_HELP: &str = "protocol 2 declares keywords by the core block they stand in: `\"keywords\": {\"global\": {\"NAME\": {\"block\": {\"keywords\": {...}}}}}` where protocol 1 had `\"blocks\"`; see the plugin guide";

fn keyword(plugin: &str, name: String, decl: KeywordDecl) -> Result<Keyword, String> {
    // A keyword is a word of a project file: it cannot hold what ends one.
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control() || "#;{}\"\\$".contains(c)) {
        return Err(format!("it declares a keyword that cannot be written: {name:?}"));
    }
    let kind = match decl {
        KeywordDecl::Lines { lines } => Kind::Lines(lines),
        KeywordDecl::Simple(s) if s == "flag" => Kind::Flag,
        KeywordDecl::Simple(s) => Kind::Value(
            serde_json::from_value::<Ty>(Value::String(s.clone())).map_err(|_| format!("keyword `{name}` has unknown type `{s}`"))?,
        ),
        KeywordDecl::Block { block } => {
            let mut schema = Schema::new(&name);
            for (k, kd) in block.keywords {
                let kw = keyword(plugin, k.clone(), kd)?;
                schema.keywords.insert(k, kw);
            }
            schema.nest = block.nest;
            let schema = Arc::new(schema);
            match block.label.as_str() {
                "none" => Kind::Block(schema),
                "optional" => Kind::Named { schema, label_required: false },
                "required" => Kind::Named { schema, label_required: true },
                other => return Err(format!("block `{name}` has unknown label rule `{other}`")),
            }
        }
    };
    // Keywords live as long as the process, as the core's do.
    let name: &'static str = Box::leak(name.into_boxed_str());
    Ok(Keyword { name, kind, alias_of: None, plugin: Some(plugin.to_string()) })
}

#[derive(Serialize, Deserialize, Default)]
struct PluginDiag {
    #[serde(default = "sev_error")]
    severity: String,
    message: String,
    /// Index of the block the problem is in (default: the first).
    #[serde(default)]
    block: usize,
    /// The keyword in that block to point at; with `host`, a path in that
    /// host's settings (`openstack.flavor`, `network.eth0.net`).
    #[serde(default)]
    keyword: Option<String>,
    /// The host the problem is in (configure).
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    help: Option<String>,
}

fn sev_error() -> String {
    "error".into()
}

#[derive(Deserialize, Default)]
struct ExpandResponse {
    #[serde(default)]
    hosts: Vec<HostSpec>,
    #[serde(default)]
    diagnostics: Vec<PluginDiag>,
}

/// A host for the plugin to add: plain values, list lines, and named blocks.
#[derive(Deserialize)]
struct HostSpec {
    name: String,
    #[serde(default)]
    values: IndexMap<String, String>,
    #[serde(default)]
    lines: IndexMap<String, Vec<String>>,
    #[serde(default)]
    networks: IndexMap<String, IndexMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct ConfigureResponse {
    #[serde(default)]
    hosts: IndexMap<String, PluginOutput>,
    #[serde(default)]
    diagnostics: Vec<PluginDiag>,
}

impl External {
    pub fn load(path: PathBuf) -> Result<External, String> {
        let out = match call(&path, &json!({"protocol": PROTOCOL_VERSION, "request": "declare"})) {
            Ok(v) => v,
            // A plugin of the old protocol may refuse the new one outright:
            // ask as before, to say which protocol it speaks.
            Err(e) => match call(&path, &json!({"protocol": 1, "request": "declare"})) {
                Ok(v) if v.get("protocol") == Some(&json!(1)) => v,
                _ => return Err(e),
            },
        };
        match out.get("protocol").and_then(Value::as_u64) {
            Some(p) if p == u64::from(PROTOCOL_VERSION) => {}
            Some(1) => return Err(format!("it speaks protocol 1, this mln speaks {PROTOCOL_VERSION}: {OLD_PROTOCOL_HELP}")),
            Some(p) => return Err(format!("it speaks protocol {p}, this mln speaks {PROTOCOL_VERSION}")),
            None => return Err("bad declaration: no `protocol`".into()),
        }
        let d: DeclareResponse = serde_json::from_value(out).map_err(|e| format!("bad declaration: {e}"))?;
        // Its name keys the plan's plugin outputs, which become paths.
        crate::name::check(crate::name::NameKind::Plugin, &d.name).map_err(|e| format!("it declares a bad name: {e}"))?;
        let mut blocks = Vec::new();
        for (ctx, keywords) in d.keywords {
            for (k, kd) in keywords {
                blocks.push((ctx, keyword(&d.name, k, kd)?));
            }
        }
        Ok(External { path, name: d.name, decl: Declaration { blocks }, hooks: d.hooks })
    }

    fn report(&self, diags: Vec<PluginDiag>, blocks: &[PluginBlock], hosts: &IndexMap<String, RSection>, out: &mut crate::diag::Diagnostics) {
        for pd in diags {
            let sev = match pd.severity.as_str() {
                "warning" => Severity::Warning,
                _ => Severity::Error,
            };
            let block = blocks.get(pd.block).or(blocks.first());
            let mut d = Diagnostic::error("mln::plugin::external", format!("{}: {}", self.name, pd.message));
            d.severity = sev;
            // About a host: at the statement its `keyword` path names there
            // (`network.eth0.net`), or at the host's settings.
            if let Some(sec) = pd.host.as_deref().and_then(|h| hosts.get(h)) {
                let span = pd.keyword.as_deref().and_then(|k| span_at(sec, k)).unwrap_or(sec.span);
                d = d.label(span, "reported by the plugin");
            } else if let Some(b) = block {
                let span = pd.keyword.as_deref().map(|k| b.span_of(k)).unwrap_or(b.span);
                d = d.label(span, "reported by the plugin");
            }
            if let Some(h) = pd.help {
                d = d.help(h);
            }
            out.push(d);
        }
    }

    /// Values that do not fit the types the plugin declared are reported
    /// here, pointing at them; the plugin is not called with them.
    fn check_types(&self, blocks: &[PluginBlock], out: &mut crate::diag::Diagnostics) -> bool {
        let mut ok = true;
        for b in blocks {
            let Some(schema) = self.decl.blocks.iter().find_map(|(_, k)| match &k.kind {
                Kind::Block(s) | Kind::Named { schema: s, .. } if k.name == b.key => Some(s.clone()),
                _ => None,
            }) else {
                continue;
            };
            ok &= check_section(&self.name, &b.section, &schema, out);
        }
        ok
    }

    fn fail(&self, e: String, blocks: &[PluginBlock], out: &mut crate::diag::Diagnostics) {
        let mut d = Diagnostic::error("mln::plugin::failed", format!("plugin `{}` failed: {e}", self.name));
        if let Some(b) = blocks.first() {
            d = d.label(b.span, "while handling this block");
        }
        out.push(d.help(format!("the plugin is {}", self.path.display())));
    }
}

/// Checks every value in a plugin's settings against its keyword's type,
/// however deep (a core block nested in the plugin's is checked as the
/// core types it).
pub(super) fn check_section(plugin: &str, s: &crate::resolve::RSection, schema: &Schema, out: &mut crate::diag::Diagnostics) -> bool {
    use crate::resolve::RItem;
    let mut ok = true;
    for (key, item) in &s.entries {
        let Some(kw) = schema.get(key).or_else(|| schema.get("*")) else { continue };
        match (item, &kw.kind) {
            (RItem::Value(v), Kind::Value(ty)) => {
                if let Err(e) = crate::plan::values::check(*ty, &v.text) {
                    if v.is_broken() {
                        continue;
                    }
                    let whose = if kw.plugin.is_some() { format!("by plugin `{plugin}`") } else { "by mln".into() };
                    let mut d = Diagnostic::error("mln::plugin::value", format!("{plugin}: {}", e.message))
                        .label(v.origin.span, format!("`{key}` is declared as {} {whose}", format!("{ty:?}").to_lowercase()));
                    if let Some(h) = e.help {
                        d = d.help(h);
                    }
                    out.push(d);
                    ok = false;
                }
            }
            (RItem::Block(b), Kind::Block(sc) | Kind::Named { schema: sc, .. }) => ok &= check_section(plugin, b, sc, out),
            (RItem::Named(m), Kind::Block(sc) | Kind::Named { schema: sc, .. }) => {
                for b in m.values() {
                    ok &= check_section(plugin, b, sc, out);
                }
            }
            _ => {}
        }
    }
    ok
}

impl Plugin for External {
    fn name(&self) -> &str {
        &self.name
    }
    fn wants_type_checks(&self) -> bool {
        true
    }
    fn declaration(&self) -> Declaration {
        self.decl.clone()
    }
    fn expand(&self, ctx: &mut ExpandCtx) {
        if !self.hooks.iter().any(|h| h == "expand") || !self.check_types(&ctx.blocks, ctx.diags) {
            return;
        }
        let hosts: Vec<&str> = ctx.tree.hosts.iter().map(|id| ctx.tree.def(*id).name.as_str()).collect();
        let superclasses: Vec<&str> =
            ctx.tree.ids(DefKind::Superclass).map(|id| ctx.tree.def(id).name.as_str()).collect();
        let req = json!({
            "protocol": PROTOCOL_VERSION, "request": "expand",
            "project": ctx.tree.project_name(),
            "blocks": ctx.blocks.iter().map(block_json).collect::<Vec<_>>(),
            "hosts": hosts, "superclasses": superclasses,
        });
        let resp = call(&self.path, &req)
            .and_then(|v| serde_json::from_value::<ExpandResponse>(v).map_err(|e| format!("bad expand response: {e}")));
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return self.fail(e, &ctx.blocks, ctx.diags),
        };
        self.report(resp.diagnostics, &ctx.blocks, &IndexMap::new(), ctx.diags);
        let span = ctx.blocks.first().map(|b| b.span).unwrap_or_default();
        for h in resp.hosts {
            if let Some(mut d) = crate::name::diagnose(crate::name::NameKind::Host, None, &h.name, span) {
                d.labels[0].text = format!("plugin `{}` makes it here", self.name).into();
                ctx.diags.push(d);
                continue;
            }
            if let Some(prev) = ctx.tree.find(DefKind::Host, &h.name) {
                ctx.diags.push(
                    Diagnostic::error("mln::duplicate_definition", format!("host `{}` is defined twice", h.name))
                        .label(span, format!("plugin `{}` makes it here", self.name))
                        .label(ctx.tree.def(prev).name_span, "and it is defined here"),
                );
                continue;
            }
            let lit = |s: &str| ValueDef { text: Text::Literal(s.to_string()), span, scope: GLOBAL };
            let mut section = Section { span, ..Section::default() };
            for (k, v) in &h.values {
                section.set_value(k, lit(v));
            }
            for (k, lines) in &h.lines {
                for l in lines {
                    section.push_line(k, lit(l));
                }
            }
            for (iface, values) in &h.networks {
                let n = section.named_mut("network", iface, span);
                for (k, v) in values {
                    n.set_value(k, lit(v));
                }
            }
            ctx.add_host(Def {
                kind: DefKind::Host,
                name: h.name,
                name_span: span,
                section,
                made: None,
                vars: IndexMap::new(),
                plugin: Some(self.name.clone()),
            });
        }
    }

    fn configure(&self, ctx: &mut ConfigureCtx) -> IndexMap<String, PluginOutput> {
        // Types were checked for every place before configure (compile).
        if !self.hooks.iter().any(|h| h == "configure") {
            return IndexMap::new();
        }
        let req = json!({
            "protocol": PROTOCOL_VERSION, "request": "configure",
            "blocks": ctx.blocks.iter().map(block_json).collect::<Vec<_>>(),
            "global": ctx.global.to_json(),
            "hosts": ctx.hosts.iter().map(|(h, s)| (h.clone(), s.to_json())).collect::<IndexMap<_, _>>(),
            "switches": ctx.switches.iter().map(|(h, s)| (h.clone(), s.to_json())).collect::<IndexMap<_, _>>(),
            "plan": ctx.plan,
        });
        let resp = call(&self.path, &req).and_then(|v| {
            serde_json::from_value::<ConfigureResponse>(v).map_err(|e| format!("bad configure response: {e}"))
        });
        match resp {
            Ok(r) => {
                self.report(r.diagnostics, &ctx.blocks, &ctx.hosts, ctx.diags);
                r.hosts
            }
            Err(e) => {
                self.fail(e, &ctx.blocks, ctx.diags);
                IndexMap::new()
            }
        }
    }
}

/// The statement at a dotted path in settings: blocks by key, named blocks
/// by key then label, then a value or a list's first line.
fn span_at(s: &RSection, path: &str) -> Option<crate::source::Span> {
    use crate::resolve::RItem;
    let mut sec = s;
    let mut parts = path.split('.');
    while let Some(key) = parts.next() {
        match sec.entries.get(key)? {
            RItem::Value(v) => return Some(v.origin.span),
            RItem::Lines(ls) => return ls.first().map(|l| l.origin.span),
            RItem::Block(b) => sec = b,
            RItem::Named(m) => sec = m.get(parts.next()?)?,
        }
    }
    Some(sec.span)
}

fn block_json(b: &PluginBlock) -> Value {
    let mut v = b.section.to_json();
    v["label"] = Value::String(b.label.clone());
    v["name"] = Value::String(b.key.clone());
    v
}

/// Runs the plugin once: request on stdin, response on stdout, bounded in
/// time so a stuck plugin cannot hang mln.
fn call(path: &PathBuf, request: &Value) -> Result<Value, String> {
    let mut child = Command::new(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let body = serde_json::to_vec(request).expect("requests serialize");
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", TIMEOUT.as_secs()));
            }
        }
    };
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let tail: String = err.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(format!("exited with {status}{}", if tail.is_empty() { String::new() } else { format!(": {tail}") }));
    }
    serde_json::from_slice(&out).map_err(|e| format!("its output is not JSON: {e}"))
}
