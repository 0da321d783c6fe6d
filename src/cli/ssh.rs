//! `mln ssh -p P -h H [-l USER] [-- CMD]`: a login to a guest with the
//! project key and strict host-key checking (crate::login), and the hidden
//! `mln ssh-proxy`, the ProxyCommand that carries the connection to the
//! guest's port: here, or on the guest's service host (the same proxy
//! run there by the agent's binary, over the fabric's SSH connection).

use super::context::{fail, Global};
use mln::login::remote::Remotes;
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
    /// Wait up to SECS for a booting guest to publish its host keys, open
    /// its SSH port, accept the project key and (see --until) finish its
    /// configuration.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
    /// With --wait: until the guest has applied its whole configuration
    /// (cloud-init's last stage done, where cloud-init runs), or only until
    /// it accepts the project key.
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = Until::Configured)]
    pub until: Until,
    /// The command to run (default: a login shell).
    #[arg(last = true)]
    pub command: Vec<String>,
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// What `--wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Until {
    /// The guest accepts the project key.
    Login,
    /// ... and has applied its whole configuration.
    Configured,
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
    /// The service host the guest runs on: the routes are tried there.
    #[arg(long = "via", value_name = "SERVICE_HOST")]
    pub via: Option<String>,
    /// Only check that the port accepts a connection (exit 0 if it does).
    #[arg(long)]
    pub probe: bool,
}

/// The service hosts of these guests, reached once each (only if needed).
fn remotes(g: &Global, state: &mln::state::State, hosts: &[&mln::plan::Host]) -> Result<Remotes, ExitCode> {
    let options = mln::login::remote::proxy_options(&g.state_dir(), g.fabric.as_deref());
    Remotes::new(hosts, state.templates_dir(), options, || g.fabric(state))
}

/// Whether the guest's port accepts a connection, asked where it runs.
fn probe(login: &command::Login, host: &str) -> Result<(), LoginError> {
    match &login.via {
        None => reach::connect(host, &login.routes, 22).map(drop),
        Some((server, options)) => {
            let exe = std::env::current_exe().map_err(|e| LoginError::Unreachable { host: host.into(), message: format!("cannot find mln's own executable: {e}") })?;
            let mut c = std::process::Command::new(exe);
            c.args(options).args(["ssh-proxy", "--probe", "-h", host, "--via", server]);
            for r in &login.routes {
                c.arg("--route").arg(r.to_arg());
            }
            let out = c.stdin(std::process::Stdio::null()).output().map_err(|e| LoginError::Unreachable { host: host.into(), message: e.to_string() })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(LoginError::Unreachable { host: host.into(), message: String::from_utf8_lossy(&out.stderr).trim().trim_start_matches("mln: ").to_string() })
            }
        }
    }
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let (state, rec) = match g.open_project(&a.project) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(h) = rec.plan.hosts.iter().find(|h| h.name == a.host) else {
        return fail(format!("project {} has no host {}", a.project, a.host));
    };
    let remotes = match remotes(g, &state, &[h]) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let login = loop {
        let ready = remotes.prepare(&state, &rec.plan, h).and_then(|l| {
            if a.wait > 0 {
                probe(&l, &h.name)?;
            }
            Ok(l)
        });
        match ready {
            Ok(l) => break l,
            // Half a second: a try is cheap (a file read and a TCP connect
            // on the bridge), and the guest's port opens at any moment.
            Err(e) if e.retry() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => return fail(e),
        }
    };
    drop(remotes);
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot find mln's own executable: {e}")),
    };
    if a.wait > 0 {
        return login_waiting(&login, &exe, &a, deadline);
    }
    let mut c = command::ssh(&login, &exe, &a.host, &a.user, false, &a.command);
    use std::os::unix::process::CommandExt;
    // ssh takes over: its exit status (the command's) is mln's.
    let e = c.exec();
    fail(format!("cannot run ssh: {e}"))
}

/// `--wait`: ssh run as a child, and run again while the guest refuses
/// the key and the deadline is not reached (src/login/refusal.rs); a
/// password is never asked for meanwhile. Anything else ssh ends with (a
/// host key that does not match above all) is final at once.
fn login_waiting(login: &command::Login, exe: &std::path::Path, a: &Args, deadline: Instant) -> ExitCode {
    use mln::login::refusal::{outcome, try_once, Outcome};
    if a.until == Until::Configured {
        if let Err(code) = configured(login, exe, a, deadline) {
            return code;
        }
    }
    loop {
        let c = command::ssh_with(login, exe, &a.host, &a.user, false, &["PreferredAuthentications=publickey"], &a.command);
        let (status, refusal) = match try_once(c, &a.user, &a.host) {
            Ok(x) => x,
            Err(e) => return fail(format!("cannot run ssh: {e}")),
        };
        match outcome(&status, &refusal) {
            Outcome::Refused if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            _ => {
                if let Some(line) = refusal {
                    eprintln!("{line}");
                }
                return exit_code(status);
            }
        }
    }
}

