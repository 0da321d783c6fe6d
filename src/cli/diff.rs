//! `mln diff A.mln B.mln [--json]`: what turning A into B would do, host
//! by host, classified as `mln upgrade` does it; no state needed.

use super::context::{fail_diagnostic, Global};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// One object per host: `{"host", "class", "changes", "why"}`.
    #[arg(long)]
    pub json: bool,
    pub old: PathBuf,
    pub new: PathBuf,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let (old, new) = (g.compile(&a.old), g.compile(&a.new));
    let (ok_old, ok_new) = (g.report(&old), g.report(&new));
    if !(ok_old && ok_new) {
        return ExitCode::FAILURE;
    }
    match mln::upgrade::diff(&old.plan, &new.plan) {
        Ok(u) => super::output::upgrade(&u, a.json),
        Err(e) => fail_diagnostic(e.diagnostic()),
    }
}
