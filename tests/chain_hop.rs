//! The image chain's node script as the deploy system runs it, with the
//! `mln-hop` binary on its PATH beside busybox: the shell execs the hop,
//! which receives, forwards, hashes and extracts on loopback; a dead
//! node is skipped; a stop (`chain::stop_script`, SIGTERM to the hop)
//! ends a hung stream with a report. The busybox pipeline (no `mln-hop`)
//! is tested in src/baremetal/chain_tests.rs. The binary links only libc
//! and libgcc_s, so it runs in the initramfs.

use mln::baremetal::chain::{self, broadcast, ChainNode, Hop, Options, Outcome, Receiver, Report, Runner};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn sha(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// busybox's applets and `mln-hop` (no openssl, no sha256sum: the hop
/// hashes by itself), as the deploy system's PATH.
fn bin(dir: &Path) -> Option<PathBuf> {
    let bb = which("busybox")?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for a in ["sh", "nc", "tee", "netstat", "mkfifo", "sleep", "seq", "grep", "cat", "cut", "head", "kill", "rm", "mkdir", "gzip", "tar", "true"] {
        std::os::unix::fs::symlink(&bb, bin.join(a)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mln-hop"), bin.join("mln-hop")).unwrap();
    Some(bin)
}

struct Local {
    name: String,
    bin: PathBuf,
    root: PathBuf,
    log: PathBuf,
    base: u16,
    dead: bool,
}

struct LocalReceiver {
    child: std::process::Child,
    out: mpsc::Receiver<String>,
}

impl Receiver for LocalReceiver {
    fn forward_to(&mut self, next: Option<&Hop>) -> Result<(), String> {
        let line = next.map(|h| format!("{} {}\n", h.addr, h.port)).unwrap_or_else(|| "- -\n".into());
        self.child.stdin.take().ok_or("no stdin")?.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
    fn wait(&mut self, deadline: Instant) -> Option<Result<Report, String>> {
        let text = self.out.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
        let _ = self.child.wait();
        Some(Report::parse(&text).ok_or(text))
    }
}

impl ChainNode for Local {
    fn name(&self) -> &str {
        &self.name
    }
    fn hop(&self, pass: u16) -> Hop {
        Hop { addr: "127.0.0.1".into(), port: self.base + pass }
    }
    fn stop(&self, pass: u16) {
        let _ = Command::new(self.bin.join("sh")).arg("-c").arg(chain::stop_script(self.base + pass)).env("PATH", &self.bin).status();
    }
    fn start(&self, pass: u16) -> Result<Box<dyn Receiver>, String> {
        if self.dead {
            return Err("no answer".into());
        }
        let s = chain::script(self.base + pass, "true", "gzip -dc", &format!("tar -x -C {}", self.root.display()), Some(&self.log.display().to_string()), &format!("host={}", self.name));
        let mut child = Command::new(self.bin.join("sh")).arg("-c").arg(&s).env("PATH", &self.bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
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
        Ok(Box::new(LocalReceiver { child, out }))
    }
}

fn nodes(dir: &Path, bin: &Path, n: usize, dead: Option<usize>) -> Vec<Local> {
    (0..n)
        .map(|i| {
            let root = dir.join(format!("root{i}"));
            std::fs::create_dir_all(&root).unwrap();
            // Free ports now; the hop listens on them a moment later.
            let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            Local { name: format!("n{i}"), bin: bin.to_path_buf(), log: dir.join(format!("log{i}")), root, base, dead: dead == Some(i) }
        })
        .collect()
}

#[test]
fn the_script_execs_the_hop_which_receives_forwards_and_extracts() {
    let t = tempfile::tempdir().unwrap();
    let Some(bin) = bin(t.path()) else {
        eprintln!("no busybox: skipped");
        return;
    };
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "guest\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8 ^ (i >> 9) as u8).collect();
    std::fs::write(src.join("big"), &big).unwrap();
    let img = t.path().join("image.tar.gz");
    assert!(Command::new("tar").arg("-czf").arg(&img).arg("-C").arg(&src).arg(".").status().unwrap().success());
    let sum = sha(&std::fs::read(&img).unwrap());
    let ns = nodes(t.path(), &bin, 4, Some(2));
    let dyns: Vec<&dyn ChainNode> = ns.iter().map(|n| n as &dyn ChainNode).collect();
    let out = broadcast(&dyns, &img, &sum, &Options { passes: 2, grace: Duration::from_secs(60), stall: Duration::from_secs(30) });
    assert!(matches!(&out[2], Outcome::Skipped(_)), "{out:?}");
    for i in [0, 1, 3] {
        assert_eq!(out[i], Outcome::Written { pass: 0 }, "{out:?}");
        assert_eq!(std::fs::read_to_string(ns[i].root.join("etc/hostname")).unwrap(), "guest\n");
        assert_eq!(std::fs::read(ns[i].root.join("big")).unwrap(), big);
        let log = std::fs::read_to_string(&ns[i].log).unwrap();
        let want = if i == 3 { "next=- " } else { "next=127.0.0.1 " };
        assert!(log.contains(&format!("MLN-CHAIN host=n{i} {want}")) && log.contains(&format!("sum={sum}")) && log.contains("hop=mln-hop"), "{log}");
    }
}

/// mln's send stops half-way without closing (a hung sender): the pass's
/// grace runs out, `stop_script` sends the hop SIGTERM, and the hop
/// reports the SHA-256 of the part it got (not the image's: the node goes
/// into the next pass), said by the binary.
#[test]
fn a_hung_stream_is_stopped_by_signal_and_the_hop_reports() {
    let t = tempfile::tempdir().unwrap();
    let Some(bin) = bin(t.path()) else {
        eprintln!("no busybox: skipped");
        return;
    };
    let ns = nodes(t.path(), &bin, 1, None);
    let n = &ns[0];
    let mut r = n.start(0).unwrap();
    r.forward_to(None).unwrap();
    let mut up = std::net::TcpStream::connect(("127.0.0.1", n.base)).unwrap();
    let part = vec![0u8; 100_000];
    up.write_all(&part).unwrap();
    assert!(r.wait(Instant::now() + Duration::from_millis(500)).is_none(), "still receiving");
    n.stop(0);
    let rep = r.wait(Instant::now() + Duration::from_secs(30)).expect("a report after the stop").unwrap();
    assert_eq!(rep.runner, Runner::Binary);
    assert_eq!(rep.forward, "none");
    // gzip of 100 kB of zeros that is no gzip: the decompressor failed.
    assert!(!rep.written, "{rep:?}");
    assert_eq!(rep.sha256, sha(&part));
    drop(up);
}

/// What the initramfs needs: libc (and libgcc_s), nothing of mln's other
/// libraries (libvirt, sqlite are linked into mln-libvirt only).
#[test]
fn the_hop_binary_needs_only_libc() {
    let out = Command::new("readelf").args(["-d", env!("CARGO_BIN_EXE_mln-hop")]).output().expect("readelf runs");
    let needed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("(NEEDED)")).map(str::to_string).collect();
    assert!(needed.iter().any(|l| l.contains("libc.so")), "{needed:?}");
    for l in &needed {
        assert!(["libc.so", "libgcc_s.so", "libm.so", "ld-linux"].iter().any(|ok| l.contains(ok)), "mln-hop needs {l}");
    }
}
