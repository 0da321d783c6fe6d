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
}

/// The guest's keys collected (from its console) and the paths ssh needs.
/// A guest on a service host is refused for now: its console and its
/// bridge are there (book/src/login.md).
pub fn prepare(state: &State, plan: &Plan, h: &Host) -> Result<Login, LoginError> {
    if let Some(server) = &h.service_host {
        return Err(LoginError::Unreachable { host: h.name.clone(), message: format!("runs on service host {server}: mln ssh reaches guests on this machine only, so far") });
    }
    let key = super::keys::private_path(state, &plan.project)?;
    if !key.exists() {
        return Err(LoginError::Unreachable { host: h.name.clone(), message: "the project has no login key: it was built by an mln without logins; rebuild it".into() });
    }
    let names: Vec<&str> = plan.hosts.iter().map(|x| x.name.as_str()).collect();
    let console = state.host_dir(&plan.project, &h.name)?.join("console.log");
    let known_hosts = super::known_hosts::refresh(state, &plan.project, &h.name, &names, || {
        std::fs::read(&console).map(|b| String::from_utf8_lossy(&b).into_owned()).map_err(LoginError::io("read", &console))
    })?;
    Ok(Login { known_hosts, key, routes: super::reach::routes(plan, h) })
}

/// Single quotes for the shell ssh runs the proxy command with, and `%`
/// doubled (ssh expands `%` tokens in it).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''").replace('%', "%%"))
}

/// `ssh` logging into `h` as `user`, running `cmd` if any; `mln` is the
/// proxy command. `batch`: no prompts, no stdin.
pub fn ssh(login: &Login, mln: &Path, h: &str, user: &str, batch: bool, cmd: &[String]) -> Command {
    let mut proxy = format!("{} ssh-proxy -h {}", quote(&mln.to_string_lossy()), quote(h));
    for r in &login.routes {
        proxy += &format!(" --route {}", quote(&r.to_arg()));
    }
    let mut c = Command::new("ssh");
    // No user or system ssh configuration: what is given here is all.
    c.args(["-F", "none", "-i"]).arg(&login.key);
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
    fn quoted_for_the_shell_and_for_ssh_tokens() {
        assert_eq!(super::quote("a'b%c"), "'a'\\''b%%c'");
    }
}
