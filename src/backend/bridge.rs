//! Switches as isolated Linux bridges: one per project and switch, with no
//! address and no uplink, so guests on a switch reach each other and
//! nothing else. The embedded libvirt driver has no network driver, so mln
//! makes the bridges itself (this needs root) and libvirt plugs each
//! guest's tap into its bridge.

use crate::local_error::LocalError;
use sha2::{Digest, Sha256};
use std::process::Command;

/// A name no other project's switch gets (Linux allows 15 characters).
pub fn name(project: &str, switch: &str) -> String {
    let d = Sha256::digest(format!("{project}/{switch}").as_bytes());
    format!("mln{}", d[..5].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn ip(args: &[&str]) -> Result<(), LocalError> {
    let out = Command::new("ip").args(args).output().map_err(|source| LocalError::Missing { tool: "ip", source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LocalError::Tool { tool: format!("ip {}", args.join(" ")), message: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

pub fn exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Makes the bridge unless it exists. No IPv6 address on the host side
/// either: the host takes no part in the switch.
pub fn ensure(name: &str) -> Result<(), LocalError> {
    if exists(name) {
        return Ok(());
    }
    ip(&["link", "add", "name", name, "type", "bridge"])?;
    ip(&["link", "set", "dev", name, "addrgenmode", "none"])?;
    ip(&["link", "set", "dev", name, "up"])
}

/// Removes the bridge; one already gone is fine.
pub fn remove(name: &str) -> Result<(), LocalError> {
    if !exists(name) {
        return Ok(());
    }
    ip(&["link", "del", "dev", name])
}