/// `--until configured`: the check (mln::login::configured) run through
/// the same login, waiting on the guest until it is done or the deadline
/// comes, with a refusal tried again as for the command; its stdin is
/// not the user's.
fn configured(login: &command::Login, exe: &std::path::Path, a: &Args, deadline: Instant) -> Result<(), ExitCode> {
    use mln::login::configured::{check, NOT_YET};
    use mln::login::refusal::{outcome, try_once, Outcome};
    loop {
        let check = [check(deadline.saturating_duration_since(Instant::now()).as_secs())];
        let mut c = command::ssh_with(login, exe, &a.host, &a.user, false, &["PreferredAuthentications=publickey"], &check);
        c.stdin(std::process::Stdio::null());
        let (status, refusal) = try_once(c, &a.user, &a.host).map_err(|e| fail(format!("cannot run ssh: {e}")))?;
        let waiting = match (outcome(&status, &refusal), status.code()) {
            (Outcome::Done, Some(0)) => return Ok(()),
            (Outcome::Done, Some(NOT_YET)) | (Outcome::Refused, _) => true,
            _ => false,
        };
        if !waiting {
            if let Some(line) = refusal {
                eprintln!("{line}");
            }
            return Err(exit_code(status));
        }
        if Instant::now() >= deadline {
            return Err(fail(match refusal {
                Some(line) => line,
                None => format!("{} accepts the project key but did not finish its configuration within {} s (cloud-init's last stage); `--until login` does not wait for it", a.host, a.wait),
            }));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// ssh's status as mln's: its exit code, or 128 + the signal that ended it
/// (as a shell reports it).
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255);
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// Copies between stdin/stdout and the guest's SSH port until either side
/// closes. It reads no state: everything it needs is on its command line.
pub fn proxy(a: ProxyArgs, g: &Global) -> ExitCode {
    if let Some(server) = &a.via {
        return relay(&a, server, g);
    }
    let stream = match reach::connect(&a.host, &a.routes, 22) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if a.probe {
        return ExitCode::SUCCESS;
    }
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

/// The proxy for a guest on a service host: the fabric's SSH connection
/// to that host runs this same proxy there (the agent's binary, which is
/// this one), which reaches the guest on its bridge; stdin and stdout are
/// carried over that channel. Why not a `direct-tcpip` channel: the
/// bridge needs its link-local address first and the guest may be found
/// only in that host's neighbour table (book/src/login.md).
fn relay(a: &ProxyArgs, server: &str, g: &Global) -> ExitCode {
    let target = mln::fabric::places::Target { connect: None, templates: std::path::PathBuf::new(), fabric: g.fabric.clone() };
    let fabric = match target.fabric(&g.state_dir()) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    if !fabric.names().iter().any(|n| n == server) {
        return fail(format!("service host {server} is not in the fabric configuration"));
    }
    let rt = match mln::fabric::places::async_runtime() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match rt.block_on(carry(a, fabric.server(server))) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(u8::try_from(s).unwrap_or(1)),
        Err(e) => fail(e),
    }
}

async fn carry(a: &ProxyArgs, server: mln::fabric::config::Server) -> Result<u32, mln::fabric::FabricError> {
    use mln::fabric::ssh::{quote, Event};
    let agent = mln::fabric::remote::attach(&server).await?;
    let mut cmd = format!("{} ssh-proxy -h {}", quote(agent.path()), quote(&a.host));
    if a.probe {
        cmd += " --probe";
    }
    for r in &a.routes {
        cmd += &format!(" --route {}", quote(&r.to_arg()));
    }
    let mut p = agent.conn.open(&cmd).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    if !a.probe {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = std::io::Read::read(&mut stdin, &mut buf) {
                if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(tx);
    }
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut open = true;
    let mut status = None;
    loop {
        tokio::select! {
            got = rx.recv(), if open => match got {
                Some(d) => p.send(&d).await?,
                None => {
                    open = false;
                    p.eof().await?;
                }
            },
            ev = p.next() => match ev {
                Some(Event::Stdout(d)) => {
                    if out.write_all(&d).and_then(|_| out.flush()).is_err() {
                        break;
                    }
                }
                Some(Event::Stderr(d)) => {
                    let _ = err.write_all(mln::term::escape(&String::from_utf8_lossy(&d)).as_bytes());
                }
                Some(Event::Exit(s)) => status = Some(s),
                None => break,
            }
        }
    }
    agent.conn.close().await;
    Ok(status.unwrap_or(255))
}
