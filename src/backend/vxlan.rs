//! A switch over several machines: its bridge on each gets a VXLAN port
//! whose flood entries point at the other machines by unicast (no
//! multicast on the fabric network), and learning is off, so frames go
//! only where the segment says. Two projects never share a segment: their
//! VNIs differ, and the kernel refuses a second port with a VNI already in
//! use on a machine.
//!
//! The port keeps the guests' MTU of 1500, so an encapsulated full frame
//! is 1550 bytes on the fabric network: it must carry that (book:
//! network), and a path that does not gets a note at build.

use super::bridge;
use crate::local_error::LocalError;
use crate::plan::Segment;
use std::net::IpAddr;
use std::process::Command;

/// VXLAN's IANA port.
const PORT: &str = "4789";
/// What VXLAN over UDP over IP adds to an Ethernet frame (IPv4).
const OVERHEAD: u32 = 50;
/// Flood entries have the all-zero MAC address.
const FLOOD: &str = "00:00:00:00:00:00";

/// The port's interface name, from its bridge's (a hash already: no
/// other project's).
pub fn name(bridge: &str) -> String {
    match bridge.strip_prefix("mln") {
        Some(rest) => format!("mlx{rest}"),
        None => format!("mlx{}", &bridge[bridge.len().saturating_sub(12)..]),
    }
}

fn run(tool: &'static str, args: &[&str]) -> Result<String, LocalError> {
    let out = Command::new(tool).args(args).output().map_err(|source| LocalError::Missing { tool, source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LocalError::Tool { tool: format!("{tool} {}", args.join(" ")), message: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// The VNI and local address of an existing port.
fn current(port: &str) -> Option<(u32, Option<IpAddr>)> {
    let out = run("ip", &["-d", "-j", "link", "show", "dev", port]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let data = &v.get(0)?["linkinfo"]["info_data"];
    let vni = u32::try_from(data["id"].as_u64()?).ok()?;
    let local = data["local"].as_str().or(data["local6"].as_str()).and_then(|s| s.parse().ok());
    Some((vni, local))
}

/// The peers a port floods to now.
fn flood_peers(port: &str) -> Result<Vec<IpAddr>, LocalError> {
    let out = run("bridge", &["-j", "fdb", "show", "dev", port])?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    Ok(v.as_array()
        .map(|a| a.iter().filter(|e| e["mac"] == FLOOD).filter_map(|e| e["dst"].as_str()?.parse().ok()).collect())
        .unwrap_or_default())
}

/// Makes `bridge`'s port for `seg`, or brings an existing one to it: the
/// right VNI and local address (else made anew), flood entries for
/// exactly the peers. Returns a warning when the fabric network toward a
/// peer cannot carry a full encapsulated frame.
pub fn ensure(bridge_name: &str, seg: &Segment) -> Result<Option<String>, LocalError> {
    if seg.vni == 0 || seg.vni > 0x00ff_ffff {
        return Err(LocalError::Refused(format!("VXLAN network identifier {} is out of range (1 to 16777215)", seg.vni)));
    }
    if seg.peers.iter().any(|p| p.is_ipv4() != seg.local.is_ipv4()) {
        return Err(LocalError::Refused(format!("the switch's machines mix IPv4 and IPv6 fabric addresses (this one: {})", seg.local)));
    }
    let port = name(bridge_name);
    if let Some((vni, local)) = current(&port) {
        if vni != seg.vni || local != Some(seg.local) {
            run("ip", &["link", "del", "dev", &port])?;
        }
    }
    let (vni, local) = (seg.vni.to_string(), seg.local.to_string());
    if !bridge::exists(&port) {
        run("ip", &["link", "add", "name", &port, "type", "vxlan", "id", &vni, "local", &local, "dstport", PORT, "nolearning"])?;
        run("ip", &["link", "set", "dev", &port, "mtu", "1500", "addrgenmode", "none"])?;
    }
    run("ip", &["link", "set", "dev", &port, "master", bridge_name])?;
    let now = flood_peers(&port)?;
    for p in seg.peers.iter().filter(|p| !now.contains(p)) {
        run("bridge", &["fdb", "append", FLOOD, "dev", &port, "dst", &p.to_string()])?;
    }
    for p in now.iter().filter(|p| !seg.peers.contains(p)) {
        run("bridge", &["fdb", "del", FLOOD, "dev", &port, "dst", &p.to_string()])?;
    }
    run("ip", &["link", "set", "dev", &port, "up"])?;
    Ok(narrow_path(seg))
}

/// Whether the route to some peer has an MTU below a full frame plus the
/// encapsulation (such frames are then fragmented, or refused with DF).
fn narrow_path(seg: &Segment) -> Option<String> {
    let narrow: Vec<String> = seg
        .peers
        .iter()
        .filter_map(|p| {
            let out = run("ip", &["-j", "route", "get", &p.to_string()]).ok()?;
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            let dev = v.get(0)?["dev"].as_str()?.to_string();
            let mtu: u32 = std::fs::read_to_string(std::path::Path::new("/sys/class/net").join(&dev).join("mtu")).ok()?.trim().parse().ok()?;
            (mtu < 1500 + OVERHEAD).then(|| format!("{p} (via {dev}, MTU {mtu})"))
        })
        .collect();
    (!narrow.is_empty()).then(|| {
        format!(
            "the fabric network toward {} carries less than {} bytes: guests' full 1500-byte frames are fragmented on the way (book: network)",
            narrow.join(", "),
            1500 + OVERHEAD
        )
    })
}

/// Removes a port; one already gone is fine.
pub fn remove(port: &str) -> Result<(), LocalError> {
    if !bridge::exists(port) {
        return Ok(());
    }
    run("ip", &["link", "del", "dev", port]).map(|_| ())
}
