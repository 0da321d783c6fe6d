//! The runtime half of the hardening issue: what a project file (or a
//! plan from the wire, or an old database) must not be able to do. These
//! run on libvirt's `test:///default` driver: no QEMU, no daemon.

mod common;
use common::*;
use mln::machine::{Outcome, Status};
use mln::progress::Quiet;
use mln::runtime::{hooks::NoHooks, BuildOptions, LocalPlaces, Runtime};
use mln::state::{Phase, ProjectRecord, Resource, ResourceKind, State};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn no_kvm() {
    // Once, before any test reads it: the probe is not what is tested.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("MLN_KVM", "0"));
}

/// A templates directory with a tiny qcow2 template `t`.
fn templates(dir: &Path) -> std::path::PathBuf {
    let t = dir.join("templates");
    std::fs::create_dir_all(&t).unwrap();
    let st = std::process::Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(t.join("t")).arg("16M").status().unwrap();
    assert!(st.success());
    t
}

fn plan_of(text: &str) -> mln::plan::Plan {
    let c = compile_mem(&[("/p/p.mln", text)]);
    assert!(c.ok(), "{}", rendered(&c));
    c.plan
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_plan_with_names_that_escape_is_refused_before_anything_is_made() {
    no_kvm();
    let d = tempfile::tempdir().unwrap();
    let state = State::open(&d.path().join("state")).unwrap();
    let places = LocalPlaces::new(&state, "test:///default".into(), templates(d.path()));
    let env = Runtime { state: &state, places: &places, hooks: &NoHooks, telemetry: &Quiet };
    let decoy = d.path().join("decoy");
    std::fs::create_dir(&decoy).unwrap();
    std::fs::write(decoy.join("keep"), "precious").unwrap();
    // The compiler refuses such names; a plan can also arrive over the
    // wire (an agent), so the runtime checks again.
    let good = plan_of("global { project esc }\nhost a { template t }\n");
    let mut cases = vec![];
    let mut p = good.clone();
    p.hosts[0].name = decoy.display().to_string();
    cases.push(p);
    let mut p = good.clone();
    p.project = "..".into();
    p.hosts[0].name = "..".into();
    cases.push(p);
    let mut p = good.clone();
    p.hosts[0].template = "../../etc/shadow".into();
    cases.push(p);
    for p in cases {
        let err = env.build(&p, Path::new("p.mln"), BuildOptions::default()).unwrap_err();
        assert!(err.to_string().contains("refusing the plan"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(decoy.join("keep")).unwrap(), "precious");
    assert!(state.project_names().unwrap().is_empty(), "nothing recorded");
    assert!(state.host_dir("..", "x").is_err() && state.host_dir("p", "/tmp/x").is_err() && state.lock("../x").is_err());
}

#[test]
fn remove_forgets_records_outside_the_state_directory_without_following_them() {
    no_kvm();
    let d = tempfile::tempdir().unwrap();
    let state = State::open(&d.path().join("state")).unwrap();
    let places = LocalPlaces::new(&state, "test:///default".into(), templates(d.path()));
    let env = Runtime { state: &state, places: &places, hooks: &NoHooks, telemetry: &Quiet };
    // What an older mln recorded for `host /tmp/x/decoy` and for a host
    // name too long for any file system.
    let decoy = d.path().join("x/decoy");
    std::fs::create_dir_all(&decoy).unwrap();
    std::fs::write(decoy.join("keep"), "precious").unwrap();
    let long = state.dir().join("projects/old").join("h".repeat(300));
    let plan = plan_of("global { project old }\nhost decoy { template t }\n");
    state
        .save_project(&ProjectRecord { name: "old".into(), phase: Phase::Building, file: "p.mln".into(), connect: "test:///default".into(), plan, places: vec![] })
        .unwrap();
    let r = |host: &str, kind: ResourceKind, ident: String| Resource { host: host.into(), kind, ident };
    state
        .record_all(
            "old",
            &[
                r("decoy", ResourceKind::Dir, decoy.display().to_string()),
                r("decoy", ResourceKind::Seed, decoy.join("keep").display().to_string()),
                r("decoy", ResourceKind::Dir, format!("{}/projects/old/../../..", state.dir().display())),
                r("long", ResourceKind::Dir, long.display().to_string()),
                r("long", ResourceKind::Disk, long.join("disk.qcow2").display().to_string()),
            ],
        )
        .unwrap();
    let outcomes = env.remove("old").unwrap();
    assert!(outcomes.iter().all(Outcome::ok), "{outcomes:?}");
    assert_eq!(std::fs::read_to_string(decoy.join("keep")).unwrap(), "precious");
    assert!(state.dir().join("mln.db").exists());
    assert!(state.project("old").unwrap().is_none() && state.resources("old").unwrap().is_empty(), "forgotten");
    assert!(!state.dir().join("locks/old.lock").exists(), "no lock file left");
}

#[test]
fn state_is_private_and_secrets_are_not_recorded_in_clear() {
    no_kvm();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("state");
    // An older mln's state directory: world-readable.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("mln.db"), "").unwrap();
    std::fs::set_permissions(dir.join("mln.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = State::open(&dir).unwrap();
    // 0700, or 0710 for QEMU's group when QEMU runs as another user.
    assert!([0o700, 0o710].contains(&mode(&dir)), "{:o}", mode(&dir));
    if mode(&dir) == 0o710 {
        let qemu = std::process::Command::new("id").args(["-g", "libvirt-qemu"]).output().unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().gid().to_string(), String::from_utf8_lossy(&qemu.stdout).trim());
    }
    assert_eq!(mode(&dir.join("mln.db")), 0o600);
    let places = LocalPlaces::new(&state, "test:///default".into(), templates(d.path()));
    let env = Runtime { state: &state, places: &places, hooks: &NoHooks, telemetry: &Quiet };
    let plan = plan_of(
        "global { project sec }\nhost a {\n template t\n vncdisplay 3\n vncpasswd Sup3rSecretVnc\n users {\n  bob $6$stud$T1qxsIAkoJxCEehrQthdbY4kAgXdBKfWWNSdoV4KnhuRcrxC3aBr1ZkG4hP.Lvh1hDeRJ0hNIgZTyxE8oo2kG/\n }\n}\n",
    );
    let outcomes = env.build(&plan, Path::new("p.mln"), BuildOptions::default()).unwrap();
    assert!(outcomes.iter().all(Outcome::ok), "{outcomes:?}");
    let host = state.host_dir("sec", "a").unwrap();
    // What holds secrets is its owner's alone; and no other user can even
    // reach into the state directory.
    for f in ["seed.img", "disk.qcow2"] {
        assert_eq!(mode(&host.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&dir) & 0o007, 0);
    drop(state);
    for f in ["mln.db", "mln.db-wal"] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("Sup3rSecretVnc"), "{f} holds the VNC password");
    }
    let state = State::open(&dir).unwrap();
    let row = state.project("sec").unwrap().unwrap();
    assert!(row.plan.hosts[0].vnc_password.as_deref().is_some_and(|p| p.starts_with("sha256:")), "the password's digest is kept");
    // The domain still gets the password: it is defined at build time.
    let lv = mln::backend::libvirt::Libvirt::open("test:///default").unwrap();
    let xml = lv.domain("a.sec").unwrap().xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE).unwrap();
    assert!(xml.contains("Sup3rSecretVnc"), "{xml}");
    let places = LocalPlaces::new(&state, "test:///default".into(), d.path().join("templates"));
    Runtime { state: &state, places: &places, hooks: &NoHooks, telemetry: &Quiet }.remove("sec").unwrap();
}

#[test]
fn a_hosts_own_kernel_is_booted_from_a_private_copy() {
    no_kvm();
    let d = tempfile::tempdir().unwrap();
    let state = State::open(&d.path().join("state")).unwrap();
    let places = LocalPlaces::new(&state, "test:///default".into(), templates(d.path()));
    let env = Runtime { state: &state, places: &places, hooks: &NoHooks, telemetry: &Quiet };
    let (k, r) = (d.path().join("vmlinuz"), d.path().join("initrd"));
    std::fs::write(&k, "kernel").unwrap();
    std::fs::write(&r, "ramdisk").unwrap();
    for f in [&k, &r] {
        std::os::unix::fs::chown(f, Some(12345), Some(12345)).unwrap();
    }
    let mut plan = plan_of("global { project kern }\nhost a { template t }\n");
    plan.hosts[0].kernel = Some(k.display().to_string());
    plan.hosts[0].ramdisk = Some(r.display().to_string());
    let outcomes = env.build(&plan, Path::new("p.mln"), BuildOptions::default()).unwrap();
    assert!(outcomes.iter().all(Outcome::ok), "{outcomes:?}");
    let xml = places.libvirt().unwrap().connection().domain("a.kern").unwrap().xml_desc(0).unwrap();
    let host = state.host_dir("kern", "a").unwrap();
    assert!(xml.contains(&format!("<kernel>{}</kernel>", host.join("kernel").display())), "{xml}");
    assert!(xml.contains(&format!("<initrd>{}</initrd>", host.join("ramdisk").display())), "{xml}");
    assert_eq!(std::fs::read_to_string(host.join("ramdisk")).unwrap(), "ramdisk");
    for f in [&k, &r] {
        assert_eq!(std::fs::metadata(f).unwrap().uid(), 12345, "the original keeps its owner");
    }
    env.remove("kern").unwrap();
}

#[test]
fn a_swap_disk_is_made_private_formatted_recorded_and_attached() {
    no_kvm();
    let d = tempfile::tempdir().unwrap();
    let state = State::open(&d.path().join("state")).unwrap();
    let places = LocalPlaces::new(&state, "test:///default".into(), templates(d.path()));
    let env = Runtime { state: &state, places: &places, hooks: &NoHooks, telemetry: &Quiet };
    let plan = plan_of("global { project swp }\nhost a {\n template t\n swap 32M\n}\n");
    let outcomes = env.build(&plan, Path::new("p.mln"), BuildOptions::default()).unwrap();
    assert!(outcomes.iter().all(Outcome::ok), "{outcomes:?}");
    let swap = state.host_dir("swp", "a").unwrap().join("swap.img");
    let meta = std::fs::metadata(&swap).unwrap();
    assert_eq!(mode(&swap), 0o600);
    assert_eq!(meta.len(), 32 << 20);
    assert!(meta.blocks() * 512 < meta.len() / 4, "sparse: {} blocks", meta.blocks());
    // mkswap's signature ends the first 4 KiB page; the label follows the
    // header (struct swap_header_v1_2: 1 KiB boot block, then version,
    // last page, bad pages, 16 bytes of UUID, then the 16-byte label).
    let bytes = std::fs::read(&swap).unwrap();
    assert_eq!(&bytes[4086..4096], b"SWAPSPACE2");
    assert_eq!(&bytes[1024 + 12 + 16..1024 + 12 + 16 + 9], b"mln-swap\0");
    assert!(state.resources("swp").unwrap().iter().any(|r| r.kind == ResourceKind::Disk && r.ident == swap.display().to_string()));
    let xml = places.libvirt().unwrap().connection().domain("a.swp").unwrap().xml_desc(0).unwrap();
    assert!(xml.contains(&format!("<source file='{}'", swap.display())), "{xml}");
    env.remove("swp").unwrap();
    assert!(!swap.exists(), "removed with the host");
}

#[test]
fn user_ids_never_wrap_into_root_in_a_filesystem_template() {
    let mut plan = plan_of("global { project fst }\nhost a {\n users {\n  svc $6$stud$T1qxsIAkoJxCEehrQthdbY4kAgXdBKfWWNSdoV4KnhuRcrxC3aBr1ZkG4hP.Lvh1hDeRJ0hNIgZTyxE8oo2kG/ /home/svc\n  intern $6$stud$T1qxsIAkoJxCEehrQthdbY4kAgXdBKfWWNSdoV4KnhuRcrxC3aBr1ZkG4hP.Lvh1hDeRJ0hNIgZTyxE8oo2kG/\n }\n}\n");
    let none = Path::new("/nonexistent/image");
    plan.hosts[0].users[0].uid = Some(u32::MAX);
    let err = mln::guest::fstemplate::files(&plan, &plan.hosts[0], none, &[]).unwrap_err().to_string();
    assert!(err.contains("not a valid id"), "{err}");
    plan.hosts[0].users[0].uid = Some(u32::MAX - 1);
    let files = mln::guest::fstemplate::files(&plan, &plan.hosts[0], none, &[]).unwrap();
    let passwd = &files.iter().find(|f| f.0 == "/etc/passwd").unwrap().1;
    assert!(passwd.contains("svc:x:4294967294:"), "{passwd}");
    assert!(passwd.contains("intern:x:1000:1000:"), "{passwd}");
    plan.hosts[0].users[1].uid = Some(0);
    assert!(mln::guest::fstemplate::files(&plan, &plan.hosts[0], none, &[]).unwrap_err().to_string().contains("root"));
}

#[test]
fn control_characters_in_a_plan_never_reach_the_terminal() {
    let mut plan = plan_of("global { project term }\nhost a { template t }\n");
    plan.hosts[0].name = "a\u{1b}]0;owned\u{7}".into();
    plan.hosts[0].template = "t\u{1b}[2J".into();
    let table = mln::display::plan_table(&plan);
    assert!(!table.contains('\u{1b}') && !table.contains('\u{7}'), "{table:?}");
    assert!(table.contains("\\u{1b}]0;owned"), "{table}");
    let (summary, _) = mln::runtime::summary("build", &[Outcome { host: "x\u{1b}[1m".into(), place: None, status: Status::Failed, message: "bad\u{9b}31m".into(), retry: false }]);
    assert!(!summary.chars().any(|c| c.is_control() && c != '\n'), "{summary:?}");
}

/// Waits (boundedly) for `f` to hold.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
#[ignore = "runs QEMU's capability probes through the embedded libvirt driver"]
fn capability_probes_die_with_mln_even_after_kill_9() {
    use mln::backend::probes;
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let root = state.join("libvirt");
    // Whatever happens, no probe of this test is left for the others.
    struct ReapOnDrop(std::path::PathBuf);
    impl Drop for ReapOnDrop {
        fn drop(&mut self) {
            probes::reap(&self.0);
        }
    }
    let _reap = ReapOnDrop(root.clone());
    let t = templates(d.path());
    let project = d.path().join("p.mln");
    std::fs::write(&project, "global { project probe }\nhost a { template t }\n").unwrap();
    let mln = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mln"));
        c.arg("--state-dir").arg(&state).arg("--templates").arg(&t).args(args).arg("-f").arg(&project);
        c.env("MLN_KVM", "0").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c
    };
    // A probe left by an mln killed earlier, as libvirt starts one: the
    // next mln to open the root (here a dry run, which opens the driver)
    // ends it.
    let qmp = root.join("lib/qemu/qmp-left");
    std::fs::create_dir_all(&qmp).unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut left = std::process::Command::new("qemu-system-x86_64")
        .args(["-S", "-no-user-config", "-nodefaults", "-nographic", "-machine", "none,accel=tcg", "-qmp"])
        .arg(format!("unix:{}/qmp.monitor,server=on,wait=off", qmp.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    eventually("the planted probe runs", || probes::find(&root).len() == 1);
    assert!(mln(&["build", "-s"]).status().unwrap().success());
    eventually("the planted probe is gone", || left.0.try_wait().unwrap().is_some());
    // kill -9 while libvirt probes (defining a domain needs QEMU's
    // capabilities, and the cache is empty): the watcher ends the probe.
    let _ = std::fs::remove_dir_all(root.join("cache"));
    let mut m = mln(&["build"]).spawn().unwrap();
    let mut seen = false;
    eventually("a probe starts or mln finishes", || {
        seen = !probes::find(&root).is_empty();
        seen || m.try_wait().unwrap().is_some()
    });
    assert!(seen, "mln finished without probing (the capabilities cache was not removed?)");
    m.kill().unwrap();
    m.wait().unwrap();
    eventually("no probe of this root is left", || probes::find(&root).is_empty());
}
