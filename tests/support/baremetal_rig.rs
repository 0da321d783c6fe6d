//! "Bare-metal" nodes without hardware (recipe: shared/recipes/test-hosts.md):
//! QEMU domains under software emulation on an isolated bridge with a
//! test-only subnet, each booting from the network first (QEMU's iPXE ROM)
//! then from its disk, its serial console in a file; a libvirtd of the
//! rig's own (private mount namespace, own socket) so virtualbmc can reach
//! it; one vbmc per node on 127.0.0.1. Dropping the rig removes all of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const VENV: &str = "/opt/mln-vbmc/venv/bin";

/// vbmcd, with `chassis bootdev` as a real BMC's firmware has it: the
/// device asked for first, the others after it. virtualbmc rewrites the
/// domain to boot from that device only (and libvirt starts QEMU with
/// `-boot strict=on`), so after `bootdev pxe` the firmware no longer
/// knows the disk: iPXE's `sanboot --drive 0x80` (a node's "boot the
/// local disk" profile) fails and `exit` finds no next device. A real
/// node's firmware keeps its disk; so do the rig's.
const VBMCD: &str = r#"
import sys
import xml.etree.ElementTree as ET
from virtualbmc import utils, vbmc
asked = vbmc.VirtualBMC.set_boot_device
def set_boot_device(self, bootdevice):
    r = asked(self, bootdevice)
    try:
        with utils.libvirt_open(**self._conn_args) as conn:
            domain = utils.get_libvirt_domain(conn, self.domain_name)
            tree = ET.fromstring(self.get_xml_desc(domain, dump_sensitive=True))
            for os_element in tree.findall('os'):
                have = [b.get('dev') for b in os_element.findall('boot')]
                for dev in ('network', 'hd'):
                    if dev not in have:
                        ET.SubElement(os_element, 'boot').set('dev', dev)
            conn.defineXML(ET.tostring(tree, encoding='unicode'))
    except Exception as e:
        print('rig: boot order after bootdev: %s' % e, file=sys.stderr)
    return r
vbmc.VirtualBMC.set_boot_device = set_boot_device
from virtualbmc.cmd.vbmcd import main
sys.exit(main(sys.argv[1:]))
"#;
pub const IPMI_USER: &str = "admin";
pub const IPMI_PASSWORD: &str = "mln-test-secret";

