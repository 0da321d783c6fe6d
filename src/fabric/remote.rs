//! The managing side of the agent: make sure the service host runs our
//! exact `mln` (copied over and checked by SHA-256 when missing or
//! different, as TakTuk propagates itself), then send it requests.

use super::agent::self_sha256;
use super::config::Server;
use super::proto::{Hello, Line, Request, PROTOCOL};
use super::ssh::{self, quote, Conn, Event, Proc};
use super::FabricError;
use crate::term::{escape, escape_lines};

pub struct Agent {
    pub conn: Conn,
    path: String,
    /// Agent processes between requests, each on its own channel: a
    /// request takes one (or starts one when none is free), and gives it
    /// back after a whole answer. Starting the agent costs a channel, a
    /// shell and a 20 MB binary's start on the service host (0.6-0.9 s
    /// each on a loaded machine); a kept one answers the next request
    /// over its open channel. They end when the SSH session does.
    idle: std::sync::Mutex<Vec<Session>>,
}

/// Connects to `server` and makes sure its agent is ours.
pub async fn attach(server: &Server) -> Result<Agent, FabricError> {
    // Our own checksum (the first time in this process: a read of the
    // whole binary) while the SSH handshake waits on the network. A plain
    // thread: a connection that fails is told at once, and nothing waits
    // for the checksum then.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(self_sha256());
    });
    let conn = ssh::connect(server).await?;
    let sha = rx.await.map_err(|_| FabricError::Agent("internal error: our checksum was not computed".into()))?.map_err(FabricError::Agent)?;
    let agent = Agent::unchecked(conn, &sha);
    if let Ok(h) = agent.hello().await {
        if h.sha256 == sha && h.protocol == PROTOCOL {
            tracing::debug!(target: "mln::fabric::timing", host = %server.name, "agent ready");
            return Ok(agent);
        }
    }
    // Whatever answered is not ours: none of it serves again.
    agent.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    agent.install(&sha).await?;
    let h = agent.hello().await?;
    if h.sha256 != sha || h.protocol != PROTOCOL {
        return Err(FabricError::Agent(format!(
            "{}: the agent copied to {} reports {} (protocol {}), not ours",
            server.name, agent.path, h.sha256, h.protocol
        )));
    }
    Ok(agent)
}

/// How many idle agent processes an agent keeps per SSH session.
const KEPT: usize = 4;

/// An agent request in progress: its answer lines, with the agent's
/// stderr lines handed to `progress` as they come.
pub struct Session {
    proc: Proc,
    out: Vec<u8>,
    err: Vec<u8>,
    host: String,
    /// The agent process ended (or its channel closed): it serves no more.
    ended: bool,
    /// Opened for one request (`Agent::open`): the channel's end of input
    /// is sent after its final answer, so that the agent stops.
    once: bool,
}

impl Session {
    pub async fn send_line(&mut self, v: &impl serde::Serialize) -> Result<(), FabricError> {
        let mut line = serde_json::to_vec(v).map_err(|e| FabricError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.proc.send(&line).await
    }

    pub async fn next(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<Line, FabricError> {
        loop {
            if let Some(i) = self.out.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.out.drain(..=i).collect();
                let got: Line = serde_json::from_slice(&line)
                    .map_err(|e| FabricError::Protocol(format!("{}: unreadable answer from the agent ({e}): {}", self.host, escape(String::from_utf8_lossy(&line).trim()))))?;
                // A one-request agent's final answer (or error): its input
                // ends, so it stops rather than waiting for the channel's
                // end.
                if self.once && !matches!(got, Line::Listening(_)) {
                    let _ = self.proc.eof().await;
                }
                // What a service host says reaches a terminal: no escape sequences.
                return Ok(match got {
                    Line::Error(e) => Line::Error(e.map_message(|m| escape_lines(&m).into_owned())),
                    other => other,
                });
            }
            match self.proc.next().await {
                Some(Event::Stdout(d)) => self.out.extend(d),
                Some(Event::Stderr(d)) => {
                    self.err.extend(d);
                    while let Some(i) = self.err.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.err.drain(..=i).collect();
                        progress(&escape(String::from_utf8_lossy(&line).trim_end()));
                    }
                }
                Some(Event::Exit(s)) if s != 0 && self.out.is_empty() => {
                    self.ended = true;
                    let err = escape_lines(String::from_utf8_lossy(&self.err).trim()).into_owned();
                    return Err(FabricError::Remote(crate::machine::MachineError::Failed(format!(
                        "{}: the agent exited with status {s}{}",
                        self.host,
                        if err.is_empty() { String::new() } else { format!(": {err}") }
                    ))));
                }
                Some(Event::Exit(_)) => self.ended = true,
                None => {
                    self.ended = true;
                    return Err(FabricError::Unreachable(format!("{}: the connection closed before the agent answered", self.host)));
                }
            }
        }
    }

