//! Network boot: static DHCP leases bound to the plan's MACs and
//! addresses, a TFTP tree and one iPXE script per node saying what it
//! boots next. Served by a dnsmasq mln runs ([`Dnsmasq`]) or written into
//! an existing PXE server's directory ([`PxeDir`]).
//!
//! The chain: the firmware's PXE ROM (iPXE in QEMU; `undionly.kpxe` chained
//! for a plain PXE ROM) asks DHCP, gets `boot.ipxe`, which chains to
//! `nodes/<mac>.ipxe`. Changing a node's next boot rewrites that one file.
//! Every name and value that reaches a file here comes from the project
//! file, which is not trusted: each is checked first ([`check`]).

pub mod check;
pub mod dnsmasq;
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

pub(crate) fn io(what: &str, p: &std::path::Path, e: std::io::Error) -> NetBootError {
    NetBootError::Service { detail: format!("cannot {what} {}: {e}", p.display()), retry: false }
}
