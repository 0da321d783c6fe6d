//! `mln ssh -p P -h H [-l USER] [-- CMD]`: a login to a guest with the
//! project key and strict host-key checking (crate::login), and the hidden
//! `mln ssh-proxy`, the ProxyCommand that carries the connection to the
//! guest's port.

use super::context::{fail, Global};
use mln::login::{command, reach, LoginError};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    #[arg(short = 'p', long)]
    pub project: String,
    #[arg(short = 'h', long = "host")]
    pub host: String,
    /// The account (default root).
    #[arg(short = 'l', long = "user", default_value = "root")]
    pub user: String,
    /// Wait up to SECS for a booting guest to publish its host keys and
    /// open its SSH port.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
    /// The command to run (default: a login shell).
    #[arg(last = true)]
    pub command: Vec<String>,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct ProxyArgs {
    /// The guest's name (for messages).
    #[arg(short = 'h', long = "host")]
    pub host: String,
    /// Where the guest may be (`ll/BRIDGE/MAC` or `ip/ADDRESS`), best first.
    #[arg(long = "route", value_parser = mln::login::reach::Route::from_arg)]
    pub routes: Vec<mln::login::reach::Route>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let (state, rec) = match g.open_project(&a.project) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(h) = rec.plan.hosts.iter().find(|h| h.name == a.host) else {
        return fail(format!("project {} has no host {}", a.project, a.host));
    };
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let login = loop {
        let ready = command::prepare(&state, &rec.plan, h).and_then(|l| {
            if a.wait > 0 {
                reach::connect(&h.name, &reach::routes(&rec.plan, h), 22)?;
            }
            Ok(l)
        });
        match ready {
            Ok(l) => break l,
            Err(e) if e.retry() && Instant::now() < deadline && !matches!(e, LoginError::Unreachable { .. } if h.service_host.is_some()) => {
                std::thread::sleep(Duration::from_secs(2))
            }
            Err(e) => return fail(e),
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot find mln's own executable: {e}")),
    };
    let mut c = command::ssh(&login, &exe, &a.host, &a.user, false, &a.command);
    use std::os::unix::process::CommandExt;
    // ssh takes over: its exit status (the command's) is mln's.
    let e = c.exec();
    fail(format!("cannot run ssh: {e}"))
}

/// Copies between stdin/stdout and the guest's SSH port until either side
/// closes. It reads no state: everything it needs is on its command line.
pub fn proxy(a: ProxyArgs) -> ExitCode {
    let stream = match reach::connect(&a.host, &a.routes, 22) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Ok(mut up) = stream.try_clone() else { return fail("cannot share the connection") };
    let to_guest = std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    // Each read is passed on at once: stdout's line buffering would hold
    // ssh's binary packets back until a newline byte came by.
    let mut down = stream;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match std::io::Read::read(&mut down, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    drop(to_guest);
    ExitCode::SUCCESS
}
