//! `mln status [-p PROJECT] [-h HOST]... [--json]`: per host, its state,
//! service host and addresses, asked of every place at once.

use super::context::{fail, Global};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// One project (default: every project).
    #[arg(short = 'p', long)]
    pub project: Option<String>,
    /// Only these hosts (with -p).
    #[arg(short = 'h', long = "host", requires = "project")]
    pub hosts: Vec<String>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let projects = match &a.project {
        Some(p) => vec![p.clone()],
        None => match state.project_names() {
            Ok(n) => n,
            Err(e) => return fail(e),
        },
    };
    let mut all = Vec::new();
    let mut ok = true;
    for p in &projects {
        match g.status_of(&state, p, &a.hosts) {
            Ok(s) => all.extend(s),
            Err(e) => {
                ok = false;
                eprintln!("mln: {}", mln::term::escape_lines(&e));
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all).expect("status serializes"));
    } else {
        for s in &all {
            let state = match &s.error {
                Some(e) => format!("{} ({e})", s.state),
                None => s.state.clone(),
            };
            let line = format!("{:12} {:12} {:9} {:18} {}", s.project, s.host, state, s.service_host.as_deref().unwrap_or("(local)"), s.addresses.join(" "));
            println!("{}", mln::term::escape(&line));
        }
    }
    super::context::exit(ok && all.iter().all(|s| s.error.is_none()))
}
