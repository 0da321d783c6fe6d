//! libvirt's cache of what QEMU can do, under the embedded root, is made
//! once (probing QEMU costs seconds) and then read by every later command,
//! whatever process opens the root: mln, another mln binary, virsh, and
//! mln on any CPU. Issue 10: half of the commands of a benchmark probed
//! again (the CPU a command ran on, backend::steady_cpu).
//!
//! Slow (boots VMs): `cargo test --test e2e_capabilities -- --ignored`.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// What identifies one writing of the cache file: libvirt writes it afresh
/// (a new mtime) whenever it probes.
#[derive(Debug, PartialEq)]
struct Written {
    name: PathBuf,
    modified: SystemTime,
    text: String,
}

fn cache(root: &Path) -> Vec<Written> {
    let dir = root.join("libvirt/cache/qemu/capabilities");
    let mut v: Vec<Written> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| Written {
            name: e.path(),
            modified: e.metadata().unwrap().modified().unwrap(),
            text: std::fs::read_to_string(e.path()).unwrap(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn run(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mln(exe: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.current_dir(common::root()).arg("--state-dir").arg(state).args(args).env("MLN_KVM", "0");
    c
}

#[test]
#[ignore = "slow: boots QEMU guests through the embedded libvirt driver; run with --ignored"]
fn the_capability_cache_is_probed_once_and_then_read_by_every_command() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    // A failed assertion must not leave the guests running (they outlive
    // mln by design; the embedded root's QEMUs are named by its path).
    struct Guests(PathBuf);
    impl Drop for Guests {
        fn drop(&mut self) {
            let _ = Command::new("pkill").args(["-9", "-f", &format!("qemu-system.*{}/", self.0.display())]).status();
        }
    }
    let _guests = Guests(s.to_path_buf());
    common::test_guest(&s.join("templates"));
    let project = s.join("cap.mln");
    std::fs::write(&project, "global {\n    project cap\n}\nhost a {\n    template mln-testguest\n    memory 128M\n}\nhost b {\n    template mln-testguest\n    memory 128M\n}\n").unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_mln"));
    run(mln(&exe, s, &["build", "-f", project.to_str().unwrap()]), "build");
    run(mln(&exe, s, &["start", "-p", "cap"]), "start");
    let first = cache(s);
    assert_eq!(first.len(), 1, "one QEMU binary, one cache file: {:?}", first.iter().map(|w| &w.name).collect::<Vec<_>>());

    // Another mln binary (as a rebuild makes): a file with a new ctime.
    // (`mln` hands VM commands to `mln-libvirt` beside it: the copy is of
    // that binary, the one that opens the driver.)
    let other = s.join("mln-libvirt-rebuilt");
    std::fs::copy(env!("CARGO_BIN_EXE_mln-libvirt"), &other).unwrap();
    let uri = format!("qemu:///embed?root={}", s.join("libvirt").display());
    let taskset = Command::new("taskset").arg("-V").output().is_ok();
    let virsh = || {
        // On CPU 0, where mln opens the driver (below).
        let mut c = Command::new(if taskset { "taskset" } else { "virsh" });
        if taskset {
            c.args(["-c", "0", "virsh"]);
        }
        // The balloon query waits for the driver to reconnect to the running
        // guests: a virsh that exits during that can crash.
        c.args(["-q", "-c", &uri, "domstats --list-active --balloon; list --all"]);
        c
    };
    // `mln status` reads libvirt's files without opening the driver; `mln
    // start` of running guests opens it (and finds them running).
    let mut steps: Vec<(String, Command)> = vec![
        ("mln status".into(), mln(&exe, s, &["status", "-p", "cap"])),
        ("mln start".into(), mln(&exe, s, &["start", "-p", "cap"])),
        ("a second mln start".into(), mln(&exe, s, &["start", "-p", "cap"])),
        ("virsh list".into(), virsh()),
        ("mln start after virsh".into(), mln(&exe, s, &["start", "-p", "cap"])),
        ("mln start from another binary".into(), mln(&other, s, &["start", "-p", "cap"])),
        ("mln start after the other binary".into(), mln(&exe, s, &["start", "-p", "cap"])),
    ];
    // mln on each CPU in turn: libvirt compares the CPUID of the CPU its
    // driver opened on with the one it probed with, and some CPUID leaves
    // differ between CPUs (on this machine's virtual CPUs they do: a virsh
    // on CPU 1 after one on CPU 0 re-probes). mln opens the driver on its
    // first CPU wherever it runs (backend::steady_cpu); virsh, which
    // does not, is run there too.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if taskset {
        for cpu in 0..cpus {
            let mut c = Command::new("taskset");
            c.current_dir(common::root()).args(["-c", &cpu.to_string()]).arg(&exe).arg("--state-dir").arg(s).args(["start", "-p", "cap"]).env("MLN_KVM", "0");
            steps.push((format!("mln start on CPU {cpu}"), c));
            steps.push((format!("virsh list on CPU 0 after mln on CPU {cpu}"), virsh()));
        }
    }
    for (what, c) in steps {
        let out = run(c, &what);
        assert!(out.contains("running"), "{what}: {out}");
        assert!(cache(s) == first, "{what} probed QEMU again: the capability cache was rewritten");
    }
    // The check sees a probe when there is one: a cache stamped by another
    // libvirt is one libvirt must throw away and make again.
    let stale = first[0].text.replacen("<selfctime>", "<selfctime>1", 1);
    assert_ne!(stale, first[0].text, "the cache names the libvirt that wrote it");
    std::fs::write(&first[0].name, &stale).unwrap();
    let before = cache(s);
    run(mln(&exe, s, &["start", "-p", "cap"]), "start with a stale cache");
    let after = cache(s);
    assert!(after != before && after[0].text != stale, "a stale cache was kept");
    run(mln(&exe, s, &["stop", "-p", "cap", "-H"]), "stop");
    run(mln(&exe, s, &["remove", "-p", "cap"]), "remove");
}
