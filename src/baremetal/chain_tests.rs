//! The chain on fakes (Rust receivers on loopback that can be dead, cut
//! their forward, fail to write, or hang), through the hop (`hop::run`,
//! in-process), and the node script's busybox pipeline on loopback, as a
//! system without `mln-hop` runs it. tests/chain_hop.rs runs the script
//! that execs the `mln-hop` binary.

use super::*;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

#[path = "../../tests/support/chain_local.rs"]
mod chain_local;
use crate::baremetal::chain;
use chain_local::{broadcast_with_the_third_dead, busybox_bin, sha, tree_image, which, Local, Place, APPLETS};

#[derive(Default)]
struct Fake {
    name: String,
    /// Its receiver does not start in these passes and after (dead).
    dead_from: Option<u16>,
    /// In pass 0, it reads this many bytes, then its connections drop
    /// (it crashed), and it is dead after.
    crash_after: Option<usize>,
    /// Gets the stream but cannot write it.
    bad_disk: bool,
    /// In pass 0, stops reading after this many bytes (no reset).
    hang_after: Option<usize>,
    ports: Mutex<HashMap<u16, u16>>,
    starts: AtomicUsize,
    stops: AtomicUsize,
    got: Arc<Mutex<Vec<u8>>>,
    stop_flags: Mutex<HashMap<u16, Arc<AtomicBool>>>,
}

struct FakeReceiver {
    next_tx: Option<mpsc::Sender<Option<Hop>>>,
    done: mpsc::Receiver<Result<Report, String>>,
}

impl Receiver for FakeReceiver {
    fn forward_to(&mut self, next: Option<&Hop>) -> Result<(), String> {
        self.next_tx.take().ok_or("told twice")?.send(next.cloned()).map_err(|e| e.to_string())
    }
    fn wait(&mut self, deadline: Instant) -> Option<Result<Report, String>> {
        self.done.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }
}

impl ChainNode for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    fn hop(&self, pass: u16) -> Hop {
        Hop { addr: "127.0.0.1".into(), port: self.ports.lock().unwrap()[&pass] }
    }
    fn stop(&self, pass: u16) {
        self.stops.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.stop_flags.lock().unwrap().get(&pass) {
            f.store(true, Ordering::SeqCst);
        }
    }
    fn start(&self, pass: u16) -> Result<Box<dyn Receiver>, String> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let crashed = self.crash_after.is_some() || self.hang_after.is_some();
        if self.dead_from.is_some_and(|d| pass >= d) || (crashed && pass > 0) {
            return Err("no route to host".into());
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        self.ports.lock().unwrap().insert(pass, l.local_addr().unwrap().port());
        let stop = Arc::new(AtomicBool::new(false));
        self.stop_flags.lock().unwrap().insert(pass, stop.clone());
        let (next_tx, next_rx) = mpsc::channel::<Option<Hop>>();
        let (done_tx, done) = mpsc::channel();
        let (crash, hang, bad) = if pass == 0 { (self.crash_after, self.hang_after, self.bad_disk) } else { (None, None, self.bad_disk) };
        let got = self.got.clone();
        std::thread::spawn(move || {
            let next = next_rx.recv().ok().flatten();
            l.set_nonblocking(true).unwrap();
            let mut up = loop {
                if stop.load(Ordering::SeqCst) {
                    let _ = done_tx.send(Ok(Report { sha256: sha(b""), written: false, forward: "1".into(), detail: "stopped".into(), ..Report::default() }));
                    return;
                }
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            up.set_nonblocking(false).unwrap();
            up.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            let mut down = next.as_ref().and_then(|h| TcpStream::connect(h.socket().unwrap()).ok());
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if hang.is_some_and(|h| data.len() >= h) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                match up.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        data.extend_from_slice(&buf[..n]);
                        if crash.is_some_and(|c| data.len() >= c) {
                            // Gone: its sockets drop, it says nothing.
                            let _ = done_tx.send(Err("the session was lost".into()));
                            return;
                        }
                        if let Some(d) = down.as_mut() {
                            if d.write_all(&buf[..n]).is_err() {
                                down = None;
                            }
                        }
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            if let Some(d) = down.as_mut() {
                let _ = d.shutdown(std::net::Shutdown::Write);
                let _ = d.read(&mut buf);
            }
            *got.lock().unwrap() = data.clone();
            let _ = done_tx.send(Ok(Report { sha256: sha(&data), written: !bad, forward: if next.is_some() { "0".into() } else { "none".into() }, ..Report::default() }));
        });
        Ok(Box::new(FakeReceiver { next_tx: Some(next_tx), done }))
    }
}

