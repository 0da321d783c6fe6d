//! Bare-metal nodes as a `machine::Backend`: power (state, start, stop)
//! and provisioning (a build is a deployment by the automaton; remove
//! forgets the boot profile and lease and leaves the disk). No snapshot,
//! migration or relocation: a physical node has no saved memory image to
//! move. The power driver, the boot service and the per-node operations
//! are injected (part of the real set-up, or fakes in tests).

use super::automaton::{Automaton, Clusters, Node, NodeOps, NodeReport};
use super::stats::PowerOp;
use super::{env, BootMode, BootNode, BootProfile, NetBoot, NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerVia, RebootLevel};
use crate::machine::{Backend, BuildOptions, Done, Machine, MachineError, Outcome, Power, PowerState, Provision, StopMode};
use crate::plan::{Host, HostKind, Plan};
use crate::progress::Telemetry;
use crate::state::State;

pub struct BareMetalMachines<'a> {
    pub state: &'a State,
    pub power: &'a dyn PowerDriver,
    pub netboot: &'a dyn NetBoot,
    pub ops: &'a dyn NodeOps,
    /// Each node's steps are its cluster's (superclass's).
    pub clusters: Clusters,
}

/// How long a node asked to power off is given before it is powered off
/// (`mln stop` without `--wait`).
pub const DEFAULT_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn power_error(e: PowerError) -> MachineError {
    if e.retryable() {
        MachineError::Transient(e.to_string())
    } else {
        MachineError::Failed(e.to_string())
    }
}

fn spec(h: &Host) -> Result<&NodeSpec, MachineError> {
    h.baremetal.as_deref().ok_or_else(|| MachineError::Refused(format!("{} is not a complete bare-metal node in the plan", h.name)))
}

/// The node as the boot service knows it: its MAC and its first address.
pub fn boot_node(project: &str, h: &Host, spec: &NodeSpec) -> BootNode {
    let address = h.interfaces.first().and_then(|i| i.address.clone()).unwrap_or_default();
    BootNode { project: project.to_string(), host: h.name.clone(), mac: spec.mac.clone(), address }
}

/// What a node boots once deployed.
pub fn deployed_profile(spec: &NodeSpec) -> BootProfile {
    match spec.boot {
        BootMode::Disk => BootProfile::Disk,
        BootMode::Diskless => BootProfile::Diskless { environment: spec.environment.clone() },
    }
}

fn summary(r: &NodeReport, env: &str, escalated: Option<String>) -> Result<Done, MachineError> {
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|s| {
            // Why the attempts before the one that ended it failed (a
            // fallback to the next variant is said, not only counted).
            let why = if s.ok && !s.failures.is_empty() { format!(" after {}", s.failures.join(" / ")) } else { String::new() };
            let retries = if s.retries > 0 { format!(", {} retr{}{why}", s.retries, if s.retries == 1 { "y" } else { "ies" }) } else { String::new() };
            format!("{} {} {:.0} s{retries}", s.step.as_str(), s.variant.as_str(), s.duration.as_secs_f64())
        })
        .collect();
    match &r.ko {
        None => {
            let power = escalated.map(|how| format!("; power through {how}")).unwrap_or_default();
            Ok(Done::ok(format!("deployed {env} ({}){power}", steps.join("; "))))
        }
        Some(why) => Err(MachineError::Failed(format!("KO: {why}"))),
    }
}

