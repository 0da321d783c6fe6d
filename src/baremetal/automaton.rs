//! Kadeploy3's deployment automaton, as pure logic over [`NodeOps`]: no
//! I/O of its own, no clock of its own (time is what `NodeOps::now` says,
//! virtual in tests).
//!
//! Three macro-steps (deploy system, install, boot), each an ordered list
//! of variants with a timeout and a retry count. A node that fails is
//! tried again on the same variant while it has retries, then on the next
//! variant, then is KO with the reason. Every node runs its own way
//! through the steps on its own thread: a node that is done with a step
//! goes on at once, one slow node never holds the others. Reboots
//! escalate soft -> hard -> very hard, and every power action goes through
//! one window of at most `window` at a time, so the power infrastructure
//! is not flooded.

use super::{BootMode, BootProfile, NodeSpec, PowerError, PowerSpec, PowerUse, PowerVia, RebootLevel};
use serde::{Deserialize, Serialize};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A node as the automaton drives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub spec: NodeSpec,
}

/// Which system a node is expected to be running (what `wait_reachable`
/// probes for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// mln's deploy system (kernel + initramfs with the disk tools).
    Deploy,
    /// The deployed environment (from the disk, or diskless in RAM).
    Deployed,
}

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{what} did not finish within {}s", after.as_secs())]
    Timeout { what: String, after: Duration },
    #[error(transparent)]
    Power(#[from] PowerError),
    #[error("{0}")]
    Failed(String),
}

/// What the automaton does to one node. An implementation does the real
/// work (part of the backend) or fakes it (tests). Every method that can
/// wait is given the deadline (on the `now` clock) past which it must give
/// up with [`OpError::Timeout`].
pub trait NodeOps: Send + Sync {
    /// The node's clock: real time for a real node; a fake advances a
    /// virtual clock per node as its operations "take" time.
    fn now(&self, node: &Node) -> Duration;
    /// Its next network boot (the boot service's profile).
    fn set_profile(&self, node: &Node, profile: &BootProfile) -> Result<(), OpError>;
    /// One reboot at one level (soft: `reboot` over SSH; hard: IPMI reset
    /// or the `reset` command; very hard: power cycle or `cycle`), and
    /// which power control did it (a refused driver hands it down to the
    /// power-command level).
    fn reboot(&self, node: &Node, level: RebootLevel) -> Result<PowerVia, OpError>;
    /// Waits until the node answers, running `system`.
    fn wait_reachable(&self, node: &Node, system: System, deadline: Duration) -> Result<(), OpError>;
    /// From a running system, kexec into `into` (no firmware reboot).
    fn kexec(&self, node: &Node, into: System) -> Result<(), OpError>;
    /// Partition table and file system (as the environment says).
    fn partition_format(&self, node: &Node, deadline: Duration) -> Result<(), OpError>;
    /// The image, decompressed straight onto the partition. An
    /// implementation may join the nodes that reach this step together
    /// into one pipelined chain.
    fn write_image(&self, node: &Node, deadline: Duration) -> Result<(), OpError>;
    /// The plan's configuration written into the deployed system
    /// (hostname, addresses, users, keys, files, startup).
    fn configure(&self, node: &Node, deadline: Duration) -> Result<(), OpError>;
    /// Admin, then user post-install scripts.
    fn postinstall(&self, node: &Node, deadline: Duration) -> Result<(), OpError>;
    /// A node's deployment begins (its thread runs it): an install step
    /// that gathers nodes counts it as coming.
    fn starting(&self, _node: &Node) {}
    /// A node's deployment ended, deployed or KO: no one waits for it.
    fn finished(&self, _node: &Node) {}
    /// The `nomini` deploy system: the node's running deployed system is
    /// to do the install itself, no reboot. The default only waits for it;
    /// a real implementation also checks it can (its tools, a target
    /// that it is not running from).
    fn nomini(&self, node: &Node, deadline: Duration) -> Result<(), OpError> {
        self.wait_reachable(node, System::Deployed, deadline)
    }
    /// Asks the running system to power off (`poweroff` over SSH): the
    /// soft half of `mln stop`.
    fn shutdown(&self, node: &Node) -> Result<(), OpError> {
        let _ = node;
        Err(OpError::Failed("no soft shutdown for this node".into()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    DeploySystem,
    Install,
    Boot,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DeploySystem => "deploy_system",
            Step::Install => "install",
            Step::Boot => "boot",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Deploy system: boot profile to the deploy system, reboot, wait.
    Untrusted,
    /// Deploy system: kexec into it from the running system; boot: kexec
    /// into the deployed kernel from the deploy system.
    Kexec,
    /// Deploy system: the running system does the work (no reboot).
    Nomini,
    /// Install: partition, format, image, configuration, post-install.
    Chain,
    /// Boot: profile to the disk (or the diskless root), reboot, wait.
    Classical,
    /// Boot: profile to the disk (or the diskless root), power cycle.
    Hard,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Untrusted => "untrusted",
            Variant::Kexec => "kexec",
            Variant::Nomini => "nomini",
            Variant::Chain => "chain",
            Variant::Classical => "classical",
            Variant::Hard => "hard",
        }
    }
    fn fits(self, step: Step) -> bool {
        matches!(
            (step, self),
            (Step::DeploySystem, Variant::Untrusted | Variant::Kexec | Variant::Nomini)
                | (Step::Install, Variant::Chain)
                | (Step::Boot, Variant::Kexec | Variant::Classical | Variant::Hard)
        )
    }
}

/// One variant of a step: how long it may take, how often it is tried
/// again after failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConf {
    #[serde(rename = "type")]
    pub variant: Variant,
    /// Seconds.
    pub timeout: u64,
    #[serde(default)]
    pub retries: u32,
}

