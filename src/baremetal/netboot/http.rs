//! The boot files over HTTP, beside dnsmasq's TFTP: the kernels and
//! initrds that iPXE fetches. TFTP sends one block (1,432 bytes with
//! iPXE) and waits for its acknowledgement before the next, so a 17 MB
//! kernel and initrd are some 12,000 round trips through the node's
//! firmware; with several nodes booting on shared CPUs each round trip
//! waits for the node to be scheduled. Over TCP the data flows within the
//! window while the node is busy. iPXE's scripts ask HTTP first and fall
//! back to TFTP (`||`), so a boot still works when this server is not
//! there.
//!
//! It serves regular files under the TFTP root and nothing else: GET and
//! HEAD, no listing, no path outside the root (`..` refused, symlinks
//! resolved and checked), one request per connection. What it serves is
//! what TFTP already serves to the same network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The port on the boot server's address.
pub const PORT: u16 = 7906;
/// Connections served at once; more are closed (iPXE then uses TFTP).
const MAX_CONNECTIONS: usize = 64;
/// The longest request head read.
const MAX_HEAD: usize = 8192;

/// The file under `root` that the request target names, if it is a
/// regular file inside `root` (after symlinks).
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    // iPXE escapes `:` in a MAC.
    let path = crate::percent::decode(path.strip_prefix('/')?)?;
    let rel = Path::new(&path);
    if path.is_empty() || path.contains('\0') || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let full = root.join(rel).canonicalize().ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

/// Serves `root` on `listener` while `go_on` says so (asked every second).
/// `log` gets one line per request.
pub fn serve(listener: TcpListener, root: PathBuf, go_on: impl Fn() -> bool, log: impl Fn(&str) + Send + Sync + 'static) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let busy = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(log);
    let root = Arc::new(root);
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if busy.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                busy.fetch_add(1, Ordering::SeqCst);
                let (busy, log, root) = (busy.clone(), log.clone(), root.clone());
                std::thread::spawn(move || {
                    let line = handle(stream, &root);
                    log(&format!("{peer} {line}"));
                    busy.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !go_on() {
                    return Ok(());
                }
                wait_readable(&listener, Duration::from_secs(1));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A connection reset before it was accepted, or out of files
            // for a moment: the next one may do.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn wait_readable(listener: &TcpListener, limit: Duration) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd, ours, for the call's duration.
    unsafe { libc::poll(&mut p, 1, limit.as_millis() as libc::c_int) };
}

/// One request on `stream`; what happened, for the log.
fn handle(stream: TcpStream, root: &Path) -> String {
    let t = Instant::now();
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
    let Ok(read_half) = stream.try_clone() else { return "cannot clone the socket".into() };
    let mut reader = BufReader::new(read_half.take(MAX_HEAD as u64));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return "no request".into();
    }
    // The rest of the head is read and ignored (no header changes what
    // is sent).
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
            Err(_) => return "a request head cut short".into(),
        }
    }
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let shown = crate::term::escape(target);
    let mut out = stream;
    if method != "GET" && method != "HEAD" {
        let _ = out.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return format!("{} {shown} 405", crate::term::escape(method));
    }
    let Some(path) = resolve(root, target) else {
        let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return format!("{method} {shown} 404");
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return format!("{method} {shown} 404");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    if out.write_all(head.as_bytes()).is_err() {
        return format!("{method} {shown} 200, the client left");
    }
    if method == "HEAD" {
        return format!("HEAD {shown} 200 {len}");
    }
    // std's copy sends a file to a socket with sendfile(2).
    match std::io::copy(&mut file, &mut out) {
        Ok(n) => format!("GET {shown} 200 {n} bytes in {} ms", t.elapsed().as_millis()),
        Err(e) => format!("GET {shown} 200 cut after {} ms: {e}", t.elapsed().as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn files_under_the_root_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("tftp");
        std::fs::create_dir_all(root.join("nodes")).unwrap();
        std::fs::write(root.join("nodes/52:54:00:aa:00:01.ipxe"), "#!ipxe\n").unwrap();
        std::fs::write(d.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("escape")).unwrap();
        assert_eq!(resolve(&root, "/nodes/52%3a54%3a00%3aaa%3a00%3a01.ipxe"), Some(root.canonicalize().unwrap().join("nodes/52:54:00:aa:00:01.ipxe")));
        assert!(resolve(&root, "/nodes/52:54:00:aa:00:01.ipxe?x=1").is_some());
        for bad in ["/../secret", "/nodes/../../secret", "/escape", "/nodes", "/", "nodes/x", "/%2e%2e/secret", "/a%zz", "/nodes/%00"] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (s, l) = (stop.clone(), lines.clone());
        let server = std::thread::spawn(move || serve(listener, root, move || !s.load(Ordering::SeqCst), move |line| l.lock().unwrap().push(line.to_string())));
        let ok = get(addr, "GET /nodes/52:54:00:aa:00:01.ipxe HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.contains("Content-Length: 7\r\n") && ok.ends_with("\r\n\r\n#!ipxe\n"), "{ok}");
        let head = get(addr, "HEAD /nodes/52:54:00:aa:00:01.ipxe HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(get(addr, "GET /escape HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get(addr, "GET /../secret HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(get(addr, "PUT /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        stop.store(true, Ordering::SeqCst);
        server.join().unwrap().unwrap();
        let lines = lines.lock().unwrap();
        assert!(lines.iter().any(|l| l.contains("GET /nodes/52:54:00:aa:00:01.ipxe 200 7 bytes")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("PUT /x 405")), "{lines:?}");
    }
}
