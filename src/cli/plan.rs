//! `mln plan [--json] FILE`: the resolved cluster.

use super::context::{fail, Global};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Machine-readable (schema in the book).
    #[arg(long)]
    pub json: bool,
    pub file: PathBuf,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let c = g.compile(&a.file);
    if !g.report(&c) {
        return ExitCode::FAILURE;
    }
    // Batches of hosts arrive whole (a few hundred KB each).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = if a.json {
        mln::plan::json::write_pretty(&c.plan, &mut out).and_then(|_| writeln!(out))
    } else {
        write!(out, "{}", mln::display::plan_table(&c.plan))
    };
    // A large plan takes a while to free, and the process ends here.
    std::mem::forget(c);
    match written.and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("plan: {e}")),
    }
}
