//! The image broadcast of the install step: one pipelined chain over the
//! nodes being deployed (mln -> node1 -> node2 -> ...), as the fabric's
//! relay does for templates, each node decompressing straight onto its
//! partition while it forwards the compressed stream.
//!
//! A node's part is `mln-hop` ([`super::hop`]: one process receives,
//! forwards, hashes and feeds the decompressor) where the system has it
//! (the deploy system's initramfs does), else a busybox shell script
//! (`nc -l` receives, `tee` feeds the decompressor, the hash and an `nc`
//! to the next node); [`script`] is both, the first execing the binary,
//! and its result line says which ran. mln drives it over one SSH session per node:
//! it starts every node's receiver at once, and only the nodes whose
//! receiver listens make up the chain (a dead node is skipped before a
//! byte is sent); then each is told its next hop on its stdin, and mln
//! sends the file to the first. Every node reports the SHA-256 of what it
//! received, so a node whose stream was cut (a node before it died) is
//! told apart from one that got the whole image and failed to write it:
//! the first kind goes into another pass of the chain over the nodes
//! still missing the image, the second is a failure of that node. A pass
//! that stops moving (a node that died without a reset) is ended: the
//! receivers still running are stopped, and the rest goes to the next pass.
//!
//! [`Gather`] is the rendez-vous: the automaton runs every node on its own
//! thread; the first node at the install step waits for the nodes of the
//! deployment still on their way (not KO, not yet there), so they share
//! one chain however far apart their deploy systems came up; a node alone
//! takes the single-node path.

use crate::fabric::ssh::quote;
use std::collections::HashMap;
use std::hash::Hash;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The port the deploy system's receivers listen on (plus the pass).
pub const PORT: u16 = 7907;
/// At most how long the first node at the install step waits for the
/// others still on their way (and never more than half of what is left
/// of its install step's timeout).
pub const GATHER_CAP: Duration = Duration::from_secs(300);

/// A receiver that listens, or why it does not.
type Started = Result<Box<dyn Receiver>, String>;

/// Where one node listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub addr: String,
    pub port: u16,
}

impl Hop {
    fn socket(&self) -> Result<SocketAddr, String> {
        let host = if self.addr.contains(':') { format!("[{}]", self.addr) } else { self.addr.clone() };
        (host.as_str(), self.port).to_socket_addrs().map_err(|e| format!("cannot resolve {}: {e}", self.addr))?.next().ok_or_else(|| format!("{} has no address", self.addr))
    }
}

/// What a node said at the end of its part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// SHA-256 of the stream it received (whole or cut).
    pub sha256: String,
    /// The decompressor and the writer both exited 0.
    pub written: bool,
    /// The forward to its next hop: "0" sent, "1" failed, "none" last.
    pub forward: String,
    pub detail: String,
    /// What did the node's part.
    pub runner: Runner,
}

/// What ran a node's part of the chain (its result's `hop=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runner {
    /// `mln-hop`, one process.
    Binary,
    /// The busybox pipeline (the system has no `mln-hop`).
    #[default]
    Script,
}

impl std::fmt::Display for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runner::Binary => "mln-hop",
            Runner::Script => "the busybox script",
        })
    }
}

impl Report {
    /// Reads the script's `MLN-CHAIN-RESULT` line from its output.
    pub fn parse(out: &str) -> Option<Report> {
        let line = out.lines().rev().find(|l| l.starts_with("MLN-CHAIN-RESULT "))?;
        let mut r = Report::default();
        let (mut filter, mut sink) = (String::new(), String::new());
        for kv in line.split_whitespace().skip(1) {
            match kv.split_once('=') {
                Some(("filter", v)) => filter = v.into(),
                Some(("sink", v)) => sink = v.into(),
                Some(("fwd", v)) => r.forward = v.into(),
                Some(("sum", v)) => r.sha256 = v.into(),
                Some(("hop", "mln-hop")) => r.runner = Runner::Binary,
                _ => {}
            }
        }
        r.written = filter == "0" && sink == "0";
        r.detail = format!("decompress exit {filter}, write exit {sink}");
        Some(r)
    }
}

/// A node's receiver, started and listening.
pub trait Receiver: Send {
    /// Tells it where to forward (None: it is the last).
    fn forward_to(&mut self, next: Option<&Hop>) -> Result<(), String>;
    /// Its report, if it ends before `deadline`; Err when it is gone.
    fn wait(&mut self, deadline: Instant) -> Option<Result<Report, String>>;
}

