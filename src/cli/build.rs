//! `mln build -f FILE [-r] [-s]`: every VM of a project, made (not started).

use super::context::{fail, Global};
use super::output::{outcomes, Progress};
use mln::fabric::places::with_places;
use mln::runtime::{hooks::Shell, BuildOptions, Runtime};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Replace a project built before.
    #[arg(short = 'r', long)]
    pub replace: bool,
    /// Show what would be built, build nothing (refused hosts are failures,
    /// as they would be in a build).
    #[arg(short = 's', long)]
    pub dry_run: bool,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let c = g.compile(&a.file);
    if !g.report(&c) {
        return ExitCode::FAILURE;
    }
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let target = g.target(&state);
    let progress = Progress::new(a.json);
    let rec = state.project(&c.plan.project).ok().flatten();
    let r = with_places(&state, &target, Some(&c.plan), rec.as_ref(), |places| {
        let rt = Runtime { state: &state, places, hooks: &Shell, telemetry: &progress };
        if a.dry_run {
            Ok(rt.check_build(&c.plan))
        } else {
            rt.build(&c.plan, &a.file, BuildOptions { replace: a.replace, resume: false })
        }
    });
    match r {
        Ok(r) => outcomes(if a.dry_run { "build -s" } else { "build" }, r, a.json),
        Err(e) => fail(e),
    }
}
