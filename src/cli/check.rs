//! `mln check FILE...`: every problem at once, or silence and exit 0.

use super::context::{usage, Global};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub files: Vec<PathBuf>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    if a.files.is_empty() {
        return usage("check: name at least one project file");
    }
    let mut ok = true;
    for f in &a.files {
        let c = g.compile(f);
        ok &= g.report(&c);
        // Freeing a plan of 100,000 hosts object by object cost more than
        // a second (measured: book, benchmarks); the process ends soon.
        std::mem::forget(c);
    }
    super::context::exit(ok)
}
