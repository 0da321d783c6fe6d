//! `mln upgrade -f NEW.mln [-s] [--json] [-S] [-k] [-l h1,h2]`: a built
//! project brought to its edited file. The preview (per host its class,
//! each changed key, why) comes first; `-s` stops there.

use super::context::{fail_diagnostic, Global};
use mln::machine::UpgradeOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Show what would change, change nothing.
    #[arg(short = 's', long)]
    pub dry_run: bool,
    /// With -s: one object per host; else the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// Start the hosts that were changed (a guest-config change is applied
    /// by restarting the guest).
    #[arg(short = 'S', long = "start")]
    pub start_changed: bool,
    /// Keep the disks of removed hosts (moved to the state directory's
    /// `kept/`).
    #[arg(short = 'k', long = "keep-disks")]
    pub keep_disks: bool,
    /// Hosts to migrate live (comma-separated).
    #[arg(short = 'l', long = "live", value_delimiter = ',')]
    pub live: Vec<String>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let c = g.compile(&a.file);
    if !g.report(&c) {
        return ExitCode::FAILURE;
    }
    let (state, rec) = match g.open_project(&c.plan.project) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let u = match mln::upgrade::diff(&rec.plan, &c.plan) {
        Ok(u) => u,
        Err(e) => return fail_diagnostic(e.diagnostic()),
    };
    if a.dry_run {
        return super::output::upgrade(&u, a.json);
    }
    if !a.json {
        print!("{}", mln::upgrade::preview(&u));
    }
    let opts = UpgradeOptions { start_changed: a.start_changed, keep_disks: a.keep_disks, live: a.live.clone(), reconfigure: vec![] };
    g.act("upgrade", &state, Some(&c.plan), Some(&rec), a.json, |rt| rt.upgrade(&c.plan, &a.file, &opts).map(|(_, o)| o))
}
