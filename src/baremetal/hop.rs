//! A node's part of the image chain in one process (`mln-hop`,
//! src/bin/mln-hop.rs): it receives the stream, forwards it to the next
//! hop, hashes it and feeds the decompressor and the writer, speaking the
//! chain script's protocol (`MLN-CHAIN listening`, the next hop on stdin,
//! one `MLN-CHAIN-RESULT` line), so mln drives it as it drives the script
//! ([`super::chain::script`] execs it where the system has it).
//!
//! Why a process of its own: the busybox pipeline it replaces (`nc -l`
//! into FIFOs, `tee`, the hash, an `nc` to the next node, `cat`s) moved
//! every byte through six processes a few KiB per system call, and 8 such
//! hops at 200 Mbit/s needed about 2.8 of this machine's 2 cores. Here a
//! byte is read once into a large buffer, hashed there (`sha2`, SHA-NI
//! where the CPU has it) and written once to the next hop and once to the
//! decompressor, each on its own thread so a slow disk and a slow next
//! hop do not wait on each other more than their queues allow.
//! `splice`/`tee(2)` would spare the two writes' copies but not the read:
//! the hash needs every byte in user space, so they do not pay here.

use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one read takes at most: large enough that a 200 Mbit/s stream is
/// a few hundred system calls per second per hop.
const CHUNK: usize = 512 << 10;
/// Chunks queued toward each consumer: what a slow consumer may lag.
const DEPTH: usize = 16;
/// How often a blocked wait looks whether it was told to stop.
const TICK: Duration = Duration::from_millis(200);

/// What the hop is to do (its command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The port it listens on for the stream.
    pub port: u16,
    /// The decompressor, a shell command from stdin to stdout; `cat` is
    /// not started (the writer reads the stream itself).
    pub filter: String,
    /// The writer, a shell command reading stdin.
    pub sink: String,
    /// A file that gets one line of what happened (the node's console).
    pub log: Option<String>,
    /// Said in that line (`host=NAME`).
    pub tag: String,
}

impl Config {
    /// `PORT FILTER SINK LOG TAG` (LOG `-`: none), as the chain script
    /// passes them.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let [port, filter, sink, log, tag] = args else {
            return Err(format!("expected PORT FILTER SINK LOG TAG, got {} arguments", args.len()));
        };
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{port:?} is not a port"))?;
        Ok(Config { port, filter: filter.clone(), sink: sink.clone(), log: (log != "-").then(|| log.clone()), tag: tag.clone() })
    }
}

/// Exit codes, the chain script's where it has one.
pub mod exit {
    /// It could not listen.
    pub const LISTEN: i32 = 90;
    /// No next hop came on stdin.
    pub const NO_NEXT: i32 = 92;
    /// The decompressor or the writer could not be started.
    pub const SPAWN: i32 = 93;
    /// The stream was received and the decompressor or the writer failed.
    pub const WRITE: i32 = 1;
}

enum Next {
    Last,
    To(String, u16),
}

fn parse_next(line: &str) -> Option<Next> {
    let mut w = line.split_whitespace();
    match (w.next()?, w.next()?) {
        ("-", _) => Some(Next::Last),
        (a, p) => Some(Next::To(a.to_string(), p.parse().ok()?)),
    }
}

/// One read: a buffer of [`CHUNK`] bytes, the first `len` of them data.
struct Buf {
    data: Vec<u8>,
    len: usize,
}

impl Buf {
    fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

type Chunk = Arc<Buf>;
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// A chunk's buffer goes back to the reader once every consumer is done
/// with it (the last holder gets it out of the `Arc`), so a stream runs
/// on a few dozen buffers, not one allocation (and its page faults) per
/// read.
fn recycle(c: Chunk, pool: &Pool) {
    if let Ok(b) = Arc::try_unwrap(c) {
        pool.lock().unwrap_or_else(|p| p.into_inner()).push(b.data);
    }
}

/// A read returns once this much has come (or the tick passed, or the
/// stream ended): fewer, larger reads and wake-ups than one per packet.
const LOWAT: libc::c_int = 128 << 10;

fn set_lowat(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and an int option of the size given.
    unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&LOWAT as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t);
    }
}