fn fake(name: &str) -> Fake {
    Fake { name: name.into(), ..Fake::default() }
}

fn image(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&data).unwrap();
    (f, data)
}

fn run(nodes: &[&Fake], data_len: usize, grace: Duration) -> (Vec<Outcome>, Vec<u8>) {
    let (f, data) = image(data_len);
    let dyns: Vec<&dyn ChainNode> = nodes.iter().map(|n| *n as &dyn ChainNode).collect();
    let out = broadcast(&dyns, f.path(), &sha(&data), &Options { passes: 3, grace, stall: grace });
    (out, data)
}

#[test]
fn every_node_gets_the_image_in_one_pass() {
    let ns: Vec<Fake> = (1..=4).map(|i| fake(&format!("n{i}"))).collect();
    let refs: Vec<&Fake> = ns.iter().collect();
    let (out, data) = run(&refs, 3 << 20, Duration::from_secs(30));
    assert_eq!(out, vec![Outcome::Written { pass: 0 }; 4]);
    for n in &ns {
        assert_eq!(*n.got.lock().unwrap(), data, "{}", n.name);
        assert_eq!(n.starts.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn a_dead_node_is_skipped_and_the_rest_still_get_the_image() {
    let mut ns: Vec<Fake> = (1..=4).map(|i| fake(&format!("n{i}"))).collect();
    ns[1].dead_from = Some(0);
    let refs: Vec<&Fake> = ns.iter().collect();
    let (out, data) = run(&refs, 1 << 20, Duration::from_secs(30));
    assert!(matches!(&out[1], Outcome::Skipped(e) if e.contains("no route")), "{out:?}");
    for i in [0, 2, 3] {
        assert_eq!(out[i], Outcome::Written { pass: 0 }, "{out:?}");
        assert_eq!(*ns[i].got.lock().unwrap(), data);
    }
}

#[test]
fn a_node_that_dies_mid_stream_is_skipped_and_those_after_it_get_a_second_pass() {
    let mut ns: Vec<Fake> = (1..=4).map(|i| fake(&format!("n{i}"))).collect();
    ns[1].crash_after = Some(300_000);
    let refs: Vec<&Fake> = ns.iter().collect();
    let (out, data) = run(&refs, 2 << 20, Duration::from_secs(30));
    assert_eq!(out[0], Outcome::Written { pass: 0 }, "{out:?}");
    assert!(matches!(&out[1], Outcome::Skipped(_)), "{out:?}");
    assert_eq!(out[2], Outcome::Written { pass: 1 }, "{out:?}");
    assert_eq!(out[3], Outcome::Written { pass: 1 }, "{out:?}");
    assert_eq!(ns[0].starts.load(Ordering::SeqCst), 1, "the node that had it is left alone");
    assert_eq!(*ns[3].got.lock().unwrap(), data);
}

#[test]
fn a_node_that_cannot_write_fails_alone_and_still_forwards() {
    let mut ns: Vec<Fake> = (1..=3).map(|i| fake(&format!("n{i}"))).collect();
    ns[1].bad_disk = true;
    let refs: Vec<&Fake> = ns.iter().collect();
    let (out, _) = run(&refs, 1 << 20, Duration::from_secs(30));
    assert!(matches!(&out[1], Outcome::Failed(e) if e.contains("not written")), "{out:?}");
    assert_eq!(ns[1].starts.load(Ordering::SeqCst), 1, "a whole image badly written is not sent again");
    assert_eq!(out[0], Outcome::Written { pass: 0 });
    assert_eq!(out[2], Outcome::Written { pass: 0 });
}

#[test]
fn a_pass_that_hangs_is_stopped_and_the_rest_go_on() {
    let mut ns: Vec<Fake> = (1..=3).map(|i| fake(&format!("n{i}"))).collect();
    ns[0].hang_after = Some(100_000);
    let refs: Vec<&Fake> = ns.iter().collect();
    let (out, data) = run(&refs, 4 << 20, Duration::from_secs(2));
    assert!(ns[0].stops.load(Ordering::SeqCst) >= 1, "the hung receiver was stopped");
    assert!(matches!(&out[0], Outcome::Skipped(_)), "{out:?}");
    assert_eq!(out[1], Outcome::Written { pass: 1 }, "{out:?}");
    assert_eq!(out[2], Outcome::Written { pass: 1 }, "{out:?}");
    assert_eq!(*ns[2].got.lock().unwrap(), data);
}

#[test]
fn reports_are_read_from_the_scripts_last_line() {
    let r = Report::parse("MLN-CHAIN listening\nMLN-CHAIN-RESULT filter=0 sink=0 fwd=none sum=abc\n").unwrap();
    assert!(r.written && r.sha256 == "abc" && r.forward == "none");
    let r = Report::parse("MLN-CHAIN-RESULT filter=1 sink=0 fwd=0 sum=abc").unwrap();
    assert!(!r.written);
    assert!(Report::parse("MLN-CHAIN listening\n").is_none());
}

/// Runs `f` on its own thread; a rendez-vous that never closes fails the
/// test (after two minutes) instead of hanging it.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("the round never closed")
}

type Calls = Arc<Mutex<Vec<Vec<u32>>>>;

/// Node `i` joins `key`'s round; the job records its members and fails member 1.
fn member(g: &Arc<Gather<&'static str, u32>>, calls: &Calls, key: &'static str, i: u32, until: Instant) -> std::thread::JoinHandle<Result<(), String>> {
    let (g, calls) = (g.clone(), calls.clone());
    std::thread::spawn(move || {
        g.join(key, &format!("n{i}"), i, until, |members| {
            calls.lock().unwrap().push(members.clone());
            members.iter().map(|m| if *m == 1 { Err("bad".into()) } else { Ok(()) }).collect()
        })
    })
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort();
    v
}

#[test]
fn the_round_waits_for_every_node_on_its_way_however_late() {
    within(|| {
        let g = Arc::new(Gather::new());
        let calls: Calls = Arc::default();
        for i in 0..3 {
            g.expect(&format!("n{i}"), "img");
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let a = member(&g, &calls, "img", 0, far);
        let b = member(&g, &calls, "img", 1, far);
        while g.coming(&"img") > 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Longer than nothing at all: the round stays open for n2.
        std::thread::sleep(Duration::from_millis(300));
        assert!(calls.lock().unwrap().is_empty(), "the round closed with n2 still on its way");
        let c = member(&g, &calls, "img", 2, far);
        let results = [a.join().unwrap(), b.join().unwrap(), c.join().unwrap()];
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "one chain for the three: {calls:?}");
        assert_eq!(sorted(calls[0].clone()), vec![0, 1, 2]);
        assert_eq!(results[1], Err("bad".into()));
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert_eq!(g.coming(&"img"), 0);
    });
}

#[test]
fn a_node_that_ends_ko_before_its_install_no_longer_holds_the_round() {
    within(|| {
        let g = Arc::new(Gather::new());
        let calls: Calls = Arc::default();
        for i in 0..3 {
            g.expect(&format!("n{i}"), "img");
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let a = member(&g, &calls, "img", 0, far);
        let b = member(&g, &calls, "img", 2, far);
        while g.coming(&"img") > 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(calls.lock().unwrap().is_empty());
        // n1's deploy system never came up: KO, its deployment ends.
        g.finished("n1");
        assert_eq!(a.join().unwrap(), Ok(()));
        assert_eq!(b.join().unwrap(), Ok(()));
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(sorted(calls[0].clone()), vec![0, 2]);
    });
}

#[test]
fn past_its_limit_the_round_goes_and_a_late_node_then_goes_alone() {
    within(|| {
        let g = Arc::new(Gather::new());
        let calls: Calls = Arc::default();
        g.expect("n0", "img");
        g.expect("n3", "img");
        let a = member(&g, &calls, "img", 0, Instant::now() + Duration::from_millis(200));
        assert_eq!(a.join().unwrap(), Ok(()));
        assert_eq!(calls.lock().unwrap().clone(), vec![vec![0]], "the leader went alone at its limit");
        // n3 comes after: no one else on its way, its round closes at once.
        let late = member(&g, &calls, "img", 3, Instant::now() + Duration::from_secs(3600));
        assert_eq!(late.join().unwrap(), Ok(()));
        assert_eq!(calls.lock().unwrap().clone(), vec![vec![0], vec![3]]);
    });
}

#[test]
fn nodes_of_another_image_and_finished_nodes_are_not_waited_for() {
    within(|| {
        let g = Arc::new(Gather::new());
        let calls: Calls = Arc::default();
        // n5 goes to another environment; n6 was deployed already (finished).
        g.expect("n5", "other");
        g.expect("n6", "img");
        g.finished("n6");
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(member(&g, &calls, "img", 4, far).join().unwrap(), Ok(()));
        assert_eq!(calls.lock().unwrap().clone(), vec![vec![4]]);
        assert_eq!(g.coming(&"other"), 1);
        // A node never announced (no deployment around it) goes at once too.
        assert_eq!(member(&g, &calls, "solo", 7, far).join().unwrap(), Ok(()));
        g.finished("n5");
        assert_eq!(g.coming(&"other"), 0);
    });
}

/// The node's part as the deploy system runs it: busybox's sh, nc, tee,
/// sha256sum and gzip (a directory of busybox links first on PATH), on
/// loopback ports, a gzip tar image extracted on three receivers while
/// forwarded; a fourth node dead.
#[test]
fn the_busybox_script_receives_forwards_and_extracts() {
    busybox_script(false);
}

/// The same with the deploy system's openssl hashing the stream: no
/// `sha256sum` on PATH, so a sum in every report is openssl's.
#[test]
fn the_script_hashes_with_openssl_where_there_is_one() {
    if which("openssl").is_none() {
        eprintln!("no openssl: skipped");
        return;
    }
    busybox_script(true);
}

fn busybox_script(openssl: bool) {
    let t = tempfile::tempdir().unwrap();
    let openssl_bin = which("openssl");
    let (applets, extra) = match (&openssl_bin, openssl) {
        (Some(o), true) => (APPLETS.to_vec(), vec![("openssl", o.as_path())]),
        _ => ([APPLETS, &["sha256sum"]].concat(), vec![]),
    };
    let Some(bin) = busybox_bin(&t.path().join("bin"), &applets, &extra) else {
        eprintln!("no busybox: skipped");
        return;
    };
    let nodes: Vec<Local> = (0..4).map(|i| Local::new(t.path(), &bin, i, i == 2)).collect();
    let dyns: Vec<&dyn ChainNode> = nodes.iter().map(|n| n as &dyn ChainNode).collect();
    let places: Vec<_> = nodes.iter().map(Local::place).collect();
    broadcast_with_the_third_dead(t.path(), &dyns, &places, "busybox");
}

/// A receiver running the hop in-process (`hop::run`, what `mln-hop`
/// runs) on loopback, its control and output through socket pairs as the
/// binary's stdin and stdout; stopped through its flag (the binary's
/// SIGTERM). The decompressor and writer are this machine's `sh -c`.
struct HopNode {
    name: String,
    root: std::path::PathBuf,
    log: std::path::PathBuf,
    base: u16,
    dead: bool,
    sink: Option<String>,
    stops: Mutex<HashMap<u16, Arc<AtomicBool>>>,
}

impl HopNode {
    fn new(dir: &Path, i: usize, dead: bool) -> HopNode {
        let root = dir.join(format!("hroot{i}"));
        std::fs::create_dir_all(&root).unwrap();
        let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        HopNode { name: format!("h{i}"), log: dir.join(format!("hlog{i}")), root, base, dead, sink: None, stops: Mutex::default() }
    }
}

struct HopReceiver {
    control: std::os::unix::net::UnixStream,
    out: mpsc::Receiver<String>,
}

impl Receiver for HopReceiver {
    fn forward_to(&mut self, next: Option<&Hop>) -> Result<(), String> {
        let line = next.map(|h| format!("{} {}\n", h.addr, h.port)).unwrap_or_else(|| "- -\n".into());
        self.control.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
    fn wait(&mut self, deadline: Instant) -> Option<Result<Report, String>> {
        let text = self.out.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
        Some(Report::parse(&text).ok_or(text))
    }
}

impl ChainNode for HopNode {
    fn name(&self) -> &str {
        &self.name
    }
    fn hop(&self, pass: u16) -> Hop {
        Hop { addr: "127.0.0.1".into(), port: self.base + pass }
    }
    fn stop(&self, pass: u16) {
        if let Some(f) = self.stops.lock().unwrap().get(&pass) {
            f.store(true, Ordering::SeqCst);
        }
    }
    fn start(&self, pass: u16) -> Result<Box<dyn Receiver>, String> {
        if self.dead {
            return Err("no answer".into());
        }
        let sink = self.sink.clone().unwrap_or_else(|| format!("tar -x -C {}", quote(&self.root.display().to_string())));
        let cfg = crate::baremetal::hop::Config { port: self.base + pass, filter: "gzip -dc".into(), sink, log: Some(self.log.display().to_string()), tag: format!("host={}", self.name) };
        let stop = Arc::new(AtomicBool::new(false));
        self.stops.lock().unwrap().insert(pass, stop.clone());
        let (control, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut ours_out, mut their_out) = std::os::unix::net::UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut input = std::io::BufReader::new(theirs);
            crate::baremetal::hop::run(&cfg, &mut input, &mut their_out, stop, &|| {})
        });
        let mut first = [0u8; 20];
        ours_out.read_exact(&mut first).map_err(|e| e.to_string())?;
        if &first != b"MLN-CHAIN listening\n" {
            return Err(format!("did not listen: {:?}", String::from_utf8_lossy(&first)));
        }
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = ours_out.read_to_string(&mut rest);
            let _ = tx.send(rest);
        });
        Ok(Box::new(HopReceiver { control, out }))
    }
}

