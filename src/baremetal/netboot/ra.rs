//! "No IPv6 router here": an answer to router solicitations on the boot
//! network, so that iPXE stops waiting for one.
//!
//! iPXE configures a NIC with DHCPv4 and IPv6 router discovery at once and
//! goes on only when both are done; on a network with no IPv6 router its
//! solicitations back off for about 13 s before it gives up (seen on the
//! rig: DHCPACK, then 13 s of router solicitations, then the TFTP request
//! for `boot.ipxe`), and that is on every network boot, each power-on of a
//! node included. The first router advertisement it gets ends its router
//! discovery at once. This one says nothing: router lifetime 0 (not a
//! default router, RFC 4861 6.3.4), no prefix, no managed or other flag,
//! so no host that reads it configures anything (iPXE included: a
//! router with lifetime 0 is "non-existent" to it). dnsmasq sends router
//! advertisements only for prefixes configured on the interface, which
//! the boot network need not have.
//!
//! It runs in the process beside the dnsmasq mln starts
//! ([`super::companion`]); an interface without IPv6 (or a kernel that
//! refuses the socket) only costs the wait.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;

/// The router advertisement sent: type, code, checksum (the kernel fills
/// it in for ICMPv6 raw sockets), hop limit 0 (unspecified), no flags,
/// router lifetime 0, reachable time 0, retransmission timer 0.
pub fn advertisement() -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = ROUTER_ADVERTISEMENT;
    p
}

/// Whether an ICMPv6 message is a router solicitation (RFC 4861 4.1:
/// code 0, at least 8 bytes).
pub fn is_solicitation(msg: &[u8]) -> bool {
    msg.len() >= 8 && msg[0] == ROUTER_SOLICITATION && msg[1] == 0
}

/// Answers every router solicitation that reaches `interface` with
/// [`advertisement`] to all nodes, while `go_on` says so (asked every
/// second) and the interface exists.
pub fn serve(interface: &str, go_on: impl Fn() -> bool) -> std::io::Result<()> {
    let fd = open(interface)?;
    let ifindex = index(interface)?;
    let second = libc::timeval { tv_sec: 1, tv_usec: 0 };
    setopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &second)?;
    let mut buf = [0u8; 1500];
    loop {
        // SAFETY: the buffer and its length are ours.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if !matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                return Err(e);
            }
        } else if is_solicitation(&buf[..n as usize]) {
            send(&fd, ifindex, &advertisement())?;
        }
        // A socket bound to a device that went away just hears nothing.
        if !go_on() || index(interface).ok() != Some(ifindex) {
            return Ok(());
        }
    }
}

pub fn index(interface: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(interface).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        i => Ok(i),
    }
}

fn setopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a live T and its size is passed with it.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// A raw ICMPv6 socket on `interface` alone, in the all-routers group
/// (where solicitations go), sending with hop limit 255 (receivers drop
/// neighbour discovery that crossed a router) and not to itself.
pub fn open(interface: &str) -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2); the descriptor is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMPV6) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ifindex = index(interface)?;
    let name = interface.as_bytes();
    // SAFETY: the name's bytes and length.
    if unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), name.len() as libc::socklen_t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let group = libc::ipv6_mreq { ipv6mr_multiaddr: libc::in6_addr { s6_addr: ALL_ROUTERS }, ipv6mr_interface: ifindex };
    setopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &group)?;
    setopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &255i32)?;
    setopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &255i32)?;
    setopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &0i32)?;
    setopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &(ifindex as i32))?;
    Ok(fd)
}

/// ff02::2, where solicitations go.
pub const ALL_ROUTERS: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// `msg` to all nodes on the link (the link-local source is the kernel's
/// choice for a link-local destination).
pub fn send(fd: &OwnedFd, ifindex: u32, msg: &[u8]) -> std::io::Result<()> {
    send_to(fd, ifindex, ALL_NODES, msg)
}

/// `msg` to `addr` (link-local or multicast) on the link `ifindex`.
pub fn send_to(fd: &OwnedFd, ifindex: u32, addr: [u8; 16], msg: &[u8]) -> std::io::Result<()> {
    // SAFETY: sockaddr_in6 is plain data.
    let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    to.sin6_addr = libc::in6_addr { s6_addr: addr };
    to.sin6_scope_id = ifindex;
    // SAFETY: the message and address are live and their sizes passed.
    let n = unsafe {
        libc::sendto(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0, (&to as *const libc::sockaddr_in6).cast(), std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
    };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_says_no_router_and_nothing_else() {
        let a = advertisement();
        assert_eq!(a[0], 134, "a router advertisement");
        assert_eq!(a[1], 0, "code 0");
        assert_eq!(a[5], 0, "no managed or other-configuration flag: no DHCPv6");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 0, "router lifetime 0: not a default router");
        assert_eq!(a.len(), 16, "no option: no prefix");
    }

    #[test]
    fn only_well_formed_solicitations_are_answered() {
        assert!(is_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(is_solicitation(&[133, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0xb0, 0xbe, 1]));
        assert!(!is_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0]), "code must be 0");
        assert!(!is_solicitation(&[133, 0, 0, 0]), "too short");
        assert!(!is_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "an advertisement (ours, looped back) is not answered");
        assert!(!is_solicitation(&[135, 0, 0, 0, 0, 0, 0, 0]), "neighbour solicitation");
    }
}