/// The pipe to the decompressor as large as the system lets it be
/// unasked (1 MiB by default): the writer thread blocks less often.
fn widen(p: &std::process::ChildStdin) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid pipe descriptor; a refusal leaves it as it was.
    unsafe {
        libc::fcntl(p.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// The forward to the next hop: connect (the next hop listens already;
/// a few tries as the script's `nc` had), send every chunk, then wait for
/// it to close (it has read everything). "0" sent, "1" failed; a failure
/// never holds the stream: what comes after it is drained.
fn forward(addr: String, port: u16, rx: Receiver<Chunk>, pool: Pool, conn: Arc<Mutex<Option<TcpStream>>>, stop: Arc<AtomicBool>) -> &'static str {
    let mut s = None;
    for _ in 0..20 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let addrs: Vec<_> = (addr.as_str(), port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        if let Some(c) = addrs.iter().find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(5)).ok()) {
            s = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if s.is_none() {
        eprintln!("mln-hop: cannot connect to the next hop {addr} port {port}");
    }
    if let Some(c) = s.as_ref().and_then(|c| c.try_clone().ok()) {
        *conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }
    let mut ok = s.is_some();
    for c in rx {
        if ok {
            if let Some(d) = s.as_mut() {
                if let Err(e) = d.write_all(c.bytes()) {
                    eprintln!("mln-hop: forward to {addr} port {port}: {e}");
                    ok = false;
                }
            }
        }
        recycle(c, &pool);
    }
    if let (true, Some(mut d)) = (ok, s) {
        if d.shutdown(Shutdown::Write).is_err() {
            return "1";
        }
        d.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut b = [0u8; 512];
        while matches!(d.read(&mut b), Ok(n) if n > 0) {}
        return "0";
    }
    "1"
}

/// The decompressor and the writer, `filter | sink` as the script ran
/// them, each through `sh -c`.
struct Writer {
    filter: Option<Child>,
    sink: Child,
}

impl Writer {
    fn start(cfg: &Config) -> std::io::Result<(Writer, std::process::ChildStdin)> {
        // What they print is theirs, not the protocol's: onto stderr.
        let err_out = || {
            use std::os::fd::AsFd;
            std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from).unwrap_or_else(|_| Stdio::null())
        };
        let sh = |c: &str| {
            let mut k = Command::new("sh");
            k.arg("-c").arg(c);
            k
        };
        if cfg.filter.trim() == "cat" {
            let mut sink = sh(&cfg.sink).stdin(Stdio::piped()).stdout(err_out()).spawn()?;
            let input = sink.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
            return Ok((Writer { filter: None, sink }, input));
        }
        let mut filter = sh(&cfg.filter).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mid = filter.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let sink = match sh(&cfg.sink).stdin(Stdio::from(mid)).stdout(err_out()).spawn() {
            Ok(s) => s,
            Err(e) => {
                let _ = filter.kill();
                let _ = filter.wait();
                return Err(e);
            }
        };
        let input = filter.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        Ok((Writer { filter: Some(filter), sink }, input))
    }

    /// Their exit codes (a signal as the shell says it, 128 + N).
    fn wait(mut self) -> (i32, i32) {
        let code = |c: &mut Child| match c.wait() {
            Ok(s) => s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)),
            Err(_) => 255,
        };
        let f = self.filter.as_mut().map_or(0, code);
        (f, code(&mut self.sink))
    }
}

/// Feeds the decompressor; once it stops taking (it failed), the rest is
/// drained so the forward goes on.
fn feed(mut input: std::process::ChildStdin, rx: Receiver<Chunk>, pool: Pool) {
    widen(&input);
    let mut ok = true;
    for c in rx {
        if ok && input.write_all(c.bytes()).is_err() {
            ok = false;
        }
        recycle(c, &pool);
    }
}

/// The first connection on the listener, or None once told to stop.
fn accept(l: &TcpListener, stop: &AtomicBool) -> Option<TcpStream> {
    l.set_nonblocking(true).ok()?;
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).ok()?;
                return Some(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("mln-hop: accept: {e}");
                return None;
            }
        }
    }
}

