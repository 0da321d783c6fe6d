//! The files a network boot reads: `boot.ipxe` (what every iPXE client is
//! given by DHCP), `nodes/<mac>.ipxe` (each node's next boot), the deploy
//! system's and diskless environments' kernels and initrds; beside it, one
//! record per node (its lease), from which the leases file is rewritten.

use super::check::{self, Subnet};
use super::io;
use crate::baremetal::{BootNode, BootProfile, EnvRef, NetBootError};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A kernel, an initrd and their parameters (the deploy system's, or a
/// diskless environment's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisklessFiles {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub params: String,
}

/// The environment library's answer for a diskless profile.
pub type Environments = Arc<dyn Fn(&EnvRef) -> Result<DisklessFiles, String> + Send + Sync>;

pub struct Tree {
    /// The TFTP root.
    pub root: PathBuf,
    /// Node records and the leases file (`leases`, dnsmasq's
    /// dhcp-hostsfile form).
    pub records: PathBuf,
    pub subnet: Subnet,
    /// This machine's address on the boot network (TFTP server).
    pub server: Ipv4Addr,
    pub deploy: Option<DisklessFiles>,
    pub environments: Option<Environments>,
    /// The port of an HTTP server of this root on `server`
    /// ([`super::http`]): the scripts fetch kernels and initrds from it
    /// first, over TFTP if that fails.
    pub http: Option<u16>,
    lock: Mutex<()>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    node: BootNode,
    profile: BootProfile,
}

fn write_atomic(path: &Path, text: &[u8]) -> Result<(), NetBootError> {
    let tmp = path.with_extension("mln-tmp");
    std::fs::write(&tmp, text).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replace", path, e))
}

/// A copy of `from` at `to` unless one of the same size and time is there.
fn place(from: &Path, to: &Path) -> Result<(), NetBootError> {
    let a = std::fs::metadata(from).map_err(|e| io("read", from, e))?;
    if let Ok(b) = std::fs::metadata(to) {
        if a.len() == b.len() && a.modified().ok() <= b.modified().ok() {
            return Ok(());
        }
    }
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| io("make", d, e))?;
    }
    let tmp = to.with_extension("mln-tmp");
    std::fs::copy(from, &tmp).map_err(|e| io("copy to", &tmp, e))?;
    std::fs::rename(&tmp, to).map_err(|e| io("replace", to, e))
}

impl Tree {
    pub fn new(root: PathBuf, records: PathBuf, subnet: Subnet, server: Ipv4Addr) -> Result<Tree, NetBootError> {
        if subnet.host(&server.to_string()).is_err() {
            return Err(NetBootError::Refused(format!("the boot server's address {server} is not in {}/{}", subnet.network, subnet.prefix)));
        }
        Ok(Tree { root, records, subnet, server, deploy: None, environments: None, http: None, lock: Mutex::new(()) })
    }

    /// The fixed files: `boot.ipxe`, the deploy system, a PXE-to-iPXE
    /// loader when the host has one.
    pub fn prepare(&self) -> Result<(), NetBootError> {
        for d in [self.root.join("nodes"), self.records.join("nodes")] {
            std::fs::create_dir_all(&d).map_err(|e| io("make", &d, e))?;
        }
        // ${mac} is iPXE's, expanded on the node. A node with no script
        // of its own (not ours) boots its disk.
        let boot = format!("#!ipxe\n# Written by mln: each node's next boot is nodes/<mac>.ipxe.\nchain tftp://{}/nodes/${{mac}}.ipxe || exit\n", self.server);
        write_atomic(&self.root.join("boot.ipxe"), boot.as_bytes())?;
        if let Some(d) = &self.deploy {
            check::kernel_params(&d.params)?;
            place(&d.kernel, &self.root.join("deploy/vmlinuz"))?;
            place(&d.initrd, &self.root.join("deploy/initrd"))?;
        }
        for undi in ["/usr/lib/ipxe/undionly.kpxe", "/usr/share/ipxe/undionly.kpxe"] {
            if Path::new(undi).exists() {
                place(Path::new(undi), &self.root.join("undionly.kpxe"))?;
                break;
            }
        }
        if !self.records.join("leases").exists() {
            write_atomic(&self.records.join("leases"), b"")?;
        }
        Ok(())
    }

