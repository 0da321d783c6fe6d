//! Issue 13's bare-metal benchmark, the broadcast alone: an image to 8
//! receivers through mln's install-step chain (`baremetal::chain`, the
//! deploy system's busybox script) against sequential scp and taktuk's
//! `broadcast put` to the same 8 receivers, in one run, interleaved.
//!
//! The receivers are namespace hosts (tests/support/testhosts.rs, each
//! running sshd for scp and taktuk), every host's link limited by `tc
//! tbf` in both directions (200 Mbit/s by default, MLN_BENCH_RATE), so
//! the links, not this 2-core machine, set the pace. Every tool stores
//! the same compressed file into each host's own /var/lib/mln (the chain's
//! receivers run its script with busybox, as the deploy system does, with
//! `cat` for the decompressor and the file for the disk). The chain's
//! control runs through `ip netns exec` here, not the deploy system's SSH
//! sessions (a few hundred milliseconds per node at the start, in
//! parallel). The reference is the chain to one host: one transfer at the
//! link's rate.
//!
//! `deploy`: `mln build` of a project of 1, 2, 4, then 8 bare-metal nodes
//! of the test guest's environment on the QEMU rig (tests/support/
//! baremetal_rig.rs: software emulation, IPMI through virtualbmc, dnsmasq
//! run by mln), each node's link toward it limited by `tc tbf` on its tap
//! (MLN_BENCH_RATE), and the time of each macro-step from `mln stats`.
//! Every node is a QEMU guest under software emulation on this 2-core
//! machine: what 8 nodes cost over 1 is mostly the CPU their boots share.
//!
//! `cargo bench --bench baremetal [broadcast|deploy]`; MLN_BENCH_QUICK=1 makes it
//! small, MLN_BENCH_ROUNDS sets the rounds (3). Results are printed and
//! written to target/bench/baremetal.md.

#[path = "support/common.rs"]
mod common;
#[path = "../tests/support/testhosts.rs"]
mod testhosts;
#[path = "../tests/support/baremetal_rig.rs"]
mod baremetal_rig;

use common::time;
use mln::baremetal::chain::{self, ChainNode, Hop, Receiver, Report};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testhosts::Lab;

fn quick() -> bool {
    std::env::var_os("MLN_BENCH_QUICK").is_some()
}

fn sh(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

fn must(cmd: &str) {
    let st = sh(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}


/// A receiver host of the lab running the chain's script with busybox.
struct NsNode {
    name: String,
    ns: String,
    addr: String,
    /// Its /var/lib/mln, seen from here.
    store: PathBuf,
    bin: PathBuf,
    /// Hosts share /tmp: each its own port (the script's directory).
    port: u16,
}

struct NsReceiver {
    child: std::process::Child,
    out: mpsc::Receiver<String>,
}

impl Receiver for NsReceiver {
    fn forward_to(&mut self, next: Option<&Hop>) -> Result<(), String> {
        let line = next.map(|h| format!("{} {}\n", h.addr, h.port)).unwrap_or_else(|| "- -\n".into());
        let mut stdin = self.child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
    fn wait(&mut self, deadline: Instant) -> Option<Result<Report, String>> {
        let text = self.out.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
        let _ = self.child.wait();
        Some(Report::parse(&text).ok_or(text))
    }
}

impl ChainNode for NsNode {
    fn name(&self) -> &str {
        &self.name
    }
    fn hop(&self, pass: u16) -> Hop {
        Hop { addr: self.addr.clone(), port: self.port + pass }
    }
    fn stop(&self, pass: u16) {
        let _ = Command::new("ip").args(["netns", "exec", &self.ns, "env"]).arg(format!("PATH={}", self.bin.display())).args(["sh", "-c", &chain::stop_script(self.port + pass)]).status();
    }
    fn start(&self, pass: u16) -> Result<Box<dyn Receiver>, String> {
        let sink = format!("cat > {}/bench.img", self.store.display());
        let s = chain::script(self.port + pass, "true", "cat", &sink, None, &self.name);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "env"])
            .arg(format!("PATH={}", self.bin.display()))
            .args(["sh", "-c", &s])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).map_err(|e| e.to_string())?;
        if first.trim() != "MLN-CHAIN listening" {
            return Err(format!("did not listen: {first:?}"));
        }
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
            let _ = tx.send(rest);
        });
        Ok(Box::new(NsReceiver { child, out }))
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn spread(v: &[Duration]) -> String {
    let mut v = v.to_vec();
    v.sort();
    format!("{:.2}–{:.2} s", v[0].as_secs_f64(), v[v.len() - 1].as_secs_f64())
}

