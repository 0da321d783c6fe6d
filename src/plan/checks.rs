//! Checks across hosts: duplicate addresses and MACs, switches that do not
//! exist.

use super::model::Plan;
use crate::diag::{Diagnostic, Diagnostics};
use crate::resolve::ResolvedHost;
use crate::schema::suggest;
use crate::source::Span;
use crate::definitions::{DefKind, Definitions};
use std::collections::HashMap;

/// Warnings for definitions nothing uses: a superclass no host inherits
/// from (directly or not), a switch no interface is on.
pub fn unused(plan: &Plan, resolved: &[ResolvedHost], tree: &Definitions, diags: &mut Diagnostics) {
    let mut inherited = std::collections::HashSet::new();
    for r in resolved {
        inherited.extend(r.chain.iter().skip(1).copied());
    }
    for id in tree.ids(DefKind::Superclass) {
        if !inherited.contains(&id) {
            let d = tree.def(id);
            diags.push(
                Diagnostic::warning("mln::superclass::unused", format!("no host inherits from superclass `{}`", d.name))
                    .label(d.name_span, "defined here")
                    .help("hosts inherit with `superclass NAME`; remove it if it is not needed"),
            );
        }
    }
    let used: std::collections::HashSet<&str> =
        plan.hosts.iter().flat_map(|h| h.interfaces.iter().filter_map(|i| i.switch.as_deref())).collect();
    for id in tree.ids(DefKind::Switch) {
        let d = tree.def(id);
        if !used.contains(d.name.as_str()) {
            diags.push(
                Diagnostic::warning("mln::switch::unused", format!("no interface is on switch `{}`", d.name))
                    .label(d.name_span, "defined here")
                    .help("put an interface on it with `switch NAME` in a `network` block"),
            );
        }
    }
}

/// Two nodes network-booting from one MAC would get each other's leases
/// and boot profiles; a VM's card with a node's MAC, the same on one LAN.
fn node_macs(plan: &Plan, resolved: &[ResolvedHost], diags: &mut Diagnostics) {
    // From the file, not the node spec: a node with other problems has
    // none, and its MAC may still be taken twice.
    let mut seen: HashMap<String, (&str, Span)> = HashMap::new();
    for (h, r) in plan.hosts.iter().zip(resolved) {
        if h.kind != crate::plan::HostKind::Baremetal {
            continue;
        }
        let Some(v) = r.section.value("mac") else { continue };
        let Ok(mac) = crate::plan::values::mac(&v.text) else { continue };
        let here = v.origin.span;
        if let Some((other, at)) = seen.get(&mac).copied() {
            diags.push(
                Diagnostic::error("mln::baremetal::duplicate_mac", format!("bare-metal hosts {other} and {} both have MAC {mac}", h.name))
                    .label(here, format!("{}'s", h.name))
                    .label(at, format!("{other}'s"))
                    .help("each node network-boots from its own card: give each its card's MAC"),
            );
        } else {
            seen.insert(mac, (&h.name, here));
        }
    }
    for (h, r) in plan.hosts.iter().zip(resolved) {
        let nets = r.section.named("network");
        for i in &h.interfaces {
            let Some((node, at)) = seen.get(i.mac.as_str()) else { continue };
            // A node's own boot card, or a node whose MAC clash is reported above.
            if *node == h.name || h.kind == crate::plan::HostKind::Baremetal {
                continue;
            }
            let here = nets.and_then(|n| n.get(&i.name)).and_then(|n| n.value("mac")).map(|v| v.origin.span).unwrap_or(r.section.span);
            diags.push(
                Diagnostic::error("mln::baremetal::duplicate_mac", format!("{}'s {} has bare-metal host {node}'s MAC {}", h.name, i.name, i.mac))
                    .label(here, format!("{}'s {}", h.name, i.name))
                    .label(*at, format!("{node}'s")),
            );
        }
    }
}

pub fn check(plan: &Plan, resolved: &[ResolvedHost], diags: &mut Diagnostics) {
    node_macs(plan, resolved, diags);
    let mut addresses: HashMap<&str, (&str, Span)> = HashMap::new();
    let mut macs: HashMap<&str, (&str, Span)> = HashMap::new();
    let switch_names: Vec<&str> = plan.switches.iter().map(|s| s.name.as_str()).collect();
    for (h, r) in plan.hosts.iter().zip(resolved) {
        let nets = r.section.named("network");
        for i in &h.interfaces {
            let n = nets.and_then(|n| n.get(&i.name));
            let span_of = |k: &str| n.and_then(|n| n.value(k)).map(|v| v.origin.span).unwrap_or(r.section.span);
            if let Some(a) = &i.address {
                let here = span_of("address");
                if let Some((other, at)) = addresses.insert(a, (&h.name, here)) {
                    diags.push(
                        Diagnostic::error("mln::network::duplicate_address", format!("{} and {} both have address {a}", other, h.name))
                            .label(here, format!("{}'s {}", h.name, i.name))
                            .label(at, format!("{other}'s")),
                    );
                }
            }
            let here = span_of("mac");
            // A node's boot card: a clash is reported once, as the node's
            // (`mln::baremetal::duplicate_mac`).
            let boot_card = h.baremetal.as_ref().is_some_and(|n| n.mac == i.mac);
            if !boot_card {
                if let Some((other, at)) = macs.insert(&i.mac, (&h.name, here)) {
                    diags.push(
                        Diagnostic::error("mln::network::duplicate_mac", format!("{} and {} both have MAC {}", other, h.name, i.mac))
                            .label(here, format!("{}'s {}", h.name, i.name))
                            .label(at, format!("{other}'s")),
                    );
                }
            }
            if let Some(sw) = &i.switch {
                if !switch_names.contains(&sw.as_str()) {
                    let mut d = Diagnostic::error("mln::network::unknown_switch", format!("switch `{sw}` does not exist"))
                        .label(span_of("switch"), "");
                    d = match suggest(sw, switch_names.iter().copied()) {
                        Some(m) => d.help(format!("did you mean `{m}`?")),
                        None => d.help(format!("define it: `switch {sw} {{ }}`")),
                    };
                    diags.push(d);
                }
            }
        }
    }
}
