//! Bare-metal nodes on the QEMU rig (tests/support/baremetal_rig.rs):
//! power through virtualbmc, network boot from the dnsmasq mln runs, the
//! deploy system. Slow (software emulation): `cargo test --test
//! e2e_baremetal -- --ignored`.

#[path = "support/baremetal_rig.rs"]
mod baremetal_rig;

use baremetal_rig::{NodeKind, Rig, IPMI_USER};
use mln::baremetal::power::{BootDevice, IpmiPower};
use mln::baremetal::{BootMode, EnvRef, NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerSpec};
use std::time::{Duration, Instant};

fn spec(n: &baremetal_rig::Node, password_file: &std::path::Path) -> NodeSpec {
    NodeSpec {
        mac: n.mac.clone(),
        power: PowerSpec::Ipmi { address: "127.0.0.1".into(), port: n.ipmi_port, user: IPMI_USER.into(), password_file: password_file.display().to_string() },
        disk: n.disk.as_ref().map(|_| "/dev/vda".into()),
        partition: None,
        environment: EnvRef { name: "testguest".into(), version: None },
        boot: if n.disk.is_some() { BootMode::Disk } else { BootMode::Diskless },
    }
}

fn wait_state(rig: &Rig, n: &baremetal_rig::Node, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rig.state(n) != want {
        assert!(Instant::now() < deadline, "{} is {:?}, not {want:?}", n.name, rig.state(n));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore]
fn ipmi_through_virtualbmc_powers_the_qemu_node_and_wrong_credentials_are_auth() {
    Rig::available().unwrap();
    let rig = Rig::new(&[NodeKind { disk_mib: Some(64), memory_mib: 128 }]);
    let n = &rig.nodes[0];
    let ipmi = IpmiPower::default();
    let s = spec(n, &rig.password_file);
    assert_eq!(ipmi.status("n1", &s).unwrap(), PowerReading::Off);
    ipmi.bootdev("n1", &s, BootDevice::Pxe).unwrap();
    ipmi.act("n1", &s, PowerAction::On).unwrap();
    wait_state(&rig, n, "running");
    assert_eq!(ipmi.status("n1", &s).unwrap(), PowerReading::On);
    // A reset restarts the guest: its console starts over (iPXE again).
    ipmi.act("n1", &s, PowerAction::Reset).unwrap();
    assert_eq!(rig.state(n), "running");
    ipmi.act("n1", &s, PowerAction::Off).unwrap();
    wait_state(&rig, n, "shut off");
    assert_eq!(ipmi.status("n1", &s).unwrap(), PowerReading::Off);

    let wrong = rig.dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let e = ipmi.act("n1", &spec(n, &wrong), PowerAction::On).unwrap_err();
    assert!(matches!(e, PowerError::Auth { .. }), "{e:?}");
    assert_eq!(rig.state(n), "shut off", "nothing happened with wrong credentials");
    let mut stranger = spec(n, &rig.password_file);
    if let PowerSpec::Ipmi { user, .. } = &mut stranger.power {
        *user = "nobody".into();
    }
    let e = ipmi.act("n1", &stranger, PowerAction::On).unwrap_err();
    assert!(matches!(e, PowerError::Auth { .. }), "{e:?}");
    // A port with no BMC: no answer, within the driver's deadline.
    let mut gone = spec(n, &rig.password_file);
    if let PowerSpec::Ipmi { port, .. } = &mut gone.power {
        *port = n.ipmi_port + 100;
    }
    let e = IpmiPower { timeout: Duration::from_secs(15), ..IpmiPower::default() }.status("n1", &gone).unwrap_err();
    assert!(matches!(e, PowerError::Unreachable { .. }), "{e:?}");
}

/// The whole path of one disk deployment on the rig: the node network-boots
/// the deploy system from the dnsmasq mln runs (powered through vbmc),
/// gets the test guest's root file system written to its disk with its
/// planned configuration, and boots it (kexec, then its console says the
/// planned hostname, read from its disk). A power cycle afterwards with
/// the Disk profile goes to the disk, not to the deploy system. Beside it,
/// a node with no disk boots a diskless environment (here the deploy
/// system's kernel and RAM root, which reports what it was given).
#[test]
#[ignore]
fn a_node_network_boots_the_deploy_system_and_gets_its_disk_written() {
    use mln::baremetal::deploysys::{Compression, DeployNode, DeploySystem};
    use mln::baremetal::netboot::{check::Subnet, Dnsmasq, Tree};
    use mln::baremetal::{BootNode, BootProfile, NetBoot};
    Rig::available().unwrap();
    let rig = Rig::new(&[NodeKind { disk_mib: Some(64), memory_mib: 384 }, NodeKind { disk_mib: None, memory_mib: 256 }]);
    let (n, n2) = (&rig.nodes[0], &rig.nodes[1]);
    let d = rig.dir.path();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let guest = d.join("testguest");
    assert!(std::process::Command::new("bash").arg(root.join("testguest/build.sh")).arg(&guest).status().unwrap().success());
    let ds = DeploySystem::prepare(&d.join("deploysys"), &root.join("deploysys/build.sh")).unwrap();

    let mut tree = Tree::new(d.join("tftp"), d.join("netboot"), Subnet::parse(&rig.subnet).unwrap(), rig.server.parse().unwrap()).unwrap();
    tree.deploy = Some(ds.boot_files().unwrap());
    let ram = ds.boot_files().unwrap();
    tree.environments = Some(std::sync::Arc::new(move |e: &EnvRef| if e.name == "ramroot" { Ok(ram.clone()) } else { Err(format!("no environment {}", e.name)) }));
    let boot = Dnsmasq::new(tree, &rig.bridge).unwrap();
    boot.start().unwrap();
    // dnsmasq outlives mln's commands by design; not this test's, even failed.
    struct Stop<'a>(&'a Dnsmasq);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.stop();
        }
    }
    let _stop = Stop(&boot);
    let bn = BootNode { project: "bm".into(), host: "bm-one".into(), mac: n.mac.clone(), address: n.address.clone() };
    boot.set_profile(&bn, &BootProfile::Deploy).unwrap();

    let s = spec(n, &rig.password_file);
    let ipmi = IpmiPower::default();
    ipmi.bootdev("n1", &s, BootDevice::Pxe).unwrap();
    ipmi.act("n1", &s, PowerAction::On).unwrap();
    let b2 = BootNode { project: "bm".into(), host: "bm-two".into(), mac: n2.mac.clone(), address: n2.address.clone() };
    boot.set_profile(&b2, &BootProfile::Diskless { environment: EnvRef { name: "ramroot".into(), version: None } }).unwrap();
    ipmi.act("n2", &spec(n2, &rig.password_file), PowerAction::On).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let node = DeployNode { name: "bm-one".into(), server: ds.server("bm-one", &n.address).unwrap(), rt: rt.handle().clone() };
    let up = rig.wait_console(n, "MLN-DEPLOY-UP", Duration::from_secs(300));
    let console = up.unwrap_or_else(|c| {
        let log = std::fs::read_to_string(d.join("netboot/dnsmasq.log")).unwrap_or_default();
        panic!("the deploy system did not come up:\n{c}\n--- dnsmasq:\n{log}")
    });
    assert!(console.contains(&format!("dhcp addr={}/24", n.address)), "the leased address by DHCP: {console}");
    node.wait(Duration::from_secs(60)).unwrap();

    // A tar environment (the test guest's root, taken out of its ext4
    // image with debugfs: no mount, no loop device), gzip-compressed,
    // onto a fresh partition table; decompressed on the node.
    let tree_dir = d.join("rootfs-tree");
    std::fs::create_dir_all(&tree_dir).unwrap();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("debugfs -R 'rdump / {t}' {img} 2>/dev/null && tar -C {t} -czf {d}/rootfs.tar.gz .", t = tree_dir.display(), img = guest.join("rootfs.ext4").display(), d = d.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let part = node.partition_and_format("/dev/vda", None).unwrap();
    assert_eq!(part, "/dev/vda1");
    node.write_image(&d.join("rootfs.tar.gz"), Compression::Gzip, true, &part).unwrap();
    assert_eq!(node.run("check", "cat /mnt/etc/hostname; cat /sys/block/vda/vda1/size", b"").unwrap().lines().next(), Some("template"));

    // Then a dd image of the whole disk (the test guest reads a whole-disk
    // ext4, not a partition), replacing the table.
    node.write_image(&guest.join("rootfs.ext4"), Compression::None, false, "/dev/vda").unwrap();
    node.mount_root("/dev/vda").unwrap();
    let c = mln::compile(
        std::path::Path::new("p.mln"),
        &mln::source::MemoryFs::default().with(
            "p.mln",
            format!("global {{\n project bm\n}}\nhost bm-one {{\n network eth0 {{\n  address {}\n  netmask 255.255.255.0\n }}\n}}\n", n.address),
        ),
        mln::plugin::Registry::new(vec![]),
    );
    assert!(c.ok(), "{:?}", c.diags);
    // A bare-metal host's interface is its real NIC (the plan gives VMs
    // MACs of their own; part A's plan gives a node its `mac`).
    let mut host = c.plan.hosts.iter().find(|h| h.name == "bm-one").unwrap().clone();
    host.interfaces[0].mac = n.mac.clone();
    node.write_config(&c.plan, &host, &[]).unwrap();
    assert_eq!(node.run("check", "cat /mnt/etc/hostname; grep -c '^root:' /mnt/etc/passwd", b"").unwrap(), "bm-one\n1\n");
    node.write_file("/boot/vmlinuz", &std::fs::read(guest.join("vmlinuz")).unwrap(), 0o644).unwrap();
    node.write_file("/boot/initrd.gz", &std::fs::read(guest.join("initrd.gz")).unwrap(), 0o644).unwrap();
    assert!(node.run_script("test -s \"$MLN_ROOT/boot/vmlinuz\" && echo post-install ran").unwrap().contains("post-install ran"));

    // Boot: the next network boot is the disk; kexec into the deployed system.
    boot.set_profile(&bn, &BootProfile::Disk).unwrap();
    node.kexec("/boot/vmlinuz", Some("/boot/initrd.gz"), "console=ttyS0 quiet no_timer_check").unwrap();
    let applied = rig.wait_console(n, "MLN-APPLIED", Duration::from_secs(240)).unwrap_or_else(|c| panic!("the deployed system did not report:\n{c}"));
    let line = applied.lines().find(|l| l.contains("MLN-APPLIED")).unwrap();
    assert!(line.contains("\"hostname\":\"bm-one\"") && line.contains("\"source\":\"filesystem\""), "{line}");
    assert!(line.contains(&n.address), "the planned address: {line}");

    let c2 = rig.wait_console(n2, "MLN-DEPLOY-UP", Duration::from_secs(120)).unwrap_or_else(|c| panic!("the diskless node did not come up:\n{c}"));
    let line = c2.lines().find(|l| l.contains("MLN-DISKLESS")).unwrap_or_else(|| panic!("{c2}"));
    assert!(line.contains("host=bm-two") && !line.contains("vda"), "{line}");
    assert!(c2.contains(&format!("host=bm-two nic=eth0 dhcp addr={}/24", n2.address)), "{c2}");

    boot.forget("bm", "bm-two").unwrap();
    boot.forget("bm", "bm-one").unwrap();
    assert_eq!(std::fs::read_to_string(d.join("netboot/leases")).unwrap(), "", "no lease left");
    boot.stop().unwrap();
    assert!(boot.pid().is_none());
}

