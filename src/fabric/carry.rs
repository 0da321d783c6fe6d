//! A machine's files carried between two places for a cold move, with the
//! fabric's transfer: the receiving place listens on its fabric address
//! for one random token (given over SSH), the sending place connects and
//! sends, and the receiver checks the SHA-256 before the file takes its
//! name. Between two service hosts the data goes straight from one to the
//! other; this machine is an end only when it is one of the places.

use super::machines::RemoteMachines;
use super::proto::{Downstream, HostFiles, Line, Peer, Received, Request};
use super::relay;
use crate::machine::{MachineError, ParcelFile};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One end of a carry: this machine (the host's directory here) or a
/// service host.
pub enum End<'a> {
    Here(PathBuf),
    There(&'a RemoteMachines),
}

/// Carries `files` of `host` of `project` from one end to the other, one
/// after the other; the first failure ends it (a re-run sends them again).
pub fn carry(rt: &tokio::runtime::Runtime, from: &End, to: &End, project: &str, host: &str, files: &[ParcelFile]) -> Result<(), MachineError> {
    for f in files {
        let token = relay::token().map_err(|e| MachineError::Failed(format!("cannot make a transfer token: {e}")))?;
        let r = match to {
            End::There(b) => to_service_host(rt, from, b, project, host, f, &token),
            End::Here(dir) => match from {
                End::There(a) => to_here(rt, a, dir, project, host, f, &token),
                End::Here(_) => Err(MachineError::Refused("a move from this machine to itself carries nothing".into())),
            },
        };
        r.map_err(|e| e.map_message(|m| format!("{}: {m}", f.name)))?;
    }
    Ok(())
}

fn to_service_host(rt: &tokio::runtime::Runtime, from: &End, b: &RemoteMachines, project: &str, host: &str, f: &ParcelFile, token: &str) -> Result<(), MachineError> {
    let receiver = b.agent()?;
    let sender = match from {
        End::There(a) => Some(a.agent()?),
        End::Here(_) => None,
    };
    let local = match from {
        End::Here(dir) => Some(crate::name::inside(dir, &[f.name.as_str()]).map_err(|e| MachineError::Refused(e.to_string()))?),
        End::There(_) => None,
    };
    let req = Request::Receive {
        path: f.name.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
        token: token.to_string(),
        bind: Some(b.server.address.clone()),
        into: Some(HostFiles { project: project.to_string(), host: host.to_string() }),
    };
    let (name, address) = (b.server.name.clone(), b.server.address.clone());
    let (project, host, file, size, token) = (project.to_string(), host.to_string(), f.name.clone(), f.size, token.to_string());
    rt.block_on(async move {
        let mut s = receiver.open(&req).await.map_err(MachineError::from)?;
        let port = match tokio::time::timeout(Duration::from_secs(30), s.next(&|_| {})).await {
            Ok(Ok(Line::Listening(port))) => port,
            Ok(Ok(Line::Error(e))) => return Err(e),
            Ok(Ok(other)) => return Err(MachineError::Failed(format!("{name} answered {other:?}"))),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(MachineError::Transient(format!("{name} did not listen within 30 s"))),
        };
        s.send_line(&Downstream { links: vec![] }).await.map_err(MachineError::from)?;
        let peer = Peer { name: name.clone(), addr: super::push::host_port(&address, port) };
        let sending = match (sender, local) {
            (Some(a), _) => tokio::spawn(async move {
                let req = Request::Send { project, host, file, size, token, to: peer };
                a.call_as::<Received>(&req, &|_| {}).await.map_err(MachineError::from).and_then(received)
            }),
            (None, Some(path)) => tokio::spawn(async move {
                tokio::task::spawn_blocking(move || {
                    let f = std::fs::File::open(&path).map_err(|e| MachineError::Failed(format!("cannot read {}: {e}", path.display())))?;
                    let done = relay::Progress::new(size, Some(true));
                    match relay::forward(&f, size, &done, &token, &[peer]) {
                        (Some(_), _) => Ok(()),
                        (None, _) => Err(MachineError::Transient("could not be sent".into())),
                    }
                })
                .await
                .map_err(|e| MachineError::Failed(e.to_string()))?
            }),
            (None, None) => unreachable!("an end is here or there"),
        };
        let got = s.answer(&|_| {}).await.map_err(MachineError::from).and_then(|v| serde_json::from_value::<Received>(v).map_err(|e| MachineError::Failed(e.to_string()))).and_then(received);
        let sent = sending.await.map_err(|e| MachineError::Failed(e.to_string()))?;
        got.and(sent)
    })
}

fn to_here(rt: &tokio::runtime::Runtime, a: &RemoteMachines, dir: &std::path::Path, project: &str, host: &str, f: &ParcelFile, token: &str) -> Result<(), MachineError> {
    let sender: Arc<super::remote::Agent> = a.agent()?;
    let their = super::places::address_of(&a.server).ok_or_else(|| MachineError::Refused(format!("{} has no address", a.server.name)))?;
    let bind = super::places::source_toward(their).ok_or_else(|| MachineError::Refused(format!("no address here toward {their}")))?;
    let target = crate::name::inside(dir, &[f.name.as_str()]).map_err(|e| MachineError::Refused(e.to_string()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (size, sha, tok) = (f.size, f.sha256.clone(), token.to_string());
    let receiving = std::thread::spawn(move || {
        relay::receive(&target, size, &sha, &tok, bind, true, |addr| {
            let _ = tx.send(addr);
            Ok(Downstream { links: vec![] })
        })
    });
    let sent = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => {
            let req = Request::Send {
                project: project.to_string(),
                host: host.to_string(),
                file: f.name.clone(),
                size: f.size,
                token: token.to_string(),
                to: Peer { name: "this machine".into(), addr: addr.to_string() },
            };
            rt.block_on(sender.call_as::<Received>(&req, &|_| {})).map_err(MachineError::from).and_then(received)
        }
        Err(_) => Err(MachineError::Failed("could not listen here".into())),
    };
    let got = receiving.join().map_err(|_| MachineError::Failed("the receiving thread failed".into())).and_then(received);
    got.and(sent)
}

fn received(r: Received) -> Result<(), MachineError> {
    if r.ok {
        Ok(())
    } else {
        Err(MachineError::Failed(crate::term::escape_lines(&r.message).into_owned()))
    }
}
