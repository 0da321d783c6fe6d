//! A managing machine far from its cluster, emulated on one machine: every
//! packet between this machine (the root namespace, the lab bridge's own
//! address) and the lab's hosts waits `one_way` in each direction, while
//! host-to-host traffic (bridged from one veth to another, never through
//! this machine's INPUT or OUTPUT) stays as fast as before.
//!
//! This kernel has no netem, so the delay is made in user space: two
//! iptables rules send the manager's packets to an NFQUEUE, and a thread
//! of the bench gives each its verdict `one_way` after it arrived. The
//! rules live in a chain of their own, are removed when the guard is
//! dropped (a failed bench included), and `--queue-bypass` lets packets
//! through undelayed if the thread is gone, so a crash cannot cut this
//! machine off from the lab.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Wan {
    chain: String,
    /// The two rules that jump to `chain`, as `iptables -D` takes them.
    jumps: Vec<Vec<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn ipt(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables").args(["-w"]).args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Wan {
    /// Delays traffic between this machine and `net` (a.b.c.0/24) on
    /// `bridge` by `one_way` each way; `tag` names the chain and picks the
    /// queue (one per lab).
    pub fn new(bridge: &str, net: &str, tag: u16, one_way: Duration) -> Wan {
        let queue = 3000 + tag;
        let stop = Arc::new(AtomicBool::new(false));
        // The queue is bound before any packet is sent to it.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || delay_loop(queue, one_way, &stop, ready_tx))
        };
        ready_rx.recv().expect("delay thread").unwrap_or_else(|e| panic!("NFQUEUE {queue}: {e}"));
        let chain = format!("FANWAN{tag}");
        let q = queue.to_string();
        let jumps = vec![
            ["OUTPUT", "-o", bridge, "-d", net, "-j", &chain].map(String::from).to_vec(),
            ["INPUT", "-i", bridge, "-s", net, "-j", &chain].map(String::from).to_vec(),
        ];
        // The guard exists from here: whatever was made is removed on drop.
        let wan = Wan { chain: chain.clone(), jumps: Vec::new(), stop, thread: Some(thread) };
        ipt(&["-N", &chain]).unwrap();
        ipt(&["-A", &chain, "-j", "NFQUEUE", "--queue-num", &q, "--queue-bypass"]).unwrap();
        let mut wan = wan;
        for j in jumps {
            let mut add = vec!["-I".to_string()];
            add.extend(j.iter().cloned());
            ipt(&add.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
            wan.jumps.push(j);
        }
        wan
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        for j in &self.jumps {
            let mut del = vec!["-D"];
            del.extend(j.iter().map(String::as_str));
            if let Err(e) = ipt(&del) {
                eprintln!("wan: {e}");
            }
        }
        let _ = ipt(&["-F", &self.chain]);
        if let Err(e) = ipt(&["-X", &self.chain]) {
            eprintln!("wan: {e}");
        }
        // Packets still held are let go when the queue closes.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Holds every packet of the queue `one_way`, in arrival order (one delay
/// for all: the order is also the order of their deadlines).
fn delay_loop(queue: u16, one_way: Duration, stop: &AtomicBool, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let setup = || -> std::io::Result<nfq::Queue> {
        let mut q = nfq::Queue::open()?;
        q.bind(queue)?;
        // Metadata only: the verdict needs the packet's id, not its bytes.
        q.set_copy_range(queue, 0)?;
        // Enough for every handshake of a 64-wide window and a copy of mln
        // in flight during one delay; a full queue drops, as a link would.
        q.set_queue_max_len(queue, 1 << 16)?;
        q.set_nonblocking(true);
        Ok(q)
    };
    let mut q = match setup() {
        Ok(q) => {
            let _ = ready.send(Ok(()));
            q
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        loop {
            match q.recv() {
                Ok(msg) => held.push_back((Instant::now() + one_way, msg)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ENOBUFS: the kernel dropped some (counted as loss); go on.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, mut msg) = held.pop_front().unwrap();
            msg.set_verdict(nfq::Verdict::Accept);
            let _ = q.verdict(msg);
        }
        // The crate gives no descriptor to poll: a short nap, at most
        // 1 ms (each packet then waits 0-1 ms more than asked).
        let wait = held.front().map(|(due, _)| due.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_millis(1));
        std::thread::sleep(wait.min(Duration::from_millis(1)));
    }
    for (_, mut msg) in held {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = q.verdict(msg);
    }
    let _ = q.unbind(queue);
}
