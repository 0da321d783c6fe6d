//! Network boot: static DHCP leases bound to the plan's MACs and
//! addresses, a TFTP tree and one iPXE script per node saying what it
//! boots next. Served by a dnsmasq mln runs ([`Dnsmasq`]) or written into
//! an existing PXE server's directory ([`PxeDir`]).
//!
//! The chain: the firmware's PXE ROM (iPXE in QEMU; `undionly.kpxe` chained
//! for a plain PXE ROM) asks DHCP, gets `boot.ipxe`, which chains to
//! `nodes/<mac>.ipxe`. Changing a node's next boot rewrites that one file.
//! Beside mln's dnsmasq, its [`companion`] serves the same tree's kernels
//! and initrds over HTTP, which the scripts ask first.
//! Every name and value that reaches a file here comes from the project
//! file, which is not trusted: each is checked first ([`check`]).

pub mod check;
pub mod companion;
pub mod dnsmasq;
pub mod http;
pub mod ra;
pub mod tree;

pub use dnsmasq::Dnsmasq;
pub use tree::{DisklessFiles, Environments, Tree};

use super::{BootNode, BootProfile, NetBoot, NetBootError};

/// Profiles written into an existing PXE server's TFTP directory; its
/// DHCP server is the site's (the leases it should hold are written to
/// `mln-leases`, in dnsmasq's dhcp-hostsfile form, for its admin).
pub struct PxeDir {
    pub tree: Tree,
}

impl NetBoot for PxeDir {
    fn set_profile(&self, node: &BootNode, profile: &BootProfile) -> Result<(), NetBootError> {
        self.tree.set(node, profile).map(drop)
    }

    fn forget(&self, project: &str, host: &str) -> Result<(), NetBootError> {
        self.tree.forget(project, host).map(drop)
    }
}

/// Whether a process has ended: gone, or a zombie its new parent has not
/// reaped yet (a daemon's parent is init, which may take seconds to).
pub(crate) fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// Waits up to 2 s for `pid` to have [`ended`]; whether it did.
pub(crate) fn wait_ended(pid: i32) -> bool {
    for _ in 0..100 {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

pub(crate) fn io(what: &str, p: &std::path::Path, e: std::io::Error) -> NetBootError {
    NetBootError::Service { detail: format!("cannot {what} {}: {e}", p.display()), retry: false }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_zombie_has_ended_and_a_running_process_has_not() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(!super::ended(pid));
        assert!(!super::ended(std::process::id() as i32));
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Not reaped yet: a zombie, as a killed daemon is until init reaps it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !super::ended(pid) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(super::ended(pid), "a killed, unreaped child");
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_ok(), "still in /proc: a zombie");
        child.wait().unwrap();
        assert!(super::ended(pid));
    }
}