    fn record_path(&self, project: &str, host: &str) -> PathBuf {
        self.records.join("nodes").join(format!("{project}--{host}.json"))
    }

    fn records(&self) -> Result<Vec<Record>, NetBootError> {
        let dir = self.records.join("nodes");
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("read", &dir, e)),
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read(&p).map_err(|e| io("read", &p, e))?;
                // A damaged record is the service's own state: say which.
                let r = serde_json::from_slice(&text).map_err(|e| NetBootError::Service { detail: format!("{} is damaged: {e}", p.display()), retry: false })?;
                out.push(r);
            }
        }
        out.sort_by(|a: &Record, b| (&a.node.project, &a.node.host).cmp(&(&b.node.project, &b.node.host)));
        Ok(out)
    }

    /// The leases file's text: `MAC,ADDRESS,HOSTNAME` per node.
    fn leases_text(records: &[Record]) -> String {
        records.iter().map(|r| format!("{},{},{}\n", r.node.mac, r.node.address, r.node.host)).collect()
    }

    /// The iPXE line that loads `path` of the tree with `command`
    /// (`kernel`, `initrd`) and `args`: over HTTP where served, TFTP if
    /// that fails.
    fn fetch(&self, command: &str, path: &str, args: &str) -> String {
        let s = self.server;
        let tftp = format!("{command} tftp://{s}/{path}{args}");
        match self.http {
            Some(port) => format!("{command} http://{s}:{port}/{path}{args} || {tftp}\n"),
            None => format!("{tftp}\n"),
        }
    }

    /// The node's iPXE script for `profile`.
    pub fn script(&self, node: &BootNode, profile: &BootProfile) -> Result<String, NetBootError> {
        let s = self.server;
        let head = format!("#!ipxe\n# mln: {}/{}\n", node.project, node.host);
        let ip = format!("mln.host={} mln.address={}/{}", node.host, node.address, self.subnet.prefix);
        Ok(match profile {
            BootProfile::Deploy => {
                let d = self.deploy.as_ref().ok_or_else(|| NetBootError::Refused("no deploy system is set up for network boot".into()))?;
                format!("{head}{}{}boot\n", self.fetch("kernel", "deploy/vmlinuz", &format!(" initrd=initrd {} {ip}", d.params)), self.fetch("initrd", "deploy/initrd", ""))
            }
            // The ROM's own disk boot where iPXE can, else back to the
            // firmware, which tries the next device (the disk).
            BootProfile::Disk => format!("{head}sanboot --no-describe --drive 0x80 || exit\n"),
            BootProfile::Diskless { environment } => {
                check::path_word("environment", &environment.name)?;
                let envs = self.environments.as_ref().ok_or_else(|| NetBootError::Refused("no environment library is set up for diskless boot".into()))?;
                let f = envs(environment).map_err(NetBootError::Refused)?;
                check::kernel_params(&f.params)?;
                let dir = match environment.version {
                    Some(v) => format!("envs/{}-{v}", environment.name),
                    None => format!("envs/{}", environment.name),
                };
                place(&f.kernel, &self.root.join(&dir).join("vmlinuz"))?;
                place(&f.initrd, &self.root.join(&dir).join("initrd"))?;
                // The node's own configuration, when mln has put it in
                // the tree (`baremetal::diskless`).
                let config = crate::baremetal::diskless::path(&check::mac(&node.mac)?);
                let config = if self.root.join(&config).is_file() { format!(" mln.config={s}/{config}") } else { String::new() };
                let kernel = self.fetch("kernel", &format!("{dir}/vmlinuz"), &format!(" initrd=initrd {} {ip} mln.diskless{config}", f.params));
                format!("{head}{kernel}{}boot\n", self.fetch("initrd", &format!("{dir}/initrd"), ""))
            }
        })
    }

    /// Sets the node's lease and next boot. True when the leases changed
    /// (a DHCP server must re-read them).
    pub fn set(&self, node: &BootNode, profile: &BootProfile) -> Result<bool, NetBootError> {
        check::name("project", &node.project)?;
        check::name("host", &node.host)?;
        let mac = check::mac(&node.mac)?;
        let addr = self.subnet.host(&node.address)?;
        if addr == self.server {
            return Err(NetBootError::Refused(format!("{}: {addr} is the boot server's own address", node.host)));
        }
        let node = BootNode { mac: mac.clone(), address: addr.to_string(), ..node.clone() };
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut records = self.records()?;
        for r in &records {
            let same = r.node.project == node.project && r.node.host == node.host;
            if !same && r.node.mac == node.mac {
                return Err(NetBootError::Refused(format!("{}: MAC {} is already {}/{}'s", node.host, node.mac, r.node.project, r.node.host)));
            }
            if !same && r.node.address == node.address {
                return Err(NetBootError::Refused(format!("{}: address {} is already {}/{}'s", node.host, node.address, r.node.project, r.node.host)));
            }
        }
        let script = self.script(&node, profile)?;
        let before = Tree::leases_text(&records);
        // A node whose MAC changed leaves no script behind under the old one.
        if let Some(old) = records.iter().find(|r| r.node.project == node.project && r.node.host == node.host) {
            if old.node.mac != node.mac {
                let _ = std::fs::remove_file(self.root.join("nodes").join(format!("{}.ipxe", old.node.mac)));
            }
        }
        write_atomic(&self.root.join("nodes").join(format!("{mac}.ipxe")), script.as_bytes())?;
        let rec = Record { node: node.clone(), profile: profile.clone() };
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| NetBootError::Service { detail: e.to_string(), retry: false })?;
        write_atomic(&self.record_path(&node.project, &node.host), &json)?;
        records.retain(|r| !(r.node.project == node.project && r.node.host == node.host));
        records.push(rec);
        records.sort_by(|a, b| (&a.node.project, &a.node.host).cmp(&(&b.node.project, &b.node.host)));
        let after = Tree::leases_text(&records);
        if after != before {
            write_atomic(&self.records.join("leases"), after.as_bytes())?;
        }
        Ok(after != before)
    }

    /// The node's lease and script gone. True when there was one.
    pub fn forget(&self, project: &str, host: &str) -> Result<bool, NetBootError> {
        check::name("project", project)?;
        check::name("host", host)?;
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut records = self.records()?;
        let Some(i) = records.iter().position(|r| r.node.project == project && r.node.host == host) else { return Ok(false) };
        let r = records.remove(i);
        match std::fs::remove_file(self.root.join("nodes").join(format!("{}.ipxe", r.node.mac))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &self.root, e)),
        }
        let config = self.root.join(crate::baremetal::diskless::path(&r.node.mac));
        match std::fs::remove_file(&config) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &config, e)),
        }
        write_atomic(&self.records.join("leases"), Tree::leases_text(&records).as_bytes())?;
        let p = self.record_path(project, host);
        std::fs::remove_file(&p).map_err(|e| io("remove", &p, e))?;
        Ok(true)
    }

    /// A diskless node's configuration archive, at `config/<mac>.cpio`
    /// (the MAC checked: nothing else reaches the path).
    pub fn set_config(&self, mac: &str, archive: &[u8]) -> Result<(), NetBootError> {
        let p = self.root.join(crate::baremetal::diskless::path(&check::mac(mac)?));
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| io("make", d, e))?;
        }
        write_atomic(&p, archive)
    }

    /// Every node the service knows: (node, its next boot).
    pub fn nodes(&self) -> Result<Vec<(BootNode, BootProfile)>, NetBootError> {
        Ok(self.records()?.into_iter().map(|r| (r.node, r.profile)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn tree(dir: &Path) -> Tree {
        let k = dir.join("k");
        std::fs::write(&k, "kernel").unwrap();
        let mut t = Tree::new(dir.join("tftp"), dir.join("state"), Subnet::parse("10.78.5.0/24").unwrap(), "10.78.5.1".parse().unwrap()).unwrap();
        t.deploy = Some(DisklessFiles { kernel: k.clone(), initrd: k.clone(), params: "console=ttyS0".into() });
        let kk = k.clone();
        t.environments = Some(Arc::new(move |e: &EnvRef| {
            if e.name == "tiny" {
                Ok(DisklessFiles { kernel: kk.clone(), initrd: kk.clone(), params: "quiet".into() })
            } else {
                Err(format!("no environment {}", e.name))
            }
        }));
        t.prepare().unwrap();
        t
    }

    fn node(host: &str, mac: &str, addr: &str) -> BootNode {
        BootNode { project: "p".into(), host: host.into(), mac: mac.into(), address: addr.into() }
    }

    #[test]
    fn a_diskless_node_is_told_its_own_configuration_and_forgetting_it_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let t = tree(d.path());
        let n = node("n6", "52:54:00:AA:00:06", "10.78.5.16");
        let env = BootProfile::Diskless { environment: EnvRef { name: "tiny".into(), version: None } };
        t.set(&n, &env).unwrap();
        let script = || std::fs::read_to_string(d.path().join("tftp/nodes/52:54:00:aa:00:06.ipxe")).unwrap();
        assert!(!script().contains("mln.config"), "no archive yet: {}", script());
        t.set_config(&n.mac, b"archive").unwrap();
        let archive = d.path().join("tftp/config/52:54:00:aa:00:06.cpio");
        assert_eq!(std::fs::read(&archive).unwrap(), b"archive");
        t.set(&n, &env).unwrap();
        assert!(script().contains(" mln.diskless mln.config=10.78.5.1/config/52:54:00:aa:00:06.cpio\n"), "{}", script());
        assert!(t.set_config("../../etc/x", b"no").is_err());
        assert!(t.forget("p", "n6").unwrap());
        assert!(!archive.exists(), "the archive goes with the node");
    }

    /// Served over HTTP too: each file asked there first, TFTP the
    /// fallback, the kernel's arguments on both lines.
    #[test]
    fn with_http_the_scripts_fetch_over_http_first() {
        let d = tempfile::tempdir().unwrap();
        let mut t = tree(d.path());
        t.http = Some(7906);
        let n1 = node("n1", "52:54:00:aa:00:01", "10.78.5.11");
        t.set(&n1, &BootProfile::Deploy).unwrap();
        let s = std::fs::read_to_string(d.path().join("tftp/nodes/52:54:00:aa:00:01.ipxe")).unwrap();
        let args = "initrd=initrd console=ttyS0 mln.host=n1 mln.address=10.78.5.11/24";
        assert!(s.contains(&format!("\nkernel http://10.78.5.1:7906/deploy/vmlinuz {args} || kernel tftp://10.78.5.1/deploy/vmlinuz {args}\n")), "{s}");
        assert!(s.contains("\ninitrd http://10.78.5.1:7906/deploy/initrd || initrd tftp://10.78.5.1/deploy/initrd\nboot\n"), "{s}");
        t.set(&node("n2", "52:54:00:aa:00:02", "10.78.5.12"), &BootProfile::Diskless { environment: EnvRef { name: "tiny".into(), version: None } }).unwrap();
        let s = std::fs::read_to_string(d.path().join("tftp/nodes/52:54:00:aa:00:02.ipxe")).unwrap();
        assert!(s.contains("\nkernel http://10.78.5.1:7906/envs/tiny/vmlinuz initrd=initrd quiet mln.host=n2 mln.address=10.78.5.12/24 mln.diskless || kernel tftp://"), "{s}");
        assert!(s.contains("\ninitrd http://10.78.5.1:7906/envs/tiny/initrd || initrd tftp://10.78.5.1/envs/tiny/initrd\n"), "{s}");
    }

    #[test]
    fn profiles_scripts_and_leases() {
        let d = tempfile::tempdir().unwrap();
        let t = tree(d.path());
        assert!(std::fs::read_to_string(d.path().join("tftp/boot.ipxe")).unwrap().contains("chain tftp://10.78.5.1/nodes/${mac}.ipxe"));
        assert!(d.path().join("tftp/deploy/vmlinuz").exists());
        let n1 = node("n1", "52:54:00:AA:00:01", "10.78.5.11");
        assert!(t.set(&n1, &BootProfile::Deploy).unwrap(), "a new lease");
        let s = std::fs::read_to_string(d.path().join("tftp/nodes/52:54:00:aa:00:01.ipxe")).unwrap();
        assert!(s.contains("kernel tftp://10.78.5.1/deploy/vmlinuz initrd=initrd console=ttyS0 mln.host=n1 mln.address=10.78.5.11/24"), "{s}");
        assert!(!t.set(&n1, &BootProfile::Disk).unwrap(), "same lease, new script");
        assert!(std::fs::read_to_string(d.path().join("tftp/nodes/52:54:00:aa:00:01.ipxe")).unwrap().contains("sanboot --no-describe --drive 0x80 || exit"));
        t.set(&node("n2", "52:54:00:aa:00:02", "10.78.5.12"), &BootProfile::Diskless { environment: EnvRef { name: "tiny".into(), version: Some(2) } }).unwrap();
        let s = std::fs::read_to_string(d.path().join("tftp/nodes/52:54:00:aa:00:02.ipxe")).unwrap();
        assert!(s.contains("kernel tftp://10.78.5.1/envs/tiny-2/vmlinuz initrd=initrd quiet mln.host=n2") && s.contains("mln.diskless"), "{s}");
        assert!(d.path().join("tftp/envs/tiny-2/initrd").exists());
        assert_eq!(std::fs::read_to_string(d.path().join("state/leases")).unwrap(), "52:54:00:aa:00:01,10.78.5.11,n1\n52:54:00:aa:00:02,10.78.5.12,n2\n");
        assert!(t.forget("p", "n1").unwrap());
        assert!(!t.forget("p", "n1").unwrap());
        assert!(!d.path().join("tftp/nodes/52:54:00:aa:00:01.ipxe").exists());
        assert_eq!(std::fs::read_to_string(d.path().join("state/leases")).unwrap(), "52:54:00:aa:00:02,10.78.5.12,n2\n");
        assert_eq!(t.nodes().unwrap().len(), 1);
    }

    #[test]
    fn conflicts_and_hostile_values_are_refused_and_change_nothing() {
        let d = tempfile::tempdir().unwrap();
        let t = tree(d.path());
        t.set(&node("n1", "52:54:00:aa:00:01", "10.78.5.11"), &BootProfile::Disk).unwrap();
        let leases = std::fs::read_to_string(d.path().join("state/leases")).unwrap();
        for (n, p) in [
            (node("n2", "52:54:00:aa:00:01", "10.78.5.12"), BootProfile::Disk),
            (node("n2", "52:54:00:aa:00:02", "10.78.5.11"), BootProfile::Disk),
            (node("n2", "52:54:00:aa:00:02", "10.78.5.1"), BootProfile::Disk),
            (node("n2", "52:54:00:aa:00:02", "10.78.9.12"), BootProfile::Disk),
            (node("n2\ndhcp-boot=evil", "52:54:00:aa:00:02", "10.78.5.12"), BootProfile::Disk),
            (node("../n2", "52:54:00:aa:00:02", "10.78.5.12"), BootProfile::Disk),
            (node("n2", "52:54:00:aa:00:02,10.78.5.13", "10.78.5.12"), BootProfile::Disk),
            (node("n2", "52:54:00:aa:00:02", "10.78.5.12"), BootProfile::Diskless { environment: EnvRef { name: "nothere".into(), version: None } }),
            (node("n2", "52:54:00:aa:00:02", "10.78.5.12"), BootProfile::Diskless { environment: EnvRef { name: "../etc".into(), version: None } }),
        ] {
            assert!(matches!(t.set(&n, &p), Err(NetBootError::Refused(_))), "{n:?} {p:?}");
        }
        assert_eq!(std::fs::read_to_string(d.path().join("state/leases")).unwrap(), leases);
        assert_eq!(std::fs::read_dir(d.path().join("tftp/nodes")).unwrap().count(), 1);
        assert!(Tree::new(d.path().into(), d.path().into(), Subnet::parse("10.78.5.0/24").unwrap(), "10.78.6.1".parse().unwrap()).is_err());
    }
}
