//! `mln template build` against the bare sequence it wraps, in one run:
//! mmdebstrap (the same options and package list, the same warm .deb
//! cache), `mke2fs -d`, `qemu-img convert`. What mln adds is its tuning,
//! the staged recipe, the package list, kernel copies, the manifest's
//! hashes and the rename into place. Runs go in pairs, which one goes
//! first alternating (mln, bare, bare, mln, ...), after one mln build that
//! fills the cache and is not counted.
//!
//! `cargo bench --bench template` (root, mmdebstrap, network for the
//! first build). `MLN_BENCH_RUNS` (default 3) pairs; `MLN_BENCH_RECIPE`
//! (default debian-12). Asserts no time; fails only if a build fails.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: exit at once.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if Command::new("mmdebstrap").arg("--version").output().is_err() {
        eprintln!("template bench: mmdebstrap is not installed; skipped (apt-get install mmdebstrap)");
        return;
    }
    let runs: usize = std::env::var("MLN_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let recipe_name = std::env::var("MLN_BENCH_RECIPE").unwrap_or_else(|_| "debian-12".into());
    let loaded = mln::template::recipe::load(&recipe_name).expect("the recipe loads");
    let r = &loaded.recipe;
    let state = tempfile::tempdir_in(std::env::var_os("MLN_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let mln = |name: &str| -> f64 {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mln"))
            .arg("--state-dir")
            .arg(state.path())
            .args(["template", "build", &recipe_name, "--name", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "mln template build: {}", String::from_utf8_lossy(&out.stderr));
        t.elapsed().as_secs_f64()
    };
    let cache = state.path().join("cache/debs").join(format!("{}-{}", r.distribution, r.suite));

    eprintln!("template bench: filling the cache (not counted)");
    let first = mln("bench-mln");
    eprintln!("  first build {first:.1} s");

    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..runs {
        // Which goes first alternates: the first of a pair runs while the
        // page cache still writes back and frees what the last one made.
        let (m, bare) = if i % 2 == 0 {
            let m = mln("bench-mln");
            (m, bare(r, &cache, state.path()))
        } else {
            let b = bare(r, &cache, state.path());
            (mln("bench-mln"), b)
        };
        eprintln!("  pair {}: mln {m:.1} s, bare {bare:.1} s, ratio {:.3}", i + 1, m / bare);
        a.push(m);
        b.push(bare);
    }
    let ratios: Vec<f64> = a.iter().zip(&b).map(|(m, s)| m / s).collect();
    let (ma, mb, mr) = (median(&a), median(&b), median(&ratios));
    println!("recipe {recipe_name}, {runs} pairs, warm cache, seconds: median (min-max)");
    println!("| build | median | spread |");
    println!("|---|---|---|");
    println!("| `mln template build` | {ma:.1} | {:.1}-{:.1} |", min(&a), max(&a));
    println!("| mmdebstrap + mke2fs -d + qemu-img convert | {mb:.1} | {:.1}-{:.1} |", min(&b), max(&b));
    println!("| ratio (per pair) | {mr:.3} | {:.3}-{:.3} |", min(&ratios), max(&ratios));
    let _ = std::fs::remove_dir_all(state.path().join("templates"));
}

/// The same work by hand: the cache linked in, mmdebstrap with mln's
/// options (no customize hook), the image and the qcow2; then removed.
fn bare(r: &mln::template::recipe::Recipe, cache: &Path, state: &Path) -> f64 {
    let work = tempfile::tempdir_in(state).unwrap();
    let root = work.path().join("root");
    let t = Instant::now();
    let archives = root.join("var/cache/apt/archives");
    std::fs::create_dir_all(archives.join("partial")).unwrap();
    // cp -l: the hard links a user would make to reuse a cache.
    let mut cp = Command::new("cp");
    cp.arg("-l");
    for e in std::fs::read_dir(cache).unwrap() {
        cp.arg(e.unwrap().path());
    }
    cp.arg(&archives);
    assert!(cp.status().unwrap().success());
    let mut args: Vec<OsString> = [
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        "--skip=check/empty",
        "--skip=essential/unlink",
        "--skip=cleanup/apt/cache",
        "--aptopt=APT::Install-Recommends \"false\"",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if r.slim {
        for o in [
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        ] {
            args.push(o.into());
        }
    }
    args.push(format!("--components={}", r.components.join(",")).into());
    args.push(format!("--include={}", r.packages.join(",")).into());
    args.push(r.suite.clone().into());
    args.push(root.clone().into());
    args.push(r.mirror.clone().into());
    let out = Command::new("mmdebstrap").args(&args).output().unwrap();
    assert!(out.status.success(), "mmdebstrap: {}", String::from_utf8_lossy(&out.stderr));
    let img = work.path().join("root.img");
    let size = mln::template::recipe::size_bytes(&r.size).unwrap();
    let st = Command::new("mke2fs").args(["-q", "-F", "-t", "ext4", "-d"]).arg(&root).arg(&img).arg(format!("{}k", size >> 10)).status().unwrap();
    assert!(st.success(), "mke2fs");
    let st = Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&img).arg(work.path().join("disk.qcow2")).status().unwrap();
    assert!(st.success(), "qemu-img");
    let secs = t.elapsed().as_secs_f64();
    drop(work);
    secs
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().cloned().fold(0.0, f64::max)
}
