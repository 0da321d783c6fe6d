//! Against kcli (issue 12's first speed goal): 4 guests from the same
//! Debian image (512 MB, 1 vCPU, static addresses), created, run until
//! configured, hard-stopped and removed, by kcli on `qemu:///system` and by
//! mln on its embedded default and on `qemu:///system`, in interleaved
//! rounds (which tool goes first rotates per round).
//!
//! kcli (PyPI `kcli` with `libvirt-python`) is installed into a venv kept
//! across runs (`MLN_BENCH_KCLI_VENV`, default /var/tmp/mln-kcli-venv) and
//! given a HOME of its own in the scratch directory. It runs here only with
//! four workarounds, all applied by this bench:
//! * `virttype: qemu`: it picks KVM because /dev/kvm exists, and guests hang;
//! * direct kernel boot through `qemuextra` (`-kernel`, `-initrd`,
//!   `-append`): its libvirt provider ignores `kernel`/`initrd`, and it
//!   splits `qemuextra` at spaces, so the kernel command line's words are
//!   joined with tabs (the kernel reads a tab as a space);
//! * its cloud-init ISO attached a second time, on virtio (`qemuextra`
//!   `-drive ...,if=none` and `-device virtio-blk-pci,...,addr=0x1e`: a
//!   plain `if=virtio` takes the PCI slot libvirt gave the video card): it
//!   attaches the seed on SATA, which Debian's cloud kernel lacks;
//! * the directory /var/lib/libvirt/dnsmasq, which libvirt's network
//!   needs and Debian's package does not make here.
//!
//! Its guests get mln's CPU model (`cpumodel: qemu64`; kcli's default,
//! host-model, becomes an EPYC model with dozens of flags under TCG), so
//! both tools boot the same virtual machine. The kernel command line
//! also gets `net.ifnames=0`, so that the interface
//! kcli's network-config names (`nic: eth0`) is the one the guest has
//! (mln's seed matches it by MAC address instead).
//!
//! The template is mln's `template build debian-12` (or one already built:
//! `MLN_BENCH_TEMPLATE=DIR`). kcli gets its disk as an image in a pool of
//! this bench's and an isolated libvirt network (10.79.0.0/24, no DHCP);
//! both are removed at the end, as are libvirtd and virtlogd if this bench
//! started them.
//!
//! Tools: kcli; mln on its embedded driver (the default) with
//! `mln build --start -f FILE` (one process) and with `mln build` then
//! `mln start` (two); mln on `qemu:///system` with `build --start`. One
//! untimed round of each comes first: the first command on a fresh
//! embedded root has libvirt probe QEMU (once per state directory), as
//! libvirtd did when it started, and mln's KVM probe is cached per boot.
//!
//! Phases, per tool and round:
//! * create: `kcli create plan` (its default: one VM after the other)
//!   against mln's build and start (wall time of the commands);
//! * all running: from the start of create until a QEMU process runs for
//!   each of the 4 guests (polled in /proc every 20 ms, during create);
//! * configured: from the start of create until SSH accepts the key on
//!   all 4 guests (root with the bench's key for kcli, `mln ssh` for mln;
//!   only in the first `MLN_BENCH_CONFIGURED` rounds, default all: each
//!   takes minutes; reported with its spread, not as a ratio: emulated
//!   boots vary by ±20%);
//! * hard stop: `kcli stop plan` (libvirt's destroy) against `mln stop -H`;
//! * remove: `kcli delete plan -y` against `mln remove`.
//!
//! `MLN_BENCH_RUNS` rounds (default 3). Prints medians, min-max and
//! ratios; writes target/bench/kcli.md. Asserts no time.
//!
//! `cargo bench --bench kcli` (root, QEMU, libvirt; network to PyPI on the
//! first run, to install kcli).

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{max, median, min, Guests};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NET: &str = "mlnkcli";
const POOL: &str = "mlnkcli";
const IMAGE: &str = "mln-bench-debian.qcow2";
const GUESTS: usize = 4;

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Kcli,
    /// `mln build --start`, the embedded driver (mln's default).
    MlnEmbed,
    /// `mln build` then `mln start`, the embedded driver.
    MlnEmbedTwo,
    /// `mln build --start` on `qemu:///system`.
    MlnSystem,
}

