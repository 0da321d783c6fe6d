//! `mln start -p PROJECT [-h HOST]... [-s SECONDS]`: in boot order; saved
//! machines are restored.

use super::context::Global;
use mln::runtime::StartOptions;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    #[arg(short = 'h', long = "host")]
    pub hosts: Vec<String>,
    /// Start one host at a time, SECONDS apart (MLN's `start -s`).
    #[arg(short = 's', long = "pause", value_name = "SECONDS")]
    pub pause: Option<u64>,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let opts = StartOptions { hosts: a.hosts, pause: a.pause.map(Duration::from_secs) };
    g.act_on("start", &a.project, a.json, |rt| rt.start(&a.project, &opts))
}
