//! The deploy system: a kernel and an initramfs (deploysys/build.sh) that a
//! node network-boots to be installed, running dropbear. mln makes its SSH
//! host key and its own client key once, appends them to the initramfs as
//! a second archive (the built one holds no secret), and records the host
//! key in a known_hosts file of its own, so the deploy system is reached
//! with strict host-key checking like any service host.
//!
//! [`DeployNode`] holds the per-node operations of an installation, each
//! one SSH command: partition and format, write a tar or dd image
//! (decompressed on the node), write the plan's configuration into the
//! deployed root (the files filesystem templates get), run post-install
//! scripts, kexec or reboot.

use super::chain;
use super::netboot::DisklessFiles;
use crate::fabric::ssh::{self, quote};
use crate::fabric::{FabricError, Server};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },
    /// The node did not answer or its connection went away: may pass.
    #[error("{node}: {detail}")]
    Unreachable { node: String, detail: String },
    /// A command on the node ran and failed.
    #[error("{node}: {step} failed: {detail}")]
    Step { node: String, step: &'static str, detail: String },
    #[error("{0}")]
    Refused(String),
}

impl DeployError {
    pub fn retryable(&self) -> bool {
        matches!(self, DeployError::Unreachable { .. })
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeployError {
    let path = path.to_path_buf();
    move |source| DeployError::Io { what, path, source }
}

fn tool(cmd: &mut Command, name: &str) -> Result<Vec<u8>, DeployError> {
    let out = cmd.output().map_err(|e| DeployError::Tool { tool: name.into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(DeployError::Tool { tool: name.into(), detail: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(out.stdout)
}

/// How an image file is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// The node's command that decompresses stdin to stdout.
    pub fn filter(self) -> &'static str {
        match self {
            Compression::None => "cat",
            Compression::Gzip => "gzip -dc",
            Compression::Xz => "xz -dc",
            Compression::Zstd => "zstd -dc",
        }
    }
}

/// The built deploy system with mln's keys, in its directory of the state.
pub struct DeploySystem {
    pub dir: PathBuf,
}

impl DeploySystem {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    /// The initramfs with the keys appended.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd-keyed.gz")
    }
    /// mln's private key for the deploy system (OpenSSH ed25519).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    fn host_key(&self) -> PathBuf {
        self.dir.join("dropbear_ed25519_host_key")
    }

    /// Builds what is missing: the system (with `build`, deploysys/build.sh),
    /// the keys, the keyed initramfs. Run again, it keeps the keys.
    pub fn prepare(dir: &Path, build: &Path) -> Result<DeploySystem, DeployError> {
        std::fs::create_dir_all(dir).map_err(io("make", dir))?;
        let d = DeploySystem { dir: dir.to_path_buf() };
        if !dir.join("initrd.gz").exists() || !d.kernel().exists() {
            let mut cmd = Command::new("bash");
            cmd.arg(build).arg(dir);
            if let Some(hop) = hop_binary() {
                cmd.env("MLN_HOP", hop);
            }
            tool(&mut cmd, "deploysys/build.sh")?;
        }
        if !d.host_key().exists() {
            tool(Command::new("dropbearkey").args(["-t", "ed25519", "-f"]).arg(d.host_key()), "dropbearkey")?;
        }
        if !d.client_key().exists() {
            tool(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "mln-deploy", "-f"]).arg(d.client_key()), "ssh-keygen")?;
        }
        d.key_archive()?;
        Ok(d)
    }

