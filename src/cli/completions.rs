//! `mln completions bash|zsh|fish|man`: shell completions or the man page,
//! made from the same clap definitions as the commands themselves.

use clap::CommandFactory;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// `bash`, `zsh`, `fish`, or `man` for the man page (roff).
    #[arg(value_parser = ["bash", "zsh", "fish", "man"])]
    pub what: String,
}

pub fn run(a: Args) -> ExitCode {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    let shell = match a.what.as_str() {
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        "fish" => clap_complete::Shell::Fish,
        _ => {
            return match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => super::context::fail(e),
            };
        }
    };
    clap_complete::generate(shell, &mut cmd, "mln", &mut out);
    ExitCode::SUCCESS
}
