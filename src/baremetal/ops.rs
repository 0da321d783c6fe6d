//! The real bare-metal set-up: the automaton's [`NodeOps`] done with the
//! deploy system ([`DeployNode`], over SSH), the power drivers
//! ([`Power`]) and the network-boot service (dnsmasq run by mln, or a PXE
//! directory), all from the fabric file's `[netboot]` table. [`Site`]
//! owns them; [`Site::machines`] is the `machine::Backend` the CLI hands
//! to `LocalPlaces::with_baremetal`.
//!
//! Reachability: the deploy system is reached by SSH with the host key
//! mln gave it; a deployed system is "up" when its kernel answers a TCP
//! probe (a connection to port 22 accepted or refused: either is a
//! running network stack; no `ping` needed) and it is not the deploy
//! system any more (an environment need not run an SSH server
//! mln may enter: the test guest runs none).

use super::automaton::{Clusters, Node, NodeOps, OpError, System};
use super::bootnet::BootService;
use super::backend::{boot_node, BareMetalMachines};
use super::deploysys::{self, DeployError, DeployNode};
use super::env::{self, Environment, ImageKind};
use super::netboot::{check::Subnet, DisklessFiles};
use super::power::{BootDevice, Power};
use super::{BootProfile, EnvRef, NetBoot, NodeSpec, PowerAction, PowerDriver, PowerReading, PowerSpec, PowerVia, RebootLevel};
use crate::fabric::config::NetbootConfig;
use crate::plan::{HostKind, Plan};
use crate::state::State;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("bare-metal nodes need a [netboot] table in the fabric file (interface, subnet, server; book: Bare metal)")]
    NoNetboot,
    #[error("[netboot]: {0}")]
    Netboot(String),
    #[error("the deploy system: {0}")]
    Deploy(#[from] DeployError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where the image goes on the node and what is mounted as the deployed
/// root: a tar image into a fresh file system (on the named partition, or
/// the one partition of a new table), a dd image onto the named partition
/// or the whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Partition (None: a new table) and format, then extract.
    Tar { disk: String, partition: Option<u32> },
    /// Written raw to `device`, which is then the root.
    Raw { device: String },
}

pub fn target(spec: &NodeSpec, kind: ImageKind) -> Result<Target, OpError> {
    let disk = spec.disk.clone().ok_or_else(|| OpError::Failed("the node has no `disk` to deploy to".into()))?;
    Ok(match kind {
        ImageKind::Tar => Target::Tar { disk, partition: spec.partition },
        ImageKind::Dd => Target::Raw { device: spec.partition.map(|n| deploysys::partition_device(&disk, n)).unwrap_or(disk) },
    })
}

/// Under `nomini` the running system writes the image itself: only onto
/// a partition it names (a new table over the disk it runs from is
/// refused), whose device is returned.
pub fn nomini_device(spec: &NodeSpec) -> Result<String, OpError> {
    let disk = spec.disk.clone().ok_or_else(|| OpError::Failed("the node has no `disk` to deploy to".into()))?;
    match spec.partition {
        Some(n) => Ok(deploysys::partition_device(&disk, n)),
        None => Err(OpError::Failed(format!(
            "nomini writes from the running system, which may run from {disk}: name a `partition` it does not use (a new partition table over the whole disk is refused)"
        ))),
    }
}

/// The running system's check before a `nomini` install: the tools the
/// install runs are there, and the target is neither mounted nor swap
/// (it would be the system's own). Exits 1 with the reason on stderr.
pub fn nomini_check(device: &str, compression: env::Compression, tar: bool, bootloader: bool) -> String {
    let filter = match compression {
        env::Compression::None => "cat",
        env::Compression::Gzip => "gzip",
        env::Compression::Xz => "xz",
        env::Compression::Zstd => "zstd",
    };
    let mut tools = vec!["nc", "sha256sum", "mkfifo", filter];
    tools.extend(if tar { ["mkfs.ext4", "tar"].as_slice() } else { ["dd"].as_slice() });
    if bootloader {
        tools.extend(["extlinux", "sfdisk"]);
    }
    let d = crate::fabric::ssh::quote(device);
    let mut s = format!("missing=''; for t in {}; do command -v \"$t\" >/dev/null 2>&1 || missing=\"$missing $t\"; done; ", tools.join(" "));
    if bootloader {
        for f in [deploysys::MBR, deploysys::GPTMBR] {
            s += &format!("[ -f {f} ] || missing=\"$missing {f}\"; ");
        }
    }
    s += &format!(
        "[ -z \"$missing\" ] || {{ echo \"the running system lacks:$missing\" >&2; exit 1; }}; \
         [ -b {d} ] || {{ echo {d}' is not a block device there' >&2; exit 1; }}; \
         if grep -q '^'{d}' ' /proc/mounts /proc/swaps; then echo {d}' is in use by the running system (mounted or swap)' >&2; exit 1; fi"
    );
    s
}

