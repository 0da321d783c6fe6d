//! The network-boot service of the real set-up ([`super::ops::Site`]):
//! which bridge it serves, and setting it up only when a node's boot
//! profile is first set.
//!
//! One network for VMs and nodes: a project's switch is a bridge; the
//! nodes are cabled to a bridge of this machine (a physical LAN, or the
//! test rig's). So a switch that holds nodes names that bridge (`switch
//! lan { bridge br-boot }`: mln attaches its VMs to it and makes nothing),
//! and the boot service (dnsmasq) binds to that bridge: the VMs and the
//! nodes of the switch share one Ethernet segment. `[netboot] interface`
//! may say the bridge too; then it must be the same.

use super::deploysrc;
use super::deploysys::DeploySystem;
use super::netboot::{check::Subnet, Dnsmasq, PxeDir, Tree};
use super::ops::{diskless_files, SiteError};
use super::{BootNode, BootProfile, NetBoot, NetBootError};
use crate::fabric::config::NetbootConfig;
use crate::plan::{HostKind, Plan};
use crate::state::State;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The bridge dnsmasq serves: `configured` (`[netboot] interface`), else
/// the bridge every node's first interface is on. A node on a switch of
/// mln's own (a bridge made for VMs, with nothing physical on it), or on
/// another bridge than the boot service's, is refused: it could not
/// network-boot, and the VMs beside it in the project would not reach it.
pub fn boot_interface(configured: Option<&str>, plan: Option<&Plan>) -> Result<String, String> {
    let mut bridges = BTreeSet::new();
    for h in plan.iter().flat_map(|p| p.hosts.iter()).filter(|h| h.kind == HostKind::Baremetal) {
        let Some(i) = h.interfaces.first() else { continue };
        let bridge = match (&i.bridge, &i.switch) {
            (Some(b), _) => b.clone(),
            (None, Some(sw)) => {
                let Some(s) = plan.and_then(|p| p.switches.iter().find(|s| &s.name == sw)) else { continue };
                if !s.attach {
                    return Err(format!(
                        "node {} is on switch {sw}, whose bridge {} is one mln makes for VMs (nothing physical is on it): give the switch the bridge the nodes are cabled to (`bridge NAME`), which the boot service then serves",
                        h.name, s.bridge
                    ));
                }
                s.bridge.clone()
            }
            (None, None) => continue,
        };
        bridges.insert(bridge);
    }
    match (configured, bridges.len()) {
        (Some(c), _) => match bridges.iter().find(|b| *b != c) {
            Some(b) => Err(format!("a node is on bridge {b}, but the boot service serves `interface = \"{c}\"`: one boot network")),
            None => Ok(c.to_string()),
        },
        (None, 1) => Ok(bridges.into_iter().next().unwrap_or_default()),
        (None, 0) => Err("either `interface` (the bridge the nodes are on: mln runs dnsmasq there), a switch with `bridge` for the nodes, or `pxe_dir`".into()),
        (None, _) => Err(format!("the nodes are on several bridges ({}): one boot network", bridges.into_iter().collect::<Vec<_>>().join(", "))),
    }
}

pub struct BootService {
    state_dir: PathBuf,
    conf: NetbootConfig,
    subnet: Subnet,
    server: Ipv4Addr,
    /// dnsmasq's bridge; None: a PXE directory.
    interface: Option<String>,
    deploy: OnceLock<Result<DeploySystem, String>>,
    serving: OnceLock<Result<Box<dyn NetBoot>, String>>,
    /// The records-only service of a command that serves nothing.
    records: OnceLock<Box<dyn NetBoot>>,
    /// Every change of the records, one at a time: each service instance
    /// has its tree's own lock, and the leases file is read, changed and
    /// written whole (concurrent removals lost leases).
    edit: std::sync::Mutex<()>,
}

impl BootService {
    /// Checks the table and the boot network; builds and starts nothing.
    pub fn new(state: &State, conf: &NetbootConfig, plan: Option<&Plan>) -> Result<BootService, SiteError> {
        let subnet = Subnet::parse(&conf.subnet).map_err(|e| SiteError::Netboot(e.to_string()))?;
        let server = conf.server.parse().map_err(|_| SiteError::Netboot(format!("server {:?} is not an IPv4 address", conf.server)))?;
        let interface = match &conf.pxe_dir {
            Some(_) => None,
            None => Some(boot_interface(conf.interface.as_deref(), plan).map_err(SiteError::Netboot)?),
        };
        let b = BootService { state_dir: state.dir().to_path_buf(), conf: conf.clone(), subnet, server, interface, deploy: OnceLock::new(), serving: OnceLock::new(), records: OnceLock::new(), edit: std::sync::Mutex::new(()) };
        // A bad server address or interface name is said now, not mid-build.
        b.service(b.tree().map_err(|e| SiteError::Netboot(e.to_string()))?).map_err(|e| SiteError::Netboot(e.to_string()))?;
        Ok(b)
    }

