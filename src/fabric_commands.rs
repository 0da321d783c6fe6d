//! The commands that reach service hosts: `fabric status|exec`,
//! `template push`, the hidden `agent`, and the fabric side of
//! build/start/stop/status/remove. A thin layer over `mln::fabric`.

use crate::vm_commands::{fail, print_status, report, stop_mode, VmCommand, Where};
use clap::Subcommand;
use mln::backend::libvirt::Libvirt;
use mln::fabric::project::{self, Ctx};
use mln::fabric::proto::StopMode as WireStop;
use mln::fabric::{config, Fabric, Server};
use mln::lifecycle::{Env, HostStatus, StopMode};
use mln::state::{FabricRow, State};
use mln::term::escape;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum FabricCommand {
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

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Send a template to service hosts that lack it or hold another copy.
    Push {
        name: String,
        #[arg(short = 'w', value_name = "HOSTS")]
        hosts: Option<String>,
    },
}

fn fanout_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=config::MAX_FANOUT).contains(&n) => Ok(n),
        _ => Err(format!("the fanout is a number of hosts from 1 to {}", config::MAX_FANOUT)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The hosts named with -w, else every host of the fabric.
fn servers(fabric: &Fabric, hosts: Option<&str>) -> Result<Vec<Server>, String> {
    let names = match hosts {
        Some(h) => config::expand_nodeset(h)?,
        None => fabric.names(),
    };
    if names.is_empty() {
        return Err("no service hosts: name them with -w, or list them in a fabric file (--fabric, $MLN_FABRIC)".into());
    }
    Ok(names.iter().map(|n| fabric.server(n)).collect())
}

pub fn fabric(cmd: FabricCommand, w: &Where) -> ExitCode {
    let fab = match w.fabric() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match cmd {
        FabricCommand::Exec { hosts, timeout, fanout, command } => {
            let list = match servers(&fab, hosts.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            // Words are passed as the remote shell reads them, as ssh does.
            let cmd = command.join(" ");
            let ran = rt.block_on(mln::fabric::exec::run(&list, &cmd, fanout.unwrap_or(fab.fanout), timeout.map(Duration::from_secs)));
            let (text, code) = mln::fabric::exec::report(&ran);
            print!("{text}");
            ExitCode::from(code)
        }
        FabricCommand::Status { hosts, json } => {
            let list = match servers(&fab, hosts.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let state = match State::open(&w.state_dir()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let ctx = Ctx { fabric: &fab, state: &state, templates: w.templates_of(&state), rt: &rt };
            let answers = project::fabric_status(&ctx, &list);
            let ok = answers.iter().all(|(_, a)| a.is_ok());
            if json {
                let items: Vec<serde_json::Value> = answers
                    .iter()
                    .map(|(n, a)| match a {
                        Ok(i) => serde_json::json!({"host": n, "reachable": true, "info": i}),
                        Err(e) => serde_json::json!({"host": n, "reachable": false, "error": e}),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items).expect("status serializes"));
            } else {
                println!("{:12} {:9} {:8} {:8} {:5} {:>10} {:>10} {:>4}  projects", "host", "reachable", "mln", "libvirt", "cpus", "mem MiB", "free MiB", "vms");
                for (n, a) in &answers {
                    match a {
                        // What a service host reports: escaped for the terminal.
                        Ok(i) => println!(
                            "{:12} {:9} {:8} {:8} {:5} {:>10} {:>10} {:>4}  {}",
                            escape(n),
                            "yes",
                            escape(&i.mln_version),
                            escape(&i.libvirt_version),
                            i.cpus,
                            i.memory_total_mib,
                            i.memory_available_mib,
                            i.domains.len(),
                            escape(&i.projects.join(","))
                        ),
                        Err(e) => println!("{:12} no        {}", escape(n), escape(e)),
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

pub fn template(cmd: TemplateCommand, w: &Where) -> ExitCode {
    let TemplateCommand::Push { name, hosts } = cmd;
    let (fab, state, rt) = match (|| Ok::<_, String>((w.fabric()?, State::open(&w.state_dir())?, runtime()?)))() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let list = match servers(&fab, hosts.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let ctx = Ctx { fabric: &fab, state: &state, templates: w.templates_of(&state), rt: &rt };
    let outcomes: Vec<mln::lifecycle::Outcome> =
        project::push(&ctx, &list, &name).into_iter().map(|(host, result)| mln::lifecycle::Outcome { host, result }).collect();
    report("push", Ok(outcomes))
}

pub fn agent(w: &Where) -> ExitCode {
    let state_dir = w.state_dir();
    let templates = match State::open(&state_dir) {
        Ok(s) => w.templates_of(&s),
        Err(e) => {
            println!("{}", serde_json::json!({"error": e}));
            return ExitCode::FAILURE;
        }
    };
    let connect = w.connect().map(str::to_string).unwrap_or_else(|| format!("qemu:///embed?root={}", state_dir.join("libvirt").display()));
    let code = mln::fabric::agent::serve(&mln::fabric::agent::Options { state_dir, templates, connect });
    ExitCode::from(code as u8)
}

/// Runs `f` with a local libvirt environment when `need`, else without.
fn with_local<R>(state: &State, templates: &Path, uri: &str, need: bool, f: impl FnOnce(Option<&Env>) -> R) -> Result<R, String> {
    if !need {
        return Ok(f(None));
    }
    let lv = Libvirt::connect(uri)?;
    Ok(f(Some(&Env { state, lv: &lv, templates: templates.to_path_buf() })))
}

pub fn build(w: &Where, state: &State, templates: PathBuf, uri: &str, plan: &mln::plan::Plan, file: &Path, replace: bool) -> ExitCode {
    let (fab, rt) = match (|| Ok::<_, String>((w.fabric()?, runtime()?)))() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let ctx = Ctx { fabric: &fab, state, templates: templates.clone(), rt: &rt };
    let local = plan.hosts.iter().any(|h| h.service_host.is_none());
    match with_local(state, &templates, uri, local, |env| project::build(&ctx, env, plan, file, replace)) {
        Ok(r) => report("build", r),
        Err(e) => fail(e),
    }
}

/// start, stop, status, remove of a project recorded as a fabric project.
pub fn project(cmd: VmCommand, w: &Where, state: &State, templates: PathBuf, uri: &str) -> ExitCode {
    let (fab, rt) = match (|| Ok::<_, String>((w.fabric()?, runtime()?)))() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let ctx = Ctx { fabric: &fab, state, templates: templates.clone(), rt: &rt };
    let name = match &cmd {
        VmCommand::Start { project, .. } | VmCommand::Stop { project, .. } | VmCommand::Remove { project } => project.clone(),
        VmCommand::Status { project: Some(p), .. } => p.clone(),
        _ => return fail("not a fabric command".into()),
    };
    let local = matches!(state.project(&name), Ok(Some(_)));
    let r = with_local(state, &templates, uri, local, |env| match cmd {
        VmCommand::Start { project, hosts, .. } => report("start", project::start(&ctx, env, &project, &hosts)),
        VmCommand::Stop { project, hosts, save, hard, wait, .. } => match stop_mode(save, hard, wait) {
            Ok(mode) => {
                let wire = match mode {
                    StopMode::Save => WireStop::Save,
                    StopMode::Hard => WireStop::Hard,
                    StopMode::Graceful { wait } => WireStop::Graceful { wait_secs: wait.as_secs() },
                };
                report("stop", project::stop(&ctx, env, &project, &hosts, wire))
            }
            Err(e) => fail(e),
        },
        VmCommand::Remove { project } => report("remove", project::remove(&ctx, env, &project)),
        VmCommand::Status { project: Some(p), json } => match project::status(&ctx, env, &p) {
            Ok(s) => print_status(&s, json),
            Err(e) => fail(e),
        },
        _ => unreachable!("checked above"),
    });
    r.unwrap_or_else(fail)
}

/// Status of every fabric project (for `mln status` without -p).
pub fn all_status(w: &Where, state: &State, local: Option<&Env>, rows: &[FabricRow]) -> Result<Vec<HostStatus>, String> {
    let fab = w.fabric()?;
    let rt = runtime()?;
    let ctx = Ctx { fabric: &fab, state, templates: w.templates_of(state), rt: &rt };
    let mut out = Vec::new();
    for r in rows {
        out.extend(project::status(&ctx, local, &r.name)?);
    }
    Ok(out)
}

/// Placement against the fabric's declared capacity, for check/plan/build.
pub fn check_capacity(c: &mut mln::Compilation, w: &Where) {
    if c.diags.has_errors() || !project::uses_fabric(&c.plan) {
        return;
    }
    match w.fabric() {
        Ok(f) => {
            let ds = mln::fabric::capacity::check(c, &f);
            c.diags.extend(ds);
        }
        Err(e) => c.diags.push(mln::diag::Diagnostic::error("mln::fabric::file", e)),
    }
}
