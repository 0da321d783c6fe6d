//! Tree fan-out, as TakTuk deploys itself: the managing machine reaches
//! only a few hosts (the heads); each runs the command for itself and,
//! with its copy of this same binary (the agent's, installed when missing),
//! relays the command to its share of the other hosts, which may relay
//! again. The answers come back up the tree.
//!
//! A head reaches its share as the managing machine would: the same user,
//! key files and known_hosts paths, which must therefore exist on the heads
//! too (a shared home directory, as clusters have; TakTuk's connectors need
//! the same). A head that cannot be reached, or whose relay fails, costs
//! only time: its share is then reached from the machine above it.

use super::config::Server;
use super::exec::{self, Ran};
use super::remote;
use super::ssh::{self, quote};
use super::FabricError;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

/// Splits hosts `0..n` into at most `arity` subtrees of neighbouring
/// hosts whose sizes differ by at most one; a subtree's first host is its
/// head, which relays to the rest.
pub fn split(n: usize, arity: usize) -> Vec<Range<usize>> {
    let k = arity.max(1).min(n);
    if k == 0 {
        return Vec::new();
    }
    let (base, extra) = (n / k, n % k);
    let mut at = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            at += len;
            at - len..at
        })
        .collect()
}

/// How many SSH hops the farthest of `n` hosts is from the managing
/// machine with this arity (1: reached directly).
pub fn depth(n: usize, arity: usize) -> usize {
    if n <= arity.max(1) {
        return usize::from(n > 0);
    }
    1 + split(n, arity).iter().map(|r| depth(r.len() - 1, arity)).max().unwrap_or(0)
}

/// What a head is asked to do for its share: `mln fabric relay` reads it
/// on its stdin.
#[derive(Serialize, Deserialize, Debug)]
pub struct Job {
    pub cmd: String,
    pub window: usize,
    pub limit_secs: Option<u64>,
    pub arity: usize,
    /// The hosts of the head's share, each as the manager reaches it.
    pub hosts: Vec<Server>,
    /// The manager's SHA-256: the head's copy relays only if it is this
    /// build (a copy found by its name is checked, not trusted).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Where the head's agent keeps checksums (its state directory's
    /// cache): the copy's own is then read once, not at every relay.
    #[serde(default)]
    pub cache: Option<String>,
}

/// `mln fabric relay`'s exit status when its binary is not the manager's
/// build: nothing was run, the manager copies its own and asks again.
pub const NOT_OURS: u8 = 98;
/// The head's shell's exit status when there is no copy of mln to run.
const ABSENT: u32 = 97;

/// Whether this process is the build that sent `job`.
pub fn ours(job: &Job) -> Result<(), String> {
    let Some(want) = &job.sha256 else { return Ok(()) };
    let have = match &job.cache {
        Some(c) => super::agent::own_sum(std::path::Path::new(c))?,
        None => super::agent::self_sha256()?,
    };
    if &have == want {
        Ok(())
    } else {
        Err(format!("this mln is {have}, the manager's is {want}"))
    }
}

/// One host's answer as a head sends it up.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Answer {
    pub host: String,
    pub output: Vec<u8>,
    pub status: Option<u32>,
    pub error: Option<String>,
}

impl From<Ran> for Answer {
    fn from(r: Ran) -> Answer {
        match r.result {
            Ok((output, status)) => Answer { host: r.host, output, status, error: None },
            Err(e) => Answer { host: r.host, output: Vec::new(), status: None, error: Some(e) },
        }
    }
}

impl From<Answer> for Ran {
    fn from(a: Answer) -> Ran {
        Ran { host: a.host, result: match a.error { Some(e) => Err(e), None => Ok((a.output, a.status)) } }
    }
}

type Boxed = Pin<Box<dyn Future<Output = Vec<Ran>> + Send>>;

/// Runs `cmd` on every server, reaching at most `arity` of them from here
/// and the rest through them; results in the servers' order.
pub fn run(servers: Vec<Server>, cmd: String, window: usize, limit: Option<Duration>, arity: usize) -> Boxed {
    Box::pin(async move {
        if servers.len() <= arity.max(1) {
            return exec::run(&servers, &cmd, window, limit).await;
        }
        let parts = split(servers.len(), arity);
        // The window is the whole tree's: the heads share it, so no more
        // handshakes are under way at once than flat fan-out would have.
        let share = window.div_ceil(parts.len()).max(1);
        let subtrees: Vec<_> = parts.into_iter().map(|r| tokio::spawn(subtree(servers[r].to_vec(), cmd.clone(), share, limit, arity))).collect();
        let mut out = Vec::with_capacity(servers.len());
        for (t, r) in subtrees.into_iter().zip(split(servers.len(), arity)) {
            match t.await {
                Ok(v) => out.extend(v),
                Err(e) => out.extend(servers[r].iter().map(|s| Ran { host: s.name.clone(), result: Err(format!("internal error: {e}")) })),
            }
        }
        out
    })
}