const TOOLS: [Tool; 4] = [Tool::Kcli, Tool::MlnEmbed, Tool::MlnEmbedTwo, Tool::MlnSystem];

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Kcli => "kcli (qemu:///system)",
            Tool::MlnEmbed => "mln build --start (embedded, default)",
            Tool::MlnEmbedTwo => "mln build; mln start (embedded)",
            Tool::MlnSystem => "mln build --start (qemu:///system)",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Tool::Kcli => "kc",
            Tool::MlnEmbed => "me",
            Tool::MlnEmbedTwo => "mt",
            Tool::MlnSystem => "ms",
        }
    }
}

#[derive(Default, Clone)]
struct Times {
    create: Vec<f64>,
    running: Vec<f64>,
    configured: Vec<f64>,
    stop: Vec<f64>,
    remove: Vec<f64>,
}

struct Bench {
    work: PathBuf,
    template: PathBuf,
    kcli: PathBuf,
    kcli_home: PathBuf,
    key: PathBuf,
    mln_embed: PathBuf,
    mln_system: PathBuf,
    templates: PathBuf,
    configured: usize,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("MLN_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    // Rounds that also wait for SSH (the first ones; each takes minutes).
    let configured: usize = std::env::var("MLN_BENCH_CONFIGURED").ok().and_then(|v| v.parse().ok()).unwrap_or(runs);
    let base = std::env::var_os("MLN_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into());
    let work = tempfile::Builder::new().prefix("mln-kcli-bench-").tempdir_in(base).unwrap();
    // libvirtd's QEMU runs as another user: the pool, the kernel and the
    // mln state of the system rows must be readable by it.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _guests = Guests(work.path().to_path_buf());

    let daemons = Daemons::up();
    let venv = std::env::var_os("MLN_BENCH_KCLI_VENV").map(PathBuf::from).unwrap_or_else(|| "/var/tmp/mln-kcli-venv".into());
    let kcli = install_kcli(&venv);
    let version = kcli_version(&kcli);

    let templates = work.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::set_permissions(&templates, std::fs::Permissions::from_mode(0o755)).unwrap();
    let template = templates.join("kcli-debian");
    match std::env::var_os("MLN_BENCH_TEMPLATE") {
        Some(dir) => {
            eprintln!("kcli bench: template copied from {}", Path::new(&dir).display());
            run(Command::new("cp").arg("-a").arg(&dir).arg(&template));
        }
        None => {
            eprintln!("kcli bench: building the template (mln template build debian-12)");
            let mut c = Command::new(env!("CARGO_BIN_EXE_mln"));
            c.arg("--state-dir").arg(work.path().join("mln-embed")).arg("--templates").arg(&templates);
            c.args(["template", "build", "debian-12", "--name", "kcli-debian"]);
            run(&mut c);
        }
    }
    let b = Bench {
        work: work.path().to_path_buf(),
        template,
        kcli,
        kcli_home: work.path().join("kcli-home"),
        key: work.path().join("id_ed25519"),
        mln_embed: work.path().join("mln-embed"),
        mln_system: work.path().join("mln-system"),
        templates,
        configured,
    };
    for d in [&b.mln_embed, &b.mln_system] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&b.key));
    let _libvirt = b.setup_kcli();

    let order = TOOLS;
    // Not counted: the first command on a fresh embedded root probes what
    // QEMU can do (~4 s, once per state directory), as libvirtd did when
    // it started; and the first run of each tool loads its files.
    for tool in order {
        let t = b.round(tool, &format!("{}0", tool.short()), false);
        eprintln!("  warm-up {}: create {:.2} s, stop {:.2} s, remove {:.2} s (not counted)", tool.label(), t.0, t.3, t.4);
    }
    let mut times = [Times::default(), Times::default(), Times::default(), Times::default()];
    let load_before = loadavg();
    for r in 0..runs {
        for k in 0..order.len() {
            let tool = order[(r + k) % order.len()];
            let name = format!("{}{}", tool.short(), r + 1);
            let t = b.round(tool, &name, r < b.configured);
            eprintln!(
                "  round {} {}: create {:.2} s, all running {:.2} s, configured {}, stop {:.2} s, remove {:.2} s",
                r + 1,
                tool.label(),
                t.0,
                t.1,
                t.2.map(|c| format!("{c:.1} s")).unwrap_or("-".into()),
                t.3,
                t.4
            );
            let i = order.iter().position(|o| *o == tool).unwrap();
            times[i].create.push(t.0);
            times[i].running.push(t.1);
            if let Some(c) = t.2 {
                times[i].configured.push(c);
            }
            times[i].stop.push(t.3);
            times[i].remove.push(t.4);
        }
    }
    let out = report(&times, runs, &version, &load_before, &loadavg());
    print!("{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kcli.md"), &out).unwrap();
    drop(daemons);
}