    /// The host key's public half (`ssh-ed25519 AAAA...`).
    pub fn host_public_key(&self) -> Result<String, DeployError> {
        let out = tool(Command::new("dropbearkey").arg("-y").arg("-f").arg(self.host_key()), "dropbearkey")?;
        let text = String::from_utf8_lossy(&out);
        let line = text.lines().find(|l| l.starts_with("ssh-ed25519 ")).ok_or_else(|| DeployError::Tool { tool: "dropbearkey".into(), detail: "no public key in its output".into() })?;
        Ok(line.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
    }

    /// The keyed initramfs: the built one, then an archive with the host
    /// key and mln's authorized key (the kernel reads concatenated archives).
    fn key_archive(&self) -> Result<(), DeployError> {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().map_err(io("make a temporary directory in", &std::env::temp_dir()))?;
        let r = t.path();
        for (d, m) in [("etc", 0o755), ("etc/dropbear", 0o700), ("root", 0o700), ("root/.ssh", 0o700)] {
            std::fs::create_dir_all(r.join(d)).map_err(io("make", &r.join(d)))?;
            std::fs::set_permissions(r.join(d), std::fs::Permissions::from_mode(m)).map_err(io("set the mode of", &r.join(d)))?;
        }
        let hk = r.join("etc/dropbear/dropbear_ed25519_host_key");
        std::fs::copy(self.host_key(), &hk).map_err(io("copy", &self.host_key()))?;
        let pubkey = self.client_key().with_extension("pub");
        let ak = r.join("root/.ssh/authorized_keys");
        std::fs::copy(&pubkey, &ak).map_err(io("copy", &pubkey))?;
        for f in [&hk, &ak] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).map_err(io("set the mode of", f))?;
        }
        let cpio = tool(
            Command::new("sh").arg("-c").arg("find etc root | cpio -o -H newc --quiet | gzip -6").current_dir(r),
            "cpio",
        )?;
        let mut all = std::fs::read(self.dir.join("initrd.gz")).map_err(io("read", &self.dir.join("initrd.gz")))?;
        all.extend(cpio);
        let tmp = self.initrd().with_extension("tmp");
        std::fs::write(&tmp, all).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, self.initrd()).map_err(io("replace", &self.initrd()))
    }

    /// What network boot serves for the `Deploy` profile.
    pub fn boot_files(&self) -> Result<DisklessFiles, DeployError> {
        let params = std::fs::read_to_string(self.dir.join("cmdline")).map_err(io("read", &self.dir.join("cmdline")))?;
        Ok(DisklessFiles { kernel: self.kernel(), initrd: self.initrd(), params: params.trim().to_string() })
    }

    /// How to reach a node running the deploy system: root, mln's key, its
    /// host key recorded for `address` (only ours is ever accepted).
    pub fn server(&self, node: &str, address: &str) -> Result<Server, DeployError> {
        let ip: std::net::IpAddr = address.parse().map_err(|_| DeployError::Refused(format!("{node}: {address:?} is not an address")))?;
        let line = format!("{ip} {}\n", self.host_public_key()?);
        let kh = self.known_hosts();
        let text = std::fs::read_to_string(&kh).unwrap_or_default();
        if !text.lines().any(|l| format!("{l}\n") == line) {
            // Another key recorded for the address (an older deploy system) goes.
            let kept: String = text.lines().filter(|l| l.split_whitespace().next() != Some(&ip.to_string())).map(|l| format!("{l}\n")).collect();
            std::fs::write(&kh, kept + &line).map_err(io("write", &kh))?;
        }
        let mut s = crate::fabric::Fabric::default().server(node);
        s.address = ip.to_string();
        s.port = 22;
        s.user = "root".into();
        s.identity = vec![self.client_key()];
        s.known_hosts = kh;
        s.accept_new_host_keys = false;
        s.connect_timeout = 10;
        Ok(s)
    }
}

/// The image chain's hop binary installed beside this one (`mln-hop`, as
/// cargo builds and installs it; one directory up from a test binary in
/// cargo's `deps/`), for the deploy system's initramfs. None: the build
/// script looks for one itself, else the chain runs its busybox script.
pub fn hop_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let dirs = if dir.file_name().is_some_and(|n| n == "deps") { vec![dir, dir.parent()?] } else { vec![dir] };
    dirs.into_iter().map(|d| d.join("mln-hop")).find(|p| p.is_file())
}

/// Where mln puts its `mln-hop` in a running deployed system (a
/// `nomini` install): scratch space (the test guest's /tmp is a tmpfs),
/// first on the chain script's PATH. The script runs it only if it runs
/// there (`mln-hop --check`: the system's libc may be older than the
/// one it was built against), else its busybox pipeline.
pub const HOP_DIR: &str = "/tmp/mln-hop";

/// The hop binary as it is pushed to a running system: stripped (a debug
/// build's is over 100 MB, 2 MB stripped), into `cache` when that is
/// older than the binary; the binary itself where `strip` fails.
pub fn hop_for_push(cache: &Path) -> Option<Vec<u8>> {
    let bin = hop_binary()?;
    let newer = |a: &Path, b: &Path| match (std::fs::metadata(a).and_then(|m| m.modified()), std::fs::metadata(b).and_then(|m| m.modified())) {
        (Ok(a), Ok(b)) => a >= b,
        _ => false,
    };
    if !newer(cache, &bin) {
        let tmp = cache.with_extension("new");
        let stripped = std::process::Command::new("strip").arg("-o").arg(&tmp).arg(&bin).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success());
        if !(stripped && std::fs::rename(&tmp, cache).is_ok()) {
            let _ = std::fs::remove_file(&tmp);
            return std::fs::read(&bin).ok();
        }
    }
    std::fs::read(cache).ok()
}

/// syslinux's MBR boot code in the deploy system (deploysys/build.sh).
pub const MBR: &str = "/usr/lib/EXTLINUX/mbr.bin";

/// syslinux's boot code for a GPT disk's protective MBR: it boots the
/// partition whose `LegacyBIOSBootable` attribute is set.
pub const GPTMBR: &str = "/usr/lib/EXTLINUX/gptmbr.bin";

/// The partition table the install step makes on a whole disk (the
/// fabric file's `partition_table`, per cluster): `dos` (the default) or
/// `gpt` (disks over 2 TiB, firmware that wants it). Booted by legacy
/// BIOS either way (syslinux's MBR code, or its GPT one and the
/// partition's `LegacyBIOSBootable` attribute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTable {
    #[default]
    Dos,
    Gpt,
}

impl PartitionTable {
    /// sfdisk's script: one Linux partition over the whole disk (on GPT
    /// with the attribute the BIOS boot code looks for).
    pub fn sfdisk(self) -> (&'static str, &'static str) {
        match self {
            PartitionTable::Dos => ("dos", "type=83"),
            PartitionTable::Gpt => ("gpt", "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, attrs=\"LegacyBIOSBootable\""),
        }
    }
}

