//! `mln migrate -p PROJECT -h HOST (--to SERVICE_HOST | --here) [--live |
//! --cold] [--json]`: a host moved to another service host (or to this
//! machine), live while it runs or with its files.

use super::context::Global;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    #[arg(short = 'h', long = "host")]
    pub host: String,
    /// The service host it moves to (a name in the fabric configuration).
    #[arg(long, required_unless_present = "here", conflicts_with = "here")]
    pub to: Option<String>,
    /// It moves to this machine (its own libvirt).
    #[arg(long)]
    pub here: bool,
    /// Move it while it runs: memory and its own disks are copied while
    /// the guest goes on (the default for a running host between service
    /// hosts).
    #[arg(long, conflicts_with = "cold")]
    pub live: bool,
    /// Move it with its files, as it is: a running host is frozen (its
    /// memory saved), carried and resumed; a saved one stays saved; a
    /// stopped one stays stopped (the default otherwise).
    #[arg(long)]
    pub cold: bool,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let (state, rec) = match g.open_project(&a.project) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // The plan as it will be, so the service hosts are reached even for a
    // project that has none yet.
    let mut after = rec.plan.clone();
    if let Some(h) = after.hosts.iter_mut().find(|h| h.name == a.host) {
        h.service_host = a.to.clone();
    }
    let mode = match (a.live, a.cold) {
        (true, _) => mln::runtime::MoveMode::Live,
        (_, true) => mln::runtime::MoveMode::Cold,
        _ => mln::runtime::MoveMode::Auto,
    };
    g.act("migrate", &state, Some(&after), Some(&rec), a.json, |rt| rt.migrate(&a.project, &a.host, a.to.as_deref(), mode))
}
