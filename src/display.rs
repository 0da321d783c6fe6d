//! Human output of a plan: the `mln plan` table and `mln parse`'s resolved
//! tree in MLN syntax.

use crate::plan::{Host, Plan};
use crate::resolve::{RItem, RSection, ResolvedHost};
use crate::schema::{Kind, LineTy, Schema, Ty};
use crate::definitions::Definitions;
use std::fmt::Write;

/// One row per host.
pub fn plan_table(plan: &Plan) -> String {
    let header = ["HOST", "KIND", "SUPERCLASS", "SERVICE HOST", "MEMORY", "VCPUS", "DISK", "TEMPLATE", "INTERFACES", "PLUGIN FILES"];
    let rows: Vec<Vec<String>> = plan.hosts.iter().map(row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = format!("project {}: {} hosts, {} switches\n", plan.project, plan.hosts.len(), plan.switches.len());
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&c);
            } else {
                let _ = write!(out, "{:w$}  ", c, w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|s| s.to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    for s in &plan.switches {
        let _ = writeln!(out, "switch {}: bridge {}{}", s.name, s.bridge, s.service_host.as_ref().map(|h| format!(" on {h}")).unwrap_or_default());
    }
    // Names and values come from the project file: nothing in them may
    // reach the terminal as a control sequence.
    crate::term::escape_lines(&out).into_owned()
}

fn row(h: &Host) -> Vec<String> {
    let dash = || "-".to_string();
    let disk = match (h.disk_mib, h.free_space_mib) {
        (Some(m), _) => format!("{m}M"),
        (None, Some(f)) => format!("template+{f}M"),
        _ => dash(),
    };
    let ifaces = h
        .interfaces
        .iter()
        .map(|i| {
            let addr = if i.dhcp { "dhcp".to_string() } else { i.address.clone().unwrap_or_else(|| "-".into()) };
            match &i.gateway {
                Some(g) => format!("{} {} gw {}", i.name, addr, g),
                None => format!("{} {}", i.name, addr),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let files = h.plugins.values().flat_map(|o| o.files.iter().map(|f| f.path.clone())).collect::<Vec<_>>().join(" ");
    // A physical node: its memory and CPUs are the hardware's, its disk a
    // device (or none), its system an environment.
    if let Some(n) = &h.baremetal {
        let env = crate::baremetal::env::display_ref(&n.environment);
        let disk = match (&n.disk, n.boot) {
            (_, crate::baremetal::BootMode::Diskless) => "diskless".to_string(),
            (Some(d), _) => n.partition.map(|p| format!("{d} #{p}")).unwrap_or_else(|| d.clone()),
            (None, _) => dash(),
        };
        return vec![
            h.name.clone(),
            "baremetal".into(),
            h.superclass.clone().unwrap_or_else(dash),
            h.service_host.clone().unwrap_or_else(|| "(local)".into()),
            dash(),
            dash(),
            disk,
            format!("env {env}"),
            if ifaces.is_empty() { dash() } else { ifaces },
            if files.is_empty() { dash() } else { files },
        ];
    }
    vec![
        h.name.clone(),
        format!("{:?}", h.kind).to_lowercase(),
        h.superclass.clone().unwrap_or_else(dash),
        h.service_host.clone().unwrap_or_else(|| "(local)".into()),
        format!("{}M", h.memory_mib),
        h.vcpus.to_string(),
        disk,
        h.template.clone(),
        if ifaces.is_empty() { dash() } else { ifaces },
        if files.is_empty() { dash() } else { files },
    ]
}

/// The resolved project in MLN syntax: every host with everything it
/// inherits written out, no variables. A host still names its nearest
/// superclass, which stands empty before the hosts: the plan records it,
/// and the output compiles to the same plan.
pub fn resolved_tree(tree: &Definitions, global: &RSection, switches: &[(String, RSection)], hosts: &[ResolvedHost]) -> String {
    let mut out = String::from("global {\n");
    for (k, item) in &global.entries {
        let kw = tree.core.global.get(k);
        if kw.and_then(|k| k.plugin.as_deref()) == Some("autoenum") {
            let _ = writeln!(out, "    # the autoenum block is expanded into the hosts below");
            continue;
        }
        let schema = kw.map(|k| &k.kind);
        item_out(k, item, schema, 1, &mut out);
    }
    out.push_str("}\n");
    for (name, s) in switches {
        let _ = writeln!(out, "switch {} {{", quote(name, true));
        section_out(s, &tree.core.switch, 1, &mut out);
        out.push_str("}\n");
    }
    let nearest = |h: &ResolvedHost| h.chain.get(1).map(|id| tree.def(*id).name.as_str());
    let mut parents: Vec<&str> = Vec::new();
    for p in hosts.iter().filter_map(nearest) {
        if !parents.contains(&p) {
            parents.push(p);
        }
    }
    for p in parents {
        let _ = writeln!(out, "superclass {} {{\n    # what it gives is written out in each host\n}}", quote(p, true));
    }
    for h in hosts {
        let _ = writeln!(out, "host {} {{", quote(&h.name, true));
        let mut s = h.section.clone();
        s.entries.shift_remove("superclass");
        if let Some(p) = nearest(h) {
            let _ = writeln!(out, "    superclass {}", quote(p, true));
        }
        section_out(&s, &tree.core.host, 1, &mut out);
        out.push_str("}\n");
    }
    out
}

fn section_out(s: &RSection, schema: &Schema, depth: usize, out: &mut String) {
    for (k, item) in &s.entries {
        let kind = schema.get(k).or_else(|| schema.get("*")).map(|k| &k.kind);
        item_out(k, item, kind, depth, out);
    }
}

fn item_out(key: &str, item: &RItem, kind: Option<&Kind>, depth: usize, out: &mut String) {
    let pad = "    ".repeat(depth);
    match item {
        RItem::Value(v) => {
            let literal = matches!(kind, Some(Kind::Value(Ty::Hash)));
            if v.text.is_empty() {
                let _ = writeln!(out, "{pad}{key}");
            } else {
                let _ = writeln!(out, "{pad}{key} {}", quote(&v.text, !literal));
            }
        }
        RItem::Lines(lines) => {
            let _ = writeln!(out, "{pad}{key} {{");
            for l in lines.iter() {
                let text = match kind {
                    // The hash word stays literal; the rest is escaped.
                    Some(Kind::Lines(LineTy::Users)) => {
                        l.words.iter().enumerate().map(|(i, w)| quote(w, i != 1)).collect::<Vec<_>>().join(" ")
                    }
                    Some(Kind::Lines(LineTy::Shell | LineTy::Raw)) => escape_line(&l.text),
                    _ => l.words.iter().map(|w| quote(w, true)).collect::<Vec<_>>().join(" "),
                };
                let _ = writeln!(out, "{pad}    {text}");
            }
            let _ = writeln!(out, "{pad}}}");
        }
        RItem::Block(b) => {
            let _ = writeln!(out, "{pad}{key} {{");
            let schema = match kind {
                Some(Kind::Block(s)) | Some(Kind::Named { schema: s, .. }) => s.as_ref().clone(),
                _ => Schema::default(),
            };
            section_out(b, &schema, depth + 1, out);
            let _ = writeln!(out, "{pad}}}");
        }
        RItem::Named(map) => {
            let schema = match kind {
                Some(Kind::Block(s)) | Some(Kind::Named { schema: s, .. }) => s.as_ref().clone(),
                _ => Schema::default(),
            };
            for (label, b) in map.iter() {
                if label.is_empty() {
                    let _ = writeln!(out, "{pad}{key} {{");
                } else {
                    let _ = writeln!(out, "{pad}{key} {} {{", quote(label, true));
                }
                section_out(b, &schema, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
}

/// Writes a value so that it reads back the same: quoted when it holds
/// characters that end or start something, `$` escaped when `escape_dollar`.
fn quote(s: &str, escape_dollar: bool) -> String {
    let special = s.is_empty() || s.contains(['#', ';', '{', '}', '"', '\n', '\\']) || s != s.trim();
    let s = if escape_dollar { s.replace('$', "\\$") } else { s.to_string() };
    if special {
        format!("\"{}\"", s.replace('\\', "\\\\").replace("\\\\$", "\\$").replace('"', "\\\""))
    } else {
        s
    }
}

/// A shell line: kept as the shell will see it, `$` escaped, and `#`/`;`
/// protected by quoting the whole line when present.
fn escape_line(s: &str) -> String {
    if s.contains(['#', ';', '{', '}', '"', '\\']) {
        quote(s, true)
    } else {
        s.replace('$', "\\$")
    }
}
