//! External plugins: an executable `mln-plugin-NAME` speaking a versioned
//! JSON protocol, one request on stdin and one response on stdout per run.
//! The protocol is documented in the book's plugin guide.

use super::{ConfigureCtx, Context, Declaration, ExpandCtx, Plugin, PluginBlock};
use crate::diag::{Diagnostic, Severity};
use crate::plan::PluginOutput;
use crate::schema::{Keyword, Kind, LineTy, Schema, Ty};
use crate::definitions::{Def, DefKind, Section, Text, ValueDef, GLOBAL};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PROTOCOL_VERSION: u32 = 1;
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct External {
    path: PathBuf,
    name: String,
    decl: Declaration,
    hooks: Vec<String>,
}

#[derive(Deserialize)]
struct DeclareResponse {
    protocol: u32,
    name: String,
    blocks: Vec<BlockDecl>,
    #[serde(default)]
    hooks: Vec<String>,
}

#[derive(Deserialize)]
struct BlockDecl {
    name: String,
    context: Context,
    /// `none`, `optional` or `required`.
    #[serde(default = "label_none")]
    label: String,
    keywords: IndexMap<String, KeywordDecl>,
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
}

#[derive(Serialize, Deserialize, Default)]
struct PluginDiag {
    #[serde(default = "sev_error")]
    severity: String,
    message: String,
    /// Index of the block the problem is in (default: the first).
    #[serde(default)]
    block: usize,
    /// The keyword in that block to point at.
    #[serde(default)]
    keyword: Option<String>,
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
        let out = call(&path, &json!({"protocol": PROTOCOL_VERSION, "request": "declare"}))?;
        let d: DeclareResponse = serde_json::from_value(out).map_err(|e| format!("bad declaration: {e}"))?;
        if d.protocol != PROTOCOL_VERSION {
            return Err(format!("it speaks protocol {}, this mln speaks {PROTOCOL_VERSION}", d.protocol));
        }
        // Its name keys the plan's plugin outputs, which become paths.
        crate::name::check(crate::name::NameKind::Plugin, &d.name).map_err(|e| format!("it declares a bad name: {e}"))?;
        let mut blocks = Vec::new();
        for b in d.blocks {
            let mut schema = Schema::new(&b.name);
            for (k, kd) in b.keywords {
                let kind = match kd {
                    KeywordDecl::Lines { lines } => Kind::Lines(lines),
                    KeywordDecl::Simple(s) if s == "flag" => Kind::Flag,
                    KeywordDecl::Simple(s) => Kind::Value(
                        serde_json::from_value::<Ty>(Value::String(s.clone()))
                            .map_err(|_| format!("keyword `{k}` has unknown type `{s}`"))?,
                    ),
                };
                let name: &'static str = Box::leak(k.clone().into_boxed_str());
                schema.keywords.insert(k, Keyword { name, kind, alias_of: None, plugin: Some(d.name.clone()) });
            }
            let schema = Arc::new(schema);
            let kind = match b.label.as_str() {
                "none" => Kind::Block(schema),
                "optional" => Kind::Named { schema, label_required: false },
                "required" => Kind::Named { schema, label_required: true },
                other => return Err(format!("block `{}` has unknown label rule `{other}`", b.name)),
            };
            let name: &'static str = Box::leak(b.name.into_boxed_str());
            blocks.push((b.context, Keyword { name, kind, alias_of: None, plugin: Some(d.name.clone()) }));
        }
        Ok(External { path, name: d.name, decl: Declaration { blocks }, hooks: d.hooks })
    }

    fn report(&self, diags: Vec<PluginDiag>, blocks: &[PluginBlock], out: &mut crate::diag::Diagnostics) {
        for pd in diags {
            let sev = match pd.severity.as_str() {
                "warning" => Severity::Warning,
                _ => Severity::Error,
            };
            let block = blocks.get(pd.block).or(blocks.first());
            let mut d = Diagnostic::error("mln::plugin::external", format!("{}: {}", self.name, pd.message));
            d.severity = sev;
            if let Some(b) = block {
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
            for (key, kw) in &schema.keywords {
                let (Kind::Value(ty), Some(v)) = (&kw.kind, b.section.value(key)) else { continue };
                if let Err(e) = crate::plan::values::check(*ty, &v.text) {
                    if v.is_broken() {
                        continue;
                    }
                    let mut d = Diagnostic::error("mln::plugin::value", format!("{}: {}", self.name, e.message))
                        .label(v.origin.span, format!("`{key}` is declared as {ty:?} by the plugin").to_lowercase());
                    if let Some(h) = e.help {
                        d = d.help(h);
                    }
                    out.push(d);
                    ok = false;
                }
            }
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

impl Plugin for External {
    fn name(&self) -> &str {
        &self.name
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
        self.report(resp.diagnostics, &ctx.blocks, ctx.diags);
        let span = ctx.blocks.first().map(|b| b.span).unwrap_or_default();
        for h in resp.hosts {
            if let Some(mut d) = crate::name::diagnose(crate::name::NameKind::Host, None, &h.name, span) {
                d.labels[0].text = format!("plugin `{}` makes it here", self.name);
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
                vars: IndexMap::new(),
                plugin: Some(self.name.clone()),
            });
        }
    }

    fn configure(&self, ctx: &mut ConfigureCtx) -> IndexMap<String, PluginOutput> {
        if !self.hooks.iter().any(|h| h == "configure") || !self.check_types(&ctx.blocks, ctx.diags) {
            return IndexMap::new();
        }
        let req = json!({
            "protocol": PROTOCOL_VERSION, "request": "configure",
            "blocks": ctx.blocks.iter().map(block_json).collect::<Vec<_>>(),
            "host_blocks": ctx.host_blocks.iter().map(|(h, s)| (h.clone(), s.to_json())).collect::<IndexMap<_, _>>(),
            "plan": ctx.plan,
        });
        let resp = call(&self.path, &req).and_then(|v| {
            serde_json::from_value::<ConfigureResponse>(v).map_err(|e| format!("bad configure response: {e}"))
        });
        match resp {
            Ok(r) => {
                self.report(r.diagnostics, &ctx.blocks, ctx.diags);
                r.hosts
            }
            Err(e) => {
                self.fail(e, &ctx.blocks, ctx.diags);
                IndexMap::new()
            }
        }
    }
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