/// Makes partition `n` of `disk` the one the disk boots, for the table the
/// disk holds (read from it: a named partition's table is the site's):
/// DOS: the active flag and syslinux's MBR code; GPT: the
/// `LegacyBIOSBootable` attribute (the others kept) and syslinux's GPT
/// MBR code. The boot code goes in the first 440 bytes; the table after
/// them is kept. `mbr` and `gptmbr` are the boot code files.
pub fn mark_bootable(disk: &str, n: u32, mbr: &str, gptmbr: &str) -> String {
    let d = quote(disk);
    let sf = "sfdisk -q --no-reread --no-tell-kernel";
    format!(
        "label=$(sfdisk --dump {d} | sed -n 's/^label: //p'); \
         if [ \"$label\" = gpt ]; then \
           a=$(sfdisk --part-attrs {d} {n}); \
           case \" $a \" in *LegacyBIOSBootable*) ;; *) {sf} --part-attrs {d} {n} \"${{a:+$a,}}LegacyBIOSBootable\" ;; esac; \
           code={g}; \
         else {sf} --activate {d} {n} >/dev/null; code={m}; fi; \
         dd if=\"$code\" of={d} bs=440 count=1 conv=notrunc 2>/dev/null",
        g = quote(gptmbr),
        m = quote(mbr)
    )
}

/// Where the deployed root is mounted on the node.
pub const ROOT: &str = "/mnt";

/// Where a kernel sent for a kexec is kept on the node (`-vmlinuz`,
/// `-initrd`).
const KEXEC_DIR: &str = "/tmp/mln-kexec";

/// The partition device of `disk` (`/dev/sda` 1 → `/dev/sda1`,
/// `/dev/nvme0n1` 1 → `/dev/nvme0n1p1`).
pub fn partition_device(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

fn check_device(d: &str) -> Result<(), DeployError> {
    let ok = d.starts_with("/dev/") && d.len() > 5 && d[5..].chars().all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c)) && !d.contains("..");
    if ok {
        Ok(())
    } else {
        Err(DeployError::Refused(format!("{d:?} is not a disk device (/dev/...)")))
    }
}

/// A path inside the deployed root: absolute, no `..`, one line.
fn check_path(p: &str) -> Result<(), DeployError> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p.chars().any(|c| c.is_control()) || p.len() > 4096 {
        return Err(DeployError::Refused(format!("{:?} cannot be written into a deployed system", crate::term::escape(p))));
    }
    Ok(())
}

/// One node running the deploy system.
pub struct DeployNode {
    pub name: String,
    pub server: Server,
    pub rt: tokio::runtime::Handle,
}

impl DeployNode {
    fn typed(&self, e: FabricError) -> DeployError {
        match e {
            FabricError::Unreachable(d) => DeployError::Unreachable { node: self.name.clone(), detail: d },
            other => DeployError::Refused(format!("{}: {other}", self.name)),
        }
    }

    /// Runs `cmd` (a shell line on the node) with `input`; its stdout.
    pub fn run(&self, step: &'static str, cmd: &str, input: &[u8]) -> Result<String, DeployError> {
        self.run_bytes(step, cmd, input).map(|o| String::from_utf8_lossy(&o).into_owned())
    }

    /// [`run`](Self::run), its stdout as bytes.
    fn run_bytes(&self, step: &'static str, cmd: &str, input: &[u8]) -> Result<Vec<u8>, DeployError> {
        self.rt.block_on(async {
            let c = ssh::connect(&self.server).await.map_err(|e| self.typed(e))?;
            let out = c.exec(cmd, input).await.map_err(|e| self.typed(e));
            c.close().await;
            let out = out?;
            match out.status {
                Some(0) => Ok(out.stdout),
                s => Err(DeployError::Step {
                    node: self.name.clone(),
                    step,
                    detail: format!("exit {s:?}: {}", crate::term::escape(String::from_utf8_lossy(&out.stderr).trim())),
                }),
            }
        })
    }

    /// Waits until the deploy system answers SSH (with our host key).
    /// Its port is watched first with short probes, and the SSH login
    /// tried once it accepts: a login attempt while the node is still
    /// booting costs a connect timeout's SYN retries (1, 3, 7 s) before it
    /// sees the port open, and the first try after it opens waited up to
    /// a whole poll interval.
    pub fn wait(&self, limit: Duration) -> Result<(), DeployError> {
        let deadline = Instant::now() + limit;
        loop {
            if !accepts_tcp(&self.server.address, self.server.port) {
                if Instant::now() >= deadline {
                    return Err(DeployError::Unreachable { node: self.name.clone(), detail: format!("port {} does not accept connections", self.server.port) });
                }
                std::thread::sleep(PROBE_EVERY);
                continue;
            }
            let r = self.rt.block_on(async { ssh::connect(&self.server).await });
            match r {
                Ok(c) => {
                    self.rt.block_on(c.close());
                    return Ok(());
                }
                Err(FabricError::Unreachable(d)) if Instant::now() < deadline => {
                    tracing::debug!("{}: not yet: {d}", self.name);
                    std::thread::sleep(PROBE_EVERY * 2);
                }
                Err(e) => return Err(self.typed(e)),
            }
        }
    }