/// What a power reboot does to a node in this power state: a node that
/// is off is powered on (a reset or cycle of an off machine is refused by
/// most BMCs); a running one is reset (hard) or cycled (very hard).
pub fn power_action(level: RebootLevel, now: PowerReading) -> Option<PowerAction> {
    match (level, now) {
        (RebootLevel::Soft, _) => None,
        (_, PowerReading::Off) => Some(PowerAction::On),
        (RebootLevel::Hard, PowerReading::On) => Some(PowerAction::Reset),
        (RebootLevel::VeryHard, PowerReading::On) => Some(PowerAction::Cycle),
    }
}

/// The deployed kernel's command line: the environment's parameters and
/// the node's name and address, as the network-booted profiles get them.
pub fn deployed_cmdline(env: &Environment, host: &str, address: &str, prefix: u8) -> String {
    let mut c = env.kernel_params.trim().to_string();
    if !c.is_empty() {
        c.push(' ');
    }
    c + &format!("mln.host={host} mln.address={address}/{prefix}")
}

/// The disk's bootloader configuration: no prompt, the serial console as
/// well as the screen (where the bootloader's banner, `SYSLINUX 6...`,
/// shows a boot from the disk; a `SAY` line reaches the screen only).
/// The command line is the node's own (no newline can reach it: names
/// and addresses are checked by the plan).
pub fn extlinux_conf(label: &str, cmdline: &str) -> String {
    let one = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "# Written by mln: boots the deployed system from this disk.\nSERIAL 0 115200\nSAY mln: {} from its disk\nDEFAULT mln\nPROMPT 0\nTIMEOUT 0\nLABEL mln\n  KERNEL {DISK_KERNEL}\n  INITRD {DISK_INITRD}\n  APPEND {}\n",
        one(label),
        one(cmdline)
    )
}

/// Where the disk's bootloader finds the kernel and initrd (the same
/// files as a kexec boot uses).
const DISK_KERNEL: &str = KEXEC_KERNEL;
const DISK_INITRD: &str = KEXEC_INITRD;

/// How often a node awaited is checked for being off.
const OFF_CHECK: Duration = Duration::from_secs(15);

/// Where a kexec'd kernel and initrd are put inside the deployed root.
const KEXEC_KERNEL: &str = "/boot/mln-vmlinuz";
const KEXEC_INITRD: &str = "/boot/mln-initrd";

pub struct Site<'a> {
    pub state: &'a State,
    pub power: Power,
    /// Each node's steps are its cluster's.
    pub clusters: Clusters,
    /// The boot service, set up (deploy system built, dnsmasq started) the
    /// first time a boot profile is set: `status` and the other commands
    /// that only read start nothing and build nothing.
    boot: BootService,
    plan: Option<Plan>,
    prefix: u8,
    rt: tokio::runtime::Runtime,
    start: Instant,
    /// Per node, the device its root was written to (install's steps
    /// share it).
    roots: Mutex<HashMap<String, String>>,
    /// The install step's rendez-vous, keyed by environment: the nodes of
    /// a deployment that write the same image share one chain
    /// (`baremetal::chain`).
    gather: super::chain::Gather<String, (Node, String)>,
    known_hosts: Mutex<()>,
    /// The nodes whose install runs in their own running system (the
    /// `nomini` variant) rather than in the deploy system.
    nomini: Mutex<HashSet<String>>,
    /// The nodes whose new root already holds the environment's kernel
    /// and initrd where a kexec boot reads them (written with the
    /// bootloader): the boot step does not send them twice.
    boot_files_written: Mutex<HashSet<String>>,
}

/// True when the plan (or the record's) holds a bare-metal host.
pub fn wanted(plan: Option<&Plan>) -> bool {
    plan.is_some_and(|p| p.hosts.iter().any(|h| h.kind == HostKind::Baremetal))
}

impl<'a> Site<'a> {
    /// The fabric file's `[netboot]` checked (and the boot network: see
    /// [`super::bootnet`]); nothing is built or started here.
    pub fn open(state: &'a State, netboot: Option<&NetbootConfig>, clusters: Clusters, plan: Option<Plan>) -> Result<Site<'a>, SiteError> {
        let nb = netboot.ok_or(SiteError::NoNetboot)?;
        let subnet = Subnet::parse(&nb.subnet).map_err(|e| SiteError::Netboot(e.to_string()))?;
        let boot = BootService::new(state, nb, plan.as_ref())?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(SiteError::Runtime)?;
        // Each node's site power-command level: its cluster's templates (a
        // node's own `power { fallback }` wins: `Power::escalate`).
        let mut power = Power::default();
        for h in plan.iter().flat_map(|p| p.hosts.iter()).filter(|h| h.kind == HostKind::Baremetal) {
            if let Some(c) = clusters.of(h.superclass.as_deref()).power_command {
                power.fallback.insert(h.name.clone(), c.spec());
            }
        }
        Ok(Site { state, power, clusters, boot, plan, prefix: subnet.prefix, rt, start: Instant::now(), roots: Mutex::new(HashMap::new()), gather: super::chain::Gather::new(), known_hosts: Mutex::new(()), nomini: Mutex::new(HashSet::new()), boot_files_written: Mutex::new(HashSet::new()) })
    }

    pub fn machines(&self) -> BareMetalMachines<'_> {
        BareMetalMachines { state: self.state, power: &self.power, netboot: &self.boot, ops: self, clusters: self.clusters.clone() }
    }