/// The CI project through the real CLI: two bare-metal nodes and a VM (the
/// test guest, embedded libvirt) on one switch. `mln env add` the test
/// guest's root as a tar environment, `mln build` deploys both nodes at
/// once (deploy system by IPMI reboot from the dnsmasq mln runs, the tar
/// image onto a new partition, the plan's configuration, then a kexec
/// boot: the test guest's image has no bootloader) and builds the VM;
/// each node's console reports its planned hostname and address from its
/// disk; `status` shows the nodes; `stats` one deployment each; `remove`
/// leaves no lease or profile, says the disks stay, and stops dnsmasq.
/// A third node's IPMI password file is wrong: every reboot level is
/// refused, it is KO with the reason while the others are deployed, and
/// `stats` counts its failed deployment (issue 13, tests 2).
#[test]
#[ignore]
fn mln_build_deploys_the_nodes_of_a_mixed_project() {
    Rig::available().unwrap();
    let node = NodeKind { disk_mib: Some(64), memory_mib: 384 };
    let rig = Rig::new(&[node, node, node]);
    let d = rig.dir.path();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = d.join("state");
    let wrong = d.join("wrong-password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let guest = state.join("templates/mln-testguest");
    assert!(std::process::Command::new("bash").arg(root.join("testguest/build.sh")).arg(&guest).status().unwrap().success());
    let envdir = d.join("env");
    std::fs::create_dir_all(&envdir).unwrap();
    for f in ["rootfs.ext4", "vmlinuz", "initrd.gz"] {
        std::fs::copy(guest.join(f), envdir.join(f)).unwrap();
    }
    assert!(std::process::Command::new("bash").arg(root.join("testguest/env.sh")).arg(&envdir).status().unwrap().success());

    // dnsmasq and the VM outlive mln's commands by design; not this test's.
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("baremetal/netboot/dnsmasq.pid")) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
            let _ = std::process::Command::new("pkill").args(["-9", "-f", &format!("qemu-system.*{}/", self.0.display())]).status();
        }
    }
    let _cleanup = Cleanup(state.clone());
    let mln = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mln")).current_dir(d).arg("--state-dir").arg(&state).args(args).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let ok = |args: &[&str]| {
        let (good, out) = mln(args);
        assert!(good, "mln {args:?}:\n{out}");
        out
    };
    let added = ok(&["env", "add", envdir.join("env.toml").to_str().unwrap()]);
    assert!(added.contains("added testguest:1"), "{added}");

    std::fs::write(
        state.join("fabric.toml"),
        format!(
            "[netboot]\ninterface = \"{}\"\nsubnet = \"{}\"\nserver = \"{}\"\n\n[baremetal.default]\ndeploy_system = [{{ type = \"untrusted\", timeout = 300, retries = 1 }}]\ninstall = [{{ type = \"chain\", timeout = 300 }}]\nboot = [{{ type = \"kexec\", timeout = 240 }}]\n",
            rig.bridge, rig.subnet, rig.server
        ),
    )
    .unwrap();
    let net = rig.server.rsplit_once('.').unwrap().0;
    let mut project = "global {\n    project metal\n}\nswitch lan { }\nsuperclass node {\n    baremetal\n    disk /dev/vda\n    environment testguest\n    network eth0 {\n        switch lan\n        netmask 255.255.255.0\n    }\n}\n".to_string();
    for (i, n) in rig.nodes.iter().enumerate() {
        project += &format!(
            "host bm{i} {{\n    superclass node\n    mac {}\n    power {{\n        driver ipmi\n        address 127.0.0.1\n        port {}\n        user {IPMI_USER}\n        password_file {}\n    }}\n    network eth0 {{\n        address {}\n    }}\n}}\n",
            n.mac,
            n.ipmi_port,
            if i == 2 { &wrong } else { &rig.password_file }.display(),
            n.address
        );
    }
    project += &format!("host vm1 {{\n    template mln-testguest\n    memory 96M\n    network eth0 {{\n        switch lan\n        address {net}.50\n        netmask 255.255.255.0\n    }}\n}}\n");
    std::fs::write(d.join("metal.mln"), &project).unwrap();

    let (good, built) = mln(&["build", "-f", "metal.mln"]);
    assert!(!good, "a KO node fails the build:\n{built}");
    let ko = built.lines().find(|l| l.contains("bm2") && l.contains("KO: deploy_system")).unwrap_or_else(|| panic!("bm2 is not KO:\n{built}"));
    assert!(ko.contains("refused the credentials"), "{built}");
    assert_eq!(rig.state(&rig.nodes[2]), "shut off", "wrong credentials did nothing");
    let consoles: String = rig.nodes.iter().map(|n| format!("--- {}:\n{}\n", n.name, rig.console(n))).collect();
    let log = std::fs::read_to_string(state.join("baremetal/netboot/dnsmasq.log")).unwrap_or_default();
    assert_eq!(built.matches("deployed testguest:1").count(), 2, "mln build:\n{built}\n{consoles}--- dnsmasq:\n{log}");
    assert!(built.lines().any(|l| l.contains("vm1") && l.contains(" ok ")), "{built}");
    for (i, n) in rig.nodes.iter().enumerate().take(2) {
        let c = rig.wait_console(n, "MLN-APPLIED", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm{i} did not report:\n{c}"));
        let line = c.lines().find(|l| l.contains("MLN-APPLIED")).unwrap();
        assert!(line.contains(&format!("\"hostname\":\"bm{i}\"")) && line.contains("\"source\":\"filesystem\""), "{line}");
        assert!(line.contains(&n.address), "the planned address: {line}");
    }
    assert_the_image_went_through_one_chain(&rig, &rig.nodes[..2], &["bm0", "bm1"]);

    // bm2's power state cannot be read: said, and the command fails.
    let (good, status) = mln(&["status", "-p", "metal"]);
    assert!(!good, "{status}");
    for h in ["bm0", "bm1"] {
        assert!(status.lines().any(|l| l.contains(h) && l.contains("running")), "{status}");
    }
    assert!(status.lines().any(|l| l.contains("bm2") && l.contains("refused the credentials")), "{status}");
    assert!(status.contains("vm1"), "{status}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "metal", "--json"])).unwrap();
    let mut per: Vec<(String, u64, u64)> = stats.as_array().unwrap().iter().map(|s| (s["host"].as_str().unwrap().to_string(), s["deployments"].as_u64().unwrap(), s["failed"].as_u64().unwrap())).collect();
    per.sort();
    assert_eq!(per, vec![("bm0".to_string(), 1, 0), ("bm1".to_string(), 1, 0), ("bm2".to_string(), 1, 1)], "{stats}");
    let bm2 = stats.as_array().unwrap().iter().find(|s| s["host"] == "bm2").unwrap();
    assert!(bm2["last_failure"].as_str().unwrap_or("").contains("credentials"), "{stats}");

    let removed = ok(&["remove", "-p", "metal"]);
    assert!(removed.contains("disk is left as it is"), "{removed}");
    assert_eq!(std::fs::read_to_string(state.join("baremetal/netboot/leases")).unwrap(), "", "no lease left");
    let scripts: Vec<_> = std::fs::read_dir(state.join("baremetal/tftp/nodes")).unwrap().collect();
    assert!(scripts.is_empty(), "no boot profile left: {scripts:?}");
    assert!(!state.join("baremetal/netboot/dnsmasq.pid").exists(), "dnsmasq stopped with no node to serve");
}

/// kill -9 of `mln build` while the node runs the deploy system (its
/// install under way), then the same build again: it resumes, the node
/// is softly rebooted into a fresh deploy system and deployed once
/// (`stats`: one deployment, no failure: the killed run recorded none),
/// and `remove` leaves no lease or profile (issue 13, tests 5).
#[test]
#[ignore]
fn a_build_killed_during_install_is_run_again() {
    Rig::available().unwrap();
    let rig = Rig::new(&[NodeKind { disk_mib: Some(64), memory_mib: 384 }]);
    let n = &rig.nodes[0];
    let d = rig.dir.path();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = d.join("state");
    let envdir = d.join("env");
    assert!(std::process::Command::new("bash").arg(root.join("testguest/build.sh")).arg(&envdir).status().unwrap().success());
    assert!(std::process::Command::new("bash").arg(root.join("testguest/env.sh")).arg(&envdir).status().unwrap().success());
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("baremetal/netboot/dnsmasq.pid")) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _cleanup = Cleanup(state.clone());
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mln"));
        c.current_dir(d).arg("--state-dir").arg(&state).args(args);
        c
    };
    let ok = |args: &[&str]| {
        let out = cmd(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "mln {args:?}:\n{text}");
        text
    };
    ok(&["env", "add", envdir.join("env.toml").to_str().unwrap()]);
    std::fs::write(
        state.join("fabric.toml"),
        format!(
            "[netboot]\ninterface = \"{}\"\nsubnet = \"{}\"\nserver = \"{}\"\n\n[baremetal.default]\ndeploy_system = [{{ type = \"untrusted\", timeout = 300, retries = 1 }}]\ninstall = [{{ type = \"chain\", timeout = 300 }}]\nboot = [{{ type = \"kexec\", timeout = 240 }}]\n",
            rig.bridge, rig.subnet, rig.server
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("metal.mln"),
        format!(
            "global {{\n    project again\n}}\nhost bm0 {{\n    baremetal\n    disk /dev/vda\n    environment testguest\n    mac {}\n    power {{\n        driver ipmi\n        address 127.0.0.1\n        port {}\n        user {IPMI_USER}\n        password_file {}\n    }}\n    network eth0 {{\n        address {}\n        netmask 255.255.255.0\n    }}\n}}\n",
            n.mac,
            n.ipmi_port,
            rig.password_file.display(),
            n.address
        ),
    )
    .unwrap();

    let mut first = cmd(&["build", "-f", "metal.mln"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    rig.wait_console(n, "MLN-DEPLOY-UP", Duration::from_secs(300)).unwrap_or_else(|c| panic!("the deploy system did not come up:\n{c}"));
    // mln polls SSH every 2 s: by now the install has begun.
    std::thread::sleep(Duration::from_secs(5));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = rig.console(n).len();

    let built = ok(&["build", "-f", "metal.mln"]);
    assert!(built.contains("deployed testguest:1"), "{built}");
    let c = rig.wait_console(n, "MLN-APPLIED", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm0 did not report:\n{c}"));
    assert!(c[before..].matches("MLN-DEPLOY-UP").count() == 1, "a fresh deploy system for the re-run:\n{c}");
    let line = c.lines().find(|l| l.contains("MLN-APPLIED")).unwrap();
    assert!(line.contains("\"hostname\":\"bm0\"") && line.contains(&n.address), "{line}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "again", "--json"])).unwrap();
    assert_eq!(stats.as_array().unwrap().len(), 1, "{stats}");
    assert_eq!((stats[0]["deployments"].as_u64(), stats[0]["failed"].as_u64()), (Some(1), Some(0)), "{stats}");
    ok(&["remove", "-p", "again"]);
    assert_eq!(std::fs::read_to_string(state.join("baremetal/netboot/leases")).unwrap(), "", "no lease left");
    assert_eq!(std::fs::read_dir(state.join("baremetal/tftp/nodes")).unwrap().count(), 0, "no profile left");
}

/// Each node's deploy system said on its console what its chain receiver
/// got: one image (the same SHA-256, decompressed and written), the first
/// node forwarding it to the second, the second the chain's end.
fn assert_the_image_went_through_one_chain(rig: &Rig, nodes: &[baremetal_rig::Node], hosts: &[&str]) {
    let lines: Vec<String> = nodes
        .iter()
        .zip(hosts)
        .map(|(n, h)| {
            let c = rig.console(n);
            c.lines().find(|l| l.contains(&format!("MLN-CHAIN host={h} "))).map(str::to_string).unwrap_or_else(|| panic!("{h}: no chain line on its console:\n{c}"))
        })
        .collect();
    let field = |l: &str, k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap_or("").to_string();
    for l in &lines {
        assert!(field(l, "filter") == "0" && field(l, "sink") == "0", "decompressed and written: {l}");
        assert_eq!(field(l, "sum").len(), 64, "{l}");
    }
    assert_eq!(field(&lines[0], "sum"), field(&lines[1], "sum"), "one image: {lines:?}");
    let ends: Vec<usize> = (0..lines.len()).filter(|&i| field(&lines[i], "next") == "-").collect();
    assert_eq!(ends.len(), 1, "one end of the chain: {lines:?}");
    let first = 1 - ends[0];
    assert_eq!(field(&lines[first], "next"), nodes[ends[0]].address, "the first forwards to the other: {lines:?}");
    assert_eq!(field(&lines[first], "fwd"), "0", "{lines:?}");
}