    /// One partition table (`kind`) with one Linux partition over the
    /// whole disk (`partition` None), or only the given partition;
    /// formatted ext4.
    /// The device written to.
    pub fn partition_and_format(&self, disk: &str, partition: Option<u32>, kind: PartitionTable) -> Result<String, DeployError> {
        check_device(disk)?;
        let (label, script) = kind.sfdisk();
        let (table, dev) = match partition {
            None => (format!("echo {} | sfdisk -q --wipe always --label {label} {d} >/dev/null && ", quote(script), d = quote(disk)), partition_device(disk, 1)),
            Some(n) => (String::new(), partition_device(disk, n)),
        };
        // The kernel's view of the new table can lag a moment. No `64bit`
        // feature: extlinux (the disk's bootloader) cannot read such an ext4.
        let cmd = format!(
            "set -e; umount {ROOT} 2>/dev/null || true; {table}for i in $(seq 50); do [ -b {p} ] && break; sleep 0.1; done; mkfs.ext4 -q -F -O ^64bit {p}",
            p = quote(&dev)
        );
        self.run("partition and format", &cmd, b"")?;
        Ok(dev)
    }

    /// Streams `image` to the node, decompressed there, then extracted
    /// into `device` (mounted at ROOT) or written raw to it (`dd`).
    pub fn write_image(&self, image: &Path, compression: Compression, tar: bool, device: &str) -> Result<(), DeployError> {
        check_device(device)?;
        let filter = compression.filter();
        let dev = quote(device);
        let cmd = if tar {
            format!("set -e; mkdir -p {ROOT}; mountpoint -q {ROOT} || mount {dev} {ROOT}; {filter} | tar -x -p -C {ROOT}")
        } else {
            format!("set -e; umount {ROOT} 2>/dev/null || true; {filter} | dd of={dev} bs=1M 2>/dev/null; sync")
        };
        let mut f = std::fs::File::open(image).map_err(io("open", image))?;
        self.rt.block_on(async {
            let c = ssh::connect(&self.server).await.map_err(|e| self.typed(e))?;
            let mut p = c.open(&format!("sh -c {}", quote(&cmd))).await.map_err(|e| self.typed(e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(io("read", image))?;
                if n == 0 {
                    break;
                }
                p.send(&buf[..n]).await.map_err(|e| self.typed(e))?;
            }
            p.eof().await.map_err(|e| self.typed(e))?;
            let (mut status, mut err) = (None, Vec::new());
            while let Some(ev) = p.next().await {
                match ev {
                    ssh::Event::Exit(s) => status = Some(s),
                    ssh::Event::Stderr(d) => err.extend(d),
                    ssh::Event::Stdout(_) => {}
                }
            }
            c.close().await;
            match status {
                Some(0) => Ok(()),
                s => Err(DeployError::Step { node: self.name.clone(), step: "write the image", detail: format!("exit {s:?}: {}", crate::term::escape(String::from_utf8_lossy(&err).trim())) }),
            }
        })
    }

    /// Makes the disk boot the deployed root by itself: extlinux in the
    /// root's `/boot/extlinux` (its `extlinux.conf` written before), the
    /// partition marked the boot one, and syslinux's boot code in the
    /// disk's first 440 bytes, for a DOS or a GPT table
    /// ([`mark_bootable`]).
    pub fn install_bootloader(&self, disk: &str, partition: u32) -> Result<(), DeployError> {
        check_device(disk)?;
        let cmd = format!(
            "set -e; grep -q ' {ROOT} ' /proc/mounts; extlinux --install {ROOT}/boot/extlinux >/dev/null; {}; sync",
            mark_bootable(disk, partition, MBR, GPTMBR)
        );
        self.run("install the bootloader", &cmd, b"").map(drop)
    }

    /// Mounts the deployed root at ROOT (after a dd image).
    pub fn mount_root(&self, device: &str) -> Result<(), DeployError> {
        check_device(device)?;
        self.run("mount the deployed root", &format!("set -e; mkdir -p {ROOT}; mountpoint -q {ROOT} || mount {} {ROOT}", quote(device)), b"").map(drop)
    }

    /// Writes files (path in the deployed root, content, mode) in one SSH
    /// session: a tar archive, extracted into the root with each file's
    /// parents made first. One session instead of one per file: on an
    /// emulated node each session's key exchange and login are its CPU.
    pub fn write_files(&self, files: &[(String, Vec<u8>, u32)]) -> Result<(), DeployError> {
        if files.is_empty() {
            return Ok(());
        }
        let archive = files_archive(files)?;
        let mut dirs: Vec<String> = files.iter().filter_map(|(p, _, _)| p.rsplit_once('/').map(|(d, _)| format!("{ROOT}{d}"))).collect();
        dirs.sort();
        dirs.dedup();
        let dirs: Vec<String> = dirs.iter().map(|d| quote(d)).collect();
        // `-m`: the files get the node's time, not a time of this machine
        // that its clock may see in the future.
        self.run("write the configuration", &format!("set -e; mkdir -p {}; tar -x -m -p -C {ROOT}", dirs.join(" ")), &archive).map(drop)
    }

    /// `mln-hop` into the running system's [`HOP_DIR`] (replaced whole).
    pub fn push_hop(&self, binary: &[u8]) -> Result<(), DeployError> {
        let f = format!("{HOP_DIR}/mln-hop");
        self.run("push mln-hop", &format!("set -e; mkdir -p {HOP_DIR}; cat > {f}.new; chmod 755 {f}.new; mv {f}.new {f}"), binary).map(drop)
    }

    /// Writes one file into the deployed root (parents made).
    pub fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<(), DeployError> {
        self.write_files(&[(path.to_string(), content.to_vec(), mode)])
    }

    /// The plan's configuration of `host` for the deployed root: the files
    /// a filesystem template gets (hostname, hosts, addresses, accounts,
    /// keys, files, startup), the accounts merged with the image's own
    /// (read from the node in one session).
    pub fn config_files(&self, plan: &crate::plan::Plan, host: &crate::plan::Host, contents: &[String]) -> Result<Vec<(String, Vec<u8>, u32)>, DeployError> {
        // No local image: the base accounts are the node's, merged below.
        let none = Path::new("/nonexistent/mln-no-image");
        let files = crate::guest::fstemplate::files(plan, host, none, contents).map_err(|e| DeployError::Refused(e.to_string()))?;
        let theirs = self.read_files(&ACCOUNTS)?;
        Ok(files
            .into_iter()
            .map(|(path, content, mode)| {
                let content = match ACCOUNTS.iter().position(|a| *a == path) {
                    Some(i) => merge_accounts(&String::from_utf8_lossy(&theirs[i]), &content),
                    None => content,
                };
                (path, content.into_bytes(), mode)
            })
            .collect())
    }

    /// [`config_files`](Self::config_files), written.
    pub fn write_config(&self, plan: &crate::plan::Plan, host: &crate::plan::Host, contents: &[String]) -> Result<(), DeployError> {
        self.write_files(&self.config_files(plan, host, contents)?)
    }

    /// Files of the deployed root, in one session (empty where missing).
    fn read_files(&self, paths: &[&str]) -> Result<Vec<Vec<u8>>, DeployError> {
        for p in paths {
            check_path(p)?;
        }
        // Each file as its size on a line, then its bytes.
        let cmd: String = paths.iter().map(|p| format!("f={}; if [ -f \"$f\" ]; then wc -c < \"$f\"; cat \"$f\"; else echo 0; fi; ", quote(&format!("{ROOT}{p}")))).collect();
        let out = self.run_bytes("read the deployed accounts", &cmd, b"")?;
        split_sized(&out, paths.len()).ok_or_else(|| DeployError::Step { node: self.name.clone(), step: "read the deployed accounts", detail: "the node's answer was cut short".into() })
    }

    /// A post-install script, run in the deploy system with the deployed
    /// root at `$MLN_ROOT` (Kadeploy's admin and user post-install steps).
    pub fn run_script(&self, script: &str) -> Result<String, DeployError> {
        self.run("post-install script", &format!("MLN_ROOT={ROOT} sh -s"), script.as_bytes())
    }

    /// Boots a kernel of the deployed root without the firmware (`kexec`):
    /// paths inside the deployed root.
    pub fn kexec(&self, kernel: &str, initrd: Option<&str>, cmdline: &str) -> Result<(), DeployError> {
        check_path(kernel)?;
        if let Some(i) = initrd {
            check_path(i)?;
        }
        if cmdline.chars().any(|c| c.is_control()) {
            return Err(DeployError::Refused("kernel parameters hold a control character".into()));
        }
        let initrd = initrd.map(|i| format!(" --initrd={}", quote(&format!("{ROOT}{i}")))).unwrap_or_default();
        let load = format!("set -e; kexec -l {}{initrd} --append={}", quote(&format!("{ROOT}{kernel}")), quote(cmdline));
        self.run("load the kernel (kexec)", &load, b"")?;
        // In the background, so the command returns before the system goes.
        self.run("kexec", &format!("(sleep 1; sync; umount {ROOT}; kexec -e) >/dev/null 2>&1 </dev/null &"), b"").map(drop)
    }

    /// Boots a kernel sent from here without the firmware (`kexec`): the
    /// kernel and initrd go to the node's `/tmp` (a tmpfs in the deploy
    /// system and in the test environment's SSH root; a running system's
    /// disk may be read-only or the very disk about to be rewritten), then
    /// `kexec -l` and, in the background, `kexec -e`. `say` goes to the
    /// node's console first, so its log shows the firmware was not asked.
    pub fn kexec_sent(&self, kernel: &[u8], initrd: &[u8], cmdline: &str, say: &str) -> Result<(), DeployError> {
        if cmdline.chars().any(|c| c.is_control()) || say.chars().any(|c| c.is_control()) {
            return Err(DeployError::Refused("kernel parameters hold a control character".into()));
        }
        // Said plainly when the running system cannot kexec at all.
        self.run("find kexec", "PATH=$PATH:/usr/sbin:/sbin; command -v kexec >/dev/null || { echo 'this system has no kexec (kexec-tools)' >&2; exit 127; }", b"")?;
        self.run("send the kernel (kexec)", &format!("set -e; mkdir -p /tmp; cat > {KEXEC_DIR}-vmlinuz"), kernel)?;
        self.run("send the initrd (kexec)", &format!("set -e; cat > {KEXEC_DIR}-initrd"), initrd)?;
        let load = format!("set -e; PATH=$PATH:/usr/sbin:/sbin; kexec -l {KEXEC_DIR}-vmlinuz --initrd={KEXEC_DIR}-initrd --append={}", quote(cmdline));
        self.run("load the kernel (kexec)", &load, b"")?;
        self.run("kexec", &format!("PATH=$PATH:/usr/sbin:/sbin; (sleep 1; echo {} >/dev/console; sync; umount {ROOT} 2>/dev/null; kexec -e) >/dev/null 2>&1 </dev/null &", quote(say)), b"").map(drop)
    }

    /// A firmware reboot (the "classical" boot: the next boot profile
    /// decides what it boots).
    pub fn reboot(&self) -> Result<(), DeployError> {
        self.run("reboot", &format!("(sleep 1; sync; umount {ROOT}; reboot -f) >/dev/null 2>&1 </dev/null &"), b"").map(drop)
    }
}

/// A node of the install step's chain (`baremetal::chain`): its part is
/// the chain's script (`mln-hop` where the system has it, as the deploy
/// system does; its busybox pipeline otherwise, e.g. a `nomini` node's
/// running system), run over one SSH session, listening on
/// [`chain::PORT`] (plus the pass) of its address.
pub struct ChainMember<'a> {
    pub node: &'a DeployNode,
    pub compression: Compression,
    pub tar: bool,
    pub device: String,
}

