//! Upgrading a 36-host project on the embedded driver, measured with the
//! release binary. Run with `cargo bench --bench upgrade` (as root, with
//! the packages of scripts/setup.sh; a few minutes). Results are printed
//! and written to target/bench/upgrade.md.
//!
//! 36 hosts of the test guest are built and left stopped (36 emulated
//! guests would not boot on a small machine in reasonable time; a stopped
//! host's `live` change is a change of its definition). Then, interleaved,
//! `ROUNDS` times:
//!
//! (a) `mln upgrade -f` of the file already applied: its time, the libvirt
//!     calls it made and the files it changed;
//! (b) `mln upgrade -f` of a file where one host's memory went down (class
//!     `live`), each round lower so that each round changes something;
//! (c) the same change of the definition done directly, in one virsh
//!     process on the same embedded root (`setmaxmem`/`setmem --config`),
//!     on another host so that mln's record and the domains still agree.
//!
//! mln's overhead is (b) − (c): what mln spends beyond the operation.
//!
//! libvirt calls are counted by libvirt itself: every command runs with
//! libvirt's debug log of its public API (`LIBVIRT_LOG_FILTERS=1:libvirt`)
//! written to a file, in which each public entry point (virConnectOpen*,
//! virDomain*, ...) logs a line; a process that never enters libvirt
//! writes no line at all. (b) and (c) show the counter counting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

const HOSTS: usize = 36;
/// Measured rounds (one more, first, is a warm-up and not counted).
const ROUNDS: usize = 7;
const PROJECT: &str = "up36";
/// Every host's memory; the changed host goes down from here.
const BASE_MIB: u32 = 256;
const STEP_MIB: u32 = 8;

