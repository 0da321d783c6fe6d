//! Lightweight service hosts on the one test machine: each a network
//! namespace with its own address on a private bridge, a private mount
//! namespace (its own /run, libvirt state and /var/lib/mln), its own
//! hostname, sshd and optionally libvirtd (recipe:
//! shared/recipes/test-hosts.md). The lab makes them and removes them, and
//! only ever talks to the addresses it made.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct TestHost {
    pub name: String,
    pub ns: String,
    pub addr: String,
    pub root: PathBuf,
    pub veth: String,
    starter: Child,
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    pub hosts: Vec<TestHost>,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub gateway: String,
    /// Each host's /var/lib/mln is a tmpfs (benchmarks: on one machine the
    /// hosts share one disk, which real hosts do not).
    tmpfs: bool,
    /// Each host's /root is its own empty directory, as on a fresh host:
    /// bash run by sshd reads ~/.bashrc, and this machine's (pyenv, cargo)
    /// would cost every command half a second of CPU on every host.
    own_home: bool,
}

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{cmd}`: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn must(cmd: &str) -> String {
    sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// A free /24 and name prefix for this lab (several labs may run at once).
fn slot() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = (std::process::id() * 7 + NEXT.fetch_add(1, Ordering::SeqCst)) % 200 + 20;
        // A lab killed before its drop leaves its namespaces behind, with
        // or without its bridge: a slot is free only when neither is there.
        if !Path::new(&format!("/sys/class/net/mlt{n}")).exists() && !Path::new(&format!("/run/netns/mlt{n}h1")).exists() {
            return n;
        }
    }
}

impl Lab {
    /// `n` hosts named h1..hn; with `libvirt`, each runs its own libvirtd.
    pub fn new(n: usize, libvirt: bool) -> Lab {
        Lab::with_storage(n, libvirt, false)
    }

    pub fn with_storage(n: usize, libvirt: bool, tmpfs: bool) -> Lab {
        Lab::build(n, libvirt, tmpfs, false)
    }

    /// `n` hosts as fresh machines running only sshd, each with its own
    /// empty home (fan-out benchmarks: what a command costs is then the
    /// command's, not this machine's shell start-up files).
    pub fn plain(n: usize) -> Lab {
        Lab::build(n, false, false, true)
    }

    /// Gives the lab's network (its bridge, both ends of every host's
    /// veth) this MTU; the default is the kernel's 1500. A switch spanning
    /// service hosts (VXLAN, 50 bytes around each of the guests' 1500-byte
    /// frames) needs 1550.
    pub fn with_mtu(self, mtu: u32) -> Lab {
        for h in &self.hosts {
            must(&format!("ip link set dev {v} mtu {mtu} && ip netns exec {ns} ip link set dev {v}p mtu {mtu}", v = h.veth, ns = h.ns));
        }
        // A bridge follows its ports' MTU unless it is set: set it anyway.
        must(&format!("ip link set dev {} mtu {mtu}", self.bridge));
        self
    }

    fn build(n: usize, libvirt: bool, tmpfs: bool, own_home: bool) -> Lab {
        use std::os::unix::fs::PermissionsExt;
        let s = slot();
        // QEMU runs as another user under libvirtd: the tree must be traversable.
        let dir = tempfile::Builder::new().prefix("mln-lab-").tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bridge = format!("mlt{s}");
        let net = format!("10.77.{s}");
        must(&format!("ip link add {bridge} type bridge && ip link set {bridge} up && ip addr add {net}.1/24 dev {bridge}"));
        let key = dir.path().join("id_ed25519");
        must(&format!("ssh-keygen -q -t ed25519 -N '' -C mln-test -f {}", key.display()));
        std::fs::copy(dir.path().join("id_ed25519.pub"), dir.path().join("authorized_keys")).unwrap();
        let mut lab = Lab { known_hosts: dir.path().join("known_hosts"), dir, bridge, hosts: Vec::new(), key, gateway: format!("{net}.1"), tmpfs, own_home };
        for i in 1..=n {
            let h = lab.start_host(s, i, libvirt);
            lab.hosts.push(h);
        }
        for h in &lab.hosts {
            lab.wait_ready(h, libvirt);
        }
        lab.trust_all();
        lab
    }

    fn start_host(&self, s: u32, i: usize, libvirt: bool) -> TestHost {
        let name = format!("h{i}");
        let ns = format!("mlt{s}h{i}");
        let veth = format!("mlt{s}v{i}");
        let addr = format!("10.77.{s}.{}", 10 + i);
        let root = self.dir.path().join(&name);
        for d in ["run", "lib", "cache", "log", "etc", "mln", "home"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        must(&format!("cp -a /etc/libvirt/. {}/etc/", root.display()));
        if self.tmpfs {
            must(&format!("mount -t tmpfs -o size=4g,mode=755 mln-lab {}/mln", root.display()));
        }
        let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
        let conf = root.join("etc/libvirtd.conf");
        let mut c = std::fs::read_to_string(&conf).unwrap_or_default();
        c += &format!("\nhost_uuid = \"{}\"\n", uuid.trim());
        std::fs::write(&conf, c).unwrap();
        must(&format!("ssh-keygen -q -t ed25519 -N '' -C {name} -f {}/ssh_host_ed25519_key", root.display()));
        std::fs::write(
            root.join("sshd_config"),
            format!(
                "ListenAddress {addr}\nHostKey {r}/ssh_host_ed25519_key\nPidFile {r}/sshd.pid\nAuthorizedKeysFile {lab}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PrintMotd no\nSubsystem sftp internal-sftp\nMaxStartups 200:30:400\nMaxSessions 200\nUseDNS no\n",
                r = root.display(),
                lab = self.dir.path().display()
            ),
        )
        .unwrap();
        let daemons = if libvirt { "virtlogd -d; libvirtd -d;" } else { "" };
        let home = if self.own_home { "mount --bind $R/home /root\n" } else { "" };
        std::fs::write(
            root.join("start.sh"),
            format!(
                "set -e\nR={r}\nmount --make-rprivate /\nmount --bind $R/run /run\nmkdir -p /run/libvirt /run/sshd\n\
                 mount --bind $R/lib /var/lib/libvirt\nmount --bind $R/cache /var/cache/libvirt\nmount --bind $R/log /var/log/libvirt\n\
                 mount --bind $R/etc /etc/libvirt\nmkdir -p /var/lib/mln\nmount --bind $R/mln /var/lib/mln\nhostname {name}\n\
                 {home}{daemons}\n/usr/sbin/sshd -f $R/sshd_config\ntouch $R/ready\nexec sleep infinity\n",
                r = root.display()
            ),
        )
        .unwrap();
        must(&format!(
            "ip netns add {ns} && ip link add {veth} type veth peer name {veth}p && ip link set {veth}p netns {ns} && \
             ip link set {veth} master {b} && ip link set {veth} up && ip netns exec {ns} ip addr add {addr}/24 dev {veth}p && \
             ip netns exec {ns} ip link set {veth}p up && ip netns exec {ns} ip link set lo up",
            b = self.bridge
        ));
        let starter = Command::new("ip")
            .args(["netns", "exec", &ns, "unshare", "--mount", "--uts", "--propagation", "private", "sh"])
            .arg(root.join("start.sh"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("start.log")).unwrap())
            .spawn()
            .unwrap();
        TestHost { name, ns, addr, root, veth, starter }
    }

    fn wait_ready(&self, h: &TestHost, libvirt: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sshd = std::net::TcpStream::connect_timeout(&format!("{}:22", h.addr).parse().unwrap(), Duration::from_millis(500)).is_ok();
            let lv = !libvirt || h.root.join("run/libvirt/libvirt-sock").exists();
            if sshd && lv && h.root.join("ready").exists() {
                return;
            }
            let gone = std::fs::read_to_string(format!("/proc/{}/stat", h.starter.id())).map(|s| s.contains(") Z ")).unwrap_or(true);
            assert!(
                !gone && Instant::now() < deadline,
                "test host {} did not come up: {}",
                h.name,
                std::fs::read_to_string(h.root.join("start.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// known_hosts with every host's real key.
    pub fn trust_all(&self) {
        let mut text = String::new();
        for h in &self.hosts {
            text += &self.known_line(h, &std::fs::read_to_string(h.root.join("ssh_host_ed25519_key.pub")).unwrap());
        }
        std::fs::write(&self.known_hosts, text).unwrap();
    }

    pub fn known_line(&self, h: &TestHost, pubkey: &str) -> String {
        let mut w = pubkey.split_whitespace();
        format!("{} {} {}\n", h.addr, w.next().unwrap(), w.next().unwrap())
    }

    /// A fabric configuration for the lab's hosts; `extra` is appended.
    pub fn fabric(&self, extra: &str) -> PathBuf {
        let mut t = format!(
            "[defaults]\nuser = \"root\"\nidentity = [\"{}\"]\nknown_hosts = \"{}\"\nconnect_timeout = 30\n",
            self.key.display(),
            self.known_hosts.display()
        );
        for h in &self.hosts {
            t += &format!("[hosts.{}]\naddress = \"{}\"\n", h.name, h.addr);
        }
        t += extra;
        let p = self.dir.path().join("fabric.toml");
        std::fs::write(&p, t).unwrap();
        p
    }

    /// Fixed neighbour entries for every host, on this machine and in
    /// every host: with hundreds of hosts on one busy machine, ARP on the
    /// bridge fails now and then (`No route to host`).
    pub fn pin_neighbours(&self) {
        let macs: Vec<String> = self
            .hosts
            .iter()
            .map(|h| must(&format!("ip netns exec {} cat /sys/class/net/{}p/address", h.ns, h.veth)).trim().to_string())
            .collect();
        let lines = |dev: &str| -> String {
            self.hosts.iter().zip(&macs).map(|(h, m)| format!("neigh replace {} lladdr {m} dev {dev} nud permanent\n", h.addr)).collect()
        };
        let batch = self.dir.path().join("neigh.batch");
        std::fs::write(&batch, lines(&self.bridge)).unwrap();
        must(&format!("ip -batch {}", batch.display()));
        for h in &self.hosts {
            std::fs::write(&batch, lines(&format!("{}p", h.veth))).unwrap();
            must(&format!("ip netns exec {} ip -batch {}", h.ns, batch.display()));
        }
    }

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts.iter().find(|h| h.name == name).unwrap()
    }

    /// Kills the host's sshd and every session it serves (agents included).
    pub fn kill_sshd(&self, name: &str) {
        let h = self.host(name);
        for pid in must(&format!("ip netns pids {}", h.ns)).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.starts_with("sshd") || comm.starts_with("mln") {
                let _ = sh(&format!("kill -9 {pid}"));
            }
        }
    }

    pub fn start_sshd(&self, name: &str) {
        let h = self.host(name);
        must(&format!("nsenter -t {} -m -u -n /usr/sbin/sshd -f {}/sshd_config", h.starter.id(), h.root.display()));
        self.wait_ready(h, false);
    }

    /// Runs a command inside a host's namespaces.
    pub fn run_in(&self, name: &str, cmd: &str) -> String {
        let h = self.host(name);
        must(&format!("nsenter -t {} -m -u -n sh -c '{}'", h.starter.id(), cmd.replace('\'', r"'\''")))
    }

    /// The host's libvirt domains.
    pub fn domains(&self, name: &str) -> Vec<String> {
        let sock = self.host(name).root.join("run/libvirt/libvirt-sock");
        let out = must(&format!("virsh -c 'qemu+unix:///system?socket={}' list --all --name", sock.display()));
        let mut v: Vec<String> = out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        v.sort();
        v
    }

    /// What the host's agent keeps (its /var/lib/mln).
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.host(name).root.join("mln")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            // Everything in the namespace: sshd, libvirtd, QEMU, the starter.
            for _ in 0..3 {
                let pids = sh(&format!("ip netns pids {}", h.ns)).unwrap_or_default();
                if pids.trim().is_empty() {
                    break;
                }
                let _ = sh(&format!("kill -9 {}", pids.split_whitespace().collect::<Vec<_>>().join(" ")));
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = h.starter.kill();
            let _ = h.starter.wait();
            let _ = sh(&format!("ip netns del {}", h.ns));
            let _ = sh(&format!("ip link del {}", h.veth));
            if self.tmpfs {
                let _ = sh(&format!("umount {}/mln", h.root.display()));
            }
        }
        let _ = sh(&format!("ip link del {}", self.bridge));
    }
}