impl ChainMember<'_> {
    fn port(pass: u16) -> u16 {
        chain::PORT + pass
    }

    fn script(&self, pass: u16) -> Result<String, DeployError> {
        check_device(&self.device)?;
        let dev = quote(&self.device);
        let (prep, sink) = if self.tar {
            (format!("mkdir -p {ROOT} && {{ mountpoint -q {ROOT} || mount {dev} {ROOT}; }}"), format!("tar -x -p -C {ROOT}"))
        } else {
            (format!("{{ umount {ROOT} 2>/dev/null; true; }}"), format!("dd of={dev} bs=1M 2>/dev/null && sync"))
        };
        // The node's console says what it got and where it sent it on.
        // The hop mln pushed to a running system (`nomini`) is found first.
        let prep = format!("PATH={HOP_DIR}:$PATH; {prep}");
        Ok(chain::script(Self::port(pass), &prep, self.compression.filter(), &sink, Some("/dev/console"), &format!("host={}", self.node.name)))
    }
}

/// A receiver on a node: its SSH session, and what it said so far.
struct SshReceiver {
    rt: tokio::runtime::Handle,
    conn: Option<ssh::Conn>,
    proc: ssh::Proc,
    out: String,
    err: String,
    status: Option<u32>,
}

impl chain::Receiver for SshReceiver {
    fn forward_to(&mut self, next: Option<&chain::Hop>) -> Result<(), String> {
        let line = next.map(|h| format!("{} {}\n", h.addr, h.port)).unwrap_or_else(|| "- -\n".into());
        let p = &mut self.proc;
        self.rt.block_on(async {
            p.send(line.as_bytes()).await?;
            p.eof().await
        })
        .map_err(|e| e.to_string())
    }

