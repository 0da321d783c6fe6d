//! Checks across hosts: duplicate addresses and MACs, switches that do not
//! exist.

use super::model::Plan;
use crate::diag::{Diagnostic, Diagnostics};
use crate::resolve::{ResolvedHost, Resolver};
use crate::schema::suggest;
use crate::source::Span;
use crate::definitions::{DefId, DefKind, Definitions};
use std::collections::HashMap;

/// Where the hosts' values are written, for the checks' labels: from the
/// resolved hosts when they were kept, else by resolving again only the
/// hosts a check reports (planning keeps no resolved host then).
pub enum Origins<'a> {
    Kept(&'a [ResolvedHost]),
    Again { resolver: &'a Resolver<'a>, ids: &'a [DefId] },
}

impl Origins<'_> {
    /// The span of `key` in host `host`'s `network IFACE` block; the host's
    /// block when it is not written there.
    fn span(&self, host: usize, iface: &str, key: &str) -> Span {
        let of = |r: &ResolvedHost| {
            r.section.named("network").and_then(|n| n.get(iface)).and_then(|n| n.value(key)).map(|v| v.origin.span).unwrap_or(r.section.span)
        };
        match self {
            Origins::Kept(rs) => rs.get(host).map(of).unwrap_or_default(),
            Origins::Again { resolver, ids } => of(&resolver.host(ids[host], &mut Diagnostics::default())),
        }
    }
    /// Host `host`'s top-level `key` as written (resolved) and where.
    fn value(&self, host: usize, key: &str) -> Option<(String, Span)> {
        let of = |r: &ResolvedHost| r.section.value(key).map(|v| (v.text.clone(), v.origin.span));
        match self {
            Origins::Kept(rs) => rs.get(host).and_then(of),
            Origins::Again { resolver, ids } => of(&resolver.host(ids[host], &mut Diagnostics::default())),
        }
    }
    fn chain(&self, host: usize) -> Vec<DefId> {
        match self {
            Origins::Kept(rs) => rs.get(host).map(|r| r.chain.clone()).unwrap_or_default(),
            Origins::Again { resolver, ids } => resolver.chain(ids[host]),
        }
    }
}

/// Warnings for definitions nothing uses: a superclass no host inherits
/// from (directly or not), a switch no interface is on.
pub fn unused(plan: &Plan, origins: &Origins, tree: &Definitions, diags: &mut Diagnostics) {
    let mut inherited = std::collections::HashSet::new();
    for i in 0..plan.hosts.len() {
        inherited.extend(origins.chain(i).into_iter().skip(1));
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
fn node_macs(plan: &Plan, origins: &Origins, diags: &mut Diagnostics) {
    // From the file, not the node spec: a node with other problems has
    // none, and its MAC may still be taken twice.
    let mut seen: HashMap<String, (&str, Span)> = HashMap::new();
    for (hi, h) in plan.hosts.iter().enumerate() {
        if h.kind != crate::plan::HostKind::Baremetal {
            continue;
        }
        let Some((text, here)) = origins.value(hi, "mac") else { continue };
        let Ok(mac) = crate::plan::values::mac(&text) else { continue };
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
    if seen.is_empty() {
        return;
    }
    for (hi, h) in plan.hosts.iter().enumerate() {
        for i in &h.interfaces {
            let Some((node, at)) = seen.get(i.mac.as_str()) else { continue };
            // A node's own boot card, or a node whose MAC clash is reported above.
            if *node == h.name || h.kind == crate::plan::HostKind::Baremetal {
                continue;
            }
            let here = origins.span(hi, &i.name, "mac");
            diags.push(
                Diagnostic::error("mln::baremetal::duplicate_mac", format!("{}'s {} has bare-metal host {node}'s MAC {}", h.name, i.name, i.mac))
                    .label(here, format!("{}'s {}", h.name, i.name))
                    .label(*at, format!("{node}'s")),
            );
        }
    }
}

pub fn check(plan: &Plan, origins: &Origins, diags: &mut Diagnostics) {
    node_macs(plan, origins, diags);
    // Host and interface indexes; spans are looked up only for a clash.
    // Sized for every interface and with a cheaper (still randomly
    // seeded) hasher: growing SipHash tables was 5% of planning 100,000
    // hosts.
    let n: usize = plan.hosts.iter().map(|h| h.interfaces.len()).sum();
    let mut addresses: HashMap<&str, (usize, usize), foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(n, Default::default());
    let mut macs: HashMap<&str, (usize, usize), foldhash::fast::RandomState> = HashMap::with_capacity_and_hasher(n, Default::default());
    let switch_names: Vec<&str> = plan.switches.iter().map(|s| s.name.as_str()).collect();
    let span = |(h, i): (usize, usize), key: &str| origins.span(h, &plan.hosts[h].interfaces[i].name, key);
    for (hi, h) in plan.hosts.iter().enumerate() {
        for (ii, i) in h.interfaces.iter().enumerate() {
            let here = (hi, ii);
            if let Some(a) = &i.address {
                if let Some(at) = addresses.insert(a, here) {
                    let other = &plan.hosts[at.0].name;
                    diags.push(
                        Diagnostic::error("mln::network::duplicate_address", format!("{} and {} both have address {a}", other, h.name))
                            .label(span(here, "address"), format!("{}'s {}", h.name, i.name))
                            .label(span(at, "address"), format!("{other}'s")),
                    );
                }
            }
            // A node's boot card: a clash is reported once, as the node's
            // (`mln::baremetal::duplicate_mac`).
            let boot_card = h.baremetal.as_ref().is_some_and(|n| n.mac == i.mac);
            if !boot_card {
                if let Some(at) = macs.insert(&i.mac, here) {
                    let other = &plan.hosts[at.0].name;
                    diags.push(
                        Diagnostic::error("mln::network::duplicate_mac", format!("{} and {} both have MAC {}", other, h.name, i.mac))
                            .label(span(here, "mac"), format!("{}'s {}", h.name, i.name))
                            .label(span(at, "mac"), format!("{other}'s")),
                    );
                }
            }
            if let Some(sw) = &i.switch {
                if !switch_names.contains(&sw.as_str()) {
                    let mut d = Diagnostic::error("mln::network::unknown_switch", format!("switch `{sw}` does not exist"))
                        .label(span(here, "switch"), "");
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
