//! Fabric benchmarks, each side by side with its peers in one run, on
//! service hosts in network namespaces (root needed; peers from Debian:
//! `apt-get install clustershell pdsh taktuk iputils-ping`):
//! * parallel command: `mln fabric exec -- true` vs clush, pdsh, taktuk on
//!   16 hosts, every tool held to one key exchange, then with each tool's
//!   default one (`exec`); where mln's time goes per connection (`phases`);
//!   flat against tree fan-out on 200 hosts, next to them and with this
//!   machine 50 ms RTT away from them (`many`, see support/wan.rs);
//! * broadcast of a 1 GiB template to 8 hosts on 1 Gbit/s links: mln's
//!   chain vs sequential scp vs taktuk's broadcast put;
//! * build scaling, the paper's Figure 4: 12 VMs as 1x12, 2x6, 3x4.
//!
//! `cargo bench --bench fabric [exec|phases|many|broadcast|scaling]`; MLN_BENCH_QUICK=1
//! makes everything smaller (to check the bench itself).

#[path = "support/common.rs"]
mod common;
#[path = "../tests/support/testhosts.rs"]
mod testhosts;
#[path = "support/wan.rs"]
mod wan;

use common::{strip_ansi, time};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testhosts::Lab;

fn quick() -> bool {
    std::env::var_os("MLN_BENCH_QUICK").is_some()
}

fn mln_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let release = target.join("release/mln");
    assert!(release.exists(), "build the release binary first: cargo build --release");
    release
}

fn ssh_opts(lab: &Lab) -> String {
    format!(
        "-i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=10",
        lab.key.display(),
        lab.known_hosts.display()
    )
}


fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sh(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

fn mln(state: &Path, fabric: &Path) -> Command {
    let mut c = Command::new(mln_bin());
    c.arg("--state-dir").arg(state).arg("--fabric").arg(fabric);
    c
}

/// The key exchange every tool is held to in the fair tables: the best one
/// that both russh and Debian 12's OpenSSH 9.2 have. Left to themselves,
/// OpenSSH clients pick `sntrup761x25519-sha512@openssh.com` (which russh
/// lacks, and which costs far more CPU per connection).
const KEX: &str = "curve25519-sha256";

/// A tool's command line, timed as `sh -c`.
struct Tool {
    name: String,
    cmd: String,
}

fn tool(name: &str, cmd: String) -> Tool {
    Tool { name: name.into(), cmd }
}

/// Median, fastest and slowest.
fn spread(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// CPU time (user and system) of every finished child process so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall and CPU samples of every tool.
struct Samples {
    wall: Vec<Vec<Duration>>,
    /// The tool's own processes on this machine (not the hosts' sshd).
    cpu: Vec<Vec<Duration>>,
}

/// Runs every tool `runs` times, interleaved (drift on the machine hits
/// every tool alike), after one untimed round (caches, ARP).
fn race(tools: &[Tool], runs: usize) -> Samples {
    // Twice for the tree, whose first round also copies mln to its heads;
    // a host that timed out while 15 copies were under way is not a result.
    for t in tools.iter().chain(tools.iter().filter(|t| t.cmd.contains("--tree"))) {
        let _ = sh(&t.cmd).env_remove("SSH_AUTH_SOCK").output();
    }
    let mut s = Samples { wall: vec![Vec::new(); tools.len()], cpu: vec![Vec::new(); tools.len()] };
    for _ in 0..runs {
        for (i, t) in tools.iter().enumerate() {
            let before = children_cpu();
            s.wall[i].push(time(&t.name, sh(&t.cmd)));
            s.cpu[i].push(children_cpu().saturating_sub(before));
        }
    }
    s
}

fn table(title: &str, rows: &[(&str, &str, &Vec<Duration>, &Vec<Duration>)]) {
    println!("\n## {title}");
    println!("| tool | key exchange | median | spread | CPU here |\n|---|---|---|---|---|");
    for (name, kex, v, cpu) in rows {
        let (m, lo, hi) = spread(v);
        println!("| {name} | {kex} | {:.2} s | {:.2}-{:.2} s | {:.2} s |", m.as_secs_f64(), lo.as_secs_f64(), hi.as_secs_f64(), spread(cpu).0.as_secs_f64());
    }
    let mln = spread(rows[0].2).0.as_secs_f64();
    let (best, name) = rows[1..].iter().filter(|r| !r.0.starts_with("mln")).map(|r| (spread(r.2).0, r.0)).min().unwrap();
    println!("mln / fastest peer ({name}): {:.2}", mln / best.as_secs_f64());
}

/// The key exchange OpenSSH negotiates with `extra` options, as `ssh -v` says.
fn openssh_kex(lab: &Lab, extra: &str) -> String {
    let out = sh(&format!("ssh -v {} {extra} -l root {} true 2>&1", ssh_opts(lab), lab.hosts[0].addr)).output().unwrap();
    kex_of(&String::from_utf8_lossy(&out.stdout))
}

/// The key exchange mln negotiates, from its timing log.
fn mln_kex(lab: &Lab, state: &Path, fabric: &Path) -> String {
    let mut c = mln(state, fabric);
    c.env("MLN_LOG", "mln::fabric::timing=debug").args(["fabric", "exec", "-w", &lab.hosts[0].name, "--", "true"]);
    let out = c.output().unwrap();
    kex_of(&String::from_utf8_lossy(&out.stderr))
}


fn kex_of(log: &str) -> String {
    strip_ansi(log)
        .lines()
        .find_map(|l| l.split("kex: algorithm: ").nth(1))
        .map(|k| k.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| "?".into())
}

/// The lab's ssh options and `extra`; OpenSSH takes an option's first
/// value, so a ConnectTimeout in `extra` replaces the lab's.
fn with_opts(lab: &Lab, extra: &str) -> String {
    let base = ssh_opts(lab);
    let base = if extra.contains("ConnectTimeout") { base.replace(" -o ConnectTimeout=10", "") } else { base };
    format!("{base} {extra}")
}

/// The OpenSSH-based peers, each with the same window and ssh options;
/// `kex` adds `-o KexAlgorithms=...` (empty: each tool's default).
fn peers(lab: &Lab, set: &str, window: usize, kex: &str) -> Vec<Tool> {
    let opts = with_opts(lab, kex);
    let ms: Vec<String> = lab.hosts.iter().map(|h| format!("-m {}", h.addr)).collect();
    let tag = if kex.is_empty() { " (defaults)" } else { "" };
    vec![
        tool(&format!("clush -f {window}{tag}"), format!("clush -b -f {window} -l root -o '{opts}' -w {set} true")),
        tool(&format!("pdsh -f {window}{tag}"), format!("PDSH_SSH_ARGS_APPEND='{opts}' pdsh -R ssh -f {window} -l root -w {set} true")),
        // Flat tree (no work stealing), no logical numbering (no global
        // synchronisation at the end of the deployment), the same window.
        tool(
            &format!("taktuk -n -d -1 -w {window}{tag}"),
            format!("taktuk -n -d -1 -w {window} -c 'ssh {opts} -l root' {} broadcast exec [ true ]", ms.join(" ")),
        ),
    ]
}

fn exec_bench() {
    let n = if quick() { 4 } else { 16 };
    let runs = if quick() { 3 } else { 11 };
    let window = 64;
    let lab = Lab::plain(n);
    let state = tempfile::tempdir().unwrap();
    let fabric = lab.fabric("");
    let prefix = lab.hosts[0].addr.rsplit_once('.').unwrap().0.to_string();
    let set = format!("{prefix}.[11-{}]", 10 + n);
    let fair_kex = format!("-o KexAlgorithms={KEX}");
    let mut tools = vec![tool("mln fabric exec", format!("{} --state-dir {} --fabric {} fabric exec -f {window} -- true", mln_bin().display(), state.path().display(), fabric.display()))];
    tools.extend(peers(&lab, &set, window, &fair_kex));
    tools.extend(peers(&lab, &set, window, ""));
    let ms: Vec<String> = lab.hosts.iter().map(|h| format!("-m {}", h.addr)).collect();
    tools.push(tool("taktuk (all defaults)", format!("taktuk -c 'ssh {} -l root' {} broadcast exec [ true ]", ssh_opts(&lab), ms.join(" "))));
    let (k_mln, k_fair, k_default) = (mln_kex(&lab, state.path(), &fabric), openssh_kex(&lab, &fair_kex), openssh_kex(&lab, ""));
    let s = race(&tools, runs);
    let conditions = format!("`true` on {n} service hosts, median of {runs} interleaved runs, window {window}");
    let fair = [(0, &k_mln), (1, &k_fair), (2, &k_fair), (3, &k_fair)];
    table(&format!("{conditions}; every tool held to one key exchange"), &fair.map(|(i, k)| (tools[i].name.as_str(), k.as_str(), &s.wall[i], &s.cpu[i])));
    let defaults = [(0, &k_mln), (4, &k_default), (5, &k_default), (6, &k_default), (7, &k_default)];
    table(&format!("{conditions}; each tool's default key exchange"), &defaults.map(|(i, k)| (tools[i].name.as_str(), k.as_str(), &s.wall[i], &s.cpu[i])));
}

/// Where mln's time goes per connection: its timing events (ms since
/// that host's TCP connect began), median over hosts and runs, for one
/// host alone and for all hosts at once; and the whole command's time.
fn phases_bench() {
    let n = if quick() { 4 } else { 16 };
    let runs = if quick() { 2 } else { 7 };
    let lab = Lab::plain(n);
    let state = tempfile::tempdir().unwrap();
    let fabric = lab.fabric("");
    let events = ["tcp connected", "kex: algorithm", "host key checked", "ssh session keyed", "authenticated", "channel open", "exit status", "disconnected"];
    println!("\n## where `mln fabric exec -- true` spends its time (median ms since the host's connect began; {runs} runs)");
    println!("| event | 1 host | {n} hosts at once |\n|---|---|---|");
    let mut cols: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut walls = Vec::new();
    for hosts in [lab.hosts[0].name.clone(), format!("h[1-{n}]")] {
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); events.len()];
        let mut wall = Vec::new();
        for _ in 0..=runs {
            let mut c = mln(state.path(), &fabric);
            c.env("MLN_LOG", "mln::fabric::timing=debug").args(["fabric", "exec", "-w", &hosts, "--", "true"]);
            let t = Instant::now();
            let out = c.output().unwrap();
            wall.push(t.elapsed());
            assert!(out.status.success());
            for line in strip_ansi(&String::from_utf8_lossy(&out.stderr)).lines() {
                let Some(i) = events.iter().position(|e| line.contains(e)) else { continue };
                if let Some(ms) = line.split_whitespace().find_map(|w| w.strip_prefix("ms=")).and_then(|v| v.parse::<f64>().ok()) {
                    per[i].push(ms);
                }
            }
        }
        cols.push(per);
        walls.push(spread(&wall[1..]).0);
    }
    let med = |v: &[f64]| -> String {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() { "-".into() } else { format!("{:.1}", v[v.len() / 2]) }
    };
    for (i, e) in events.iter().enumerate() {
        println!("| {e} | {} | {} |", med(&cols[0][i]), med(&cols[1][i]));
    }
    println!("| whole command (wall) | {:.1} | {:.1} |", walls[0].as_secs_f64() * 1000.0, walls[1].as_secs_f64() * 1000.0);
}

