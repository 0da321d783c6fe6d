//! Template distribution: compare what service hosts hold with the local
//! templates by SHA-256, and send what is missing or different, large
//! files by a pipelined chain, small ones by a binary tree, every copy
//! verified; hosts a relay could not reach get the file directly after.

use super::proto::{Downstream, FileSum, Line, Peer, Received, Request};
use super::relay;
use super::FabricError;
use super::remote::Agent;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Files at least this large go by a chain; smaller ones by a tree.
pub const CHAIN_FROM: u64 = 16 << 20;

/// Per host: what was sent, or why it failed.
pub type PushOutcome = (String, Result<String, FabricError>);

/// Sends template `entry` from `templates` to every agent that lacks it
/// or holds a different copy.
pub async fn push_entry(agents: &[Arc<Agent>], templates: &Path, cache: &Path, entry: &str) -> Vec<PushOutcome> {
    let local = match super::agent::sums(templates, entry, cache) {
        Ok(l) => l,
        Err(e) => {
            let e = FabricError::Local(e);
            return agents.iter().map(|a| (a.name().to_string(), Err(e.clone()))).collect();
        }
    };
    // What each host has.
    let mut holdings = Vec::new();
    for a in agents {
        let a = a.clone();
        let entry = entry.to_string();
        holdings.push(tokio::spawn(async move {
            let r: Result<Vec<Result<Vec<FileSum>, String>>, _> = a.call_as(&Request::Templates { entries: vec![entry] }, &|_| {}).await;
            r.map(|mut v| v.pop().and_then(Result::ok).unwrap_or_default())
        }));
    }
    let mut outcome: BTreeMap<usize, Result<Vec<String>, FabricError>> = BTreeMap::new();
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); local.len()];
    for (i, h) in holdings.into_iter().enumerate() {
        match h.await.unwrap_or_else(|e| Err(FabricError::Local(e.to_string()))) {
            Err(e) => {
                outcome.insert(i, Err(e));
            }
            Ok(theirs) => {
                outcome.insert(i, Ok(Vec::new()));
                for (f, mine) in local.iter().enumerate() {
                    if !theirs.iter().any(|t| t == mine) {
                        needs[f].push(i);
                    }
                }
            }
        }
    }
    for (f, file) in local.iter().enumerate() {
        let targets: Vec<usize> = needs[f].iter().copied().filter(|i| matches!(outcome.get(i), Some(Ok(_)))).collect();
        if targets.is_empty() {
            continue;
        }
        let chosen: Vec<Arc<Agent>> = targets.iter().map(|&i| agents[i].clone()).collect();
        let results = broadcast(&chosen, &templates.join(&file.path), file).await;
        for (&i, r) in targets.iter().zip(results) {
            match (outcome.get_mut(&i), r) {
                (Some(Ok(sent)), Ok(())) => sent.push(file.path.clone()),
                (Some(o), Err(e)) => *o = Err(e.about(&file.path)),
                _ => {}
            }
        }
    }
    agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let r = outcome.remove(&i).unwrap_or_else(|| Err(FabricError::Unreachable("not reached".into())));
            (
                a.name().to_string(),
                r.map(|sent| if sent.is_empty() { format!("{entry}: up to date") } else { format!("{entry}: sent {}", sent.join(", ")) }),
            )
        })
        .collect()
}

/// Sends one file to every agent; hosts a relay failed to serve get it
/// once more straight from here.
pub async fn broadcast(agents: &[Arc<Agent>], source: &Path, file: &FileSum) -> Vec<Result<(), FabricError>> {
    let first = relay_round(agents, source, file).await;
    let retry: Vec<usize> = first.iter().enumerate().filter(|(_, r)| matches!(r, Err((true, _)))).map(|(i, _)| i).collect();
    let mut out: Vec<Result<(), FabricError>> = first.into_iter().map(|r| r.map_err(|(_, e)| e)).collect();
    for i in retry {
        let again = relay_round(&agents[i..=i], source, file).await;
        out[i] = again.into_iter().next().unwrap_or(Err((false, FabricError::Protocol("no answer".into())))).map_err(|(_, e)| e);
    }
    out
}