/// The head (first server) runs `cmd` and relays it to the others.
async fn subtree(group: Vec<Server>, cmd: String, window: usize, limit: Option<Duration>, arity: usize) -> Vec<Ran> {
    // A head with nobody to relay to is just a host: no copy of mln needed.
    if group.len() == 1 {
        return exec::run(&group, &cmd, window, limit).await;
    }
    let head = group[0].clone();
    let rest: Vec<Server> = group[1..].to_vec();
    // Our checksum (read once per process) while the handshake waits on
    // the network.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(super::agent::self_sha256());
    });
    let attached = async {
        let conn = ssh::connect(&head).await?;
        let sha = rx.await.map_err(|_| FabricError::Agent("internal error: our checksum was not computed".into()))?.map_err(FabricError::Agent)?;
        Ok::<_, FabricError>((remote::Agent::unchecked(conn, &sha), sha))
    };
    let (agent, sha) = match attached.await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("{}: cannot relay through it ({e}); reaching its {} hosts from here", head.name, rest.len());
            let mut out = vec![Ran { host: head.name.clone(), result: Err(e.to_string()) }];
            out.extend(run(rest, cmd, window, limit, arity).await);
            return out;
        }
    };
    let own = async {
        let ran = agent.conn.exec(&cmd, b"");
        let r = match limit {
            Some(l) => tokio::time::timeout(l, ran).await.unwrap_or_else(|_| Err(FabricError::Unreachable(format!("no answer within {} s", l.as_secs())))),
            None => ran.await,
        };
        let result = r
            .map(|o| {
                let mut text = o.stdout;
                text.extend(o.stderr);
                (text, o.status)
            })
            .map_err(|e| e.to_string());
        Ran { host: head.name.clone(), result }
    };
    let job = Job {
        cmd: cmd.clone(),
        window,
        limit_secs: limit.map(|l| l.as_secs()),
        arity,
        hosts: rest.clone(),
        sha256: Some(sha.clone()),
        cache: Some(format!("{}/cache", head.state_dir)),
    };
    // The relay is started at once on the copy named by our checksum, and
    // checks it there: no round trip and no agent start before it, which
    // the managing machine pays for every head, on its own link, before
    // the head's share starts. Only a head without our copy gets it first.
    let relayed = async {
        match relay(&agent, &job).await {
            Err(Relay::Absent) => {
                agent.install(&sha).await?;
                relay(&agent, &job).await.map_err(FabricError::from)
            }
            r => r.map_err(FabricError::from),
        }
    };
    let (own, relayed) = tokio::join!(own, relayed);
    agent.conn.close().await;
    let mut out = vec![own];
    match relayed {
        Ok(v) if v.len() == rest.len() && v.iter().zip(&rest).all(|(a, s)| a.host == s.name) => out.extend(v.into_iter().map(Ran::from)),
        Ok(_) => {
            tracing::warn!("{}: its relay answered for other hosts than asked; reaching its {} hosts from here", head.name, rest.len());
            out.extend(run(rest, cmd, window, limit, arity).await);
        }
        Err(e) => {
            tracing::warn!("{}: relaying failed ({e}); reaching its {} hosts from here", head.name, rest.len());
            out.extend(run(rest, cmd, window, limit, arity).await);
        }
    }
    out
}

/// Why a relay did not answer.
enum Relay {
    /// The head has no copy of this build (or a damaged one): nothing ran.
    Absent,
    Failed(FabricError),
}

impl From<FabricError> for Relay {
    fn from(e: FabricError) -> Relay {
        Relay::Failed(e)
    }
}

impl From<Relay> for FabricError {
    fn from(r: Relay) -> FabricError {
        match r {
            Relay::Absent => FabricError::Agent("the copy of mln just installed is not found, or is not ours".into()),
            Relay::Failed(e) => e,
        }
    }
}

/// Asks the head's mln to do `job`; its answers, in the job's order.
async fn relay(agent: &remote::Agent, job: &Job) -> Result<Vec<Answer>, Relay> {
    let input = serde_json::to_vec(job).map_err(|e| FabricError::Protocol(e.to_string()))?;
    let p = quote(agent.path());
    // Without a copy the job is read anyway: it is sent at once, and a
    // channel closed under it would be a failure, not an absence.
    let command = format!("if [ -x {p} ]; then exec {p} fabric relay; fi; cat >/dev/null; exit {ABSENT}");
    let out = agent.conn.exec(&command, &input).await?;
    if out.status == Some(ABSENT) || out.status == Some(u32::from(NOT_OURS)) {
        return Err(Relay::Absent);
    }
    if out.status != Some(0) {
        return Err(Relay::Failed(FabricError::Remote(crate::machine::MachineError::Failed(format!(
            "`mln fabric relay` exited with {:?}: {}",
            out.status,
            crate::term::escape_lines(String::from_utf8_lossy(&out.stderr).trim())
        )))));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Relay::Failed(FabricError::Protocol(format!("{}: unreadable relay answer: {e}", agent.name()))))
}

