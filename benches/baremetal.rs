//! Issue 13's bare-metal benchmark, the broadcast alone: an image to 8
//! receivers through mln's install-step chain (`baremetal::chain`, the
//! deploy system's busybox script) against sequential scp and taktuk's
//! `broadcast put` to the same 8 receivers, in one run, interleaved.
//!
//! The receivers are namespace hosts (tests/support/testhosts.rs, each
//! running sshd for scp and taktuk), every host's link limited by `tc
//! tbf` in both directions, at each rate of MLN_BENCH_RATE (a comma list;
//! 200mbit), the image's size in proportion to the rate (128 MiB at 200
//! Mbit/s; MLN_BENCH_MIB fixes it). Every tool stores the same compressed
//! file into each host's own /var/lib/mln (the chain's receivers run its
//! script with busybox and `mln-hop` on the PATH, as the deploy system
//! does, so the script execs the hop; `cat` for the decompressor and the
//! file for the disk; once more without `mln-hop`, the busybox pipeline
//! hashing with openssl, the hop before). The chain's control runs
//! through `ip netns exec` here, not the deploy system's SSH sessions (a
//! few hundred milliseconds per node at the start, in parallel). The
//! reference is the chain to one host: one transfer at the link's rate.
//! The chain's CPU time is read from a cpuacct cgroup the bench puts
//! itself in (its receivers are its children).
//!
//! `hop`: what one more hop costs in CPU (a chain of 2 against a chain of
//! 1): the busybox pipeline with busybox's hash and with openssl's, and
//! `mln-hop`, at each rate.
//!
//! `deploy`: `mln build` of a project of 1, 2, 4, then 8 bare-metal nodes
//! (MLN_BENCH_SIZES=1,8 for some) of the test guest's environment on the
//! QEMU rig (tests/support/baremetal_rig.rs: software emulation, IPMI
//! through virtualbmc, dnsmasq run by mln), each node's link toward it
//! limited by `tc tbf` on its tap (the first rate), and the time of each
//! macro-step from `mln stats`. Every node is a QEMU guest under software
//! emulation on this 2-core machine: what 8 nodes cost over 1 is mostly
//! the CPU their boots share.
//!
//! `cargo bench --bench baremetal [hop|broadcast|deploy]`; MLN_BENCH_QUICK=1
//! makes it small, MLN_BENCH_ROUNDS sets the rounds (3). Results are
//! printed and written to target/bench/baremetal.md.

#[path = "support/common.rs"]
mod common;
#[path = "../tests/support/testhosts.rs"]
mod testhosts;
#[path = "../tests/support/baremetal_rig.rs"]
mod baremetal_rig;
#[path = "../tests/support/chain_local.rs"]
mod chain_local;

use common::time;
use mln::baremetal::chain::{self, ChainNode, Hop, Receiver, Runner};
use std::path::{Path, PathBuf};
use std::process::Command;
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
    /// What must have run its part (`bin` decides).
    runner: Runner,
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
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "env"]).arg(format!("PATH={}", self.bin.display())).args(["sh", "-c", &s]);
        chain_local::spawn(cmd, Some(self.runner))
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

/// The CPU time of this process and of every process it starts from now
/// on (the chain's receivers under `ip netns exec`), through a cpuacct
/// cgroup of its own (cgroup v1, as on this machine); None without one.
struct CpuMeter {
    dir: PathBuf,
}

