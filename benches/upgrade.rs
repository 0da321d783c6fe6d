//! Upgrading a 36-host project on the embedded driver, measured with the
//! release binary. Run with `cargo bench --bench upgrade` (as root, with
//! the packages of scripts/setup.sh; a few minutes). Results are printed
//! and written to target/bench/upgrade.md.
//!
//! 36 hosts of the test guest are built; the rounds run first with them
//! all stopped (a stopped host's `live` change is a change of its
//! definition), then with them all running (the running domain's memory
//! goes down too). In each, interleaved, `ROUNDS` times:
//!
//! (a) `mln upgrade -f` of the file already applied: its time, the libvirt
//!     calls it made and the files it changed;
//! (b) `mln upgrade -f` of a file where one host's memory went down (class
//!     `live`), each round lower so that each round changes something;
//! (c) the same change of the definition done directly, in one virsh
//!     process on the same embedded root (`setmaxmem`/`setmem --config`,
//!     and `setmem --live` when running),
//!     on another host so that mln's record and the domains still agree.
//!
//! mln's overhead is (b) − (c): what mln spends beyond the operation.
//!
//! libvirt calls are counted by libvirt itself: every command runs with
//! libvirt's debug log of its public API (`LIBVIRT_LOG_FILTERS=1:libvirt`)
//! written to a file, in which each public entry point (virConnectOpen*,
//! virDomain*, ...) logs a line; a process that never enters libvirt
//! writes no line at all. (b) and (c) show the counter counting.

#[path = "support/rounds.rs"]
mod rounds;
use rounds::Guests;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

const HOSTS: usize = 36;
/// Measured rounds (one more, first, is a warm-up and not counted).
const ROUNDS: usize = 7;
const PROJECT: &str = "up36";
/// Every host's memory; the changed host goes down from here.
const BASE_MIB: u32 = 192;
const STEP_MIB: u32 = 4;

/// libvirt's own count of what a command asked of it.
#[derive(Default, Clone, Debug)]
struct Calls {
    /// Connections opened (virConnectOpen, virConnectOpenAuth, ...).
    connects: usize,
    /// Public API entry points entered, connections included.
    api: usize,
    /// How often each entry point was entered, for the report.
    names: BTreeMap<String, usize>,
}

/// libvirt's internal steps that log at the same level as its public
/// API: not calls a program made.
const INTERNAL: &[&str] = &["virConnectOpenInternal", "virRegisterConnectDriver", "virStateInitialize", "virGlobalInit", "virRegisterStateDriver"];

fn calls(log: &Path) -> Calls {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut c = Calls::default();
    for l in text.lines() {
        // "... : debug : virDomainDefineXML:123 : conn=..."
        let Some(rest) = l.split(" debug : ").nth(1) else { continue };
        let name: String = rest.chars().take_while(|ch| ch.is_ascii_alphanumeric()).collect();
        if !name.starts_with("vir") || INTERNAL.contains(&name.as_str()) {
            continue;
        }
        if name.starts_with("virConnectOpen") {
            c.connects += 1;
        }
        c.api += 1;
        *c.names.entry(name).or_default() += 1;
    }
    c
}

/// Every file under `dir` with its modification time and size.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = m.modified() {
                out.insert(e.path(), (t, m.len()));
            }
        }
    }
    out
}

/// The files changed, added or removed between two snapshots, but for
/// running guests' consoles (each guest writes to its own all the time).
fn changed(a: &BTreeMap<PathBuf, (SystemTime, u64)>, b: &BTreeMap<PathBuf, (SystemTime, u64)>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = b.iter().filter(|(p, m)| a.get(*p) != Some(m)).map(|(p, _)| p.clone()).collect();
    v.extend(a.keys().filter(|p| !b.contains_key(*p)).cloned());
    v.retain(|p| p.file_name().is_none_or(|n| n != "console.log"));
    v
}

/// Files of libvirt's running-domain status (under the root's `run/`).
fn status(files: &[PathBuf]) -> Vec<PathBuf> {
    files.iter().filter(|p| p.components().any(|c| c.as_os_str() == "run")).cloned().collect()
}

/// All other files.
fn own(files: &[PathBuf]) -> Vec<PathBuf> {
    files.iter().filter(|p| !p.components().any(|c| c.as_os_str() == "run")).cloned().collect()
}

fn count_or_none(hosts: &BTreeSet<String>) -> String {
    match hosts.len() {
        0 => "none".into(),
        n if n <= 3 => format!("{hosts:?}"),
        n => format!("{n} hosts"),
    }
}

