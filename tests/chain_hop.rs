//! The image chain's node script as the deploy system runs it, with the
//! `mln-hop` binary on its PATH beside busybox: the shell execs the hop,
//! which receives, forwards, hashes and extracts on loopback; a dead
//! node is skipped; a stop (`chain::stop_script`, SIGTERM to the hop)
//! ends a hung stream with a report. The busybox pipeline (no `mln-hop`)
//! is tested in src/baremetal/chain_tests.rs. The binary links only libc
//! and libgcc_s, so it runs in the initramfs.

#[path = "support/chain_local.rs"]
mod chain_local;

use chain_local::{broadcast_with_the_third_dead, busybox_bin, sha, Local, APPLETS};
use mln::baremetal::chain::{self, ChainNode, Runner};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// busybox's applets and `mln-hop` (no openssl, no sha256sum: the hop
/// hashes by itself), as the deploy system's PATH.
fn bin(dir: &Path) -> Option<PathBuf> {
    busybox_bin(&dir.join("bin"), APPLETS, &[("mln-hop", Path::new(env!("CARGO_BIN_EXE_mln-hop")))])
}

fn nodes(dir: &Path, bin: &Path, n: usize, dead: Option<usize>) -> Vec<Local> {
    (0..n).map(|i| Local::new(dir, bin, i, dead == Some(i))).collect()
}

#[test]
fn the_script_execs_the_hop_which_receives_forwards_and_extracts() {
    let t = tempfile::tempdir().unwrap();
    let Some(bin) = bin(t.path()) else {
        eprintln!("no busybox: skipped");
        return;
    };
    let ns = nodes(t.path(), &bin, 4, Some(2));
    let dyns: Vec<&dyn ChainNode> = ns.iter().map(|n| n as &dyn ChainNode).collect();
    let places: Vec<_> = ns.iter().map(Local::place).collect();
    broadcast_with_the_third_dead(t.path(), &dyns, &places, "mln-hop");
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
