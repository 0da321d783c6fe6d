//! `mln stats [-p PROJECT] [-h NODE] [--json]`: bare-metal deployments per
//! node (Kadeploy's kastat): how many, how many failed, step times, and
//! which reboot level (and power control) acted in each step.

use super::context::{fail, Global};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: Option<String>,
    /// One node only.
    #[arg(short = 'h', long = "host")]
    pub host: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let state = match g.open_state() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let steps = match state.steps(a.project.as_deref(), a.host.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let stats = mln::baremetal::stats::summarize(&steps);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stats).expect("stats serialize"));
        return ExitCode::SUCCESS;
    }
    if stats.is_empty() {
        println!("no deployment recorded");
        return ExitCode::SUCCESS;
    }
    println!("{:12} {:16} {:>7} {:>6} {:>6} {:>8}  mean step times (s)", "project", "node", "deploys", "failed", "rate", "retries");
    for s in &stats {
        let times: Vec<String> = s.mean_step_secs.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
        let mut line = format!(
            "{:12} {:16} {:>7} {:>6} {:>5.0}% {:>8}  {}",
            s.project,
            s.host,
            s.deployments,
            s.failed,
            s.failure_rate * 100.0,
            s.retries,
            times.join(", ")
        );
        if !s.last_power.is_empty() {
            // Which escalation level rebooted the node in each step of its
            // last deployment, and through which power control.
            let p: Vec<String> = s.last_power.iter().map(|(k, v)| format!("{k} {v}")).collect();
            line += &format!("\n{:29}power: {}", "", p.join(", "));
        }
        if !s.last_power_ops.is_empty() {
            // The last start and stop: which power control acted.
            let p: Vec<String> = s.last_power_ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
            line += &format!("\n{:29}last power operations: {}", "", p.join(", "));
        }
        if let Some(w) = &s.last_failure {
            line += &format!("\n{:29}last failure: {w}", "");
        }
        println!("{}", mln::term::escape_lines(&line));
    }
    ExitCode::SUCCESS
}
