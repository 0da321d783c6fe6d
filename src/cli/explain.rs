//! `mln explain FILE HOST PATH`: a value and every place that shaped it.

use super::context::{fail, Global};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub file: PathBuf,
    pub host: String,
    /// e.g. `memory`, `network.eth0.gateway`, `users`.
    pub path: String,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let c = g.compile_whole(&a.file);
    g.report(&c);
    match mln::explain::explain(&c, &a.host, &a.path, g.style()) {
        Ok(text) => {
            print!("{text}");
            super::context::exit(c.ok())
        }
        Err(e) => fail(format!("explain: {e}")),
    }
}