    fn host(&self, node: &Node) -> Result<&crate::plan::Host, OpError> {
        self.plan.as_ref().and_then(|p| p.hosts.iter().find(|h| h.name == node.name)).ok_or_else(|| OpError::Failed(format!("{} is not in the plan", node.name)))
    }

    fn address(&self, node: &Node) -> Result<String, OpError> {
        let a = self.host(node)?.interfaces.first().and_then(|i| i.address.clone());
        a.ok_or_else(|| OpError::Failed(format!("{} has no address on its first interface: the boot service leases it", node.name)))
    }

    fn deploy_node(&self, node: &Node) -> Result<DeployNode, OpError> {
        // `server` rewrites the deploy system's known_hosts when a node's
        // line is missing: one node at a time, or two nodes' rewrites race
        // and one line is lost (its node then fails on an unknown key).
        let server = {
            let _one = self.known_hosts.lock().unwrap_or_else(|p| p.into_inner());
            self.boot.deploy().map_err(OpError::Failed)?.server(&node.name, &self.address(node)?).map_err(deploy_error)?
        };
        Ok(DeployNode { name: node.name.clone(), server, rt: self.rt.handle().clone() })
    }

    /// The node's running deployed system, as root: with the project's
    /// login key (which the deployment put in root's `authorized_keys`,
    /// as guests get it) or mln's own deploy key (put there beside it: a
    /// project replaced with `build -r` has new keys, and the site must
    /// still be able to kexec or reboot the nodes it deployed, as
    /// Kadeploy's server can). Its host key is not known beforehand: it is
    /// recorded the first time (`STATE/baremetal/deployed_known_hosts`,
    /// forgotten when the node is deployed again) and must match after.
    fn deployed_node(&self, node: &Node) -> Result<DeployNode, OpError> {
        let plan = self.plan.as_ref().ok_or_else(|| OpError::Failed("no plan".into()))?;
        let mut identity = vec![crate::login::keys::private_path(self.state, &plan.project).map_err(|e| OpError::Failed(e.to_string()))?];
        if let Ok(ds) = self.boot.deploy_if_built() {
            identity.push(ds.client_key());
        }
        if !identity.iter().any(|k| k.exists()) {
            return Err(OpError::Failed("neither the project nor mln has a key to enter the running system with".into()));
        }
        let mut s = crate::fabric::Fabric::default().server(&node.name);
        s.address = self.address(node)?;
        s.port = 22;
        s.user = "root".into();
        s.identity = identity;
        s.known_hosts = self.deployed_known_hosts();
        s.accept_new_host_keys = true;
        // A deployed system's SSH server may be slow to do its key
        // exchange (the rig's emulated nodes under load took over 10 s).
        s.connect_timeout = 30;
        Ok(DeployNode { name: node.name.clone(), server: s, rt: self.rt.handle().clone() })
    }

    fn deployed_known_hosts(&self) -> PathBuf {
        self.state.dir().join("baremetal/deployed_known_hosts")
    }

    /// A node deployed again makes a new system with a new host key: the
    /// old one's line goes.
    fn forget_deployed_host_key(&self, node: &Node) -> Result<(), OpError> {
        let address = self.address(node)?;
        let _one = self.known_hosts.lock().unwrap_or_else(|p| p.into_inner());
        let kh = self.deployed_known_hosts();
        let Ok(text) = std::fs::read_to_string(&kh) else { return Ok(()) };
        let kept: String = text.lines().filter(|l| l.split_whitespace().next() != Some(address.as_str())).map(|l| format!("{l}\n")).collect();
        if kept != text {
            std::fs::write(&kh, kept).map_err(|e| OpError::Failed(format!("cannot write {}: {e}", kh.display())))?;
        }
        Ok(())
    }

    /// Where the install step's commands run: the deploy system, or under
    /// `nomini` the node's own running system.
    fn worker(&self, node: &Node) -> Result<DeployNode, OpError> {
        if self.nomini.lock().unwrap_or_else(|p| p.into_inner()).contains(&node.name) {
            return self.deployed_node(node);
        }
        self.deploy_node(node)
    }

