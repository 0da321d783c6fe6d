//! The dnsmasq mln runs for network boot: DHCP for the plan's MACs only
//! (static leases, re-read on SIGHUP), TFTP from the tree, no DNS, bound
//! to the boot network's interface alone so it never answers elsewhere;
//! its companion process beside it (IPv6 router answer, HTTP).

use super::check;
use super::io;
use super::tree::Tree;
use crate::baremetal::{BootNode, BootProfile, NetBoot, NetBootError};
use std::path::PathBuf;
use std::process::Command;

pub struct Dnsmasq {
    pub tree: Tree,
    /// The interface (bridge) of the boot network.
    pub interface: String,
    /// The program (tests may point at another).
    pub program: PathBuf,
}

impl Dnsmasq {
    /// Its scripts fetch the boot files over HTTP first, from its
    /// companion ([`super::http`]).
    pub fn new(mut tree: Tree, interface: &str) -> Result<Dnsmasq, NetBootError> {
        check::interface(interface)?;
        tree.http = Some(super::http::PORT);
        Ok(Dnsmasq { tree, interface: interface.into(), program: PathBuf::from("dnsmasq") })
    }

    pub fn conf_path(&self) -> PathBuf {
        self.tree.records.join("dnsmasq.conf")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.tree.records.join("dnsmasq.pid")
    }

    /// The configuration: everything else dnsmasq would do is off.
    pub fn config(&self) -> String {
        let r = &self.tree.records;
        let s = &self.tree.subnet;
        format!(
            "# Written by mln: network boot of bare-metal nodes. Do not edit.\n\
             port=0\n\
             interface={iface}\n\
             except-interface=lo\n\
             bind-interfaces\n\
             listen-address={server}\n\
             # Addresses only for the static leases below (the plan's MACs).\n\
             dhcp-range={net},static,{mask},1h\n\
             dhcp-hostsfile={r}/leases\n\
             dhcp-leasefile={r}/dnsmasq.leases\n\
             dhcp-ignore=tag:!known\n\
             # iPXE (QEMU's ROM, or undionly.kpxe chained) gets the script.\n\
             dhcp-userclass=set:ipxe,iPXE\n\
             dhcp-match=set:ipxe,175\n\
             dhcp-boot=tag:!ipxe,undionly.kpxe,,{server}\n\
             dhcp-boot=tag:ipxe,boot.ipxe,,{server}\n\
             # iPXE's no-pxedhcp: no ProxyDHCP offers to wait for (iPXE\n\
             # waited about 2 s for them after the first offer).\n\
             dhcp-option=tag:ipxe,encap:175,176,1b\n\
             enable-tftp\n\
             tftp-root={root}\n\
             # The tree is in mln's private state directory, which the\n\
             # dnsmasq user cannot enter: TFTP reads it as root.\n\
             user=root\n\
             pid-file={pid}\n\
             log-facility={r}/dnsmasq.log\n\
             log-dhcp\n",
            iface = self.interface,
            server = self.tree.server,
            net = s.network,
            mask = s.netmask(),
            r = r.display(),
            root = self.tree.root.display(),
            pid = self.pid_path().display(),
        )
    }

