//! `mln plan --json` on generated projects of 1,000 and 10,000 hosts:
//! wall time, peak memory, and how 10x the hosts scales. Run with
//! `cargo bench --bench plan_scaling`; results are printed as a markdown
//! table and written to target/bench/plan_scaling.md.
//!
//! The peer is MLN's Perl parser. It is not packaged anywhere we can
//! install it, so its published rate (about 350 hosts/s: 1,000 hosts in
//! 2.9 s, 4,000 in 11.5 s) is the comparison.

#[path = "support/gen.rs"]
mod gen;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const RUNS: usize = 11;
const MLN_PERL_HOSTS_PER_S: f64 = 350.0;

struct Sample {
    ms: f64,
    peak_mb: f64,
}

/// Runs the binary once; wall time and the child's peak RSS.
fn run(bin: &str, file: &Path) -> Sample {
    let start = Instant::now();
    let child = Command::new(bin)
        .args(["plan", "--json"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mln runs");
    // Reaped by wait4 below, which also reports the child's peak memory.
    let pid = child.id() as libc::pid_t;
    std::mem::forget(child);
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "mln plan failed on {}", file.display());
    Sample { ms, peak_mb: usage.ru_maxrss as f64 / 1024.0 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median and minimum wall time, and peak memory. The minimum is the run
/// least disturbed by other load on the machine.
fn measure(bin: &str, file: &Path) -> (f64, f64, f64) {
    run(bin, file); // warm the page cache
    let samples: Vec<Sample> = (0..RUNS).map(|_| run(bin, file)).collect();
    let peak = samples.iter().map(|s| s.peak_mb).fold(0.0, f64::max);
    let times: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    (median(times), min, peak)
}

fn main() {
    // cargo bench passes --bench; a plain `cargo test` of benches passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_mln");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    for case in ["autoenum", "explicit"] {
        let (mut medians, mut mins) = (Vec::new(), Vec::new());
        for n in [1_000usize, 10_000] {
            let file = dir.path().join(format!("{case}-{n}.mln"));
            match case {
                "autoenum" => {
                    let (p, servers) = gen::autoenum(n);
                    std::fs::write(&file, p).unwrap();
                    std::fs::write(dir.path().join("servers.txt"), servers).unwrap();
                }
                _ => std::fs::write(&file, gen::explicit(n)).unwrap(),
            }
            let bytes = std::fs::metadata(&file).unwrap().len();
            let (ms, min, peak) = measure(bin, &file);
            let perl_ms = n as f64 / MLN_PERL_HOSTS_PER_S * 1000.0;
            medians.push(ms);
            mins.push(min);
            rows.push(format!(
                "| {case} | {n} | {:.0} KiB | {ms:.1} | {min:.1} | {peak:.1} | {:.0} | {:.0} | {:.4} |",
                bytes as f64 / 1024.0,
                n as f64 / (ms / 1000.0),
                perl_ms,
                ms / perl_ms
            ));
        }
        rows.push(format!(
            "| {case} | 10k / 1k time | | {:.2}x | {:.2}x | | | | |",
            medians[1] / medians[0],
            mins[1] / mins[0]
        ));
    }
    let table = format!(
        "| project | hosts | file | median ms ({RUNS} runs) | min ms | peak MB | hosts/s (median) | MLN Perl ms (350 hosts/s) | ratio mln / MLN |\n|---|---|---|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    print!("{table}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("plan_scaling.md"), &table).unwrap();
}
