//! The places of a project spread over service hosts: this machine's
//! libvirt for hosts without a service host, and one [`RemoteMachines`]
//! per service host. Before a build, every service host is reached at
//! once, its live capacity checked, and the templates it lacks sent by one
//! relay for all hosts (not one transfer per host).

use super::FabricError;
use super::config::{Fabric, Server};
use super::machines::RemoteMachines;
use super::proto::{Info, Request};
use super::push::push_entry;
use super::remote::{attach, fan_out, Agent};
use crate::machine::{Backend, MachineError};
use crate::plan::{Host, Plan};
use crate::progress::Telemetry;
use crate::runtime::{LocalPlaces, Places};
use indexmap::IndexMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct FabricPlaces<'a> {
    pub local: LocalPlaces<'a>,
    remotes: IndexMap<String, RemoteMachines>,
    rt: &'a tokio::runtime::Runtime,
    templates: PathBuf,
    cache: PathBuf,
    fanout: usize,
}

impl<'a> FabricPlaces<'a> {
    pub fn new(local: LocalPlaces<'a>, fabric: &Fabric, rt: &'a tokio::runtime::Runtime, cache: PathBuf) -> FabricPlaces<'a> {
        let templates = local.templates().to_path_buf();
        let keys = local.state().dir().to_path_buf();
        let remotes = fabric
            .names()
            .into_iter()
            .map(|n| (n.clone(), RemoteMachines::new(fabric.server(&n), rt.handle().clone(), templates.clone()).with_keys_from(keys.clone())))
            .collect();
        FabricPlaces { local, remotes, rt, templates, cache, fanout: fabric.fanout }
    }
}

