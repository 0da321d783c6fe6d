//! Boot to "SSH accepts the project key" for 2 nodes: mln's tuned
//! template against the same packages with cloud-init's stock
//! configuration, side by side in one run (issue 12's speed goal: ratio
//! <= 0.6).
//!
//! The tuned template is `mln template build debian-12` (or one already
//! built: `MLN_BENCH_TEMPLATE=DIR`, a template directory). The stock one
//! is the same disk with mln's tuning taken out again, without a mount
//! (debugfs on a raw copy): its cloud-init drop-in (datasource list, one
//! host key type, trimmed module lists, the seed applied in the local
//! stage) and its systemd masks (e2scrub_reap, cloud-init's network stage)
//! go, and so do mln's early unit and its sshd unit (Debian's own sshd
//! unit is the one left), and its kernel command line loses `quiet`.
//! Packages, kernel, initrd, the fstab and mln's NoCloud seed (with the
//! host key mln made for the guest, so `mln ssh` waits for neither
//! console) are the same.
//!
//! Each round builds a 2-node project from one template, times from
//! `mln start` until `mln ssh -p P -h H --until login -- true` succeeds on
//! both nodes (strict host-key checking, the project key), and on to
//! `--until configured` (cloud-init's last stage done), then removes it; the
//! variants alternate, which goes first alternating per round.
//! `MLN_BENCH_RUNS` rounds of each (default 3). Prints medians, min-max
//! and the per-round ratio. Asserts no time.
//!
//! `cargo bench --bench boot_ssh` (root, QEMU, libvirt as the other
//! VM benches).

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{max, median, min};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TUNED: &str = "boot-tuned";
const STOCK: &str = "boot-stock";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("MLN_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let base = std::env::var_os("MLN_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into());
    let state = tempfile::Builder::new().prefix("mln-boot-bench-").tempdir_in(base).unwrap();
    let m = Mln { state: state.path().to_path_buf() };
    let templates = state.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();

    match std::env::var_os("MLN_BENCH_TEMPLATE") {
        Some(dir) => {
            eprintln!("boot bench: tuned template copied from {}", Path::new(&dir).display());
            assert!(Command::new("cp").arg("-a").arg(&dir).arg(templates.join(TUNED)).status().unwrap().success());
        }
        None => {
            eprintln!("boot bench: building the tuned template (debian-12)");
            m.ok(&["template", "build", "debian-12", "--name", TUNED]);
        }
    }
    untune(&templates.join(TUNED), &templates.join(STOCK));

    let load_before = machine().1;
    let (mut tuned, mut stock) = (Vec::new(), Vec::new());
    let (mut tuned_conf, mut stock_conf) = (Vec::new(), Vec::new());
    let mut per_node: Vec<(String, f64)> = Vec::new();
    for i in 0..runs {
        let order = if i % 2 == 0 { [TUNED, STOCK] } else { [STOCK, TUNED] };
        for t in order {
            let r = round(&m, t, &state.path().join(format!("{t}.mln")));
            eprintln!("  round {} {t}: both nodes accept the key {:.1} s after start (node01 {:.1}, node02 {:.1}); both configured {:.1} s", i + 1, r.login, r.nodes[0], r.nodes[1], r.configured);
            per_node.extend(r.nodes.iter().map(|n| (t.to_string(), *n)));
            if t == TUNED {
                tuned.push(r.login);
                tuned_conf.push(r.configured);
            } else {
                stock.push(r.login);
                stock_conf.push(r.configured);
            }
        }
    }
    let ratio = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<f64>>();
    let (ratios, conf_ratios) = (ratio(&tuned, &stock), ratio(&tuned_conf, &stock_conf));
    let (cpu, load) = machine();
    println!("boot of 2 nodes (512 MB, 1 vCPU, TCG) started together; {runs} rounds of each, alternating; {cpu}; load before: {load_before}, after: {load}");
    println!("| template | SSH accepts the project key: median s | min-max s | cloud-init done: median s | min-max s |");
    println!("|---|---|---|---|---|");
    println!("| mln's tuned (debian-12) | {:.1} | {:.1}-{:.1} | {:.1} | {:.1}-{:.1} |", median(&tuned), min(&tuned), max(&tuned), median(&tuned_conf), min(&tuned_conf), max(&tuned_conf));
    println!("| same packages, cloud-init stock | {:.1} | {:.1}-{:.1} | {:.1} | {:.1}-{:.1} |", median(&stock), min(&stock), max(&stock), median(&stock_conf), min(&stock_conf), max(&stock_conf));
    println!("| ratio tuned/stock (per round) | {:.2} | {:.2}-{:.2} | {:.2} | {:.2}-{:.2} |", median(&ratios), min(&ratios), max(&ratios), median(&conf_ratios), min(&conf_ratios), max(&conf_ratios));
    let one = |t: &str| per_node.iter().filter(|(n, _)| n == t).map(|(_, s)| *s).collect::<Vec<f64>>();
    println!("single nodes' logins: tuned median {:.1} s, stock median {:.1} s", median(&one(TUNED)), median(&one(STOCK)));
}