/// The chain through the hop: three nodes extract a gzip tar while
/// forwarding it, a fourth is dead and skipped; each node's log line says
/// what it got, from whom it went on, and that the hop did it.
#[test]
fn the_hop_receives_forwards_hashes_and_extracts() {
    let t = tempfile::tempdir().unwrap();
    let nodes: Vec<HopNode> = (0..4).map(|i| HopNode::new(t.path(), i, i == 2)).collect();
    let dyns: Vec<&dyn ChainNode> = nodes.iter().map(|n| n as &dyn ChainNode).collect();
    let places: Vec<Place> = nodes.iter().map(|n| Place { name: &n.name, root: &n.root, log: &n.log }).collect();
    broadcast_with_the_third_dead(t.path(), &dyns, &places, "mln-hop");
}

/// A hop whose writer fails (its disk) gets the whole image, says it was
/// not written, and still forwards it whole to the next.
#[test]
fn a_hop_that_cannot_write_still_forwards() {
    let t = tempfile::tempdir().unwrap();
    let (img, sum, big) = tree_image(t.path());
    let mut nodes: Vec<HopNode> = (0..3).map(|i| HopNode::new(t.path(), i, false)).collect();
    nodes[1].sink = Some("exit 3".into());
    let dyns: Vec<&dyn ChainNode> = nodes.iter().map(|n| n as &dyn ChainNode).collect();
    let out = broadcast(&dyns, &img, &sum, &Options { passes: 2, grace: Duration::from_secs(60), stall: Duration::from_secs(30) });
    assert!(matches!(&out[1], Outcome::Failed(e) if e.contains("not written") && e.contains("write exit 3")), "{out:?}");
    assert_eq!(out[0], Outcome::Written { pass: 0 });
    assert_eq!(out[2], Outcome::Written { pass: 0 });
    assert_eq!(std::fs::read(nodes[2].root.join("big")).unwrap(), big);
}