/// `address:port`, with an IPv6 address in brackets.
pub(super) fn host_port(address: &str, port: u16) -> String {
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// One relay over all `agents`. An error's flag says whether the host is
/// worth a direct retry (it answered, but the data did not reach it).
async fn relay_round(agents: &[Arc<Agent>], source: &Path, file: &FileSum) -> Vec<Result<(), (bool, FabricError)>> {
    let token = match relay::token() {
        Ok(t) => t,
        Err(e) => return agents.iter().map(|_| Err((false, FabricError::Local(format!("cannot make a transfer token: {e}"))))).collect(),
    };
    // Every receiver set up at once.
    let mut opening = Vec::new();
    for a in agents {
        let req = Request::Receive {
            path: file.path.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            token: token.clone(),
            bind: Some(a.conn.server.address.clone()),
            into: None,
        };
        let a = a.clone();
        opening.push(tokio::spawn(async move {
            let mut s = a.open(&req).await?;
            let progress = |l: &str| tracing::info!("{}: {l}", a.name());
            match tokio::time::timeout(Duration::from_secs(30), s.next(&progress)).await {
                Ok(Ok(Line::Listening(port))) => Ok((s, port)),
                Ok(Ok(Line::Error(e))) => Err(FabricError::Remote(e)),
                Ok(Ok(other)) => Err(FabricError::Protocol(format!("unexpected answer {other:?}"))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(FabricError::Unreachable("the receiver did not start within 30 s".into())),
            }
        }));
    }
    let mut out: Vec<Result<(), (bool, FabricError)>> = Vec::new();
    let mut live = Vec::new();
    for (i, o) in opening.into_iter().enumerate() {
        match o.await.unwrap_or_else(|e| Err(FabricError::Local(e.to_string()))) {
            Ok((s, port)) => {
                live.push((i, s, Peer { name: agents[i].name().to_string(), addr: host_port(&agents[i].conn.server.address, port) }));
                out.push(Ok(()));
            }
            Err(e) => out.push(Err((false, e))),
        }
    }
    let peers: Vec<Peer> = live.iter().map(|(_, _, p)| p.clone()).collect();
    let chain = file.size >= CHAIN_FROM;
    let links_of = |k: usize| -> Vec<Vec<Peer>> {
        if chain {
            if k + 1 < peers.len() {
                vec![peers[k + 1..].to_vec()]
            } else {
                vec![]
            }
        } else {
            [2 * k + 1, 2 * k + 2].iter().filter(|&&c| c < peers.len()).map(|&c| vec![peers[c].clone()]).collect()
        }
    };
    let mut waiting = Vec::new();
    for (k, (i, mut s, _)) in live.into_iter().enumerate() {
        let down = Downstream { links: links_of(k) };
        let name = agents[i].name().to_string();
        waiting.push((
            i,
            tokio::spawn(async move {
                s.send_line(&down).await?;
                let progress = |l: &str| tracing::info!("{name}: {l}");
                let v = s.answer(&progress).await?;
                serde_json::from_value::<Received>(v).map_err(|e| FabricError::Protocol(e.to_string()))
            }),
        ));
    }
    // The source is a relay that already has everything.
    let source_links: Vec<Peer> = if chain { peers.clone() } else { peers.iter().take(1).cloned().collect() };
    let (src, size) = (PathBuf::from(source), file.size);
    let sending = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        let done = relay::Progress::new(size, Some(true));
        Ok::<_, String>(relay::forward(&f, size, &done, &token, &source_links))
    });
    for (i, w) in waiting {
        out[i] = match w.await.unwrap_or_else(|e| Err(FabricError::Local(e.to_string()))) {
            Ok(r) if r.ok => Ok(()),
            Ok(r) => Err((true, FabricError::Remote(crate::machine::MachineError::Failed(crate::term::escape_lines(&r.message).into_owned())))),
            Err(e) => Err((true, e)),
        };
    }
    if let Ok(Err(e)) = sending.await {
        for o in out.iter_mut().filter(|o| o.is_ok()) {
            *o = Err((false, FabricError::Local(e.clone())));
        }
    }
    out
}
