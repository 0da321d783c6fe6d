//! `mln remove -p PROJECT`: everything the project made, gone.

use super::context::{fail, Global};
use super::output::{outcomes, Progress};
use mln::fabric::places::with_places;
use mln::runtime::{hooks::Shell, Runtime};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
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
    let r = with_places(&state, &g.target(&state), None, Some(&rec), |places| {
        Runtime { state: &state, places, hooks: &Shell, telemetry: &progress }.remove(&a.project)
    });
    match r {
        Ok(r) => outcomes("remove", r, a.json),
        Err(e) => fail(e),
    }
}