/// The automaton's configuration (the fabric file's `[baremetal.CLUSTER]`
/// tables; book: baremetal.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub deploy_system: Vec<VariantConf>,
    pub install: Vec<VariantConf>,
    pub boot: Vec<VariantConf>,
    /// Power actions (reboots, power on/off) in flight at once, over all
    /// nodes.
    pub window: usize,
    /// Nodes deployed at once (one thread each); the others wait for a
    /// free thread. Bounds a build of thousands of nodes.
    pub threads: usize,
    /// The table the install step makes on a whole disk (a cluster's
    /// hardware: `dos` by default, or `gpt`).
    pub partition_table: super::deploysys::PartitionTable,
    /// The power-command level of this cluster's nodes (a PDU, the site's
    /// script): used when a node's own driver refuses the credentials or
    /// does not answer. Templates with `{host}` and `{mac}`, as the
    /// `command` driver's. The site default: a node's own `power {
    /// fallback { } }` wins over it.
    pub power_command: Option<PowerCommand>,
}

/// Command templates for on, off, reset, status and optionally cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerCommand {
    pub on: String,
    pub off: String,
    pub reset: String,
    pub status: String,
    #[serde(default)]
    pub cycle: Option<String>,
}

impl PowerCommand {
    pub fn spec(&self) -> PowerSpec {
        PowerSpec::Command { on: self.on.clone(), off: self.off.clone(), reset: self.reset.clone(), status: self.status.clone(), cycle: self.cycle.clone() }
    }
}

/// Nodes deployed at once by default: more than a rack, less than what a
/// small machine's thread limit would notice.
pub const DEFAULT_THREADS: usize = 64;

/// Power actions at once by default (Kadeploy's window).
pub const DEFAULT_WINDOW: usize = 50;

impl Default for Config {
    /// After Kadeploy3's sample configuration: the deploy system from a
    /// reboot (200 s, 2 retries); the image (300 s, 2 retries); the boot
    /// by a classical reboot (200 s, 1 retry), then a power cycle (400 s,
    /// 1 retry).
    fn default() -> Config {
        let v = |variant, timeout, retries| VariantConf { variant, timeout, retries };
        Config {
            deploy_system: vec![v(Variant::Untrusted, 200, 2)],
            install: vec![v(Variant::Chain, 300, 2)],
            boot: vec![v(Variant::Classical, 200, 1), v(Variant::Hard, 400, 1)],
            window: DEFAULT_WINDOW,
            threads: DEFAULT_THREADS,
            partition_table: super::deploysys::PartitionTable::Dos,
            power_command: None,
        }
    }
}