    /// kexec into the deploy system from the system the node runs: the
    /// deploy system itself (a build cut short: entered with mln's key),
    /// else its deployed system. No firmware reboot: the network boot is
    /// not asked for anything (the kernel line is the `Deploy` profile's).
    fn kexec_deploy(&self, node: &Node) -> Result<(), OpError> {
        if matches!(self.power.status(&node.name, &node.spec), Ok(PowerReading::Off)) {
            return Err(OpError::Failed("it is off: no running system to kexec from".into()));
        }
        let address = self.address(node)?;
        if !self.answers(&address) {
            return Err(OpError::Failed("it does not answer: no running system to kexec from".into()));
        }
        let files = self.boot.deploy().map_err(OpError::Failed)?.boot_files().map_err(deploy_error)?;
        let read = |p: &Path| std::fs::read(p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())));
        let (kernel, initrd) = (read(files.kernel.as_path())?, read(files.initrd.as_path())?);
        let cmdline = format!("{} mln.host={} mln.address={address}/{}", files.params, node.name, self.prefix);
        let from = match self.deploy_node(node) {
            Ok(dn) if dn.run("probe", "true", b"").is_ok() => dn,
            _ => self.deployed_node(node)?,
        };
        let say = format!("MLN-KEXEC host={} into the deploy system (no firmware reboot)", node.name);
        from.kexec_sent(&kernel, &initrd, &cmdline, &say).map_err(deploy_error)?;
        // Gone before the wait for the deploy system: the system that is
        // going away must not answer it (its host key is another).
        let until = self.now(node) + Duration::from_secs(60);
        wait_until(until, || self.now(node), "the kexec (the running system did not go down)", || !self.answers(&address))
    }

    fn env(&self, node: &Node) -> Result<Environment, OpError> {
        env::get(self.state, &node.spec.environment).map_err(|e| OpError::Failed(e.to_string()))
    }

    fn file(&self, env: &Environment, f: &env::StoredFile) -> Result<PathBuf, OpError> {
        env.path(self.state, f).map_err(|e| OpError::Failed(e.to_string()))
    }

    /// The content of one of the environment's files.
    fn read(&self, env: &Environment, f: &env::StoredFile) -> Result<Vec<u8>, OpError> {
        let p = self.file(env, f)?;
        std::fs::read(&p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())))
    }

    fn root(&self, node: &Node) -> Result<String, OpError> {
        let r = self.roots.lock().unwrap_or_else(|p| p.into_inner()).get(&node.name).cloned();
        r.ok_or_else(|| OpError::Failed("no root file system was made on this node yet".into()))
    }

    /// The image to `members` (node, device) through one pipelined chain
    /// (`baremetal::chain`).
    fn write_images(&self, env: &Environment, image: &Path, tar: bool, members: &[(Node, String)]) -> Vec<Result<(), String>> {
        let compression = match env.image.compression {
            env::Compression::None => deploysys::Compression::None,
            env::Compression::Gzip => deploysys::Compression::Gzip,
            env::Compression::Xz => deploysys::Compression::Xz,
            env::Compression::Zstd => deploysys::Compression::Zstd,
        };
        // A lone node too goes through the chain (a chain of one): one path
        // for one node and for eight, and the node's console says what it
        // got and what ran its part (`hop=`).
        let dns: Vec<Result<DeployNode, String>> = members.iter().map(|(n, _)| self.worker(n).map_err(|e| e.to_string())).collect();
        let mut out: Vec<Result<(), String>> = vec![Ok(()); members.len()];
        let mut chained = Vec::new();
        for (i, (dn, (_, device))) in dns.iter().zip(members).enumerate() {
            match dn {
                Ok(dn) => chained.push((i, deploysys::ChainMember { node: dn, compression, tar, device: device.clone() })),
                Err(e) => out[i] = Err(e.clone()),
            }
        }
        let refs: Vec<&dyn super::chain::ChainNode> = chained.iter().map(|(_, m)| m as &dyn super::chain::ChainNode).collect();
        let names: Vec<&str> = chained.iter().map(|(i, _)| members[*i].0.name.as_str()).collect();
        tracing::info!("the image goes to {} through one chain", names.join(" -> "));
        let outcomes = super::chain::broadcast(&refs, image, &env.image.file.sha256, &super::chain::Options::default());
        for ((i, _), o) in chained.iter().zip(outcomes) {
            out[*i] = match o {
                super::chain::Outcome::Written { .. } => Ok(()),
                super::chain::Outcome::Skipped(e) => Err(format!("the image chain skipped it: {e}")),
                super::chain::Outcome::Failed(e) => Err(format!("the image chain: {e}")),
            };
        }
        out
    }

    /// A tar image written onto a partition gets a bootloader (as
    /// Kadeploy's install step does), so the `classical` and `hard` boots
    /// can boot the node from its disk: the environment's kernel and
    /// initrd in the root's `/boot`, extlinux with the environment's
    /// parameters, the node's name and address and `root=` the partition.
    /// A dd image brings its own; an environment without a kernel and
    /// initrd is left without one (only `kexec` can boot it then).
    /// `files` (the configuration) go over with the boot files.
    fn install_bootloader(&self, node: &Node, dn: &DeployNode, mut files: Vec<(String, Vec<u8>, u32)>) -> Result<(), OpError> {
        let env = self.env(node)?;
        let boot = match (&env.kernel, &env.initrd, target(&node.spec, env.image.kind)?) {
            (Some(k), Some(i), Target::Tar { disk, partition }) => Some((k, i, disk, partition.unwrap_or(1))),
            _ => None,
        };
        if let Some((k, i, disk, partition)) = &boot {
            let root = deploysys::partition_device(disk, *partition);
            let cmdline = format!("{} root={root} mln.boot=disk", deployed_cmdline(&env, &node.name, &self.address(node)?, self.prefix));
            files.push((DISK_KERNEL.into(), self.read(&env, k)?, 0o644));
            files.push((DISK_INITRD.into(), self.read(&env, i)?, 0o644));
            files.push(("/boot/extlinux/extlinux.conf".into(), extlinux_conf(&env.label(), &cmdline).into_bytes(), 0o644));
        }
        dn.write_files(&files).map_err(deploy_error)?;
        let Some((_, _, disk, partition)) = boot else { return Ok(()) };
        self.boot_files_written.lock().unwrap_or_else(|p| p.into_inner()).insert(node.name.clone());
        dn.install_bootloader(&disk, partition).map_err(deploy_error)
    }

    fn answers(&self, address: &str) -> bool {
        answers_tcp(address)
    }
}

