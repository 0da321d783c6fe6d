//! `mln reconfigure -p PROJECT [-h HOST]... [--json]`: built hosts brought
//! back to the recorded plan (their configuration written anew, running
//! guests restarted to apply it).

use super::context::Global;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    /// Only these hosts (repeatable).
    #[arg(short = 'h', long = "host")]
    pub hosts: Vec<String>,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    g.act_on("reconfigure", &a.project, a.json, |rt| rt.reconfigure(&a.project, &a.hosts))
}