/// The fabric file's `[baremetal.CLUSTER]` tables. A node's cluster is its
/// superclass: its steps are that table's, else `default`'s, else the
/// built-in ones. The window and the thread cap bound this machine's whole
/// deployment: they are `default`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clusters {
    pub tables: std::collections::BTreeMap<String, Config>,
}

impl Clusters {
    pub fn new(tables: impl IntoIterator<Item = (String, Config)>) -> Clusters {
        Clusters { tables: tables.into_iter().collect() }
    }
    /// One configuration for every node.
    pub fn single(c: Config) -> Clusters {
        Clusters::new([("default".to_string(), c)])
    }
    /// The `default` table (the whole deployment's window and threads).
    pub fn base(&self) -> Config {
        self.tables.get("default").cloned().unwrap_or_default()
    }
    /// The configuration of a node of this cluster (superclass).
    pub fn of(&self, cluster: Option<&str>) -> Config {
        cluster.and_then(|c| self.tables.get(c)).cloned().unwrap_or_else(|| self.base())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the {step} step has no variant")]
    Empty { step: &'static str },
    #[error("`{variant}` is not a variant of the {step} step")]
    Misplaced { step: &'static str, variant: &'static str },
    #[error("the {step} step's `{variant}` has timeout 0")]
    ZeroTimeout { step: &'static str, variant: &'static str },
    #[error("the power window must be at least 1")]
    ZeroWindow,
    #[error("`threads` must be at least 1")]
    ZeroThreads,
    #[error("power_command's `{which}`: {why}")]
    PowerCommand { which: &'static str, why: String },
}

impl Config {
    /// Every variant in its own step, with a timeout; a window of 1 or more.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (step, list) in self.steps() {
            if list.is_empty() {
                return Err(ConfigError::Empty { step: step.as_str() });
            }
            for v in list {
                if !v.variant.fits(step) {
                    return Err(ConfigError::Misplaced { step: step.as_str(), variant: v.variant.as_str() });
                }
                if v.timeout == 0 {
                    return Err(ConfigError::ZeroTimeout { step: step.as_str(), variant: v.variant.as_str() });
                }
            }
        }
        if self.window == 0 {
            return Err(ConfigError::ZeroWindow);
        }
        if self.threads == 0 {
            return Err(ConfigError::ZeroThreads);
        }
        if let Some(c) = &self.power_command {
            let all = [("on", Some(&c.on)), ("off", Some(&c.off)), ("reset", Some(&c.reset)), ("status", Some(&c.status)), ("cycle", c.cycle.as_ref())];
            for (which, t) in all {
                if let Some(t) = t {
                    super::power::command::argv(t, "h", "m").map_err(|why| ConfigError::PowerCommand { which, why })?;
                }
            }
        }
        Ok(())
    }
    fn steps(&self) -> [(Step, &[VariantConf]); 3] {
        [(Step::DeploySystem, &self.deploy_system), (Step::Install, &self.install), (Step::Boot, &self.boot)]
    }
}

/// One node's one macro-step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: Step,
    /// The variant that ended it (succeeded, or the last tried).
    pub variant: Variant,
    /// Failed attempts before the end, over all variants.
    pub retries: u32,
    pub duration: Duration,
    pub ok: bool,
    /// Each failed attempt's reason, in order.
    pub failures: Vec<String>,
    /// The last reboot of the step that was done (its level and driver),
    /// if the step rebooted the node.
    #[serde(default)]
    pub power: Option<PowerUse>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    pub steps: Vec<StepReport>,
    /// None: deployed. Some: KO, and why (the last failure of the step
    /// that gave up).
    pub ko: Option<String>,
    /// When the node was done (OK or KO), on its clock.
    pub finished: Duration,
}

/// At most `n` at a time.
struct Window {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Window {
    fn new(n: usize) -> Window {
        Window { free: Mutex::new(n.max(1)), cv: Condvar::new() }
    }
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            while *free == 0 {
                free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
            }
            *free -= 1;
        }
        // Given back even if `f` panics, so other nodes are not stuck.
        struct Give<'a>(&'a Window);
        impl Drop for Give<'_> {
            fn drop(&mut self) {
                *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                self.0.cv.notify_one();
            }
        }
        let _give = Give(self);
        f()
    }
}

