//! Building and saving VMs, measured with the release binary on the
//! embedded libvirt driver. Run with `cargo bench --bench vm_lifecycle`
//! (as root, with the packages of scripts/setup.sh; about 5 minutes and
//! 30 GB of free disk). Results are printed and written to
//! target/bench/vm_lifecycle.md.
//!
//! 1. Build 36 VMs (disks, seeds, definitions; not booting) from a 620 MB
//!    and a 6 GB template, with linked clones (the default) and with full
//!    copies. The peer is MLN's way: a full copy per VM.
//! 2. Save 8 running guests to disk and restore them: `mln stop -S` and
//!    `mln start` against a plain sequential loop of `virsh save` and
//!    `virsh restore` over the same guests (one virsh process each).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn mln(state: &Path, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mln"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("MLN_KVM", "0")
        .output()
        .expect("mln runs");
    assert!(out.status.success(), "mln {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

/// A template: the test guest's kernel bundle plus a disk of `mb` MB of
/// incompressible data (zeros would flatter full copies: qemu-img skips them).
fn template(dir: &Path, name: &str, mb: usize) {
    let t = dir.join(name);
    let st = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/testguest/build.sh")).arg(&t).output().unwrap();
    assert!(st.status.success());
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(t.join("disk.img")).unwrap());
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ mb as u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

fn project(dir: &Path, name: &str, hosts: usize, template: &str, clone: &str) -> PathBuf {
    let p = dir.join(format!("{name}.mln"));
    std::fs::write(
        &p,
        format!(
            "global {{\n    project {name}\n    autoenum {{\n        superclass s\n        numhosts {hosts}\n    }}\n}}\nsuperclass s {{\n    template {template}\n    clone {clone}\n    memory 128M\n}}\n"
        ),
    )
    .unwrap();
    p
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + std::time::Duration::from_secs(180);
    while !std::fs::read_to_string(path).is_ok_and(|s| s.contains(what)) {
        assert!(Instant::now() < deadline, "{} never showed {what}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let work = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("room beside the checkout");
    let state = work.path().join("state");
    let templates = state.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    eprintln!("making templates (620 MB and 6 GB)...");
    template(&templates, "t620", 620);
    template(&templates, "t6g", 6 * 1024);

    // The first use of an embedded root makes libvirt probe QEMU's
    // capabilities (seconds, once): not part of any build.
    let warm = project(work.path(), "warm", 1, "t620", "linked");
    mln(&state, &["build", "-f", warm.to_str().unwrap()]);
    mln(&state, &["remove", "-p", "warm"]);

    let mut rows = Vec::new();
    let mut times = std::collections::HashMap::new();
    let build_once = |tmpl: &str, clone: &str| {
        let name = format!("b{tmpl}{clone}");
        let p = project(work.path(), &name, 36, tmpl, clone);
        let s = mln(&state, &["build", "-f", p.to_str().unwrap()]);
        mln(&state, &["remove", "-p", &name]);
        s
    };
    // Linked builds take ~0.15 s: 7 runs each, the two templates
    // interleaved so that neither gains from going second.
    eprintln!("building 36 VMs, linked, 620 MB and 6 GB templates interleaved (7 each)...");
    let (mut small, mut big) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        small.push(build_once("t620", "linked"));
        big.push(build_once("t6g", "linked"));
    }
    eprintln!("building 36 VMs, full copies of 620 MB (3 runs)...");
    let full: Vec<f64> = (0..3).map(|_| build_once("t620", "full")).collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    for (tmpl, clone, runs) in [("t620", "linked", small), ("t6g", "linked", big), ("t620", "full", full)] {
        let n = runs.len();
        let s = median(runs);
        times.insert((tmpl, clone), s);
        rows.push(format!(
            "| 36 VMs, {} template, {clone} | {s:.3} s | {:.4} s | {n} |",
            if tmpl == "t620" { "620 MB" } else { "6 GB" },
            s / 36.0
        ));
    }
    let linked = times[&("t620", "linked")];
    let full = times[&("t620", "full")];
    let big = times[&("t6g", "linked")];
    let mut out = String::from("| build | total (median) | per VM | runs |\n|---|---|---|---|\n");
    out += &rows.join("\n");
    out += &format!(
        "\n\nfull copies / linked clones (620 MB): **{:.0}x** (goal ≥ 50x); linked 6 GB / linked 620 MB: **{:.2}** (goal within 10%)\n\n",
        full / linked,
        big / linked
    );

    // Save and restore 8 running guests.
    let p = project(work.path(), "save8", 8, "t620", "linked");
    mln(&state, &["build", "-f", p.to_str().unwrap()]);
    mln(&state, &["start", "-p", "save8"]);
    let consoles: Vec<PathBuf> = (1..=8).map(|i| state.join(format!("projects/save8/node{i}/console.log"))).collect();
    for c in &consoles {
        wait_for(c, "MLN-COUNTER 2");
    }
    let save = mln(&state, &["stop", "-p", "save8", "-S"]);
    let restore = mln(&state, &["start", "-p", "save8"]);
    for c in &consoles {
        wait_for(c, "MLN-COUNTER 4");
    }
    let uri = format!("qemu:///embed?root={}", state.join("libvirt").display());
    let files: Vec<PathBuf> = (1..=8).map(|i| work.path().join(format!("node{i}.save"))).collect();
    let loop_of = |verb: &str| {
        (1..=8)
            .map(|i| match verb {
                "save" => format!("save node{i}.save8 {}", files[i - 1].display()),
                _ => format!("restore {}", files[i - 1].display()),
            })
            .collect::<Vec<_>>()
            .join(" ; ")
    };
    let virsh = |cmds: String| {
        let t = Instant::now();
        let o = Command::new("virsh").args(["-q", "-c", &uri, &cmds]).output().unwrap();
        assert!(o.status.success(), "virsh: {}", String::from_utf8_lossy(&o.stderr));
        t.elapsed().as_secs_f64()
    };
    let vsave = virsh(loop_of("save"));
    let vrestore = virsh(loop_of("restore"));
    mln(&state, &["stop", "-p", "save8", "-H"]);
    mln(&state, &["remove", "-p", "save8"]);
    out += &format!(
        "| 8 running guests (128 MB) | mln (parallel) | virsh loop (sequential) | mln / virsh |\n|---|---|---|---|\n\
         | save to disk | {save:.2} s | {vsave:.2} s | {:.2} |\n| restore | {restore:.2} s | {vrestore:.2} s | {:.2} |\n",
        save / vsave,
        restore / vrestore
    );
    print!("{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vm_lifecycle.md"), &out).unwrap();
}
