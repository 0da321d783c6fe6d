//! SSH to service hosts with russh: host keys checked against known_hosts
//! (see `known_hosts`: unknown hosts refused unless the fabric says to
//! record their key; a host with any recorded key is never given another,
//! and revoked keys are refused), keys from ssh-agent then key files,
//! keepalives so a dead peer is noticed.

use super::config::Server;
use super::FabricError;
use super::known_hosts::{self, Verdict};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where a connection's time goes (TCP, key exchange, host key, login,
/// channel, command, exit), as debug events of this target:
/// `MLN_LOG=mln::fabric::timing=debug`.
const TIMING: &str = "mln::fabric::timing";

pub(super) struct Checker {
    server: Server,
    verdict: Arc<Mutex<Option<String>>>,
    start: Instant,
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
        let r = match judge(s, key) {
            Ok(()) => Ok(true),
            Err(why) => self.refuse(why),
        };
        tracing::debug!(target: TIMING, host = %s.name, ms = ms(self.start), "host key checked");
        r
    }

    async fn kex_done(&mut self, _secret: Option<&[u8]>, names: &russh::Names, _session: &mut client::Session) -> Result<(), Self::Error> {
        // The same words as `ssh -v` ("kex: algorithm: ..."), to compare with peers.
        tracing::debug!(target: TIMING, host = %self.server.name, ms = ms(self.start), "kex: algorithm: {}", names.kex.as_ref());
        Ok(())
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Whether `s` may be talked to with the host key it offers: checked
/// against its known_hosts file, and recorded there when the host has no
/// recorded key and the fabric says to accept new ones.
fn judge(s: &Server, key: &russh::keys::PublicKey) -> Result<(), String> {
        let fp = key.fingerprint(HashAlg::Sha256);
        let alg = crate::term::escape(key.algorithm().as_str()).into_owned();
        let at = known_hosts::lookup_name(&s.address, s.port);
        let file = s.known_hosts.display();
        let text = match std::fs::read(&s.known_hosts) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {file}: {e}")),
        };
        let mut verdict = known_hosts::check(&text, &s.address, s.port, key);
        if verdict == Verdict::Unknown && s.accept_new_host_keys {
            match known_hosts::record_new(&s.known_hosts, &s.address, s.port, key) {
                Ok(Verdict::Unknown) => {
                    tracing::info!("{}: recorded new host key {alg} {fp} in {file}", s.name);
                    return Ok(());
                }
                Ok(v) => verdict = v,
                Err(e) => return Err(format!("cannot record the host key of {}: {e}", s.name)),
            }
        }
        match verdict {
            Verdict::Known { .. } => Ok(()),
            Verdict::Revoked { line } => Err(format!(
                "REVOKED HOST KEY for {} ({at}): it offers {alg} {fp}, which line {line} of {file} marks @revoked. \
                 Refused whatever the fabric configuration says; the host needs a new key",
                s.name
            )),
            Verdict::Changed { recorded } => {
                let lines: Vec<String> = recorded.iter().map(|(l, k)| format!("line {l} ({})", crate::term::escape(k))).collect();
                let (them, it) = if recorded.len() == 1 { ("that line", "a different key") } else { ("those lines", "different keys") };
                Err(format!(
                    "HOST KEY CHANGED for {} ({at}): it now offers {alg} {fp}, but {file} records {it} for it: {}. \
                     Someone may be intercepting the connection, or the host was reinstalled. The key is refused \
                     (accept_new_host_keys applies only to hosts with no recorded key); if the change is expected, \
                     check the new fingerprint out of band, remove {them} (ssh-keygen -R '{at}' -f {file}) and connect again",
                    s.name,
                    lines.join(", ")
                ))
            }
            Verdict::Unknown => Err(format!(
                "unknown host key for {} ({at}): {alg} {fp} is not in {file}. Check the fingerprint, then add the key \
                 (ssh-keyscan -p {} {} >> {file}) or set accept_new_host_keys in the fabric configuration",
                s.name, s.port, s.address,
            )),
        }
}

pub struct Conn {
    /// Shared with the tasks of its forwards (`tunnel`), which open channels on their own.
    pub(super) handle: Arc<client::Handle<Checker>>,
    pub server: Server,
    start: Instant,
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
    host: String,
    start: Instant,
}

