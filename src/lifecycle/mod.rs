//! Project lifecycle on libvirt: build, start, stop, status, remove. Every
//! host is worked on in parallel; the hosts that can finish do; each
//! operation ends with a per-host outcome. Every step can be run again
//! after an interruption: what is made is recorded before it is made, and
//! each step checks what already exists.
//!
//! The same code runs on service hosts, driven by `mln agent` (see
//! `crate::fabric`). Not yet: LVM disks (no device-mapper to test on).

mod build;
pub mod hooks;
mod run;

pub use build::build;
pub use run::{remove, start, status, stop, HostStatus, StopMode};

use crate::backend::libvirt::Libvirt;
use crate::state::State;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct Env<'a> {
    pub state: &'a State,
    pub lv: &'a Libvirt,
    pub templates: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub host: String,
    pub result: Result<String, String>,
}

/// Hosts worked on at once: libvirt calls wait on QEMU more than on CPU.
const WINDOW: usize = 8;

/// Runs `f` for each host, a window at a time, reporting each host as it
/// finishes: a progress bar on a terminal, plain lines otherwise; outcomes
/// come back in the hosts' order.
pub fn each<H: Sync>(op: &str, hosts: &[&H], name: impl Fn(&H) -> String + Sync, f: impl Fn(&H) -> Result<String, String> + Sync) -> Vec<Outcome> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(hosts.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        b.set_prefix(op.to_string());
        b
    });
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; hosts.len()]);
    std::thread::scope(|s| {
        for _ in 0..WINDOW.min(hosts.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(h) = hosts.get(i) else { break };
                let result = f(h);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                let host = name(h);
                let line = match &result {
                    Ok(m) => format!("[{n}/{}] {op} {host}: {m}", hosts.len()),
                    Err(e) => format!("[{n}/{}] {op} {host}: FAILED: {e}", hosts.len()),
                };
                let line = crate::term::escape_lines(&line).into_owned();
                match &bar {
                    Some(b) => {
                        b.println(line);
                        b.inc(1);
                    }
                    None => eprintln!("{line}"),
                }
                out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(Outcome { host, result });
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}

/// The per-host summary table, and whether every host succeeded.
pub fn summary(op: &str, outcomes: &[Outcome]) -> (String, bool) {
    let width = outcomes.iter().map(|o| o.host.len()).max().unwrap_or(4).max(4);
    let mut s = format!("{op}: {} hosts\n", outcomes.len());
    let mut failed = 0;
    for o in outcomes {
        match &o.result {
            Ok(m) => s += &format!("  {:width$}  ok      {m}\n", o.host),
            Err(e) => {
                failed += 1;
                s += &format!("  {:width$}  FAILED  {e}\n", o.host)
            }
        }
    }
    if failed > 0 {
        s += &format!("{failed} of {} hosts failed\n", outcomes.len());
    }
    (crate::term::escape_lines(&s).into_owned(), failed == 0)
}