    /// The running dnsmasq's pid, if it is ours (a pid file whose
    /// process runs with our configuration: a reused pid is not).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_path()).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let conf = self.conf_path();
        let ours = cmdline.split(|b| *b == 0).any(|a| a == format!("--conf-file={}", conf.display()).as_bytes());
        ours.then_some(pid)
    }

    /// Writes the tree and the configuration, starts dnsmasq or has the
    /// running one re-read its leases.
    pub fn start(&self) -> Result<(), NetBootError> {
        for p in [&self.tree.records, &self.tree.root] {
            std::fs::create_dir_all(p).map_err(|e| io("make", p, e))?;
        }
        self.tree.prepare()?;
        let conf = self.config();
        let path = self.conf_path();
        let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(conf.as_str());
        if changed {
            std::fs::write(&path, &conf).map_err(|e| io("write", &path, e))?;
        }
        if let Some(pid) = self.pid() {
            if !changed {
                self.companion().ensure(pid);
                return self.reload();
            }
            self.stop()?;
        }
        let out = Command::new(&self.program)
            .arg(format!("--conf-file={}", path.display()))
            .output()
            .map_err(|e| NetBootError::Service { detail: format!("cannot run {}: {e}", self.program.display()), retry: false })?;
        if !out.status.success() {
            return Err(NetBootError::Service {
                detail: format!("dnsmasq did not start: {}", crate::term::escape(String::from_utf8_lossy(&out.stderr).trim())),
                retry: false,
            });
        }
        // It forks; the pid file is written before the parent exits.
        if self.pid().is_none() {
            return Err(NetBootError::Service { detail: format!("dnsmasq started but {} names no process of ours", self.pid_path().display()), retry: true });
        }
        if let Some(pid) = self.pid() {
            self.companion().ensure(pid);
        }
        Ok(())
    }

    /// The process beside it: the IPv6 "no router here" answer and the
    /// boot files over HTTP ([`super::companion`]).
    pub fn companion(&self) -> super::companion::Companion {
        let http = self.tree.http.map(|port| ((self.tree.server, port).into(), self.tree.root.clone()));
        super::companion::Companion { records: self.tree.records.clone(), interface: self.interface.clone(), http }
    }

    /// SIGHUP: the leases file is read again.
    pub fn reload(&self) -> Result<(), NetBootError> {
        match self.pid() {
            Some(pid) => signal(pid, libc::SIGHUP),
            None => Err(NetBootError::Service { detail: "dnsmasq is not running".into(), retry: true }),
        }
    }

    /// Stops it (if running) and waits until it is gone.
    pub fn stop(&self) -> Result<(), NetBootError> {
        self.companion().stop();
        let Some(pid) = self.pid() else { return Ok(()) };
        signal(pid, libc::SIGTERM)?;
        if super::wait_ended(pid) {
            let _ = std::fs::remove_file(self.pid_path());
            return Ok(());
        }
        Err(NetBootError::Service { detail: format!("dnsmasq ({pid}) did not stop within 2 s"), retry: true })
    }
}

fn signal(pid: i32, sig: i32) -> Result<(), NetBootError> {
    // SAFETY: kill(2) with a pid we read and checked as our dnsmasq.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(NetBootError::Service { detail: format!("cannot signal dnsmasq ({pid}): {}", std::io::Error::last_os_error()), retry: true })
    }
}

impl NetBoot for Dnsmasq {
    fn set_profile(&self, node: &BootNode, profile: &BootProfile) -> Result<(), NetBootError> {
        if self.tree.set(node, profile)? {
            // Not running: the leases are read when it starts.
            if self.pid().is_some() {
                self.reload()?;
            }
        }
        Ok(())
    }

    fn forget(&self, project: &str, host: &str) -> Result<(), NetBootError> {
        if self.tree.forget(project, host)? && self.pid().is_some() {
            self.reload()?;
        }
        Ok(())
    }

    fn idle(&self) -> Result<bool, NetBootError> {
        if !self.tree.nodes()?.is_empty() || self.pid().is_none() {
            return Ok(false);
        }
        self.stop().map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::netboot::check::Subnet;

    #[test]
    fn the_configuration_serves_only_the_boot_network_and_no_dns() {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::new(d.path().join("tftp"), d.path().join("st"), Subnet::parse("10.78.5.0/24").unwrap(), "10.78.5.1".parse().unwrap()).unwrap();
        assert!(Dnsmasq::new(Tree::new(d.path().into(), d.path().into(), t.subnet, t.server).unwrap(), "br0\ninterface=eth0").is_err());
        let m = Dnsmasq::new(t, "mlb7").unwrap();
        let c = m.config();
        for want in ["port=0\n", "interface=mlb7\n", "bind-interfaces\n", "dhcp-range=10.78.5.0,static,255.255.255.0,1h\n", "dhcp-ignore=tag:!known\n", "enable-tftp\n", "dhcp-boot=tag:ipxe,boot.ipxe,,10.78.5.1\n"] {
            assert!(c.contains(want), "{want:?} in\n{c}");
        }
        assert!(c.contains(&format!("tftp-root={}/tftp\n", d.path().display())));
        assert_eq!(m.pid(), None, "no pid file: not running");
        m.stop().unwrap();
        assert!(m.reload().is_err());
    }

    /// dnsmasq really starts on the configuration (on loopback's address
    /// range is refused by its checks, so only the syntax: --test).
    #[test]
    fn dnsmasq_accepts_the_configuration() {
        if Command::new("dnsmasq").arg("--version").output().is_err() {
            eprintln!("dnsmasq is not installed (scripts/setup.sh): skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let t = Tree::new(d.path().join("tftp"), d.path().join("st"), Subnet::parse("10.78.5.0/24").unwrap(), "10.78.5.1".parse().unwrap()).unwrap();
        let m = Dnsmasq::new(t, "mlb7").unwrap();
        std::fs::create_dir_all(d.path().join("st")).unwrap();
        std::fs::write(m.conf_path(), m.config()).unwrap();
        let out = Command::new("dnsmasq").arg("--test").arg(format!("--conf-file={}", m.conf_path().display())).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
