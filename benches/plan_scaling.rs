//! Planning side by side with the original MLN: `mln check` and `mln plan
//! --json` on generated projects of 100 to 100,000 hosts, and MLN 1.0.8.8
//! (Perl, simulate mode: `mln build -s`) on the same autoenum projects in
//! the same run, for the sizes it can do in reasonable time (100, 1,000,
//! 4,000). Reports wall time, CPU time (user + system) and peak memory
//! (from `wait4`) of each process, start-up included, and the ratio per
//! size. Run with `cargo bench --bench plan_scaling`; the table is printed
//! and written to target/bench/plan_scaling.md.
//!
//! The peer is found in `$MLN_PEER_DIR`, else `../shared/peers/mln-1.0.8.8`
//! next to the crate; without it (or without `perl`) its columns are
//! skipped with a message. Runs of mln and of the peer alternate, so both
//! see the same load. Nothing here asserts a time: a run fails only when a
//! program fails or the peer does not print every host.

#[path = "support/gen.rs"]
mod gen;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs per size (after one warm-up run each): many for short runs, where
/// scheduling noise is large next to the run, fewer for long ones.
fn runs(hosts: usize) -> usize {
    match hosts {
        0..=1_000 => 11,
        1_001..=10_000 => 7,
        _ => 5,
    }
}

/// Peer runs per size: it takes about 3 ms per host.
fn peer_runs(hosts: usize) -> usize {
    if hosts <= 1_000 {
        5
    } else {
        3
    }
}

const PEER_SIZES: [usize; 3] = [100, 1_000, 4_000];

#[derive(Clone, Copy)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    peak_mb: f64,
}

/// Runs `cmd` once to completion: wall time, CPU time and peak RSS of the
/// child. None if it did not exit 0.
fn run(mut cmd: Command) -> Option<Sample> {
    let start = Instant::now();
    let child = cmd.stdin(Stdio::null()).spawn().expect("the program starts");
    // Reaped by wait4 below, which also reports the child's usage.
    let pid = child.id() as libc::pid_t;
    std::mem::forget(child);
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r, pid, "wait4");
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    ok.then(|| Sample { wall_ms, cpu_ms: tv(usage.ru_utime) + tv(usage.ru_stime), peak_mb: usage.ru_maxrss as f64 / 1024.0 })
}

/// Median, and spread as (min, max).
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stats { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
}

struct Measured {
    wall: Stats,
    cpu: Stats,
    peak_mb: f64,
    runs: usize,
}

fn summarize(samples: &[Sample]) -> Measured {
    Measured {
        wall: stats(samples.iter().map(|s| s.wall_ms).collect()),
        cpu: stats(samples.iter().map(|s| s.cpu_ms).collect()),
        peak_mb: samples.iter().map(|s| s.peak_mb).fold(0.0, f64::max),
        runs: samples.len(),
    }
}

fn mln(bin: &str, args: &[&str], file: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(args).arg(file).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// MLN 1.0.8.8 in simulate mode, with its own config and plugin
/// directory under `home` (as its README says).
struct Peer {
    script: PathBuf,
    home: PathBuf,
}

impl Peer {
    fn find(tmp: &Path) -> Result<Peer, String> {
        let dir = std::env::var_os("MLN_PEER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/mln-1.0.8.8"));
        let script = dir.join("mln");
        if !script.is_file() {
            return Err(format!("no MLN at {} (set MLN_PEER_DIR)", script.display()));
        }
        match Command::new("perl").arg("-e1").status() {
            Ok(s) if s.success() => {}
            _ => return Err("no perl".into()),
        }
        let home = tmp.join("peer-home");
        for d in ["d/templates", "d/projects", "d/files", ".mln_plugins"] {
            std::fs::create_dir_all(home.join(d)).map_err(|e| e.to_string())?;
        }
        std::fs::copy(dir.join("plugins/autoenum.pl"), home.join(".mln_plugins/autoenum.pl")).map_err(|e| e.to_string())?;
        let d = home.join("d");
        let conf = format!("files {}\ntemplates {}\nprojects {}\n", d.join("files").display(), d.join("templates").display(), d.join("projects").display());
        std::fs::write(home.join(".mln"), conf).map_err(|e| e.to_string())?;
        Ok(Peer { script, home })
    }

    /// One simulate run; its output goes to `out` so the hosts it printed
    /// can be counted.
    fn command(&self, file: &Path, out: &Path) -> Command {
        let mut c = Command::new("perl");
        c.arg(&self.script)
            .args(["build", "-s", "-f"])
            .arg(file.file_name().unwrap())
            .current_dir(file.parent().unwrap())
            .env("HOME", &self.home)
            .stdout(std::fs::File::create(out).expect("peer output file"))
            .stderr(Stdio::null());
        c
    }
}