impl Places for FabricPlaces<'_> {
    fn backend(&self, place: Option<&str>) -> Result<&dyn Backend, MachineError> {
        match place {
            None => self.local.backend(None),
            Some(s) => self
                .remotes
                .get(s)
                .map(|r| r as &dyn Backend)
                .ok_or_else(|| MachineError::Refused(format!("service host {s} is not in the fabric configuration"))),
        }
    }

    fn local_uri(&self) -> String {
        self.local.local_uri()
    }

    fn glance(&self, place: Option<&str>, project: &str, hosts: &[&Host]) -> Option<Vec<crate::machine::PowerState>> {
        self.local.glance(place, project, hosts)
    }

    fn reach(&self, places: &[String]) -> Vec<Result<(), MachineError>> {
        let mut out: Vec<Result<(), MachineError>> = places.iter().map(|_| Ok(())).collect();
        let mut todo: Vec<(usize, &RemoteMachines)> = Vec::new();
        for (i, p) in places.iter().enumerate() {
            match self.remotes.get(p) {
                Some(r) if !r.attached() => todo.push((i, r)),
                Some(_) => {}
                None => out[i] = Err(MachineError::Refused(format!("service host {p} is not in the fabric configuration"))),
            }
        }
        let servers: Vec<Server> = todo.iter().map(|(_, r)| r.server.clone()).collect();
        let agents = self.rt.block_on(fan_out(&servers, self.fanout, None, |s| async move { attach(&s).await.map(Arc::new) }));
        for ((i, r), a) in todo.into_iter().zip(agents) {
            match a {
                Ok(a) => r.offer(a),
                Err(e) => out[i] = Err(MachineError::from(e)),
            }
        }
        out
    }

    fn address(&self, place: Option<&str>) -> Option<String> {
        let r = self.remotes.get(place?)?;
        address_of(&r.server).map(|ip| ip.to_string())
    }

    fn carry(&self, from: Option<&str>, to: Option<&str>, project: &str, host: &str, files: &[crate::machine::ParcelFile]) -> Result<(), MachineError> {
        let end = |p: Option<&str>| -> Result<super::carry::End, MachineError> {
            match p {
                None => Ok(super::carry::End::Here(self.local.state().host_dir(project, host)?)),
                Some(s) => self
                    .remotes
                    .get(s)
                    .map(super::carry::End::There)
                    .ok_or_else(|| MachineError::Refused(format!("service host {s} is not in the fabric configuration"))),
            }
        };
        super::carry::carry(self.rt, &end(from)?, &end(to)?, project, host, files)
    }

    fn join_segments(&self, shares: &mut [(Option<String>, Plan)], t: &dyn Telemetry) {
        // Service hosts at their fabric addresses; this machine at the
        // address it reaches them from.
        let mut addresses: Vec<Option<std::net::IpAddr>> =
            shares.iter().map(|(p, _)| p.as_ref().and_then(|p| self.remotes.get(p)).and_then(|r| address_of(&r.server))).collect();
        let first_remote = addresses.iter().flatten().next().copied();
        for (i, (p, _)) in shares.iter().enumerate() {
            if p.is_none() {
                addresses[i] = first_remote.and_then(source_toward);
            }
        }
        for note in super::segment::join(shares, &addresses) {
            t.note(None, &note);
        }
    }

    fn before_build(&self, shares: &[(Option<String>, Plan)], t: &dyn Telemetry) -> Vec<Result<(), MachineError>> {
        let mut out: Vec<Result<(), MachineError>> = shares.iter().map(|_| Ok(())).collect();
        let remote: Vec<(usize, &RemoteMachines, &Plan)> = shares
            .iter()
            .enumerate()
            .filter_map(|(i, (p, share))| {
                let name = p.as_ref()?;
                match self.remotes.get(name) {
                    Some(r) => Some((i, r, share)),
                    None => {
                        out[i] = Err(MachineError::Refused(format!("service host {name} is not in the fabric configuration")));
                        None
                    }
                }
            })
            .collect();
        if remote.is_empty() {
            return out;
        }
        let servers: Vec<Server> = remote.iter().map(|(_, r, _)| r.server.clone()).collect();
        let agents: Vec<Result<Arc<Agent>, super::FabricError>> =
            self.rt.block_on(fan_out(&servers, self.fanout, None, |s| async move { attach(&s).await.map(Arc::new) }));
        // Live capacity: memory for the VMs not there yet.
        let infos: Vec<Result<Info, super::FabricError>> = self.rt.block_on(async {
            let handles: Vec<_> = agents
                .iter()
                .map(|a| {
                    let a = a.clone();
                    tokio::spawn(async move {
                        match a {
                            Ok(a) => a.call_as::<Info>(&Request::Info, &|_| {}).await,
                            Err(e) => Err(e),
                        }
                    })
                })
                .collect();
            let mut v = Vec::new();
            for h in handles {
                v.push(h.await.unwrap_or_else(|e| Err(super::FabricError::Protocol(e.to_string()))));
            }
            v
        });
        for (k, ((i, r, share), info)) in remote.iter().zip(infos).enumerate() {
            match (&agents[k], &info) {
                (Err(e), _) | (Ok(_), Err(e)) => out[*i] = Err(MachineError::from(e.clone())),
                (Ok(a), Ok(info)) => {
                    r.adopt(a.clone());
                    let new: Vec<&Host> = share
                        .hosts
                        .iter()
                        .filter(|h| !info.domains.iter().any(|d| d.name == crate::backend::domain::domain_name(&share.project, &h.name)))
                        .collect();
                    let need = super::capacity::total(&new, |h| h.memory_mib);
                    if need > info.memory_available_mib {
                        out[*i] = Err(MachineError::Refused(format!(
                            "not enough memory: {} new VMs need {need} MiB, {} has {} MiB available",
                            new.len(),
                            info.hostname,
                            info.memory_available_mib
                        )));
                    }
                }
            }
        }
        // Templates: each entry to the hosts that use it and lack it.
        let mut entries: IndexMap<String, Vec<usize>> = IndexMap::new();
        for (k, (i, _, share)) in remote.iter().enumerate() {
            for h in &share.hosts {
                if out[*i].is_ok() && self.templates.join(&h.template).exists() {
                    let e = entries.entry(h.template.clone()).or_default();
                    if !e.contains(&k) {
                        e.push(k);
                    }
                }
            }
        }
        for (entry, users) in entries {
            let chosen: Vec<Arc<Agent>> = users.iter().filter_map(|&k| agents[k].as_ref().ok().cloned()).collect();
            let pushed = self.rt.block_on(push_entry(&chosen, &self.templates, &self.cache, &entry));
            for ((name, r), &k) in pushed.into_iter().zip(&users) {
                match r {
                    Ok(m) => t.note(Some(&name), &format!("template {m}")),
                    Err(e) => out[remote[k].0] = Err(MachineError::Failed(format!("template {entry}: {e}"))),
                }
            }
        }
        out
    }
}