    fn wait(&mut self, deadline: Instant) -> Option<Result<chain::Report, String>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (p, out, err, status) = (&mut self.proc, &mut self.out, &mut self.err, &mut self.status);
        let ended = self.rt.block_on(async {
            tokio::time::timeout(left, async {
                while let Some(ev) = p.next().await {
                    match ev {
                        ssh::Event::Stdout(d) => out.push_str(&String::from_utf8_lossy(&d)),
                        ssh::Event::Stderr(d) => err.push_str(&String::from_utf8_lossy(&d)),
                        ssh::Event::Exit(s) => *status = Some(s),
                    }
                }
            })
            .await
            .is_ok()
        });
        if !ended {
            return None;
        }
        if let Some(c) = self.conn.take() {
            self.rt.block_on(c.close());
        }
        Some(chain::Report::parse(&self.out).ok_or_else(|| format!("its receiver ended (exit {:?}) without a result: {}", self.status, crate::term::escape(self.err.trim()))))
    }
}

impl chain::ChainNode for ChainMember<'_> {
    fn name(&self) -> &str {
        &self.node.name
    }

    fn hop(&self, pass: u16) -> chain::Hop {
        chain::Hop { addr: self.node.server.address.clone(), port: Self::port(pass) }
    }

    fn start(&self, pass: u16) -> Result<Box<dyn chain::Receiver>, String> {
        let cmd = self.script(pass).map_err(|e| e.to_string())?;
        let n = self.node;
        n.rt.block_on(async {
            let c = ssh::connect(&n.server).await.map_err(|e| n.typed(e).to_string())?;
            let mut p = c.open(&format!("sh -c {}", quote(&cmd))).await.map_err(|e| n.typed(e).to_string())?;
            let (mut out, mut err) = (String::new(), String::new());
            // Under software emulation a receiver takes seconds to listen.
            let listening = tokio::time::timeout(Duration::from_secs(60), async {
                while let Some(ev) = p.next().await {
                    match ev {
                        ssh::Event::Stdout(d) => {
                            out.push_str(&String::from_utf8_lossy(&d));
                            if out.contains("MLN-CHAIN listening\n") {
                                return Ok(());
                            }
                        }
                        ssh::Event::Stderr(d) => err.push_str(&String::from_utf8_lossy(&d)),
                        ssh::Event::Exit(s) => return Err(format!("its receiver exited ({s}) before listening: {}", crate::term::escape(err.trim()))),
                    }
                }
                Err("its session closed before the receiver listened".to_string())
            })
            .await
            .map_err(|_| "its receiver did not listen within 60 s".to_string())?;
            listening?;
            let rest = out.split_once("MLN-CHAIN listening\n").map(|(_, r)| r.to_string()).unwrap_or_default();
            Ok(Box::new(SshReceiver { rt: n.rt.clone(), conn: Some(c), proc: p, out: rest, err, status: None }) as Box<dyn chain::Receiver>)
        })
    }

    fn stop(&self, pass: u16) {
        if let Err(e) = self.node.run("stop the chain's receiver", &chain::stop_script(Self::port(pass)), b"") {
            tracing::info!("{}: {e}", self.node.name);
        }
    }
}