/// One configuration for every connection of this process.
fn config() -> Arc<client::Config> {
    static CONFIG: OnceLock<Arc<client::Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(client::Config {
                keepalive_interval: Some(Duration::from_secs(5)),
                keepalive_max: 3,
                nodelay: true,
                window_size: 8 << 20,
                ..Default::default()
            })
        })
        .clone()
}

/// A key file read and parsed once per process, however many hosts use it.
fn secret_key(path: &Path) -> Result<Arc<russh::keys::PrivateKey>, russh::keys::Error> {
    static KEYS: OnceLock<Mutex<HashMap<PathBuf, Arc<russh::keys::PrivateKey>>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(k) = keys.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
        return Ok(k.clone());
    }
    let k = Arc::new(russh::keys::load_secret_key(path, None)?);
    keys.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), k.clone());
    Ok(k)
}

/// Connects, checks the host key and logs in; the whole within the host's
/// connect timeout.
pub async fn connect(server: &Server) -> Result<Conn, FabricError> {
    let limit = Duration::from_secs(server.connect_timeout);
    match tokio::time::timeout(limit, connect_inner(server)).await {
        Ok(r) => r,
        Err(_) => Err(FabricError::Unreachable(format!(
            "no SSH session with {} ({}:{}) within {} s",
            server.name, server.address, server.port, server.connect_timeout
        ))),
    }
}

async fn connect_inner(server: &Server) -> Result<Conn, FabricError> {
    let start = Instant::now();
    let verdict = Arc::new(Mutex::new(None));
    let checker = Checker { server: server.clone(), verdict: verdict.clone(), start };
    let unreachable = |e: &dyn std::fmt::Display| {
        FabricError::Unreachable(format!(
            "cannot connect to {} ({}:{}): {}",
            server.name,
            server.address,
            server.port,
            crate::term::escape(&e.to_string())
        ))
    };
    let tcp = tokio::net::TcpStream::connect((server.address.as_str(), server.port)).await.map_err(|e| unreachable(&e))?;
    // Every message of the handshake is small and waited for: never delay one.
    let _ = tcp.set_nodelay(true);
    tracing::debug!(target: TIMING, host = %server.name, ms = ms(start), "tcp connected");
    let mut handle = match client::connect_stream(config(), tcp, checker).await {
        Ok(h) => h,
        Err(e) => {
            if let Some(why) = verdict.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(FabricError::HostKey(why));
            }
            return Err(unreachable(&e));
        }
    };
    tracing::debug!(target: TIMING, host = %server.name, ms = ms(start), "ssh session keyed");
    let done = |handle| {
        tracing::debug!(target: TIMING, host = %server.name, ms = ms(start), "authenticated");
        Ok(Conn { handle: Arc::new(handle), server: server.clone(), start })
    };
    let mut tried = Vec::new();
    if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
        if let Ok(ids) = agent.request_identities().await {
            for id in ids {
                let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else { continue };
                let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
                if let Ok(r) = handle.authenticate_publickey_with(&server.user, key, hash, &mut agent).await {
                    if r.success() {
                        return done(handle);
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
        let key = match secret_key(path) {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} (unusable: {e}; encrypted keys need ssh-agent)", path.display()));
                continue;
            }
        };
        // Only RSA signs with a hash the server chooses; other keys need not wait for its list.
        let hash = if key.algorithm().is_rsa() { handle.best_supported_rsa_hash().await.ok().flatten().flatten() } else { None };
        let r = handle
            .authenticate_publickey(&server.user, PrivateKeyWithHashAlg::new(key, hash))
            .await
            .map_err(|e| FabricError::Unreachable(format!("{}: authentication failed: {}", server.name, crate::term::escape(&e.to_string()))))?;
        if r.success() {
            return done(handle);
        }
        tried.push(path.display().to_string());
    }
    if handle.is_closed() {
        return Err(FabricError::Unreachable(format!("{}: the connection closed during authentication", server.name)));
    }
    Err(FabricError::Auth(format!(
        "{}: no key was accepted for {}@{} (tried: {})",
        server.name,
        server.user,
        server.address,
        if tried.is_empty() { "none found: no ssh-agent and no key file".to_string() } else { tried.join(", ") }
    )))
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
    pub async fn open(&self, cmd: &str) -> Result<Proc, FabricError> {
        let lost = |what: &str, e: russh::Error| FabricError::Unreachable(format!("{}: cannot {what}: {e}", self.server.name));
        let ch = self.handle.channel_open_session().await.map_err(|e| lost("open a channel", e))?;
        tracing::debug!(target: TIMING, host = %self.server.name, ms = ms(self.start), "channel open");
        ch.exec(true, cmd).await.map_err(|e| lost("run a command", e))?;
        Ok(Proc { ch, host: self.server.name.clone(), start: self.start })
    }

    /// Runs `cmd` with `input` on its stdin and collects everything.
    pub async fn exec(&self, cmd: &str, input: &[u8]) -> Result<Output, FabricError> {
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
        tracing::debug!(target: TIMING, host = %self.server.name, ms = ms(self.start), "disconnected");
    }
}