fn broadcast() -> String {
    let n = if quick() { 3 } else { 8 };
    let mib: u64 = if quick() { 16 } else { 128 };
    let rounds: usize = std::env::var("MLN_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(if quick() { 1 } else { 3 });
    let rate = std::env::var("MLN_BENCH_RATE").unwrap_or_else(|_| "200mbit".into());
    let lab = Lab::plain(n);
    lab.trust_all();
    for h in &lab.hosts {
        // Both directions of the host's link: what it receives and what it forwards.
        let tbf = format!("tbf rate {rate} burst 256kb latency 50ms");
        must(&format!("tc qdisc add dev {} root {tbf}", h.veth));
        must(&format!("ip netns exec {} tc qdisc add dev {}p root {tbf}", h.ns, h.veth));
    }
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let bb = PathBuf::from("/bin/busybox");
    assert!(bb.exists(), "busybox (the deploy system's tools) is needed");
    for a in ["sh", "nc", "tee", "netstat", "sha256sum", "mkfifo", "sleep", "seq", "grep", "cat", "cut", "head", "kill", "rm", "mkdir", "true", "env"] {
        std::os::unix::fs::symlink(&bb, bin.join(a)).unwrap();
    }
    // The image: incompressible, as a compressed environment is.
    let file = work.path().join("image.tar.gz");
    must(&format!("head -c {mib}M /dev/urandom > {}", file.display()));
    let sum = sha256(&file);
    let base = 17000 + (std::process::id() % 1000) as u16 * 8;
    let nodes: Vec<NsNode> = lab
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| NsNode { name: h.name.clone(), ns: h.ns.clone(), addr: h.addr.clone(), store: lab.state_dir(&h.name), bin: bin.clone(), port: base + (i as u16) * 4 })
        .collect();
    let opts = format!(
        "-i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=10",
        lab.key.display(),
        lab.known_hosts.display()
    );
    let clean = || {
        for h in &lab.hosts {
            let _ = std::fs::remove_file(lab.state_dir(&h.name).join("bench.img"));
        }
        let _ = sh("sync").status();
    };
    let check = |label: &str, hosts: usize| {
        for h in lab.hosts.iter().take(hosts) {
            let got = lab.state_dir(&h.name).join("bench.img");
            assert_eq!(sha256(&got), sum, "{label}: {} has not the whole image", h.name);
        }
    };
    let chain_run = |k: usize| {
        let refs: Vec<&dyn ChainNode> = nodes.iter().take(k).map(|n| n as &dyn ChainNode).collect();
        let t = Instant::now();
        let out = chain::broadcast(&refs, &file, &sum, &chain::Options::default());
        let d = t.elapsed();
        assert!(out.iter().all(|o| matches!(o, chain::Outcome::Written { pass: 0 })), "{out:?}");
        d
    };
    let ms: Vec<String> = lab.hosts.iter().map(|h| format!("-m {}", h.addr)).collect();
    let (mut one, mut all, mut scp, mut taktuk) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        clean();
        one.push(chain_run(1));
        check("chain, 1 host", 1);
        clean();
        all.push(chain_run(n));
        check("chain", n);
        clean();
        let seq: Vec<String> = lab.hosts.iter().map(|h| format!("scp -q {opts} {} root@{}:/var/lib/mln/bench.img", file.display(), h.addr)).collect();
        scp.push(time("sequential scp", sh(&seq.join(" && "))));
        check("scp", n);
        clean();
        taktuk.push(time("taktuk", sh(&format!("taktuk -c 'ssh {opts} -l root' {} broadcast put [ {} ] [ /var/lib/mln/bench.img ]", ms.join(" "), file.display()))));
        check("taktuk", n);
    }
    clean();
    let ideal = (mib as f64 * 1048576.0 * 8.0) / parse_rate(&rate);
    let m1 = median(&one).as_secs_f64();
    let mut s = format!("## {mib} MiB image to {n} receivers, every link {rate} both ways (tc tbf), median of {rounds} interleaved rounds\n\n");
    s += &format!("size / link rate: {ideal:.2} s\n\n| tool | median | spread | x one transfer |\n|---|---|---|---|\n");
    for (name, v) in [("mln chain, 1 receiver (one transfer)", &one), (&*format!("mln chain, {n} receivers") as &str, &all), ("sequential scp", &scp), ("taktuk broadcast put", &taktuk)] {
        s += &format!("| {name} | {:.2} s | {} | {:.2} |\n", median(v).as_secs_f64(), spread(v), median(v).as_secs_f64() / m1);
    }
    s += &format!("\nscp / chain: {:.2}; taktuk / chain: {:.2}\n", median(&scp).as_secs_f64() / median(&all).as_secs_f64(), median(&taktuk).as_secs_f64() / median(&all).as_secs_f64());
    s
}