    /// The bridge dnsmasq serves (None: a PXE directory).
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    fn tree(&self) -> Result<Tree, NetBootError> {
        let root = self.conf.pxe_dir.clone().unwrap_or_else(|| self.state_dir.join("baremetal/tftp"));
        let mut tree = Tree::new(root, self.state_dir.join("baremetal/netboot"), self.subnet, self.server)?;
        let st = self.state_dir.clone();
        // A diskless profile is the environment's kernel and initrd, as
        // stored in the library (checked against its SHA-256 at deploy).
        tree.environments = Some(std::sync::Arc::new(move |r: &super::EnvRef| diskless_files(&st, r)));
        Ok(tree)
    }

    fn service(&self, tree: Tree) -> Result<Box<dyn NetBoot>, NetBootError> {
        Ok(match &self.interface {
            Some(i) => Box::new(Dnsmasq::new(tree, i)?),
            None => Box::new(PxeDir { tree }),
        })
    }

    /// A diskless node's configuration archive into the boot tree
    /// (`baremetal::diskless`); its next diskless profile names it.
    pub fn set_config(&self, mac: &str, archive: &[u8]) -> Result<(), NetBootError> {
        self.tree()?.set_config(mac, archive)
    }

    /// The deploy system, built on first use into the state directory
    /// (from the build script inside mln unless `deploy_build` names one).
    pub fn deploy(&self) -> Result<&DeploySystem, String> {
        let r = self.deploy.get_or_init(|| {
            let build = match &self.conf.deploy_build {
                Some(p) => p.clone(),
                None => deploysrc::unpack(&self.state_dir.join("baremetal/deploysys-src")).map_err(|e| format!("cannot write the deploy system's build script: {e}"))?,
            };
            DeploySystem::prepare(&self.state_dir.join("baremetal/deploysys"), &build).map_err(|e| format!("the deploy system: {e}"))
        });
        r.as_ref().map_err(Clone::clone)
    }

    /// The deploy system's keys when it was built before (by this command
    /// or an earlier one), building nothing: what a command that only
    /// enters nodes (`stop`) may use.
    pub fn deploy_if_built(&self) -> Result<DeploySystem, String> {
        if let Some(Ok(d)) = self.deploy.get() {
            return Ok(DeploySystem { dir: d.dir.clone() });
        }
        let d = DeploySystem { dir: self.state_dir.join("baremetal/deploysys") };
        if d.client_key().exists() {
            Ok(d)
        } else {
            Err("the deploy system was never built here".into())
        }
    }

    /// Serving: the deploy system built, dnsmasq started (or the PXE
    /// directory's fixed files written). Once per command.
    fn serving(&self) -> Result<&dyn NetBoot, NetBootError> {
        let r = self.serving.get_or_init(|| {
            let mut tree = self.tree().map_err(|e| e.to_string())?;
            tree.deploy = Some(self.deploy()?.boot_files().map_err(|e| e.to_string())?);
            match &self.interface {
                Some(i) => {
                    let d = Dnsmasq::new(tree, i).map_err(|e| e.to_string())?;
                    d.start().map_err(|e| e.to_string())?;
                    Ok(Box::new(d) as Box<dyn NetBoot>)
                }
                None => {
                    tree.prepare().map_err(|e| e.to_string())?;
                    Ok(Box::new(PxeDir { tree }) as Box<dyn NetBoot>)
                }
            }
        });
        r.as_deref().map_err(|e| NetBootError::Service { detail: e.clone(), retry: false })
    }

    /// What `forget` and `idle` work on: the serving service if this
    /// command started it, else one that only edits the records (and
    /// signals or stops a dnsmasq an earlier command left running).
    fn quiet<T>(&self, f: impl FnOnce(&dyn NetBoot) -> Result<T, NetBootError>) -> Result<T, NetBootError> {
        let _one = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Ok(s)) = self.serving.get() {
            return f(&**s);
        }
        if self.records.get().is_none() {
            let made = self.service(self.tree()?)?;
            let _ = self.records.set(made);
        }
        match self.records.get() {
            Some(r) => f(&**r),
            None => Err(NetBootError::Service { detail: "the boot records could not be opened".into(), retry: false }),
        }
    }
}

