//! The `ssh` command line that logs into a guest: the project key, strict
//! host-key checking against the project's known_hosts (the guest known
//! by its name, `HostKeyAlias`), and mln itself as the proxy that reaches
//! the guest (`mln ssh-proxy`, see `reach`). The user's ssh does the rest.

use super::LoginError;
use crate::plan::{Host, Plan};
use crate::state::State;
use std::path::Path;
use std::process::Command;

/// What `ssh` is given for one guest.
pub struct Login {
    pub known_hosts: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub routes: Vec<super::reach::Route>,
    /// A guest on a service host: its name, and the options mln needs to
    /// find that host's configuration (`--state-dir`, `--fabric`), for the
    /// proxy command.
    pub via: Option<(String, Vec<String>)>,
}

/// A service host's side of a guest: its console read through the agent
/// (`offset` on, as `mln console` reads it), and the options for the proxy.
pub struct Remote<'a> {
    pub console: &'a dyn Fn(u64) -> Result<crate::fabric::proto::ConsoleChunk, String>,
    pub options: Vec<String>,
}

fn login_key(state: &State, plan: &Plan, h: &Host) -> Result<std::path::PathBuf, LoginError> {
    let key = super::keys::private_path(state, &plan.project)?;
    if !key.exists() {
        return Err(LoginError::Unreachable { host: h.name.clone(), message: "the project has no login key: it was built by an mln without logins; rebuild it".into() });
    }
    Ok(key)
}

/// The guest's keys collected (from its console) and the paths ssh needs,
/// for a guest on this machine.
pub fn prepare(state: &State, plan: &Plan, h: &Host) -> Result<Login, LoginError> {
    if let Some(server) = &h.service_host {
        return Err(LoginError::Unreachable { host: h.name.clone(), message: format!("runs on service host {server}: its console is read there (prepare_remote)") });
    }
    let key = login_key(state, plan, h)?;
    let names: Vec<&str> = plan.hosts.iter().map(|x| x.name.as_str()).collect();
    let console = state.host_dir(&plan.project, &h.name)?.join("console.log");
    let known_hosts = super::known_hosts::refresh(state, &plan.project, &h.name, &names, || {
        std::fs::read(&console).map(|b| String::from_utf8_lossy(&b).into_owned()).map_err(LoginError::io("read", &console))
    })?;
    Ok(Login { known_hosts, key, routes: super::reach::routes(plan, h), via: None })
}

/// [`prepare`] for a guest on a service host: its console is read there,
/// up to the first complete block of host keys.
pub fn prepare_remote(state: &State, plan: &Plan, h: &Host, remote: &Remote) -> Result<Login, LoginError> {
    let Some(server) = &h.service_host else { return prepare(state, plan, h) };
    let key = login_key(state, plan, h)?;
    let names: Vec<&str> = plan.hosts.iter().map(|x| x.name.as_str()).collect();
    let known_hosts = super::known_hosts::refresh_remote(state, &plan.project, &h.name, &names, || {
        let mut text = String::new();
        let mut offset = 0;
        loop {
            let chunk = (remote.console)(offset).map_err(|message| LoginError::Unreachable { host: h.name.clone(), message: format!("cannot read its console on {server}: {message}") })?;
            text.push_str(&chunk.data);
            if chunk.offset <= offset || super::known_hosts::has_block(&text) {
                return Ok(text);
            }
            offset = chunk.offset;
        }
    })?;
    Ok(Login { known_hosts, key, routes: super::reach::routes(plan, h), via: Some((server.clone(), remote.options.clone())) })
}

/// Single quotes for the shell ssh runs the proxy command with, and `%`
/// doubled (ssh expands `%` tokens in it).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''").replace('%', "%%"))
}

/// `ssh` logging into `h` as `user`, running `cmd` if any; `mln` is the
/// proxy command. `batch`: no prompts, no stdin.
pub fn ssh(login: &Login, mln: &Path, h: &str, user: &str, batch: bool, cmd: &[String]) -> Command {
    ssh_with(login, mln, h, user, batch, &[], cmd)
}

/// [`ssh`] with more `-o` options (they come first: ssh takes an
/// option's first value).
pub fn ssh_with(login: &Login, mln: &Path, h: &str, user: &str, batch: bool, options: &[&str], cmd: &[String]) -> Command {
    let mut proxy = quote(&mln.to_string_lossy());
    if let Some((_, options)) = &login.via {
        for o in options {
            proxy += &format!(" {}", quote(o));
        }
    }
    proxy += &format!(" ssh-proxy -h {}", quote(h));
    if let Some((server, _)) = &login.via {
        proxy += &format!(" --via {}", quote(server));
    }
    for r in &login.routes {
        proxy += &format!(" --route {}", quote(&r.to_arg()));
    }
    let mut c = Command::new("ssh");
    // No user or system ssh configuration: what is given here is all.
    c.args(["-F", "none"]);
    for o in options {
        c.arg("-o").arg(o);
    }
    c.arg("-i").arg(&login.key);
    let kh = format!("UserKnownHostsFile={}", login.known_hosts.to_string_lossy().replace('%', "%%"));
    for o in [
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=yes",
        "GlobalKnownHostsFile=/dev/null",
        "UpdateHostKeys=no",
        "CheckHostIP=no",
        "LogLevel=ERROR",
        &kh,
        &format!("HostKeyAlias={h}"),
        &format!("ProxyCommand={proxy}"),
    ] {
        c.arg("-o").arg(o);
    }
    if batch {
        c.args(["-o", "BatchMode=yes", "-T", "-n"]);
    }
    c.args(["-l", user, h]);
    c.args(cmd);
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guest_on_a_service_host_is_proxied_through_it() {
        let login = super::Login {
            known_hosts: "/s/kh".into(),
            key: "/s/k".into(),
            routes: vec![super::super::reach::Route::LinkLocal { bridge: "mlnab".into(), mac: "52:54:00:00:00:01".into() }],
            via: Some(("h1".into(), vec!["--state-dir".into(), "/s".into()])),
        };
        let c = super::ssh(&login, std::path::Path::new("/bin/mln"), "n1", "root", true, &[]);
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&"ProxyCommand='/bin/mln' '--state-dir' '/s' ssh-proxy -h 'n1' --via 'h1' --route 'll/mlnab/52:54:00:00:00:01'".to_string()), "{args:?}");
    }

    #[test]
    fn quoted_for_the_shell_and_for_ssh_tokens() {
        assert_eq!(super::quote("a'b%c"), "'a'\\''b%%c'");
    }
}
