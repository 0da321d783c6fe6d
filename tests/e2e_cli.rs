//! The VM commands end to end on real QEMU through the embedded libvirt
//! driver, as a user runs them (issue 3's acceptance 1, 2, 3 and 5).
//!
//! Slow (boots VMs): `cargo test --test e2e_cli -- --ignored`.

mod common;
use assert_cmd::Command;
use common::{lines_got, reach_all};
use std::path::Path;
use std::time::{Duration, Instant};

struct Mln {
    state: tempfile::TempDir,
}

/// A test that ends, passing or not, leaves no guest running: QEMU
/// processes outlive mln (that is the point), and guests left over would
/// slow every later test on a 2-core machine.
impl Drop for Mln {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill").args(["-9", "-f", &format!("qemu-system.*{}/", self.state.path().display())]).status();
    }
}

impl Mln {
    fn new() -> Mln {
        let state = tempfile::tempdir().unwrap();
        common::test_guest(&state.path().join("templates"));
        Mln { state }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("mln").unwrap();
        c.current_dir(common::root()).arg("--state-dir").arg(self.state.path());
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "mln {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    fn console(&self, project: &str, host: &str) -> String {
        std::fs::read_to_string(self.state.path().join("projects").join(project).join(host).join("console.log")).unwrap_or_default()
    }
    /// Waits until every host's console satisfies `pred`.
    fn wait_all(&self, project: &str, hosts: &[&str], secs: u64, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        for h in hosts {
            while !pred(&self.console(project, h)) {
                assert!(Instant::now() < deadline, "{h} did not get there in {secs} s:\n{}", self.console(project, h));
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// virsh on the test's embedded root, in its own process (a process can
/// hold one embedded root only, and the test runs several). It takes mln's
/// lock on the root, as a second mln would, and first waits (a balloon
/// query needs each domain's job) until the driver has reconnected to every
/// running guest: a process that exits during those reconnections can crash
/// and can have libvirt kill the guests.
fn virsh(m: &Mln, command: &str) -> String {
    let root = m.state.path().join("libvirt");
    let uri = format!("qemu:///embed?root={}", root.display());
    let script = format!("domstats --list-active --balloon; echo MLN-TEST-SETTLED; {command}");
    let out = std::process::Command::new("flock").arg(root.join("mln.lock")).args(["virsh", "-q", "-c", &uri, &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "virsh {command}: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout.split_once("MLN-TEST-SETTLED").map(|(_, rest)| rest.to_string()).unwrap_or_default()
}

/// The project's domains, asked of libvirt.
fn domains(m: &Mln) -> Vec<String> {
    let mut v: Vec<String> = virsh(m, "list --all --name").lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    v.sort();
    v
}

fn last_counter(console: &str) -> Option<u64> {
    console.lines().rev().find_map(|l| l.trim().strip_prefix("MLN-COUNTER ").and_then(|n| n.trim().parse().ok()))
}

fn applied(console: &str) -> Option<serde_json::Value> {
    console.lines().find_map(|l| l.trim().strip_prefix("MLN-APPLIED ")).and_then(|j| serde_json::from_str(j).ok())
}

/// What the test guest prints when it gets the ACPI power button.
const POWER_BUTTON: &str = "mln-testguest: power button: shutting down";

/// A host's line in a lifecycle summary, without the host: "ok shut down".
fn outcome(summary: &str, host: &str) -> String {
    let line = summary.lines().find(|l| l.split_whitespace().next() == Some(host)).unwrap_or_else(|| panic!("no line for {host}: {summary}"));
    line.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
}

#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn lab_lifecycle() {
    let m = Mln::new();
    let hosts = ["router", "a1", "b1", "b2"];
    m.ok(&["build", "-f", "examples/lab.mln"]);
    // Built again without -r: refused, and says why.
    let again = m.cmd().args(["build", "-f", "examples/lab.mln"]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already built"));

    // 1. Every guest reports its planned hostname, addresses and users.
    m.ok(&["start", "-p", "lab"]);
    m.wait_all("lab", &hosts, 180, |c| applied(c).is_some());
    let plan = common::compile_disk(Path::new("examples/lab.mln")).plan;
    for h in &plan.hosts {
        let a = applied(&m.console("lab", &h.name)).unwrap();
        assert_eq!(a["hostname"], h.name.as_str());
        let want: Vec<String> = h.interfaces.iter().map(|i| format!("{}={}/24", i.name, i.address.as_deref().unwrap())).collect();
        let got: Vec<String> = a["addresses"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(got, want, "{}", h.name);
        assert_eq!(a["users"], serde_json::json!(["student"]));
    }
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "lab", "--json"])).unwrap();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "running"), "{status}");
    // Each switch is a network: the hosts reach their gateway, the router,
    // over their own switch.
    let reach = |c: &str| c.lines().find_map(|l| l.trim().strip_prefix("MLN-REACH ")).and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok());
    m.wait_all("lab", &["a1", "b1", "b2"], 120, |c| reach(c).is_some());
    assert_eq!(reach(&m.console("lab", "a1")).unwrap(), serde_json::json!({"10.10.1.1": true}));
    assert_eq!(reach(&m.console("lab", "b1")).unwrap(), serde_json::json!({"10.10.2.1": true}));
    assert_eq!(reach(&m.console("lab", "b2")).unwrap(), serde_json::json!({"10.10.2.1": true}));
    let bridges = [mln::backend::bridge::name("lab", "lan_a"), mln::backend::bridge::name("lab", "lan_b")];
    assert!(bridges.iter().all(|b| mln::backend::bridge::exists(b)));

    // 2. Save and restore: the counters go on from where they were.
    m.wait_all("lab", &hosts, 60, |c| last_counter(c).is_some_and(|n| n >= 2));
    m.ok(&["stop", "-p", "lab", "-S"]);
    let saved: Vec<u64> = hosts.iter().map(|h| last_counter(&m.console("lab", h)).unwrap()).collect();
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "lab", "--json"])).unwrap();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "saved"), "{status}");
    m.ok(&["start", "-p", "lab"]);
    for (h, before) in hosts.iter().zip(&saved) {
        m.wait_all("lab", &[h], 60, |c| last_counter(c).is_some_and(|n| n > *before));
        let c = m.console("lab", h);
        assert_eq!(c.matches("MLN-GUEST-UP").count(), 1, "{h} rebooted instead of resuming");
        let after_restore: Vec<u64> = c.lines().filter_map(|l| l.trim().strip_prefix("MLN-COUNTER ")?.trim().parse().ok()).collect();
        assert!(after_restore.windows(2).all(|w| w[1] == w[0] + 1), "{h}: the counter did not continue: {after_restore:?}");
    }

    // 3. A graceful stop is graceful: the guest gets the ACPI power button,
    //    says so on its console and powers itself off well within -w (-w
    //    bounding a guest that does not: see the filesystem template test).
    //    -H forces at once.
    let out = m.ok(&["stop", "-p", "lab", "-h", "a1", "-w", "120"]);
    assert_eq!(outcome(&out, "a1"), "ok shut down", "{out}");
    assert!(!out.contains("forced"), "{out}");
    let console = m.ok(&["console", "-p", "lab", "-h", "a1", "--no-follow"]);
    assert!(!console.contains("\r\n"), "console lines end in LF, not the tty's CRLF");
    assert!(console.contains(POWER_BUTTON), "{console}");
    m.ok(&["stop", "-p", "lab", "-H"]);
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "lab", "--json"])).unwrap();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "shut off"), "{status}");

    // 5. Remove: no domain, no file, no record.
    m.ok(&["remove", "-p", "lab"]);
    assert!(m.ok(&["list"]).trim().is_empty());
    assert!(domains(&m).is_empty());
    assert_eq!(std::fs::read_dir(m.state.path().join("projects")).unwrap().count(), 0);
    assert!(bridges.iter().all(|b| !mln::backend::bridge::exists(b)), "switch bridges left behind");
    // Nor lock files, nor libvirt's logs of the project's domains.
    assert_eq!(std::fs::read_dir(m.state.path().join("locks")).unwrap().count(), 0);
    let logs: Vec<_> = std::fs::read_dir(m.state.path().join("libvirt/log/qemu")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(logs.is_empty(), "{logs:?}");
}

