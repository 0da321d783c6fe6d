//! `mln start -p PROJECT [-h HOST]... [-s SECONDS]`: in boot order; saved
//! machines are restored.

use super::context::{fail, Global};
use super::output::{outcomes, Progress};
use mln::fabric::places::with_places;
use mln::runtime::{hooks::Shell, Runtime, StartOptions};
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
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rec = match state.require(&a.project) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let progress = Progress::new(a.json);
    let opts = StartOptions { hosts: a.hosts, pause: a.pause.map(Duration::from_secs) };
    let r = with_places(&state, &g.target(&state), None, Some(&rec), |places| {
        Runtime { state: &state, places, hooks: &Shell, telemetry: &progress }.start(&a.project, &opts)
    });
    match r {
        Ok(r) => outcomes("start", r, a.json),
        Err(e) => fail(e),
    }
}
