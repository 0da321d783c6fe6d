//! What the VM benches share: the order statistics of their rounds, and
//! a guard that kills the guests of a run that failed half-way.
#![allow(dead_code)] // each bench uses its own part

use std::path::PathBuf;

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}

/// Kills, by pid, the QEMU processes whose command line names `dir`: the
/// guests of a run that failed half-way do not outlive it.
pub struct Guests(pub PathBuf);

impl Drop for Guests {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with("/usr/bin/qemu-system") && cmd.contains(&needle) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