/// `build --start` is `build` then `start` in one process: both summaries,
/// every guest running and booted from its seed; refused with `--json`.
#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn build_start_builds_and_starts_in_one_command() {
    let m = Mln::new();
    let refused = m.cmd().args(["build", "--start", "--json", "-f", "examples/lab.mln"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(m.ok(&["list"]).trim().is_empty(), "a refused command built something");
    let out = m.ok(&["build", "--start", "-f", "examples/lab.mln"]);
    assert!(out.contains("build: 4 hosts") && out.contains("start: 4 hosts"), "{out}");
    assert_eq!(outcome(out.split("start: 4 hosts").nth(1).unwrap(), "a1"), "ok started", "{out}");
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "lab", "--json"])).unwrap();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "running"), "{status}");
    m.wait_all("lab", &["router", "a1", "b1", "b2"], 180, |c| applied(c).is_some());
    // Built already: refused as `build` is, and nothing is started again.
    let again = m.cmd().args(["build", "--start", "-f", "examples/lab.mln"]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already built"));
    m.ok(&["stop", "-p", "lab", "-H"]);
    m.ok(&["remove", "-p", "lab"]);
    assert!(domains(&m).is_empty());
}

#[test]
#[ignore = "slow: uses the embedded libvirt driver; run with --ignored"]
fn a_second_mln_on_the_same_project_is_refused() {
    let m = Mln::new();
    let state = mln::state::State::open(m.state.path()).unwrap();
    let _held = state.lock("quickstart").unwrap();
    let out = m.cmd().args(["build", "-f", "examples/quickstart.mln"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another mln is working on project quickstart"));
}

#[test]
#[ignore = "slow: copies disks with qemu-img; run with --ignored"]
fn a_build_killed_halfway_resumes_with_nothing_twice_and_nothing_left_over() {
    let m = Mln::new();
    // A template with a real disk (incompressible, so full copies take a
    // moment) and a six-host project that copies it in full.
    let t = m.state.path().join("templates/mln-testguest");
    let mut data = vec![0u8; 256 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(t.join("disk.img"), &data).unwrap();
    drop(data);
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("six.mln");
    std::fs::write(
        &project,
        "global {\n    project six\n    autoenum {\n        superclass s\n        numhosts 6\n    }\n}\nsuperclass s {\n    template mln-testguest\n    clone full\n    memory 64M\n}\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mln"))
        .arg("--state-dir")
        .arg(m.state.path())
        .args(["build", "-f"])
        .arg(&project)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some hosts are done and others are not.
    let hosts_dir = m.state.path().join("projects/six");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let disks = (1..=6).filter(|i| hosts_dir.join(format!("node{i}/disk.qcow2")).exists()).count();
        if disks >= 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let list = m.ok(&["list", "--json"]);
    assert!(list.contains("\"building\""), "the interrupted build is recorded as such: {list}");

    // Run again: it resumes (no -r needed) and completes.
    let out = m.ok(&["build", "-f", project.to_str().unwrap()]);
    assert!(out.contains("6 hosts") && !out.contains("FAILED"), "{out}");
    let want: Vec<String> = (1..=6).map(|i| format!("node{i}.six")).collect();
    assert_eq!(domains(&m), want, "each host built once");
    let state = mln::state::State::open(m.state.path()).unwrap();
    let mut recorded: Vec<String> = state.resources("six").unwrap().into_iter().filter(|r| r.kind == mln::state::ResourceKind::Domain).map(|r| r.ident).collect();
    recorded.sort();
    assert_eq!(recorded, want, "the state database agrees with libvirt");
    for i in 1..=6 {
        let d = hosts_dir.join(format!("node{i}"));
        let mut files: Vec<String> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(files, ["disk.qcow2", "seed.img"], "node{i}: no half-made or temporary files");
    }
    // Built, and what its machines are doing (none started yet).
    let list: serde_json::Value = serde_json::from_str(&m.ok(&["list", "--json"])).unwrap();
    assert_eq!((list[0]["phase"].as_str(), list[0]["state"].as_str()), (Some("built"), Some("shut off")), "{list}");
    m.ok(&["remove", "-p", "six"]);
    assert!(domains(&m).is_empty());
}

#[test]
#[ignore = "uses the embedded libvirt driver; run with --ignored"]
fn hooks_run_around_start_and_a_failing_one_aborts() {
    let m = Mln::new();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("after-start");
    let project = dir.path().join("hooks.mln");
    let write = |fail: bool| {
        std::fs::write(
            &project,
            format!(
                "global {{\n    project hooks\n    beforeProjectStart {{\n        echo checking $project\n        {}\n    }}\n    afterProjectStart {{\n        echo started > {}\n    }}\n}}\nhost h {{\n    template mln-testguest\n    memory 64M\n}}\n",
                if fail { "\"echo the network is not ready >&2; exit 3\"" } else { "true" },
                marker.display()
            ),
        )
        .unwrap()
    };
    write(true);
    m.ok(&["build", "-f", project.to_str().unwrap()]);
    let out = m.cmd().args(["start", "-p", "hooks"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hook beforeProjectStart failed") && err.contains("the network is not ready"), "{err}");
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "hooks", "--json"])).unwrap();
    assert_eq!(status[0]["state"], "shut off", "nothing starts when a before-hook fails");
    assert!(!marker.exists());

    write(false);
    m.ok(&["build", "-r", "-f", project.to_str().unwrap()]);
    m.ok(&["start", "-p", "hooks"]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "started\n");
    m.ok(&["remove", "-p", "hooks"]);
}

#[test]
#[ignore = "uses the embedded libvirt driver and qemu-img; run with --ignored"]
fn linked_disks_are_overlays_on_the_template_and_full_ones_are_copies() {
    let m = Mln::new();
    let t = m.state.path().join("templates/mln-testguest/disk.img");
    std::fs::write(&t, vec![7u8; 8 << 20]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("d.mln");
    std::fs::write(
        &project,
        "global {\n    project d\n}\nsuperclass s {\n    template mln-testguest\n    size 64M\n}\nhost a {\n    superclass s\n}\nhost b {\n    superclass s\n}\nhost c {\n    superclass s\n    clone full\n}\n",
    )
    .unwrap();
    m.ok(&["build", "-f", project.to_str().unwrap()]);
    let info = |h: &str| -> serde_json::Value {
        let p = m.state.path().join(format!("projects/d/{h}/disk.qcow2"));
        let out = std::process::Command::new("qemu-img").args(["info", "--output=json"]).arg(&p).output().unwrap();
        let check = std::process::Command::new("qemu-img").arg("check").arg(&p).output().unwrap();
        assert!(check.status.success(), "{h}: {}", String::from_utf8_lossy(&check.stdout));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b, c) = (info("a"), info("b"), info("c"));
    assert_eq!(a["backing-filename"].as_str().unwrap(), t.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(a["virtual-size"], 64 << 20);
    assert_eq!(b["backing-filename"], a["backing-filename"]);
    assert!(c.get("backing-filename").is_none(), "a full copy has no backing file");
    assert_eq!(c["virtual-size"], 64 << 20);
    // Writing into one overlay leaves the other and the template alone.
    let a_disk = m.state.path().join("projects/d/a/disk.qcow2");
    let w = std::process::Command::new("qemu-io").args(["-c", "write -P 0x55 0 1M"]).arg(&a_disk).output().unwrap();
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let read = |p: &std::path::Path| {
        let o = std::process::Command::new("qemu-io").args(["-c", "read -P 0x07 0 1M"]).arg(p).output().unwrap();
        String::from_utf8_lossy(&o.stdout).contains("read 1048576/1048576")
            && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed")
    };
    assert!(read(&m.state.path().join("projects/d/b/disk.qcow2")), "b still sees the template");
    assert!(!read(&a_disk), "a sees its own write");
    m.ok(&["remove", "-p", "d"]);
}

/// Starts virtlogd and libvirtd unless a system libvirt answers already.
fn system_libvirt() {
    let up = || std::process::Command::new("virsh").args(["-c", "qemu:///system", "version"]).output().is_ok_and(|o| o.status.success());
    if !up() {
        let _ = std::process::Command::new("virtlogd").arg("-d").status();
        let _ = std::process::Command::new("libvirtd").arg("-d").status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !up() {
            assert!(Instant::now() < deadline, "libvirtd did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
#[ignore = "slow: starts libvirtd and boots QEMU guests; run with --ignored"]
fn the_same_commands_work_through_qemu_system() {
    use std::os::unix::fs::PermissionsExt;
    system_libvirt();
    // libvirtd runs QEMU as another user: the state must be reachable.
    let state = tempfile::Builder::new().prefix("mln-system-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    common::test_guest(&state.path().join("templates"));
    let m = Mln { state };
    let run = |args: &[&str]| {
        let mut all = vec!["--connect", "qemu:///system"];
        all.extend_from_slice(args);
        m.ok(&all)
    };
    run(&["build", "-f", "examples/quickstart.mln"]);
    assert!(m.ok(&["list"]).contains("quickstart"));
    run(&["start", "-p", "quickstart"]);
    m.wait_all("quickstart", &["alpha", "beta"], 180, |c| applied(c).is_some());
    assert_eq!(applied(&m.console("quickstart", "beta")).unwrap()["hostname"], "beta");
    // Later commands use the connection the project was built with.
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "quickstart", "--json"])).unwrap();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "running"), "{status}");
    m.ok(&["remove", "-p", "quickstart"]);
    let out = std::process::Command::new("virsh").args(["-c", "qemu:///system", "list", "--all", "--name"]).output().unwrap();
    let left = String::from_utf8_lossy(&out.stdout);
    assert!(!left.contains(".quickstart"), "domains left behind: {left}");
}

#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn filesystem_templates_are_configured_in_place() {
    let m = Mln::new();
    // The test guest's ext4 root as a filesystem template: no seed disk,
    // the configuration is written into the image's /etc by mln.
    let src = m.state.path().join("templates/mln-testguest");
    let fs = m.state.path().join("templates/mln-testguest-fs");
    std::fs::create_dir_all(&fs).unwrap();
    for f in ["vmlinuz", "initrd.gz", "cmdline"] {
        std::fs::copy(src.join(f), fs.join(f)).unwrap();
    }
    std::fs::copy(src.join("rootfs.ext4"), fs.join("disk.img")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("fs.mln");
    std::fs::write(
        &project,
        "global {\n    project fst\n}\nhost web {\n    template mln-testguest-fs\n    memory 96M\n    network eth0 {\n        address 10.44.0.7\n        netmask 255.255.255.0\n    }\n    users {\n        ann $6$annsalt$LAgkzpFKuw7yFaw7MmvCaXCekwjFvMAwGHWDcwopJSM5f7L4eK8EOP6PAC0vCf.h7tf9D/wPG5flz6JnOBsmw0\n    }\n    startup {\n        echo hello\n    }\n    shutdown {\n        echo web is going down\n        sleep 600\n    }\n}\n",
    )
    .unwrap();
    let out = m.ok(&["build", "-f", project.to_str().unwrap()]);
    assert!(out.contains("filesystem template"), "{out}");
    let disk = m.state.path().join("projects/fst/web/disk.img");
    assert!(!m.state.path().join("projects/fst/web/seed.img").exists(), "no seed for a filesystem template");
    assert_eq!(mln::guest::fstemplate::read(&disk, "/etc/hostname").as_deref(), Some("web\n"));
    assert!(mln::guest::fstemplate::read(&disk, "/etc/mln/startup.sh").unwrap().contains("echo hello"));
    assert!(mln::guest::fstemplate::read(&disk, "/etc/passwd").unwrap().starts_with("root:"), "the image's own accounts are kept");
    m.ok(&["start", "-p", "fst"]);
    m.wait_all("fst", &["web"], 180, |c| applied(c).is_some());
    let a = applied(&m.console("fst", "web")).unwrap();
    assert_eq!(a["source"], "filesystem", "{a}");
    assert_eq!(a["hostname"], "web");
    assert_eq!(a["addresses"], serde_json::json!(["eth0=10.44.0.7/24"]));
    assert_eq!(a["users"], serde_json::json!(["ann"]));
    // Its startup commands (/etc/mln/startup.sh) ran once it was configured.
    m.wait_all("fst", &["web"], 60, |c| c.contains("mln-testguest: startup commands exited 0"));
    let console = m.console("fst", "web");
    let applied_at = console.find("MLN-APPLIED").unwrap();
    assert!(console[applied_at..].lines().any(|l| l.trim() == "hello"), "{console}");
    // The template itself is untouched.
    assert_eq!(mln::guest::fstemplate::read(&fs.join("disk.img"), "/etc/hostname").as_deref(), Some("template\n"));
    // A graceful stop runs the host's shutdown commands; these hang, so -w
    // bounds the wait and the guest is forced off.
    let out = m.ok(&["stop", "-p", "fst", "-w", "3"]);
    assert_eq!(outcome(&out, "web"), "WARNING did not shut down within 3 s: forced off", "{out}");
    let console = m.ok(&["console", "-p", "fst", "-h", "web", "--no-follow"]);
    let after = &console[console.find(POWER_BUTTON).unwrap_or_else(|| panic!("no power button: {console}"))..];
    assert!(after.contains("web is going down"), "the shutdown commands did not run: {console}");
    m.ok(&["remove", "-p", "fst"]);
}

/// Turns a state database back into the previous release's format (the
/// schema of tests/fixtures/state-v0.sql): what an upgrade finds.
fn downgrade_to_release_0(state: &std::path::Path) {
    let c = rusqlite::Connection::open(state.join("mln.db")).unwrap();
    c.execute_batch(
        "ALTER TABLE projects RENAME COLUMN phase TO state;
         ALTER TABLE projects DROP COLUMN places_json;
         DROP TABLE hosts;
         DROP TABLE environments;
         DROP TABLE deploy_steps;
         CREATE TABLE fabric_projects (name TEXT PRIMARY KEY, state TEXT NOT NULL, file TEXT NOT NULL,
             plan_json TEXT NOT NULL, servers_json TEXT NOT NULL, updated INTEGER NOT NULL);
         PRAGMA user_version = 0;",
    )
    .unwrap();
}

#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn a_project_built_before_the_schema_change_is_started_stopped_and_removed() {
    let m = Mln::new();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("up.mln");
    // The host boots its own kernel and ramdisk, owned by someone else:
    // libvirt gets private copies, the originals keep their owner.
    for f in ["vmlinuz", "initrd.gz", "cmdline"] {
        std::fs::copy(m.state.path().join("templates/mln-testguest").join(f), dir.path().join(f)).unwrap();
        std::os::unix::fs::chown(dir.path().join(f), Some(12345), Some(12345)).unwrap();
    }
    std::fs::write(
        &project,
        "global {\n    project up\n}\nhost u1 {\n    template mln-testguest\n    memory 96M\n    kernel vmlinuz\n    ramdisk initrd.gz\n}\n",
    )
    .unwrap();
    m.ok(&["build", "-f", project.to_str().unwrap()]);
    downgrade_to_release_0(m.state.path());
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", "up", "--json"])).unwrap();
    assert_eq!(status[0]["state"], "shut off", "{status}");
    m.ok(&["start", "-p", "up"]);
    m.wait_all("up", &["u1"], 180, |c| applied(c).is_some());
    let out = m.ok(&["stop", "-p", "up", "-w", "120"]);
    assert_eq!(outcome(&out, "u1"), "ok shut down", "{out}");
    for f in ["vmlinuz", "initrd.gz", "cmdline"] {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(dir.path().join(f)).unwrap().uid(), 12345, "{f} changed owner");
    }
    m.ok(&["remove", "-p", "up"]);
    assert!(domains(&m).is_empty());
    assert!(!m.state.path().join("projects/up").exists());
}

/// What the test guest last said it sees: memory (KiB) and disk sizes.
fn sees(console: &str) -> Option<serde_json::Value> {
    console.lines().rev().find_map(|l| l.trim().strip_prefix("MLN-SEES ")).and_then(|j| serde_json::from_str(j).ok())
}

fn disk_sectors(seen: &serde_json::Value, disk: &str) -> u64 {
    let disks = seen["disks"].as_str().unwrap_or_default();
    disks.split_whitespace().find_map(|d| d.strip_prefix(&format!("{disk}="))?.parse().ok()).unwrap_or(0)
}

fn domid(m: &Mln, domain: &str) -> String {
    virsh(m, &format!("domid {domain}")).trim().to_string()
}

/// Every class of change an upgrade applies, each checked from inside the
/// guest (what it says on its console), and the host it did not touch
/// running on undisturbed.
#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn an_upgrade_applies_each_class_and_leaves_the_rest_running() {
    let m = Mln::new();
    // A kernel bundle with a disk of its own (the test guest's root as
    // qcow2): a host with a disk to grow.
    let src = m.state.path().join("templates/mln-testguest");
    let with_disk = m.state.path().join("templates/mln-testguest-disk");
    std::fs::create_dir_all(&with_disk).unwrap();
    for f in ["vmlinuz", "initrd.gz", "cmdline"] {
        std::fs::copy(src.join(f), with_disk.join(f)).unwrap();
    }
    let st = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-O", "qcow2"])
        .arg(src.join("rootfs.ext4"))
        .arg(with_disk.join("disk.qcow2"))
        .status()
        .unwrap();
    assert!(st.success());
    let base_mib = std::fs::metadata(src.join("rootfs.ext4")).unwrap().len().div_ceil(1 << 20);
    let host = |name: &str, n: u8, extra: &str| {
        format!("host {name} {{\n    superclass node\n    network eth0 {{\n        address 10.5.0.{n}\n    }}\n{extra}}}\n")
    };
    let head = "global {\n    project up\n}\nswitch lan {\n}\nsuperclass node {\n    template mln-testguest\n    memory 160M\n    network eth0 {\n        switch lan\n        netmask 255.255.255.0\n    }\n}\n";
    let ann = "    users {\n        ann $6$annsalt$LAgkzpFKuw7yFaw7MmvCaXCekwjFvMAwGHWDcwopJSM5f7L4eK8EOP6PAC0vCf.h7tf9D/wPG5flz6JnOBsmw0\n    }\n";
    let v1 = [
        head.to_string(),
        host("keep", 1, ""),
        host("mem", 2, ""),
        host("cfg", 3, ""),
        host("gone", 4, ""),
        host("grow", 6, &format!("    template mln-testguest-disk\n    size {}M\n", base_mib + 16)),
        host("redisk", 7, ""),
    ]
    .concat();
    let v2 = [
        head.to_string(),
        host("keep", 1, ""),
        host("mem", 2, "    memory 128M\n"),
        host("cfg", 3, ann),
        host("fresh", 5, ""),
        host("grow", 6, &format!("    template mln-testguest-disk\n    size {}M\n", base_mib + 48)),
        // Another template: a new disk (this one has a root disk, the
        // other had none).
        host("redisk", 7, "    template mln-testguest-disk\n"),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let (f1, f2) = (dir.path().join("up.mln"), dir.path().join("up2.mln"));
    std::fs::write(&f1, v1).unwrap();
    std::fs::write(&f2, v2).unwrap();
    let (f1, f2) = (f1.to_str().unwrap(), f2.to_str().unwrap());
    m.ok(&["build", "-f", f1]);
    m.ok(&["start", "-p", "up"]);
    let all = ["keep", "mem", "cfg", "gone", "grow", "redisk"];
    m.wait_all("up", &all, 240, |c| applied(c).is_some() && sees(c).is_some());
    let keep_id = domid(&m, "keep.up");
    let mem_before = sees(&m.console("up", "mem")).unwrap()["mem_kib"].as_u64().unwrap();
    let grow_before = disk_sectors(&sees(&m.console("up", "grow")).unwrap(), "vda");
    assert!(grow_before > 0, "{}", m.console("up", "grow"));

    // The preview changes nothing and says what each host takes.
    let preview: serde_json::Value = serde_json::from_str(&m.ok(&["upgrade", "-f", f2, "-s", "--json"])).unwrap();
    let class = |h: &str| preview.as_array().unwrap().iter().find(|d| d["host"] == h).map(|d| d["class"].as_str().unwrap().to_string());
    assert_eq!(
        ["keep", "mem", "cfg", "gone", "fresh", "grow", "redisk"].map(|h| class(h).unwrap_or_default()),
        ["unchanged", "live", "guest-config", "remove", "add", "disk", "disk"]
    );
    assert_eq!(domains(&m), ["cfg.up", "gone.up", "grow.up", "keep.up", "mem.up", "redisk.up"]);
    let redisk_before = sees(&m.console("up", "redisk")).unwrap()["disks"].as_str().unwrap().to_string();

    let out = m.ok(&["upgrade", "-f", f2, "-S"]);
    assert!(out.contains("~ mem") && out.contains("+ fresh"), "the preview comes first:\n{out}");
    assert_eq!(domains(&m), ["cfg.up", "fresh.up", "grow.up", "keep.up", "mem.up", "redisk.up"]);
    // live: the guest gives memory back to the balloon.
    m.wait_all("up", &["mem"], 60, |c| sees(c).and_then(|s| s["mem_kib"].as_u64()).is_some_and(|k| k < mem_before));
    // guest-config with -S: restarted, it applied its new configuration.
    m.wait_all("up", &["cfg"], 180, |c| c.lines().filter(|l| l.contains("MLN-APPLIED")).count() >= 2);
    let a = c_applied_last(&m.console("up", "cfg"));
    assert_eq!(a["users"], serde_json::json!(["ann"]), "{a}");
    // disk: the running guest sees its disk grow.
    m.wait_all("up", &["grow"], 60, |c| sees(c).is_some_and(|s| disk_sectors(&s, "vda") > grow_before));
    assert_eq!(disk_sectors(&sees(&m.console("up", "grow")).unwrap(), "vda"), (base_mib + 48) << 11);
    // disk, from another template: restarted on a new disk of its own
    // (one disk more than its seed), configured as before; the old disk,
    // kept until then, is gone.
    m.wait_all("up", &["redisk"], 180, |c| c.matches("MLN-GUEST-UP").count() >= 2 && c.matches("MLN-APPLIED").count() >= 2);
    m.wait_all("up", &["redisk"], 60, |c| c.rsplit("MLN-GUEST-UP").next().is_some_and(|after| sees(after).is_some()));
    let after = m.console("up", "redisk");
    let disks_after = sees(after.rsplit("MLN-GUEST-UP").next().unwrap()).unwrap()["disks"].as_str().unwrap().to_string();
    assert_eq!(disks_after.split_whitespace().count(), redisk_before.split_whitespace().count() + 1, "{redisk_before} -> {disks_after}");
    assert_eq!(c_applied_last(&after)["hostname"], "redisk");
    let dir = m.state.path().join("projects/up/redisk");
    assert!(dir.join("disk.qcow2").exists() && !dir.join("disk.qcow2.old").exists(), "{:?}", std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>());
    // add: built and started (-S), configured.
    m.wait_all("up", &["fresh"], 180, |c| applied(c).is_some());
    assert_eq!(applied(&m.console("up", "fresh")).unwrap()["hostname"], "fresh");
    // remove: gone, its files too.
    assert!(!m.state.path().join("projects/up/gone").exists());
    // unchanged: the same domain, never restarted, still counting.
    assert_eq!(domid(&m, "keep.up"), keep_id);
    let keep = m.console("up", "keep");
    assert_eq!(keep.matches("MLN-GUEST-UP").count(), 1, "{keep}");
    let n = last_counter(&keep).unwrap();
    m.wait_all("up", &["keep"], 30, |c| last_counter(c).is_some_and(|k| k > n));
    // reconfigure: a host whose configuration drifted (its seed spoiled)
    // is configured again from the recorded plan and restarted to apply it.
    std::fs::write(m.state.path().join("projects/up/keep/seed.img"), b"spoiled").unwrap();
    let out = m.ok(&["reconfigure", "-p", "up", "-h", "keep"]);
    assert!(out.contains("keep") && !out.contains("cfg"), "only the host asked for: {out}");
    m.wait_all("up", &["keep"], 180, |c| c.matches("MLN-APPLIED").count() >= 2);
    assert_eq!(c_applied_last(&m.console("up", "keep"))["hostname"], "keep");
    // Applied: the same file again has nothing to do.
    let again = m.ok(&["upgrade", "-f", f2]);
    assert!(again.contains("nothing to do"), "{again}");
    let status = m.ok(&["status", "-p", "up"]);
    assert!(status.contains("fresh") && !status.contains("gone"), "{status}");
    m.ok(&["remove", "-p", "up"]);
}

/// The last configuration the guest reported applying.
fn c_applied_last(console: &str) -> serde_json::Value {
    console.lines().rev().find_map(|l| l.trim().strip_prefix("MLN-APPLIED ")).and_then(|j| serde_json::from_str(j).ok()).unwrap()
}

/// A host's `startup` commands run in the guest at boot (the seed's
/// /etc/mln/startup.sh, which a cloud-init per-boot script runs; the test
/// guest runs it too), and the test guest's helpers for them work: two guests on one switch reach each other and one streams
/// full-size TCP segments to the other, every line arriving whole and in
/// order.
#[test]
#[ignore = "slow: boots QEMU guests; run with --ignored"]
fn startup_commands_run_and_two_guests_stream_over_their_switch() {
    let m = Mln::new();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("streams.mln");
    let host = |name: &str, addr: &str, startup: &[String]| {
        let lines: String = startup.iter().map(|l| format!("        {l}\n")).collect();
        format!("host {name} {{\n    superclass node\n    network eth0 {{\n        address {addr}\n    }}\n    startup {{\n{lines}    }}\n}}\n")
    };
    let (a_recv, a_send) = ("10.6.1.1", "10.6.1.2");
    let text = [
        "global {\n    project streams\n}\nswitch lan {\n}\nsuperclass node {\n    template mln-testguest\n    memory 128M\n    network eth0 {\n        switch lan\n        netmask 255.255.255.0\n    }\n}\n".to_string(),
        host("recv", a_recv, &[format!("mln-reach {a_send}"), "mln-recv 5000".into()]),
        host("send", a_send, &[format!("mln-reach {a_recv}"), format!("mln-send {a_recv} 5000")]),
    ]
    .concat();
    std::fs::write(&project, text).unwrap();
    m.ok(&["build", "-f", project.to_str().unwrap()]);
    m.ok(&["start", "-p", "streams"]);
    m.wait_all("streams", &["recv", "send"], 240, |c| reach_all(c).is_some());
    assert_eq!(reach_all(&m.console("streams", "recv")).unwrap(), serde_json::json!({ a_send: true }));
    assert_eq!(reach_all(&m.console("streams", "send")).unwrap(), serde_json::json!({ a_recv: true }));
    // 40 lines: 8 s of the stream.
    m.wait_all("streams", &["recv"], 180, |c| lines_got(c).len() >= 40);
    let recv = m.console("streams", "recv");
    let got = lines_got(&recv);
    assert!(got.iter().all(|&(_, len)| len == 3000), "lines cut or merged: {got:?}");
    let numbers: Vec<u64> = got.iter().map(|&(n, _)| n).collect();
    assert_eq!(numbers[0], 0, "{numbers:?}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "a gap or a repeat: {numbers:?}");
    let send = m.console("streams", "send");
    assert!(send.contains("MLN-SEND-CONNECTED 0") && send.contains("MLN-SENT 30"), "{send}");
    assert!(!send.contains("MLN-SEND-BROKEN"), "{send}");
    // The startup commands run in the background: the receiver's, which
    // never end, do not hold up its counter.
    let n = last_counter(&recv).unwrap();
    m.wait_all("streams", &["recv"], 30, |c| last_counter(c).is_some_and(|k| k > n));
    assert!(!recv.contains("startup commands exited"), "mln-recv ended: {recv}");
    m.ok(&["remove", "-p", "streams"]);
    assert!(domains(&m).is_empty());
}
