//! Building and saving VMs, measured with the release binary. Run with
//! `cargo bench --bench vm_lifecycle` (as root, with the packages of
//! scripts/setup.sh; 20-30 minutes on a busy machine, about 20 GB of
//! free disk). Results are
//! printed and written to target/bench/vm_lifecycle.md.
//!
//! 1. Build 36 VMs (disks, seeds, definitions; not booting) from a 620 MB
//!    and a 6 GB template, with linked clones (the default) and with full
//!    copies. The peer is MLN's way: a full copy per VM.
//! 2. `mln status` of a project of 8 running guests, 20 times: the
//!    distribution, and whether any command of the whole run made libvirt
//!    probe QEMU again (the capability cache under the embedded root
//!    rewritten).
//! 3. Save 8 running guests to disk and restore them, several rounds:
//!    `mln stop -S` / `mln start` on the embedded driver against a
//!    sequential loop of `virsh save` / `virsh restore` in one virsh process
//!    (an embedded root admits one process at a time, so virsh cannot run in
//!    parallel there); and on a libvirtd (qemu:///system), where the same
//!    saves can run in parallel, against `xargs -P 8 virsh save`.

#[path = "support/rounds.rs"]
mod rounds;
use rounds::Guests;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Save/restore rounds per peer.
const ROUNDS: usize = 5;
/// `mln status` runs.
const STATUS_RUNS: usize = 20;

/// Every mln and virsh command of the run, with whether it rewrote the
/// capability cache and libvirt's reasons for it (its debug log of the
/// capability code, which names what it found outdated).
struct Probes {
    cache: PathBuf,
    log: PathBuf,
    last: Option<SystemTime>,
    commands: usize,
    rewrites: Vec<String>,
}

impl Probes {
    fn stamp(&self) -> Option<SystemTime> {
        let d = std::fs::read_dir(&self.cache).ok()?;
        d.flatten().filter_map(|e| e.metadata().ok()?.modified().ok()).max()
    }
    /// The environment that makes libvirt log its capability decisions.
    fn env(&self, c: &mut Command) {
        let _ = std::fs::remove_file(&self.log);
        c.env("LIBVIRT_LOG_FILTERS", "1:qemu.qemu_capabilities 1:util.filecache")
            .env("LIBVIRT_LOG_OUTPUTS", format!("1:file:{}", self.log.display()));
    }
    fn after(&mut self, what: &str) {
        self.commands += 1;
        let now = self.stamp();
        if now != self.last && self.last.is_some() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("Outdated") || l.contains("KVM was") || l.contains("no longer valid"))
                .filter_map(|l| l.split(" : ").last())
                .collect();
            self.rewrites.push(format!("{what}: {}", if why.is_empty() { "(no reason logged)".into() } else { why.join("; ") }));
        }
        self.last = now;
    }
}

struct Bench {
    probes: std::cell::RefCell<Probes>,
}

impl Bench {
    fn mln(&self, state: &Path, args: &[&str]) -> f64 {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mln"));
        c.arg("--state-dir").arg(state).args(args).env("MLN_KVM", "0");
        self.probes.borrow().env(&mut c);
        let t = Instant::now();
        let out = c.output().expect("mln runs");
        let s = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "mln {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        self.probes.borrow_mut().after(&format!("mln {}", args.join(" ")));
        s
    }
    /// A shell command line (virsh, xargs), timed.
    fn sh(&self, line: &str) -> f64 {
        let mut c = Command::new("bash");
        c.args(["-c", line]);
        self.probes.borrow().env(&mut c);
        let t = Instant::now();
        let o = c.output().unwrap();
        let s = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "{line}: {}", String::from_utf8_lossy(&o.stderr));
        self.probes.borrow_mut().after(line.split_whitespace().take(4).collect::<Vec<_>>().join(" ").as_str());
        s
    }
}