    /// Reads to the final answer.
    pub async fn answer(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value, FabricError> {
        loop {
            match self.next(progress).await? {
                Line::Ok(v) => return Ok(v),
                Line::Error(e) => return Err(FabricError::Remote(e)),
                Line::Listening(_) => {}
            }
        }
    }

    /// Whether this kept agent process can take a request: it has not
    /// ended, and it said nothing out of turn while it waited (an agent
    /// killed or crashed between requests is found here, and a new one
    /// started instead).
    async fn fit(&mut self) -> bool {
        if self.ended || !self.out.is_empty() {
            return false;
        }
        loop {
            // Only what already arrived: a zero timeout polls once.
            match tokio::time::timeout(std::time::Duration::ZERO, self.proc.next()).await {
                Err(_) => return true,
                Ok(Some(Event::Stderr(_))) => {}
                Ok(_) => return false,
            }
        }
    }
}

impl Agent {
    /// Our copy at its place on the server (named by our checksum `sha`),
    /// over `conn`, neither asked nor checked yet: for callers that check
    /// it themselves (a tree's head checks before it relays).
    pub fn unchecked(conn: Conn, sha: &str) -> Agent {
        let path = format!("{}/mln-{}", conn.server.agent_dir, &sha[..16]);
        Agent { conn, path, idle: std::sync::Mutex::new(Vec::new()) }
    }

    fn command(&self) -> String {
        let s = &self.conn.server;
        format!(
            "{} --state-dir {} --templates {} --connect {} agent",
            quote(&self.path),
            quote(&s.state_dir),
            quote(&s.templates),
            quote(&s.libvirt)
        )
    }

    pub fn name(&self) -> &str {
        &self.conn.server.name
    }

    /// Where our binary is on the host.
    pub fn path(&self) -> &str {
        &self.path
    }

    async fn hello(&self) -> Result<Hello, FabricError> {
        let v = self.call(&Request::Hello, &|_| {}).await?;
        serde_json::from_value(v).map_err(|e| FabricError::Protocol(e.to_string()))
    }

    /// Copies our binary to its place, checked by its SHA-256 there.
    pub async fn install(&self, sha: &str) -> Result<(), FabricError> {
        let name = &self.conn.server.name;
        let exe = std::fs::read("/proc/self/exe").map_err(|e| FabricError::Agent(format!("cannot read our own binary: {e}")))?;
        let dir = self.path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
        let tmp = format!("{}.tmp{}", self.path, &super::relay::token().map_err(FabricError::Agent)?[..8]);
        let cmd = format!(
            "mkdir -p {d} && cat > {t} && chmod 755 {t} && sha256sum {t}",
            d = quote(dir),
            t = quote(&tmp)
        );
        let out = self.conn.exec(&cmd, &exe).await?;
        let got = String::from_utf8_lossy(&out.stdout);
        if out.status != Some(0) || got.split_whitespace().next() != Some(sha) {
            let _ = self.conn.exec(&format!("rm -f {}", quote(&tmp)), b"").await;
            return Err(FabricError::Agent(format!(
                "{name}: copying the agent to {} failed (status {:?}, checksum {}): {}",
                self.path,
                out.status,
                escape(got.split_whitespace().next().unwrap_or("none")),
                escape_lines(String::from_utf8_lossy(&out.stderr).trim())
            )));
        }
        let out = self.conn.exec(&format!("mv -f {} {}", quote(&tmp), quote(&self.path)), b"").await?;
        if out.status != Some(0) {
            return Err(FabricError::Agent(format!("{name}: cannot place the agent: {}", escape_lines(String::from_utf8_lossy(&out.stderr).trim()))));
        }
        tracing::info!("{name}: agent installed at {} (sha256 {})", self.path, &sha[..16]);
        Ok(())
    }