/// The hosts the peer printed (`--> Host NAME`, one per host).
fn peer_hosts(out: &Path) -> usize {
    std::fs::read_to_string(out).map(|s| s.lines().filter(|l| l.starts_with("--> Host ")).count()).unwrap_or(0)
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn main() {
    // cargo bench passes --bench; a plain `cargo test` of benches passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_mln");
    let dir = tempfile::tempdir().expect("temp dir");
    let peer = match Peer::find(dir.path()) {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("plan_scaling: the peer is skipped: {why}");
            None
        }
    };
    let mut side = Vec::new();
    let mut rows = Vec::new();
    let mut per_host: Vec<(String, usize, f64)> = Vec::new();
    // "explicit, switched": the explicit hosts without their warnings.
    for case in ["autoenum", "explicit", "explicit, switched"] {
        let sizes: &[usize] = if case == "autoenum" { &[100, 1_000, 4_000, 10_000, 100_000] } else { &[1_000, 10_000, 100_000] };
        for &n in sizes {
            let sub = dir.path().join(format!("{}-{n}", case.replace(", ", "-")));
            std::fs::create_dir_all(&sub).unwrap();
            let file = sub.join("project.mln");
            match case {
                "autoenum" => {
                    let (p, servers) = gen::autoenum(n);
                    std::fs::write(&file, p).unwrap();
                    std::fs::write(sub.join("servers.txt"), servers).unwrap();
                }
                "explicit" => std::fs::write(&file, gen::explicit(n)).unwrap(),
                _ => std::fs::write(&file, gen::explicit_switched(n)).unwrap(),
            }
            let with_peer = case == "autoenum" && PEER_SIZES.contains(&n);
            let peer_out = sub.join("peer.out");
            let (mut check, mut plan, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
            let fail = |what: &str| -> ! { panic!("{what} failed on {case} {n}") };
            // One warm-up run of each (page cache, the peer's Perl modules).
            run(mln(bin, &["check"], &file)).unwrap_or_else(|| fail("mln check"));
            for i in 0..runs(n) {
                check.push(run(mln(bin, &["check"], &file)).unwrap_or_else(|| fail("mln check")));
                plan.push(run(mln(bin, &["plan", "--json"], &file)).unwrap_or_else(|| fail("mln plan --json")));
                if let (true, Some(p)) = (with_peer && i <= peer_runs(n), &peer) {
                    let s = run(p.command(&file, &peer_out)).unwrap_or_else(|| fail("MLN build -s"));
                    let printed = peer_hosts(&peer_out);
                    assert_eq!(printed, n, "MLN printed {printed} of {n} hosts");
                    // The first is its warm-up.
                    if i > 0 {
                        theirs.push(s);
                    }
                }
            }
            let (c, p) = (summarize(&check), summarize(&plan));
            eprintln!("plan_scaling: {case} {n}: check {:.1} ms, plan --json {:.1} ms (medians)", c.wall.median, p.wall.median);
            per_host.push((case.to_string(), n, c.wall.median / n as f64));
            rows.push(format!(
                "| {case} | {n} | `check` | {} | {}–{} | {} | {:.0} | {:.1} |",
                ms(c.wall.median), ms(c.wall.min), ms(c.wall.max), ms(c.cpu.median), c.peak_mb, c.wall.median * 1000.0 / n as f64
            ));
            rows.push(format!(
                "| {case} | {n} | `plan --json` | {} | {}–{} | {} | {:.0} | {:.1} |",
                ms(p.wall.median), ms(p.wall.min), ms(p.wall.max), ms(p.cpu.median), p.peak_mb, p.wall.median * 1000.0 / n as f64
            ));
            if !theirs.is_empty() {
                let t = summarize(&theirs);
                side.push(format!(
                    "| {n} | {} ({}–{}) | {} | {:.0} | {} ({}–{}) | {} | {:.0} | **{:.0}×** | {:.0}× |",
                    ms(t.wall.median), ms(t.wall.min), ms(t.wall.max), ms(t.cpu.median), t.peak_mb,
                    ms(c.wall.median), ms(c.wall.min), ms(c.wall.max), ms(c.cpu.median), c.peak_mb,
                    t.wall.median / c.wall.median, t.cpu.median / c.cpu.median
                ));
                side.push(format!("|  | ({} runs) | | | ({} runs) | | | | |", t.runs, c.runs));
            }
        }
    }
    let mut out = String::new();
    if !side.is_empty() {
        out += "MLN 1.0.8.8 `build -s` against `mln check`, autoenum, same run (ms; median (min–max)):\n\n";
        out += "| hosts | MLN wall | MLN CPU | MLN MB | mln wall | mln CPU | mln MB | wall ratio | CPU ratio |\n|---|---|---|---|---|---|---|---|---|\n";
        out += &side.join("\n");
        out += "\n\n";
    }
    out += "mln alone (ms; median, min–max; CPU is user + system; MB is peak RSS of any run):\n\n";
    out += "| project | hosts | command | wall | spread | CPU | MB | wall µs/host |\n|---|---|---|---|---|---|---|---|\n";
    out += &rows.join("\n");
    out += "\n\nLinearity (`check` wall per host against 1,000 hosts):\n\n";
    for case in ["autoenum", "explicit", "explicit, switched"] {
        let base = per_host.iter().find(|(c, n, _)| c == case && *n == 1_000).map(|x| x.2);
        for (c, n, t) in per_host.iter().filter(|(c, _, _)| c == case) {
            if let Some(b) = base {
                out += &format!("* {c} {n}: {:.2}× the per-host time at 1,000\n", t / b);
            }
        }
    }
    print!("{out}");
    let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("plan_scaling.md"), &out).unwrap();
}
