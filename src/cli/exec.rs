//! `mln exec -p P [-h H,...] -- CMD`: one command on every (or the named)
//! guest of a project at once, logged in as `mln ssh` does; identical
//! outputs folded as `mln fabric exec` folds them, then one line per host.

use super::context::{fail, usage, Global};
use mln::fabric::exec::{report, Ran};
use mln::login::command;
use std::process::{ExitCode, Stdio};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    /// Hosts, separated by commas (default: every host).
    #[arg(short = 'h', long = "hosts", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// The account (default root).
    #[arg(short = 'l', long = "user", default_value = "root")]
    pub user: String,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let (state, rec) = match g.open_project(&a.project) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let plan = &rec.plan;
    for n in &a.hosts {
        if !plan.hosts.iter().any(|h| &h.name == n) {
            return usage(format!("project {} has no host {n}", a.project));
        }
    }
    let hosts: Vec<_> = plan.hosts.iter().filter(|h| a.hosts.is_empty() || a.hosts.contains(&h.name)).collect();
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot find mln's own executable: {e}")),
    };
    let options = mln::login::remote::proxy_options(&g.state_dir(), g.fabric.as_deref());
    let remotes = match mln::login::remote::Remotes::new(&hosts, state.templates_dir(), options, || g.fabric(&state)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The keys are collected one host at a time (they share a file); the
    // logins then run at once, wherever the guests are.
    let prepared: Vec<_> = hosts.iter().map(|h| remotes.prepare(&state, plan, h)).collect();
    drop(remotes);
    let ran: Vec<Ran> = std::thread::scope(|s| {
        let jobs: Vec<_> = hosts
            .iter()
            .zip(prepared)
            .map(|(h, login)| {
                let (exe, a) = (&exe, &a);
                s.spawn(move || {
                    let result = login.map_err(|e| e.to_string()).and_then(|login| {
                        let out = command::ssh(&login, exe, &h.name, &a.user, true, &a.command)
                            .stdin(Stdio::null())
                            .output()
                            .map_err(|e| format!("cannot run ssh: {e}"))?;
                        let mut text = out.stdout;
                        text.extend(out.stderr);
                        Ok((text, out.status.code().map(|c| c as u32)))
                    });
                    Ran { host: h.name.clone(), result }
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().expect("a login thread does not panic")).collect()
    });
    let (text, code) = report(&ran);
    print!("{text}");
    for r in &ran {
        let what = match &r.result {
            Ok((_, Some(0))) => "ok".to_string(),
            Ok((_, Some(s))) => format!("exit {s}"),
            Ok((_, None)) => "killed".into(),
            Err(_) => "not run".into(),
        };
        eprintln!("{}: {what}", mln::term::escape(&r.host));
    }
    ExitCode::from(code)
}
