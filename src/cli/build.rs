//! `mln build -f FILE [-r] [-s]`: every VM of a project, made (not started).

use super::context::Global;
use mln::runtime::BuildOptions;
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
    /// Start the project's hosts once every one is built, in the same
    /// process (as `mln start -p PROJECT` would): the machine manager is
    /// opened once, not once per command.
    #[arg(long, conflicts_with_all = ["dry_run", "json"])]
    pub start: bool,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let mut c = g.compile(&a.file);
    if !g.report(&c) {
        return ExitCode::FAILURE;
    }
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Bare-metal environments the library lacks: refused before any node
    // (or VM) is touched, at the lines naming them.
    match mln::baremetal::env::missing(&state, &c) {
        Ok(ds) if ds.is_empty() => {}
        Ok(ds) => {
            c.diags = mln::diag::Diagnostics::default();
            c.diags.extend(ds);
            g.report(&c);
            return ExitCode::FAILURE;
        }
        Err(e) => return super::context::fail(e),
    }
    let rec = state.project(&c.plan.project).ok().flatten();
    if a.dry_run {
        return g.act("build -s", &state, Some(&c.plan), rec.as_ref(), a.json, |rt| Ok(rt.check_build(&c.plan)));
    }
    let opts = BuildOptions { replace: a.replace, resume: false };
    if !a.start {
        return g.act("build", &state, Some(&c.plan), rec.as_ref(), a.json, |rt| rt.build(&c.plan, &a.file, opts));
    }
    // The build's summary first; the start only when every host was built
    // (as `mln build && mln start` would), its summary after.
    g.act("start", &state, Some(&c.plan), rec.as_ref(), false, |rt| {
        let built = rt.build(&c.plan, &a.file, opts);
        let built_ok = matches!(&built, Ok(o) if o.iter().all(mln::machine::Outcome::ok));
        let _ = super::output::outcomes("build", built, false);
        if !built_ok {
            return Err(mln::runtime::RuntimeError::Refused(format!("project {} not started: not every host was built", c.plan.project)));
        }
        rt.start(&c.plan.project, &mln::runtime::StartOptions::default())
    })
}
