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
        fallback: None,
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
    let part = node.partition_and_format("/dev/vda", None, mln::baremetal::deploysys::PartitionTable::Dos).unwrap();
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

/// The CI project through the real CLI (issue 13, tests 1 to 4 in one
/// build, on one rig): four bare-metal nodes, a node with a wrong IPMI
/// password, a node whose NIC is unplugged, a diskless node and two VMs
/// (the test guest, embedded libvirt), all on one switch: the switch names
/// the rig's bridge (`bridge mlbN`), the VMs are attached to it and mln's
/// dnsmasq serves it (the fabric file names no interface).
///
/// `mln env add` the test guest's root as a tar environment and the deploy
/// system's kernel and RAM root as a diskless one; `mln build` deploys the
/// four nodes at once (deploy system by IPMI from the dnsmasq mln runs, the
/// tar image onto a new partition, the plan's configuration, a bootloader,
/// then the classical boot: profile to the local disk, a reboot) and builds
/// the VMs. Each node boots from its own disk (its bootloader's line on its
/// console) and its console reports its planned hostname, address and users
/// from its disk, and the nodes and the VMs ping one another (each runs
/// `mln-reach` at startup: its console says which answered).
/// * bm3's first deploy-system boot is cut (powered off once its kernel and
///   RAM root are loaded): its cluster (`[baremetal.flaky]`) gives one
///   retry where `default` gives none; it is retried and deployed.
/// * bm4's IPMI password file is wrong: every reboot level is refused, it
///   is KO with the reason and stays off.
/// * bm5 never answers (its NIC unplugged): KO after its cluster's short
///   deploy-system timeout (`[baremetal.dead]`), with the reason.
/// * bm6 has no disk: it boots the diskless environment with its name and
///   address and reports them (and that it sees no disk), and its planned
///   user, its own file and startup command, served from the boot tree.
///
/// `status` shows the nodes; `stats` one deployment each, bm4's and bm5's
/// failed with their reasons, bm3's retry; `stop` of bm0 is a clean
/// power-off over SSH (the environment's dropbear), of bm6 a power cut
/// through IPMI; bm0 started again boots from its disk again; once the
/// site gives the default cluster a `power_command` (a PDU with an outlet
/// for bm4), bm4 is started and stopped through it (`stats` says so);
/// `remove` leaves no lease or profile, says the disks stay, and stops
/// dnsmasq.
#[test]
#[ignore]
fn mln_build_deploys_the_nodes_of_a_mixed_project() {
    Rig::available().unwrap();
    let node = NodeKind { disk_mib: Some(64), memory_mib: 384 };
    let idle = NodeKind { disk_mib: Some(64), memory_mib: 128 };
    let rig = Rig::new(&[node, node, node, node, idle, idle, NodeKind { disk_mib: None, memory_mib: 256 }]);
    let d = rig.dir.path();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = d.join("state");
    let wrong = d.join("wrong-password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    rig.unplug(&rig.nodes[5]);
    let guest = state.join("templates/mln-testguest");
    assert!(std::process::Command::new("bash").arg(root.join("testguest/build.sh")).arg(&guest).status().unwrap().success());
    let envdir = d.join("env");
    std::fs::create_dir_all(&envdir).unwrap();
    for f in ["rootfs.ext4", "vmlinuz", "initrd.gz"] {
        std::fs::copy(guest.join(f), envdir.join(f)).unwrap();
    }
    assert!(std::process::Command::new("bash").arg(root.join("testguest/env.sh")).arg(&envdir).status().unwrap().success());
    // The deploy system, built where mln keeps it (mln builds it there
    // itself when it is missing); its kernel and RAM root are also the
    // diskless environment, which reports what it was given.
    let ds = state.join("baremetal/deploysys");
    assert!(std::process::Command::new("bash").arg(root.join("deploysys/build.sh")).arg(&ds).status().unwrap().success());
    let ram = d.join("ramroot");
    std::fs::create_dir_all(&ram).unwrap();
    for f in ["initrd.gz", "cmdline"] {
        std::fs::copy(ds.join(f), ram.join(f)).unwrap();
    }
    let kernel = std::fs::read_dir(&ds).unwrap().flatten().map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with("vmlinuz")).unwrap();
    std::fs::copy(&kernel, ram.join("vmlinuz")).unwrap();
    std::fs::write(
        ram.join("env.toml"),
        format!(
            "name = \"ramroot\"\nos = \"linux\"\nkernel = \"vmlinuz\"\ninitrd = \"initrd.gz\"\nkernel_params = \"{}\"\n\n[image]\nfile = \"initrd.gz\"\nkind = \"dd\"\ncompression = \"none\"\n",
            std::fs::read_to_string(ds.join("cmdline")).unwrap().trim()
        ),
    )
    .unwrap();

    // dnsmasq and the VMs outlive mln's commands by design; not this test's.
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
    let added = ok(&["env", "add", ram.join("env.toml").to_str().unwrap()]);
    assert!(added.contains("added ramroot:1"), "{added}");

    // No `interface`: the boot service serves the bridge of the nodes' switch.
    // The `classical` boot: profile to the local disk, a soft reboot of
    // the deploy system; the disk's bootloader (installed by the install
    // step) boots the test guest.
    let steps = "install = [{ type = \"chain\", timeout = 300 }]\nboot = [{ type = \"classical\", timeout = 400 }]\n";
    // bm2's password file is wrong; its own power-command level (`power {
    // fallback { } }` in the project file: a "PDU", ipmitool with the
    // right password, the outlet by name) powers it instead. Its cluster's
    // `power_command` (the site default in the fabric file) is a PDU that
    // has no outlet for it and says so in a file: the node's own wins,
    // so it is never called.
    let pdu_sh = d.join("pdu.sh");
    std::fs::write(
        &pdu_sh,
        format!(
            "#!/bin/sh\ncase \"$1\" in bm2) port={} ;; *) echo \"no outlet for $1\" >&2; exit 1 ;; esac\nexec ipmitool -I lanplus -H 127.0.0.1 -p \"$port\" -U {IPMI_USER} -f {} power \"$2\"\n",
            rig.nodes[2].ipmi_port,
            rig.password_file.display()
        ),
    )
    .unwrap();
    let site_pdu = d.join("site-pdu.sh");
    let site_called = d.join("site-pdu-called");
    std::fs::write(&site_pdu, format!("#!/bin/sh\necho \"$@\" >> {}\necho \"no outlet for $1\" >&2\nexit 1\n", site_called.display())).unwrap();
    let t = |w: &str| format!("\"sh {} {{host}} {w}\"", site_pdu.display());
    let pdu = format!("power_command = {{ on = {}, off = {}, reset = {}, status = {} }}\n", t("on"), t("off"), t("reset"), t("status"));
    let fallback = ["on", "off", "reset", "status"].map(|w| format!("            {w} \"sh {} {{host}} {w}\"\n", pdu_sh.display())).concat();
    std::fs::write(
        state.join("fabric.toml"),
        format!(
            "[netboot]\nsubnet = \"{}\"\nserver = \"{}\"\n\n\
             [baremetal.default]\ndeploy_system = [{{ type = \"untrusted\", timeout = 400 }}]\n{steps}\n\
             [baremetal.flaky]\ndeploy_system = [{{ type = \"untrusted\", timeout = 400, retries = 1 }}]\n{steps}\n\
             [baremetal.dead]\ndeploy_system = [{{ type = \"untrusted\", timeout = 40 }}]\n{steps}\n\
             [baremetal.cold]\ndeploy_system = [{{ type = \"untrusted\", timeout = 400 }}]\ninstall = [{{ type = \"chain\", timeout = 300 }}]\nboot = [{{ type = \"hard\", timeout = 400 }}]\npartition_table = \"gpt\"\n{pdu}\n\
             [baremetal.ram]\nboot = [{{ type = \"hard\", timeout = 300 }}]\n",
            rig.subnet, rig.server
        ),
    )
    .unwrap();
    let net = rig.server.rsplit_once('.').unwrap().0;
    let vms = [("vm1", format!("{net}.50")), ("vm2", format!("{net}.51"))];
    let reach: Vec<String> = rig.nodes.iter().take(4).map(|n| n.address.clone()).chain(vms.iter().map(|(_, a)| a.clone())).collect();
    // Every peer may still be booting (the VMs are up minutes before the
    // nodes): each keeps pinging for up to 15 minutes.
    let startup = format!("    startup {{\n        MLN_REACH_SECS=900 mln-reach {}\n    }}\n", reach.join(" "));
    // The nodes also start the SSH server the environment carries
    // (testguest/env.sh), first: mln-reach runs for a while.
    let node_startup = format!("    startup {{\n        sh /fsroot/usr/lib/mln/sshd\n        MLN_REACH_SECS=900 mln-reach {}\n    }}\n", reach.join(" "));
    let ann = "ann $6$annsalt$LAgkzpFKuw7yFaw7MmvCaXCekwjFvMAwGHWDcwopJSM5f7L4eK8EOP6PAC0vCf.h7tf9D/wPG5flz6JnOBsmw0";
    let mut project = format!(
        "global {{\n    project metal\n}}\nswitch lan {{\n    bridge {}\n}}\nsuperclass node {{\n    baremetal\n    disk /dev/vda\n    environment testguest\n    network eth0 {{\n        switch lan\n        netmask 255.255.255.0\n    }}\n    users {{\n        {ann}\n    }}\n{node_startup}}}\n\
         superclass flaky {{\n    superclass node\n}}\nsuperclass dead {{\n    superclass node\n}}\nsuperclass cold {{\n    superclass node\n}}\nsuperclass ram {{\n    superclass node\n    environment ramroot\n    boot diskless\n}}\n",
        rig.bridge
    );
    for (i, n) in rig.nodes.iter().enumerate() {
        let class = match i {
            2 => "cold",
            3 => "flaky",
            5 => "dead",
            6 => "ram",
            _ => "node",
        };
        // The diskless node's own file and startup command (served to it
        // with its accounts: baremetal::diskless).
        let own = if i == 6 { "    files {\n        ramfile.txt /etc/mln-ram-file 0644\n    }\n    startup {\n        cat /etc/mln-ram-file\n    }\n" } else { "" };
        let below = if i == 2 { format!("        fallback {{\n{fallback}        }}\n") } else { String::new() };
        project += &format!(
            "host bm{i} {{\n    superclass {class}\n    mac {}\n    power {{\n        driver ipmi\n        address 127.0.0.1\n        port {}\n        user {IPMI_USER}\n        password_file {}\n{below}    }}\n    network eth0 {{\n        address {}\n    }}\n{own}}}\n",
            n.mac,
            n.ipmi_port,
            if i == 4 || i == 2 { &wrong } else { &rig.password_file }.display(),
            n.address
        );
    }
    for (vm, a) in &vms {
        project += &format!("host {vm} {{\n    template mln-testguest\n    memory 96M\n    network eth0 {{\n        switch lan\n        address {a}\n        netmask 255.255.255.0\n    }}\n{startup}}}\n");
    }
    std::fs::write(d.join("metal.mln"), &project).unwrap();
    std::fs::write(d.join("ramfile.txt"), "MLN-RAM-FILE bm6's own file\n").unwrap();

    let t0 = std::time::Instant::now();
    let build = std::thread::scope(|s| {
        let b = s.spawn(|| mln(&["build", "-f", "metal.mln"]));
        // bm3's first boot of the deploy system: cut once iPXE has loaded
        // its kernel and RAM root (the HTTP server's log, or dnsmasq's for
        // TFTP, says the RAM root went to bm3's address; iPXE prints
        // nothing on the serial console).
        let bm3 = &rig.nodes[3];
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while !BootLogs::at(&state).fetched_since_start(&bm3.address, "deploy/initrd") {
            assert!(std::time::Instant::now() < deadline, "bm3 did not load the deploy system");
            std::thread::sleep(Duration::from_millis(200));
        }
        rig.cut(bm3);
        b.join().unwrap()
    });
    let took = t0.elapsed();
    let (good, built) = build;
    let consoles: String = rig.nodes.iter().map(|n| format!("--- {}:\n{}\n", n.name, rig.console(n))).collect();
    let log = std::fs::read_to_string(state.join("baremetal/netboot/dnsmasq.log")).unwrap_or_default();
    let why = format!("mln build ({} s):\n{built}\n{consoles}--- dnsmasq:\n{log}", took.as_secs());
    assert!(!good, "KO nodes fail the build:\n{why}");
    let line = |h: &str| built.lines().find(|l| l.split_whitespace().any(|w| w == h)).unwrap_or_else(|| panic!("no line for {h}:\n{why}")).to_string();
    assert!(line("bm4").contains("KO: deploy_system") && line("bm4").contains("refused the credentials"), "{why}");
    assert_eq!(rig.state(&rig.nodes[4]), "shut off", "wrong credentials did nothing");
    assert!(line("bm5").contains("KO: deploy_system") && line("bm5").contains("did not finish within"), "{why}");
    for h in ["bm0", "bm1", "bm2", "bm3"] {
        assert!(line(h).contains("deployed testguest:1"), "{why}");
    }
    assert!(line("bm3").contains("1 retry"), "bm3's cut boot was retried:\n{why}");
    // bm2's boot is `hard` (its cluster): a reset through IPMI into its
    // disk, a GPT disk (its cluster's `partition_table`), the others DOS.
    assert!(line("bm2").contains("boot hard"), "{why}");
    assert!(line("bm2").contains("power through its power { fallback }") && line("bm2").contains("refused the credentials"), "{why}");
    assert!(!site_called.exists(), "the node's own fallback wins over its cluster's power_command: {:?}", std::fs::read_to_string(&site_called));
    let table = |n: &baremetal_rig::Node| {
        let o = std::process::Command::new("sfdisk").arg("--dump").arg(n.disk.as_ref().unwrap()).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let t2 = table(&rig.nodes[2]);
    assert!(t2.contains("label: gpt") && t2.contains("LegacyBIOSBootable"), "{t2}");
    assert!(table(&rig.nodes[0]).contains("label: dos"), "{}", table(&rig.nodes[0]));
    for h in ["bm0", "bm1", "bm3"] {
        assert!(line(h).contains("boot classical"), "{why}");
    }
    assert!(line("bm6").contains("deployed ramroot:1"), "{why}");
    for (vm, _) in &vms {
        assert!(line(vm).contains(" ok "), "{why}");
    }
    // `build` defines the VMs (as for any project); `start` boots them.
    // The nodes are running already: `start` leaves them as they are.
    let started = ok(&["start", "-p", "metal", "-h", "vm1", "-h", "vm2"]);
    assert!(started.matches(" ok ").count() >= 2, "{started}");
    for (i, n) in rig.nodes.iter().enumerate().take(4) {
        let c = rig.wait_console(n, "MLN-APPLIED", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm{i} did not report:\n{c}"));
        let line = c.lines().find(|l| l.contains("MLN-APPLIED")).unwrap();
        assert!(line.contains(&format!("\"hostname\":\"bm{i}\"")) && line.contains("\"source\":\"filesystem\""), "{line}");
        assert!(line.contains(&format!("\"eth0={}/24\"", n.address)), "the planned address: {line}");
        assert!(line.contains("\"users\":[\"ann\"]"), "the planned users: {line}");
        // Booted from its own disk: its bootloader's banner (which no
        // network boot prints) after the deploy system's last line, once,
        // and the test guest after it.
        let disk = c.find(BOOTLOADER).unwrap_or_else(|| panic!("bm{i} did not boot from its disk:\n{c}"));
        assert_eq!(c.matches(BOOTLOADER).count(), 1, "{c}");
        assert!(c.rfind("MLN-DEPLOY-UP").is_some_and(|d| d < disk) && c.rfind("MLN-APPLIED").is_some_and(|a| a > disk), "{c}");
    }
    let bm3 = rig.console(&rig.nodes[3]);
    assert_eq!(bm3.matches("MLN-DEPLOY-UP").count(), 1, "the cut boot never came up, the retry did:\n{bm3}");
    let c6 = rig.wait_console(&rig.nodes[6], "MLN-DISKLESS", Duration::from_secs(60)).unwrap_or_else(|c| panic!("bm6 did not report:\n{c}"));
    let l6 = c6.lines().find(|l| l.contains("MLN-DISKLESS")).unwrap();
    assert!(l6.contains("host=bm6") && !l6.contains("vda"), "{l6}");
    assert!(c6.contains(&format!("host=bm6 nic=eth0 dhcp addr={}/24", rig.nodes[6].address)), "{c6}");
    // Its full configuration, from the boot tree: the planned user, its
    // own file (read by its own startup command).
    let c6 = rig.wait_console(&rig.nodes[6], "MLN-RAM-FILE bm6's own file", Duration::from_secs(60)).unwrap_or_else(|c| panic!("bm6's startup did not read its file:\n{c}"));
    let conf = c6.lines().find(|l| l.contains("MLN-DISKLESS-CONFIG")).unwrap_or_else(|| panic!("{c6}"));
    assert!(conf.contains("host=bm6") && conf.contains("users=ann ") && conf.contains("etc/mln-ram-file") && conf.contains("etc/mln/startup.sh"), "{conf}");

    // The VMs and the nodes on one switch: each pinged every other.
    let everyone: serde_json::Value = reach.iter().map(|a| (a.clone(), serde_json::Value::Bool(true))).collect::<serde_json::Map<_, _>>().into();
    let reached = |c: &str| c.lines().find_map(|l| l.trim().strip_prefix("MLN-REACH-ALL ")).and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok());
    let wait_reach = |what: &str, read: &dyn Fn() -> String| {
        let deadline = std::time::Instant::now() + Duration::from_secs(900);
        loop {
            if let Some(r) = reached(&read()) {
                assert_eq!(r, everyone, "{what} reached");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what} did not say whom it reached:\n{}", read());
            std::thread::sleep(Duration::from_secs(1));
        }
    };
    for (i, n) in rig.nodes.iter().enumerate().take(4) {
        wait_reach(&format!("bm{i}"), &|| rig.console(n));
    }
    for (vm, _) in &vms {
        wait_reach(vm, &|| std::fs::read_to_string(state.join("projects/metal").join(vm).join("console.log")).unwrap_or_default());
    }
    assert_the_image_went_through_a_chain(&rig, &rig.nodes[..3], &["bm0", "bm1", "bm2"]);

    // bm4's power state cannot be read: said, and the command fails.
    let (good, status) = mln(&["status", "-p", "metal"]);
    assert!(!good, "{status}");
    for h in ["bm0", "bm1", "bm2", "bm3", "bm6"] {
        assert!(status.lines().any(|l| l.split_whitespace().any(|w| w == h) && l.contains("running")), "{status}");
    }
    assert!(status.lines().any(|l| l.contains("bm4") && l.contains("refused the credentials")), "{status}");
    assert!(status.contains("vm1") && status.contains("vm2"), "{status}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "metal", "--json"])).unwrap();
    let mut per: Vec<(String, u64, u64, u64)> = stats
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["host"].as_str().unwrap().to_string(), s["deployments"].as_u64().unwrap(), s["failed"].as_u64().unwrap(), s["retries"].as_u64().unwrap()))
        .collect();
    per.sort();
    let want: Vec<(String, u64, u64, u64)> = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 1), (4, 1, 0), (5, 1, 0), (6, 0, 0)].iter().map(|&(i, f, r)| (format!("bm{i}"), 1, f, r)).collect();
    assert_eq!(per, want, "{stats}");
    let last = |h: &str| stats.as_array().unwrap().iter().find(|s| s["host"] == h).unwrap()["last_failure"].as_str().unwrap_or("").to_string();
    assert!(last("bm4").contains("credentials"), "{stats}");
    assert!(last("bm5").contains("did not finish within"), "{stats}");
    let shown = ok(&["stats", "-h", "bm5"]);
    assert!(shown.contains("bm5") && shown.contains("did not finish within"), "{shown}");
    // Which escalation level rebooted each node in each step, and through
    // which power control: bm2's every reboot through its own fallback
    // (off: powered on at the hard level; the `hard` boot a reset), bm0
    // powered on by IPMI, then rebooted from its deploy system;
    // bm4's levels were all refused: no reboot acted.
    let power = |h: &str| stats.as_array().unwrap().iter().find(|s| s["host"] == h).unwrap()["last_power"].clone();
    assert_eq!(power("bm2"), serde_json::json!({"deploy_system": "hard (fallback)", "boot": "hard (fallback)"}), "{stats}");
    assert_eq!(power("bm0")["deploy_system"], "hard (ipmi)", "{stats}");
    // A soft reboot that did not take the deploy system down in time goes
    // on to IPMI's reset: either is a reboot that acted.
    assert!(["soft (ssh)", "hard (ipmi)"].contains(&power("bm0")["boot"].as_str().unwrap_or("")), "{stats}");
    assert_eq!(power("bm5"), serde_json::json!({"deploy_system": "hard (ipmi)"}), "{stats}");
    assert_eq!(power("bm4"), serde_json::json!({}), "{stats}");
    let shown = ok(&["stats", "-h", "bm2"]);
    assert!(shown.contains("power: boot hard (fallback), deploy_system hard (fallback)"), "{shown}");

    // `stop`: soft first (SSH `poweroff` with the project's key, which the
    // deployment put in root's authorized_keys), then hard through IPMI.
    // bm0 runs the environment's SSH server: a clean power-off, said on
    // its console, and no power cut.
    let keys = std::fs::read_to_string(state.join("projects/metal/login/id_ed25519.pub")).unwrap();
    assert!(keys.starts_with("ssh-ed25519 "), "{keys}");
    let n0 = &rig.nodes[0];
    rig.wait_console(n0, "mln-testguest: sshd started", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm0's sshd:\n{c}"));
    let (_, stopped) = mln(&["stop", "-p", "metal", "-h", "bm0", "-w", "120"]);
    let l0 = stopped.lines().find(|l| l.split_whitespace().any(|w| w == "bm0")).unwrap_or_else(|| panic!("{stopped}")).to_string();
    assert!(l0.contains("shut down") && !l0.contains("powered off"), "the soft path: {stopped}");
    assert!(rig.console(n0).contains("mln-testguest: poweroff requested"), "{}", rig.console(n0));
    assert_eq!(rig.state(n0), "shut off", "{stopped}");
    // bm6 (the diskless RAM root) lets no project key in: refused, then
    // powered off through IPMI.
    let (_, stopped) = mln(&["stop", "-p", "metal", "-h", "bm6", "-w", "5"]);
    assert!(stopped.lines().any(|l| l.contains("bm6") && l.contains("did not shut down") && l.contains("powered off")), "{stopped}");
    assert_eq!(rig.state(&rig.nodes[6]), "shut off", "{stopped}");
    // bm0 started again boots from its disk again (profile: the local disk).
    let started = ok(&["start", "-p", "metal", "-h", "bm0"]);
    assert!(started.contains("powered on"), "{started}");
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let c = rig.console(n0);
        if c.matches(BOOTLOADER).count() == 2 && c.rfind("MLN-APPLIED").is_some_and(|a| a > c.rfind(BOOTLOADER).unwrap()) {
            let last = &c[c.rfind(BOOTLOADER).unwrap()..];
            assert!(!last.contains("MLN-DEPLOY-UP") && last.contains("\"hostname\":\"bm0\""), "{c}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "bm0 did not boot from its disk again:\n{c}");
        std::thread::sleep(Duration::from_secs(2));
    }

    // The site puts a PDU under the default cluster (`power_command` in
    // the fabric file), with an outlet for bm4, whose IPMI password is
    // wrong and which has no `power { fallback }` of its own: `start` and
    // `stop` power it through its cluster's command. The node's power
    // state (the PDU drives virtualbmc with the right password), the
    // PDU's own log and `stats` say so.
    let bm4 = &rig.nodes[4];
    std::fs::write(
        &site_pdu,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\ncase \"$1\" in bm4) port={} ;; *) echo \"no outlet for $1\" >&2; exit 1 ;; esac\nexec ipmitool -I lanplus -H 127.0.0.1 -p \"$port\" -U {IPMI_USER} -f {} power \"$2\"\n",
            site_called.display(),
            bm4.ipmi_port,
            rig.password_file.display()
        ),
    )
    .unwrap();
    let fabric = std::fs::read_to_string(state.join("fabric.toml")).unwrap();
    std::fs::write(state.join("fabric.toml"), fabric.replacen("\n[baremetal.flaky]", &format!("{pdu}\n[baremetal.flaky]"), 1)).unwrap();
    assert_eq!(rig.state(bm4), "shut off");
    let started = ok(&["start", "-p", "metal", "-h", "bm4"]);
    let l4 = started.lines().find(|l| l.contains("bm4")).unwrap_or_else(|| panic!("{started}")).to_string();
    assert!(l4.contains("powered on") && l4.contains("its cluster's power_command") && l4.contains("refused the credentials"), "{started}");
    wait_state(&rig, bm4, "running");
    let (_, stopped) = mln(&["stop", "-p", "metal", "-h", "bm4", "-w", "5"]);
    let l4 = stopped.lines().find(|l| l.contains("bm4")).unwrap_or_else(|| panic!("{stopped}")).to_string();
    assert!(l4.contains("powered off") && l4.contains("its cluster's power_command"), "{stopped}");
    wait_state(&rig, bm4, "shut off");
    let called = std::fs::read_to_string(&site_called).unwrap_or_default();
    assert!(called.lines().any(|l| l == "bm4 on") && called.lines().any(|l| l == "bm4 off"), "the PDU's log: {called}");
    assert!(called.lines().all(|l| l.starts_with("bm4 ")), "no other node went through it: {called}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "metal", "-h", "bm4", "--json"])).unwrap();
    assert_eq!(stats[0]["last_power_ops"], serde_json::json!({"start": "on hard (power_command)", "stop": "off hard (power_command)"}), "{stats}");
    assert_eq!((stats[0]["deployments"].as_u64(), stats[0]["failed"].as_u64()), (Some(1), Some(1)), "power operations are no deployments: {stats}");
    let shown = ok(&["stats", "-h", "bm4"]);
    assert!(shown.contains("last power operations: start on hard (power_command), stop off hard (power_command)"), "{shown}");

    // The process beside dnsmasq runs (mln-libvirt as netboot::companion,
    // for this state's records): the IPv6 "no router here" answer, and the
    // boot files over HTTP, which the nodes' iPXE fetched their deploy
    // system from (its log; TFTP only if HTTP had failed).
    let companion = std::fs::read_to_string(state.join("baremetal/netboot/companion.pid")).expect("the network boot companion's pid file");
    let environ = std::fs::read(format!("/proc/{}/environ", companion.trim())).expect("the companion runs");
    assert!(environ.split(|b| *b == 0).any(|v| v == format!("MLN_NETBOOT_RECORDS={}", state.join("baremetal/netboot").display()).as_bytes()), "it serves this state");
    let http = std::fs::read_to_string(state.join("baremetal/netboot/http.log")).unwrap_or_default();
    for f in ["/deploy/vmlinuz", "/deploy/initrd"] {
        assert!(http.lines().any(|l| l.contains(&format!("GET {f} 200 ")) && l.contains(" bytes in ")), "{f} over HTTP: {http}");
    }
    let removed = ok(&["remove", "-p", "metal"]);
    assert!(removed.contains("disk is left as it is"), "{removed}");
    // Gone, or a zombie not yet reaped by init.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", companion.trim())).unwrap_or_default();
    assert!(stat.is_empty() || stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')), "the companion stopped with dnsmasq: {stat}");
    assert!(!state.join("baremetal/netboot/companion.pid").exists());
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
/// The node's disk holds two partitions (made beforehand, as a site's
/// disks are): those deployments go to the first; then `build -r` with
/// the `nomini` deploy system and `partition 2`: the running deployed
/// system writes the new deployment onto the partition it does not run
/// from (through the chain, with the `mln-hop` mln pushed to it), and the
/// node boots it from its disk; once more onto the partition it runs from:
/// refused, nothing written.
#[test]
#[ignore]
fn a_build_killed_during_install_is_run_again() {
    Rig::available().unwrap();
    let rig = Rig::new(&[NodeKind { disk_mib: Some(128), memory_mib: 384 }]);
    let n = &rig.nodes[0];
    let disk = n.disk.as_ref().unwrap();
    let parted = std::process::Command::new("sh").arg("-c").arg(format!("printf 'label: dos\\n,60M,L\\n,,L\\n' | sfdisk -q {}", disk.display())).status().unwrap();
    assert!(parted.success());
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
            "[netboot]\ninterface = \"{}\"\nsubnet = \"{}\"\nserver = \"{}\"\n\n[baremetal.default]\ndeploy_system = [{{ type = \"kexec\", timeout = 480 }}, {{ type = \"untrusted\", timeout = 300, retries = 1 }}]\ninstall = [{{ type = \"chain\", timeout = 300 }}]\nboot = [{{ type = \"kexec\", timeout = 480 }}]\n",
            rig.bridge, rig.subnet, rig.server
        ),
    )
    .unwrap();
    let project = |partition: u32, users: &str| {
        format!(
            "global {{\n    project again\n}}\nhost bm0 {{\n    baremetal\n    disk /dev/vda\n    partition {partition}\n    environment testguest\n    mac {}\n    power {{\n        driver ipmi\n        address 127.0.0.1\n        port {}\n        user {IPMI_USER}\n        password_file {}\n    }}\n    network eth0 {{\n        address {}\n        netmask 255.255.255.0\n    }}\n{users}    startup {{\n        sh /fsroot/usr/lib/mln/sshd\n    }}\n}}\n",
            n.mac,
            n.ipmi_port,
            rig.password_file.display(),
            n.address
        )
    };
    std::fs::write(d.join("metal.mln"), project(1, "")).unwrap();

    // The killed run's output, kept for a failure's message.
    let first_out = d.join("first-build.out");
    let out = std::fs::File::create(&first_out).unwrap();
    let mut first = cmd(&["build", "-f", "metal.mln"]).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap();
    rig.wait_console(n, "MLN-DEPLOY-UP", Duration::from_secs(300)).unwrap_or_else(|c| {
        let _ = first.kill();
        let _ = first.wait();
        let said = std::fs::read_to_string(&first_out).unwrap_or_default();
        let log = std::fs::read_to_string(state.join("baremetal/netboot/dnsmasq.log")).unwrap_or_default();
        panic!("the deploy system did not come up:\n{c}\n--- mln build:\n{said}\n--- dnsmasq:\n{log}")
    });
    // mln finds the deploy system up within a second: by now the install
    // has begun.
    std::thread::sleep(Duration::from_secs(5));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = rig.console(n).len();

    let logs = BootLogs::at(&state);
    let built = ok(&["build", "-f", "metal.mln"]);
    assert!(built.contains("deployed testguest:1") && built.contains("deploy_system kexec"), "{built}");
    let c = rig.wait_console(n, "MLN-APPLIED", Duration::from_secs(400)).unwrap_or_else(|c| panic!("bm0 did not report:\n{c}"));
    assert!(c[before..].matches("MLN-DEPLOY-UP").count() == 1, "a fresh deploy system for the re-run:\n{c}");
    // kexec'd from the deploy system the killed run left: no firmware
    // boot (iPXE says nothing on the serial console, but a network boot
    // fetches the deploy kernel from dnsmasq's TFTP).
    let kexec = c[before..].find("MLN-KEXEC host=bm0").unwrap_or_else(|| panic!("no kexec into the deploy system:\n{c}"));
    assert!(c[before + kexec..].contains("MLN-DEPLOY-UP"), "{c}");
    logs.assert_no_network_boot(&n.address);
    let line = c.lines().find(|l| l.contains("MLN-APPLIED")).unwrap();
    assert!(line.contains("\"hostname\":\"bm0\"") && line.contains(&n.address), "{line}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "again", "--json"])).unwrap();
    assert_eq!(stats.as_array().unwrap().len(), 1, "{stats}");
    assert_eq!((stats[0]["deployments"].as_u64(), stats[0]["failed"].as_u64()), (Some(1), Some(0)), "{stats}");

    // Deployed again (`build -r`) from the running deployed system: the
    // deploy system kexec'd from it over SSH (the test guest's dropbear,
    // with mln's key: `-r` made the project new keys), no firmware boot.
    rig.wait_console(n, "mln-testguest: sshd started", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm0's sshd:\n{c}"));
    let before = rig.console(n).len();
    let logs = BootLogs::at(&state);
    let again = ok(&["build", "-r", "-f", "metal.mln"]);
    assert!(again.contains("deployed testguest:1") && again.contains("deploy_system kexec"), "{again}");
    let deadline = Instant::now() + Duration::from_secs(240);
    let c = loop {
        let c = rig.console(n);
        if c[before..].contains("MLN-APPLIED") {
            break c;
        }
        assert!(Instant::now() < deadline, "bm0 did not report after build -r:\n{c}");
        std::thread::sleep(Duration::from_secs(2));
    };
    let after = &c[before..];
    let k = after.find("MLN-KEXEC host=bm0 into the deploy system").unwrap_or_else(|| panic!("not kexec'd from the deployed system:\n{after}"));
    assert_eq!(after.matches("MLN-DEPLOY-UP").count(), 1, "{after}");
    assert!(after.find("MLN-DEPLOY-UP").unwrap() > k && after.rfind("MLN-APPLIED").unwrap() > k, "{after}");
    logs.assert_no_network_boot(&n.address);

    // `nomini`: the running deployed system (from partition 1) writes the
    // deployment onto partition 2 itself, no deploy system at all; the
    // classical boot reboots it (softly: `reboot` in that system) into its
    // disk, whose bootloader now boots partition 2 (the active one). The
    // project gets a user the first partition's system does not have: the
    // system that reports it is the new one.
    rig.wait_console(n, "mln-testguest: sshd started", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm0's sshd:\n{c}"));
    std::fs::write(
        state.join("fabric.toml"),
        format!(
            "[netboot]\ninterface = \"{}\"\nsubnet = \"{}\"\nserver = \"{}\"\n\n[baremetal.default]\ndeploy_system = [{{ type = \"nomini\", timeout = 240 }}]\ninstall = [{{ type = \"chain\", timeout = 300 }}]\nboot = [{{ type = \"classical\", timeout = 400 }}]\n",
            rig.bridge, rig.subnet, rig.server
        ),
    )
    .unwrap();
    let bob = "    users {\n        bob $6$annsalt$LAgkzpFKuw7yFaw7MmvCaXCekwjFvMAwGHWDcwopJSM5f7L4eK8EOP6PAC0vCf.h7tf9D/wPG5flz6JnOBsmw0\n    }\n";
    std::fs::write(d.join("metal.mln"), project(2, bob)).unwrap();
    let before = rig.console(n).len();
    let logs = BootLogs::at(&state);
    let nomini = ok(&["build", "-r", "-f", "metal.mln"]);
    assert!(nomini.contains("deployed testguest:1") && nomini.contains("deploy_system nomini") && nomini.contains("boot classical"), "{nomini}");
    let deadline = Instant::now() + Duration::from_secs(400);
    let c = loop {
        let c = rig.console(n);
        if c[before..].contains("MLN-APPLIED") {
            break c;
        }
        assert!(Instant::now() < deadline, "bm0 did not report after the nomini build:\n{c}");
        std::thread::sleep(Duration::from_secs(2));
    };
    let after = &c[before..];
    assert!(!after.contains("MLN-DEPLOY-UP") && !after.contains("MLN-KEXEC"), "no deploy system under nomini:\n{after}");
    // Booted from its disk (the bootloader's banner), the new partition's
    // system: its configuration has bob.
    let banner = after.find(BOOTLOADER).unwrap_or_else(|| panic!("bm0 did not boot from its disk:\n{after}"));
    let line = after.lines().find(|l| l.contains("MLN-APPLIED")).unwrap();
    assert!(after.find("MLN-APPLIED").unwrap() > banner, "{after}");
    assert!(line.contains("\"hostname\":\"bm0\"") && line.contains("\"users\":[\"bob\"]") && line.contains(&n.address), "{line}");
    logs.assert_no_network_boot(&n.address);
    let dump = String::from_utf8_lossy(&std::process::Command::new("sfdisk").arg("--dump").arg(disk).output().unwrap().stdout).into_owned();
    let active: Vec<&str> = dump.lines().filter(|l| l.contains("bootable")).collect();
    assert!(active.len() == 1 && active[0].contains("2 :"), "partition 2 is the one booted: {dump}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "again", "--json"])).unwrap();
    assert_eq!((stats[0]["deployments"].as_u64(), stats[0]["failed"].as_u64()), (Some(3), Some(0)), "{stats}");
    // nomini rebooted nothing to start; the boot was a soft reboot of the
    // running system (or, if that did not take it down, IPMI's reset).
    let power = &stats[0]["last_power"];
    assert!(power.get("deploy_system").is_none() && ["soft (ssh)", "hard (ipmi)"].contains(&power["boot"].as_str().unwrap_or("")), "{stats}");
    // The running system got mln's `mln-hop` (pushed into its /tmp) and
    // ran it (same libc): its console's chain line says so.
    let chain = after.lines().find(|l| l.contains("MLN-CHAIN host=bm0 ")).unwrap_or_else(|| panic!("no chain line from the running system:\n{after}"));
    assert!(chain.contains("hop=mln-hop") && chain.contains("sink=0"), "{chain}");

    // nomini again onto partition 2, which the running system now runs
    // from (mounted at /fsroot): refused by the running system's check,
    // naming the node and the reason, before anything is written (the
    // disk's bytes are the same: its root is mounted read-only), and the
    // node left running its system, not rebooted.
    let booted = rig.wait_console(n, "mln-testguest: sshd started", Duration::from_secs(120)).unwrap_or_else(|c| panic!("bm0's sshd:\n{c}"));
    assert!(booted[before..].contains("mln-testguest: sshd started"), "sshd of the new system:\n{}", &booted[before..]);
    let disk_sum = || {
        let o = std::process::Command::new("sha256sum").arg(disk).output().unwrap();
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("").to_string()
    };
    let (disk_before, before) = (disk_sum(), rig.console(n).len());
    let out = cmd(&["build", "-r", "-f", "metal.mln"]).output().unwrap();
    let refused = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{refused}");
    let l0 = refused.lines().find(|l| l.split_whitespace().any(|w| w == "bm0")).unwrap_or_else(|| panic!("no line for bm0:\n{refused}"));
    assert!(l0.contains("KO: deploy_system") && l0.contains("/dev/vda2 is in use by the running system"), "{refused}");
    assert_eq!(disk_sum(), disk_before, "nothing written to the disk:\n{refused}");
    assert_eq!(rig.state(n), "running", "{refused}");
    let c = rig.console(n);
    assert!(!c[before..].contains("MLN-CHAIN") && !c[before..].contains(BOOTLOADER), "no install, no reboot:\n{}", &c[before..]);
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", "-p", "again", "--json"])).unwrap();
    assert_eq!((stats[0]["deployments"].as_u64(), stats[0]["failed"].as_u64()), (Some(4), Some(1)), "{stats}");
    assert!(stats[0]["last_failure"].as_str().unwrap_or("").contains("in use by the running system"), "{stats}");
    ok(&["remove", "-p", "again"]);
    assert_eq!(std::fs::read_to_string(state.join("baremetal/netboot/leases")).unwrap(), "", "no lease left");
    assert_eq!(std::fs::read_dir(state.join("baremetal/tftp/nodes")).unwrap().count(), 0, "no profile left");
}

/// The logs of the network boot's file servers (dnsmasq's TFTP, the
/// companion's HTTP), from where they were when marked (a shorter log was
/// started anew).
struct BootLogs {
    tftp: (std::path::PathBuf, usize),
    http: (std::path::PathBuf, usize),
}

impl BootLogs {
    fn at(state: &std::path::Path) -> BootLogs {
        let mark = |f: &str| {
            let p = state.join("baremetal/netboot").join(f);
            let len = std::fs::read_to_string(&p).map(|t| t.len()).unwrap_or(0);
            (p, len)
        };
        BootLogs { tftp: mark("dnsmasq.log"), http: mark("http.log") }
    }

    fn since((path, from): &(std::path::PathBuf, usize)) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.len() >= *from { text[*from..].to_string() } else { text }
    }

    /// Whether `file` of the boot tree went to `address` since the mark.
    fn fetched(&self, address: &str, file: &str) -> bool {
        Self::since(&self.tftp).contains(&format!("{file} to {address}"))
            || Self::since(&self.http).lines().any(|l| l.contains(&format!(" {address}:")) && l.contains(&format!(" GET /{file} 200 ")))
    }

    /// [`fetched`](Self::fetched) since the logs began.
    fn fetched_since_start(&self, address: &str, file: &str) -> bool {
        BootLogs { tftp: (self.tftp.0.clone(), 0), http: (self.http.0.clone(), 0) }.fetched(address, file)
    }

    /// No network boot of the deploy system for `address` since the mark.
    fn assert_no_network_boot(&self, address: &str) {
        assert!(!self.fetched(address, "deploy/vmlinuz"), "a firmware boot fetched the deploy kernel:\n{}{}", Self::since(&self.tftp), Self::since(&self.http));
    }
}

/// The deploy systems said on their consoles what their chain receivers
/// got: the nodes that came up together (bm3's first boot is cut, bm4 and
/// bm5 never come) took one image (the same SHA-256, decompressed and
/// written), and at least one forwarded it to another of them.
/// The banner of the bootloader the install step puts on a node's disk
/// (extlinux; on the serial console by its `SERIAL` line).
const BOOTLOADER: &str = "SYSLINUX 6.";

fn assert_the_image_went_through_a_chain(rig: &Rig, nodes: &[baremetal_rig::Node], hosts: &[&str]) {
    let consoles: Vec<String> = nodes.iter().map(|n| rig.console(n)).collect();
    let lines: Vec<(usize, String)> = consoles
        .iter()
        .zip(hosts)
        .enumerate()
        .filter_map(|(i, (c, h))| c.lines().find(|l| l.contains(&format!("MLN-CHAIN host={h} "))).map(|l| (i, l.to_string())))
        .collect();
    assert!(lines.len() >= 2, "at least two of {hosts:?} in a chain: {lines:?}\n{}", consoles.join("\n----\n"));
    let field = |l: &str, k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap_or("").to_string();
    for (_, l) in &lines {
        assert!(field(l, "filter") == "0" && field(l, "sink") == "0", "decompressed and written: {l}");
        assert_eq!(field(l, "sum").len(), 64, "{l}");
        assert_eq!(field(l, "sum"), field(&lines[0].1, "sum"), "one image: {lines:?}");
    }
    let forwarded = lines.iter().any(|(i, l)| {
        let next = field(l, "next");
        field(l, "fwd") == "0" && lines.iter().any(|(j, _)| j != i && nodes[*j].address == next)
    });
    assert!(forwarded, "a node forwarded the image to another: {lines:?}");
}