/// A template: the test guest's kernel bundle plus a disk of `mb` MB of
/// incompressible data (zeros would flatter full copies: qemu-img skips them).
fn template(dir: &Path, name: &str, mb: usize) {
    let t = dir.join(name);
    let st = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/testguest/build.sh")).arg(&t).output().unwrap();
    assert!(st.status.success());
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(t.join("disk.img")).unwrap());
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ mb as u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
    // A guest under emulation on a busy host can fail the kernel's IO-APIC
    // timer check and panic at boot; the check tells nothing here.
    std::fs::write(t.join("cmdline"), "console=ttyS0 quiet no_timer_check").unwrap();
}

fn project(dir: &Path, name: &str, hosts: usize, template: &str, clone: &str) -> PathBuf {
    let p = dir.join(format!("{name}.mln"));
    std::fs::write(
        &p,
        format!(
            "global {{\n    project {name}\n    autoenum {{\n        superclass s\n        numhosts {hosts}\n    }}\n}}\nsuperclass s {{\n    template {template}\n    clone {clone}\n    memory 128M\n}}\n"
        ),
    )
    .unwrap();
    p
}

fn last_counter(console: &Path) -> u64 {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    text.lines().rev().find_map(|l| l.trim().strip_prefix("MLN-COUNTER ")?.trim().parse().ok()).unwrap_or(0)
}