/// A service host's fabric address as an IP address (a name resolved).
pub(super) fn address_of(s: &Server) -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    match s.address.parse() {
        Ok(ip) => Some(ip),
        Err(_) => (s.address.as_str(), s.port).to_socket_addrs().ok()?.next().map(|a| a.ip()),
    }
}

/// This machine's address toward `peer`: the source the kernel picks for
/// it (a UDP socket connected, nothing sent).
pub(super) fn source_toward(peer: std::net::IpAddr) -> Option<std::net::IpAddr> {
    let any: std::net::SocketAddr = if peer.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = std::net::UdpSocket::bind(any).ok()?;
    sock.connect((peer, 4789)).ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}

/// What the person running mln chose for where machines are.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `--connect`: the libvirt connection for hosts without a service host.
    pub connect: Option<String>,
    /// The templates directory.
    pub templates: PathBuf,
    /// `--fabric`: the service hosts' configuration (else `$MLN_FABRIC`,
    /// else `fabric.toml` in the state directory).
    pub fabric: Option<PathBuf>,
}

impl Target {
    /// The fabric configuration, with every problem in it.
    pub fn fabric(&self, state_dir: &std::path::Path) -> Result<Fabric, super::config::ConfigError> {
        let f = Fabric::find(self.fabric.as_deref(), state_dir)?;
        let problems = f.problems();
        if problems.is_empty() {
            Ok(f)
        } else {
            Err(super::config::ConfigError::Invalid(problems))
        }
    }
}

/// The async runtime the fabric's SSH work runs on.
pub fn async_runtime() -> Result<tokio::runtime::Runtime, FabricError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| FabricError::Local(format!("cannot start the async runtime: {e}")))
}

/// Runs `f` with the places of a project: this machine's libvirt (its
/// connection: as asked, else as recorded, else the embedded driver), and
/// the service hosts of the fabric configuration when the plan or the
/// record names any. This is the one place that decides between local and
/// remote.
pub fn with_places<R>(
    state: &crate::state::State,
    target: &Target,
    plan: Option<&Plan>,
    rec: Option<&crate::state::ProjectRecord>,
    f: impl FnOnce(&dyn Places) -> R,
) -> Result<R, FabricError> {
    let uri = crate::runtime::places::local_uri(state, target.connect.as_deref(), rec);
    let local = LocalPlaces::new(state, uri, target.templates.clone());
    // Bare-metal nodes: the real backend, set up from the fabric file's
    // [netboot] (book: baremetal.md), only when the project holds nodes.
    let nodes_plan = plan.or(rec.map(|r| &r.plan));
    let site = if crate::baremetal::ops::wanted(nodes_plan) {
        let fabric = target.fabric(state.dir())?;
        let clusters = crate::baremetal::automaton::Clusters::new(fabric.baremetal.clone());
        Some(crate::baremetal::ops::Site::open(state, fabric.netboot.as_ref(), clusters, nodes_plan.cloned()).map_err(|e| FabricError::Local(e.to_string()))?)
    } else {
        None
    };
    let metal = site.as_ref().map(|s| s.machines());
    let local = match &metal {
        Some(m) => local.with_baremetal(m),
        None => local,
    };
    let remote = plan.is_some_and(|p| p.hosts.iter().any(|h| h.service_host.is_some())) || rec.is_some_and(|r| !r.places.is_empty());
    if !remote {
        return Ok(f(&local));
    }
    let fabric = target.fabric(state.dir())?;
    let rt = async_runtime()?;
    let places = FabricPlaces::new(local, &fabric, &rt, state.dir().join("cache"));
    Ok(f(&places))
}