struct Mln {
    state: PathBuf,
}

impl Mln {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mln"));
        c.arg("--state-dir").arg(&self.state).env_remove("SSH_AUTH_SOCK");
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "mln {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The stock variant of a built template: the tuned one's files, its disk
/// with mln's cloud-init drop-in and systemd masks removed.
fn untune(tuned: &Path, stock: &Path) {
    std::fs::create_dir_all(stock).unwrap();
    // The manifest too: a template with one takes the host key mln makes
    // (both variants get the same seed; book/src/login.md).
    for f in ["vmlinuz", "initrd.img", "manifest.json"] {
        std::fs::copy(tuned.join(f), stock.join(f)).unwrap();
    }
    let cmdline = std::fs::read_to_string(tuned.join("cmdline")).unwrap();
    let cmdline: Vec<&str> = cmdline.split_whitespace().filter(|w| *w != "quiet").collect();
    std::fs::write(stock.join("cmdline"), cmdline.join(" ") + "\n").unwrap();
    let raw = stock.join("root.img");
    run(Command::new("qemu-img").args(["convert", "-q", "-O", "raw"]).arg(tuned.join("disk.qcow2")).arg(&raw));
    // mln's cloud-init drop-in and its systemd masks (src/template/tuning.rs);
    // fstab, hostname and hosts stay (a root without them does not boot
    // as the stock image would).
    let tuning = mln::template::tuning::FILES.iter().map(|(p, _, _)| *p).filter(|p| p.starts_with("/etc/cloud/") || p.starts_with("/etc/systemd/"));
    for p in tuning {
        let out = Command::new("debugfs").args(["-R", &format!("stat {p}")]).arg(&raw).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("Inode:"), "the tuned template has no {p}");
        run(Command::new("debugfs").args(["-w", "-R", &format!("rm {p}")]).arg(&raw));
        let out = Command::new("debugfs").args(["-R", &format!("stat {p}")]).arg(&raw).output().unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Inode:"), "{p} is still there");
    }
    run(Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(stock.join("disk.qcow2")));
    std::fs::remove_file(&raw).unwrap();
}

fn run(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One project of two nodes from `template`: built (not timed), started,
/// each node polled with `mln ssh --until login` until it runs a command,
/// then waited for with `--until configured` (cloud-init done); removed.
fn round(m: &Mln, template: &str, file: &Path) -> Round {
    let project = template.replace('-', "");
    std::fs::write(file, project_file(&project, template)).unwrap();
    m.ok(&["build", "-f", file.to_str().unwrap()]);
    let t0 = Instant::now();
    m.ok(&["start", "-p", &project]);
    let nodes = ["node01", "node02"];
    let times: Vec<(f64, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|h| {
                let project = project.clone();
                s.spawn(move || {
                    let deadline = t0 + Duration::from_secs(900);
                    let until = |what: &str| loop {
                        let out = m.cmd().args(["ssh", "-p", &project, "-h", h, "--wait", "600", "--until", what, "--", "true"]).output().unwrap();
                        if out.status.success() {
                            return t0.elapsed().as_secs_f64();
                        }
                        assert!(Instant::now() < deadline, "{h} of {project} never got to {what}: {}", String::from_utf8_lossy(&out.stderr));
                        std::thread::sleep(Duration::from_millis(500));
                    };
                    let login = until("login");
                    (login, until("configured"))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    m.ok(&["remove", "-p", &project]);
    Round { login: times.iter().map(|t| t.0).fold(0.0, f64::max), configured: times.iter().map(|t| t.1).fold(0.0, f64::max), nodes: [times[0].0, times[1].0] }
}

/// One round's times, in seconds from `mln start`: both nodes accept the
/// key; both have finished cloud-init; each node's login.
struct Round {
    login: f64,
    configured: f64,
    nodes: [f64; 2],
}

fn project_file(project: &str, template: &str) -> String {
    let node = |n: u8| {
        format!(
            "host node0{n} {{\n    memory 512M\n    template {template}\n    network eth0 {{\n        switch net\n        address 10.78.0.1{n}\n        netmask 255.255.255.0\n    }}\n}}\n"
        )
    };
    format!("global {{\n    project {project}\n}}\nswitch net {{ }}\n{}{}", node(1), node(2))
}

fn machine() -> (String, String) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    (format!("{n} cores ({cpu})"), load)
}



