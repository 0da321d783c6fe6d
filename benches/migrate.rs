//! Issue 11's benchmarks, each side by side with virsh in one run, on
//! namespace service hosts (tests/support/testhosts.rs; root, libvirtd,
//! QEMU; the release binary):
//!
//! * `live`: `mln migrate --live` of a running guest against `virsh
//!   migrate --live` of a guest of the same shape between the same two
//!   service hosts, interleaved, each move back and forth; and the longest
//!   pause a TCP stream into mln's moving guest (from a guest on a third
//!   host) saw during each of mln's moves.
//! * `freeze`: 12 guests over 3 service hosts, `mln stop -S` / `mln start`
//!   against a sequential loop of `virsh save` / `virsh restore` over the
//!   same 12 domains on their hosts' libvirtd; every guest checked running
//!   (and counting on) after each resume.
//!
//! `cargo bench --bench migrate [live|freeze]`; results are printed and
//! written to target/bench/migrate.md. MLN_BENCH_ROUNDS sets the rounds.
//!
//! The virsh side of `live` uses a guest mln does not manage: a virsh move
//! of one of mln's would leave mln's record pointing at the old host. The
//! bench defines it with virsh from mln's own definition of the moving
//! guest (same devices, memory, kernel, seed, swap disk), its files under
//! `/var/lib/mln/peer` on each host (the same path on every host, as
//! each host's /var/lib/mln is its own), its interface on a bridge of its
//! own on each host. Before each virsh move, the destination gets what
//! mln's receiving agent makes: an empty sparse swap disk of the same
//! size (one `ssh` command, timed with the move).

#[path = "support/common.rs"]
mod common;
#[path = "../tests/support/testhosts.rs"]
mod testhosts;

use common::strip_ansi;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testhosts::Lab;

/// Software emulation on a shared machine: guests boot in tens of seconds.
const PATIENCE: Duration = Duration::from_secs(300);
const SWAP_MIB: u64 = 32;
const MEM: &str = "96M";