/// Applies `tbf` to every tap on `bridge` that has none yet, until `stop`.
fn limit_taps(bridge: &str, rate: &str, stop: &std::sync::atomic::AtomicBool) {
    let mut done = std::collections::BTreeSet::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let out = sh(&format!("ip -o link show master {bridge}")).output().unwrap();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(dev) = l.split(':').nth(1).map(|d| d.trim().split('@').next().unwrap_or("").to_string()) else { continue };
            if dev.is_empty() || done.contains(&dev) {
                continue;
            }
            // A tap comes back on each power-on: replace whatever it has.
            if sh(&format!("tc qdisc replace dev {dev} root tbf rate {rate} burst 256kb latency 50ms")).status().map(|s| s.success()).unwrap_or(false) {
                done.insert(dev);
            }
        }
        // A tap that went away (the node powered off) is limited again when back.
        done.retain(|d| Path::new(&format!("/sys/class/net/{d}")).exists());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deploy() -> String {
    use baremetal_rig::{NodeKind, Rig, IPMI_USER};
    Rig::available().unwrap();
    let sizes: Vec<usize> = if quick() { vec![1, 2] } else { vec![1, 2, 4, 8] };
    let rate = std::env::var("MLN_BENCH_RATE").unwrap_or_else(|_| "200mbit".into());
    let most = *sizes.iter().max().unwrap();
    let rig = Rig::new(&vec![NodeKind { disk_mib: Some(64), memory_mib: 384 }; most]);
    let d = rig.dir.path();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = d.join("state");
    let envdir = d.join("env");
    must(&format!("bash {} {}", root.join("testguest/build.sh").display(), envdir.display()));
    must(&format!("bash {} {}", root.join("testguest/env.sh").display(), envdir.display()));
    let image_size = std::fs::read_dir(&envdir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tar.gz")).filter_map(|e| e.metadata().ok()).map(|m| m.len()).max().unwrap_or(0);
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("baremetal/netboot/dnsmasq.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _cleanup = Cleanup(state.clone());
    let mln = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mln")).current_dir(d).arg("--state-dir").arg(&state).args(args).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, added) = mln(&["env", "add", envdir.join("env.toml").to_str().unwrap()]);
    assert!(ok, "{added}");
    std::fs::write(
        state.join("fabric.toml"),
        format!(
            "[netboot]\ninterface = \"{}\"\nsubnet = \"{}\"\nserver = \"{}\"\n\n[baremetal.default]\ndeploy_system = [{{ type = \"untrusted\", timeout = 600, retries = 1 }}]\ninstall = [{{ type = \"chain\", timeout = 600 }}]\nboot = [{{ type = \"kexec\", timeout = 600 }}]\n",
            rig.bridge, rig.subnet, rig.server
        ),
    )
    .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut rows = Vec::new();
    std::thread::scope(|sc| {
        sc.spawn(|| limit_taps(&rig.bridge, &rate, &stop));
        // The deploy system is built on first use: not in any size's time.
        for &k in &sizes {
            let name = format!("metal{k}");
            let mut project = format!("global {{\n    project {name}\n}}\nswitch lan {{ }}\nsuperclass node {{\n    baremetal\n    disk /dev/vda\n    environment testguest\n    network eth0 {{\n        switch lan\n        netmask 255.255.255.0\n    }}\n}}\n");
            for (i, n) in rig.nodes.iter().take(k).enumerate() {
                project += &format!(
                    "host bm{i} {{\n    superclass node\n    mac {}\n    power {{\n        driver ipmi\n        address 127.0.0.1\n        port {}\n        user {IPMI_USER}\n        password_file {}\n    }}\n    network eth0 {{\n        address {}\n    }}\n}}\n",
                    n.mac,
                    n.ipmi_port,
                    rig.password_file.display(),
                    n.address
                );
            }
            let file = d.join(format!("{name}.mln"));
            std::fs::write(&file, &project).unwrap();
            if k == sizes[0] {
                // The deploy system is built on first use (about a minute): before, untimed.
                must(&format!("bash {} {}", root.join("deploysys/build.sh").display(), state.join("baremetal/deploysys").display()));
            }
            eprintln!("deploying {k} node(s)");
            let t = Instant::now();
            let (ok, built) = mln(&["build", "-f", file.to_str().unwrap()]);
            let wall = t.elapsed();
            assert!(ok, "mln build of {k} nodes:\n{built}");
            let stats: serde_json::Value = serde_json::from_str(&mln(&["stats", "-p", &name, "--json"]).1).unwrap();
            let mut steps = std::collections::BTreeMap::<String, Vec<f64>>::new();
            for s in stats.as_array().unwrap() {
                for (step, secs) in s["mean_step_secs"].as_object().unwrap() {
                    steps.entry(step.clone()).or_default().push(secs.as_f64().unwrap());
                }
            }
            let chained = rig.nodes.iter().take(k).filter(|n| rig.console(n).contains("MLN-CHAIN host=")).count();
            eprintln!("{k} node(s): build {:.1} s, steps {steps:?}, {chained} through the chain", wall.as_secs_f64());
            rows.push((k, wall, steps, chained));
            let (ok, removed) = mln(&["remove", "-p", &name]);
            assert!(ok, "{removed}");
            for n in rig.nodes.iter().take(k) {
                let _ = rig.virsh(&format!("destroy {}", n.domain));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let one = rows[0].1.as_secs_f64();
    let mut s = format!(
        "## Deployment of the test guest's environment ({:.1} MiB gzip tar), `mln build`, QEMU nodes (software emulation, 384 MiB each), every tap limited to {rate} toward its node, one run per size\n\n| nodes | build | x 1 node | deploy system (mean, slowest) | install (mean, slowest) | boot (mean, slowest) | image through the chain |\n|---|---|---|---|---|---|---|\n",
        image_size as f64 / 1048576.0
    );
    for (k, wall, steps, chained) in &rows {
        let cell = |st: &str| {
            steps.get(st).map_or("–".to_string(), |v| format!("{:.1} s, {:.1} s", v.iter().sum::<f64>() / v.len() as f64, v.iter().cloned().fold(0.0, f64::max)))
        };
        s += &format!("| {k} | {:.1} s | {:.2} | {} | {} | {} | {chained} of {k} |\n", wall.as_secs_f64(), wall.as_secs_f64() / one, cell("deploy_system"), cell("install"), cell("boot"));
    }
    s
}

fn parse_rate(r: &str) -> f64 {
    let r = r.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = r.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = r.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = r.strip_suffix("kbit") {
        (n, 1e3)
    } else {
        (r.as_str(), 1.0)
    };
    num.parse::<f64>().unwrap_or(200.0) * mult
}

fn main() {
    common::report(|_| "baremetal.md".into(), &[("broadcast", &broadcast), ("deploy", &deploy)]);
}
