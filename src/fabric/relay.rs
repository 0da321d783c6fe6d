//! Pipelined file relay (as Kascade does): every receiver writes what it
//! gets to disk and, at the same time, sends it on to its downstream
//! peers from its own copy. A dead downstream peer is skipped: the next
//! candidate is asked how much it already has and is sent the rest, so
//! the chain closes over the dead host. Every hop checks the SHA-256.
//!
//! On the wire (TCP, between hosts of the fabric): the sender writes the
//! transfer's token and a newline; the receiver answers with how many
//! bytes it already has (8 bytes, big-endian); the sender sends the rest
//! and closes. The token is random per transfer (from the OS random
//! source only) and travels over SSH. A receiver listens only on the
//! address its peers use, handles every connection at once, drops one
//! that has not sent the whole token within two seconds or sent a wrong
//! one (compared in constant time), so an idle or hostile connection
//! never holds up the sender.

use super::proto::{Downstream, Peer, Received};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 20;
/// How long a receiver waits with no data before giving up.
const STALL: Duration = Duration::from_secs(30);

/// How far the local copy has got.
pub struct Progress {
    state: Mutex<(u64, Option<bool>)>,
    cv: Condvar,
}

impl Progress {
    pub fn new(have: u64, finished: Option<bool>) -> Arc<Progress> {
        Arc::new(Progress { state: Mutex::new((have, finished)), cv: Condvar::new() })
    }
    fn set(&self, have: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = have;
        self.cv.notify_all();
    }
    fn finish(&self, ok: bool) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(ok);
        self.cv.notify_all();
    }
    /// Waits until more than `pos` bytes are there; None if the copy failed.
    fn wait_past(&self, pos: u64) -> Option<u64> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if g.0 > pos {
                return Some(g.0);
            }
            if g.1 == Some(false) {
                return None;
            }
            g = self.cv.wait_timeout(g, Duration::from_millis(500)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Sends `file` (growing as `progress` says, up to `size`) down one link,
/// trying its candidates in order. Returns (sent to, skipped).
pub fn forward(file: &File, size: u64, progress: &Progress, token: &str, candidates: &[Peer]) -> (Option<String>, Vec<String>) {
    let mut skipped = Vec::new();
    for peer in candidates {
        match send_to(file, size, progress, token, peer) {
            Ok(()) => return (Some(peer.name.clone()), skipped),
            Err(Fatal(true, _)) => return (None, skipped),
            Err(Fatal(false, e)) => {
                eprintln!("relay: {}: {e}; trying the next host", peer.name);
                skipped.push(peer.name.clone());
            }
        }
    }
    (None, skipped)
}

/// An error sending; `.0` is true when our own copy failed (no use trying
/// another peer).
struct Fatal(bool, String);

fn send_to(file: &File, size: u64, progress: &Progress, token: &str, peer: &Peer) -> Result<(), Fatal> {
    let addr = peer
        .addr
        .to_socket_addrs()
        .map_err(|e| Fatal(false, format!("cannot resolve {}: {e}", peer.addr)))?
        .next()
        .ok_or_else(|| Fatal(false, format!("{} has no address", peer.addr)))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| Fatal(false, format!("cannot connect to {}: {e}", peer.addr)))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.set_write_timeout(Some(STALL)).ok();
    let io = |e: std::io::Error| Fatal(false, e.to_string());
    s.write_all(format!("{token}\n").as_bytes()).map_err(io)?;
    let mut have = [0u8; 8];
    s.read_exact(&mut have).map_err(|e| Fatal(false, format!("no answer: {e}")))?;
    let mut pos = u64::from_be_bytes(have);
    use std::os::fd::AsRawFd;
    while pos < size {
        let avail = progress.wait_past(pos).ok_or_else(|| Fatal(true, "our copy failed".into()))?;
        // sendfile: the kernel sends from the page cache, no copy through
        // here (measured: the relay is CPU-bound in the kernel otherwise).
        let mut off = pos as libc::off_t;
        let n = ((avail - pos) as usize).min(4 * CHUNK);
        match sendfile_quiet(s.as_raw_fd(), file.as_raw_fd(), &mut off, n) {
            Ok(0) => return Err(Fatal(true, "our copy is shorter than announced".into())),
            Ok(n) => pos += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    s.shutdown(std::net::Shutdown::Write).ok();
    // Wait for the peer to close: it has read everything.
    let _ = s.read(&mut have);
    Ok(())
}

/// `sendfile` to a socket whose peer is gone: EPIPE, never SIGPIPE.
/// sendfile cannot be given `MSG_NOSIGNAL` as `send` can; mln's binaries
/// ignore SIGPIPE, but a program that links this library may keep its
/// default action, under which a service host lost in the middle of a
/// file would kill the whole program instead of failing that host. The
/// signal is blocked on this
/// thread for the call (a pipe or socket raises it on the writing
/// thread), and one it raised is taken back before the mask returns.
fn sendfile_quiet(out: std::os::fd::RawFd, from: std::os::fd::RawFd, off: &mut libc::off_t, n: usize) -> std::io::Result<usize> {
    // SAFETY: the sets are initialized by sigemptyset before use; both
    // descriptors are open for the duration of the calls; a zero timeout
    // makes sigtimedwait only take a pending signal.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let sent = libc::sendfile(out, from, off, n);
        let result = if sent < 0 { Err(std::io::Error::last_os_error()) } else { Ok(sent as usize) };
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) && libc::sigismember(&old, libc::SIGPIPE) == 0 {
            let none = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &none);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// How long a connection may take to send the whole token line; one that
/// has not is dropped (an idle connection must not hold up the sender).
pub const HANDSHAKE: Duration = Duration::from_secs(2);
/// Connections at most waiting to show their token; beyond that the
/// oldest is dropped.
const MAX_PENDING: usize = 64;

/// The address a receiver listens on: the one the peers use. Under sshd,
/// `SSH_CONNECTION` (`client port server port`) names the server-side
/// address the manager reached; else `asked`, the address the manager
/// gives in the request (resolved here). Never every address.
pub fn bind_address(ssh_connection: Option<&str>, asked: Option<&str>) -> Result<IpAddr, String> {
    let usable = |ip: &IpAddr| !ip.is_unspecified() && !ip.is_multicast();
    if let Some(ip) = ssh_connection.and_then(|c| c.split_whitespace().nth(2)).and_then(|a| a.parse::<IpAddr>().ok()).filter(usable) {
        return Ok(ip);
    }
    let Some(asked) = asked.map(str::trim).filter(|a| !a.is_empty()) else {
        return Err("cannot tell which address the other hosts reach us at (no SSH_CONNECTION, no address in the request)".into());
    };
    if let Ok(ip) = asked.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return if usable(&ip) { Ok(ip) } else { Err(format!("refusing to listen on {ip}: not one address")) };
    }
    (asked, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {asked}: {e}"))?
        .map(|a| a.ip())
        .find(usable)
        .ok_or_else(|| format!("{asked} has no address to listen on"))
}

/// Receives one file at `target` (through `target.part`; `private`: for
/// its owner alone), forwarding as it goes. It listens on `bind` only; `announce` is called with the
/// listening address and returns the downstream plan.
pub fn receive(
    target: &std::path::Path,
    size: u64,
    sha256: &str,
    token: &str,
    bind: IpAddr,
    private: bool,
    announce: impl FnOnce(SocketAddr) -> Result<Downstream, String>,
) -> Received {
    let fail = |m: String| Received { ok: false, message: m, forwarded: vec![], skipped: vec![] };
    if bind.is_unspecified() {
        return fail(format!("refusing to listen on {bind}: not one address"));
    }
    if let Some(dir) = target.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let part = target.with_file_name(format!(".{}.part", target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    // A machine's files (its seed holds its secrets) are the owner's
    // alone from their first byte; a template is readable by QEMU's user.
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if private { 0o600 } else { 0o644 };
    let file = match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(mode).open(&part) {
        Ok(f) => Arc::new(f),
        Err(e) => return fail(format!("cannot write {}: {e}", part.display())),
    };
    let listener = match TcpListener::bind(SocketAddr::new(bind, 0)) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {bind}: {e}")),
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(format!("cannot listen on {bind}: {e}")),
    };
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let gate = {
        let (stop, token) = (stop.clone(), token.as_bytes().to_vec());
        std::thread::spawn(move || gatekeeper(listener, &token, &tx, &stop))
    };
    let down = match announce(local) {
        Ok(d) => d,
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            let _ = gate.join();
            let _ = std::fs::remove_file(&part);
            return fail(e);
        }
    };
    let progress = Progress::new(0, None);
    let forwarders: Vec<_> = down
        .links
        .into_iter()
        .map(|cands| {
            let (file, progress, token) = (file.clone(), progress.clone(), token.to_string());
            std::thread::spawn(move || forward(&file, size, &progress, &token, &cands))
        })
        .collect();
    let result = take_upstream(&rx, &file, size, &progress);
    stop.store(true, Ordering::SeqCst);
    let _ = gate.join();
    let result = result.and_then(|digest| {
        if digest != sha256 {
            return Err(format!("checksum mismatch: got {digest}, expected {sha256}"));
        }
        file.sync_all().map_err(|e| format!("cannot sync {}: {e}", part.display()))?;
        std::fs::rename(&part, target).map_err(|e| format!("cannot place {}: {e}", target.display()))
    });
    progress.finish(result.is_ok());
    let mut out = Received { ok: result.is_ok(), message: result.err().unwrap_or_else(|| "received and verified".into()), forwarded: vec![], skipped: vec![] };
    for f in forwarders {
        if let Ok((sent, skipped)) = f.join() {
            out.forwarded.extend(sent);
            out.skipped.extend(skipped);
        }
    }
    if !out.ok {
        let _ = std::fs::remove_file(&part);
    }
    out
}

/// Equality that takes the same time wherever the first difference is.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What became of a connection showing its token.
enum Shown {
    Waiting,
    Token,
    Dropped,
}

/// Reads what a connection has sent of its token line, without blocking.
fn read_token(s: &mut TcpStream, buf: &mut Vec<u8>, token: &[u8]) -> Shown {
    let mut b = [0u8; 128];
    loop {
        // Never past the newline: the sender waits for our answer next.
        let room = (token.len() + 1 - buf.len()).min(b.len());
        match s.read(&mut b[..room]) {
            Ok(0) => return Shown::Dropped,
            Ok(n) => {
                buf.extend_from_slice(&b[..n]);
                if let Some(i) = buf.iter().position(|&c| c == b'\n') {
                    let ok = i + 1 == buf.len() && same_bytes(&buf[..i], token);
                    return if ok { Shown::Token } else { Shown::Dropped };
                }
                if buf.len() > token.len() {
                    return Shown::Dropped;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Shown::Waiting,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Shown::Dropped,
        }
    }
}

/// Accepts connections until `stop`, all at once: each must send the
/// token line within [`HANDSHAKE`] or is dropped, as is one with a wrong
/// token; the others are passed on to the receiver in the order they
/// showed their token. A slow or wrong connection never holds up another.
fn gatekeeper(listener: TcpListener, token: &[u8], tx: &mpsc::Sender<TcpStream>, stop: &AtomicBool) {
    use std::os::fd::AsRawFd;
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut pending: Vec<(TcpStream, Vec<u8>, Instant)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let next = pending.iter().map(|p| p.2.saturating_duration_since(now)).min().unwrap_or(Duration::MAX);
        let wait = next.min(Duration::from_millis(50));
        let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
            .chain(pending.iter().map(|p| p.0.as_raw_fd()))
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis().max(1) as libc::c_int) };
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_err() {
                        continue; // dropped
                    }
                    // Full: the oldest goes (a flood of idle connections
                    // cannot keep a new sender out; it shows its token at once).
                    if pending.len() >= MAX_PENDING {
                        pending.remove(0);
                    }
                    let _ = s.set_nodelay(true);
                    pending.push((s, Vec::with_capacity(token.len() + 1), Instant::now() + HANDSHAKE));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // Out of descriptors and the like: the next round retries.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let mut keep = Vec::with_capacity(pending.len());
        for (mut s, mut buf, deadline) in pending.drain(..) {
            match read_token(&mut s, &mut buf, token) {
                Shown::Token => {
                    if s.set_nonblocking(false).is_ok() {
                        let _ = tx.send(s);
                    }
                }
                Shown::Waiting if now < deadline => keep.push((s, buf, deadline)),
                Shown::Waiting | Shown::Dropped => {}
            }
        }
        pending = keep;
    }
}

/// Takes data from upstream senders (those that showed the token) until
/// the file is whole; a sender that goes away mid-way may be replaced by
/// another. Returns the digest.
fn take_upstream(senders: &mpsc::Receiver<TcpStream>, file: &File, size: u64, progress: &Progress) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut last = Instant::now();
    while have < size {
        let mut s = match senders.recv_timeout(STALL.saturating_sub(last.elapsed())) {
            Ok(s) => s,
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("no data for {} s (have {have} of {size} bytes)", STALL.as_secs())),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the listener stopped".into()),
        };
        s.set_read_timeout(Some(STALL)).ok();
        if s.write_all(&have.to_be_bytes()).is_err() {
            continue;
        }
        loop {
            let want = ((size - have) as usize).min(CHUNK);
            if want == 0 {
                break;
            }
            match s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    file.write_all_at(&buf[..n], have).map_err(|e| format!("cannot write: {e}"))?;
                    hasher.update(&buf[..n]);
                    have += n as u64;
                    progress.set(have);
                    last = Instant::now();
                }
            }
        }
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fills `buf` from the OS random source: getrandom(2), or /dev/urandom
/// on a kernel without it. No other source: an error if both fail.
pub fn os_random(buf: &mut [u8]) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ENOSYS) => {
                return File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut buf[filled..]))
                    .map_err(|e| format!("no random bytes from the OS: getrandom(2) is missing and /dev/urandom failed: {e}"));
            }
            _ => return Err(format!("no random bytes from the OS (getrandom(2)): {e}")),
        }
    }
    Ok(())
}

