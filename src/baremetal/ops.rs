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
use super::{BootProfile, EnvRef, NetBoot, NodeSpec, PowerAction, PowerDriver, PowerReading, PowerSpec, RebootLevel};
use crate::fabric::config::NetbootConfig;
use crate::plan::{HostKind, Plan};
use crate::state::State;
use std::collections::HashMap;
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
        Ok(Site { state, power: Power::default(), clusters, boot, plan, prefix: subnet.prefix, rt, start: Instant::now(), roots: Mutex::new(HashMap::new()), gather: super::chain::Gather::new(), known_hosts: Mutex::new(()) })
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

    fn env(&self, node: &Node) -> Result<Environment, OpError> {
        env::get(self.state, &node.spec.environment).map_err(|e| OpError::Failed(e.to_string()))
    }

    fn file(&self, env: &Environment, f: &env::StoredFile) -> Result<PathBuf, OpError> {
        env.path(self.state, f).map_err(|e| OpError::Failed(e.to_string()))
    }

    fn root(&self, node: &Node) -> Result<String, OpError> {
        let r = self.roots.lock().unwrap_or_else(|p| p.into_inner()).get(&node.name).cloned();
        r.ok_or_else(|| OpError::Failed("no root file system was made on this node yet".into()))
    }

    /// The image to `members` (node, device): one node on its own SSH
    /// session; more through one pipelined chain (`baremetal::chain`).
    fn write_images(&self, env: &Environment, image: &Path, tar: bool, members: &[(Node, String)]) -> Vec<Result<(), String>> {
        let compression = match env.image.compression {
            env::Compression::None => deploysys::Compression::None,
            env::Compression::Gzip => deploysys::Compression::Gzip,
            env::Compression::Xz => deploysys::Compression::Xz,
            env::Compression::Zstd => deploysys::Compression::Zstd,
        };
        let dns: Vec<Result<DeployNode, String>> = members.iter().map(|(n, _)| self.deploy_node(n).map_err(|e| e.to_string())).collect();
        if members.len() == 1 {
            return vec![dns[0].as_ref().map_err(Clone::clone).and_then(|dn| dn.write_image(image, compression, tar, &members[0].1).map_err(|e| e.to_string()))];
        }
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
    fn install_bootloader(&self, node: &Node, dn: &DeployNode) -> Result<(), OpError> {
        let env = self.env(node)?;
        let (Some(k), Some(i)) = (&env.kernel, &env.initrd) else { return Ok(()) };
        let Target::Tar { disk, partition } = target(&node.spec, env.image.kind)? else { return Ok(()) };
        let root = deploysys::partition_device(&disk, partition.unwrap_or(1));
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())));
        dn.write_file(DISK_KERNEL, &read(self.file(&env, k)?)?, 0o644).map_err(deploy_error)?;
        dn.write_file(DISK_INITRD, &read(self.file(&env, i)?)?, 0o644).map_err(deploy_error)?;
        let cmdline = format!("{} root={root} mln.boot=disk", deployed_cmdline(&env, &node.name, &self.address(node)?, self.prefix));
        dn.write_file("/boot/extlinux/extlinux.conf", extlinux_conf(&env.label(), &cmdline).as_bytes(), 0o644).map_err(deploy_error)?;
        dn.install_bootloader(&disk, partition.unwrap_or(1)).map_err(deploy_error)
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
        std::thread::sleep(Duration::from_secs(2));
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
        if let BootProfile::Diskless { .. } = profile {
            let files = node_files(plan, self.host(node)?)?;
            let archive = super::diskless::archive(&files).map_err(OpError::Failed)?;
            self.boot.set_config(&bn.mac, &archive).map_err(|e| OpError::Failed(e.to_string()))?;
        }
        self.boot.set_profile(&bn, profile).map_err(|e| OpError::Failed(e.to_string()))
    }

    fn reboot(&self, node: &Node, level: RebootLevel) -> Result<(), OpError> {
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
            self.deploy_node(node)?.reboot().map_err(deploy_error)?;
            let address = self.address(node)?;
            let until = self.now(node) + Duration::from_secs(60);
            return wait_until(until, || self.now(node), "the soft reboot (the system did not go down)", || !self.answers(&address));
        }
        let now = now?;
        let action = power_action(level, now).ok_or_else(|| OpError::Failed("no power action at this level".into()))?;
        if let PowerSpec::Ipmi { .. } = node.spec.power {
            // The boot profile decides, so the firmware must ask the network
            // first; a BMC that refuses this still gets the power action.
            let _ = self.power.ipmi.bootdev(&node.name, &node.spec, BootDevice::Pxe);
        }
        self.power.act(&node.name, &node.spec, action)?;
        Ok(())
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
                wait_until(deadline, || self.now(node), "the deployed system", || self.answers(&address) && dn.run("probe", "true", b"").is_err())
            }
        }
    }

    fn kexec(&self, node: &Node, into: System) -> Result<(), OpError> {
        if into == System::Deploy {
            return Err(OpError::Failed("kexec into the deploy system needs a running system mln can enter; use `untrusted`".into()));
        }
        let env = self.env(node)?;
        let (Some(k), Some(i)) = (&env.kernel, &env.initrd) else {
            return Err(OpError::Failed(format!("{} has no kernel and initrd to kexec", env.label())));
        };
        let dn = self.deploy_node(node)?;
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())));
        dn.write_file(KEXEC_KERNEL, &read(self.file(&env, k)?)?, 0o644).map_err(deploy_error)?;
        dn.write_file(KEXEC_INITRD, &read(self.file(&env, i)?)?, 0o644).map_err(deploy_error)?;
        let cmdline = deployed_cmdline(&env, &node.name, &self.address(node)?, self.prefix);
        dn.kexec(KEXEC_KERNEL, Some(KEXEC_INITRD), &cmdline).map_err(deploy_error)
    }

    fn partition_format(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let env = self.env(node)?;
        let device = match target(&node.spec, env.image.kind)? {
            Target::Tar { disk, partition } => self.deploy_node(node)?.partition_and_format(&disk, partition).map_err(deploy_error)?,
            Target::Raw { device } => device,
        };
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).insert(node.name.clone(), device);
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
            self.deploy_node(node)?.mount_root(&device).map_err(deploy_error)?;
        }
        Ok(())
    }

    fn configure(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let plan = self.plan.as_ref().ok_or_else(|| OpError::Failed("no plan".into()))?;
        let dn = self.deploy_node(node)?;
        let host = self.host(node)?;
        dn.write_config(plan, host, &file_contents(host)?).map_err(deploy_error)?;
        // The project's login key, as guests get it: `mln stop` asks the
        // deployed system to power off with it.
        let keys = crate::login::keys::ensure(self.state, &plan.project).map_err(|e| OpError::Failed(format!("cannot make the project's keys: {e}")))?;
        dn.write_file("/root/.ssh/authorized_keys", format!("{}\n", keys.login.trim()).as_bytes(), 0o600).map_err(deploy_error)?;
        self.install_bootloader(node, &dn)
    }

    /// `poweroff` in the deployed system, as root with the project's key.
    /// The deployed system's host key is not known beforehand: it is
    /// recorded the first time (`STATE/baremetal/deployed_known_hosts`)
    /// and must match after; all it is trusted with is a power-off.
    fn shutdown(&self, node: &Node) -> Result<(), OpError> {
        let plan = self.plan.as_ref().ok_or_else(|| OpError::Failed("no plan".into()))?;
        let key = crate::login::keys::private_path(self.state, &plan.project).map_err(|e| OpError::Failed(e.to_string()))?;
        if !key.exists() {
            return Err(OpError::Failed("the project has no login key yet".into()));
        }
        let mut s = crate::fabric::Fabric::default().server(&node.name);
        s.address = self.address(node)?;
        s.port = 22;
        s.user = "root".into();
        s.identity = vec![key];
        s.known_hosts = self.state.dir().join("baremetal/deployed_known_hosts");
        s.accept_new_host_keys = true;
        s.connect_timeout = 10;
        let dn = DeployNode { name: node.name.clone(), server: s, rt: self.rt.handle().clone() };
        dn.run("poweroff", "(sleep 1; poweroff) >/dev/null 2>&1 </dev/null &", b"").map(drop).map_err(deploy_error)
    }

    fn postinstall(&self, node: &Node, _deadline: Duration) -> Result<(), OpError> {
        let env = self.env(node)?;
        let dn = self.deploy_node(node)?;
        for f in &env.postinstall {
            let p = self.file(&env, f)?;
            let script = std::fs::read_to_string(&p).map_err(|e| OpError::Failed(format!("cannot read {}: {e}", p.display())))?;
            dn.run_script(&script).map_err(deploy_error)?;
        }
        Ok(())
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