/// Waits until every guest's counter passed `after`: the guests run (again).
fn wait_counting(consoles: &[PathBuf], after: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(600);
    for (c, a) in consoles.iter().zip(after) {
        while last_counter(c) <= *a {
            assert!(Instant::now() < deadline, "{} stopped counting at {a}", c.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn counters(consoles: &[PathBuf]) -> Vec<u64> {
    consoles.iter().map(|c| last_counter(c)).collect()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    v[v.len() / 2]
}

/// "median (min–max)".
fn spread(v: &[f64]) -> String {
    let s = sorted(v.to_vec());
    format!("{:.2} s ({:.2}–{:.2})", median(v), s[0], s[s.len() - 1])
}

fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the struct we pass; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    s.f_bavail as u64 * s.f_frsize as u64
}



/// Save and restore the 8 guests of `save8` in `state`, `ROUNDS` times
/// each way: mln, then the peer. Returns (mln save, mln restore, peer save,
/// peer restore) times.
fn save_rounds(b: &Bench, state: &Path, connect: &[&str], peer_save: &str, peer_restore: &str) -> [Vec<f64>; 4] {
    let consoles: Vec<PathBuf> = (1..=8).map(|i| state.join(format!("projects/save8/node{i}/console.log"))).collect();
    wait_counting(&consoles, &[0; 8]);
    let mut r: [Vec<f64>; 4] = Default::default();
    for round in 0..ROUNDS {
        eprintln!("  round {}/{ROUNDS}", round + 1);
        let mut args = connect.to_vec();
        args.extend(["stop", "-p", "save8", "-S"]);
        let before = counters(&consoles);
        r[0].push(b.mln(state, &args));
        let mut args = connect.to_vec();
        args.extend(["start", "-p", "save8"]);
        r[1].push(b.mln(state, &args));
        wait_counting(&consoles, &before);
        let before = counters(&consoles);
        r[2].push(b.sh(peer_save));
        r[3].push(b.sh(peer_restore));
        wait_counting(&consoles, &before);
    }
    r
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let work = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("room beside the checkout");
    let _guests = Guests(work.path().to_path_buf());
    let state = work.path().join("state");
    let templates = state.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let b = Bench {
        probes: std::cell::RefCell::new(Probes {
            cache: state.join("libvirt/cache/qemu/capabilities"),
            log: work.path().join("libvirt-capabilities.log"),
            last: None,
            commands: 0,
            rewrites: vec![],
        }),
    };
    // `MLN_BENCH_ONLY=status`: the status section alone (minutes less).
    let only_status = std::env::var("MLN_BENCH_ONLY").is_ok_and(|v| v == "status");
    // `MLN_BENCH_ONLY=system`: the save and restore through libvirtd alone.
    let only_system = std::env::var("MLN_BENCH_ONLY").is_ok_and(|v| v == "system");
    eprintln!("making templates (620 MB and 6 GB)...");
    template(&templates, "t620", 620);
    if only_system {
        assert!(Command::new("sync").status().unwrap().success());
        let out = match system_rounds(&b, &templates) {
            Some(s) => system_rows(&s),
            None => "| libvirtd | (libvirtd did not start: not measured) | | |\n".to_string(),
        };
        print!("{out}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vm_lifecycle-system.md"), &out).unwrap();
        return;
    }
    if !only_status {
        template(&templates, "t6g", 6 * 1024);
    }
    // On disk before any build is timed, not in the page cache's dirty
    // pages that a build would otherwise pay to write back.
    assert!(Command::new("sync").status().unwrap().success());

    // The first use of an embedded root makes libvirt probe QEMU's
    // capabilities (seconds, once): not part of any build.
    let warm = project(work.path(), "warm", 1, "t620", "linked");
    b.mln(&state, &["build", "-f", warm.to_str().unwrap()]);
    b.mln(&state, &["remove", "-p", "warm"]);

    let mut out = String::new();
    if !only_status {
    let mut rows = Vec::new();
    let mut times = std::collections::HashMap::new();
    let build_once = |tmpl: &str, clone: &str, hosts: usize| {
        let name = format!("b{tmpl}{clone}");
        let p = project(work.path(), &name, hosts, tmpl, clone);
        let s = b.mln(&state, &["build", "-f", p.to_str().unwrap()]);
        b.mln(&state, &["remove", "-p", &name]);
        s
    };
    // Linked builds take ~0.15 s: 7 runs each, the two templates
    // interleaved so that neither gains from going second.
    eprintln!("building 36 VMs, linked, 620 MB and 6 GB templates interleaved (7 each)...");
    let (mut small, mut big) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        small.push(build_once("t620", "linked", 36));
        big.push(build_once("t6g", "linked", 36));
    }
    std::fs::remove_dir_all(templates.join("t6g")).unwrap();
    // 36 full copies need 22 GB: as many as the disk holds (with 5 GB to
    // spare), compared per VM.
    let room = free_bytes(work.path()).saturating_sub(5 << 30) / (620 << 20);
    let full_hosts = (room as usize).clamp(1, 36);
    eprintln!("building {full_hosts} VMs, full copies of 620 MB (3 runs)...");
    let full: Vec<f64> = (0..3).map(|_| build_once("t620", "full", full_hosts)).collect();
    for (tmpl, clone, hosts, runs) in [("t620", "linked", 36, small), ("t6g", "linked", 36, big), ("t620", "full", full_hosts, full)] {
        let n = runs.len();
        let s = median(&runs);
        times.insert((tmpl, clone), s / hosts as f64);
        rows.push(format!(
            "| {hosts} VMs, {} template, {clone} | {s:.3} s | {:.4} s | {n} |",
            if tmpl == "t620" { "620 MB" } else { "6 GB" },
            s / hosts as f64
        ));
    }
    let linked = times[&("t620", "linked")];
    let full = times[&("t620", "full")];
    let big = times[&("t6g", "linked")];
    out = String::from("| build | total (median) | per VM | runs |\n|---|---|---|---|\n");
    out += &rows.join("\n");
    out += &format!(
        "\n\nfull copies / linked clones per VM (620 MB): **{:.0}x** (goal ≥ 50x); linked 6 GB / linked 620 MB: **{:.2}** (goal within 10%)\n\n",
        full / linked,
        big / linked
    );

    eprint!("{out}");
    }
    // 8 running guests on the embedded driver.
    let p = project(work.path(), "save8", 8, "t620", "linked");
    b.mln(&state, &["build", "-f", p.to_str().unwrap()]);
    b.mln(&state, &["start", "-p", "save8"]);
    let consoles: Vec<PathBuf> = (1..=8).map(|i| state.join(format!("projects/save8/node{i}/console.log"))).collect();
    wait_counting(&consoles, &[0; 8]);
    eprintln!("mln status of 8 running guests ({STATUS_RUNS} runs)...");
    // Interleaved with virsh listing the same domains on the same root,
    // which opens the driver (and, as mln did before it read libvirt's
    // files instead, waits for the reconnections to the running guests:
    // leaving earlier can make libvirt kill them).
    let uri = format!("qemu:///embed?root={}", state.join("libvirt").display());
    let (mut status, mut listed) = (Vec::new(), Vec::new());
    for _ in 0..STATUS_RUNS {
        status.push(b.mln(&state, &["status", "-p", "save8"]));
        let t = Instant::now();
        let o = Command::new("virsh").args(["-q", "-c", &uri, "domstats --list-active --balloon; list --all"]).output().unwrap();
        assert!(o.status.success(), "virsh: {}", String::from_utf8_lossy(&o.stderr));
        listed.push(t.elapsed().as_secs_f64());
    }
    out += &format!("| 8 running guests, {STATUS_RUNS} runs each, interleaved | min | median | p90 | max |\n|---|---|---|---|---|\n");
    for (what, runs) in [("`mln status`", &status), ("`virsh domstats --list-active; list --all`", &listed)] {
        let st = sorted(runs.clone());
        let p90 = st[(st.len() * 9).div_ceil(10) - 1];
        out += &format!("| {what} | {:.3} s | {:.3} s | {p90:.3} s | {:.3} s |\n", st[0], median(runs), st[st.len() - 1]);
    }
    out += "\n";
    if only_status {
        b.mln(&state, &["stop", "-p", "save8", "-H"]);
        b.mln(&state, &["remove", "-p", "save8"]);
        eprint!("{out}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vm_lifecycle-status.md"), &out).unwrap();
        return;
    }

    eprint!("{}", out.rsplit("\n\n").nth(1).unwrap_or(""));
    eprintln!("\nsave and restore, embedded: mln against a sequential virsh loop ({ROUNDS} rounds)...");
    let uri = format!("qemu:///embed?root={}", state.join("libvirt").display());
    let files: Vec<PathBuf> = (1..=8).map(|i| work.path().join(format!("node{i}.save"))).collect();
    let saves = (1..=8).map(|i| format!("save node{i}.save8 {}", files[i - 1].display())).collect::<Vec<_>>().join(" ; ");
    let restores = files.iter().map(|f| format!("restore {}", f.display())).collect::<Vec<_>>().join(" ; ");
    let emb = save_rounds(&b, &state, &[], &format!("virsh -q -c '{uri}' '{saves}'"), &format!("virsh -q -c '{uri}' '{restores}'"));
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    b.mln(&state, &["stop", "-p", "save8", "-H"]);
    b.mln(&state, &["remove", "-p", "save8"]);

    let (embedded_commands, embedded_rewrites) = {
        let p = b.probes.borrow();
        (p.commands, p.rewrites.clone())
    };
    eprintln!("embedded save {:?} restore {:?}; virsh loop save {:?} restore {:?}", emb[0], emb[1], emb[2], emb[3]);
    let system = system_rounds(&b, &templates);

    out += &format!("| 8 running guests (128 MB), {ROUNDS} rounds, median (min–max) | mln (8 threads) | peer | mln / peer |\n|---|---|---|---|\n");
    out += &save_restore_rows("embedded", ["virsh loop, sequential"; 2], &emb);
    match &system {
        Some(s) => out += &system_rows(s),
        None => out += "| libvirtd | (libvirtd did not start: not measured) | | |\n",
    }
    out += &format!(
        "\ncapability cache rewritten (QEMU probed again) by {} of the {} mln/virsh commands on the embedded root after the first{}\n",
        embedded_rewrites.len(),
        embedded_commands - 1,
        if embedded_rewrites.is_empty() { String::new() } else { format!(":\n\n* {}", embedded_rewrites.join("\n* ")) }
    );
    print!("{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vm_lifecycle.md"), &out).unwrap();
}