/// A random token for one transfer (128 bits from the OS, in hex).
pub fn token() -> Result<String, String> {
    let mut b = [0u8; 16];
    os_random(&mut b)?;
    Ok(hex(&b))
}

/// SHA-256 and size of a file, remembered in `cache_dir` by path, size,
/// inode and modification time (a template is hashed once, not per build).
pub fn file_sum(path: &std::path::Path, cache_dir: &std::path::Path) -> Result<(u64, String), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let stamp = format!("{} {} {} {}", m.size(), m.ino(), m.mtime(), m.mtime_nsec());
    let key = hex(&Sha256::digest(abs.to_string_lossy().as_bytes())[..12]);
    let entry = cache_dir.join(format!("sha256-{key}"));
    if let Ok(text) = std::fs::read_to_string(&entry) {
        if let Some((s, sum)) = text.rsplit_once(' ') {
            if s == stamp {
                return Ok((m.size(), sum.trim().to_string()));
            }
        }
    }
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let sum = hex(&h.finalize());
    if std::fs::create_dir_all(cache_dir).is_ok() {
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, format!("{stamp} {sum}")).is_ok() {
            let _ = std::fs::rename(&tmp, &entry);
        }
    }
    Ok((m.size(), sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn start(dir: &std::path::Path, name: &str, data: &[u8], token: &str) -> (SocketAddr, std::sync::mpsc::Sender<Downstream>, std::thread::JoinHandle<Received>) {
        start_on(dir, name, data, token, LOCAL)
    }

    fn start_on(dir: &std::path::Path, name: &str, data: &[u8], token: &str, bind: IpAddr) -> (SocketAddr, std::sync::mpsc::Sender<Downstream>, std::thread::JoinHandle<Received>) {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (down_tx, down_rx) = std::sync::mpsc::channel::<Downstream>();
        let target = dir.join(name);
        let sum = hex(&Sha256::digest(data));
        let (size, token) = (data.len() as u64, token.to_string());
        let h = std::thread::spawn(move || {
            receive(&target, size, &sum, &token, bind, false, |p| {
                port_tx.send(p).unwrap();
                down_rx.recv().map_err(|e| e.to_string())
            })
        });
        (port_rx.recv().unwrap(), down_tx, h)
    }

    #[test]
    fn a_chain_closes_over_a_dead_host_and_every_copy_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let tok = token().unwrap();
        let (p1, d1, h1) = start(dir.path(), "a", &data, &tok);
        let (p3, d3, h3) = start(dir.path(), "c", &data, &tok);
        // Nothing listens on the dead host's port.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let peer = |n: &str, a: String| Peer { name: n.into(), addr: a };
        d1.send(Downstream { links: vec![vec![peer("b", dead_addr), peer("c", p3.to_string())]] }).unwrap();
        d3.send(Downstream { links: vec![] }).unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let f = File::open(&src).unwrap();
        let done = Progress::new(data.len() as u64, Some(true));
        let (sent, skipped) = forward(&f, data.len() as u64, &done, &tok, &[peer("a", p1.to_string())]);
        assert_eq!(sent.as_deref(), Some("a"));
        assert!(skipped.is_empty());
        let r1 = h1.join().unwrap();
        assert!(r1.ok, "{r1:?}");
        assert_eq!((r1.forwarded.clone(), r1.skipped.clone()), (vec!["c".to_string()], vec!["b".to_string()]));
        assert!(h3.join().unwrap().ok);
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), data);
        assert_eq!(std::fs::read(dir.path().join("c")).unwrap(), data);
    }

    #[test]
    fn a_wrong_checksum_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![1u8; 1000];
        let tok = token().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let target = dir.path().join("t");
        let t2 = target.clone();
        let tk = tok.clone();
        let h = std::thread::spawn(move || {
            receive(&t2, 1000, &"0".repeat(64), &tk, LOCAL, false, |p| {
                port_tx.send(p).unwrap();
                Ok(Downstream { links: vec![] })
            })
        });
        let port = port_rx.recv().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let done = Progress::new(1000, Some(true));
        forward(&File::open(&src).unwrap(), 1000, &done, &tok, &[Peer { name: "t".into(), addr: port.to_string() }]);
        let r = h.join().unwrap();
        assert!(!r.ok && r.message.contains("checksum mismatch"), "{r:?}");
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the source is left");
    }

    fn closed_by_the_receiver(mut s: TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false, // it answered: taken for a sender
        }
    }

    /// Row 7 of the issue: idle connections to a new listener made a push
    /// wait 30 s each. Three idle ones (one with half the token) and one
    /// with a wrong token, all before the real sender: the file arrives,
    /// and none of them was ever answered.
    #[test]
    fn idle_and_wrong_connections_do_not_hold_up_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
        let tok = token().unwrap();
        let (addr, down, h) = start(dir.path(), "t", &data, &tok);
        let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        idle[2].write_all(&tok.as_bytes()[..10]).unwrap();
        let mut wrong = TcpStream::connect(addr).unwrap();
        let mut bad = tok.clone().into_bytes();
        bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
        bad.push(b'\n');
        wrong.write_all(&bad).unwrap();
        down.send(Downstream { links: vec![] }).unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let done = Progress::new(data.len() as u64, Some(true));
        let (sent, skipped) = forward(&File::open(&src).unwrap(), data.len() as u64, &done, &tok, &[Peer { name: "t".into(), addr: addr.to_string() }]);
        assert_eq!((sent.as_deref(), skipped.len()), (Some("t"), 0));
        let r = h.join().unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!(std::fs::read(dir.path().join("t")).unwrap(), data);
        assert!(closed_by_the_receiver(wrong), "the wrong token was answered");
        for s in idle {
            assert!(closed_by_the_receiver(s), "an idle connection was answered");
        }
    }

    /// More idle connections than the receiver keeps waiting: the oldest
    /// go, and the sender, coming last, still gets in.
    #[test]
    fn a_flood_of_idle_connections_does_not_keep_the_sender_out() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![3u8; 100_000];
        let tok = token().unwrap();
        let (addr, down, h) = start(dir.path(), "t", &data, &tok);
        let idle: Vec<TcpStream> = (0..3 * MAX_PENDING).map(|_| TcpStream::connect(addr).unwrap()).collect();
        down.send(Downstream { links: vec![] }).unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let done = Progress::new(data.len() as u64, Some(true));
        let (sent, _) = forward(&File::open(&src).unwrap(), data.len() as u64, &done, &tok, &[Peer { name: "t".into(), addr: addr.to_string() }]);
        assert_eq!(sent.as_deref(), Some("t"));
        assert!(h.join().unwrap().ok);
        drop(idle);
    }

    /// A connection that does not show the token within the handshake
    /// time is closed while the receiver still waits for its sender.
    #[test]
    fn a_connection_without_the_token_is_dropped_after_the_handshake_time() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 10_000];
        let tok = token().unwrap();
        let (addr, down, h) = start(dir.path(), "t", &data, &tok);
        let idle = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        assert!(closed_by_the_receiver(idle));
        assert!(started.elapsed() >= HANDSHAKE - Duration::from_millis(100), "closed before its time");
        down.send(Downstream { links: vec![] }).unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let done = Progress::new(data.len() as u64, Some(true));
        forward(&File::open(&src).unwrap(), data.len() as u64, &done, &tok, &[Peer { name: "t".into(), addr: addr.to_string() }]);
        assert!(h.join().unwrap().ok);
    }

    #[test]
    fn the_listener_is_on_the_address_asked_for_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![1u8; 1000];
        let tok = token().unwrap();
        let asked: IpAddr = "127.0.0.2".parse().unwrap();
        let (addr, down, h) = start_on(dir.path(), "t", &data, &tok, asked);
        assert_eq!(addr.ip(), asked);
        assert!(TcpStream::connect(("127.0.0.1", addr.port())).is_err(), "listening on 127.0.0.1 too");
        down.send(Downstream { links: vec![] }).unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let done = Progress::new(1000, Some(true));
        forward(&File::open(&src).unwrap(), 1000, &done, &tok, &[Peer { name: "t".into(), addr: addr.to_string() }]);
        assert!(h.join().unwrap().ok);
        // Every address is refused.
        let r = receive(&dir.path().join("u"), 1, "", &tok, "0.0.0.0".parse().unwrap(), false, |_| panic!("listened"));
        assert!(!r.ok && r.message.contains("refusing to listen on 0.0.0.0"), "{r:?}");
    }

    #[test]
    fn the_bind_address_comes_from_ssh_connection_else_the_request() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(bind_address(Some("10.0.0.5 50312 10.0.0.1 22"), Some("10.9.9.9")).unwrap(), ip("10.0.0.1"));
        assert_eq!(bind_address(Some("::1 50312 ::1 22"), None).unwrap(), ip("::1"));
        assert_eq!(bind_address(Some("garbage"), Some("127.0.0.3")).unwrap(), ip("127.0.0.3"));
        assert_eq!(bind_address(Some("1.2.3.4 1 0.0.0.0 22"), Some("[::1]")).unwrap(), ip("::1"));
        assert_eq!(bind_address(None, Some("localhost")).map(|a| a.is_loopback()), Ok(true));
        assert!(bind_address(None, None).is_err());
        assert!(bind_address(None, Some("0.0.0.0")).is_err());
        assert!(bind_address(None, Some("::")).is_err());
    }

    #[test]
    fn tokens_are_random_and_compared_in_full() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(same_bytes(a.as_bytes(), a.clone().as_bytes()));
        assert!(!same_bytes(a.as_bytes(), b.as_bytes()));
        assert!(!same_bytes(a.as_bytes(), &a.as_bytes()[..31]));
    }

    #[test]
    fn sums_are_cached_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let cache = dir.path().join("cache");
        let (n, s) = file_sum(&f, &cache).unwrap();
        assert_eq!((n, s.as_str()), (3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        std::thread::sleep(Duration::from_millis(10));
        std::fs::write(&f, b"abd").unwrap();
        assert_ne!(file_sum(&f, &cache).unwrap().1, s);
    }
}
