//! SSH to service hosts with russh: host keys checked against known_hosts
//! (unknown keys refused unless the fabric says to record them; changed
//! keys always refused), keys from ssh-agent then key files, keepalives so
//! a dead peer is noticed.

use super::config::Server;
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Checker {
    server: Server,
    verdict: Arc<Mutex<Option<String>>>,
}

impl Checker {
    fn refuse(&self, why: String) -> Result<bool, russh::Error> {
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        Ok(false)
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let s = &self.server;
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return self.refuse(format!("{} offered a host certificate; mln checks plain host keys against {}", s.name, s.known_hosts.display()));
        };
        let fp = key.fingerprint(HashAlg::Sha256);
        let at = if s.port == 22 { s.address.clone() } else { format!("[{}]:{}", s.address, s.port) };
        match russh::keys::check_known_hosts_path(&s.address, s.port, key, &s.known_hosts) {
            Ok(true) => Ok(true),
            Err(russh::keys::Error::KeyChanged { line }) => self.refuse(format!(
                "HOST KEY CHANGED for {} ({at}): it now offers {} {fp}, but line {line} of {} records a different key. \
                 Someone may be intercepting the connection, or the host was reinstalled; if the change is expected, \
                 remove line {line} and connect again",
                s.name,
                key.algorithm(),
                s.known_hosts.display()
            )),
            Ok(false) if s.accept_new_host_keys => match russh::keys::known_hosts::learn_known_hosts_path(&s.address, s.port, key, &s.known_hosts) {
                Ok(()) => {
                    eprintln!("mln: {}: recorded new host key {} {fp} in {}", s.name, key.algorithm(), s.known_hosts.display());
                    Ok(true)
                }
                Err(e) => self.refuse(format!("cannot record the host key of {} in {}: {e}", s.name, s.known_hosts.display())),
            },
            Ok(false) => self.refuse(format!(
                "unknown host key for {} ({at}): {} {fp} is not in {}. Check the fingerprint, then add the key \
                 (ssh-keyscan -p {} {} >> {}) or set accept_new_host_keys in the fabric configuration",
                s.name,
                key.algorithm(),
                s.known_hosts.display(),
                s.port,
                s.address,
                s.known_hosts.display()
            )),
            Err(e) => self.refuse(format!("cannot read {}: {e}", s.known_hosts.display())),
        }
    }
}

pub struct Conn {
    handle: client::Handle<Checker>,
    pub server: Server,
}

pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None when the command ended without an exit status (killed).
    pub status: Option<u32>,
}

pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(u32),
}

/// A remote command in progress.
pub struct Proc {
    ch: russh::Channel<client::Msg>,
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_max: 3,
        nodelay: true,
        window_size: 8 << 20,
        ..Default::default()
    })
}

/// Connects, checks the host key and logs in; the whole within the host's
/// connect timeout.
pub async fn connect(server: &Server) -> Result<Conn, String> {
    let limit = Duration::from_secs(server.connect_timeout);
    match tokio::time::timeout(limit, connect_inner(server)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no SSH session with {} ({}:{}) within {} s", server.name, server.address, server.port, server.connect_timeout)),
    }
}

async fn connect_inner(server: &Server) -> Result<Conn, String> {
    let verdict = Arc::new(Mutex::new(None));
    let checker = Checker { server: server.clone(), verdict: verdict.clone() };
    let addr = (server.address.as_str(), server.port);
    let mut handle = match client::connect(config(), addr, checker).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(why) = verdict.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(why);
            }
            return Err(format!("cannot connect to {} ({}:{}): {e}", server.name, server.address, server.port));
        }
    };
    let mut tried = Vec::new();
    if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
        if let Ok(ids) = agent.request_identities().await {
            for id in ids {
                let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else { continue };
                let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
                if let Ok(r) = handle.authenticate_publickey_with(&server.user, key, hash, &mut agent).await {
                    if r.success() {
                        return Ok(Conn { handle, server: server.clone() });
                    }
                }
                tried.push("an ssh-agent key".to_string());
            }
        }
    }
    for path in &server.identity {
        if !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} (unusable: {e}; encrypted keys need ssh-agent)", path.display()));
                continue;
            }
        };
        let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        let r = handle
            .authenticate_publickey(&server.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| format!("{}: authentication failed: {e}", server.name))?;
        if r.success() {
            return Ok(Conn { handle, server: server.clone() });
        }
        tried.push(path.display().to_string());
    }
    if handle.is_closed() {
        return Err(format!("{}: the connection closed during authentication", server.name));
    }
    Err(format!(
        "{}: no key was accepted for {}@{} (tried: {})",
        server.name,
        server.user,
        server.address,
        if tried.is_empty() { "none found: no ssh-agent and no key file".to_string() } else { tried.join(", ") }
    ))
}

/// Single-quotes a word for the remote shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Conn {
    pub async fn open(&self, cmd: &str) -> Result<Proc, String> {
        let ch = self.handle.channel_open_session().await.map_err(|e| format!("{}: cannot open a channel: {e}", self.server.name))?;
        ch.exec(true, cmd).await.map_err(|e| format!("{}: cannot run a command: {e}", self.server.name))?;
        Ok(Proc { ch })
    }

    /// Runs `cmd` with `input` on its stdin and collects everything.
    pub async fn exec(&self, cmd: &str, input: &[u8]) -> Result<Output, String> {
        let mut p = self.open(cmd).await?;
        if !input.is_empty() {
            p.send(input).await?;
        }
        p.eof().await?;
        let mut out = Output { stdout: Vec::new(), stderr: Vec::new(), status: None };
        while let Some(ev) = p.next().await {
            match ev {
                Event::Stdout(d) => out.stdout.extend(d),
                Event::Stderr(d) => out.stderr.extend(d),
                Event::Exit(s) => out.status = Some(s),
            }
        }
        Ok(out)
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

impl Proc {
    pub async fn send(&mut self, data: &[u8]) -> Result<(), String> {
        self.ch.data(data).await.map_err(|e| format!("cannot send: {e}"))
    }

    pub async fn eof(&mut self) -> Result<(), String> {
        self.ch.eof().await.map_err(|e| format!("cannot send: {e}"))
    }

    /// The next thing the command did; None once its channel closed. Data
    /// can come after the exit status, so this reads to the end.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.ch.wait().await? {
                ChannelMsg::Data { data } => return Some(Event::Stdout(data.to_vec())),
                ChannelMsg::ExtendedData { data, ext: 1 } => return Some(Event::Stderr(data.to_vec())),
                ChannelMsg::ExitStatus { exit_status } => return Some(Event::Exit(exit_status)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quote("/var/lib/mln"), "/var/lib/mln");
        assert_eq!(super::quote("it's a b"), r"'it'\''s a b'");
        assert_eq!(super::quote(""), "''");
    }
}