impl Proc {
    pub async fn send(&mut self, data: &[u8]) -> Result<(), FabricError> {
        self.ch.data(data).await.map_err(|e| FabricError::Unreachable(format!("cannot send: {e}")))
    }

    pub async fn eof(&mut self) -> Result<(), FabricError> {
        self.ch.eof().await.map_err(|e| FabricError::Unreachable(format!("cannot send: {e}")))
    }

    /// The next thing the command did; None once its channel closed. Data
    /// can come after the exit status, so this reads to the end.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.ch.wait().await? {
                ChannelMsg::Data { data } => return Some(Event::Stdout(data.to_vec())),
                ChannelMsg::ExtendedData { data, ext: 1 } => return Some(Event::Stderr(data.to_vec())),
                ChannelMsg::ExitStatus { exit_status } => {
                    tracing::debug!(target: TIMING, host = %self.host, ms = ms(self.start), "exit status");
                    return Some(Event::Exit(exit_status));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuQ2cUnB/Ypta5WOjHM180DBUOygvm9a0nmmXIkf8CV";
    const ED_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjxytv0oono87TIPQZDetWAMzJuW0nd10m28tYqO+RK";
    const EC_A: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKPbULXc3si53+R3734DDdIooUaLf97q1mEk3p8eQ9vtUoe0ybYMSo3TKhMIYMpj2zmyk0fDOwyQbUn/kGGwa9M=";

    fn server(dir: &std::path::Path, accept: bool) -> Server {
        let mut s = crate::fabric::Fabric::default().server("h1");
        s.address = "10.1.2.3".into();
        s.known_hosts = dir.join("known_hosts");
        s.accept_new_host_keys = accept;
        s
    }

    fn key(s: &str) -> russh::keys::PublicKey {
        russh::keys::PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn an_unknown_host_is_refused_with_advice_or_recorded_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let e = judge(&server(dir.path(), false), &key(EC_A)).unwrap_err();
        assert!(e.contains("unknown host key for h1 (10.1.2.3)") && e.contains("ssh-keyscan -p 22 10.1.2.3 >>") && e.contains("SHA256:"), "{e}");
        assert!(!dir.path().join("known_hosts").exists());
        judge(&server(dir.path(), true), &key(EC_A)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("known_hosts")).unwrap(), format!("10.1.2.3 {EC_A}\n"));
        judge(&server(dir.path(), false), &key(EC_A)).unwrap();
    }

    #[test]
    fn a_changed_key_is_refused_whatever_the_setting_and_nothing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        let text = format!("# mine\n10.1.2.3 {ED_A}\n");
        std::fs::write(&kh, &text).unwrap();
        for accept in [false, true] {
            // The issue: ed25519 recorded, only ECDSA offered; and a plain change.
            for offered in [EC_A, ED_B] {
                let e = judge(&server(dir.path(), accept), &key(offered)).unwrap_err();
                assert!(e.contains("HOST KEY CHANGED for h1 (10.1.2.3)") && e.contains("line 2 (ssh-ed25519)"), "{e}");
                assert!(!e.contains(">>") && !e.contains("ssh-keyscan"), "never suggests appending: {e}");
                assert_eq!(std::fs::read_to_string(&kh).unwrap(), text);
            }
        }
        judge(&server(dir.path(), false), &key(ED_A)).unwrap();
    }

    #[test]
    fn a_revoked_key_is_refused_with_its_own_message() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("known_hosts"), format!("@revoked * {EC_A}\n")).unwrap();
        for accept in [false, true] {
            let e = judge(&server(dir.path(), accept), &key(EC_A)).unwrap_err();
            assert!(e.contains("REVOKED HOST KEY for h1") && e.contains("line 1"), "{e}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(super::quote("/var/lib/mln"), "/var/lib/mln");
        assert_eq!(super::quote("it's a b"), r"'it'\''s a b'");
        assert_eq!(super::quote(""), "''");
    }
}