/// One node of a chain, as the broadcast sees it.
pub trait ChainNode: Sync {
    fn name(&self) -> &str;
    /// Where it listens in pass `pass`.
    fn hop(&self, pass: u16) -> Hop;
    /// Starts its receiver for pass `pass`; returns once it listens. An
    /// error: the node is skipped.
    fn start(&self, pass: u16) -> Result<Box<dyn Receiver>, String>;
    /// Ends a receiver of pass `pass` that has not finished (best effort).
    fn stop(&self, pass: u16);
}

/// How each node's part went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Whole image received (SHA-256 checked) and written.
    Written { pass: u16 },
    /// Its receiver could not start: skipped.
    Skipped(String),
    /// It got the whole image and could not write it, or never got it.
    Failed(String),
}

pub struct Options {
    /// Passes of the chain at most (a node cut off by another's failure
    /// is in the next).
    pub passes: u16,
    /// After mln's send ends, how long the nodes have to finish.
    pub grace: Duration,
    /// mln's send that moves no byte for this long has stalled.
    pub stall: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { passes: 3, grace: Duration::from_secs(60), stall: Duration::from_secs(30) }
    }
}

/// Sends `file` (SHA-256 `sha256`) through chains over `nodes`, in the
/// given order; one outcome per node.
pub fn broadcast(nodes: &[&dyn ChainNode], file: &Path, sha256: &str, opts: &Options) -> Vec<Outcome> {
    let mut out: Vec<Option<Outcome>> = vec![None; nodes.len()];
    let mut missing: Vec<usize> = (0..nodes.len()).collect();
    for pass in 0..opts.passes {
        if missing.is_empty() {
            break;
        }
        // Every receiver at once: the chain is made of those that listen.
        let started: Vec<(usize, Started)> =
            std::thread::scope(|s| missing.iter().map(|&i| (i, s.spawn(move || nodes[i].start(pass)))).collect::<Vec<_>>().into_iter().map(|(i, h)| (i, h.join().unwrap_or_else(|_| Err("its receiver's thread failed".into())))).collect());
        let mut chain: Vec<(usize, Box<dyn Receiver>)> = Vec::new();
        for (i, r) in started {
            match r {
                Ok(r) => chain.push((i, r)),
                Err(e) => {
                    tracing::info!("chain: {} skipped: {e}", nodes[i].name());
                    out[i] = Some(Outcome::Skipped(e));
                }
            }
        }
        if chain.is_empty() {
            break;
        }
        let hops: Vec<Hop> = chain.iter().map(|(i, _)| nodes[*i].hop(pass)).collect();
        let mut told = Vec::new();
        for (k, (i, r)) in chain.iter_mut().enumerate() {
            match r.forward_to(hops.get(k + 1)) {
                Ok(()) => told.push(true),
                Err(e) => {
                    out[*i] = Some(Outcome::Failed(format!("could not be told its next hop: {e}")));
                    told.push(false);
                }
            }
        }
        let sent = send(file, &hops[0], opts.stall);
        if let Err(e) = &sent {
            tracing::info!("chain: sending to {} failed: {e}", nodes[chain[0].0].name());
        }
        let deadline = Instant::now() + opts.grace;
        let reports: Vec<Option<Result<Report, String>>> = std::thread::scope(|s| {
            let hs: Vec<_> = chain
                .iter_mut()
                .zip(&told)
                .map(|((i, r), told)| {
                    let node = nodes[*i];
                    let told = *told;
                    s.spawn(move || {
                        if !told {
                            return None;
                        }
                        r.wait(deadline).or_else(|| {
                            node.stop(pass);
                            r.wait(Instant::now() + Duration::from_secs(15))
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(None)).collect()
        });
        let mut next = Vec::new();
        for ((i, _), rep) in chain.iter().zip(reports) {
            if out[*i].is_some() {
                continue;
            }
            let last = pass + 1 == opts.passes;
            match rep {
                Some(Ok(r)) if r.sha256 == sha256 && r.written => {
                    tracing::info!("chain: {} has the image (pass {pass}, through {})", nodes[*i].name(), r.runner);
                    out[*i] = Some(Outcome::Written { pass });
                }
                Some(Ok(r)) if r.sha256 == sha256 => out[*i] = Some(Outcome::Failed(format!("the image came whole and was not written: {}", r.detail))),
                other => {
                    let why = match other {
                        Some(Ok(r)) => format!("its stream was cut ({})", r.detail),
                        Some(Err(e)) => e,
                        None => "its receiver did not finish and was stopped".into(),
                    };
                    if last {
                        out[*i] = Some(Outcome::Failed(format!("no whole image after {} passes of the chain: {why}", opts.passes)));
                    } else {
                        tracing::info!("chain: {} into the next pass: {why}", nodes[*i].name());
                        next.push(*i);
                    }
                }
            }
        }
        missing = next;
    }
    out.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Failed("not reached".into()))).collect()
}

/// mln's end of the chain: the file to the first hop, then a wait for it
/// to close (it has read everything). A receiver may take a moment to
/// listen: connections are tried for a few seconds.
pub fn send(file: &Path, to: &Hop, stall: Duration) -> Result<u64, String> {
    let addr = to.socket()?;
    let t0 = Instant::now();
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() < Duration::from_secs(10) => {
                tracing::debug!("chain: {addr}: {e}; again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("cannot connect to {addr}: {e}")),
        }
    };
    s.set_write_timeout(Some(stall)).ok();
    s.set_read_timeout(Some(stall)).ok();
    let mut f = std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).map_err(|e| format!("sending to {addr} after {total} bytes: {e}"))?;
        total += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write).ok();
    let _ = s.read(&mut buf);
    Ok(total)
}

/// A node's part, for busybox `sh`: listen on `port`, read the next hop
/// (`ADDR PORT`, or `-`) from stdin, and pass the stream to the SHA-256,
/// the next hop, and `filter | sink`. `prep` runs first (mount the root);
/// `log`, if given, gets one line of what happened (the node's console).
/// The last line it prints is `MLN-CHAIN-RESULT ...`. Where the system
/// has an `mln-hop` on its PATH that runs (`--check`: its libraries are
/// there) the shell becomes it (same protocol, same PID for
/// [`stop_script`]); else the stream goes through a busybox
/// pipeline: `nc -l` into FIFOs, `tee` to the hash (`openssl dgst` where
/// there is one: SHA-NI or AVX2, a fraction of busybox `sha256sum`'s
/// CPU), an `nc` forward and the decompressor.
pub fn script(port: u16, prep: &str, filter: &str, sink: &str, log: Option<&str>, tag: &str) -> String {
    let hop = format!("exec mln-hop {port} {} {} {} {}", quote(filter), quote(sink), quote(log.unwrap_or("-")), quote(tag));
    let log = log.map(|l| format!(" > {} 2>/dev/null", quote(l))).unwrap_or_else(|| " >/dev/null".into());
    format!(
        r#"d=/tmp/mln-chain-{port}
rm -rf $d; mkdir -p $d && mkfifo $d/in $d/sum $d/fwd $d/hold || exit 90
{prep} || exit 91
if mln-hop --check >/dev/null 2>&1; then echo $$ > $d/pids; {hop}; fi
sleep 100000 > $d/hold &
echo $! > $d/pids
nc -l -p {port} < $d/hold > $d/in 2> $d/nc.err &
echo $! >> $d/pids
exec 3< $d/in
for i in $(seq 100); do netstat -ltn 2>/dev/null | grep -q ":{port} " && break; sleep 0.1; done
echo MLN-CHAIN listening
read next nport || exit 92
if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r < $d/sum > $d/sum.out & else sha256sum < $d/sum > $d/sum.out & fi
sp=$!
if [ "$next" != - ]; then
    (r=1; for i in $(seq 20); do nc -w 5 "$next" "$nport" <&4 > /dev/null 2>> $d/fwd.err & echo $! >> $d/pids; wait $! && {{ r=0; break; }}; sleep 0.5; done; echo $r > $d/fwd.rc; cat <&4 > /dev/null) 4< $d/fwd &
    fp=$!
    tee $d/sum $d/fwd <&3 | {{ {filter}; echo $? > $d/filter.rc; }} | {{ {sink}; echo $? > $d/sink.rc; }}
else
    fp=
    echo none > $d/fwd.rc
    tee $d/sum <&3 | {{ {filter}; echo $? > $d/filter.rc; }} | {{ {sink}; echo $? > $d/sink.rc; }}
fi
exec 3<&-
kill $(head -n 1 $d/pids) 2>/dev/null
wait $sp $fp
res="filter=$(cat $d/filter.rc) sink=$(cat $d/sink.rc) fwd=$(cat $d/fwd.rc) sum=$(cut -d ' ' -f 1 $d/sum.out) hop=busybox"
echo "MLN-CHAIN "{qtag}" next=$next $res"{log}
echo "MLN-CHAIN-RESULT $res"
[ "$(cat $d/filter.rc)$(cat $d/sink.rc)" = 00 ]
"#,
        qtag = quote(tag)
    )
}

/// Ends a receiver of the script on `port` (its listener, its keeper, its
/// forwarders): what was received so far goes through, and it reports.
pub fn stop_script(port: u16) -> String {
    format!("kill $(cat /tmp/mln-chain-{port}/pids) 2>/dev/null; true")
}

/// The rendez-vous of the nodes that write the same image. Each node of a
/// deployment is announced when its deployment starts ([`Gather::expect`])
/// and withdrawn when it ends, deployed or KO ([`Gather::finished`]). The
/// first node to reach the install step leads a round and waits for every
/// node still on its way to the same image (announced, not finished, not
/// yet come), or until `until`; then it runs the job for all who came. A
/// node that comes after that (a late one, or one retrying its install)
/// starts a new round, which closes at once when no other is on its way.
/// Deploy systems that come up minutes apart (software emulation, slow
/// firmware) so share one chain instead of one chain per fixed window;
/// `until` bounds what one node stuck in its reboot costs the others.
pub struct Gather<K, T> {
    inner: Mutex<Rounds<K, T>>,
    cv: Condvar,
}

struct Rounds<K, T> {
    next_id: u64,
    /// Open rounds per key: (id, members).
    open: HashMap<K, (u64, Vec<T>)>,
    /// Finished rounds: id -> each member's result, taken as they leave.
    done: HashMap<u64, Vec<Option<Result<(), String>>>>,
    /// Nodes on their way: name -> the key they will join.
    coming: HashMap<String, K>,
}

impl<K: Eq + Hash + Clone, T> Default for Gather<K, T> {
    fn default() -> Gather<K, T> {
        Gather::new()
    }
}

impl<K: Eq + Hash + Clone, T> Gather<K, T> {
    pub fn new() -> Gather<K, T> {
        Gather { inner: Mutex::new(Rounds { next_id: 0, open: HashMap::new(), done: HashMap::new(), coming: HashMap::new() }), cv: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds<K, T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `node` is being deployed and will come to `key`'s install.
    pub fn expect(&self, node: &str, key: K) {
        self.lock().coming.insert(node.to_string(), key);
        self.cv.notify_all();
    }

    /// `node`'s deployment ended: if it never came, no round waits for it.
    pub fn finished(&self, node: &str) {
        self.lock().coming.remove(node);
        self.cv.notify_all();
    }

    /// How many nodes are still on their way to `key`.
    pub fn coming(&self, key: &K) -> usize {
        self.lock().coming.values().filter(|k| *k == key).count()
    }

    /// `node` joins the round of `key` with `item`; the round's leader (the
    /// first to come) waits as [`Gather`] says, at most until `until`, then
    /// runs `job` over every member, in the order they came; each member
    /// gets its own result.
    pub fn join(&self, key: K, node: &str, item: T, until: Instant, job: impl FnOnce(Vec<T>) -> Vec<Result<(), String>>) -> Result<(), String> {
        let mut g = self.lock();
        g.coming.remove(node);
        if let Some((id, members)) = g.open.get_mut(&key) {
            let (id, me) = (*id, members.len());
            members.push(item);
            self.cv.notify_all();
            loop {
                if let Some(rs) = g.done.get_mut(&id) {
                    let r = rs.get_mut(me).and_then(Option::take).unwrap_or_else(|| Err("the chain gave no result for this node".into()));
                    if rs.iter().all(Option::is_none) {
                        g.done.remove(&id);
                    }
                    return r;
                }
                g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        g.open.insert(key.clone(), (id, vec![item]));
        loop {
            let coming = g.coming.values().filter(|k| **k == key).count();
            let now = Instant::now();
            if coming == 0 || now >= until {
                break;
            }
            g = self.cv.wait_timeout(g, until - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        let members = g.open.remove(&key).map(|(_, m)| m).unwrap_or_default();
        let n = members.len();
        drop(g);
        let mut results: Vec<Option<Result<(), String>>> = job(members).into_iter().map(Some).collect();
        results.resize(n, Some(Err("the chain gave no result for this node".into())));
        let mine = results[0].take().unwrap_or_else(|| Err("no result".into()));
        let mut g = self.lock();
        if n > 1 {
            g.done.insert(id, results);
        }
        self.cv.notify_all();
        mine
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