/// Two rows of the save/restore table (save, then restore) for one
/// place: mln's times, the peer's (named), and their ratio.
fn save_restore_rows(place: &str, peer: [&str; 2], s: &[Vec<f64>; 4]) -> String {
    let ratio = |a: &[f64], b: &[f64]| median(a) / median(b);
    format!(
        "| {place}: save to disk | {} | {} ({}) | **{:.2}** |\n\
         | {place}: restore | {} | {} ({}) | **{:.2}** |\n",
        spread(&s[0]),
        spread(&s[2]),
        peer[0],
        ratio(&s[0], &s[2]),
        spread(&s[1]),
        spread(&s[3]),
        peer[1],
        ratio(&s[1], &s[3]),
    )
}

/// The libvirtd rows: mln (one connection per worker) against `xargs -P 8 virsh`.
fn system_rows(s: &[Vec<f64>; 4]) -> String {
    save_restore_rows("libvirtd", ["`xargs -P 8 virsh save`", "`xargs -P 8 virsh restore`"], s)
}

/// The same save and restore through a libvirtd (started here unless one
/// answers, and stopped again if so): there 8 virsh processes can work at
/// once. libvirtd runs QEMU as another user, so this state lives in
/// /var/tmp, readable by it.
fn system_rounds(b: &Bench, templates: &Path) -> Option<[Vec<f64>; 4]> {
    use std::os::unix::fs::PermissionsExt;
    let up = || Command::new("virsh").args(["-c", "qemu:///system", "version"]).output().is_ok_and(|o| o.status.success());
    let mut started = Vec::new();
    if !up() {
        for (daemon, pidfile) in [("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")] {
            if Command::new(daemon).arg("-d").status().is_ok_and(|s| s.success()) {
                started.push(pidfile);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !up() {
            if Instant::now() > deadline {
                stop_daemons(&started);
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let work = tempfile::Builder::new().prefix("mln-bench-").tempdir_in("/var/tmp").unwrap();
    let _guests = Guests(work.path().to_path_buf());
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = work.path().join("state");
    std::fs::create_dir_all(state.join("templates")).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("cp").arg("-a").arg(templates.join("t620")).arg(state.join("templates")).status().unwrap();
    assert!(st.success());
    let p = project(work.path(), "save8", 8, "t620", "linked");
    let c = ["--connect", "qemu:///system"];
    b.mln(&state, &[&c[..], &["build", "-f", p.to_str().unwrap()]].concat());
    b.mln(&state, &[&c[..], &["start", "-p", "save8"]].concat());
    eprintln!("save and restore, libvirtd: mln against xargs -P 8 virsh ({ROUNDS} rounds)...");
    let dir = work.path().display().to_string();
    let r = save_rounds(
        b,
        &state,
        &c,
        &format!("seq 1 8 | xargs -P 8 -I N virsh -q -c qemu:///system save nodeN.save8 {dir}/nodeN.save"),
        &format!("seq 1 8 | xargs -P 8 -I N virsh -q -c qemu:///system restore {dir}/nodeN.save"),
    );
    b.mln(&state, &[&c[..], &["stop", "-p", "save8", "-H"]].concat());
    b.mln(&state, &[&c[..], &["remove", "-p", "save8"]].concat());
    stop_daemons(&started);
    Some(r)
}

/// Ends the daemons this run started, by the pids they wrote.
fn stop_daemons(pidfiles: &[&str]) {
    for f in pidfiles.iter().rev() {
        if let Some(pid) = std::fs::read_to_string(f).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}
