//! Placement check at plan time: every service host's share against what
//! the fabric file says it can take (VM count, memory, virtual CPUs).

use super::config::Fabric;
use crate::compile::Compilation;
use crate::diag::Diagnostic;

pub fn check(c: &Compilation, fabric: &Fabric) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // Grouped in one pass, in the order the service hosts first appear: a
    // scan of every host per service host was 8% of planning 100,000 hosts.
    let mut groups: Vec<(&str, Vec<&crate::plan::Host>)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for h in &c.plan.hosts {
        let Some(name) = h.service_host.as_deref() else { continue };
        let i = *index.entry(name).or_insert_with(|| {
            groups.push((name, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(h);
    }
    for (name, mine) in groups {
        let span = |host: &str| c.span_of(host, "service_host");
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
        // Saturating: huge values cannot wrap below a limit (row 9).
        let mem = total(&mine, |h| h.memory_mib);
        let cpus = total(&mine, |h| u64::from(h.vcpus));
        let mut over = Vec::new();
        // The first host that does not fit, to point at.
        let mut first = None;
        if let Some(max) = s.max_vms {
            if mine.len() as u64 > u64::from(max) {
                over.push(format!("{} VMs (it takes {max})", mine.len()));
                first = first.or(Some(max as usize));
            }
        }
        if let Some(m) = s.memory_mib.filter(|&m| mem > m) {
            over.push(format!("{mem} MiB of memory (it has {m} MiB for VMs)"));
            first = first.or(first_over(&mine, m, |h| h.memory_mib));
        }
        if let Some(v) = s.vcpus.filter(|&v| cpus > u64::from(v)) {
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

/// The sum of `take` over `hosts`, stopping at u64::MAX rather than
/// wrapping.
pub fn total(hosts: &[&crate::plan::Host], take: impl Fn(&crate::plan::Host) -> u64) -> u64 {
    hosts.iter().fold(0u64, |sum, h| sum.saturating_add(take(h)))
}

/// The first host whose share takes the running total past `limit`.
fn first_over(hosts: &[&crate::plan::Host], limit: u64, take: impl Fn(&crate::plan::Host) -> u64) -> Option<usize> {
    let mut sum = 0u64;
    hosts.iter().position(|h| {
        sum = sum.saturating_add(take(h));
        sum > limit
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemoryFs;

    fn compiled() -> Compilation {
        let text = "global {\n    project p\n}\nhost a {\n    service_host h1\n    memory 64M\n}\nhost b {\n    service_host h1\n    memory 64M\n}\nhost c {\n    service_host h1\n    memory 64M\n}\n";
        let c = crate::compile(std::path::Path::new("p.mln"), &MemoryFs::default().with("p.mln", text), crate::plugin::Registry::new(vec![]));
        assert!(!c.diags.has_errors(), "{:?}", c.diags.sorted());
        c
    }

    fn fabric(text: &str) -> Fabric {
        Fabric::parse(text, std::path::Path::new("f.toml"), |_| Err(crate::fabric::config::ConfigError::Invalid(vec!["none".into()]))).unwrap()
    }

    fn messages(c: &Compilation, f: &Fabric) -> Vec<String> {
        check(c, f).iter().map(|d| d.message.to_string()).collect()
    }

    /// Row 9: memory (or vCPUs) that wrap around when summed came out
    /// under the limit.
    #[test]
    fn huge_shares_cannot_wrap_below_a_limit() {
        let f = fabric("[hosts.h1]\nmemory = \"1G\"\nvcpus = 8\n");
        let mut c = compiled();
        assert!(messages(&c, &f).is_empty());
        // 2^63 + 2^63 + 64 wraps to 64 MiB.
        c.plan.hosts[0].memory_mib = 1 << 63;
        c.plan.hosts[1].memory_mib = 1 << 63;
        let m = messages(&c, &f);
        assert!(m.len() == 1 && m[0].contains(&format!("{} MiB of memory (it has 1024 MiB for VMs)", u64::MAX)), "{m:?}");
        let mut c = compiled();
        for h in &mut c.plan.hosts {
            h.vcpus = u32::MAX;
        }
        let m = messages(&c, &f);
        assert!(m.len() == 1 && m[0].contains(&format!("{} virtual CPUs (it has 8)", 3 * u64::from(u32::MAX))), "{m:?}");
        let hosts: Vec<&crate::plan::Host> = c.plan.hosts.iter().collect();
        assert_eq!(total(&hosts, |_| u64::MAX), u64::MAX);
        assert_eq!(first_over(&hosts, u64::MAX - 1, |_| u64::MAX / 2 + 1), Some(1));
    }

    #[test]
    fn the_vm_count_is_compared_without_truncation() {
        let c = compiled();
        assert!(messages(&c, &fabric("[hosts.h1]\nmax_vms = 3\n")).is_empty());
        let m = messages(&c, &fabric("[hosts.h1]\nmax_vms = 2\n"));
        assert!(m.len() == 1 && m[0].contains("3 VMs (it takes 2)"), "{m:?}");
    }
}