/// libvirt's own count of what a command asked of it.
#[derive(Default, Clone, Debug)]
struct Calls {
    /// Connections opened (virConnectOpen, virConnectOpenAuth, ...).
    connects: usize,
    /// Public API entry points entered, connections included.
    api: usize,
    /// The distinct entry points, for the report.
    names: BTreeSet<String>,
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
        c.names.insert(name);
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

/// The files changed, added or removed between two snapshots.
fn changed(a: &BTreeMap<PathBuf, (SystemTime, u64)>, b: &BTreeMap<PathBuf, (SystemTime, u64)>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = b.iter().filter(|(p, m)| a.get(*p) != Some(m)).map(|(p, _)| p.clone()).collect();
    v.extend(a.keys().filter(|p| !b.contains_key(*p)).cloned());
    v
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
    fn run(&self, mut c: Command, what: &str) -> Run {
        self.logged(&mut c);
        let t = Instant::now();
        let out = c.output().expect("the command runs");
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Run { secs, calls: calls(&self.log), stdout: String::from_utf8_lossy(&out.stdout).into_owned() }
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
        self.run(c, &format!("virsh {cmds}"))
    }
    /// The domain's memory in its definition, in KiB (max, current).
    fn memory_kib(&self, host: &str) -> (u64, u64) {
        let r = self.virsh(&format!("dumpxml {host}.{PROJECT} --inactive"));
        let field = |tag: &str| -> u64 {
            let i = r.stdout.find(&format!("<{tag}")).unwrap_or_else(|| panic!("no <{tag}> in {host}'s definition"));
            let s = &r.stdout[i..];
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

    eprintln!("building {HOSTS} hosts (not started)...");
    project(&file, BASE_MIB);
    let built = b.mln(&["build", "-f", file_s]);
    eprintln!("  built in {:.2} s", built.secs);

    let (mut same_t, mut one_t, mut direct_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut same_calls, mut one_calls, mut direct_calls) = (Vec::new(), Vec::new(), Vec::new());
    let mut same_touched: BTreeSet<String> = BTreeSet::new();
    let mut one_touched: BTreeSet<String> = BTreeSet::new();
    let mut same_files = 0;
    let mut mib = BASE_MIB;
    for round in 0..=ROUNDS {
        let counted = round > 0;
        eprintln!("round {round}/{ROUNDS}{}", if counted { "" } else { " (warm-up)" });
        // (a) nothing changed.
        let before = snapshot(&state);
        let r = b.mln(&["upgrade", "-f", file_s]);
        let files = changed(&before, &snapshot(&state));
        if counted {
            same_t.push(r.secs);
            same_touched.extend(hosts_of(&files));
            same_files += files.len();
            same_calls.push(r.calls.clone());
        }
        eprintln!("  no change: {:.3} s, {} libvirt calls, files changed: {files:?}", r.secs, r.calls.api);
        // (b) and (c), in turn first.
        mib -= STEP_MIB;
        let do_mln = || {
            project(&file, mib);
            let before = snapshot(&state);
            let r = b.mln(&["upgrade", "-f", file_s]);
            let files = changed(&before, &snapshot(&state));
            assert_eq!(b.memory_kib("node1"), (mib as u64 * 1024, mib as u64 * 1024), "mln upgraded node1's definition");
            eprintln!("  node1 to {mib} MiB by mln: {:.3} s, {} libvirt calls, hosts touched: {:?}", r.secs, r.calls.api, hosts_of(&files));
            (r, files)
        };
        let do_virsh = || {
            let d = format!("node{HOSTS}.{PROJECT}");
            let r = b.virsh(&format!("setmaxmem {d} {mib}M --config ; setmem {d} {mib}M --config"));
            assert_eq!(b.memory_kib(&format!("node{HOSTS}")), (mib as u64 * 1024, mib as u64 * 1024), "virsh changed the definition");
            eprintln!("  node{HOSTS} to {mib} MiB by virsh: {:.3} s, {} libvirt calls", r.secs, r.calls.api);
            r
        };
        let ((m, files), v) = if round % 2 == 0 {
            let m = do_mln();
            (m, do_virsh())
        } else {
            let v = do_virsh();
            (do_mln(), v)
        };
        if counted {
            one_t.push(m.secs);
            direct_t.push(v.secs);
            one_touched.extend(hosts_of(&files));
            one_calls.push(m.calls);
            direct_calls.push(v.calls);
        }
    }
    let over: Vec<f64> = one_t.iter().zip(&direct_t).map(|(m, v)| m - v).collect();
    let same_api: usize = same_calls.iter().map(|c| c.api).sum();
    let same_conn: usize = same_calls.iter().map(|c| c.connects).sum();
    let names = |cs: &[Calls]| cs.iter().flat_map(|c| c.names.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ");
    let per = |cs: &[Calls], f: fn(&Calls) -> usize| {
        let v: Vec<usize> = cs.iter().map(f).collect();
        format!("{}–{}", v.iter().min().unwrap(), v.iter().max().unwrap())
    };
    let mut out = format!(
        "| {HOSTS} hosts (stopped), embedded driver, {ROUNDS} rounds interleaved | median (min–max) | libvirt connections / API calls per run |\n|---|---|---|\n\
         | (a) `mln upgrade`, nothing changed | {} | {same_conn} / {same_api} in all {ROUNDS} runs |\n\
         | (b) `mln upgrade`, one host's memory down (`live`) | {} | {} / {} |\n\
         | (c) the same change directly: one `virsh` process, `setmaxmem` + `setmem --config` | {} | {} / {} |\n\
         | mln's overhead, (b) − (c) per round | {} | |\n\n",
        spread(&same_t),
        spread(&one_t),
        per(&one_calls, |c| c.connects),
        per(&one_calls, |c| c.api),
        spread(&direct_t),
        per(&direct_calls, |c| c.connects),
        per(&direct_calls, |c| c.api),
        spread(&over),
    );
    out += &format!(
        "hosts whose files (definition, disk, seed, logs) changed: (a) {}; (b) {}. Files changed by (a) in all its runs: {same_files}.\n\n\
         libvirt entry points (b) used: {}; (c): {}.\n\n",
        if same_touched.is_empty() { "none".into() } else { format!("{same_touched:?}") },
        if one_touched.is_empty() { "none".into() } else { format!("{one_touched:?}") },
        names(&one_calls),
        names(&direct_calls),
    );
    let ok_same = same_api == 0 && median(&same_t) < 1.0;
    let ok_one = one_touched.iter().all(|h| h == "node1") && median(&over) < 1.0;
    out += &format!(
        "goals: no-change upgrade makes no libvirt call and returns in well under 1 s: **{}**; one host's upgrade touches only that host and mln's own time beyond the operation is under 1 s: **{}**\n",
        if ok_same { "met" } else { "not met" },
        if ok_one { "met" } else { "not met" },
    );
    print!("{out}");
    let _ = b.mln(&["remove", "-p", PROJECT]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("upgrade.md"), &out).unwrap();
}