/// Flat against tree fan-out on many hosts, every tool held to one key
/// exchange: mln flat and with `--tree`, taktuk flat and with its own
/// work-stealing tree, pdsh and clush (flat).
fn many_bench() {
    let n: usize = std::env::var("MLN_BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick() { 12 } else { 200 });
    let runs = if quick() { 2 } else { 3 };
    let window = 64;
    // About the square root: two levels, each machine reaching ~14 hosts.
    let arity = ((n as f64).sqrt().ceil() as usize).max(2);
    let started = Instant::now();
    let lab = Lab::plain(n);
    lab.pin_neighbours();
    println!("\n{n} service hosts up in {:.1} s", started.elapsed().as_secs_f64());
    let state = tempfile::tempdir().unwrap();
    // 200 handshakes on 2 shared cores: 10 s per connection is too short
    // for the last ones whoever makes them; every tool gets 60 s.
    let fabric = lab.fabric("");
    let text = std::fs::read_to_string(&fabric).unwrap().replace("connect_timeout = 10", "connect_timeout = 60");
    std::fs::write(&fabric, text).unwrap();
    let prefix = lab.hosts[0].addr.rsplit_once('.').unwrap().0.to_string();
    let set = format!("{prefix}.[11-{}]", 10 + n);
    let kex = format!("-o KexAlgorithms={KEX} -o ConnectTimeout=60");
    let opts = with_opts(&lab, &kex);
    let ms: Vec<String> = lab.hosts.iter().map(|h| format!("-m {}", h.addr)).collect();
    let mln_cmd = |extra: &str| format!("{} --state-dir {} --fabric {} fabric exec -f {window} {extra} -- true", mln_bin().display(), state.path().display(), fabric.display());
    let mut tools = vec![tool(&format!("mln fabric exec -f {window}"), mln_cmd("")), tool(&format!("mln fabric exec --tree {arity}"), mln_cmd(&format!("--tree {arity}")))];
    tools.extend(peers(&lab, &set, window, &kex));
    tools.push(tool("taktuk -n (work-stealing tree, window 10)", format!("taktuk -n -c 'ssh {opts} -l root' {} broadcast exec [ true ]", ms.join(" "))));
    tools.push(tool(
        &format!("taktuk -n -d {arity} -w {arity} (tree, arity {arity})"),
        format!("taktuk -n -d {arity} -w {arity} -c 'ssh {opts} -l root' {} broadcast exec [ true ]", ms.join(" ")),
    ));
    let kex_mln = mln_kex(&lab, state.path(), &fabric);
    // Near: the hosts a bridge away from this machine, as in a machine
    // room. The untimed first round also puts mln on the tree's heads.
    let load = loadavg();
    let s = race(&tools, runs);
    many_table(&format!("`true` on {n} service hosts, this machine next to them; median of {runs} interleaved runs, window {window}, one key exchange for all; load {load} -> {}", loadavg()), &tools, &s, &kex_mln);
    // Far: 25 ms each way between this machine and every host (RTT 50 ms,
    // a managing machine across a WAN or a VPN), hosts among themselves as
    // before. MLN_BENCH_WAN_MS may list several one-way delays (`25,75`:
    // also RTT 150 ms, across an ocean), each a condition of its own.
    let delays: Vec<u64> = std::env::var("MLN_BENCH_WAN_MS").ok().map(|v| v.split(',').filter_map(|d| d.trim().parse().ok()).collect()).unwrap_or_else(|| vec![25]);
    let tag: u16 = lab.bridge.trim_start_matches("mlt").parse().unwrap();
    for one_way in delays {
        let far = wan::Wan::new(&lab.bridge, &format!("{prefix}.0/24"), tag, Duration::from_millis(one_way));
        // `-U`: the time the reply reached ping, not the kernel's receive
        // stamp, which is taken before the delay on the way in.
        let to_host = ping_ms(&format!("ping -U -c 5 -i 0.2 -q {}", lab.hosts[1].addr));
        let between = ping_ms(&format!("ip netns exec {} ping -U -c 5 -i 0.2 -q {}", lab.hosts[0].ns, lab.hosts[1].addr));
        println!("\nping RTT (avg of 5): this machine -> h2 {to_host:.1} ms, h1 -> h2 {between:.2} ms");
        let load = loadavg();
        let s = race(&tools, runs);
        drop(far);
        many_table(
            &format!("`true` on {n} service hosts, this machine {} ms RTT away from them (hosts {between:.2} ms from each other); median of {runs} interleaved runs, window {window}, one key exchange for all; load {load} -> {}", 2 * one_way, loadavg()),
            &tools,
            &s,
            &kex_mln,
        );
    }
}

fn many_table(title: &str, tools: &[Tool], s: &Samples, kex_mln: &str) {
    let rows: Vec<_> = tools.iter().enumerate().map(|(i, t)| (t.name.as_str(), if i < 2 { kex_mln } else { KEX }, &s.wall[i], &s.cpu[i])).collect();
    table(title, &rows);
    let flat = spread(&s.wall[0]).0.as_secs_f64();
    println!("mln tree / mln flat: {:.2}", spread(&s.wall[1]).0.as_secs_f64() / flat);
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().next().unwrap_or("?").to_string()).unwrap_or_else(|_| "?".into())
}