/// The reboot levels a node's power control has, in escalation order.
/// A node's own power-command level (`fallback`) can do every level its
/// driver cannot.
pub fn reboot_levels(spec: &NodeSpec) -> Vec<RebootLevel> {
    if spec.fallback.is_some() {
        return vec![RebootLevel::Soft, RebootLevel::Hard, RebootLevel::VeryHard];
    }
    match &spec.power {
        PowerSpec::Ssh => vec![RebootLevel::Soft],
        PowerSpec::Ipmi { .. } => vec![RebootLevel::Soft, RebootLevel::Hard, RebootLevel::VeryHard],
        PowerSpec::Command { cycle, .. } => {
            let mut l = vec![RebootLevel::Soft, RebootLevel::Hard];
            if cycle.is_some() {
                l.push(RebootLevel::VeryHard);
            }
            l
        }
    }
}

pub struct Automaton<'a> {
    pub ops: &'a dyn NodeOps,
    pub config: &'a Config,
    window: Window,
}

impl<'a> Automaton<'a> {
    pub fn new(ops: &'a dyn NodeOps, config: &'a Config) -> Automaton<'a> {
        Automaton { ops, config, window: Window::new(config.window) }
    }

    /// Deploys every node with the automaton's configuration; the reports
    /// in the nodes' order.
    pub fn deploy(&self, nodes: &[Node]) -> Vec<NodeReport> {
        let with: Vec<(Node, &Config)> = nodes.iter().map(|n| (n.clone(), self.config)).collect();
        self.deploy_each(&with)
    }

    /// Deploys every node with its own (its cluster's) steps; the window
    /// and the thread cap are the automaton's. Each node on its own
    /// thread, at most `threads` at once: a node done goes on at once and
    /// a free thread takes the next node.
    pub fn deploy_each(&self, nodes: &[(Node, &Config)]) -> Vec<NodeReport> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let out: Vec<Mutex<Option<NodeReport>>> = nodes.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.config.threads.max(1).min(nodes.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((n, c)) = nodes.get(i) else { break };
                    self.ops.starting(n);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.node(n, c))).unwrap_or_else(|_| NodeReport {
                        node: n.name.clone(),
                        steps: vec![],
                        ko: Some("the deployment of this node panicked".into()),
                        finished: Duration::ZERO,
                    });
                    self.ops.finished(n);
                    *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                });
            }
        });
        out.into_iter()
            .zip(nodes)
            .map(|(r, (n, _))| {
                r.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(|| NodeReport { node: n.name.clone(), steps: vec![], ko: Some("not deployed".into()), finished: Duration::ZERO })
            })
            .collect()
    }

    /// One node through its steps: a diskless node only boots.
    fn node(&self, n: &Node, config: &Config) -> NodeReport {
        let steps: Vec<(Step, &[VariantConf])> = match n.spec.boot {
            BootMode::Disk => config.steps().to_vec(),
            BootMode::Diskless => vec![(Step::Boot, &config.boot)],
        };
        let mut report = NodeReport { node: n.name.clone(), steps: vec![], ko: None, finished: Duration::ZERO };
        for (step, variants) in steps {
            let r = self.step(n, step, variants);
            let failed = (!r.ok).then(|| r.failures.last().cloned().unwrap_or_else(|| "no variant to try".into()));
            report.steps.push(r);
            if let Some(why) = failed {
                report.ko = Some(format!("{}: {why}", step.as_str()));
                break;
            }
        }
        report.finished = self.ops.now(n);
        report
    }

    fn step(&self, n: &Node, step: Step, variants: &[VariantConf]) -> StepReport {
        let start = self.ops.now(n);
        let mut failures = Vec::new();
        let mut power = None;
        let mut last = variants.first().map(|v| v.variant).unwrap_or(Variant::Chain);
        for v in variants {
            last = v.variant;
            for _attempt in 0..=v.retries {
                let t0 = self.ops.now(n);
                let deadline = t0 + Duration::from_secs(v.timeout);
                let r = self.variant(n, step, v.variant, deadline, &mut power).and_then(|()| {
                    // An operation that ignored its deadline still failed it.
                    let t = self.ops.now(n);
                    if t > deadline {
                        Err(OpError::Timeout { what: format!("{} ({})", step.as_str(), v.variant.as_str()), after: Duration::from_secs(v.timeout) })
                    } else {
                        Ok(())
                    }
                });
                match r {
                    Ok(()) => {
                        let retries = failures.len() as u32;
                        return StepReport { step, variant: v.variant, retries, duration: self.ops.now(n) - start, ok: true, failures, power };
                    }
                    Err(e) => failures.push(format!("{}: {e}", v.variant.as_str())),
                }
            }
        }
        let retries = failures.len().saturating_sub(1) as u32;
        StepReport { step, variant: last, retries, duration: self.ops.now(n) - start, ok: false, failures, power }
    }

    /// One attempt; `power` is set to each reboot it does.
    fn variant(&self, n: &Node, step: Step, v: Variant, deadline: Duration, power: &mut Option<PowerUse>) -> Result<(), OpError> {
        let ops = self.ops;
        let deployed = || match n.spec.boot {
            BootMode::Disk => BootProfile::Disk,
            BootMode::Diskless => BootProfile::Diskless { environment: n.spec.environment.clone() },
        };
        match (step, v) {
            (Step::DeploySystem, Variant::Untrusted) => {
                ops.set_profile(n, &BootProfile::Deploy)?;
                *power = Some(self.reboot(n, &reboot_levels(&n.spec))?);
                ops.wait_reachable(n, System::Deploy, deadline)
            }
            (Step::DeploySystem, Variant::Kexec) => {
                ops.set_profile(n, &BootProfile::Deploy)?;
                ops.kexec(n, System::Deploy)?;
                ops.wait_reachable(n, System::Deploy, deadline)
            }
            (Step::DeploySystem, Variant::Nomini) => ops.nomini(n, deadline),
            (Step::Install, Variant::Chain) => {
                ops.partition_format(n, deadline)?;
                ops.write_image(n, deadline)?;
                ops.configure(n, deadline)?;
                ops.postinstall(n, deadline)
            }
            (Step::Boot, Variant::Kexec) => {
                ops.set_profile(n, &deployed())?;
                ops.kexec(n, System::Deployed)?;
                ops.wait_reachable(n, System::Deployed, deadline)
            }
            (Step::Boot, Variant::Classical) => {
                ops.set_profile(n, &deployed())?;
                *power = Some(self.reboot(n, &reboot_levels(&n.spec))?);
                ops.wait_reachable(n, System::Deployed, deadline)
            }
            (Step::Boot, Variant::Hard) => {
                ops.set_profile(n, &deployed())?;
                let levels: Vec<RebootLevel> = reboot_levels(&n.spec).into_iter().filter(|l| *l >= RebootLevel::Hard).collect();
                *power = Some(self.reboot(n, &levels)?);
                ops.wait_reachable(n, System::Deployed, deadline)
            }
            (step, v) => Err(OpError::Failed(format!("`{}` is not a variant of the {} step", v.as_str(), step.as_str()))),
        }
    }

    /// Each level in turn until one is accepted, each in the window; the
    /// one that was.
    fn reboot(&self, n: &Node, levels: &[RebootLevel]) -> Result<PowerUse, OpError> {
        let mut why = Vec::new();
        for &level in levels {
            match self.window.run(|| self.ops.reboot(n, level)) {
                Ok(via) => return Ok(PowerUse { level, via }),
                Err(e) => why.push(format!("{level:?}: {e}")),
            }
        }
        if why.is_empty() {
            return Err(OpError::Failed("its power control cannot reboot it at these levels".into()));
        }
        Err(OpError::Failed(format!("no reboot worked ({})", why.join("; "))))
    }

    /// A power action outside a deployment (start, stop), in the window.
    pub fn power<T>(&self, f: impl FnOnce() -> Result<T, PowerError>) -> Result<T, PowerError> {
        self.window.run(f)
    }
}

#[cfg(test)]
#[path = "automaton_tests.rs"]
mod tests;
