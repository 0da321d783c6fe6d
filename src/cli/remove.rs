//! `mln remove -p PROJECT`: everything the project made, gone.

use super::context::Global;
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
    g.act_on("remove", &a.project, a.json, |rt| rt.remove(&a.project))
}