/// How often a booting node's port is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Whether `address:port` accepts a TCP connection within a short time
/// (a booting node's silence must not hold the probe for a SYN retry).
pub fn accepts_tcp(address: &str, port: u16) -> bool {
    let Ok(ip) = address.parse::<std::net::IpAddr>() else { return false };
    std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(500)).is_ok()
}

/// The account files a plan's configuration is merged into.
const ACCOUNTS: [&str; 3] = ["/etc/passwd", "/etc/shadow", "/etc/group"];

/// A tar archive of `files` (paths inside the deployed root), owned by
/// root with their modes.
fn files_archive(files: &[(String, Vec<u8>, u32)]) -> Result<Vec<u8>, DeployError> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        check_path(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(content.len() as u64);
        h.set_mode(mode & 0o7777);
        h.set_uid(0);
        h.set_gid(0);
        let named = h.set_username("root").and_then(|_| h.set_groupname("root"));
        named.map_err(|e| DeployError::Refused(format!("cannot make the archive: {e}")))?;
        b.append_data(&mut h, path.trim_start_matches('/'), content.as_slice()).map_err(|e| DeployError::Refused(format!("{} cannot go into the archive: {e}", crate::term::escape(path))))?;
    }
    b.into_inner().map_err(|e| DeployError::Refused(format!("cannot make the archive: {e}")))
}

/// `n` files from their sizes on a line each followed by their bytes;
/// None when the text is cut short or malformed.
fn split_sized(mut out: &[u8], n: usize) -> Option<Vec<Vec<u8>>> {
    let mut files = Vec::with_capacity(n);
    for _ in 0..n {
        let nl = out.iter().position(|b| *b == b'\n')?;
        let size: usize = std::str::from_utf8(&out[..nl]).ok()?.trim().parse().ok()?;
        let rest = &out[nl + 1..];
        files.push(rest.get(..size)?.to_vec());
        out = &rest[size..];
    }
    out.is_empty().then_some(files)
}

