//! Placement check at plan time: every service host's share against what
//! the fabric file says it can take (VM count, memory, virtual CPUs).

use super::config::Fabric;
use crate::compile::Compilation;
use crate::diag::Diagnostic;

pub fn check(c: &Compilation, fabric: &Fabric) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for h in &c.plan.hosts {
        let Some(name) = h.service_host.as_deref() else { continue };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let span = |host: &str| c.host(host).and_then(|(_, r)| r.section.value("service_host").map(|v| v.origin.span));
        let mine: Vec<&crate::plan::Host> = c.plan.hosts.iter().filter(|x| x.service_host.as_deref() == Some(name)).collect();
        if !fabric.names().is_empty() && !fabric.knows(name) {
            let mut d = Diagnostic::error("mln::fabric::unknown_host", format!("service host `{name}` is not in the fabric file"))
                .help(format!(
                    "add `{name}` to {} (or fix the name: it has {})",
                    fabric.origin.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    fabric.names().join(", ")
                ));
            if let Some(s) = span(&mine[0].name) {
                d = d.label(s, format!("{} hosts are placed here", mine.len()));
            }
            out.push(d);
            continue;
        }
        let s = fabric.server(name);
        let mem: u64 = mine.iter().map(|h| h.memory_mib).sum();
        let cpus: u32 = mine.iter().map(|h| h.vcpus).sum();
        let mut over = Vec::new();
        // The first host that does not fit, to point at.
        let mut first = None;
        if let Some(max) = s.max_vms {
            if mine.len() as u32 > max {
                over.push(format!("{} VMs (it takes {max})", mine.len()));
                first = first.or(Some(max as usize));
            }
        }
        if let Some(m) = s.memory_mib.filter(|&m| mem > m) {
            over.push(format!("{mem} MiB of memory (it has {m} MiB for VMs)"));
            first = first.or(first_over(&mine, m, |h| h.memory_mib));
        }
        if let Some(v) = s.vcpus.filter(|&v| cpus > v) {
            over.push(format!("{cpus} virtual CPUs (it has {v})"));
            first = first.or(first_over(&mine, u64::from(v), |h| u64::from(h.vcpus)));
        }
        if over.is_empty() {
            continue;
        }
        let at = &mine[first.unwrap_or(0).min(mine.len() - 1)];
        let mut d = Diagnostic::error("mln::fabric::overcommitted", format!("service host `{name}` is over-committed: {}", over.join(", ")))
            .help(format!("place some hosts on another service host, or raise {name}'s limits in the fabric file"));
        if let Some(sp) = span(&at.name) {
            d = d.label(sp, format!("{} is the first host that does not fit on {name}", at.name));
        }
        out.push(d);
    }
    out
}

/// The first host whose share takes the running total past `limit`.
fn first_over(hosts: &[&crate::plan::Host], limit: u64, take: impl Fn(&crate::plan::Host) -> u64) -> Option<usize> {
    let mut sum = 0;
    hosts.iter().position(|h| {
        sum += take(h);
        sum > limit
    })
}
