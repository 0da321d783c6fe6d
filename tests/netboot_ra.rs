//! The boot network's "no IPv6 router here" answer
//! (`baremetal::netboot::ra`), over a real link: a veth pair whose far end
//! is in a network namespace of this test's, where a router solicitation
//! is sent as iPXE sends it and the answer read back. Needs root (as CI).

use mln::baremetal::netboot::ra;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

fn must(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

struct Link {
    ns: String,
    near: String,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.near]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn a_router_solicitation_gets_an_advertisement_of_no_router() {
    let id = std::process::id();
    let link = Link { ns: format!("mlra{id}"), near: format!("mlra{id}a") };
    let far = format!("mlra{id}b");
    must(&format!("ip netns add {}", link.ns));
    must(&format!("ip link add {} type veth peer name {far} && ip link set {far} netns {}", link.near, link.ns));
    // No duplicate address detection: the link-local addresses are usable
    // as soon as the links are up.
    must(&format!("sysctl -qw net.ipv6.conf.{n}.disable_ipv6=0 net.ipv6.conf.{n}.accept_dad=0 && ip link set {n} up", n = link.near));
    must(&format!("ip netns exec {ns} sysctl -qw net.ipv6.conf.{far}.disable_ipv6=0 net.ipv6.conf.{far}.accept_dad=0 && ip netns exec {ns} ip link set {far} up", ns = link.ns));

    let near = link.near.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving = {
        let stop = stop.clone();
        std::thread::spawn(move || ra::serve(&near, || !stop.load(std::sync::atomic::Ordering::SeqCst)))
    };

    // The node's side, in the namespace (setns moves this thread only).
    let ns = link.ns.clone();
    let got = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| e.to_string())?;
        // SAFETY: setns on a namespace file we opened, for this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let fd = ra::open(&far).map_err(|e| format!("socket on {far}: {e}"))?;
        // This thread's namespace's index (sysfs shows the mounting one's).
        let name = std::ffi::CString::new(far.as_str()).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let tick = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
        // SAFETY: a timeval and its size.
        unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tick as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as u32) };
        let solicitation = [133u8, 0, 0, 0, 0, 0, 0, 0];
        let until = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 1500];
        // Again until answered: the responder's socket and the link-local
        // addresses take a moment.
        while Instant::now() < until {
            let _ = ra::send_to(&fd, ifindex, ra::ALL_ROUTERS, &solicitation);
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                // SAFETY: our buffer and its length.
                let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n > 0 && buf[0] == 134 {
                    return Ok(buf[..n as usize].to_vec());
                }
            }
        }
        Err("no router advertisement within 20 s".into())
    })
    .join()
    .unwrap()
    .unwrap();

    assert_eq!(got.len(), 16, "no option, so no prefix: {got:?}");
    assert_eq!(got[1], 0, "code 0");
    assert_ne!(u16::from_be_bytes([got[2], got[3]]), 0, "the kernel filled in the checksum");
    assert_eq!(got[5], 0, "no managed or other-configuration flag");
    assert_eq!(u16::from_be_bytes([got[6], got[7]]), 0, "router lifetime 0: nobody's default router");

    // It ends when told to, and when its interface goes.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(serving.join().unwrap().is_ok());
    let near = link.near.clone();
    let serving = std::thread::spawn(move || ra::serve(&near, || true));
    std::thread::sleep(Duration::from_millis(300));
    must(&format!("ip link del {}", link.near));
    assert!(serving.join().unwrap().is_ok(), "ended with its interface");
}