    async fn start(&self, once: bool) -> Result<Session, FabricError> {
        let proc = self.conn.open(&self.command()).await?;
        Ok(Session { proc, out: Vec::new(), err: Vec::new(), host: self.name().to_string(), ended: false, once })
    }

    /// A request on an agent process of its own, for requests that talk
    /// further on their channel (`Receive`): the process ends after the
    /// answer.
    pub async fn open(&self, req: &Request) -> Result<Session, FabricError> {
        let mut s = self.start(true).await?;
        s.send_line(req).await?;
        Ok(s)
    }

    /// A kept agent process that can take a request, else a new one.
    async fn take(&self) -> Result<Session, FabricError> {
        loop {
            let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match kept {
                Some(mut s) => {
                    if s.fit().await {
                        return Ok(s);
                    }
                    tracing::debug!(target: "mln::fabric::timing", host = %self.name(), "a kept agent ended; another is started");
                }
                None => return self.start(false).await,
            }
        }
    }

    /// Sends one request and waits for its answer, on a kept agent
    /// process when one is free.
    pub async fn call(&self, req: &Request, progress: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value, FabricError> {
        let mut s = self.take().await?;
        s.send_line(req).await?;
        let got = s.answer(progress).await;
        // A whole answer read, from a process still there: it serves the
        // next request. Anything else (the channel lost mid-answer, an
        // unreadable line) leaves it out.
        let whole = matches!(&got, Ok(_) | Err(FabricError::Remote(_)));
        if whole && !s.ended && s.out.is_empty() {
            // A few kept at most: each holds a channel, and sshd allows
            // ten per session (MaxSessions); one more is told to stop.
            let spare = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < KEPT {
                    idle.push(s);
                    None
                } else {
                    Some(s)
                }
            };
            if let Some(mut s) = spare {
                let _ = s.proc.eof().await;
            }
        }
        got
    }

    pub async fn call_as<T: serde::de::DeserializeOwned>(&self, req: &Request, progress: &(dyn Fn(&str) + Sync)) -> Result<T, FabricError> {
        let v = self.call(req, progress).await?;
        serde_json::from_value(v).map_err(|e| FabricError::Protocol(format!("{}: unexpected answer: {e}", self.name())))
    }
}

/// Runs `f` for every server, at most `window` at once, each within
/// `limit` when given; results in the servers' order. One slow or dead
/// host holds only its own slot.
pub async fn fan_out<T, F, Fut>(servers: &[Server], window: usize, limit: Option<std::time::Duration>, f: F) -> Vec<Result<T, FabricError>>
where
    F: Fn(Server) -> Fut,
    Fut: std::future::Future<Output = Result<T, FabricError>> + Send + 'static,
    T: Send + 'static,
{
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(window.max(1)));
    let mut handles = Vec::new();
    for s in servers {
        let fut = f(s.clone());
        let sem = sem.clone();
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| FabricError::Unreachable(e.to_string()))?;
            match limit {
                Some(l) => tokio::time::timeout(l, fut).await.unwrap_or_else(|_| Err(FabricError::Unreachable(format!("no answer within {} s", l.as_secs())))),
                None => fut.await,
            }
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or_else(|e| Err(FabricError::Protocol(format!("internal error: {e}")))));
    }
    out
}