fn report(t: &[Times; 4], runs: usize, version: &str, before: &str, after: &str) -> String {
    let (cpu, n) = machine();
    let mut s = format!(
        "4 guests from one Debian 12 template (512 MB, 1 vCPU, TCG, static addresses); {runs} rounds, tools interleaved (the first rotating); {n} cores ({cpu}); {version}; load average before {before}, after {after}\n\n"
    );
    s += "| phase |";
    for tool in TOOLS {
        s += &format!(" {} |", tool.label());
    }
    s += " mln build --start (embedded) / kcli | mln build; start (embedded) / kcli | mln system / kcli |\n|---|---|---|---|---|---|---|---|\n";
    let row = |name: &str, f: &dyn Fn(&Times) -> &Vec<f64>, ratio: bool| {
        let cell = |v: &Vec<f64>| if v.is_empty() { "-".to_string() } else { format!("{:.2} ({:.2}-{:.2})", median(v), min(v), max(v)) };
        let r = |i: usize| if ratio && !f(&t[0]).is_empty() { format!("**{:.2}**", median(f(&t[i])) / median(f(&t[0]))) } else { "(spread only)".into() };
        format!("| {name} | {} | {} | {} | {} | {} | {} | {} |\n", cell(f(&t[0])), cell(f(&t[1])), cell(f(&t[2])), cell(f(&t[3])), r(1), r(2), r(3))
    };
    s += &row("create (kcli create plan / mln build + start), s", &|x| &x.create, true);
    s += &row("all 4 QEMUs running, from the start, s", &|x| &x.running, true);
    s += &row("SSH accepts the key on all 4, from the start, s", &|x| &x.configured, false);
    s += &row("hard stop, s", &|x| &x.stop, true);
    s += &row("remove, s", &|x| &x.remove, true);
    s += "\nmedian (min-max) of the rounds, seconds; ratios of medians.\n";
    s
}

