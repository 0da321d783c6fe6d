//! Pipelined file relay (as Kascade does): every receiver writes what it
//! gets to disk and, at the same time, sends it on to its downstream
//! peers from its own copy. A dead downstream peer is skipped: the next
//! candidate is asked how much it already has and is sent the rest, so
//! the chain closes over the dead host. Every hop checks the SHA-256.
//!
//! On the wire (TCP, between hosts of the fabric): the sender writes the
//! transfer's token and a newline; the receiver answers with how many
//! bytes it already has (8 bytes, big-endian); the sender sends the rest
//! and closes. The token is random per transfer and travels over SSH.

use super::proto::{Downstream, Peer, Received};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
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
        // SAFETY: both descriptors are open for the duration of the call.
        let sent = unsafe { libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &mut off, n) };
        match sent {
            n if n > 0 => pos += n as u64,
            0 => return Err(Fatal(true, "our copy is shorter than announced".into())),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(io(e));
                }
            }
        }
    }
    s.shutdown(std::net::Shutdown::Write).ok();
    // Wait for the peer to close: it has read everything.
    let _ = s.read(&mut have);
    Ok(())
}

/// Receives one file at `target` (through `target.part`), forwarding as
/// it goes. `announce` is called with the listening port and returns the
/// downstream plan.
pub fn receive(target: &std::path::Path, size: u64, sha256: &str, token: &str, announce: impl FnOnce(u16) -> Result<Downstream, String>) -> Received {
    let fail = |m: String| Received { ok: false, message: m, forwarded: vec![], skipped: vec![] };
    if let Some(dir) = target.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let part = target.with_file_name(format!(".{}.part", target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let file = match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&part) {
        Ok(f) => Arc::new(f),
        Err(e) => return fail(format!("cannot write {}: {e}", part.display())),
    };
    let listener = match TcpListener::bind("0.0.0.0:0") {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen: {e}")),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let down = match announce(port) {
        Ok(d) => d,
        Err(e) => return fail(e),
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
    let result = take_upstream(&listener, &file, size, token, &progress);
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

/// Takes data from upstream senders until the file is whole; a sender
/// that goes away mid-way may be replaced by another. Returns the digest.
fn take_upstream(listener: &TcpListener, file: &File, size: u64, token: &str, progress: &Progress) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut buf = vec![0u8; CHUNK];
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut last = Instant::now();
    while have < size {
        let mut s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() > STALL {
                    return Err(format!("no data for {} s (have {have} of {size} bytes)", STALL.as_secs()));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(format!("accept: {e}")),
        };
        s.set_nonblocking(false).ok();
        s.set_read_timeout(Some(STALL)).ok();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while line.len() <= token.len() {
            match s.read(&mut b) {
                Ok(1) if b[0] == b'\n' => break,
                Ok(1) => line.push(b[0]),
                _ => break,
            }
        }
        if line != token.as_bytes() {
            continue; // not one of ours
        }
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

/// A random token for one transfer.
pub fn token() -> String {
    let mut b = [0u8; 16];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        b.copy_from_slice(&t.to_le_bytes());
    }
    hex(&b)
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

    fn start(dir: &std::path::Path, name: &str, data: &[u8], token: &str) -> (u16, std::sync::mpsc::Sender<Downstream>, std::thread::JoinHandle<Received>) {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (down_tx, down_rx) = std::sync::mpsc::channel::<Downstream>();
        let target = dir.join(name);
        let sum = hex(&Sha256::digest(data));
        let (size, token) = (data.len() as u64, token.to_string());
        let h = std::thread::spawn(move || {
            receive(&target, size, &sum, &token, |p| {
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
        let tok = token();
        let (p1, d1, h1) = start(dir.path(), "a", &data, &tok);
        let (p3, d3, h3) = start(dir.path(), "c", &data, &tok);
        // Nothing listens on the dead host's port.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let peer = |n: &str, a: String| Peer { name: n.into(), addr: a };
        d1.send(Downstream { links: vec![vec![peer("b", dead_addr), peer("c", format!("127.0.0.1:{p3}"))]] }).unwrap();
        d3.send(Downstream { links: vec![] }).unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let f = File::open(&src).unwrap();
        let done = Progress::new(data.len() as u64, Some(true));
        let (sent, skipped) = forward(&f, data.len() as u64, &done, &tok, &[peer("a", format!("127.0.0.1:{p1}"))]);
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
        let tok = token();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let target = dir.path().join("t");
        let t2 = target.clone();
        let tk = tok.clone();
        let h = std::thread::spawn(move || {
            receive(&t2, 1000, &"0".repeat(64), &tk, |p| {
                port_tx.send(p).unwrap();
                Ok(Downstream { links: vec![] })
            })
        });
        let port = port_rx.recv().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let done = Progress::new(1000, Some(true));
        forward(&File::open(&src).unwrap(), 1000, &done, &tok, &[Peer { name: "t".into(), addr: format!("127.0.0.1:{port}") }]);
        let r = h.join().unwrap();
        assert!(!r.ok && r.message.contains("checksum mismatch"), "{r:?}");
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the source is left");
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