pub struct Node {
    pub name: String,
    pub domain: String,
    pub mac: String,
    pub address: String,
    pub ipmi_port: u16,
    pub console: PathBuf,
    pub disk: Option<PathBuf>,
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    /// The host's address on the bridge (the boot server's).
    pub server: String,
    /// `a.b.c.0/24`.
    pub subnet: String,
    pub uri: String,
    pub nodes: Vec<Node>,
    pub password_file: PathBuf,
    libvirt: Child,
    vbmcd: Option<Child>,
    vbmc_conf: PathBuf,
}

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{cmd}`: {}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)))
    }
}

fn must(cmd: &str) -> String {
    sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn slot() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = (std::process::id() * 5 + NEXT.fetch_add(1, Ordering::SeqCst)) % 200 + 20;
        if !Path::new(&format!("/sys/class/net/mlb{n}")).exists() {
            return n;
        }
    }
}

/// What a node gets: a disk of this many MiB, or none (diskless).
#[derive(Clone, Copy)]
pub struct NodeKind {
    pub disk_mib: Option<u64>,
    pub memory_mib: u64,
}

impl Rig {
    /// Whether this machine has what the rig needs (scripts/setup.sh).
    pub fn available() -> Result<(), String> {
        for tool in ["libvirtd", "virsh", "qemu-system-x86_64", "ipmitool", "dnsmasq"] {
            sh(&format!("command -v {tool}")).map_err(|_| format!("{tool} is missing: run scripts/setup.sh"))?;
        }
        if !Path::new(&format!("{VENV}/vbmcd")).exists() {
            return Err("virtualbmc is missing: run scripts/setup.sh".into());
        }
        Ok(())
    }

    pub fn new(kinds: &[NodeKind]) -> Rig {
        use std::os::unix::fs::PermissionsExt;
        let s = slot();
        let dir = tempfile::Builder::new().prefix("mln-bm-").tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path().to_path_buf();
        let bridge = format!("mlb{s}");
        let net = format!("10.79.{s}");
        must(&format!("ip link add {bridge} type bridge && ip link set {bridge} up && ip addr add {net}.1/24 dev {bridge}"));
        // libvirtd of our own: its state, config and socket under the rig.
        let r = d.join("libvirt");
        for x in ["run", "lib", "cache", "log", "etc"] {
            std::fs::create_dir_all(r.join(x)).unwrap();
        }
        must(&format!("cp -a /etc/libvirt/. {}/etc/ && rm -f {0}/etc/qemu/networks/autostart/* {0}/etc/qemu/networks/*.xml", r.display()));
        let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
        let conf = r.join("etc/libvirtd.conf");
        let c = std::fs::read_to_string(&conf).unwrap_or_default() + &format!("\nhost_uuid = \"{}\"\n", uuid.trim());
        std::fs::write(&conf, c).unwrap();
        // QEMU as root: the disks and consoles are the rig's files.
        let q = r.join("etc/qemu.conf");
        let c = std::fs::read_to_string(&q).unwrap_or_default() + "\nuser = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n";
        std::fs::write(&q, c).unwrap();
        std::fs::write(
            r.join("start.sh"),
            format!(
                "set -e\nR={r}\nmount --make-rprivate /\nmount --bind $R/run /run\nmkdir -p /run/libvirt\n\
                 mount --bind $R/lib /var/lib/libvirt\nmount --bind $R/cache /var/cache/libvirt\nmount --bind $R/log /var/log/libvirt\n\
                 mount --bind $R/etc /etc/libvirt\nvirtlogd -d\nlibvirtd -d\ntouch $R/ready\nexec sleep infinity\n",
                r = r.display()
            ),
        )
        .unwrap();
        let libvirt = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh"])
            .arg(r.join("start.sh"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(r.join("start.log")).unwrap())
            .spawn()
            .unwrap();
        let uri = format!("qemu+unix:///system?socket={}/run/libvirt/libvirt-sock", r.display());
        let password_file = d.join("ipmi-password");
        std::fs::write(&password_file, format!("{IPMI_PASSWORD}\n")).unwrap();
        let vbmc_conf = d.join("virtualbmc.conf");
        std::fs::create_dir_all(d.join("vbmc")).unwrap();
        std::fs::write(
            &vbmc_conf,
            format!(
                "[default]\nconfig_dir = {d}/vbmc\npid_file = {d}/vbmcd.pid\nserver_port = {}\nserver_response_timeout = 20000\n[log]\nlogfile = {d}/vbmc.log\n",
                21000 + s * 10 + 9,
                d = d.display()
            ),
        )
        .unwrap();
        let mut rig = Rig { dir, bridge, server: format!("{net}.1"), subnet: format!("{net}.0/24"), uri, nodes: Vec::new(), password_file, libvirt, vbmcd: None, vbmc_conf };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !r.join("run/libvirt/libvirt-sock").exists() {
            assert!(Instant::now() < deadline, "the rig's libvirtd did not start: {}", std::fs::read_to_string(r.join("start.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        for (i, k) in kinds.iter().enumerate() {
            let i = i + 1;
            let name = format!("n{i}");
            let domain = format!("mlb{s}-{name}");
            let mac = format!("52:54:00:b{}:{:02x}:{:02x}", s % 10, s, i);
            let disk = k.disk_mib.map(|m| {
                let p = d.join(format!("{name}.img"));
                must(&format!("truncate -s {m}M {}", p.display()));
                p
            });
            let console = d.join(format!("{name}.console"));
            let disk_xml = disk
                .as_ref()
                .map(|p| format!("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>", p.display()))
                .unwrap_or_default();
            let xml = format!(
                "<domain type='qemu'><name>{domain}</name><memory unit='MiB'>{mem}</memory><vcpu>1</vcpu>\
                 <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/><boot dev='hd'/></os>\
                 <features><acpi/></features><on_reboot>restart</on_reboot>\
                 <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{disk_xml}\
                 <interface type='bridge'><mac address='{mac}'/><source bridge='{b}'/><model type='virtio'/></interface>\
                 <serial type='file'><source path='{c}' append='on'/><target port='0'/></serial>\
                 <video><model type='none'/></video></devices></domain>",
                mem = k.memory_mib,
                b = rig.bridge,
                c = console.display()
            );
            let xf = d.join(format!("{name}.xml"));
            std::fs::write(&xf, xml).unwrap();
            rig.virsh(&format!("define {}", xf.display()));
            let address = format!("{net}.{}", 10 + i);
            rig.nodes.push(Node { name, domain, mac, address, ipmi_port: (21000 + s * 10 + i as u32) as u16, console, disk });
        }
        rig.start_vbmc();
        rig
    }

    pub fn virsh(&self, args: &str) -> String {
        must(&format!("virsh -q -c '{}' {args}", self.uri))
    }

    fn vbmc(&self, args: &str) -> Result<String, String> {
        sh(&format!("VIRTUALBMC_CONFIG={} {VENV}/vbmc {args}", self.vbmc_conf.display()))
    }

    fn start_vbmc(&mut self) {
        let d = self.dir.path();
        let child = Command::new(format!("{VENV}/python3"))
            .args(["-c", VBMCD, "--foreground"])
            .env("VIRTUALBMC_CONFIG", &self.vbmc_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("vbmcd.err")).unwrap())
            .spawn()
            .unwrap();
        self.vbmcd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.vbmc("list").is_err() {
            assert!(Instant::now() < deadline, "vbmcd did not answer: {}", std::fs::read_to_string(d.join("vbmcd.err")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(200));
        }
        for n in &self.nodes {
            self.vbmc(&format!(
                "add {} --port {} --address 127.0.0.1 --username {IPMI_USER} --password {IPMI_PASSWORD} --libvirt-uri '{}'",
                n.domain, n.ipmi_port, self.uri
            ))
            .unwrap();
            self.vbmc(&format!("start {}", n.domain)).unwrap();
        }
        // Each BMC answers once its UDP port is bound.
        for n in &self.nodes {
            let deadline = Instant::now() + Duration::from_secs(30);
            while sh(&format!("ss -Hlun 'sport = :{}' | grep -q .", n.ipmi_port)).is_err() {
                assert!(Instant::now() < deadline, "vbmc of {} did not listen", n.name);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// The node's NIC unplugged (link down, kept across power cycles): it
    /// boots, but nothing it sends leaves the card.
    pub fn unplug(&self, n: &Node) {
        self.virsh(&format!("domif-setlink {} {} down --config", n.domain, n.mac));
    }

    /// Pulls the plug (`virsh destroy`): the node is off at once.
    pub fn cut(&self, n: &Node) {
        self.virsh(&format!("destroy {}", n.domain));
    }

    /// The domain's state as virsh says it ("running", "shut off").
    pub fn state(&self, n: &Node) -> String {
        self.virsh(&format!("domstate {}", n.domain)).trim().to_string()
    }

    pub fn console(&self, n: &Node) -> String {
        std::fs::read(&n.console).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Waits until the node's console holds `what`; the console on failure.
    pub fn wait_console(&self, n: &Node, what: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.console(n);
            if c.contains(what) {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err(c);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let d = self.dir.path();
            for f in ["vbmc.log", "vbmcd.err", "dnsmasq.log"] {
                let t = std::fs::read_to_string(d.join(f)).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!("--- {f}\n{}", tail.join("\n"));
            }
            for n in &self.nodes {
                eprintln!("--- console of {}\n{}", n.name, self.console(n));
            }
        }
        for n in &self.nodes {
            let _ = self.vbmc(&format!("delete {}", n.domain));
            let _ = sh(&format!("virsh -q -c '{}' destroy {}", self.uri, n.domain));
            let _ = sh(&format!("virsh -q -c '{}' undefine {}", self.uri, n.domain));
        }
        if let Some(mut v) = self.vbmcd.take() {
            let _ = v.kill();
            let _ = v.wait();
        }
        // libvirtd and virtlogd run in the rig's mount namespace, children
        // of the starter: ended by the pids they wrote there.
        let r = self.dir.path().join("libvirt/run");
        for pid in ["libvirtd.pid", "virtlogd.pid"] {
            if let Ok(p) = std::fs::read_to_string(r.join(pid)) {
                let _ = sh(&format!("kill {}", p.trim()));
            }
        }
        let _ = self.libvirt.kill();
        let _ = self.libvirt.wait();
        let _ = sh(&format!("ip link del {}", self.bridge));
    }
}
