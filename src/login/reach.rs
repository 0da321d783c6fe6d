//! Reaching a guest's SSH port from the machine that runs it, with no
//! configuration. mln's switches are bridges without addresses, so the
//! guest is reached over IPv6 link-local on its switch's bridge: the
//! bridge is given one fixed link-local address on first use (nothing
//! routes from it), and the guest is found by the MAC mln gave it, in the
//! neighbour table after a ping to all nodes, or by the EUI-64 address
//! the kernel derives from that MAC. An interface on a machine's own
//! bridge (`bridge br0`) with a planned IPv4 address is reached at that
//! address.

use super::LoginError;
use crate::plan::{Host, Plan};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The bridge's own address: outside EUI-64's space (no ff:fe in the
/// middle), so no guest derives it from a MAC.
pub const BRIDGE_ADDRESS: &str = "fe80::6d6c:6e00:0:1";

/// Where a guest's port may be, best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// On mln's bridge for a switch: link-local, found by MAC.
    LinkLocal { bridge: String, mac: String },
    /// A routable address the plan gives it.
    Address(std::net::IpAddr),
}

impl Route {
    /// As `mln ssh-proxy --route` takes it: the proxy needs no state
    /// database (several run at once under `mln exec`).
    pub fn to_arg(&self) -> String {
        match self {
            Route::LinkLocal { bridge, mac } => format!("ll/{bridge}/{mac}"),
            Route::Address(ip) => format!("ip/{ip}"),
        }
    }
    pub fn from_arg(s: &str) -> Result<Route, String> {
        let bad = || format!("not a route: {s}");
        match s.split('/').collect::<Vec<_>>()[..] {
            // A bridge name goes into a /sys path and an `ip` command line.
            ["ll", bridge, mac] if !bridge.is_empty() && bridge.len() <= 15 && bridge.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
                eui64(mac).ok_or_else(bad)?;
                Ok(Route::LinkLocal { bridge: bridge.into(), mac: mac.to_lowercase() })
            }
            ["ip", ip] => ip.parse().map(Route::Address).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

pub fn routes(plan: &Plan, h: &Host) -> Vec<Route> {
    let mut out = Vec::new();
    for i in &h.interfaces {
        if let Some(sw) = &i.switch {
            let attached = plan.switches.iter().find(|s| &s.name == sw).filter(|s| s.attach).map(|s| s.bridge.clone());
            match attached {
                None => out.push(Route::LinkLocal { bridge: crate::backend::bridge::name(&plan.project, sw), mac: i.mac.to_lowercase() }),
                Some(_) => out.extend(i.address.as_deref().and_then(|a| a.parse().ok()).map(Route::Address)),
            }
        } else if i.bridge.is_some() {
            out.extend(i.address.as_deref().and_then(|a| a.parse().ok()).map(Route::Address));
        }
    }
    out
}

/// The link-local address the kernel derives from a MAC (EUI-64).
pub fn eui64(mac: &str) -> Option<Ipv6Addr> {
    let b: Vec<u8> = mac.split(':').map(|x| u8::from_str_radix(x, 16)).collect::<Result<_, _>>().ok()?;
    let [a, b1, c, d, e, f] = <[u8; 6]>::try_from(b).ok()?;
    let s = |hi: u8, lo: u8| (u16::from(hi) << 8) | u16::from(lo);
    Some(Ipv6Addr::new(0xfe80, 0, 0, 0, s(a ^ 2, b1), s(c, 0xff), s(0xfe, d), s(e, f)))
}

fn ifindex(bridge: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{bridge}/ifindex")).ok()?.trim().parse().ok()
}

/// Gives the bridge its link-local address unless it has it.
fn ensure_address(bridge: &str) -> Result<(), String> {
    let has = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default().lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() == 6 && w[5] == bridge && w[0].starts_with("fe80")
    });
    if has {
        return Ok(());
    }
    let out = Command::new("ip")
        .args(["-6", "addr", "add", &format!("{BRIDGE_ADDRESS}/64"), "dev", bridge, "nodad"])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("exists") {
        Ok(())
    } else {
        Err(format!("cannot give bridge {bridge} a link-local address: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Addresses the neighbour table has for `mac` on `bridge`, after asking
/// every node on the link to answer.
fn neighbours(bridge: &str, mac: &str) -> Vec<Ipv6Addr> {
    let _ = Command::new("ping").args(["-6", "-c", "2", "-i", "0.2", "-w", "1", &format!("ff02::1%{bridge}")]).output();
    let Ok(out) = Command::new("ip").args(["-6", "neigh", "show", "dev", bridge]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.to_lowercase().contains(&format!("lladdr {mac}")))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// A TCP connection to the guest's `port`, from this machine.
pub fn connect(host: &str, routes: &[Route], port: u16) -> Result<TcpStream, LoginError> {
    let unreachable = |message: String| LoginError::Unreachable { host: host.into(), message };
    if routes.is_empty() {
        return Err(unreachable("no interface on a switch or bridge of this machine".into()));
    }
    let mut tried = Vec::new();
    for r in routes {
        let addrs: Vec<SocketAddr> = match r {
            Route::Address(ip) => vec![SocketAddr::new(*ip, port)],
            Route::LinkLocal { bridge, mac } => {
                let Some(index) = ifindex(bridge) else {
                    tried.push(format!("bridge {bridge} is not on this machine"));
                    continue;
                };
                if let Err(e) = ensure_address(bridge) {
                    tried.push(e);
                    continue;
                }
                let mut v: Vec<Ipv6Addr> = eui64(mac).into_iter().collect();
                // The EUI-64 guess first: a guest that uses it answers
                // without the ping's wait.
                let mut found = Vec::new();
                if let Some(a) = v.first() {
                    if let Ok(s) = TcpStream::connect_timeout(&SocketAddr::V6(SocketAddrV6::new(*a, port, 0, index)), Duration::from_secs(2)) {
                        return Ok(s);
                    }
                    tried.push(format!("[{a}%{bridge}]:{port}"));
                }
                found.extend(neighbours(bridge, mac).into_iter().filter(|a| !v.contains(a)));
                v = found;
                v.into_iter().map(|a| SocketAddr::V6(SocketAddrV6::new(a, port, 0, index))).collect()
            }
        };
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(3)) {
                Ok(s) => return Ok(s),
                Err(e) => tried.push(format!("{a}: {e}")),
            }
        }
    }
    Err(unreachable(format!("SSH port not reachable ({})", tried.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_flips_the_local_bit_and_inserts_fffe() {
        assert_eq!(eui64("52:54:00:12:34:56"), Some("fe80::5054:ff:fe12:3456".parse().unwrap()));
        assert_eq!(eui64("52:54:00:12:34"), None);
        assert_eq!(eui64("zz:54:00:12:34:56"), None);
    }

    #[test]
    fn routes_go_through_the_command_line_and_bad_ones_are_refused() {
        for r in [Route::LinkLocal { bridge: "mlnab12".into(), mac: "52:54:00:12:34:56".into() }, Route::Address("10.0.0.1".parse().unwrap())] {
            assert_eq!(Route::from_arg(&r.to_arg()), Ok(r));
        }
        for bad in ["ll/../52:54:00:12:34:56", "ll/br0/xx", "ip/10.0.0", "x", "ll/br 0/52:54:00:12:34:56"] {
            assert!(Route::from_arg(bad).is_err(), "{bad}");
        }
    }
}