/// The head's side (`mln fabric relay`): the job's hosts, reached from here.
pub async fn serve(job: Job) -> Vec<Answer> {
    let servers = job.hosts;
    let limit = job.limit_secs.map(Duration::from_secs);
    run(servers, job.cmd, job.window.max(1), limit, job.arity.max(1)).await.into_iter().map(Answer::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtrees_cover_every_host_once_in_order_and_are_balanced() {
        for n in 0..300 {
            for arity in 1..20 {
                let parts = split(n, arity);
                assert_eq!(parts.len(), arity.min(n), "n={n} arity={arity}");
                let flat: Vec<usize> = parts.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "n={n} arity={arity}");
                let (lo, hi) = (parts.iter().map(|r| r.len()).min(), parts.iter().map(|r| r.len()).max());
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    assert!(lo >= 1 && hi - lo <= 1, "n={n} arity={arity}: {parts:?}");
                }
            }
        }
        assert_eq!(split(200, 14)[0], 0..15);
        assert_eq!(split(200, 14)[13], 186..200);
        // Arity 0 is read as 1 (a chain), never a division by zero.
        assert_eq!(split(5, 0), vec![0..5]);
    }

    #[test]
    fn depth_is_hops_to_the_farthest_host() {
        assert_eq!(depth(0, 8), 0);
        assert_eq!(depth(8, 8), 1);
        assert_eq!(depth(9, 8), 2);
        // 200 hosts through 14 heads of 14 or 15: each head reaches 13 or 14 directly.
        assert_eq!(depth(200, 14), 2);
        assert_eq!(depth(200, 4), 4);
        // A chain.
        assert_eq!(depth(5, 1), 5);
    }

    #[test]
    fn answers_keep_output_status_and_errors_across_the_wire() {
        let ran = vec![
            Ran { host: "h1".into(), result: Ok((b"\xffbinary\n".to_vec(), Some(3))) },
            Ran { host: "h2".into(), result: Ok((Vec::new(), None)) },
            Ran { host: "h3".into(), result: Err("cannot connect".into()) },
        ];
        let wire: Vec<Answer> = ran.into_iter().map(Answer::from).collect();
        let text = serde_json::to_string(&wire).unwrap();
        let back: Vec<Ran> = serde_json::from_str::<Vec<Answer>>(&text).unwrap().into_iter().map(Ran::from).collect();
        assert_eq!(back[0].result, Ok((b"\xffbinary\n".to_vec(), Some(3))));
        assert_eq!(back[1].result, Ok((Vec::new(), None)));
        assert_eq!(back[2].result, Err("cannot connect".to_string()));
        assert_eq!(back.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(), ["h1", "h2", "h3"]);
    }

    #[test]
    fn a_relay_runs_only_as_the_build_that_sent_the_job() {
        let job = |sha: Option<String>, cache: Option<String>| Job { cmd: "true".into(), window: 1, limit_secs: None, arity: 2, hosts: Vec::new(), sha256: sha, cache };
        let me = crate::fabric::agent::self_sha256().unwrap();
        assert_eq!(ours(&job(Some(me.clone()), None)), Ok(()));
        // Through the checksum cache too, the second time from the cache.
        let dir = tempfile::tempdir().unwrap();
        let cache = Some(dir.path().join("cache").display().to_string());
        assert_eq!(ours(&job(Some(me.clone()), cache.clone())), Ok(()));
        assert_eq!(ours(&job(Some(me), cache.clone())), Ok(()));
        let other = "0".repeat(64);
        assert!(ours(&job(Some(other.clone()), cache)).unwrap_err().contains(&other));
        // A job from a manager that does not say (an older one): relayed.
        assert_eq!(ours(&job(None, None)), Ok(()));
        // Such a job reads back too.
        let old = r#"{"cmd":"true","window":1,"limit_secs":null,"arity":2,"hosts":[]}"#;
        let back: Job = serde_json::from_str(old).unwrap();
        assert_eq!((back.sha256, back.cache), (None, None));
    }

    #[test]
    fn a_job_names_every_host_of_the_share_and_reads_back() {
        let s = Server {
            name: "h7".into(),
            address: "10.0.0.7".into(),
            user: "root".into(),
            port: 2222,
            identity: vec!["/k".into()],
            known_hosts: "/kh".into(),
            accept_new_host_keys: false,
            state_dir: "/var/lib/mln".into(),
            templates: "/var/lib/mln/templates".into(),
            libvirt: "qemu:///system".into(),
            agent_dir: "/var/lib/mln/agent".into(),
            max_vms: None,
            memory_mib: None,
            vcpus: None,
            connect_timeout: 10,
        };
        let job = Job { cmd: "uname -r".into(), window: 8, limit_secs: Some(5), arity: 4, hosts: vec![s.clone()], sha256: None, cache: None };
        let back: Job = serde_json::from_slice(&serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!(back.hosts[0], s);
        let got = back.hosts[0].clone();
        assert_eq!((got.name.as_str(), got.address.as_str(), got.port, back.cmd.as_str(), back.arity), ("h7", "10.0.0.7", 2222, "uname -r", 4));
    }
}