impl BareMetalMachines<'_> {
    /// A power action of `start` or `stop` through the node's power
    /// control (in the automaton's window), recorded for `mln stats`;
    /// what the outcome adds: the power-command level, when its own
    /// driver handed the action down to it, and a record that failed.
    fn power_op(&self, m: &Machine, s: &NodeSpec, op: PowerOp, action: PowerAction) -> Result<String, MachineError> {
        let t = std::time::Instant::now();
        let via = Automaton::new(self.ops, &self.clusters.base()).power(|| self.power.act_via(&m.host.name, s, action)).map_err(power_error)?;
        let mut said = self.record_power_op(m, op, action, RebootLevel::Hard, via, t.elapsed());
        if matches!(via, PowerVia::Fallback | PowerVia::ClusterCommand) {
            if let Some(how) = self.power.escalated(&m.host.name) {
                said = format!("; power through {how}{said}");
            }
        }
        Ok(said)
    }

    /// Records a power operation; says so when it could not.
    fn record_power_op(&self, m: &Machine, op: PowerOp, action: PowerAction, level: RebootLevel, via: PowerVia, took: std::time::Duration) -> String {
        let r = super::stats::power_op(m.project, &m.host.name, op, action, level, via, took);
        match self.state.record_steps(&[r]) {
            Ok(()) => String::new(),
            Err(e) => format!(" (not recorded in its statistics: {e})"),
        }
    }

    /// Deploys these hosts at once; one outcome each. Each environment is
    /// checked against its recorded checksums first; a node whose
    /// environment fails is refused, the others go on.
    pub fn deploy(&self, plan: &Plan, hosts: &[&Host]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        let mut labels = std::collections::HashMap::new();
        for h in hosts {
            let ready = spec(h).and_then(|s| {
                let e = env::get(self.state, &s.environment).map_err(|e| MachineError::Refused(e.to_string()))?;
                env::verify(self.state, &e).map_err(|e| MachineError::Refused(e.to_string()))?;
                Ok((s.clone(), e.label()))
            });
            match ready {
                Ok((s, label)) => {
                    labels.insert(h.name.clone(), label);
                    nodes.push(Node { name: h.name.clone(), spec: s });
                    configs.push(self.clusters.of(h.superclass.as_deref()));
                }
                Err(e) => outcomes.push(Outcome::failed(&h.name, &e)),
            }
        }
        if nodes.is_empty() {
            return outcomes;
        }
        let base = self.clusters.base();
        let with: Vec<(Node, &super::automaton::Config)> = nodes.into_iter().zip(configs.iter()).collect();
        let reports = Automaton::new(self.ops, &base).deploy_each(&with);
        let deployment = format!("{}-{}", plan.project, std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        // The record is for `mln stats`; failing to write it does not undo
        // the deployment, it is said in each outcome.
        let recorded = self.state.record_steps(&super::stats::records(&plan.project, &deployment, &reports));
        for r in &reports {
            let mut o = Outcome::of(&r.node, summary(r, labels.get(&r.node).map(String::as_str).unwrap_or("?"), self.power.escalated(&r.node)));
            if let Err(e) = &recorded {
                o.message += &format!(" (its statistics were not recorded: {e})");
            }
            outcomes.push(o);
        }
        outcomes
    }
}

impl Provision for BareMetalMachines<'_> {
    fn check(&self, _plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let s = spec(m.host)?;
        let e = env::get(self.state, &s.environment).map_err(|e| MachineError::Refused(e.to_string()))?;
        Ok(Done::ok(format!("would deploy {} to {}", e.label(), s.disk.as_deref().unwrap_or("RAM (diskless)"))))
    }
    fn prepare(&self, _plan: &Plan, _t: &dyn Telemetry) -> Result<(), MachineError> {
        Ok(())
    }
    fn build(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let o = self.deploy(plan, &[m.host]).pop().expect("one outcome per host");
        if o.ok() {
            Ok(Done::ok(o.message))
        } else {
            Err(MachineError::Failed(o.message))
        }
    }
    fn remove(&self, project: &str, host: &str) -> Result<Done, MachineError> {
        self.netboot.forget(project, host).map_err(|e| MachineError::Failed(e.to_string()))?;
        Ok(Done::ok("boot profile and lease forgotten; the node's disk is left as it is (mln does not erase a physical disk)"))
    }
    fn hosts_of(&self, project: &str) -> Result<Vec<String>, MachineError> {
        let Some(rec) = self.state.project(project)? else { return Ok(vec![]) };
        Ok(rec.plan.hosts.iter().filter(|h| h.kind == HostKind::Baremetal).map(|h| h.name.clone()).collect())
    }
    fn finish_remove(&self, _project: &str) -> Vec<Outcome> {
        match self.netboot.idle() {
            Ok(true) => vec![Outcome::of("(network boot)", Ok(Done::ok("no node left to serve: dnsmasq stopped")))],
            Ok(false) => vec![],
            Err(e) => vec![Outcome::failed("(network boot)", &MachineError::Failed(e.to_string()))],
        }
    }
}