/// IPv6 and IPv4 where the system has both, IPv4 where it has no IPv6.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)))
}

/// The hop: listens on `cfg.port`, says `MLN-CHAIN listening` on `out`,
/// reads its next hop (`ADDR PORT` or `- -`) from `control`, then passes
/// the first connection's stream on until it ends or `stop` is set (what
/// came so far goes through), and prints its result line. Its exit code.
/// `streaming` is called once it knows its next hop: from then on a stop
/// is a report, before it an end (the binary's SIGTERM handler goes in
/// there, so a hop told nothing yet still dies of it, as the script did).
pub fn run(cfg: &Config, control: &mut dyn BufRead, out: &mut dyn Write, stop: Arc<AtomicBool>, streaming: &dyn Fn()) -> i32 {
    let listener = match listen(cfg.port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mln-hop: cannot listen on port {}: {e}", cfg.port);
            return exit::LISTEN;
        }
    };
    let _ = writeln!(out, "MLN-CHAIN listening").and_then(|_| out.flush());
    let mut line = String::new();
    let next = match control.read_line(&mut line) {
        Ok(n) if n > 0 => parse_next(&line),
        _ => None,
    };
    let Some(next) = next else {
        eprintln!("mln-hop: no next hop on stdin");
        return exit::NO_NEXT;
    };
    streaming();
    let (writer, input) = match Writer::start(cfg) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("mln-hop: cannot start the decompressor and the writer: {e}");
            return exit::SPAWN;
        }
    };
    let pool: Pool = Arc::default();
    let (to_disk, disk_rx) = sync_channel::<Chunk>(DEPTH);
    let feeder = {
        let pool = pool.clone();
        std::thread::spawn(move || feed(input, disk_rx, pool))
    };
    let conn = Arc::new(Mutex::new(None::<TcpStream>));
    let (to_next, fwd) = match &next {
        Next::Last => (None, None),
        Next::To(a, p) => {
            let (tx, rx) = sync_channel::<Chunk>(DEPTH);
            let (a, p, pool, conn, stop) = (a.clone(), *p, pool.clone(), conn.clone(), stop.clone());
            (Some(tx), Some(std::thread::spawn(move || forward(a, p, rx, pool, conn, stop))))
        }
    };
    let mut hash = Sha256::new();
    if let Some(mut up) = accept(&listener, &stop) {
        drop(listener);
        up.set_read_timeout(Some(TICK)).ok();
        set_lowat(&up);
        loop {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let mut buf = pool.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_else(|| vec![0; CHUNK]);
            let n = match up.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {
                    pool.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
                    continue;
                }
                Err(e) => {
                    eprintln!("mln-hop: receive: {e}");
                    break;
                }
            };
            hash.update(&buf[..n]);
            let c = Arc::new(Buf { data: buf, len: n });
            if let Some(t) = &to_next {
                let _ = t.send(c.clone());
            }
            let _ = to_disk.send(c);
        }
        // Closed at once: the node before sees its forward end.
        drop(up);
    }
    if stop.load(Ordering::SeqCst) {
        // A next hop that stalls must not hold the report.
        if let Some(c) = conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
    drop(to_next);
    drop(to_disk);
    let fwd_rc = fwd.map_or("none", |h| h.join().unwrap_or("1"));
    let _ = feeder.join();
    let (f, s) = writer.wait();
    let sum: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let res = format!("filter={f} sink={s} fwd={fwd_rc} sum={sum} hop=mln-hop");
    if let Some(log) = &cfg.log {
        let shown = match &next {
            Next::Last => "-".to_string(),
            Next::To(a, _) => a.clone(),
        };
        if let Ok(mut l) = std::fs::OpenOptions::new().append(true).create(true).open(log) {
            let _ = writeln!(l, "MLN-CHAIN {} next={shown} {res}", cfg.tag);
        }
    }
    let _ = writeln!(out, "MLN-CHAIN-RESULT {res}").and_then(|_| out.flush());
    if f == 0 && s == 0 {
        0
    } else {
        exit::WRITE
    }
}