/// A hop told to stop mid-stream (mln's stop of a pass that hangs) ends
/// it there and reports what it got: the SHA-256 of the part received.
#[test]
fn a_stopped_hop_reports_what_it_got() {
    let t = tempfile::tempdir().unwrap();
    let out_file = t.path().join("got");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = crate::baremetal::hop::Config { port, filter: "cat".into(), sink: format!("cat > {}", quote(&out_file.display().to_string())), log: None, tag: "host=x".into() };
    let stop = Arc::new(AtomicBool::new(false));
    let (mut control, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (mut ours, mut their_out) = std::os::unix::net::UnixStream::pair().unwrap();
    let s2 = stop.clone();
    let h = std::thread::spawn(move || crate::baremetal::hop::run(&cfg, &mut std::io::BufReader::new(theirs), &mut their_out, s2, &|| {}));
    let mut first = [0u8; 20];
    ours.read_exact(&mut first).unwrap();
    control.write_all(b"- -\n").unwrap();
    let mut up = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let part = vec![7u8; 300_000];
    up.write_all(&part).unwrap();
    // Everything sent has come through to the writer before the stop.
    while std::fs::metadata(&out_file).map(|m| m.len()).unwrap_or(0) < part.len() as u64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(h.join().unwrap(), 0, "what it got was written");
    let mut text = String::new();
    ours.read_to_string(&mut text).unwrap();
    let r = Report::parse(&text).unwrap();
    assert_eq!((r.sha256.as_str(), r.written, r.forward.as_str(), r.runner), (sha(&part).as_str(), true, "none", Runner::Binary), "{text}");
}

#[test]
fn the_result_says_which_part_ran() {
    assert_eq!(Report::parse("MLN-CHAIN-RESULT filter=0 sink=0 fwd=0 sum=a hop=mln-hop").unwrap().runner, Runner::Binary);
    assert_eq!(Report::parse("MLN-CHAIN-RESULT filter=0 sink=0 fwd=0 sum=a hop=busybox").unwrap().runner, Runner::Script);
    let s = script(7907, "true", "gzip -dc", "tar -x -p -C /mnt", Some("/dev/console"), "host=n1");
    assert!(s.contains("exec mln-hop 7907 'gzip -dc' 'tar -x -p -C /mnt' /dev/console host=n1"), "{s}");
}
