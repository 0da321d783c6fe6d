//! What several benches share: timing a command, a log without colours,
//! and a `main` that runs the sections asked for and writes the report.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `cmd` to completion (no SSH agent, so every tool uses the same
/// keys) and returns its wall time; panics if it fails.
pub fn time(label: &str, mut cmd: Command) -> Duration {
    cmd.env_remove("SSH_AUTH_SOCK");
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{label}: {e}"));
    let d = t.elapsed();
    assert!(out.status.success(), "{label} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    d
}

/// The text without its terminal colours (tracing styles its fields even
/// into a pipe).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A bench's `main`: the sections named on the command line (all of them
/// when none is), each followed by the load average; the report printed
/// and written to target/bench/ under the name `file` gives for the names.
/// Returns at once without `--bench`: `cargo test --all-targets` runs
/// benches too.
pub fn report(file: impl Fn(&[String]) -> String, sections: &[(&str, &dyn Fn() -> String)]) {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let load = |when: &str| format!("load average {when}: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    let mut out = format!("{}\n\n", load("at the start"));
    for (name, run) in sections {
        if which.is_empty() || which.iter().any(|a| a == name) {
            let s = run();
            eprint!("{s}");
            out += &s;
            out += &format!("\n{}\n\n", load(&format!("after {name}")));
        }
    }
    print!("{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file(&which)), &out).unwrap();
}
