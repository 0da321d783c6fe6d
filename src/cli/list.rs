//! `mln list [--json]`: every project, where it stands, and its machines'
//! states (asked live: a built project is running, saved, shut off or a
//! mix).

use super::context::{fail, Global};
use mln::state::Phase;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let records = match state.projects() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut items = Vec::new();
    for r in records {
        let rec = match r {
            Ok(r) => r,
            Err(e) => {
                items.push(serde_json::json!({"project": null, "state": "unreadable", "error": e.to_string()}));
                continue;
            }
        };
        // Built: what the machines are doing now. Otherwise the build's
        // phase says it all (`building`: interrupted or running; `failed`).
        let summary = if rec.phase == Phase::Built {
            match g.status_of(&state, &rec.name, &[]) {
                Ok(list) => {
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    for s in &list {
                        *counts.entry(s.state.clone()).or_default() += 1;
                    }
                    match counts.len() {
                        0 => "built".to_string(),
                        1 => counts.into_keys().next().expect("one"),
                        _ => counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", "),
                    }
                }
                Err(_) => "unknown".into(),
            }
        } else {
            rec.phase.to_string()
        };
        items.push(serde_json::json!({
            "project": rec.name, "phase": rec.phase, "state": summary, "hosts": rec.plan.hosts.len(),
            "file": rec.file, "connect": rec.connect, "service_hosts": rec.places,
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&items).expect("list serializes"));
    } else {
        for i in &items {
            let n = i["hosts"].as_u64().unwrap_or(0);
            let line = format!(
                "{:16} {:22} {:4} host{}  {}",
                i["project"].as_str().unwrap_or("?"),
                i["state"].as_str().unwrap_or(""),
                n,
                if n == 1 { " " } else { "s" },
                i["file"].as_str().or(i["error"].as_str()).unwrap_or("")
            );
            println!("{}", mln::term::escape(&line));
        }
    }
    ExitCode::SUCCESS
}
