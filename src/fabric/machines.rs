//! The machines of one service host, reached through its agent: every
//! capability forwards to the agent, which runs the same orchestration on
//! its share of the project with its own libvirt. The batch forms send one
//! request per batch; the agent's progress events come back tagged with
//! the service host's name.

use super::config::Server;
use super::proto::Request;
use super::remote::{attach, Agent};
use crate::machine::{Backend, BuildOptions, Done, Machine, MachineError, Outcome, Power, PowerState, Provision, Status, StopMode};
use crate::plan::{Host, Plan};
use crate::progress::{Event, Tagged, Telemetry};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct RemoteMachines {
    pub server: Server,
    rt: tokio::runtime::Handle,
    agent: Mutex<Option<Arc<Agent>>>,
    /// Tunnels to this host's libvirt held while a machine moves here
    /// (the sender's libvirt reaches it through them).
    incoming: Mutex<Vec<super::tunnel::UnixForward>>,
    /// The sender's side of a move, opened ahead (`ready_to_send`).
    sending: Mutex<Option<Sending>>,
    /// The managing machine's templates: a share names each by the exact
    /// entry found there (what was sent).
    templates: PathBuf,
    /// The managing machine's state directory, whose project keys the
    /// builds here carry (crate::login::keys::for_service_host).
    keys_from: Option<PathBuf>,
}

impl RemoteMachines {
    pub fn new(server: Server, rt: tokio::runtime::Handle, templates: PathBuf) -> RemoteMachines {
        RemoteMachines { server, rt, agent: Mutex::new(None), incoming: Mutex::new(Vec::new()), sending: Mutex::new(None), templates, keys_from: None }
    }

    /// Builds here give the guests this state directory's project keys.
    pub fn with_keys_from(mut self, state_dir: PathBuf) -> RemoteMachines {
        self.keys_from = Some(state_dir);
        self
    }

    fn keys(&self, project: &str) -> Result<Option<super::proto::ProjectKeys>, MachineError> {
        let Some(d) = &self.keys_from else { return Ok(None) };
        crate::login::keys::for_service_host(d, project).map(Some).map_err(|e| MachineError::Failed(format!("cannot make the project's keys: {e}")))
    }

    /// The agent, attached on first use and kept.
    pub fn agent(&self) -> Result<Arc<Agent>, MachineError> {
        let mut a = self.agent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = &*a {
            return Ok(a.clone());
        }
        let got = Arc::new(self.rt.block_on(attach(&self.server)).map_err(MachineError::from)?);
        *a = Some(got.clone());
        Ok(got)
    }

    /// Uses an agent attached elsewhere (all hosts at once, before a build).
    pub fn adopt(&self, agent: Arc<Agent>) {
        *self.agent.lock().unwrap_or_else(|p| p.into_inner()) = Some(agent);
    }

