//! How the library's progress events and outcomes reach a person or a
//! program: a progress bar on a terminal, plain lines otherwise, JSON
//! lines with `--json`; then a per-host summary (or one JSON document)
//! and an exit status that says whether every host succeeded.

use mln::machine::{Outcome, Status};
use mln::progress::{Event, Telemetry};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

/// Renders events on stderr.
pub struct Progress {
    json: bool,
    bar: Mutex<Option<(indicatif::ProgressBar, usize, usize)>>,
    terminal: bool,
}

impl Progress {
    pub fn new(json: bool) -> Progress {
        Progress { json, bar: Mutex::new(None), terminal: std::io::stderr().is_terminal() }
    }
}

impl Telemetry for Progress {
    fn event(&self, e: &Event) {
        if self.json {
            if let Ok(line) = serde_json::to_string(e) {
                eprintln!("{line}");
            }
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Begin { op, total } => {
                let b = self.terminal.then(|| {
                    let b = indicatif::ProgressBar::new(*total as u64);
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                            .expect("a valid template")
                            .progress_chars("=> "),
                    );
                    b.set_prefix(op.clone());
                    b
                });
                *bar = Some((b.unwrap_or_else(indicatif::ProgressBar::hidden), 0, *total));
            }
            Event::Done { op, outcome } => {
                let (n, total) = match bar.as_mut() {
                    Some((_, n, total)) => {
                        *n += 1;
                        (*n, *total)
                    }
                    None => (0, 0),
                };
                let status = match outcome.status {
                    Status::Ok => String::new(),
                    Status::Warning => "WARNING: ".into(),
                    Status::Failed => "FAILED: ".into(),
                };
                let line = mln::term::escape(&format!("[{n}/{total}] {op} {}: {status}{}", outcome.label(), outcome.message)).into_owned();
                match bar.as_ref() {
                    Some((b, ..)) if !b.is_hidden() => {
                        b.println(line);
                        b.inc(1);
                    }
                    _ => eprintln!("{line}"),
                }
            }
            Event::End { .. } => {
                if let Some((b, ..)) = bar.take() {
                    b.finish_and_clear();
                }
            }
            Event::Hook { name, ok } => eprintln!("hook {name}: {}", if *ok { "ok" } else { "FAILED" }),
            Event::Note { place, message } => {
                let line = match place {
                    Some(p) => format!("mln: {p}: {message}"),
                    None => format!("mln: {message}"),
                };
                let line = mln::term::escape(&line).into_owned();
                match bar.as_ref() {
                    Some((b, ..)) if !b.is_hidden() => b.println(line),
                    _ => eprintln!("{line}"),
                }
            }
        }
    }
}

/// Prints the outcomes of `op` (a summary table, or JSON) and gives the
/// exit status: 0 when every host succeeded (warnings included).
pub fn outcomes(op: &str, r: Result<Vec<Outcome>, mln::runtime::RuntimeError>, json: bool) -> ExitCode {
    match r {
        Err(e) => super::context::fail_diagnostic(e.diagnostic()),
        Ok(outcomes) => {
            let ok = outcomes.iter().all(Outcome::ok);
            if json {
                let doc = serde_json::json!({"op": op, "ok": ok, "outcomes": outcomes});
                println!("{}", serde_json::to_string_pretty(&doc).expect("outcomes serialize"));
            } else {
                let (text, _) = mln::runtime::summary(op, &outcomes);
                print!("{text}");
            }
            super::context::exit(ok)
        }
    }
}

/// An upgrade's preview (text), or its hosts as a JSON array of
/// `{"host", "class", "changes", "why"}`.
pub fn upgrade(u: &mln::upgrade::Upgrade, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(&u.hosts).expect("an upgrade serializes"));
    } else {
        print!("{}", mln::upgrade::preview(u));
    }
    ExitCode::SUCCESS
}