fn rounds(default: usize) -> usize {
    std::env::var("MLN_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn must(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "`{cmd}`: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v.to_vec());
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

/// "median s (min–max)".
fn spread(v: &[f64]) -> String {
    let s = sorted(v.to_vec());
    format!("{:.2} s ({:.2}–{:.2})", median(v), s[0], s[s.len() - 1])
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn counters(console: &str) -> Vec<u64> {
    console.lines().filter_map(|l| l.trim().strip_prefix("MLN-COUNTER ")?.trim().parse().ok()).collect()
}

fn last_counter(p: &Path) -> u64 {
    counters(&std::fs::read_to_string(p).unwrap_or_default()).last().copied().unwrap_or(0)
}

/// The numbers of the stream's lines `mln-recv` printed.
fn got(console: &str) -> Vec<u64> {
    console.lines().filter_map(|l| l.trim().strip_prefix("MLN-GOT ")?.split_whitespace().next()?.parse().ok()).collect()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The managing machine: its own state, the test guest as template, the
/// lab's fabric configuration; an ssh wrapper and a URI per host for virsh.
struct Manager<'a> {
    lab: &'a Lab,
    state: tempfile::TempDir,
    fabric: PathBuf,
    /// HOME for virsh and ssh: no file of this machine's user is read.
    home: tempfile::TempDir,
    ssh: PathBuf,
}

impl<'a> Manager<'a> {
    fn new(lab: &'a Lab) -> Manager<'a> {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::Builder::new().prefix("mln-bench-migrate-").tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let guest = state.path().join("templates/mln-testguest");
        let st = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/testguest/build.sh")).arg(&guest).output().unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let home = tempfile::tempdir().unwrap();
        // libvirt runs OpenSSH's client, which reads ~/.ssh of the passwd
        // entry: the wrapper (the URI's `command`) names the lab's files,
        // and holds ssh to the key exchange mln uses with this server.
        let ssh = home.path().join("ssh");
        std::fs::write(
            &ssh,
            format!(
                "#!/bin/sh\nexec ssh -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o KexAlgorithms=curve25519-sha256 -o BatchMode=yes \"$@\"\n",
                lab.known_hosts.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        Manager { lab, fabric: lab.fabric(""), state, home, ssh }
    }

    fn mln(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mln"));
        c.env_remove("SSH_AUTH_SOCK").env("MLN_KVM", "0").arg("--state-dir").arg(self.state.path()).arg("--fabric").arg(&self.fabric);
        c
    }

    /// Runs mln, timed; panics with its output if it fails.
    fn ok(&self, args: &[&str]) -> f64 {
        let t = Instant::now();
        let out = self.mln().args(args).output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "mln {args:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        secs
    }

    /// `mln migrate`, timed, with each line of its JSON progress stamped
    /// with the time it arrived (the breakdown of where a move's time goes).
    fn migrate(&self, host: &str, host_from: &str, to: &str) -> (f64, Vec<(f64, String)>) {
        let t = Instant::now();
        let mut child = self.mln().env("MLN_LOG", "warn,mln=info,mln::migrate::timing=debug,mln::fabric::timing=debug").args(["migrate", "-p", "mv", "-h", host, "--to", to, "--live", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        // stdout: the outcome document; stderr: progress events as they come.
        let lines = Mutex::new(Vec::new());
        let outcome = std::thread::scope(|s| {
            let doc = s.spawn(move || std::io::read_to_string(out).unwrap_or_default());
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push((t.elapsed().as_secs_f64(), strip_ansi(&l).replace(host_from, "FROM").replace(to, "TO")));
            }
            doc.join().unwrap()
        });
        let st = child.wait().unwrap();
        let secs = t.elapsed().as_secs_f64();
        let lines = lines.into_inner().unwrap();
        assert!(st.success(), "mln migrate failed:\n{outcome}{}", lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n"));
        (secs, lines)
    }

    /// A libvirt URI for virsh reaching `h`'s daemon over SSH.
    fn ssh_uri(&self, h: &str) -> String {
        format!("qemu+ssh://root@{}/system?keyfile={}&no_tty=1&command={}", self.lab.host(h).addr, self.lab.key.display(), self.ssh.display())
    }

    fn virsh(&self) -> Command {
        let mut c = Command::new("virsh");
        c.env_remove("SSH_AUTH_SOCK").env("HOME", self.home.path());
        c
    }

    /// Runs a command, timed; panics with its output if it fails.
    fn timed(&self, mut c: Command, what: &str) -> f64 {
        c.env_remove("SSH_AUTH_SOCK").env("HOME", self.home.path());
        let t = Instant::now();
        let out = c.output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "{what} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        secs
    }

    /// A shell command on `h` over SSH (as an operator would prepare it).
    fn ssh_cmd(&self, h: &str, cmd: &str) -> Command {
        let mut c = Command::new(&self.ssh);
        c.args(["-i", &self.lab.key.display().to_string(), "-o", "IdentitiesOnly=yes", &format!("root@{}", self.lab.host(h).addr), cmd]);
        c
    }

    /// `virsh` on `h`'s daemon through its local socket (untimed checks).
    fn local_virsh(&self, h: &str, cmd: &str) -> String {
        let sock = self.lab.host(h).root.join("run/libvirt/libvirt-sock");
        must(&format!("virsh -q -c 'qemu+unix:///system?socket={}' {cmd}", sock.display()))
    }

    fn domstate(&self, h: &str, dom: &str) -> String {
        let sock = self.lab.host(h).root.join("run/libvirt/libvirt-sock");
        let out = Command::new("virsh").args(["-q", "-c", &format!("qemu+unix:///system?socket={}", sock.display()), "domstate", dom]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

// ---------------------------------------------------------------- live

/// The times at which the stream's highest line number went up, watched
/// on every host's console of the receiving guest (a console goes with
/// the host's files when it leaves; the watcher keeps the highest seen).
struct Stream {
    arrivals: Mutex<Vec<(Instant, u64)>>,
    stop: AtomicBool,
}

impl Stream {
    fn watch(&self, consoles: &[PathBuf]) {
        let mut high = 0;
        while !self.stop.load(Ordering::Relaxed) {
            for c in consoles {
                let n = got(&std::fs::read_to_string(c).unwrap_or_default()).into_iter().max().unwrap_or(0);
                if n > high {
                    high = n;
                    self.arrivals.lock().unwrap().push((Instant::now(), n));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn high(&self) -> u64 {
        self.arrivals.lock().unwrap().last().map(|a| a.1).unwrap_or(0)
    }
    /// The longest time without a new line from `from` until the stream
    /// has gone on by `lines` lines past the highest now (called when the
    /// move has returned: a pause still going on is waited out).
    /// Also when the pause began and ended, in seconds since `from`.
    fn longest_pause_after(&self, from: Instant, lines: u64, dead: &dyn Fn() -> Option<String>) -> (f64, f64, f64) {
        let start_high = self.high();
        wait_for("the stream to go on after the move", || {
            if let Some(d) = dead() {
                panic!("{d}");
            }
            self.high() >= start_high + lines
        });
        let a = self.arrivals.lock().unwrap();
        let mut last = a.iter().rev().find(|a| a.0 <= from).map(|a| a.0).unwrap_or(from);
        let (mut longest, mut when) = (Duration::ZERO, (0.0, 0.0));
        let since = |t: Instant| t.saturating_duration_since(from).as_secs_f64() - from.saturating_duration_since(t).as_secs_f64();
        for (t, _) in a.iter().filter(|a| a.0 > from) {
            if t.duration_since(last) > longest {
                longest = t.duration_since(last);
                when = (since(last), since(*t));
            }
            last = *t;
        }
        (longest.as_secs_f64(), when.0, when.1)
    }
}

fn live() -> String {
    let n = rounds(6);
    eprintln!("live: starting 3 service hosts...");
    let lab = Lab::new(3, true).with_mtu(1550);
    let m = Manager::new(&lab);
    let host = |name: &str, on: &str, addr: &str, startup: &str| {
        format!("host {name} {{\n    superclass node\n    service_host {on}\n    network eth0 {{\n        address {addr}\n    }}\n    startup {{\n        {startup}\n    }}\n}}\n")
    };
    let text = [
        format!("global {{\n    project mv\n}}\nswitch lan {{\n}}\nsuperclass node {{\n    template mln-testguest\n    memory {MEM}\n    swap {SWAP_MIB}M\n    network eth0 {{\n        switch lan\n        netmask 255.255.255.0\n    }}\n}}\n"),
        host("recv", "h1", "10.8.0.1", "mln-recv 5000"),
        // The sender on a third host; it reconnects only after a minute
        // without progress, so a pause is the move's, not a reconnection.
        host("send", "h3", "10.8.0.2", "MLN_SEND_STALL=60 mln-send 10.8.0.1 5000"),
    ]
    .concat();
    let f = m.state.path().join("mv.mln");
    std::fs::write(&f, text).unwrap();
    m.ok(&["build", "-f", f.to_str().unwrap()]);
    // The template on h2 too, as mln's move would send it first.
    m.ok(&["template", "push", "mln-testguest", "-w", "h2"]);
    m.ok(&["start", "-p", "mv"]);
    let recv_console = |h: &str| lab.state_dir(h).join("projects/mv/recv/console.log");
    wait_for("the stream to flow", || got(&std::fs::read_to_string(recv_console("h1")).unwrap_or_default()).len() >= 10);

    // The peer's guest: mln's definition of `recv`, renamed, its own files
    // and bridge, defined and started by virsh on h1.
    let xml = m.local_virsh("h1", "dumpxml --inactive recv.mv");
    let here = "/var/lib/mln/projects/mv/recv";
    assert!(xml.contains(here), "{xml}");
    let bridge_at = xml.find("<source bridge='").expect("a bridged interface") + "<source bridge='".len();
    let bridge = &xml[bridge_at..bridge_at + xml[bridge_at..].find('\'').unwrap()];
    let peer_xml: String = xml
        .lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>") && !l.trim_start().starts_with("<mac address"))
        .map(|l| l.replace(here, "/var/lib/mln/peer").replace("<name>recv.mv</name>", "<name>peer</name>").replace(&format!("bridge='{bridge}'"), "bridge='peerbr'") + "\n")
        .collect();
    let files: Vec<String> = std::fs::read_dir(lab.state_dir("h1").join("projects/mv/recv")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for h in ["h1", "h2"] {
        lab.run_in(h, "ip link add peerbr type bridge && ip link set peerbr up");
        let dir = lab.state_dir(h).join("peer");
        std::fs::create_dir_all(&dir).unwrap();
        for name in &files {
            if name != "console.log" && name != "swap.img" {
                std::fs::copy(lab.state_dir("h1").join("projects/mv/recv").join(name), dir.join(name)).unwrap();
            }
        }
    }
    // The swap disk as mln made it on the build (mkswap'd), on h1.
    std::fs::copy(lab.state_dir("h1").join("projects/mv/recv/swap.img"), lab.state_dir("h1").join("peer/swap.img")).unwrap();
    std::fs::write(lab.state_dir("h1").join("peer/peer.xml"), &peer_xml).unwrap();
    m.local_virsh("h1", &format!("define {}", lab.state_dir("h1").join("peer/peer.xml").display()));
    m.local_virsh("h1", "start peer");
    let peer_console = |h: &str| lab.state_dir(h).join("peer/console.log");
    wait_for("the peer's guest to count", || counters(&std::fs::read_to_string(peer_console("h1")).unwrap_or_default()).len() >= 3);

    let stream = Stream { arrivals: Mutex::new(Vec::new()), stop: AtomicBool::new(false) };
    let (mut mln_t, mut virsh_t, mut virsh_prep, mut pauses) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut phases: Vec<Vec<(f64, String)>> = Vec::new();
    // What ran when (each move, timed part and checks), to place the
    // stream's pauses.
    let acts: Mutex<Vec<(String, Instant, Instant)>> = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let (mut failure, mut completed): (Option<String>, usize) = (None, 0);
    std::thread::scope(|s| {
        let consoles = [recv_console("h1"), recv_console("h2")];
        let stream = &stream;
        let watcher = s.spawn(move || stream.watch(&consoles));
        // The scope waits for the watcher: it must stop even if a round panics.
        struct StopOnDrop<'s>(&'s AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stream.stop);
        // Round 0 is a warm-up (not counted): each direction is timed as
        // often as the other.
        for round in 0..=n {
            let (from, to) = if round % 2 == 0 { ("h1", "h2") } else { ("h2", "h1") };
            let do_mln = |pauses: &mut Vec<(f64, f64, f64)>, mln_t: &mut Vec<f64>, phases: &mut Vec<Vec<(f64, String)>>| {
                let before = last_counter(&recv_console(from));
                let start = Instant::now();
                let (secs, lines) = m.migrate("recv", from, to);
                let dead = || {
                    let c = std::fs::read_to_string(recv_console(to)).unwrap_or_default();
                    let i = c.find("Kernel panic").or_else(|| c.find("general protection fault"))?;
                    Some(format!("recv's kernel crashed on {to} after mln's move: {}", c[i..].lines().next().unwrap_or("")))
                };
                let (pause, p0, p1) = stream.longest_pause_after(start, 25, &dead);
                acts.lock().unwrap().push((format!("mln {from}->{to} (round {round})"), start, start + Duration::from_secs_f64(secs)));
                // Not timed: it runs there, counting on from where it was.
                wait_for("recv to count on at its new place", || last_counter(&recv_console(to)) > before);
                let there = std::fs::read_to_string(recv_console(to)).unwrap_or_default();
                assert!(!there.contains("MLN-GUEST-UP"), "recv booted again on {to}:\n{there}");
                assert_eq!(m.domstate(to, "recv.mv"), "running");
                eprintln!("  mln   {from}->{to}: {secs:.2} s, longest pause in the stream {pause:.2} s (from {p0:.2} s to {p1:.2} s)");
                if round > 0 {
                    mln_t.push(secs);
                    pauses.push((pause, p0, p1));
                    phases.push(lines);
                }
            };
            let do_virsh = |virsh_t: &mut Vec<f64>, virsh_prep: &mut Vec<f64>| {
                let before = last_counter(&peer_console(from));
                // What mln's receiving agent makes: an empty sparse swap disk.
                let prep = m.timed(
                    m.ssh_cmd(to, &format!("rm -f /var/lib/mln/peer/swap.img && truncate -s {SWAP_MIB}M /var/lib/mln/peer/swap.img")),
                    "preparing the peer's destination",
                );
                let dest = &lab.host(to).addr;
                let mut c = m.virsh();
                c.args(["-c", &m.ssh_uri(from), "migrate", "--live", "--persistent", "--undefinesource", "--copy-storage-inc", "peer", &m.ssh_uri(to)])
                    .args(["--migrateuri", &format!("tcp://{dest}"), "--listen-address", dest, "--disks-uri", &format!("tcp://{dest}")]);
                let start = Instant::now();
                let secs = m.timed(c, "virsh migrate");
                acts.lock().unwrap().push((format!("virsh {from}->{to} (round {round})"), start, Instant::now()));
                wait_for("the peer to count on at its new place", || {
                    let c = counters(&std::fs::read_to_string(peer_console(to)).unwrap_or_default());
                    c.last().is_some_and(|&l| l > before)
                });
                assert_eq!(m.domstate(to, "peer"), "running");
                eprintln!("  virsh {from}->{to}: {:.2} s (+ {prep:.2} s preparing the destination)", secs);
                if round > 0 {
                    virsh_t.push(secs + prep);
                    virsh_prep.push(prep);
                }
            };
            eprintln!("round {round}/{n}{}", if round == 0 { " (warm-up)" } else { "" });
            // A guest lost on the way ends the rounds; what was measured
            // until then is reported, with why it stopped.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if round % 2 == 0 {
                    do_mln(&mut pauses, &mut mln_t, &mut phases);
                    do_virsh(&mut virsh_t, &mut virsh_prep);
                } else {
                    do_virsh(&mut virsh_t, &mut virsh_prep);
                    do_mln(&mut pauses, &mut mln_t, &mut phases);
                }
            }));
            if let Err(e) = r {
                let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                let mut seen = String::new();
                for h in ["h1", "h2"] {
                    let c = std::fs::read_to_string(recv_console(h)).unwrap_or_default();
                    let crash = c.find("general protection").or_else(|| c.find("Kernel panic")).map(|i| c[i..].lines().next().unwrap_or("").to_string());
                    seen += &format!(
                        " {h}: domains {:?}, recv's console {} bytes, last counter {}, crash: {crash:?};",
                        lab.domains(h),
                        c.len(),
                        counters(&c).last().copied().unwrap_or(0)
                    );
                }
                failure = Some(format!("round {round} ({from}->{to}): {};{seen}", msg.lines().take(3).collect::<Vec<_>>().join(" / ")));
                eprintln!("stopped: {}", failure.as_deref().unwrap_or(""));
                break;
            }
            completed = round;
        }
        stream.stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
    });
    // The stream across every move: no line lost, none twice.
    let arrivals = stream.arrivals.lock().unwrap().clone();
    let lines_seen = arrivals.last().map(|a| a.1).unwrap_or(0) - arrivals.first().map(|a| a.1).unwrap_or(0);
    // Every pause over a second in the whole run, and what ran meanwhile.
    let acts = acts.into_inner().unwrap();
    let stalls: Vec<String> = arrivals
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 > Duration::from_secs(1))
        .map(|w| {
            let during: Vec<&str> = acts.iter().filter(|a| a.1 < w[1].0 && a.2 > w[0].0).map(|a| a.0.as_str()).collect();
            format!(
                "{:.2} s from {:.1} s (during: {})",
                (w[1].0 - w[0].0).as_secs_f64(),
                (w[0].0 - t0).as_secs_f64(),
                if during.is_empty() { "no move".to_string() } else { during.join(", ") }
            )
        })
        .collect();
    let moves: Vec<String> = acts.iter().map(|a| format!("{} {:.1}–{:.1} s", a.0, (a.1 - t0).as_secs_f64(), (a.2 - t0).as_secs_f64())).collect();
    let place = if completed % 2 == 0 { "h2" } else { "h1" };
    let all = got(&std::fs::read_to_string(recv_console(place)).unwrap_or_default());
    let contiguous = all.windows(2).all(|w| w[1] == w[0] + 1);
    let sent = std::fs::read_to_string(lab.state_dir("h3").join("projects/mv/send/console.log")).unwrap_or_default();
    let reconnected = sent.contains("MLN-SEND-BROKEN");
    let status: serde_json::Value = serde_json::from_slice(&m.mln().args(["status", "-p", "mv", "--json"]).output().unwrap().stdout).unwrap_or_default();
    let recv_at = status.as_array().and_then(|a| a.iter().find(|h| h["host"] == "recv")).map(|r| format!("{} on {}", r["state"], r["service_host"])).unwrap_or_default();
    if failure.is_none() {
        assert_eq!(recv_at, format!("\"running\" on \"{place}\""), "{status}");
    }
    let mut out = String::new();
    if let Some(f) = &failure {
        out += &format!("**The rounds stopped early**, after {completed} of {n} counted rounds: {f}. `mln status` then said recv is {recv_at}.\n\n");
        if mln_t.is_empty() || virsh_t.is_empty() {
            return out;
        }
    }

    let ratio = median(&mln_t) / median(&virsh_t);
    let bare: Vec<f64> = virsh_t.iter().zip(&virsh_prep).map(|(t, p)| t - p).collect();
    out += &format!(
        "## live migration: `mln migrate --live` against `virsh migrate --live` ({} moves each, h1<->h2, interleaved, after one warm-up move each)\n\n\
         | tool | median (min–max) |\n|---|---|\n\
         | `mln migrate -p mv -h recv --to H --live` | {} |\n\
         | virsh: `ssh` making the empty swap disk + `virsh migrate --live --persistent --undefinesource --copy-storage-inc` (qemu+ssh) | {} |\n\
         | of which `virsh migrate` alone | {} |\n\
         | of which the `ssh` preparing the destination | {} |\n\n\
         mln / virsh (medians): **{ratio:.2}** (goal <= 1.1: {}); against `virsh migrate` alone: {:.2}.\n\n\
         Longest pause of the stream into mln's moving guest, per move (in brackets: from when to when, seconds since `mln migrate` started): {} (median {:.2} s, max {:.2} s). \
         Every pause of the stream over 1 s in the whole run (warm-up included; seconds since the first move): {}. The moves: {}.\n\n\
         Stream lines received from the first move to the end: {lines_seen}, in order with none missing or repeated on the last host's console: {contiguous}; \
         the sender reconnected: {reconnected}.\n\n",
        mln_t.len(),
        spread(&mln_t),
        spread(&virsh_t),
        spread(&bare),
        spread(&virsh_prep),
        met(ratio <= 1.1),
        median(&mln_t) / median(&bare),
        pauses.iter().map(|p| format!("{:.2} s [{:.2}–{:.2}]", p.0, p.1, p.2)).collect::<Vec<_>>().join(", "),
        median(&pauses.iter().map(|p| p.0).collect::<Vec<_>>()),
        sorted(pauses.iter().map(|p| p.0).collect()).last().unwrap(),
        if stalls.is_empty() { "none".to_string() } else { stalls.join("; ") },
        moves.join("; "),
    );
    out += &breakdown(&phases);
    let _ = m.mln().args(["remove", "-p", "mv"]).output();
    out
}


/// Where mln's moves spent their time: each progress event's median
/// arrival, in seconds since the command started.
fn breakdown(runs: &[Vec<(f64, String)>]) -> String {
    let mut keys: Vec<String> = Vec::new();
    let mut at: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in runs {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for (t, l) in r {
            let key = match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) => {
                    let mut k = String::new();
                    for f in ["event", "op", "place", "message"] {
                        if let Some(s) = v.get(f).and_then(|x| x.as_str()) {
                            k += &format!("{f}={s} ");
                        }
                    }
                    if let Some(o) = v.get("outcome") {
                        k += &format!("outcome={}", o.to_string().chars().take(120).collect::<String>());
                    }
                    if k.is_empty() {
                        l.chars().take(100).collect()
                    } else {
                        k.trim().to_string()
                    }
                }
                // A timing line: its own ms figures vary, the phase's
                // arrival here is what counts.
                Err(_) => l.split_whitespace().filter(|w| !w.starts_with("ms=")).collect::<Vec<_>>().join(" ").chars().take(100).collect(),
            };
            let i = seen.entry(key.clone()).or_default();
            *i += 1;
            let key = if *i > 1 { format!("{key} #{i}") } else { key };
            if !keys.contains(&key) {
                keys.push(key.clone());
            }
            at.entry(key).or_default().push(*t);
        }
    }
    let mut out = String::from("Where mln's move spends its time (each output line's median arrival, seconds since `mln migrate` started):\n\n| s | line |\n|---|---|\n");
    for k in keys {
        out += &format!("| {:.2} | `{}` |\n", median(&at[&k]), k.replace('|', "/"));
    }
    out + "\n"
}

// ---------------------------------------------------------------- freeze

fn freeze() -> String {
    let n = rounds(5);
    eprintln!("freeze: starting 3 service hosts...");
    let lab = Lab::new(3, true);
    let m = Manager::new(&lab);
    let text = format!(
        "global {{\n    project fz\n    autoenum {{\n        superclass node\n        numhosts 12\n        hostprefix node\n        \
         address auto\n        net 10.99.0.0\n        addresses_begin 10\n        service_hosts {{\n            h1 4\n            h2 4\n            h3 4\n        }}\n    }}\n}}\n\n\
         superclass node {{\n    memory {MEM}\n    template mln-testguest\n    network eth0 {{\n        netmask 255.255.255.0\n    }}\n}}\n"
    );
    let f = m.state.path().join("fz.mln");
    std::fs::write(&f, text).unwrap();
    m.ok(&["build", "-f", f.to_str().unwrap()]);
    m.ok(&["start", "-p", "fz"]);
    let status: serde_json::Value = serde_json::from_slice(&m.mln().args(["status", "-p", "fz", "--json"]).output().unwrap().stdout).unwrap();
    // (host, service host), in the order virsh goes through them.
    let mut guests: Vec<(String, String)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap().to_string(), h["service_host"].as_str().unwrap().to_string()))
        .collect();
    guests.sort_by(|a, b| (&a.1, a.0.len(), &a.0).cmp(&(&b.1, b.0.len(), &b.0)));
    assert_eq!(guests.len(), 12, "{status}");
    for h in ["h1", "h2", "h3"] {
        assert_eq!(guests.iter().filter(|g| g.1 == h).count(), 4, "4 guests on {h}: {guests:?}");
        std::fs::create_dir_all(lab.state_dir(h).join("peer-saves")).unwrap();
    }
    let console = |g: &(String, String)| lab.state_dir(&g.1).join(format!("projects/fz/{}/console.log", g.0));
    wait_for("all 12 guests to count", || guests.iter().all(|g| last_counter(&console(g)) > 0));

    // Each guest running again, counting on from where it was frozen.
    let verify = |was: &[u64], who: &str| {
        for g in &guests {
            assert_eq!(m.domstate(&g.1, &format!("{}.fz", g.0)), "running", "{} after {who}'s resume", g.0);
        }
        wait_for("every guest to count on", || guests.iter().zip(was).all(|(g, &w)| last_counter(&console(g)) > w));
        for g in &guests {
            let text = std::fs::read_to_string(console(g)).unwrap_or_default();
            assert_eq!(text.matches("MLN-GUEST-UP").count(), 1, "{} booted again after {who}'s resume", g.0);
        }
    };
    let (mut mf, mut mr, mut vf, mut vr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..n {
        eprintln!("round {}/{n}", round + 1);
        let do_mln = |mf: &mut Vec<f64>, mr: &mut Vec<f64>| {
            let was: Vec<u64> = guests.iter().map(|g| last_counter(&console(g))).collect();
            let f = m.ok(&["stop", "-p", "fz", "-S"]);
            let st: serde_json::Value = serde_json::from_slice(&m.mln().args(["status", "-p", "fz", "--json"]).output().unwrap().stdout).unwrap();
            assert!(st.as_array().unwrap().iter().all(|h| h["state"] == "saved"), "all saved: {st}");
            let r = m.ok(&["start", "-p", "fz"]);
            verify(&was, "mln");
            eprintln!("  mln:   freeze {f:.2} s, resume {r:.2} s");
            mf.push(f);
            mr.push(r);
        };
        let do_virsh = |vf: &mut Vec<f64>, vr: &mut Vec<f64>| {
            let was: Vec<u64> = guests.iter().map(|g| last_counter(&console(g))).collect();
            // One guest after the other, host after host; one virsh process
            // per host (its connection over SSH opened once for its 4).
            let run = |verb: &str| -> f64 {
                let mut total = 0.0;
                for h in ["h1", "h2", "h3"] {
                    let cmds: Vec<String> = guests
                        .iter()
                        .filter(|g| g.1 == h)
                        .map(|g| match verb {
                            "save" => format!("save {}.fz /var/lib/mln/peer-saves/{}.save", g.0, g.0),
                            _ => format!("restore /var/lib/mln/peer-saves/{}.save", g.0),
                        })
                        .collect();
                    let mut c = m.virsh();
                    c.args(["-q", "-c", &m.ssh_uri(h), &cmds.join(" ; ")]);
                    total += m.timed(c, &format!("virsh {verb} on {h}"));
                }
                total
            };
            let f = run("save");
            for g in &guests {
                assert_eq!(m.domstate(&g.1, &format!("{}.fz", g.0)), "shut off", "{} saved by virsh", g.0);
            }
            let r = run("restore");
            verify(&was, "virsh");
            for h in ["h1", "h2", "h3"] {
                for e in std::fs::read_dir(lab.state_dir(h).join("peer-saves")).unwrap() {
                    let _ = std::fs::remove_file(e.unwrap().path());
                }
            }
            eprintln!("  virsh: freeze {f:.2} s, resume {r:.2} s");
            vf.push(f);
            vr.push(r);
        };
        if round % 2 == 0 {
            do_mln(&mut mf, &mut mr);
            do_virsh(&mut vf, &mut vr);
        } else {
            do_virsh(&mut vf, &mut vr);
            do_mln(&mut mf, &mut mr);
        }
    }
    let total = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x + y).collect() };
    let (mt, vt) = (total(&mf, &mr), total(&vf, &vr));
    let r = |a: &[f64], b: &[f64]| median(a) / median(b);
    let out = format!(
        "## freeze and resume: 12 guests ({MEM}) over 3 service hosts, {n} rounds interleaved\n\n\
         | step | mln | virsh loop (sequential) | mln / virsh (medians) | goal <= 0.5 |\n|---|---|---|---|---|\n\
         | freeze: `mln stop -p fz -S` / `virsh save` x12 | {} | {} | **{:.2}** | {} |\n\
         | resume: `mln start -p fz` / `virsh restore` x12 | {} | {} | **{:.2}** | {} |\n\
         | total | {} | {} | **{:.2}** | {} |\n\n\
         After every resume, each of the 12 domains was `running` on its host and its counter went on past its value before the freeze, with no new boot.\n\n",
        spread(&mf),
        spread(&vf),
        r(&mf, &vf),
        met(r(&mf, &vf) <= 0.5),
        spread(&mr),
        spread(&vr),
        r(&mr, &vr),
        met(r(&mr, &vr) <= 0.5),
        spread(&mt),
        spread(&vt),
        r(&mt, &vt),
        met(r(&mt, &vt) <= 0.5),
    );
    let _ = m.mln().args(["remove", "-p", "fz"]).output();
    out
}

fn main() {
    let file = |which: &[String]| if which.is_empty() { "migrate.md".to_string() } else { format!("migrate-{}.md", which.join("-")) };
    common::report(file, &[("live", &live), ("freeze", &freeze)]);
}