/// The hosts whose files these are: a path component `nodeN` or a file
/// `nodeN.<project>...` (a domain's definition, its logs).
fn hosts_of(paths: &[PathBuf]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in paths {
        for comp in p.components() {
            let s = comp.as_os_str().to_string_lossy();
            let Some(rest) = s.strip_prefix("node") else { continue };
            let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let after = &rest[n.len()..];
            if !n.is_empty() && (after.is_empty() || after.starts_with('.')) {
                out.insert(format!("node{n}"));
            }
        }
    }
    out
}

struct Run {
    secs: f64,
    /// It exited with success (virsh on an embedded root can crash on its
    /// way out, after its work).
    ok: bool,
    calls: Calls,
    stdout: String,
}

struct Bench {
    state: PathBuf,
    log: PathBuf,
}

impl Bench {
    fn logged(&self, c: &mut Command) {
        let _ = std::fs::remove_file(&self.log);
        c.env("LIBVIRT_LOG_FILTERS", "1:libvirt").env("LIBVIRT_LOG_OUTPUTS", format!("1:file:{}", self.log.display()));
    }
    fn run(&self, c: Command, what: &str) -> Run {
        let r = self.try_run(c);
        assert!(r.ok, "{what}: {}", r.stdout);
        r
    }
    fn try_run(&self, mut c: Command) -> Run {
        self.logged(&mut c);
        let t = Instant::now();
        let out = c.output().expect("the command runs");
        let secs = t.elapsed().as_secs_f64();
        let text = format!("{}{} ({})", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr), out.status);
        Run { secs, ok: out.status.success(), calls: calls(&self.log), stdout: text }
    }
    fn mln(&self, args: &[&str]) -> Run {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mln"));
        c.arg("--state-dir").arg(&self.state).args(args).env("MLN_KVM", "0");
        self.run(c, &format!("mln {}", args.join(" ")))
    }
    /// One virsh process on the embedded root running `cmds` (`;`-separated).
    fn virsh(&self, cmds: &str) -> Run {
        let uri = format!("qemu:///embed?root={}", self.state.join("libvirt").display());
        let mut c = Command::new("virsh");
        c.args(["-q", "-c", &uri, cmds]);
        self.try_run(c)
    }
    /// The domain's memory in its definition (the file libvirt keeps under
    /// the embedded root), in KiB: (max, current).
    fn memory_kib(&self, host: &str) -> (u64, u64) {
        let want = format!("{host}.{PROJECT}.xml");
        let path = snapshot(&self.state.join("libvirt/etc"))
            .into_keys()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == want))
            .unwrap_or_else(|| panic!("no definition {want}"));
        let xml = std::fs::read_to_string(&path).unwrap();
        let field = |tag: &str| -> u64 {
            let i = xml.find(&format!("<{tag}")).unwrap_or_else(|| panic!("no <{tag}> in {host}'s definition"));
            let s = &xml[i..];
            let s = &s[s.find('>').unwrap() + 1..];
            s[..s.find('<').unwrap()].trim().parse().unwrap()
        };
        (field("memory"), field("currentMemory"))
    }
}

/// The project: 36 explicit hosts, `node1` with `node1_mib` of memory.
fn project(path: &Path, node1_mib: u32) {
    let mut s = format!(
        "global {{\n    project {PROJECT}\n}}\nsuperclass s {{\n    template mln-testguest\n    memory {BASE_MIB}M\n}}\n"
    );
    for i in 1..=HOSTS {
        s += &format!("host node{i} {{\n    superclass s\n");
        if i == 1 && node1_mib != BASE_MIB {
            s += &format!("    memory {node1_mib}M\n");
        }
        s += "}\n";
    }
    std::fs::write(path, s).unwrap();
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    v[v.len() / 2]
}

