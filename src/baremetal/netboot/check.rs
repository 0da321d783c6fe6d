//! Checks of what reaches the boot service's files (dnsmasq's
//! configuration, iPXE scripts, file names): from the project file, so a
//! newline or a `/` must never get through.

use crate::baremetal::NetBootError;
use std::net::Ipv4Addr;

fn refuse(s: String) -> NetBootError {
    NetBootError::Refused(s)
}

/// A MAC as `aa:bb:cc:dd:ee:ff` (lower case; upper case is accepted and
/// lowered, as the plan may hold either).
pub fn mac(m: &str) -> Result<String, NetBootError> {
    let lower = m.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split(':').collect();
    if parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())) {
        let first = u8::from_str_radix(parts[0], 16).unwrap_or(1);
        if first & 1 == 1 {
            return Err(refuse(format!("{m:?} is a multicast MAC address, not a node's")));
        }
        Ok(lower)
    } else {
        Err(refuse(format!("{m:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))
    }
}

/// A name that becomes part of a file name or a DHCP host name.
pub fn name(what: &str, n: &str) -> Result<(), NetBootError> {
    let ok = !n.is_empty() && n.len() <= 63 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') && !n.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(refuse(format!("{what} {:?} cannot be used in network-boot files (letters, digits, - and _ only)", crate::term::escape(n))))
    }
}

/// A version or environment name as part of a path: as `name`, plus dots
/// (never `.` or `..`).
pub fn path_word(what: &str, n: &str) -> Result<(), NetBootError> {
    let ok = !n.is_empty() && n.len() <= 100 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !n.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(refuse(format!("{what} {:?} cannot be used as a file name", crate::term::escape(n))))
    }
}

/// A network interface name (Linux: at most 15 bytes, no `/`).
pub fn interface(n: &str) -> Result<(), NetBootError> {
    let ok = !n.is_empty() && n.len() <= 15 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !n.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(refuse(format!("{:?} is not a network interface name", crate::term::escape(n))))
    }
}

/// An IPv4 subnet `a.b.c.d/len` (the host bits are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, NetBootError> {
        let bad = || refuse(format!("{:?} is not an IPv4 subnet (a.b.c.d/len)", crate::term::escape(s)));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(refuse(format!("subnet {s}: a prefix of 8 to 30 bits is needed")));
        }
        Ok(Subnet { network: Ipv4Addr::from(u32::from(a) & Subnet::bits(prefix)), prefix })
    }

    fn bits(prefix: u8) -> u32 {
        u32::MAX << (32 - prefix as u32)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Subnet::bits(self.prefix))
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !Subnet::bits(self.prefix))
    }

    /// A node's address: in the subnet, neither its network nor its
    /// broadcast address.
    pub fn host(&self, a: &str) -> Result<Ipv4Addr, NetBootError> {
        let ip: Ipv4Addr = a.parse().map_err(|_| refuse(format!("{:?} is not an IPv4 address", crate::term::escape(a))))?;
        if u32::from(ip) & Subnet::bits(self.prefix) != u32::from(self.network) || ip == self.network || ip == self.broadcast() {
            return Err(refuse(format!("{ip} is not a node address of the boot network {}/{}", self.network, self.prefix)));
        }
        Ok(ip)
    }
}

/// Kernel parameters as one line (no control characters).
pub fn kernel_params(p: &str) -> Result<(), NetBootError> {
    if p.chars().any(|c| c.is_control()) {
        Err(refuse(format!("kernel parameters {:?} hold a control character", crate::term::escape(p))))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused() {
        assert_eq!(mac("52:54:00:AB:cd:01").unwrap(), "52:54:00:ab:cd:01");
        for m in ["52:54:00:ab:cd", "52:54:00:ab:cd:0g", "52:54:00:ab:cd:01\ndhcp-boot=x", "01:00:5e:00:00:01", "../../etc/pa"] {
            assert!(mac(m).is_err(), "{m}");
        }
        assert!(name("host", "node-1").is_ok());
        for n in ["", "a/b", "a\nb", "-x", "a b", "..", &"x".repeat(64)] {
            assert!(name("host", n).is_err(), "{n:?}");
        }
        assert!(path_word("version", "1.2").is_ok() && path_word("version", "..").is_err() && path_word("v", "a/b").is_err());
        assert!(interface("mlb42").is_ok() && interface("a\nb").is_err() && interface("waytoolonganinterface").is_err());
        let s = Subnet::parse("10.78.5.9/24").unwrap();
        assert_eq!((s.network, s.netmask()), ("10.78.5.0".parse().unwrap(), "255.255.255.0".parse().unwrap()));
        assert!(s.host("10.78.5.20").is_ok());
        for a in ["10.78.6.20", "10.78.5.0", "10.78.5.255", "10.78.5.20\n", "x"] {
            assert!(s.host(a).is_err(), "{a:?}");
        }
        assert!(Subnet::parse("10.0.0.0/32").is_err() && Subnet::parse("10.0.0.0").is_err());
        assert!(kernel_params("console=ttyS0 quiet").is_ok() && kernel_params("a\nb").is_err());
    }
}