/// The install rendez-vous' key: nodes of one environment (and version)
/// write the same image.
fn gather_key(node: &Node) -> String {
    let e = &node.spec.environment;
    format!("{}:{}", e.name, e.version.map_or("newest".into(), |v| v.to_string()))
}

/// A TCP connection to port 22 accepted, or refused (RST): the address is
/// up. Silence (no ARP answer, no route) is not.
pub fn answers_tcp(address: &str) -> bool {
    let Ok(ip) = address.parse::<std::net::IpAddr>() else { return false };
    match std::net::TcpStream::connect_timeout(&(ip, 22).into(), Duration::from_secs(1)) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// The contents of the host's `files` (sources resolved by the plan).
fn file_contents(host: &crate::plan::Host) -> Result<Vec<String>, OpError> {
    host.files.iter().map(|f| std::fs::read_to_string(&f.source).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", f.source)))).collect()
}

/// A node's configuration as a filesystem template gets it (no image:
/// the base accounts are root's).
fn node_files(plan: &Plan, host: &crate::plan::Host) -> Result<Vec<(String, String, u32)>, OpError> {
    let none = Path::new("/nonexistent/mln-no-image");
    crate::guest::fstemplate::files(plan, host, none, &file_contents(host)?).map_err(|e| OpError::Failed(e.to_string()))
}

pub(super) fn diskless_files(state_dir: &Path, r: &EnvRef) -> Result<DisklessFiles, String> {
    let state = State::open(state_dir).map_err(|e| e.to_string())?;
    let e = env::get(&state, r).map_err(|e| e.to_string())?;
    let (Some(k), Some(i)) = (&e.kernel, &e.initrd) else { return Err(format!("{} has no kernel and initrd to boot diskless", e.label())) };
    Ok(DisklessFiles { kernel: e.path(&state, k).map_err(|e| e.to_string())?, initrd: e.path(&state, i).map_err(|e| e.to_string())?, params: e.kernel_params.clone() })
}

fn deploy_error(e: DeployError) -> OpError {
    OpError::Failed(e.to_string())
}

fn wait_until(deadline: Duration, now: impl Fn() -> Duration, what: &str, mut ok: impl FnMut() -> bool) -> Result<(), OpError> {
    let t0 = now();
    loop {
        if ok() {
            return Ok(());
        }
        if now() >= deadline {
            return Err(OpError::Timeout { what: what.into(), after: deadline.saturating_sub(t0) });
        }
        std::thread::sleep(deploysys::PROBE_EVERY * 2);
    }
}

impl NodeOps for Site<'_> {
    fn now(&self, _node: &Node) -> Duration {
        self.start.elapsed()
    }

    fn starting(&self, node: &Node) {
        if node.spec.boot == super::BootMode::Disk {
            self.gather.expect(&node.name, gather_key(node));
        }
    }

    fn finished(&self, node: &Node) {
        self.gather.finished(&node.name);
    }

    fn set_profile(&self, node: &Node, profile: &BootProfile) -> Result<(), OpError> {
        let plan = self.plan.as_ref().ok_or_else(|| OpError::Failed("no plan".into()))?;
        let bn = boot_node(&plan.project, self.host(node)?, &node.spec);
        if let BootProfile::Deploy = profile {
            // The deploy system again: this node's install is its.
            self.nomini.lock().unwrap_or_else(|p| p.into_inner()).remove(&node.name);
        }
        if let BootProfile::Diskless { .. } = profile {
            let files = node_files(plan, self.host(node)?)?;
            let archive = super::diskless::archive(&files).map_err(OpError::Failed)?;
            self.boot.set_config(&bn.mac, &archive).map_err(|e| OpError::Failed(e.to_string()))?;
        }
        self.boot.set_profile(&bn, profile).map_err(|e| OpError::Failed(e.to_string()))
    }

    fn reboot(&self, node: &Node, level: RebootLevel) -> Result<PowerVia, OpError> {
        // A node that is off has no system to reboot softly: said at once,
        // not after an SSH connection's timeout. A status that fails is no
        // reason to skip the levels after it.
        let now = self.power.status(&node.name, &node.spec);
        if level == RebootLevel::Soft {
            if matches!(now, Ok(PowerReading::Off)) {
                return Err(OpError::Failed("it is off: nothing to reboot softly".into()));
            }
            // Only a system mln can enter: the deploy system. Returns once
            // it has gone down, so the wait that follows cannot be answered
            // by the system that is going away.
            self.worker(node)?.reboot().map_err(deploy_error)?;
            let address = self.address(node)?;
            let until = self.now(node) + Duration::from_secs(60);
            return wait_until(until, || self.now(node), "the soft reboot (the system did not go down)", || !self.answers(&address)).map(|()| PowerVia::Ssh);
        }
        let now = now?;
        let action = power_action(level, now).ok_or_else(|| OpError::Failed("no power action at this level".into()))?;
        if let PowerSpec::Ipmi { .. } = node.spec.power {
            // The boot profile decides, so the firmware must ask the network
            // first; a BMC that refuses this still gets the power action.
            let _ = self.power.ipmi.bootdev(&node.name, &node.spec, BootDevice::Pxe);
        }
        Ok(self.power.act_via(&node.name, &node.spec, action)?)
    }

    fn wait_reachable(&self, node: &Node, system: System, deadline: Duration) -> Result<(), OpError> {
        match system {
            System::Deploy => {
                let limit = deadline.saturating_sub(self.now(node));
                let dn = self.deploy_node(node)?;
                // In slices: a node that went off while booting (a cut
                // boot) is said at once, and retried, instead of waited
                // for until the deadline.
                loop {
                    let left = deadline.saturating_sub(self.now(node));
                    match dn.wait(left.min(OFF_CHECK)) {
                        Ok(()) => return Ok(()),
                        Err(DeployError::Unreachable { detail, .. }) => {
                            if self.now(node) >= deadline {
                                return Err(OpError::Timeout { what: format!("the deploy system ({detail})"), after: limit });
                            }
                            if matches!(self.power.status(&node.name, &node.spec), Ok(PowerReading::Off)) {
                                return Err(OpError::Failed("it went off while booting the deploy system".into()));
                            }
                        }
                        Err(e) => return Err(deploy_error(e)),
                    }
                }
            }
            System::Deployed => {
                let address = self.address(node)?;
                let dn = self.deploy_node(node)?;
                // Up, and not the deploy system still running (a kexec or
                // reboot takes a moment to take it down).
                wait_until(deadline, || self.now(node), "the deployed system", || self.answers(&address) && dn.run("probe", "true", b"").is_err())?;
                // The system up now is the new one: a key recorded while the
                // deployment ran is another system's (a `nomini` install and
                // its soft reboot enter the old one after `configure` forgot
                // it), and would refuse the next connection to this one.
                self.forget_deployed_host_key(node)
            }
        }
    }

    fn kexec(&self, node: &Node, into: System) -> Result<(), OpError> {
        if into == System::Deploy {
            return self.kexec_deploy(node);
        }
        let env = self.env(node)?;
        let (Some(k), Some(i)) = (&env.kernel, &env.initrd) else {
            return Err(OpError::Failed(format!("{} has no kernel and initrd to kexec", env.label())));
        };
        let dn = self.worker(node)?;
        // Sent once: through the deploy system's SSH server, on an emulated
        // CPU, tens of MB cost seconds of its time each.
        if !self.boot_files_written.lock().unwrap_or_else(|p| p.into_inner()).contains(&node.name) {
            let files = vec![(KEXEC_KERNEL.into(), self.read(&env, k)?, 0o644), (KEXEC_INITRD.into(), self.read(&env, i)?, 0o644)];
            dn.write_files(&files).map_err(deploy_error)?;
        }
        let cmdline = deployed_cmdline(&env, &node.name, &self.address(node)?, self.prefix);
        dn.kexec(KEXEC_KERNEL, Some(KEXEC_INITRD), &cmdline).map_err(deploy_error)
    }

    /// The running system does the install: checked first (the target a
    /// partition it does not use, the tools there), then every install
    /// command of this node goes to it.
    fn nomini(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let env = self.env(node)?;
        let device = nomini_device(&node.spec)?;
        if matches!(self.power.status(&node.name, &node.spec), Ok(PowerReading::Off)) {
            return Err(OpError::Failed("it is off: no running system to install from".into()));
        }
        let tar = env.image.kind == ImageKind::Tar;
        let bootloader = tar && env.kernel.is_some() && env.initrd.is_some();
        let dn = self.deployed_node(node)?;
        dn.run("check the running system (nomini)", &nomini_check(&device, env.image.compression, tar, bootloader), b"").map_err(deploy_error)?;
        // The chain's hop, which the chain script runs only if it runs
        // there; without it, the script's busybox pipeline.
        match deploysys::hop_for_push(&self.state.dir().join("baremetal/mln-hop")) {
            Some(hop) => {
                if let Err(e) = dn.push_hop(&hop) {
                    tracing::warn!("{}: mln-hop not pushed ({e}): the chain runs its busybox pipeline there", node.name);
                }
            }
            None => tracing::warn!("{}: no mln-hop beside mln to push: the chain runs its busybox pipeline there", node.name),
        }
        self.nomini.lock().unwrap_or_else(|p| p.into_inner()).insert(node.name.clone());
        Ok(())
    }

    fn partition_format(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let env = self.env(node)?;
        let device = match target(&node.spec, env.image.kind)? {
            Target::Tar { disk, partition } => {
                let table = self.clusters.of(self.host(node)?.superclass.as_deref()).partition_table;
                self.worker(node)?.partition_and_format(&disk, partition, table).map_err(deploy_error)?
            }
            Target::Raw { device } => device,
        };
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).insert(node.name.clone(), device);
        // A new file system: nothing of the last install is on it.
        self.boot_files_written.lock().unwrap_or_else(|p| p.into_inner()).remove(&node.name);
        Ok(())
    }

    fn write_image(&self, node: &Node, deadline: Duration) -> Result<(), OpError> {
        let env = self.env(node)?;
        let device = self.root(node)?;
        let tar = env.image.kind == ImageKind::Tar;
        let image = self.file(&env, &env.image.file)?;
        // The others still on their way are waited for, but never past half
        // of what is left of this step's time: its own image must fit too.
        let left = deadline.saturating_sub(self.now(node)) / 2;
        let until = Instant::now() + left.min(super::chain::GATHER_CAP);
        self.gather
            .join(gather_key(node), &node.name, (node.clone(), device.clone()), until, |members| self.write_images(&env, &image, tar, &members))
            .map_err(OpError::Failed)?;
        if !tar {
            self.worker(node)?.mount_root(&device).map_err(deploy_error)?;
        }
        Ok(())
    }

    fn configure(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let plan = self.plan.as_ref().ok_or_else(|| OpError::Failed("no plan".into()))?;
        let dn = self.worker(node)?;
        let host = self.host(node)?;
        let mut files = dn.config_files(plan, host, &file_contents(host)?).map_err(deploy_error)?;
        // The project's login key, as guests get it: `mln stop` asks the
        // deployed system to power off with it. mln's own key beside it:
        // a later deployment kexecs from this system (`deployed_node`).
        let keys = crate::login::keys::ensure(self.state, &plan.project).map_err(|e| OpError::Failed(format!("cannot make the project's keys: {e}")))?;
        let mut authorized = format!("{}\n", keys.login.trim());
        if let Ok(ds) = self.boot.deploy_if_built() {
            let p = ds.client_key().with_extension("pub");
            let k = std::fs::read_to_string(&p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())))?;
            authorized += &format!("{}\n", k.trim());
        }
        files.push(("/root/.ssh/authorized_keys".into(), authorized.into_bytes(), 0o600));
        self.forget_deployed_host_key(node)?;
        // The configuration, the keys and the boot files in one session.
        self.install_bootloader(node, &dn, files)
    }

    /// `poweroff` in the deployed system, as root with the project's key.
    /// The deployed system's host key is not known beforehand: it is
    /// recorded the first time (`STATE/baremetal/deployed_known_hosts`)
    /// and must match after; all it is trusted with is a power-off.
    fn shutdown(&self, node: &Node) -> Result<(), OpError> {
        let dn = self.deployed_node(node)?;
        dn.run("poweroff", "(sleep 1; poweroff) >/dev/null 2>&1 </dev/null &", b"").map(drop).map_err(deploy_error)
    }

    fn postinstall(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let env = self.env(node)?;
        let dn = self.worker(node)?;
        for f in &env.postinstall {
            let p = self.file(&env, f)?;
            let script = std::fs::read_to_string(&p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())))?;
            dn.run_script(&script).map_err(deploy_error)?;
        }
        // On the disk before any boot: the `hard` boot resets the node
        // with no chance to write what is still in its page cache.
        dn.run("sync", "sync", b"").map(drop).map_err(deploy_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::power::testing::node;

    #[test]
    fn tar_images_get_a_file_system_and_dd_images_a_device() {
        let mut s = node(PowerSpec::Ssh);
        assert_eq!(target(&s, ImageKind::Tar).unwrap(), Target::Tar { disk: "/dev/vda".into(), partition: None });
        assert_eq!(target(&s, ImageKind::Dd).unwrap(), Target::Raw { device: "/dev/vda".into() });
        s.partition = Some(3);
        assert_eq!(target(&s, ImageKind::Dd).unwrap(), Target::Raw { device: "/dev/vda3".into() });
        assert_eq!(target(&s, ImageKind::Tar).unwrap(), Target::Tar { disk: "/dev/vda".into(), partition: Some(3) });
        s.disk = None;
        assert!(target(&s, ImageKind::Tar).is_err());
    }

    #[test]
    fn the_disk_boots_the_environment_kernel_with_the_node_line() {
        let c = extlinux_conf("testguest:1", "console=ttyS0 mln.host=bm0 root=/dev/vda1\nDEFAULT evil");
        assert!(c.starts_with("# Written by mln") && c.contains("SERIAL 0 115200\n") && c.contains("SAY mln: testguest:1 from its disk"), "{c}");
        assert!(c.contains("KERNEL /boot/mln-vmlinuz\n  INITRD /boot/mln-initrd\n"), "{c}");
        assert!(c.contains("  APPEND console=ttyS0 mln.host=bm0 root=/dev/vda1 DEFAULT evil\n"), "one line: {c}");
        assert_eq!(c.matches("DEFAULT").count(), 2, "{c}");
    }

    #[test]
    fn nomini_writes_only_a_named_partition_the_running_system_does_not_use() {
        let mut s = node(PowerSpec::Ssh);
        let e = nomini_device(&s).unwrap_err().to_string();
        assert!(e.contains("name a `partition`") && e.contains("/dev/vda"), "{e}");
        s.partition = Some(3);
        assert_eq!(nomini_device(&s).unwrap(), "/dev/vda3");
        s.disk = None;
        assert!(nomini_device(&s).is_err());
        let c = nomini_check("/dev/vda3", env::Compression::Zstd, true, true);
        for t in [" nc ", " zstd ", " mkfs.ext4 ", " tar ", " extlinux ", " sfdisk", deploysys::MBR, "/proc/mounts /proc/swaps", "in use"] {
            assert!(c.contains(t), "{t}: {c}");
        }
        let c = nomini_check("/dev/vda3", env::Compression::None, false, false);
        assert!(c.contains(" dd") && !c.contains("mkfs") && !c.contains("extlinux"), "{c}");
    }

    /// The check as the running system runs it (the host's sh and tools):
    /// a mounted device is refused, a missing tool named.
    #[test]
    fn the_nomini_check_refuses_a_mounted_device_and_names_missing_tools() {
        let root = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let Some(dev) = root.lines().map(|l| l.split_whitespace().next().unwrap_or("")).find(|d| d.starts_with("/dev/") && std::path::Path::new(d).exists() && !d.contains('\'')) else {
            eprintln!("no mounted block device here: skipped");
            return;
        };
        let run = |script: &str| std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        if run("command -v nc && command -v mkfs.ext4").status.success() {
            let o = run(&nomini_check(dev, env::Compression::Gzip, true, false));
            assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("in use by the running system"), "{o:?}");
        }
        let o = run(&nomini_check(dev, env::Compression::Gzip, true, false).replace(" nc ", " mln-no-such-tool "));
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("lacks: mln-no-such-tool"), "{o:?}");
    }

    #[test]
    fn an_off_node_is_powered_on_and_a_running_one_reset_or_cycled() {
        use PowerReading::*;
        assert_eq!(power_action(RebootLevel::Hard, Off), Some(PowerAction::On));
        assert_eq!(power_action(RebootLevel::VeryHard, Off), Some(PowerAction::On));
        assert_eq!(power_action(RebootLevel::Hard, On), Some(PowerAction::Reset));
        assert_eq!(power_action(RebootLevel::VeryHard, On), Some(PowerAction::Cycle));
        assert_eq!(power_action(RebootLevel::Soft, On), None);
    }

    #[test]
    fn a_refused_connection_is_an_answer_and_silence_is_not() {
        // Port 22 on loopback: accepted (an sshd) or refused; either way up.
        assert!(answers_tcp("127.0.0.1"));
        assert!(!answers_tcp("not an address"));
    }

    #[test]
    fn no_netboot_table_is_said_before_anything_is_built() {
        let d = tempfile::tempdir().unwrap();
        let state = State::open(d.path()).unwrap();
        let e = Site::open(&state, None, Clusters::default(), None).err().unwrap();
        assert!(e.to_string().contains("[netboot]"), "{e}");
        let nb = NetbootConfig { interface: None, subnet: "10.79.9.0/33".into(), server: "10.79.9.1".into(), pxe_dir: None, deploy_build: None };
        assert!(matches!(Site::open(&state, Some(&nb), Clusters::default(), None), Err(SiteError::Netboot(_))));
        assert!(!d.path().join("baremetal/deploysys").exists(), "nothing built for a bad table");
    }
}