/// "median (min–max)" in seconds.
fn spread(v: &[f64]) -> String {
    let s = sorted(v.to_vec());
    format!("{:.3} s ({:.3}–{:.3})", median(v), s[0], s[s.len() - 1])
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

fn last_counter(console: &Path) -> u64 {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    text.lines().rev().find_map(|l| l.trim().strip_prefix("MLN-COUNTER ")?.trim().parse().ok()).unwrap_or(0)
}

/// Waits until every guest counts: they all run.
fn wait_counting(consoles: &[PathBuf]) {
    let deadline = Instant::now() + std::time::Duration::from_secs(900);
    for c in consoles {
        while last_counter(c) == 0 {
            assert!(Instant::now() < deadline, "{} never started counting", c.display());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}



/// The rounds (a), (b), (c) with the hosts stopped or running; `mib` is
/// node1's memory, lowered each round. Returns the report's table and
/// whether the two goals were met.
fn phase(b: &Bench, file: &Path, running: bool, mib: &mut u32) -> (String, (bool, bool)) {
    let state = &b.state;
    let cond = if running { "running" } else { "stopped" };
    let file_s = file.to_str().unwrap();
    let (mut same_t, mut one_t, mut direct_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut same_calls, mut one_calls, mut direct_calls) = (Vec::new(), Vec::new(), Vec::new());
    let mut same_touched: BTreeSet<String> = BTreeSet::new();
    let mut one_touched: BTreeSet<String> = BTreeSet::new();
    let mut same_files = 0;
    let (mut one_status, mut direct_status) = (BTreeSet::new(), BTreeSet::new());
    let mut direct_failed = 0;
    for round in 0..=ROUNDS {
        let counted = round > 0;
        eprintln!("round {round}/{ROUNDS}{}", if counted { "" } else { " (warm-up)" });
        // (a) nothing changed.
        let before = snapshot(state);
        let r = b.mln(&["upgrade", "-f", file_s]);
        let files = changed(&before, &snapshot(state));
        if counted {
            same_t.push(r.secs);
            same_touched.extend(hosts_of(&files));
            same_files += files.len();
            same_calls.push(r.calls.clone());
        }
        eprintln!("  no change: {:.3} s, {} libvirt calls, files changed: {files:?}", r.secs, r.calls.api);
        // (b) and (c), in turn first.
        *mib -= STEP_MIB;
        let mib = *mib;
        let do_mln = || {
            project(file, mib);
            let before = snapshot(state);
            let r = b.mln(&["upgrade", "-f", file_s]);
            let files = changed(&before, &snapshot(state));
            assert_eq!(b.memory_kib("node1"), (mib as u64 * 1024, mib as u64 * 1024), "mln upgraded node1's definition");
            eprintln!("  node1 to {mib} MiB by mln: {:.3} s, {} libvirt calls, hosts touched: {:?}", r.secs, r.calls.api, hosts_of(&files));
            (r, files)
        };
        let do_virsh = || {
            let d = format!("node{HOSTS}.{PROJECT}");
            let live = if running { format!(" ; setmem {d} {mib}M --live") } else { String::new() };
            let before = snapshot(state);
            let r = b.virsh(&format!("setmaxmem {d} {mib}M --config ; setmem {d} {mib}M --config{live}"));
            let files = changed(&before, &snapshot(state));
            assert_eq!(b.memory_kib(&format!("node{HOSTS}")), (mib as u64 * 1024, mib as u64 * 1024), "virsh changed the definition: {}", r.stdout);
            eprintln!("  node{HOSTS} to {mib} MiB by virsh: {:.3} s, {} libvirt calls, hosts touched: {:?}{}", r.secs, r.calls.api, hosts_of(&files), if r.ok { String::new() } else { format!(", failed: {}", r.stdout.lines().last().unwrap_or("")) });
            (r, files)
        };
        let ((m, files), (v, vfiles)) = if round % 2 == 0 {
            let m = do_mln();
            (m, do_virsh())
        } else {
            let v = do_virsh();
            (do_mln(), v)
        };
        if counted {
            one_t.push(m.secs);
            direct_t.push(v.secs);
            one_touched.extend(hosts_of(&own(&files)));
            one_status.extend(hosts_of(&status(&files)));
            direct_status.extend(hosts_of(&status(&vfiles)));
            direct_failed += usize::from(!v.ok);
            one_calls.push(m.calls);
            direct_calls.push(v.calls);
        }
    }
    // Every guest still runs: its counter goes on.
    let stopped_guests = if running {
        let consoles: Vec<PathBuf> = (1..=HOSTS).map(|i| state.join(format!("projects/{PROJECT}/node{i}/console.log"))).collect();
        let was: Vec<u64> = consoles.iter().map(|c| last_counter(c)).collect();
        std::thread::sleep(std::time::Duration::from_secs(20));
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let idle = consoles.iter().zip(&was).filter(|(c, w)| last_counter(c) <= **w).count();
            if idle == 0 || Instant::now() > deadline {
                break format!("guests no longer counting after the rounds: {idle} of {HOSTS}.\n\n");
            }
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    } else {
        String::new()
    };
    let over: Vec<f64> = one_t.iter().zip(&direct_t).map(|(m, v)| m - v).collect();
    let same_api: usize = same_calls.iter().map(|c| c.api).sum();
    let same_conn: usize = same_calls.iter().map(|c| c.connects).sum();
    // A run's entry points, each with how often it was entered.
    let names = |cs: &[Calls]| {
        let last = cs.last().map(|c| c.names.clone()).unwrap_or_default();
        last.iter().map(|(n, k)| if *k > 1 { format!("{n} ×{k}") } else { n.clone() }).collect::<Vec<_>>().join(", ")
    };
    let per = |cs: &[Calls], f: fn(&Calls) -> usize| {
        let v: Vec<usize> = cs.iter().map(f).collect();
        let (lo, hi) = (v.iter().min().unwrap(), v.iter().max().unwrap());
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}–{hi}")
        }
    };
    let mut out = format!(
        "| {HOSTS} hosts ({cond}), embedded driver, {ROUNDS} rounds interleaved | median (min–max) | libvirt connections / API calls per run |\n|---|---|---|\n\
         | (a) `mln upgrade`, nothing changed | {} | {same_conn} / {same_api} in all {ROUNDS} runs |\n\
         | (b) `mln upgrade`, one host's memory down (`live`) | {} | {} / {} |\n\
         | (c) the same change directly: one `virsh` process, `setmaxmem` + `setmem --config`{} | {} | {} / {} |\n\
         | mln's overhead, (b) − (c) per round | {} | |\n\n",
        spread(&same_t),
        spread(&one_t),
        per(&one_calls, |c| c.connects),
        per(&one_calls, |c| c.api),
        if running { " + `setmem --live`" } else { "" },
        spread(&direct_t),
        per(&direct_calls, |c| c.connects),
        per(&direct_calls, |c| c.api),
        spread(&over),
    );
    out += &format!(
        "hosts whose files (definition, seed, disk, logs) changed: (a) {}; (b) {}. Files changed by (a) in all its runs: {same_files} \
         (the project's lock and mln's state database). Hosts whose status file under the embedded root's `run/` libvirt rewrote (its \
         reconnection to running domains when a process opens the root): (b) {}, (c) {}. virsh runs that exited with an error: \
         {direct_failed} of {ROUNDS}.\n\n\
         libvirt entry points of one run, (b): {}; (c): {}.\n\n",
        if same_touched.is_empty() { "none".into() } else { format!("{same_touched:?}") },
        if one_touched.is_empty() { "none".into() } else { format!("{one_touched:?}") },
        count_or_none(&one_status),
        count_or_none(&direct_status),
        names(&one_calls),
        names(&direct_calls),
    );
    let ok_same = same_api == 0 && median(&same_t) < 1.0;
    let ok_one = one_touched.iter().all(|h| h == "node1") && median(&over) < 1.0;
    out += &stopped_guests;
    (out, (ok_same, ok_one))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let work = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("room beside the checkout");
    let state = work.path().join("state");
    let guest = state.join("templates/mln-testguest");
    let st = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/testguest/build.sh")).arg(&guest).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let b = Bench { state: state.clone(), log: work.path().join("libvirt-api.log") };
    let file = work.path().join(format!("{PROJECT}.mln"));
    let file_s = file.to_str().unwrap();
    let _guests = Guests(work.path().to_path_buf());
    let mut mib = BASE_MIB;

    eprintln!("building {HOSTS} hosts...");
    project(&file, BASE_MIB);
    let built = b.mln(&["build", "-f", file_s]);
    eprintln!("  built in {:.2} s", built.secs);

    let (stopped, ok_stopped) = phase(&b, &file, false, &mut mib);
    eprint!("{stopped}");
    eprintln!("starting the {HOSTS} hosts...");
    b.mln(&["start", "-p", PROJECT]);
    let consoles: Vec<PathBuf> = (1..=HOSTS).map(|i| state.join(format!("projects/{PROJECT}/node{i}/console.log"))).collect();
    wait_counting(&consoles);
    let (running, ok_running) = phase(&b, &file, true, &mut mib);
    let mut out = stopped + &running;
    out += &format!(
        "goals (stopped / running): a no-change upgrade makes no libvirt call and returns in well under 1 s: **{} / {}**; one host's upgrade touches only that host and mln's own time beyond the operation is under 1 s: **{} / {}**\n",
        met(ok_stopped.0), met(ok_running.0), met(ok_stopped.1), met(ok_running.1)
    );
    print!("{out}");
    let _ = b.mln(&["stop", "-p", PROJECT, "-H"]);
    let _ = b.mln(&["remove", "-p", PROJECT]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("upgrade.md"), &out).unwrap();
}
