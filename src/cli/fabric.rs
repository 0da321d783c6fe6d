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
        /// Tree fan-out: reach at most ARITY hosts from here, each of which
        /// relays to a share of the others (with mln's agent copy there,
        /// and the same key and known_hosts paths, which must exist there).
        #[arg(long, value_name = "ARITY", value_parser = fanout_arg)]
        tree: Option<usize>,
        #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// A head of `exec --tree`: reads its share (JSON) on stdin, answers
    /// for every host of it (JSON) on stdout.
    #[command(hide = true)]
    Relay,
}

fn fanout_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=config::MAX_FANOUT).contains(&n) => Ok(n),
        _ => Err(format!("the fanout is a number of hosts from 1 to {}", config::MAX_FANOUT)),
    }
}

pub fn run(cmd: Command, g: &Global) -> ExitCode {
    // A head needs no state of its own: its share comes on stdin.
    if let Command::Relay = cmd {
        return relay();
    }
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
        Command::Relay => relay(),
        Command::Exec { hosts, timeout, fanout, tree, command } => {
            let list = match super::context::servers(&fab, hosts.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            // Words are passed as the remote shell reads them, as ssh does.
            let cmd = command.join(" ");
            let (window, limit) = (fanout.unwrap_or(fab.fanout), timeout.map(Duration::from_secs));
            let ran = match tree {
                Some(arity) => rt.block_on(mln::fabric::tree::run(list, cmd, window, limit, arity)),
                None => rt.block_on(mln::fabric::exec::run(&list, &cmd, window, limit)),
            };
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

/// `mln fabric relay`: the head's side of `exec --tree`.
fn relay() -> ExitCode {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return fail(format!("cannot read the relay job: {e}"));
    }
    let job: mln::fabric::tree::Job = match serde_json::from_slice(&input) {
        Ok(j) => j,
        Err(e) => return fail(format!("unreadable relay job: {e}")),
    };
    if let Err(e) = mln::fabric::tree::ours(&job) {
        eprintln!("mln: {}", mln::term::escape(&e));
        return ExitCode::from(mln::fabric::tree::NOT_OURS);
    }
    let rt = match mln::fabric::places::async_runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let answers = rt.block_on(mln::fabric::tree::serve(job));
    let text = match serde_json::to_vec(&answers) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot write the relay answer: {e}")),
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(&text).and_then(|_| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
