//! Logins to guests on service hosts, and the paper's experiment (issue
//! 12, acceptance 3), on one booted cluster: two Debian guests of the
//! `cluster` plugin built from the Open MPI recipe, node01 on service host
//! h1 and node02 on h2 (namespaces, each with its own sshd and libvirtd),
//! one switch across both.
//!
//! * The service hosts built the guests with this machine's login key
//!   (the private half never left it) and `mln ssh` logs into each with
//!   strict host-key checking, the keys read from the consoles there;
//!   `mln exec` runs on both at once.
//! * An MPI ring passing a counter runs for minutes across both service
//!   hosts; meanwhile the whole cluster is saved (`mln stop -S`), node02
//!   moved to h1 by `mln upgrade`, and started again: the ring ends with
//!   the right total and neither guest booted again (same boot ids).
//!
//! Slow and needs root, mmdebstrap, QEMU and libvirtd (scripts/setup.sh):
//! builds the template from the Debian mirror (~3 min cold), boots two
//! guests under emulation; `cargo test --test e2e_login_remote -- --ignored`
//! (`MLN_E2E_DEBIAN_TEMPLATE=DIR`: copy a template built before instead).

#[path = "support/testhosts.rs"]
mod testhosts;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testhosts::Lab;

const PROJECT: &str = "sshr";

struct Manager<'a> {
    state: tempfile::TempDir,
    fabric: PathBuf,
    lab: &'a Lab,
}

/// Whatever happens, no guest is left running in the lab.
impl Drop for Manager<'_> {
    fn drop(&mut self) {
        let _ = self.cmd().args(["remove", "-p", PROJECT]).output();
    }
}

impl Manager<'_> {
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("mln").unwrap();
        c.env_remove("SSH_AUTH_SOCK").arg("--state-dir").arg(self.state.path()).arg("--fabric").arg(&self.fabric);
        c
    }
    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, Some(0), "mln {args:?} failed:\n{out}{err}\n{}", self.consoles());
        out
    }
    /// A command on a guest, through `mln ssh`.
    fn on(&self, host: &str, cmd: &str) -> String {
        self.ok(&["ssh", "-p", PROJECT, "-h", host, "--", cmd]).trim().to_string()
    }
    fn console(&self, on: &str, host: &str) -> String {
        let raw = std::fs::read(self.lab.state_dir(on).join("projects").join(PROJECT).join(host).join("console.log")).unwrap_or_default();
        String::from_utf8_lossy(&raw).replace('\r', "")
    }
    /// The consoles' ends, for a failure's message.
    fn consoles(&self) -> String {
        let mut s = String::new();
        for on in ["h1", "h2"] {
            for host in ["node01", "node02"] {
                let c = self.console(on, host);
                if !c.is_empty() {
                    let tail: String = c.chars().rev().take(2500).collect::<String>().chars().rev().collect();
                    s += &format!("== {host} on {on}:\n{tail}\n");
                }
            }
        }
        s
    }
    fn login(&self) -> PathBuf {
        self.state.path().join("projects").join(PROJECT).join("login")
    }
}