impl Bench {
    fn mln(&self, tool: Tool) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mln"));
        let state = if tool == Tool::MlnSystem { &self.mln_system } else { &self.mln_embed };
        c.arg("--state-dir").arg(state).arg("--templates").arg(&self.templates).env_remove("SSH_AUTH_SOCK");
        if tool == Tool::MlnSystem {
            c.args(["--connect", "qemu:///system"]);
        }
        c
    }

    fn kcli(&self) -> Command {
        let mut c = Command::new(&self.kcli);
        c.env("HOME", &self.kcli_home).current_dir(&self.work);
        c
    }

    /// kcli's configuration, pool, network and image; undone on drop.
    fn setup_kcli(&self) -> Libvirt {
        let pool = self.work.join("pool");
        std::fs::create_dir_all(&pool).unwrap();
        std::fs::set_permissions(&pool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all("/var/lib/libvirt/dnsmasq").unwrap();
        let mut l = Libvirt { pool: false, net: false };
        let virsh = |args: &[&str]| run(Command::new("virsh").args(["-q", "-c", "qemu:///system"]).args(args));
        // Left by an interrupted run.
        drop_kcli_guests();
        let _ = Command::new("virsh").args(["-q", "-c", "qemu:///system", "pool-destroy", POOL]).output();
        let _ = Command::new("virsh").args(["-q", "-c", "qemu:///system", "pool-undefine", POOL]).output();
        let _ = Command::new("virsh").args(["-q", "-c", "qemu:///system", "net-destroy", NET]).output();
        let _ = Command::new("virsh").args(["-q", "-c", "qemu:///system", "net-undefine", NET]).output();
        run(Command::new("qemu-img").args(["convert", "-q", "-O", "qcow2"]).arg(self.template.join("disk.qcow2")).arg(pool.join(IMAGE)));
        for f in ["vmlinuz", "initrd.img"] {
            std::fs::copy(self.template.join(f), pool.join(f)).unwrap();
        }
        virsh(&["pool-define-as", POOL, "dir", "--target", pool.to_str().unwrap()]);
        l.pool = true;
        virsh(&["pool-start", POOL]);
        let xml = self.work.join("net.xml");
        std::fs::write(&xml, format!("<network><name>{NET}</name><bridge name='{NET}0'/><ip address='10.79.0.1' netmask='255.255.255.0'/></network>\n")).unwrap();
        virsh(&["net-define", xml.to_str().unwrap()]);
        l.net = true;
        virsh(&["net-start", NET]);
        std::fs::create_dir_all(self.kcli_home.join(".kcli")).unwrap();
        std::fs::write(self.kcli_home.join(".kcli/config.yml"), format!("default:\n  client: local\nlocal:\n  type: kvm\n  host: 127.0.0.1\n  pool: {POOL}\n")).unwrap();
        l
    }

    /// kcli's pool and network, defined again if something undefined them
    /// (seen in a run between rounds; not timed).
    fn kcli_up(&self) {
        let up = Command::new("virsh").args(["-q", "-c", "qemu:///system", "pool-info", POOL]).output().is_ok_and(|o| o.status.success());
        if !up {
            eprintln!("kcli bench: pool {POOL} was gone: defined again");
            let pool = self.work.join("pool");
            run(Command::new("virsh").args(["-q", "-c", "qemu:///system", "pool-define-as", POOL, "dir", "--target", pool.to_str().unwrap()]));
            run(Command::new("virsh").args(["-q", "-c", "qemu:///system", "pool-start", POOL]));
        }
        let up = Command::new("virsh").args(["-q", "-c", "qemu:///system", "net-info", NET]).output().is_ok_and(|o| o.status.success());
        if !up {
            eprintln!("kcli bench: network {NET} was gone: defined again");
            run(Command::new("virsh").args(["-q", "-c", "qemu:///system", "net-define", self.work.join("net.xml").to_str().unwrap()]));
            run(Command::new("virsh").args(["-q", "-c", "qemu:///system", "net-start", NET]));
        }
    }

    /// One tool's round: (create, all running, configured, stop, remove).
    fn round(&self, tool: Tool, name: &str, configured: bool) -> (f64, f64, Option<f64>, f64, f64) {
        let names: Vec<String> = (1..=GUESTS).map(|i| if tool == Tool::Kcli { format!("{name}n{i}") } else { format!("node0{i}.{name}") }).collect();
        let file = self.work.join(format!("{name}.{}", if tool == Tool::Kcli { "yml" } else { "mln" }));
        std::fs::write(&file, if tool == Tool::Kcli { self.kcli_plan(name) } else { mln_project(name) }).unwrap();
        if tool == Tool::Kcli {
            self.kcli_up();
        }
        let t0 = Instant::now();
        let (create, running) = std::thread::scope(|s| {
            let watch = s.spawn(|| {
                let deadline = t0 + Duration::from_secs(300);
                while Instant::now() < deadline {
                    if qemus(&names) == GUESTS {
                        return t0.elapsed().as_secs_f64();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let list = Command::new("virsh").args(["-c", "qemu:///system", "list", "--all"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
                panic!("{name}: not all {GUESTS} QEMUs ran within 300 s (found {}); qemu:///system's domains:\n{list}", qemus(&names));
            });
            match tool {
                Tool::Kcli => {
                    // kcli reports a VM it could not create and still exits 0:
                    // its words go to the bench's log, for a failed watch.
                    let out = self.kcli().args(["create", "plan", "-f"]).arg(&file).arg(name).output().unwrap();
                    for l in String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).lines() {
                        eprintln!("    kcli: {l}");
                    }
                    assert!(out.status.success(), "kcli create plan {name} failed");
                }
                Tool::MlnEmbed | Tool::MlnSystem => run(self.mln(tool).args(["build", "--start", "-f"]).arg(&file)),
                Tool::MlnEmbedTwo => {
                    run(self.mln(tool).arg("build").arg("-f").arg(&file));
                    run(self.mln(tool).args(["start", "-p", name]));
                }
            }
            let create = t0.elapsed().as_secs_f64();
            (create, watch.join().unwrap())
        });
        let configured = configured.then(|| self.wait_configured(tool, name, t0));
        let t = Instant::now();
        match tool {
            Tool::Kcli => run(self.kcli().args(["stop", "plan", name])),
            _ => run(self.mln(tool).args(["stop", "-p", name, "-H"])),
        }
        let stop = t.elapsed().as_secs_f64();
        let t = Instant::now();
        match tool {
            Tool::Kcli => run(self.kcli().args(["delete", "plan", "-y", name])),
            _ => run(self.mln(tool).args(["remove", "-p", name])),
        }
        let remove = t.elapsed().as_secs_f64();
        assert_eq!(qemus(&names), 0, "{name}: QEMUs left after remove");
        (create, running, configured, stop, remove)
    }

    /// Seconds from `t0` until SSH accepts the key on every guest.
    fn wait_configured(&self, tool: Tool, name: &str, t0: Instant) -> f64 {
        let times: Vec<f64> = std::thread::scope(|s| {
            let hs: Vec<_> = (1..=GUESTS)
                .map(|i| {
                    s.spawn(move || {
                        let deadline = t0 + Duration::from_secs(900);
                        loop {
                            let ok = match tool {
                                Tool::Kcli => Command::new("ssh")
                                    .args(["-q", "-i"])
                                    .arg(&self.key)
                                    .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"])
                                    .arg(format!("root@10.79.0.1{i}"))
                                    .arg("true")
                                    .env_remove("SSH_AUTH_SOCK")
                                    .output(),
                                // The same as kcli's side: the key accepted, not cloud-init done.
                                _ => self.mln(tool).args(["ssh", "-p", name, "-h", &format!("node0{i}"), "--wait", "600", "--until", "login", "--", "true"]).output(),
                            }
                            .is_ok_and(|o| o.status.success());
                            if ok {
                                return t0.elapsed().as_secs_f64();
                            }
                            assert!(Instant::now() < deadline, "guest {i} of {name} never accepted the key");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        times.into_iter().fold(0.0, f64::max)
    }

    fn kcli_plan(&self, plan: &str) -> String {
        let pool = self.work.join("pool");
        let cmdline = std::fs::read_to_string(self.template.join("cmdline")).unwrap();
        let append = cmdline.split_whitespace().chain(["net.ifnames=0"]).collect::<Vec<_>>().join("\\t");
        let key = std::fs::read_to_string(self.key.with_extension("pub")).unwrap();
        let mut s = String::new();
        for i in 1..=GUESTS {
            let name = format!("{plan}n{i}");
            let extra = format!(
                "-kernel {p}/vmlinuz -initrd {p}/initrd.img -append {append} -drive file={p}/{name}.ISO,if=none,id=kcliseed,format=raw,readonly=on -device virtio-blk-pci,drive=kcliseed,addr=0x1e",
                p = pool.display()
            );
            s += &format!(
                "{name}:\n  image: {IMAGE}\n  pool: {POOL}\n  memory: 512\n  numcpus: 1\n  virttype: qemu\n  cpumodel: qemu64\n  disks:\n  - 4\n  nets:\n  - name: {NET}\n    nic: eth0\n    ip: 10.79.0.1{i}\n    netmask: 24\n    gateway: 10.79.0.1\n  keys:\n  - \"{}\"\n  qemuextra: \"{extra}\"\n",
                key.trim()
            );
        }
        s
    }
}

fn mln_project(project: &str) -> String {
    let mut s = format!("global {{\n    project {project}\n}}\nswitch net {{ }}\n");
    for n in 1..=GUESTS {
        s += &format!(
            "host node0{n} {{\n    memory 512M\n    template kcli-debian\n    network eth0 {{\n        switch net\n        address 10.78.0.1{n}\n        netmask 255.255.255.0\n    }}\n}}\n"
        );
    }
    s
}

/// How many of `names` have a QEMU process.
fn qemus(names: &[String]) -> usize {
    let mut found = vec![false; names.len()];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        if !cmd.starts_with(b"/usr/bin/qemu-system") {
            continue;
        }
        let cmd = String::from_utf8_lossy(&cmd);
        for (i, n) in names.iter().enumerate() {
            if cmd.contains(&format!("guest={n},")) {
                found[i] = true;
            }
        }
    }
    found.iter().filter(|f| **f).count()
}

/// kcli in a venv (made once and kept); its executable.
fn install_kcli(venv: &Path) -> PathBuf {
    let exe = venv.join("bin/kcli");
    let ok = |e: &Path| Command::new(e).arg("version").env("HOME", "/nonexistent").output().is_ok_and(|o| o.status.success());
    if exe.exists() && ok(&exe) {
        return exe;
    }
    eprintln!("kcli bench: installing kcli and libvirt-python into {}", venv.display());
    let missing: Vec<&str> = [("pkg-config", "pkg-config"), ("libvirt-dev", "libvirt-dev"), ("python3-venv", "python3-venv"), ("python3-dev", "python3-dev"), ("genisoimage", "genisoimage")]
        .iter()
        .filter(|(p, _)| !Command::new("dpkg-query").args(["-W", "-f", "${Status}", p]).output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed")))
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        run(Command::new("apt-get").args(["install", "-y", "-q"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"));
    }
    // Debian's Python, whatever `python3` is first on PATH (a pyenv's may
    // lack the headers libvirt-python builds against).
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(venv));
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "kcli", "libvirt-python"]));
    assert!(ok(&exe), "kcli does not run after installing it");
    exe
}

fn kcli_version(exe: &Path) -> String {
    let pip = exe.with_file_name("pip");
    let out = Command::new(pip).args(["show", "kcli", "libvirt-python"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    let mut name = String::new();
    for l in text.lines() {
        if let Some(n) = l.strip_prefix("Name: ") {
            name = n.to_string();
        }
        if let Some(ver) = l.strip_prefix("Version: ") {
            v.push(format!("{name} {ver}"));
        }
    }
    v.join(", ")
}

/// libvirtd and virtlogd, started if none answers; stopped again then.
struct Daemons(Vec<&'static str>);

impl Daemons {
    fn up() -> Daemons {
        let up = || Command::new("virsh").args(["-c", "qemu:///system", "version"]).output().is_ok_and(|o| o.status.success());
        let mut started = Vec::new();
        if !up() {
            for (daemon, pidfile) in [("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")] {
                if Command::new(daemon).arg("-d").status().is_ok_and(|s| s.success()) {
                    started.push(pidfile);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while !up() {
                assert!(Instant::now() < deadline, "libvirtd did not answer");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Daemons(started)
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for f in self.0.iter().rev() {
            if let Some(pid) = std::fs::read_to_string(f).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

/// The pool and network this bench defined, undone on drop.
struct Libvirt {
    pool: bool,
    net: bool,
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        let virsh = |args: &[&str]| {
            let _ = Command::new("virsh").args(["-q", "-c", "qemu:///system"]).args(args).output();
        };
        if self.net {
            virsh(&["net-destroy", NET]);
            virsh(&["net-undefine", NET]);
        }
        drop_kcli_guests();
        if self.pool {
            virsh(&["pool-destroy", POOL]);
            virsh(&["pool-undefine", POOL]);
        }
    }
}



/// kcli's guests (`kc<round>n<i>`) in qemu:///system, stopped and
/// undefined: a round that failed before `kcli delete` left them defined,
/// and tests that list the daemon's domains then found them.
fn drop_kcli_guests() {
    let virsh = |args: &[&str]| Command::new("virsh").args(["-q", "-c", "qemu:///system"]).args(args).output();
    let Ok(out) = virsh(&["list", "--all", "--name"]) else { return };
    for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        let ours = name.strip_prefix("kc").and_then(|r| r.split_once('n')).is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
        });
        if ours {
            let _ = virsh(&["destroy", name]);
            let _ = virsh(&["undefine", name]);
        }
    }
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn machine() -> (String, usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    (cpu, std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}



