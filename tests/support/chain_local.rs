//! The image chain's node script run on this machine, as the deploy
//! system runs it (a directory of busybox links as its PATH, `mln-hop`
//! there or not): one harness for tests/chain_hop.rs (the script execs
//! the hop), src/baremetal/chain_tests.rs (the busybox pipeline) and
//! benches/baremetal.rs (the script in namespace hosts). Included with
//! `#[path]`; the including module names `chain` (mln's
//! `baremetal::chain`), which is how this file reaches it both from the
//! crate's unit tests and from a test or bench crate.
#![allow(dead_code)]

use super::chain::{self, ChainNode, Hop, Receiver, Report, Runner};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

pub fn sha(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// What the node script runs, as busybox applets, but its hash
/// (`sha256sum`, which a caller adds where the pipeline should use it).
pub const APPLETS: &[&str] = &["sh", "nc", "tee", "netstat", "mkfifo", "sleep", "seq", "grep", "cat", "cut", "head", "kill", "rm", "mkdir", "gzip", "tar", "true", "env", "mount", "mountpoint"];

/// `dir` made a deploy system's PATH: busybox links for `applets`, and
/// `extra` (name, program) linked beside them. None without busybox.
pub fn busybox_bin(dir: &Path, applets: &[&str], extra: &[(&str, &Path)]) -> Option<PathBuf> {
    let bb = which("busybox").or_else(|| Some(PathBuf::from("/bin/busybox")).filter(|p| p.exists()))?;
    std::fs::create_dir_all(dir).unwrap();
    for a in applets {
        std::os::unix::fs::symlink(&bb, dir.join(a)).unwrap();
    }
    for (name, prog) in extra {
        std::os::unix::fs::symlink(prog, dir.join(name)).unwrap();
    }
    Some(dir.to_path_buf())
}

/// A gzip tar image of a small tree (/etc/hostname and a 3 MB file):
/// the image, its SHA-256 and the big file's contents.
pub fn tree_image(dir: &Path) -> (PathBuf, String, Vec<u8>) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "guest\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8 ^ (i >> 9) as u8).collect();
    std::fs::write(src.join("big"), &big).unwrap();
    let img = dir.join("image.tar.gz");
    assert!(Command::new("tar").arg("-czf").arg(&img).arg("-C").arg(&src).arg(".").status().unwrap().success());
    let sum = sha(&std::fs::read(&img).unwrap());
    (img, sum, big)
}

/// A running node script: its control line goes to its stdin, its
/// result comes on its stdout.
pub struct ScriptReceiver {
    child: std::process::Child,
    out: mpsc::Receiver<String>,
    /// What must have run the node's part, where it matters (a bench
    /// would otherwise measure one under the other's name).
    runner: Option<Runner>,
}

/// Starts the node script `cmd` and waits for it to listen.
pub fn spawn(mut cmd: Command, runner: Option<Runner>) -> Result<Box<dyn Receiver>, String> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
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
    Ok(Box::new(ScriptReceiver { child, out, runner }))
}

impl Receiver for ScriptReceiver {
    fn forward_to(&mut self, next: Option<&Hop>) -> Result<(), String> {
        let line = next.map(|h| format!("{} {}\n", h.addr, h.port)).unwrap_or_else(|| "- -\n".into());
        self.child.stdin.take().ok_or("no stdin")?.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }
    fn wait(&mut self, deadline: Instant) -> Option<Result<Report, String>> {
        let text = self.out.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
        let _ = self.child.wait();
        let report = Report::parse(&text).ok_or(text);
        Some(match self.runner {
            Some(want) => report.and_then(|r| if r.runner == want { Ok(r) } else { Err(format!("ran through {}, not {want}", r.runner)) }),
            None => report,
        })
    }
}

/// A receiver on loopback running the script with `bin` as its PATH,
/// extracting a gzip tar into `root`, its log line into `log`.
pub struct Local {
    pub name: String,
    pub bin: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
    pub base: u16,
    pub dead: bool,
}

impl Local {
    pub fn new(dir: &Path, bin: &Path, i: usize, dead: bool) -> Local {
        let root = dir.join(format!("root{i}"));
        std::fs::create_dir_all(&root).unwrap();
        // Free ports now; the script listens on them a moment later (each
        // receiver its own /tmp/mln-chain-PORT).
        let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Local { name: format!("n{i}"), bin: bin.to_path_buf(), log: dir.join(format!("log{i}")), root, base, dead }
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
        let mut cmd = Command::new(self.bin.join("sh"));
        cmd.arg("-c").arg(&s).env("PATH", &self.bin);
        spawn(cmd, None)
    }
}

/// Where a receiver extracts the tree and logs its line.
pub struct Place<'a> {
    pub name: &'a str,
    pub root: &'a Path,
    pub log: &'a Path,
}

/// [`tree_image`] broadcast to `nodes`, the third of four dead: it is
/// skipped, the others extract the tree in the first pass, and each one's
/// log line says whom it sent it on to, the image's sum and what ran its
/// part (`hop`: `mln-hop` or `busybox`).
pub fn broadcast_with_the_third_dead(dir: &Path, nodes: &[&dyn ChainNode], places: &[Place], hop: &str) {
    let (img, sum, big) = tree_image(dir);
    let out = chain::broadcast(nodes, &img, &sum, &chain::Options { passes: 2, grace: std::time::Duration::from_secs(60), stall: std::time::Duration::from_secs(30) });
    assert!(matches!(&out[2], chain::Outcome::Skipped(_)), "{out:?}");
    for i in [0, 1, 3] {
        let p = &places[i];
        assert_eq!(out[i], chain::Outcome::Written { pass: 0 }, "{out:?}");
        assert_eq!(std::fs::read_to_string(p.root.join("etc/hostname")).unwrap(), "guest\n");
        assert_eq!(std::fs::read(p.root.join("big")).unwrap(), big);
        let log = std::fs::read_to_string(p.log).unwrap();
        let want = if i == 3 { "next=- " } else { "next=127.0.0.1 " };
        assert!(log.contains(&format!("MLN-CHAIN host={} {want}", p.name)) && log.contains(&format!("sum={sum}")) && log.contains(&format!("hop={hop}")), "{log}");
    }
}

impl Local {
    pub fn place(&self) -> Place<'_> {
        Place { name: &self.name, root: &self.root, log: &self.log }
    }
}