/// The average RTT that `ping -q` reports.
fn ping_ms(cmd: &str) -> f64 {
    let out = sh(cmd).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let avg = text.lines().find_map(|l| l.split(" = ").nth(1)).and_then(|v| v.split('/').nth(1)).and_then(|v| v.parse().ok());
    avg.unwrap_or_else(|| panic!("`{cmd}`: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

fn broadcast_bench(tmpfs: bool) {
    let n = if quick() { 3 } else { 8 };
    let mib: u64 = if quick() { 64 } else { 1024 };
    let lab = Lab::with_storage(n, false, tmpfs);
    for h in &lab.hosts {
        let st = Command::new("tc").args(["qdisc", "add", "dev", &h.veth, "root", "tbf", "rate", "1gbit", "burst", "256kb", "latency", "50ms"]).status().unwrap();
        assert!(st.success());
    }
    let state = tempfile::tempdir().unwrap();
    let fabric = lab.fabric("");
    let templates = state.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let file = templates.join("big.img");
    // Incompressible, and hashed once up front (as any template is).
    let st = sh(&format!("head -c {}M /dev/urandom > {}", mib, file.display())).status().unwrap();
    assert!(st.success());
    let opts = ssh_opts(&lab);
    let clean = |lab: &Lab| {
        for h in &lab.hosts {
            let _ = std::fs::remove_file(lab.state_dir(&h.name).join("templates/big.img"));
            let _ = std::fs::remove_file(lab.state_dir(&h.name).join("bench.img"));
        }
        let _ = sh("sync; echo 1 > /proc/sys/vm/drop_caches").status();
    };
    let t_floor = raw_floor(&lab, &file, mib << 20);
    // Agents in place and the source's checksum cached, as before any real push.
    let mut warm = mln(state.path(), &fabric);
    warm.args(["fabric", "status"]);
    time("warm-up", warm);
    let _ = mln::fabric::relay::file_sum(&file, &state.path().join("cache"));
    clean(&lab);
    let mut push = mln(state.path(), &fabric);
    push.args(["template", "push", "big.img"]);
    let t_mln = time("mln template push", push);
    for h in &lab.hosts {
        let got = std::fs::metadata(lab.state_dir(&h.name).join("templates/big.img")).map(|m| m.len()).unwrap_or(0);
        assert_eq!(got, mib << 20, "{} did not get the whole file", h.name);
    }
    clean(&lab);
    // One host: what one link costs us, without 8 relays sharing 2 cores.
    let mut one = mln(state.path(), &fabric);
    one.args(["template", "push", "big.img", "-w", "h1"]);
    let t_one = time("mln template push (1 host)", one);
    clean(&lab);
    let scp: Vec<String> = lab.hosts.iter().map(|h| format!("scp -q {opts} {} root@{}:/var/lib/mln/bench.img", file.display(), h.addr)).collect();
    let t_scp = time("sequential scp", sh(&scp.join(" && ")));
    clean(&lab);
    let ms: Vec<String> = lab.hosts.iter().map(|h| format!("-m {}", h.addr)).collect();
    let t_taktuk = time(
        "taktuk broadcast put",
        sh(&format!("taktuk -c 'ssh {opts} -l root' {} broadcast put [ {} ] [ /var/lib/mln/bench.img ]", ms.join(" "), file.display())),
    );
    clean(&lab);
    let ideal = (mib as f64 * 1048576.0 * 8.0) / 1e9;
    let storage = if tmpfs { "each host's storage in RAM (tmpfs)" } else { "all hosts writing to this machine's one disk" };
    println!("\n## {mib} MiB to {n} service hosts, 1 Gbit/s links, {storage} (one run each)");
    println!("ideal (size / link rate)  {ideal:8.2} s");
    for (name, d) in [("mln template push", t_mln), ("sequential scp", t_scp), ("taktuk broadcast put", t_taktuk), ("mln push, 1 host only", t_one), ("floor: raw TCP, all at once", t_floor)] {
        println!("{name:24} {:8.2} s   {:.2} x ideal", d.as_secs_f64(), d.as_secs_f64() / ideal);
    }
}

/// What this machine needs at least to move the file into every host at
/// once over plain TCP (no SSH, no disk, no hash): one receiver per host
/// that discards, one sender per host using sendfile.
fn raw_floor(lab: &Lab, file: &Path, size: u64) -> Duration {
    use std::os::fd::AsRawFd;
    let recv = "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9977)); s.listen(1)\n\
                c,_=s.accept(); b=bytearray(1<<20); n=0\nwhile True:\n    k=c.recv_into(b)\n    if not k: break\n    n+=k\nprint(n)\n";
    let receivers: Vec<std::process::Child> = lab
        .hosts
        .iter()
        .map(|h| Command::new("ip").args(["netns", "exec", &h.ns, "python3", "-c", recv]).stdout(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    let t = Instant::now();
    std::thread::scope(|sc| {
        for h in &lab.hosts {
            sc.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(15);
                let s = loop {
                    match std::net::TcpStream::connect(format!("{}:9977", h.addr)) {
                        Ok(s) => break s,
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(e) => panic!("receiver on {}: {e}", h.name),
                    }
                };
                let f = std::fs::File::open(file).unwrap();
                let mut off: libc::off_t = 0;
                while (off as u64) < size {
                    // SAFETY: both descriptors live through the call.
                    let n = unsafe { libc::sendfile(s.as_raw_fd(), f.as_raw_fd(), &mut off, 1 << 24) };
                    assert!(n > 0, "sendfile failed");
                }
            });
        }
    });
    for r in receivers {
        let out = r.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), size.to_string());
    }
    t.elapsed()
}

fn scaling_bench() {
    let layouts: &[(u32, u32)] = if quick() { &[(1, 2), (2, 1)] } else { &[(1, 12), (2, 6), (3, 4), (1, 4), (3, 1)] };
    let max_hosts = layouts.iter().map(|l| l.1).max().unwrap() as usize;
    let runs = if quick() { 1 } else { 3 };
    let lab = Lab::new(max_hosts, true);
    let state = tempfile::tempdir().unwrap();
    let fabric = lab.fabric("");
    let guest = state.path().join("templates/mln-testguest");
    let st = Command::new("bash").arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testguest/build.sh")).arg(&guest).status().unwrap();
    assert!(st.success());
    println!("\n## build scaling (VMs per host x hosts; median of {runs} builds, templates already on the hosts)");
    for &(per, hosts) in layouts {
        let slots: String = (1..=hosts).map(|h| format!("            h{h} {per}\n")).collect();
        let text = format!(
            "global {{\n    project scale\n    autoenum {{\n        superclass node\n        numhosts {}\n        service_hosts {{\n{slots}        }}\n    }}\n}}\n\
             superclass node {{\n    memory 64M\n    template mln-testguest\n}}\n",
            per * hosts
        );
        let file = state.path().join("scale.mln");
        std::fs::write(&file, text).unwrap();
        let mut samples = Vec::new();
        for r in 0..=runs {
            let mut b = mln(state.path(), &fabric);
            b.args(["build", "-f"]).arg(&file);
            let d = time("build", b);
            // The first build also sends templates and agents: not counted.
            if r > 0 {
                samples.push(d);
            }
            let mut rm = mln(state.path(), &fabric);
            rm.args(["remove", "-p", "scale"]);
            time("remove", rm);
        }
        // What reaching these hosts costs alone: SSH, the agent, one request.
        let names = format!("h[1-{hosts}]");
        let reach: Vec<Duration> = (0..3)
            .map(|_| {
                let mut c = mln(state.path(), &fabric);
                c.args(["fabric", "status", "-w", &names]);
                time("fabric status", c)
            })
            .collect();
        println!(
            "{per} x {hosts:2} ({:2} VMs)  build {:8.3} s   reaching the {hosts} hosts (fabric status) {:6.3} s",
            per * hosts,
            median(samples).as_secs_f64(),
            median(reach).as_secs_f64()
        );
    }
}

fn main() {
    // `cargo test --all-targets` runs benches too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |n: &str| which.is_empty() || which.iter().any(|w| w == n);
    if want("exec") {
        exec_bench();
    }
    if want("phases") {
        phases_bench();
    }
    if want("many") {
        many_bench();
    }
    if want("broadcast") {
        broadcast_bench(true);
        broadcast_bench(false);
    }
    if want("scaling") {
        scaling_bench();
    }
}