    /// Whether an agent is attached already.
    pub fn attached(&self) -> bool {
        self.agent.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Uses an agent attached elsewhere, unless one was attached here
    /// meanwhile (that one may be in use).
    pub fn offer(&self, agent: Arc<Agent>) {
        self.agent.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(agent);
    }

    /// Sends a request; the agent's progress events go to `t`.
    fn call<T: serde::de::DeserializeOwned>(&self, req: &Request, t: &dyn Telemetry) -> Result<T, MachineError> {
        let agent = self.agent()?;
        let tagged = Tagged { place: self.server.name.clone(), inner: t };
        let progress = |line: &str| match serde_json::from_str::<Event>(line) {
            Ok(e) => tagged.event(&e),
            Err(_) => tagged.note(None, line),
        };
        self.rt.block_on(agent.call_as::<T>(req, &progress)).map_err(MachineError::from)
    }

    /// What a host's console printed from `offset` on.
    pub fn console(&self, project: &str, host: &str, offset: u64) -> Result<super::proto::ConsoleChunk, MachineError> {
        self.call(&Request::Console { project: project.to_string(), host: host.to_string(), offset }, &crate::progress::Quiet)
    }

    fn names(hosts: &[&Host]) -> Vec<String> {
        hosts.iter().map(|h| h.name.clone()).collect()
    }

    fn each_failed(hosts: &[&Host], e: &MachineError) -> Vec<Outcome> {
        hosts.iter().map(|h| Outcome::failed(&h.name, e)).collect()
    }

    /// A share as the agent keeps it: on its own machine, each template
    /// named by the exact entry that was sent (looked up once).
    fn for_agent(&self, plan: &Plan) -> Plan {
        let mut share = plan.clone();
        let mut found: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
        for h in &mut share.hosts {
            h.service_host = None;
            let e = found.entry(h.template.clone()).or_insert_with(|| crate::backend::template::find(&self.templates, &h.template).ok().map(|t| t.name));
            if let Some(e) = e {
                h.template = e.clone();
            }
        }
        share
    }

    fn one(outcomes: Vec<Outcome>) -> Result<Done, MachineError> {
        match outcomes.into_iter().next() {
            Some(o) if o.status == Status::Failed => Err(if o.retry { MachineError::Transient(o.message) } else { MachineError::Failed(o.message) }),
            Some(o) => Ok(Done { message: o.message, warning: o.status == Status::Warning }),
            None => Err(MachineError::Failed("the agent answered nothing".into())),
        }
    }
}

impl Backend for RemoteMachines {
    fn describe(&self) -> String {
        format!("service host {}", self.server.name)
    }
    fn power(&self) -> Result<&dyn Power, MachineError> {
        Ok(self)
    }
    fn provision(&self) -> Result<&dyn Provision, MachineError> {
        Ok(self)
    }
    fn migrate(&self) -> Result<&dyn crate::machine::Migrate, MachineError> {
        Ok(self)
    }
    fn relocate(&self) -> Result<&dyn crate::machine::Relocate, MachineError> {
        Ok(self)
    }

    fn build_all(&self, plan: &Plan, opts: BuildOptions, t: &dyn Telemetry) -> Vec<Outcome> {
        let hosts: Vec<&Host> = plan.hosts.iter().collect();
        let keys = match self.keys(&plan.project) {
            Ok(k) => k,
            Err(e) => return Self::each_failed(&hosts, &e),
        };
        let req = Request::Build { plan: self.for_agent(plan), file: String::new(), opts, keys };
        self.call::<Vec<Outcome>>(&req, t).unwrap_or_else(|e| Self::each_failed(&hosts, &e))
    }

    /// One request: the agent compares the new share with the one it
    /// recorded and applies the difference. Both sides of its comparison
    /// name templates by the exact entry sent (`for_agent`), and a host's
    /// class depends on that host alone, so it classes each host as the
    /// manager did.
    fn upgrade_all(&self, old: &Plan, new: &Plan, classes: &[(String, crate::upgrade::Class)], opts: &crate::machine::UpgradeOptions, t: &dyn Telemetry) -> Vec<Outcome> {
        let _ = old;
        let sent = self.keys(&new.project).map(|keys| Request::Upgrade { plan: self.for_agent(new), file: String::new(), opts: opts.clone(), keys });
        match sent.and_then(|req| self.call::<(serde_json::Value, Vec<Outcome>)>(&req, t)) {
            Ok((_, outcomes)) => outcomes,
            Err(e) => classes.iter().filter(|(_, c)| *c != crate::upgrade::Class::Unchanged).map(|(h, _)| Outcome::failed(h, &e)).collect(),
        }
    }

    fn start_all(&self, project: &str, hosts: &[&Host], t: &dyn Telemetry) -> Vec<Outcome> {
        let req = Request::Start { project: project.to_string(), hosts: Self::names(hosts) };
        self.call::<Vec<Outcome>>(&req, t).unwrap_or_else(|e| Self::each_failed(hosts, &e))
    }

    fn stop_all(&self, project: &str, hosts: &[&Host], mode: StopMode, t: &dyn Telemetry) -> Vec<Outcome> {
        let req = Request::Stop { project: project.to_string(), hosts: Self::names(hosts), mode };
        self.call::<Vec<Outcome>>(&req, t).unwrap_or_else(|e| Self::each_failed(hosts, &e))
    }

