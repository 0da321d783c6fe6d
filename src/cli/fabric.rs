//! `mln fabric status|exec`: every service host at once.

use super::context::{fail, Global};
use mln::fabric::config;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Every service host: reachable?, versions, CPUs, memory, VMs, projects.
    Status {
        #[arg(short = 'w', value_name = "HOSTS")]
        hosts: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a command on service hosts in parallel; identical outputs folded.
    Exec {
        /// Hosts (`h1,h2`, `h[1-16]`); default: every host of the fabric.
        #[arg(short = 'w', value_name = "HOSTS")]
        hosts: Option<String>,
        /// Seconds each host may take (1 to 86400).
        #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: Option<u64>,
        /// Hosts worked on at once (default: the fabric's, 64; at most 4096).
        #[arg(short = 'f', long, value_parser = fanout_arg)]
        fanout: Option<usize>,
        #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

fn fanout_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=config::MAX_FANOUT).contains(&n) => Ok(n),
        _ => Err(format!("the fanout is a number of hosts from 1 to {}", config::MAX_FANOUT)),
    }
}

pub fn run(cmd: Command, g: &Global) -> ExitCode {
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let target = g.target(&state);
    let (fab, rt) = match g.fabric(&state) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match cmd {
        Command::Exec { hosts, timeout, fanout, command } => {
            let list = match super::context::servers(&fab, hosts.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            // Words are passed as the remote shell reads them, as ssh does.
            let cmd = command.join(" ");
            let ran = rt.block_on(mln::fabric::exec::run(&list, &cmd, fanout.unwrap_or(fab.fanout), timeout.map(Duration::from_secs)));
            let (text, code) = mln::fabric::exec::report(&ran);
            print!("{}", mln::term::escape_lines(&text));
            ExitCode::from(code)
        }
        Command::Status { hosts, json } => {
            let list = match super::context::servers(&fab, hosts.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let ctx = mln::fabric::inventory::Ctx { fabric: &fab, templates: target.templates.clone(), cache: state.dir().join("cache"), rt: &rt };
            let answers = mln::fabric::inventory::fabric_status(&ctx, &list);
            let ok = answers.iter().all(|(_, a)| a.is_ok());
            if json {
                let items: Vec<serde_json::Value> = answers
                    .iter()
                    .map(|(n, a)| match a {
                        Ok(i) => serde_json::json!({"host": n, "reachable": true, "info": i}),
                        Err(e) => serde_json::json!({"host": n, "reachable": false, "error": e.to_string(), "retry": e.retryable()}),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items).expect("status serializes"));
            } else {
                println!("{:12} {:9} {:8} {:8} {:5} {:>10} {:>10} {:>4}  projects", "host", "reachable", "mln", "libvirt", "cpus", "mem MiB", "free MiB", "vms");
                for (n, a) in &answers {
                    let line = match a {
                        Ok(i) => format!(
                            "{:12} {:9} {:8} {:8} {:5} {:>10} {:>10} {:>4}  {}",
                            n,
                            "yes",
                            i.mln_version,
                            i.libvirt_version,
                            i.cpus,
                            i.memory_total_mib,
                            i.memory_available_mib,
                            i.domains.len(),
                            i.projects.join(",")
                        ),
                        Err(e) => format!("{n:12} no        {e}"),
                    };
                    println!("{}", mln::term::escape(&line));
                }
            }
            super::context::exit(ok)
        }
    }
}
