//! `mln migrate -p PROJECT -h HOST --to SERVICE_HOST [--live] [--json]`: a
//! running host moved to another service host while it runs.

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
    #[arg(long)]
    pub to: String,
    /// Move it while it runs (the default: memory and its own disks are
    /// copied while the guest goes on).
    #[arg(long, conflicts_with = "cold")]
    pub live: bool,
    /// Move it stopped, with its files (not done yet: refused).
    #[arg(long)]
    pub cold: bool,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    if a.cold {
        return super::context::usage("migrate --cold: moving a stopped host with its files is not done yet; a running host moves live; nothing was changed");
    }
    let (state, rec) = match g.open_project(&a.project) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // The plan as it will be, so the service hosts are reached even for a
    // project that has none yet.
    let mut after = rec.plan.clone();
    if let Some(h) = after.hosts.iter_mut().find(|h| h.name == a.host) {
        h.service_host = Some(a.to.clone());
    }
    g.act("migrate", &state, Some(&after), Some(&rec), a.json, |rt| rt.migrate(&a.project, &a.host, &a.to))
}