impl NetBoot for BootService {
    fn set_profile(&self, node: &BootNode, profile: &BootProfile) -> Result<(), NetBootError> {
        let service = self.serving()?;
        let _one = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        service.set_profile(node, profile)
    }
    fn forget(&self, project: &str, host: &str) -> Result<(), NetBootError> {
        self.quiet(|s| s.forget(project, host))
    }
    fn idle(&self) -> Result<bool, NetBootError> {
        self.quiet(|s| s.idle())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(switch: &str, nodes_mac: bool) -> Plan {
        let mut text = format!("global {{\n project p\n}}\n{switch}\nhost vm {{\n network eth0 {{\n  switch lan\n  address 10.79.3.50\n  netmask 255.255.255.0\n }}\n}}\n");
        if nodes_mac {
            text += "host bm {\n baremetal\n mac 52:54:00:aa:00:01\n disk /dev/vda\n environment e\n power {\n  driver command\n  on \"true\"\n  off \"true\"\n  reset \"true\"\n  status \"echo on\"\n }\n network eth0 {\n  switch lan\n  address 10.79.3.11\n  netmask 255.255.255.0\n }\n}\n";
        }
        let c = crate::compile(std::path::Path::new("p.mln"), &crate::source::MemoryFs::default().with("p.mln", text), crate::plugin::Registry::new(vec![]));
        assert!(c.ok(), "{:?}", c.diags);
        c.plan
    }

    #[test]
    fn the_boot_service_serves_the_bridge_of_the_nodes_switch() {
        let p = plan("switch lan {\n bridge br-boot\n}", true);
        assert_eq!(boot_interface(None, Some(&p)).unwrap(), "br-boot");
        assert_eq!(boot_interface(Some("br-boot"), Some(&p)).unwrap(), "br-boot");
        let e = boot_interface(Some("br-other"), Some(&p)).unwrap_err();
        assert!(e.contains("br-boot") && e.contains("br-other"), "{e}");
    }

    #[test]
    fn nodes_on_a_switch_of_mln_s_own_are_refused_with_the_fix() {
        let p = plan("switch lan { }", true);
        let e = boot_interface(Some("br-boot"), Some(&p)).unwrap_err();
        assert!(e.contains("node bm is on switch lan") && e.contains("bridge NAME"), "{e}");
        // No node on a switch: the configured interface, else nothing to serve.
        let vms = plan("switch lan { }", false);
        assert_eq!(boot_interface(Some("br-boot"), Some(&vms)).unwrap(), "br-boot");
        assert!(boot_interface(None, Some(&vms)).is_err());
    }

    #[test]
    fn opening_builds_nothing_and_starts_nothing() {
        let d = tempfile::tempdir().unwrap();
        let state = State::open(d.path()).unwrap();
        let p = plan("switch lan {\n bridge br-boot\n}", true);
        let conf = NetbootConfig { interface: None, subnet: "10.79.3.0/24".into(), server: "10.79.3.1".into(), pxe_dir: None, deploy_build: Some(d.path().join("no-such-script")) };
        let b = BootService::new(&state, &conf, Some(&p)).unwrap();
        assert_eq!(b.interface(), Some("br-boot"));
        // A removal with nothing served edits records only.
        b.forget("p", "bm").unwrap();
        assert!(!b.idle().unwrap());
        assert!(!d.path().join("baremetal/deploysys").exists(), "no deploy system built");
        assert!(!d.path().join("baremetal/netboot/dnsmasq.pid").exists(), "no dnsmasq started");
        // Removals at once (as `remove` does them) lose no lease.
        let tree = b.tree().unwrap();
        tree.prepare().unwrap();
        for i in 0..6 {
            let n = BootNode { project: "p".into(), host: format!("bm{i}"), mac: format!("52:54:00:aa:00:1{i}"), address: format!("10.79.3.2{i}") };
            tree.set(&n, &BootProfile::Disk).unwrap();
        }
        std::thread::scope(|s| {
            for i in 0..6 {
                let b = &b;
                s.spawn(move || b.forget("p", &format!("bm{i}")).unwrap());
            }
        });
        assert_eq!(std::fs::read_to_string(d.path().join("baremetal/netboot/leases")).unwrap(), "", "every lease forgotten");
        // Setting a profile is what sets it up: here the build script is missing.
        let node = BootNode { project: "p".into(), host: "bm".into(), mac: "52:54:00:aa:00:01".into(), address: "10.79.3.11".into() };
        let e = b.set_profile(&node, &BootProfile::Deploy).unwrap_err();
        assert!(e.to_string().contains("deploy system"), "{e}");
    }
}