    fn states(&self, project: &str, hosts: &[&Host]) -> Vec<Result<PowerState, MachineError>> {
        let req = Request::Status { project: project.to_string(), hosts: vec![] };
        match self.call::<Vec<HostStatusWire>>(&req, &crate::progress::Quiet) {
            Ok(list) => {
                let known: std::collections::HashMap<String, String> = list.into_iter().map(|s| (s.host, s.state)).collect();
                hosts
                    .iter()
                    .map(|h| match known.get(&h.name) {
                        // Not in the agent's record: never built there.
                        None => Ok(PowerState::Absent),
                        Some(s) => PowerState::parse(s).ok_or_else(|| MachineError::Failed(format!("the agent reports `{}`", crate::term::escape(s)))),
                    })
                    .collect()
            }
            Err(e) => hosts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    fn remove_all(&self, project: &str, t: &dyn Telemetry) -> Vec<Outcome> {
        let req = Request::Remove { project: project.to_string() };
        self.call::<Vec<Outcome>>(&req, t).unwrap_or_else(|e| vec![Outcome::failed("(all)", &e)])
    }
}

impl Power for RemoteMachines {
    fn state(&self, m: &Machine) -> Result<PowerState, MachineError> {
        self.states(m.project, &[m.host]).into_iter().next().unwrap_or(Ok(PowerState::Absent))
    }
    fn start(&self, m: &Machine) -> Result<Done, MachineError> {
        Self::one(self.start_all(m.project, &[m.host], &crate::progress::Quiet))
    }
    fn stop(&self, m: &Machine, mode: StopMode) -> Result<Done, MachineError> {
        Self::one(self.stop_all(m.project, &[m.host], mode, &crate::progress::Quiet))
    }
}

impl Provision for RemoteMachines {
    fn check(&self, _: &Plan, m: &Machine) -> Result<Done, MachineError> {
        // The template goes from here; the rest is the service host's.
        let t = crate::backend::template::find(&self.templates, &m.host.template)?;
        Ok(Done::ok(format!("would build from {} on {} (sent there if it lacks it)", t.name, self.server.name)))
    }
    fn prepare(&self, _: &Plan, _: &dyn Telemetry) -> Result<(), MachineError> {
        self.agent().map(drop)
    }
    fn build(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let mut one = plan.clone();
        one.hosts = vec![m.host.clone()];
        Self::one(self.build_all(&one, BuildOptions::default(), &crate::progress::Quiet))
    }
    fn remove(&self, project: &str, host: &str) -> Result<Done, MachineError> {
        Err(MachineError::Refused(format!("{}: removing host {host} of {project} alone is not offered; remove the project", self.server.name)))
    }
    fn hosts_of(&self, project: &str) -> Result<Vec<String>, MachineError> {
        let req = Request::Status { project: project.to_string(), hosts: vec![] };
        let list: Vec<HostStatusWire> = self.call(&req, &crate::progress::Quiet)?;
        Ok(list.into_iter().map(|s| s.host).collect())
    }
    fn finish_remove(&self, _: &str) -> Vec<Outcome> {
        vec![]
    }
}

impl RemoteMachines {
    /// A libvirt connection to this host's daemon through the fabric's
    /// SSH (its socket forwarded here), and the forward to keep while the
    /// connection is used.
    fn libvirt_through_ssh(&self, connect: &str) -> Result<(super::tunnel::UnixForward, String), MachineError> {
        let sock = super::tunnel::libvirt_socket(connect).map_err(MachineError::from)?;
        let agent = self.agent()?;
        let fwd = self.rt.block_on(agent.conn.forward_unix(&sock)).map_err(MachineError::from)?;
        let uri = format!("qemu+unix:///system?socket={}", fwd.path.display());
        Ok((fwd, uri))
    }
}

/// The sender's side of a live move: where the machine's files are, its
/// libvirt reached through the fabric's SSH.
struct Sending {
    project: String,
    host: String,
    here: super::proto::Located,
    // Before its tunnel: fields drop in this order.
    src: crate::backend::libvirt::Libvirt,
    _fwd: super::tunnel::UnixForward,
}

impl RemoteMachines {
    fn open_sending(&self, m: &Machine) -> Result<Sending, MachineError> {
        let req = Request::Locate { project: m.project.to_string(), host: m.host.name.clone() };
        let here: super::proto::Located = self.call(&req, &crate::progress::Quiet)?;
        tracing::debug!(target: crate::runtime::MIGRATE_TIMING, host = %self.server.name, "sender: located");
        let (fwd, uri) = self.libvirt_through_ssh(&here.connect)?;
        let src = crate::backend::libvirt::Libvirt::open(&uri).map_err(MachineError::from)?;
        tracing::debug!(target: crate::runtime::MIGRATE_TIMING, host = %self.server.name, "sender: libvirt open through the tunnel");
        Ok(Sending { project: m.project.to_string(), host: m.host.name.clone(), here, src, _fwd: fwd })
    }
}

/// A move between service hosts, held from this machine: the receiver's
/// agent makes ready and takes the machine in, the sender's libvirt and
/// the receiver's are both reached through SSH tunnels, and libvirt
/// streams memory and disks between the two hosts directly (to the
/// receiver's fabric address only).
impl crate::machine::Migrate for RemoteMachines {
    fn prepare_incoming(&self, plan: &Plan, m: &Machine, address: &str) -> Result<crate::machine::Incoming, MachineError> {
        let req = Request::Incoming { plan: self.for_agent(plan), host: m.host.name.clone(), address: address.to_string() };
        let mut incoming: crate::machine::Incoming = self.call(&req, &crate::progress::Quiet)?;
        let (fwd, uri) = self.libvirt_through_ssh(&incoming.connect)?;
        incoming.connect = uri;
        self.incoming.lock().unwrap_or_else(|p| p.into_inner()).push(fwd);
        Ok(incoming)
    }

    fn send(&self, m: &Machine, to: &crate::machine::Incoming) -> Result<Done, MachineError> {
        let ahead = self.sending.lock().unwrap_or_else(|p| p.into_inner()).take().filter(|s| s.project == m.project && s.host == m.host.name);
        let s = match ahead {
            Some(s) => s,
            None => self.open_sending(m)?,
        };
        let name = crate::backend::domain::domain_name(m.project, &m.host.name);
        // Dropped after: the connection goes before its tunnel (`Sending`'s order).
        crate::backend::migrate::send_live(&s.src, &name, &s.here.dir, &s.here.templates, to)
    }

    fn ready_to_send(&self, m: &Machine) -> Result<(), MachineError> {
        let s = self.open_sending(m)?;
        *self.sending.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        Ok(())
    }

    fn finish_incoming(&self, plan: &Plan, m: &Machine, arrived: bool) -> Result<Done, MachineError> {
        let req = Request::Arrived { plan: self.for_agent(plan), host: m.host.name.clone(), arrived };
        let r = self.call::<Vec<Outcome>>(&req, &crate::progress::Quiet).and_then(Self::one);
        self.incoming.lock().unwrap_or_else(|p| p.into_inner()).clear();
        r
    }
}

/// A cold move's steps, each one request to the agent, which runs them on
/// its own libvirt (the files travel between the places directly, see
/// `super::carry`).
impl crate::machine::Relocate for RemoteMachines {
    fn pack(&self, m: &Machine, then: PowerState) -> Result<crate::machine::Parcel, MachineError> {
        self.call(&Request::Pack { project: m.project.to_string(), host: m.host.name.clone(), then }, &crate::progress::Quiet)
    }
    fn make_ready(&self, plan: &Plan, m: &Machine, parcel: &crate::machine::Parcel) -> Result<Done, MachineError> {
        self.call::<Vec<Outcome>>(&Request::Ready { plan: self.for_agent(plan), host: m.host.name.clone(), parcel: parcel.clone() }, &crate::progress::Quiet).and_then(Self::one)
    }
    fn unpack(&self, plan: &Plan, m: &Machine, parcel: &crate::machine::Parcel) -> Result<Done, MachineError> {
        self.call::<Vec<Outcome>>(&Request::Unpack { plan: self.for_agent(plan), host: m.host.name.clone(), parcel: parcel.clone() }, &crate::progress::Quiet).and_then(Self::one)
    }
    fn unpack_home(&self, m: &Machine, parcel: &crate::machine::Parcel) -> Result<Done, MachineError> {
        self.call::<Vec<Outcome>>(&Request::Home { project: m.project.to_string(), host: m.host.name.clone(), parcel: parcel.clone() }, &crate::progress::Quiet).and_then(Self::one)
    }
    fn discard(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let req = Request::Arrived { plan: self.for_agent(plan), host: m.host.name.clone(), arrived: false };
        self.call::<Vec<Outcome>>(&req, &crate::progress::Quiet).and_then(Self::one)
    }
}

/// The part of a `runtime::HostStatus` read back from an agent.
#[derive(serde::Deserialize)]
struct HostStatusWire {
    host: String,
    state: String,
}
