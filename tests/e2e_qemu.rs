//! End to end on real QEMU (software emulation), through libvirt's embedded
//! driver: a project's plan becomes NoCloud seeds and domains, the test
//! guests boot, and each reports on its serial console the hostname,
//! addresses and users it read from its seed.
//!
//! Slow (boots VMs): `cargo test --test e2e_qemu -- --ignored`, which
//! scripts/test.sh runs. Needs qemu-system-x86, libvirt, busybox-static,
//! cpio and linux-image-cloud-amd64 (scripts/setup.sh installs them).

mod common;
use common::*;
use mln::backend::domain::{domain_name, domain_xml, DomainSpec, DomainType, Nic};
use mln::backend::libvirt::Libvirt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The MLN-APPLIED line of a console log, once it appears.
fn applied(log: &Path, deadline: Instant) -> Option<serde_json::Value> {
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(log) {
            if let Some(line) = text.lines().find_map(|l| l.trim().strip_prefix("MLN-APPLIED ")) {
                return serde_json::from_str(line).ok();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn guests_boot_with_their_planned_configuration() {
    let work = tempfile::tempdir().unwrap();
    let guest = work.path().join("guest");
    let st = std::process::Command::new("bash").arg(root().join("testguest/build.sh")).arg(&guest).status().unwrap();
    assert!(st.success(), "building the test guest failed");

    let c = compile_disk(Path::new("examples/lab.mln"));
    assert!(c.ok(), "{}", rendered(&c));
    let lv = Libvirt::embedded(&work.path().join("libvirt")).expect("embedded libvirt opens");
    let mut names = Vec::new();
    for h in &c.plan.hosts {
        let dir = work.path().join(&h.name);
        std::fs::create_dir_all(&dir).unwrap();
        let seed = mln::guest::seed_files(&c.plan, h, &[]);
        let files: Vec<(&str, &[u8])> = seed.as_list().iter().map(|(n, d)| (*n, d.as_bytes())).collect();
        std::fs::write(dir.join("seed.img"), mln::guest::fat_image("cidata", &files).unwrap()).unwrap();
        let spec = DomainSpec {
            name: domain_name(&c.plan.project, &h.name),
            host: h,
            domain_type: DomainType::for_host(h, false).unwrap(),
            disk: None,
            seed: Some(dir.join("seed.img")),
            swap: None,
            kernel: Some((guest.join("vmlinuz"), Some(guest.join("initrd.gz")), "console=ttyS0 quiet".into())),
            console_log: dir.join("console.log"),
            nics: h.interfaces.iter().map(|_| Nic::User).collect(),
        };
        lv.define(&domain_xml(&spec)).unwrap();
        lv.start(&spec.name).unwrap();
        names.push((h, spec.name, spec.console_log));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut failures = Vec::new();
    for (h, name, log) in &names {
        let Some(report) = applied(log, deadline) else {
            failures.push(format!("{}: no MLN-APPLIED line in 180 s:\n{}", h.name, std::fs::read_to_string(log).unwrap_or_default()));
            continue;
        };
        let want_addrs: Vec<String> = h
            .interfaces
            .iter()
            .map(|i| {
                let prefix = i.netmask.as_deref().unwrap().parse::<std::net::Ipv4Addr>().map(|m| u32::from(m).leading_ones()).unwrap();
                format!("{}={}/{}", i.name, i.address.as_deref().unwrap(), prefix)
            })
            .collect();
        let want_users: Vec<&str> = h.users.iter().map(|u| u.name.as_str()).collect();
        let got_addrs: Vec<String> = report["addresses"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
        let got_users: Vec<&str> = report["users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        if report["hostname"] != h.name.as_str() || got_addrs != want_addrs || got_users != want_users {
            failures.push(format!("{name}: reported {report}, planned {} {want_addrs:?} {want_users:?}", h.name));
        }
    }
    for (_, name, _) in &names {
        lv.destroy_and_undefine(name).unwrap();
    }
    assert!(lv.domains().unwrap().is_empty(), "domains left behind");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