fn key_of(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn project(dir: &Path, name: &str, node02_on: &str) -> PathBuf {
    let host = |name: &str, on: &str, addr: &str| {
        format!("host {name} {{\n    superclass node\n    service_host {on}\n    network eth0 {{\n        address {addr}\n    }}\n}}\n")
    };
    let text = [
        format!(
            "global {{\n    project {PROJECT}\n    cluster {{\n        head node01\n    }}\n}}\nswitch net {{\n}}\nsuperclass node {{\n    \
             memory 512M\n    template debian-12-openmpi\n    network eth0 {{\n        switch net\n        netmask 255.255.255.0\n    }}\n}}\n"
        ),
        host("node01", "h1", "10.79.0.11"),
        host("node02", node02_on, "10.79.0.12"),
    ]
    .concat();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
#[ignore = "slow, root: builds a Debian template, two service hosts in namespaces, boots two guests under QEMU; run with --ignored"]
fn logins_and_an_mpi_job_across_service_hosts_that_survives_a_move() {
    let lab = Lab::new(2, true).with_mtu(1550);
    let m = Manager { state: tempfile::tempdir().unwrap(), fabric: lab.fabric(""), lab: &lab };
    let t = Instant::now();
    match std::env::var_os("MLN_E2E_DEBIAN_TEMPLATE") {
        // A developer's shortcut when re-running: a template this recipe
        // built before (CI builds it).
        Some(dir) => {
            std::fs::create_dir_all(m.state.path().join("templates")).unwrap();
            let out = std::process::Command::new("cp").arg("-a").arg(&dir).arg(m.state.path().join("templates/debian-12-openmpi")).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        None => {
            m.ok(&["template", "build", "debian-12-openmpi"]);
            eprintln!("template build (cold): {:.0} s", t.elapsed().as_secs_f64());
        }
    }

    let v1 = project(m.state.path(), "v1.mln", "h2");
    let t = Instant::now();
    m.ok(&["build", "-f", v1.to_str().unwrap()]);
    m.ok(&["start", "-p", PROJECT]);
    eprintln!("build (template pushed to both) and start: {:.0} s", t.elapsed().as_secs_f64());

    // (a) The service hosts gave the guests this machine's key; its
    // private half stayed here.
    let ours = key_of(&std::fs::read_to_string(m.login().join("id_ed25519.pub")).unwrap());
    for on in ["h1", "h2"] {
        let there = lab.state_dir(on).join("projects").join(PROJECT).join("login");
        assert_eq!(key_of(&std::fs::read_to_string(there.join("given_id_ed25519.pub")).unwrap()), ours, "{on}");
        assert!(!there.join("id_ed25519").exists(), "{on} made a login key of its own");
        assert_eq!(
            std::fs::read_to_string(there.join("cluster_ed25519")).unwrap(),
            std::fs::read_to_string(m.login().join("cluster_ed25519")).unwrap(),
            "{on}: not this machine's cluster key"
        );
    }

    // (b) mln ssh: each guest's own name, read from the guest, through its
    // service host; the host keys are the ones its console printed there.
    let booted = Instant::now();
    for (host, on) in [("node01", "h1"), ("node02", "h2")] {
        let (code, out, err) = m.run(&["ssh", "-p", PROJECT, "-h", host, "--wait", "900", "--", "hostname"]);
        assert_eq!(code, Some(0), "mln ssh {host}: {out}{err}\n{}", m.consoles());
        assert_eq!(out.trim(), host);
        eprintln!("mln ssh {host} (on {on}) answered {:.0} s after start", booted.elapsed().as_secs_f64());
        let kh = std::fs::read_to_string(m.login().join("known_hosts")).unwrap();
        let entry = kh.lines().find(|l| l.starts_with(&format!("{host} "))).unwrap_or_else(|| panic!("no entry for {host}: {kh}"));
        assert!(m.console(on, host).contains(entry.split_once(' ').unwrap().1), "{host}'s entry is not what its console printed on {on}");
    }

    // (c) mln exec over guests on both service hosts at once.
    let (code, out, err) = m.run(&["exec", "-p", PROJECT, "--", "cat", "/etc/hostname"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("\nnode01\n") && out.contains("\nnode02\n"), "{out}");
    assert!(err.contains("node01: ok") && err.contains("node02: ok"), "{err}");

    // (d) The paper's experiment: a ring over both service hosts, for
    // minutes; the cluster saved, node02 moved to h1, started again.
    let boot_ids = || ["node01", "node02"].map(|h| m.on(h, "cat /proc/sys/kernel/random/boot_id"));
    let before = boot_ids();
    m.ok(&["exec", "-p", PROJECT, "--", &format!("echo {} | base64 -d > /root/ring.py", base64(RING))]);
    m.on("node01", &format!("setsid nohup mpirun --allow-run-as-root --hostfile /etc/mln/hostfile -np 2 python3 /root/ring.py {LAPS} 0.2 > /root/ring.out 2>&1 < /dev/null &"));
    let laps = || m.on("node01", "cat /root/ring.out").lines().filter_map(|l| l.strip_prefix("LAP ")?.parse::<u64>().ok()).max().unwrap_or(0);
    let started = Instant::now();
    wait_for(&m, "the ring to go round", 300, || laps() >= 50);
    let (before_stop, t) = (laps(), Instant::now());
    m.ok(&["stop", "-p", PROJECT, "-S"]);
    let v2 = project(m.state.path(), "v2.mln", "h1");
    let up = m.ok(&["upgrade", "-f", v2.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_str(&m.ok(&["status", "-p", PROJECT, "--json"])).unwrap();
    let node02 = status.as_array().unwrap().iter().find(|h| h["host"] == "node02").unwrap().clone();
    assert_eq!((node02["state"].as_str(), node02["service_host"].as_str()), (Some("saved"), Some("h1")), "{up}\n{status}");
    assert!(lab.domains("h2").is_empty(), "h2 keeps {:?}", lab.domains("h2"));
    m.ok(&["start", "-p", PROJECT]);
    eprintln!("saved at lap {before_stop}, moved and started again in {:.0} s", t.elapsed().as_secs_f64());
    wait_for(&m, "the ring to end", 900, || m.on("node01", "cat /root/ring.out").contains("RING "));
    let out = m.on("node01", "cat /root/ring.out");
    eprintln!("the ring ran {:.0} s in all", started.elapsed().as_secs_f64());
    // Each lap adds 1 on rank 0 and 2 on rank 1.
    assert!(out.contains(&format!("RING laps={LAPS} total={} hosts=node01,node02", LAPS * 3)), "{out}");
    assert!(laps() > before_stop, "{out}");
    assert_eq!(boot_ids(), before, "a guest booted again");

    m.ok(&["remove", "-p", PROJECT]);
    for on in ["h1", "h2"] {
        assert!(lab.domains(on).is_empty() && !lab.state_dir(on).join("projects").join(PROJECT).exists(), "{on} keeps the project");
    }
}

const LAPS: u64 = 600;

fn wait_for(m: &Manager, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", m.consoles());
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn base64(text: &str) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("base64").arg("-w0").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
}

/// A counter passed round the ring `laps` times, rank 0 waiting `pause`
/// seconds each lap (so that the job lasts minutes); each rank adds its
/// rank + 1. Progress every 10 laps, the total at the end.
const RING: &str = r#"
import sys, time
import mpi4py
# Plain receives: Open MPI 4.1's matched probe (mpi4py's default for
# pickled messages) fails between these guests with MPI_ERR_OTHER.
mpi4py.rc.recv_mprobe = False
from mpi4py import MPI
c = MPI.COMM_WORLD
rank, size = c.Get_rank(), c.Get_size()
laps, pause = int(sys.argv[1]), float(sys.argv[2])
token = 0
for lap in range(1, laps + 1):
    if rank == 0:
        time.sleep(pause)
        token += 1
        c.send(token, dest=1 % size)
        token = c.recv(source=size - 1)
        if lap % 10 == 0:
            print(f"LAP {lap}", flush=True)
    else:
        token = c.recv(source=rank - 1)
        token += rank + 1
        c.send(token, dest=(rank + 1) % size)
hosts = c.gather(MPI.Get_processor_name(), root=0)
if rank == 0:
    print(f"RING laps={laps} total={token} hosts={','.join(sorted(hosts))}", flush=True)
"#;
