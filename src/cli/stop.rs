//! `mln stop -p PROJECT [-h HOST]... [-S | -H] [-w SECONDS|i]`: in reverse
//! boot order.

use super::context::{usage, Global};
use mln::machine::StopMode;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    #[arg(short = 'h', long = "host")]
    pub hosts: Vec<String>,
    /// Save memory state to disk instead; the next start restores it.
    #[arg(short = 'S', long, conflicts_with = "hard")]
    pub save: bool,
    /// Force off at once.
    #[arg(short = 'H', long)]
    pub hard: bool,
    /// Seconds to wait for a graceful shutdown before forcing, or `i` to
    /// wait as long as it takes.
    #[arg(short = 'w', long, default_value = "60", value_name = "SECONDS|i")]
    pub wait: String,
    /// The outcome as JSON on stdout, progress as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// The stop mode the flags ask for.
pub fn mode(save: bool, hard: bool, wait: &str) -> Result<StopMode, String> {
    let wait = match wait {
        "i" => None,
        w => Some(Duration::from_secs(w.parse().map_err(|_| format!("-w takes whole seconds or `i`, not `{w}`"))?)),
    };
    Ok(match (save, hard) {
        (true, true) => return Err("-S and -H exclude each other".into()),
        (true, false) => StopMode::Save,
        (false, true) => StopMode::Hard,
        _ => StopMode::Graceful { wait },
    })
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let mode = match mode(a.save, a.hard, &a.wait) {
        Ok(m) => m,
        Err(e) => return usage(e),
    };
    g.act_on("stop", &a.project, a.json, |rt| rt.stop(&a.project, &a.hosts, mode))
}