impl CpuMeter {
    fn new() -> Option<CpuMeter> {
        let base = Path::new("/sys/fs/cgroup/cpuacct");
        if !base.join("cpuacct.usage").exists() {
            return None;
        }
        let dir = base.join(format!("mln-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).ok()?;
        Some(CpuMeter { dir })
    }
    fn usage(&self) -> Duration {
        let ns: u64 = std::fs::read_to_string(self.dir.join("cpuacct.usage")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        Duration::from_nanos(ns)
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        let base = Path::new("/sys/fs/cgroup/cpuacct");
        // Every task left in it back to the parent, then the group goes.
        for _ in 0..10 {
            let tasks = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            for t in tasks.lines() {
                let _ = std::fs::write(base.join("cgroup.procs"), t);
            }
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The rates to measure (MLN_BENCH_RATE, comma-separated; 200mbit).
fn rates() -> Vec<String> {
    std::env::var("MLN_BENCH_RATE").unwrap_or_else(|_| "200mbit".into()).split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect()
}

/// What a receiver host's PATH holds besides busybox.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tools {
    /// busybox alone: the script's pipeline hashes with `sha256sum`.
    Busybox,
    /// and openssl: the pipeline hashes with `openssl dgst`.
    Openssl,
    /// and openssl and `mln-hop`: the script execs the hop (the deploy system).
    Hop,
}

impl Tools {
    fn runner(self) -> Runner {
        if self == Tools::Hop {
            Runner::Binary
        } else {
            Runner::Script
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Tools::Busybox => "busybox pipeline, busybox `sha256sum`",
            Tools::Openssl => "busybox pipeline, `openssl dgst` (before)",
            Tools::Hop => "`mln-hop` (now)",
        }
    }
}

/// A directory of busybox links, as the deploy system's /bin, with the
/// deploy system's openssl and `mln-hop` as `tools` says.
fn busybox_bin(dir: &Path, tools: Tools) -> PathBuf {
    let openssl = Path::new("/usr/bin/openssl");
    let hop = Path::new(env!("CARGO_BIN_EXE_mln-hop"));
    let extra: Vec<(&str, &Path)> = match tools {
        Tools::Busybox => vec![],
        Tools::Openssl => vec![("openssl", openssl)],
        Tools::Hop => vec![("openssl", openssl), ("mln-hop", hop)],
    };
    chain_local::busybox_bin(dir, &[chain_local::APPLETS, &["sha256sum"]].concat(), &extra).expect("busybox (the deploy system's tools) is needed")
}

struct Bench {
    lab: Lab,
    work: tempfile::TempDir,
    opts: String,
}

impl Bench {
    fn new(n: usize) -> Bench {
        let lab = Lab::plain(n);
        lab.trust_all();
        let opts = format!(
            "-i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=10",
            lab.key.display(),
            lab.known_hosts.display()
        );
        Bench { lab, work: tempfile::tempdir().unwrap(), opts }
    }
    /// Both directions of every host's link: what it receives and what it forwards.
    fn limit(&self, rate: &str) {
        for h in &self.lab.hosts {
            let tbf = format!("tbf rate {rate} burst 256kb latency 50ms");
            must(&format!("tc qdisc replace dev {} root {tbf}", h.veth));
            must(&format!("ip netns exec {} tc qdisc replace dev {}p root {tbf}", h.ns, h.veth));
        }
    }
    fn nodes(&self, bin: &Path, tools: Tools) -> Vec<NsNode> {
        // Hosts share /tmp (the script's directory is named for its port).
        let base = 17000 + (std::process::id() % 1000) as u16 * 32;
        self.lab
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| NsNode {
                name: h.name.clone(),
                ns: h.ns.clone(),
                addr: h.addr.clone(),
                store: self.lab.state_dir(&h.name),
                bin: bin.to_path_buf(),
                port: base + (i as u16) * 4,
                runner: tools.runner(),
            })
            .collect()
    }
    fn clean(&self) {
        for h in &self.lab.hosts {
            let _ = std::fs::remove_file(self.lab.state_dir(&h.name).join("bench.img"));
        }
        let _ = sh("sync").status();
    }
    fn check(&self, label: &str, hosts: usize, sum: &str) {
        for h in self.lab.hosts.iter().take(hosts) {
            let got = self.lab.state_dir(&h.name).join("bench.img");
            assert_eq!(sha256(&got), sum, "{label}: {} has not the whole image", h.name);
        }
    }
    fn image(&self, mib: u64) -> (PathBuf, String) {
        let file = self.work.path().join(format!("image-{mib}.tar.gz"));
        if !file.exists() {
            // Incompressible, as a compressed environment is.
            must(&format!("head -c {mib}M /dev/urandom > {}", file.display()));
        }
        let sum = sha256(&file);
        (file, sum)
    }
}

/// The chain over the first `k` of `nodes`: its wall time and CPU time.
fn chain_run(nodes: &[NsNode], k: usize, file: &Path, sum: &str, cpu: Option<&CpuMeter>) -> (Duration, Option<Duration>) {
    let refs: Vec<&dyn ChainNode> = nodes.iter().take(k).map(|n| n as &dyn ChainNode).collect();
    let c0 = cpu.map(CpuMeter::usage);
    let t = Instant::now();
    let out = chain::broadcast(&refs, file, sum, &chain::Options::default());
    let d = t.elapsed();
    assert!(out.iter().all(|o| matches!(o, chain::Outcome::Written { pass: 0 })), "{out:?}");
    (d, cpu.zip(c0).map(|(c, c0)| c.usage().saturating_sub(c0)))
}

/// The image's size at `rate`: 128 MiB at 200 Mbit/s, in proportion at
/// other rates (one transfer lasts about the same), MLN_BENCH_MIB to fix it.
fn image_mib(rate: &str) -> u64 {
    if let Some(m) = std::env::var("MLN_BENCH_MIB").ok().and_then(|m| m.parse().ok()) {
        return m;
    }
    if quick() {
        return 16;
    }
    ((128.0 * parse_rate(rate) / 200e6).round() as u64).clamp(16, 1024)
}

/// What one hop costs: a chain of 1, then of 2 receivers at each rate,
/// through the busybox pipeline hashing with busybox's `sha256sum` and
/// with openssl (the hop before), then through `mln-hop`; the CPU from the cpuacct cgroup (the receivers' processes, their
/// shells, mln's sender). The second receiver's cost is the difference.
/// (Wrappers timing each tool cannot be used: busybox `sh` runs its
/// applets without looking at PATH.)
fn hop() -> String {
    let b = Bench::new(2);
    let Some(cpu) = CpuMeter::new() else { return "no cpuacct cgroup: no CPU figures\n".into() };
    let mut s = String::from("| rate | image | hop | chain of 1: wall, CPU | chain of 2: wall, CPU | one more hop: CPU per MiB | 8 hops at this rate need |\n|---|---|---|---|---|---|---|\n");
    for rate in rates() {
        b.limit(&rate);
        let mib = image_mib(&rate);
        let (file, sum) = b.image(mib);
        for (k, tools) in [Tools::Busybox, Tools::Openssl, Tools::Hop].into_iter().enumerate() {
            let tag = tools.tag();
            let bin = busybox_bin(&b.work.path().join(format!("bin-{rate}-{k}")), tools);
            let nodes = b.nodes(&bin, tools);
            b.clean();
            let (w1, c1) = chain_run(&nodes, 1, &file, &sum, Some(&cpu));
            b.clean();
            let (w2, c2) = chain_run(&nodes, 2, &file, &sum, Some(&cpu));
            b.check("hop", 2, &sum);
            let (c1, c2) = (c1.unwrap_or_default().as_secs_f64(), c2.unwrap_or_default().as_secs_f64());
            let per = (c2 - c1).max(0.0) / mib as f64;
            let r_mib = parse_rate(&rate) / 8.0 / 1048576.0;
            s += &format!(
                "| {rate} | {mib} MiB | {tag} | {:.2} s, {c1:.2} s | {:.2} s, {c2:.2} s | {:.1} ms | {:.2} cores |\n",
                w1.as_secs_f64(),
                w2.as_secs_f64(),
                per * 1000.0,
                per * r_mib * 8.0
            );
        }
    }
    s
}

fn broadcast() -> String {
    let n = if quick() { 3 } else { 8 };
    let rounds: usize = std::env::var("MLN_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(if quick() { 1 } else { 3 });
    let b = Bench::new(n);
    let cpu = CpuMeter::new();
    let bin = busybox_bin(&b.work.path().join("bin"), Tools::Hop);
    let bin_bb = busybox_bin(&b.work.path().join("bin-busybox"), Tools::Openssl);
    let nodes = b.nodes(&bin, Tools::Hop);
    let nodes_bb = b.nodes(&bin_bb, Tools::Openssl);
    let ms: Vec<String> = b.lab.hosts.iter().map(|h| format!("-m {}", h.addr)).collect();
    let mut s = String::new();
    for rate in rates() {
        b.limit(&rate);
        let mib = image_mib(&rate);
        let (file, sum) = b.image(mib);
        let load0 = loadavg();
        let (mut one, mut all, mut all_bb, mut scp, mut taktuk) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut cpu1, mut cpu8, mut cpu8_bb) = (vec![], vec![], vec![]);
        for r in 0..rounds {
            eprintln!("{rate}: round {}/{rounds}", r + 1);
            b.clean();
            let (d, c) = chain_run(&nodes, 1, &file, &sum, cpu.as_ref());
            one.push(d);
            cpu1.extend(c);
            b.check("chain, 1 host", 1, &sum);
            b.clean();
            let (d, c) = chain_run(&nodes, n, &file, &sum, cpu.as_ref());
            all.push(d);
            cpu8.extend(c);
            b.check("chain", n, &sum);
            b.clean();
            let (d, c) = chain_run(&nodes_bb, n, &file, &sum, cpu.as_ref());
            all_bb.push(d);
            cpu8_bb.extend(c);
            b.check("chain (busybox pipeline)", n, &sum);
            b.clean();
            let seq: Vec<String> = b.lab.hosts.iter().map(|h| format!("scp -q {} {} root@{}:/var/lib/mln/bench.img", b.opts, file.display(), h.addr)).collect();
            scp.push(time("sequential scp", sh(&seq.join(" && "))));
            b.check("scp", n, &sum);
            b.clean();
            taktuk.push(time("taktuk", sh(&format!("taktuk -c 'ssh {} -l root' {} broadcast put [ {} ] [ /var/lib/mln/bench.img ]", b.opts, ms.join(" "), file.display()))));
            b.check("taktuk", n, &sum);
        }
        b.clean();
        let ideal = (mib as f64 * 1048576.0 * 8.0) / parse_rate(&rate);
        let m1 = median(&one).as_secs_f64();
        s += &format!("## {mib} MiB image to {n} receivers, every link {rate} both ways (tc tbf), median of {rounds} interleaved rounds\n\n");
        s += &format!("size / link rate: {ideal:.2} s; load average before: {load0}, after: {}\n\n| tool | median | spread | x one transfer |\n|---|---|---|---|\n", loadavg());
        for (name, v) in [
            ("mln chain (`mln-hop`), 1 receiver (one transfer)", &one),
            (&*format!("**mln chain (`mln-hop`), {n} receivers**") as &str, &all),
            (&*format!("mln chain, {n} receivers, busybox pipeline with `openssl dgst` (the hop before)") as &str, &all_bb),
            ("sequential scp", &scp),
            ("taktuk broadcast put", &taktuk),
        ] {
            s += &format!("| {name} | {:.2} s | {} | {:.2} |\n", median(v).as_secs_f64(), spread(v), median(v).as_secs_f64() / m1);
        }
        s += &format!("\nscp / chain: {:.2}; taktuk / chain: {:.2}\n", median(&scp).as_secs_f64() / median(&all).as_secs_f64(), median(&taktuk).as_secs_f64() / median(&all).as_secs_f64());
        if !cpu8.is_empty() {
            let (c1, c8, cb) = (median(&cpu1).as_secs_f64(), median(&cpu8).as_secs_f64(), median(&cpu8_bb).as_secs_f64());
            s += &format!(
                "\nCPU of the chain (cpuacct: mln's sender, every receiver's processes and shells, `ip netns exec`), median: 1 receiver {c1:.2} s; {n} receivers {c8:.2} s = {:.1} ms per MiB per receiver, {:.2} cores over the run; the busybox pipeline (before) {cb:.2} s = {:.1} ms per MiB per receiver, {:.2} cores\n",
                c8 * 1000.0 / (mib as f64 * n as f64),
                c8 / median(&all).as_secs_f64(),
                cb * 1000.0 / (mib as f64 * n as f64),
                cb / median(&all_bb).as_secs_f64()
            );
        }
        s += "\n";
    }
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
    // MLN_BENCH_SIZES=1,8: some sizes only (each is minutes under emulation).
    let sizes: Vec<usize> = match std::env::var("MLN_BENCH_SIZES") {
        Ok(v) => v.split(',').filter_map(|k| k.trim().parse().ok()).filter(|k| *k > 0).collect(),
        Err(_) if quick() => vec![1, 2],
        Err(_) => vec![1, 2, 4, 8],
    };
    let rate = rates().into_iter().next().unwrap_or_else(|| "200mbit".into());
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
            // The switch is the rig's bridge, the one the nodes are cabled to.
            let mut project = format!("global {{\n    project {name}\n}}\nswitch lan {{\n    bridge {}\n}}\nsuperclass node {{\n    baremetal\n    disk /dev/vda\n    environment testguest\n    network eth0 {{\n        switch lan\n        netmask 255.255.255.0\n    }}\n}}\n", rig.bridge);
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
                must(&format!("MLN_HOP={} bash {} {}", env!("CARGO_BIN_EXE_mln-hop"), root.join("deploysys/build.sh").display(), state.join("baremetal/deploysys").display()));
            }
            // The consoles are kept across sizes: only what this size adds counts.
            let before: Vec<usize> = rig.nodes.iter().map(|n| rig.console(n).len()).collect();
            eprintln!("deploying {k} node(s)");
            let load0 = loadavg();
            let t = Instant::now();
            // MLN_BENCH_LOG=DIR: mln's debug log of each size (timestamped) kept there.
            let log = std::env::var_os("MLN_BENCH_LOG").map(|d| PathBuf::from(d).join(format!("build-{k}.log")));
            let mut args = vec!["build", "-f", file.to_str().unwrap()];
            if log.is_some() {
                args.insert(0, "-vv");
            }
            let (ok, built) = mln(&args);
            if let Some(log) = &log {
                std::fs::write(log, &built).unwrap();
            }
            let wall = t.elapsed();
            assert!(ok, "mln build of {k} nodes:\n{built}");
            let stats: serde_json::Value = serde_json::from_str(&mln(&["stats", "-p", &name, "--json"]).1).unwrap();
            let mut steps = std::collections::BTreeMap::<String, Vec<f64>>::new();
            for s in stats.as_array().unwrap() {
                for (step, secs) in s["mean_step_secs"].as_object().unwrap() {
                    steps.entry(step.clone()).or_default().push(secs.as_f64().unwrap());
                }
            }
            let consoles: Vec<String> = rig.nodes.iter().zip(&before).take(k).map(|(n, b)| {
                let c = rig.console(n);
                c.get(*b..).map(str::to_string).unwrap_or(c)
            }).collect();
            let chained = consoles.iter().filter(|c| c.contains("MLN-CHAIN host=")).count();
            // Each chain has one last hop (it forwards to no one).
            let chains = consoles.iter().filter(|c| c.lines().any(|l| l.contains("MLN-CHAIN host=") && l.contains(" next=- "))).count();
            eprintln!("{k} node(s): build {:.1} s, steps {steps:?}, {chained} through {chains} chain(s)", wall.as_secs_f64());
            rows.push((k, wall, steps, chained, chains, format!("{load0} / {}", loadavg())));
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
        "## Deployment of the test guest's environment ({:.1} MiB gzip tar), `mln build`, QEMU nodes (software emulation, 384 MiB each), every tap limited to {rate} toward its node, one run per size\n\n| nodes | build | x 1 node | deploy system (mean, slowest) | install (mean, slowest) | boot (mean, slowest) | image through the chain | chains | load before / after |\n|---|---|---|---|---|---|---|---|---|\n",
        image_size as f64 / 1048576.0
    );
    for (k, wall, steps, chained, chains, load) in &rows {
        let cell = |st: &str| {
            steps.get(st).map_or("–".to_string(), |v| format!("{:.1} s, {:.1} s", v.iter().sum::<f64>() / v.len() as f64, v.iter().cloned().fold(0.0, f64::max)))
        };
        s += &format!("| {k} | {:.1} s | {:.2} | {} | {} | {} | {chained} of {k} | {chains} | {load} |\n", wall.as_secs_f64(), wall.as_secs_f64() / one, cell("deploy_system"), cell("install"), cell("boot"));
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
    common::report(|_| "baremetal.md".into(), &[("hop", &hop), ("broadcast", &broadcast), ("deploy", &deploy)]);
}
