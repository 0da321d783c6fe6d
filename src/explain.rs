//! `mln explain FILE HOST PATH`: a value of a resolved host and every place
//! that shaped it — the statement that set it, the variables it used (and
//! theirs), the superclass chain it came down, and what it overrode.

use crate::compile::Compilation;
use crate::diag::{render, Diagnostic, RenderStyle};
use crate::resolve::{RItem, RSection, RValue, VarUse};
use crate::definitions::{DefKind, GLOBAL};
use crate::term::escape_lines;
use std::fmt::Write;

/// The explanation, or why there is none. Names, values and paths come
/// from the project file and the command line: control characters in them
/// are shown escaped (the rendered snippets escape their own).
pub fn explain(c: &Compilation, host: &str, path: &str, style: RenderStyle) -> Result<String, String> {
    match explain_parts(c, host, path, style) {
        Ok(parts) => Ok(parts.into_iter().map(|(safe, t)| if safe { t } else { escape_lines(&t).into_owned() }).collect()),
        Err(e) => Err(escape_lines(&e).into_owned()),
    }
}

/// Text in pieces: `(true, ..)` is rendered and safe to print as is.
fn explain_parts(c: &Compilation, host: &str, path: &str, style: RenderStyle) -> Result<Vec<(bool, String)>, String> {
    let mut parts = Vec::new();
    let Some((_, r)) = c.host(host) else {
        let names = c.plan.hosts.iter().map(|h| h.name.as_str());
        let hint = crate::schema::suggest(host, names).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
        return Err(format!("no host `{host}` in project {}{hint}", c.plan.project));
    };
    let tree = &c.tree;
    let chain: Vec<String> = r
        .chain
        .iter()
        .map(|id| {
            let d = tree.def(*id);
            format!("{} {}", d.kind.word(), d.name)
        })
        .collect();
    let mut out = String::new();
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    if lookup(&r.section, &segments).is_none() {
        let (h, _) = c.host(host).expect("found above");
        if let Some(why) = unwritten(h, &segments) {
            let _ = writeln!(out, "{host} {path} = {why}");
            let _ = writeln!(out, "  inheritance: {}", chain.join(" <- "));
            let _ = writeln!(out, "  not written in {host} or what it inherits");
            parts.push((false, out));
            return Ok(parts);
        }
    }
    let found = lookup(&r.section, &segments).ok_or_else(|| {
        let keys: Vec<&str> = r.section.entries.keys().map(String::as_str).collect();
        format!(
            "`{path}` is not set for {host} (it inherits: {}); set keys are: {}",
            chain.join(" <- "),
            keys.join(", ")
        )
    })?;
    let values: Vec<&RValue> = match found {
        RItem::Value(v) => vec![&**v],
        RItem::Lines(ls) => ls.iter().collect(),
        RItem::Block(_) | RItem::Named(_) => {
            return Err(format!("`{path}` is a block; name a value inside it, e.g. `{path}.KEY`"))
        }
    };
    let shown = values.iter().map(|v| v.text.as_str()).collect::<Vec<_>>().join("\n    ");
    let _ = writeln!(out, "{host} {path} = {shown}");
    let _ = writeln!(out, "  inheritance: {}", chain.join(" <- "));
    let host_def = tree.def(r.def);
    if let Some(p) = &host_def.plugin {
        let _ = writeln!(out, "  {host} is made by the `{p}` plugin");
    }
    if let Some(why) = plugin_origin(&tree.core, &segments) {
        let _ = writeln!(out, "  {why}");
    }
    if let Some(sc) = r.section.value("superclass") {
        let _ = writeln!(out, "  {}: `superclass {}` set here", c.sources.location(sc.origin.span), sc.text);
    }
    for v in values {
        let o = &v.origin;
        let scope = tree.def(o.scope);
        let place = if o.scope == GLOBAL && host_def.plugin.is_some() {
            format!("set by the `{}` plugin from this statement", host_def.plugin.as_deref().unwrap_or(""))
        } else if o.scope == r.def {
            format!("set in {} {} itself", scope.kind.word(), scope.name)
        } else if scope.kind == DefKind::Superclass {
            format!("inherited from superclass {}", scope.name)
        } else {
            format!("set in {} {}", scope.kind.word(), scope.name)
        };
        let _ = writeln!(out, "  {}: {place}", c.sources.location(o.span));
        let mut d = Diagnostic::advice("mln::explain", format!("{path} = {}", v.text)).label(o.span, place);
        let mut var_lines = Vec::new();
        vars(&o.vars, 2, &mut var_lines, &mut d, c);
        for l in var_lines {
            let _ = writeln!(out, "{l}");
        }
        for s in &o.shadowed {
            let _ = writeln!(out, "  {}: overrides this earlier setting", c.sources.location(*s));
            d = d.label(*s, "overridden");
        }
        out.push('\n');
        parts.push((false, std::mem::take(&mut out)));
        parts.push((true, render(&d, &c.sources, style)));
    }
    parts.push((false, out));
    Ok(parts)
}