impl Power for BareMetalMachines<'_> {
    fn state(&self, m: &Machine) -> Result<PowerState, MachineError> {
        let s = spec(m.host)?;
        match self.power.status(&m.host.name, s).map_err(power_error)? {
            PowerReading::On => Ok(PowerState::Running),
            PowerReading::Off => Ok(PowerState::ShutOff),
        }
    }
    /// The deployed system next (disk or diskless), then power on.
    fn start(&self, m: &Machine) -> Result<Done, MachineError> {
        let s = spec(m.host)?;
        self.netboot.set_profile(&boot_node(m.project, m.host, s), &deployed_profile(s)).map_err(|e| MachineError::Failed(e.to_string()))?;
        if self.power.status(&m.host.name, s).map_err(power_error)? == PowerReading::On {
            return Ok(Done::ok("already on"));
        }
        // A deployment told the BMC to boot from the network (some BMCs
        // keep that); a deployed disk boots by itself. Best effort: the
        // boot profile says the local disk as well.
        if s.boot == BootMode::Disk {
            self.power.boot_disk_next(&m.host.name, s);
        }
        let said = self.power_op(m, s, PowerOp::Start, PowerAction::On)?;
        Ok(Done::ok(format!("powered on{said}")))
    }
    /// Graceful: the system powers itself off; if it cannot, power off.
    fn stop(&self, m: &Machine, mode: StopMode) -> Result<Done, MachineError> {
        let s = spec(m.host)?;
        let node = Node { name: m.host.name.clone(), spec: s.clone() };
        let off = || self.power_op(m, s, PowerOp::Stop, PowerAction::Off);
        match mode {
            StopMode::Save => Err(MachineError::unsupported(crate::machine::Capability::Snapshot, self.describe())),
            StopMode::Hard => off().map(|said| Done::ok(format!("powered off{said}"))),
            // Soft (the system asked to power off, with the project's
            // key), then hard through the power driver after the wait.
            StopMode::Graceful { wait } => match self.ops.shutdown(&node) {
                Ok(()) => {
                    let started = std::time::Instant::now();
                    let limit = wait.unwrap_or(DEFAULT_STOP_WAIT);
                    let until = std::time::Instant::now() + limit;
                    loop {
                        if matches!(self.power.status(&m.host.name, s), Ok(PowerReading::Off)) {
                            let said = self.record_power_op(m, PowerOp::Stop, PowerAction::Off, RebootLevel::Soft, PowerVia::Ssh, started.elapsed());
                            return Ok(Done::ok(format!("shut down{said}")));
                        }
                        if wait.is_some() && std::time::Instant::now() >= until {
                            return off().map(|said| Done::warning(format!("did not power off within {} s; powered off{said}", limit.as_secs())));
                        }
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
                Err(e) => off().map(|said| Done::warning(format!("did not shut down ({e}); powered off{said}"))),
            },
        }
    }
}

impl Backend for BareMetalMachines<'_> {
    fn describe(&self) -> String {
        "bare metal".into()
    }
    fn power(&self) -> Result<&dyn Power, MachineError> {
        Ok(self)
    }
    fn provision(&self) -> Result<&dyn Provision, MachineError> {
        Ok(self)
    }
    /// Every node at once through the automaton (not one at a time).
    fn build_all(&self, plan: &Plan, _opts: BuildOptions, _t: &dyn Telemetry) -> Vec<Outcome> {
        let hosts: Vec<&Host> = plan.hosts.iter().collect();
        self.deploy(plan, &hosts)
    }
}