/// The node's account lines, less those the plan sets, then the plan's.
pub fn merge_accounts(theirs: &str, ours: &str) -> String {
    let names: std::collections::BTreeSet<&str> = ours.lines().filter_map(|l| l.split(':').next()).collect();
    let mut out: String = theirs.lines().filter(|l| !l.is_empty() && !names.contains(l.split(':').next().unwrap_or(""))).map(|l| format!("{l}\n")).collect();
    out += ours;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_paths_and_accounts() {
        assert_eq!(partition_device("/dev/sda", 1), "/dev/sda1");
        assert_eq!(partition_device("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
        assert!(check_device("/dev/vda").is_ok());
        for d in ["/dev/", "/etc/passwd", "/dev/sda; reboot", "/dev/../etc", "/dev/sd a"] {
            assert!(check_device(d).is_err(), "{d}");
        }
        assert!(check_path("/etc/hostname").is_ok());
        for p in ["etc/x", "/etc/../../x", "/a\nb"] {
            assert!(check_path(p).is_err(), "{p:?}");
        }
        let m = merge_accounts("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", "alice:x:1001:1001::/home/alice:/bin/sh\n");
        assert_eq!(m, "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n");
    }

    /// The configuration's archive extracts with the system's tar into
    /// the paths and modes asked, parents made as `write_files` makes them.
    #[test]
    fn configuration_files_go_in_one_archive() {
        let files = vec![
            ("/etc/hostname".to_string(), b"bm1\n".to_vec(), 0o644),
            ("/root/.ssh/authorized_keys".to_string(), b"ssh-ed25519 AAAA k\n".to_vec(), 0o600),
            ("/etc/mln/startup.sh".to_string(), b"#!/bin/sh\n".to_vec(), 0o755),
        ];
        let archive = files_archive(&files).unwrap();
        let d = tempfile::tempdir().unwrap();
        for p in ["etc", "root/.ssh", "etc/mln"] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        let mut tar = Command::new("tar").args(["-x", "-m", "-p", "-C"]).arg(d.path()).stdin(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut tar.stdin.take().unwrap(), &archive).unwrap();
        assert!(tar.wait().unwrap().success());
        use std::os::unix::fs::PermissionsExt;
        for (path, content, mode) in &files {
            let p = d.path().join(path.trim_start_matches('/'));
            assert_eq!(&std::fs::read(&p).unwrap(), content, "{path}");
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, *mode, "{path}");
        }
        assert!(files_archive(&[("/etc/../../x".to_string(), vec![], 0o644)]).is_err());
    }

    #[test]
    fn files_read_in_one_answer_are_split_by_their_sizes() {
        let out = b"4\nab\nc0\n3\n:x\n";
        assert_eq!(split_sized(out, 3).unwrap(), vec![b"ab\nc".to_vec(), Vec::new(), b":x\n".to_vec()]);
        assert!(split_sized(b"9\nshort", 1).is_none());
        assert!(split_sized(b"1\nab", 1).is_none(), "bytes left over");
        assert!(split_sized(b"x\n", 1).is_none());
    }

    /// The table scripts and the boot marking run by the host's sfdisk on
    /// a disk image: a GPT disk gets the attribute and the GPT boot code,
    /// a DOS disk the active flag and the MBR code.
    #[test]
    fn gpt_and_dos_disks_are_made_bootable_for_their_table() {
        let have = |t: &str| Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().map(|o| o.status.success()).unwrap_or(false);
        if !have("sfdisk") {
            eprintln!("sfdisk missing: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        // Stand-ins for syslinux's boot code: which one was written shows.
        let (mbr, gptmbr) = (d.path().join("mbr.bin"), d.path().join("gptmbr.bin"));
        std::fs::write(&mbr, vec![0x11u8; 440]).unwrap();
        std::fs::write(&gptmbr, vec![0x22u8; 440]).unwrap();
        for table in [PartitionTable::Gpt, PartitionTable::Dos] {
            let img = d.path().join("disk.img");
            std::fs::write(&img, vec![0u8; 8 << 20]).unwrap();
            let disk = img.display().to_string();
            let (label, script) = table.sfdisk();
            let sh = |c: &str| {
                let o = Command::new("sh").arg("-c").arg(c).output().unwrap();
                assert!(o.status.success(), "{c}: {}", String::from_utf8_lossy(&o.stderr));
                String::from_utf8_lossy(&o.stdout).into_owned()
            };
            sh(&format!("echo {} | sfdisk -q --wipe always --label {label} {}", quote(script), quote(&disk)));
            sh(&mark_bootable(&disk, 1, &mbr.display().to_string(), &gptmbr.display().to_string()));
            let dump = sh(&format!("sfdisk --dump {}", quote(&disk)));
            let head = std::fs::read(&img).unwrap();
            match table {
                PartitionTable::Gpt => {
                    assert!(dump.contains("label: gpt") && dump.contains("LegacyBIOSBootable"), "{dump}");
                    assert!(head[..440].iter().all(|&b| b == 0x22), "the GPT boot code");
                    // Marked again: the attribute once, not twice.
                    sh(&mark_bootable(&disk, 1, "/dev/null", &gptmbr.display().to_string()));
                    assert_eq!(sh(&format!("sfdisk --part-attrs {} 1", quote(&disk))).trim(), "LegacyBIOSBootable");
                }
                PartitionTable::Dos => {
                    assert!(dump.contains("label: dos") && dump.contains("bootable"), "{dump}");
                    assert!(head[..440].iter().all(|&b| b == 0x11), "the MBR code");
                    assert_eq!(&head[510..512], &[0x55, 0xaa], "the table kept");
                }
            }
        }
        assert!(toml::from_str::<std::collections::BTreeMap<String, PartitionTable>>("t = \"gpt\"").is_ok());
    }

    #[test]
    fn the_keyed_initramfs_holds_the_keys_after_the_system() {
        for t in ["dropbearkey", "ssh-keygen", "cpio"] {
            if Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().map(|o| !o.status.success()).unwrap_or(true) {
                eprintln!("{t} missing (scripts/setup.sh): skipped");
                return;
            }
        }
        let d = tempfile::tempdir().unwrap();
        // A stand-in for the built system (the real build needs the kernel).
        std::fs::write(d.path().join("vmlinuz"), "k").unwrap();
        std::fs::write(d.path().join("cmdline"), "console=ttyS0\n").unwrap();
        let base = tool(Command::new("sh").arg("-c").arg("mkdir -p x/bin && echo hi > x/bin/hi && cd x && find . | cpio -o -H newc --quiet | gzip").current_dir(d.path()), "cpio").unwrap();
        std::fs::write(d.path().join("initrd.gz"), &base).unwrap();
        let ds = DeploySystem::prepare(d.path(), Path::new("/nonexistent/build.sh")).unwrap();
        let key = ds.host_public_key().unwrap();
        let keyed = std::fs::read(ds.initrd()).unwrap();
        assert!(keyed.starts_with(&base) && keyed.len() > base.len());
        // The appended archive holds the keys, at the modes dropbear wants.
        let tail = d.path().join("tail.gz");
        std::fs::write(&tail, &keyed[base.len()..]).unwrap();
        let list = String::from_utf8(tool(Command::new("sh").arg("-c").arg(format!("zcat {} | cpio -tv --quiet", tail.display())), "cpio").unwrap()).unwrap();
        assert!(list.lines().any(|l| l.starts_with("-rw-------") && l.ends_with("root/.ssh/authorized_keys")), "{list}");
        assert!(list.lines().any(|l| l.starts_with("-rw-------") && l.ends_with("etc/dropbear/dropbear_ed25519_host_key")), "{list}");
        let s = ds.server("n1", "10.79.3.11").unwrap();
        assert_eq!(std::fs::read_to_string(ds.known_hosts()).unwrap(), format!("10.79.3.11 {key}\n"));
        assert!(!s.accept_new_host_keys && s.user == "root" && s.identity == vec![ds.client_key()]);
        // Prepared again: the same keys.
        let again = DeploySystem::prepare(d.path(), Path::new("/nonexistent/build.sh")).unwrap();
        assert_eq!(again.host_public_key().unwrap(), key);
        ds.server("n1", "10.79.3.11").unwrap();
        assert_eq!(std::fs::read_to_string(ds.known_hosts()).unwrap().lines().count(), 1);
        assert_eq!(ds.boot_files().unwrap().params, "console=ttyS0");
        assert!(ds.server("n1", "10.79.3.11\nx").is_err());
    }
}