/// A value nobody wrote: a default, or derived from other values.
fn unwritten(h: &crate::plan::Host, path: &[&str]) -> Option<String> {
    use crate::plan::{DEFAULT_BOOT_ORDER, DEFAULT_MEMORY_MIB, DEFAULT_SIZE_MIB, DEFAULT_TEMPLATE};
    Some(match path {
        ["memory"] => format!("{DEFAULT_MEMORY_MIB}M (the default)"),
        ["vcpus"] => "1 (the default)".into(),
        ["template"] => format!("{DEFAULT_TEMPLATE} (the default, as in MLN)"),
        ["size"] if h.free_space_mib.is_none() => format!("{DEFAULT_SIZE_MIB}M (the default)"),
        ["boot_order"] => format!("{DEFAULT_BOOT_ORDER} (the default)"),
        ["service_host"] => "none: the host is built on the local machine".into(),
        ["kvm"] if h.kind == crate::plan::HostKind::Kvm => "kvm (the default kind; QEMU emulation where KVM does not work)".into(),
        ["network", iface, key] => {
            let i = h.interfaces.iter().find(|i| i.name == *iface)?;
            match *key {
                "mac" => format!("{} (derived from project, host and interface names; stable across rebuilds)", i.mac),
                "broadcast" => format!("{} (derived from address and netmask)", i.broadcast.as_deref()?),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// Which plugin a keyword on `path` comes from: its own (`net` in a
/// `network` block), or the plugin whose block it stands in.
fn plugin_origin(core: &crate::schema::CoreSchemas, path: &[&str]) -> Option<String> {
    use crate::schema::Kind;
    let mut schema = &core.host;
    let mut owner: Option<(&str, &str)> = None;
    let mut i = 0;
    while let Some(seg) = path.get(i) {
        let kw = schema.get(seg).or_else(|| schema.get("*"))?;
        let last = match kw.kind {
            Kind::Named { .. } => i + 2 >= path.len(),
            _ => i + 1 >= path.len(),
        };
        if let Some(p) = kw.plugin.as_deref() {
            if last && owner.is_none() {
                return Some(format!("`{seg}` is a keyword of the `{p}` plugin"));
            }
            owner = owner.or(Some((p, seg)));
        }
        if last {
            break;
        }
        match &kw.kind {
            Kind::Block(s) => {
                schema = s;
                i += 1;
            }
            Kind::Named { schema: s, .. } => {
                schema = s;
                i += 2;
            }
            _ => return None,
        }
    }
    let (p, block) = owner?;
    Some(format!("`{}` stands in `{block}`, a block of the `{p}` plugin", path.last()?))
}

fn vars(uses: &[VarUse], depth: usize, lines: &mut Vec<String>, d: &mut Diagnostic, c: &Compilation) {
    for u in uses {
        let pad = "  ".repeat(depth);
        match u.defined {
            Some(def) => {
                lines.push(format!("{pad}${} = {} (defined at {})", u.name, u.value, c.sources.location(def)));
                *d = std::mem::replace(d, Diagnostic::advice("", "")).label(def, format!("${} = {}", u.name, u.value));
            }
            None => lines.push(format!("{pad}${} = {} (built in)", u.name, u.value)),
        }
        vars(&u.inner, depth + 1, lines, d, c);
    }
}

fn lookup<'a>(s: &'a RSection, path: &[&str]) -> Option<&'a RItem> {
    let (first, rest) = path.split_first()?;
    let item = s.entries.get(*first)?;
    if rest.is_empty() {
        return Some(item);
    }
    match item {
        RItem::Block(b) => lookup(b, rest),
        RItem::Named(m) => {
            let b = m.get(rest[0])?;
            if rest.len() == 1 {
                None
            } else {
                lookup(b, &rest[1..])
            }
        }
        _ => None,
    }
}
