//! `mln template build` against the bare sequence it wraps, in one run:
//! mmdebstrap (the same options and package list, the same warm .deb
//! cache), `mke2fs -d`, `qemu-img convert`, and the kernel pair copied out
//! of the root (a directly booted template needs it). What mln adds is its
//! tuning, the staged recipe, the package list, the manifest's hashes,
//! deleting its scratch root and raw image, and the rename into place.
//! mln builds its root in a tmpfs when the machine has the memory (the
//! manifest says which; src/template/scratch.rs); the bare side builds
//! on disk, as the commands do when typed: that is mln's choice, not an
//! option of the tools.
//! The bare side's clock stops at its qcow2; its cleanup (`rm -rf` of the
//! root and the raw image, which a user must do too) is timed after that
//! and reported as a second ratio, never folded into the first. Runs go in
//! pairs, which one goes first alternating (mln, bare, bare, mln, ...),
//! after one mln build that fills the cache and is not counted (skipped
//! when `MLN_BENCH_STATE` names a state directory whose cache is warm).
//! Before each timed build (of either side) a `sync`, not counted, writes
//! back what the previous build left dirty, so neither starts under the
//! other's writeback; the previous mln template is removed uncounted too.
//! Both sides' mmdebstrap phases are timed from its `I:` lines and printed
//! side by side with the other steps, and each build's load average.
//!
//! `cargo bench --bench template` (root, mmdebstrap, network for the
//! first build). `MLN_BENCH_RUNS` (default 3) pairs; `MLN_BENCH_RECIPE`
//! (default debian-12); `MLN_BENCH_STATE` a state directory to keep the
//! .deb cache in between runs (default: a temporary one under
//! `MLN_BENCH_DIR`, default /var/tmp). Asserts no time; fails only if a
//! build fails.

#[path = "support/rounds.rs"]
mod rounds;
use rounds::{max, median, min};
use mln::template::tools::{self, MMDEBSTRAP};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One timed build: wall seconds, each step's seconds, the qcow2's bytes,
/// the cleanup mln does inside its clock and the bare side after it
/// (zero for mln), the 1-minute load average when it ended.
struct Run {
    secs: f64,
    steps: Vec<(String, f64)>,
    qcow2: u64,
    cleanup: f64,
    load: String,
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_string()
}

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
    let scratch = tempfile::tempdir_in(std::env::var_os("MLN_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let kept = std::env::var_os("MLN_BENCH_STATE").map(std::path::PathBuf::from);
    let state: &Path = kept.as_deref().unwrap_or(scratch.path());
    let template = state.join("templates/bench-mln");
    let mln = || -> Run {
        let _ = std::fs::remove_dir_all(&template);
        sync();
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mln"))
            .arg("--state-dir")
            .arg(state)
            .args(["template", "build", &recipe_name, "--name", "bench-mln"])
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "mln template build: {}", String::from_utf8_lossy(&out.stderr));
        let m = mln::template::manifest::read(&template).expect("the built template has a manifest");
        let qcow2 = std::fs::metadata(template.join("disk.qcow2")).unwrap().len();
        eprintln!("    mln: {} cached, {} downloaded, scratch root in {:?}", m.packages_cached, m.packages_downloaded, m.scratch);
        Run { secs, steps: m.steps, qcow2, cleanup: 0.0, load: load() }
    };
    let cache = state.join("cache/debs").join(format!("{}-{}", r.distribution, r.suite));
    let warm = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    if warm == 0 {
        eprintln!("template bench: filling the cache (not counted)");
        let first = mln();
        eprintln!("  first build {:.1} s", first.secs);
    } else {
        eprintln!("template bench: {warm} packages in {} already", cache.display());
    }

    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..runs {
        // Which goes first alternates, so an order effect shows as a
        // spread of the ratio rather than as a bias.
        let (m, bare) = if i % 2 == 0 {
            let m = mln();
            (m, bare(r, &cache, scratch.path()))
        } else {
            let b = bare(r, &cache, scratch.path());
            (mln(), b)
        };
        eprintln!(
            "  pair {} ({} first): mln {:.1} s (load {}), bare {:.1} s (load {}) + cleanup {:.1} s, ratio {:.3}, with the bare cleanup {:.3}",
            i + 1,
            if i % 2 == 0 { "mln" } else { "bare" },
            m.secs,
            m.load,
            bare.secs,
            bare.load,
            bare.cleanup,
            m.secs / bare.secs,
            m.secs / (bare.secs + bare.cleanup)
        );
        for (side, run) in [("mln", &m), ("bare", &bare)] {
            let steps: Vec<String> = run.steps.iter().map(|(n, s)| format!("{n} {s:.1}")).collect();
            eprintln!("    {side}: {}", steps.join(", "));
        }
        a.push(m);
        b.push(bare);
    }
    let secs = |v: &[Run]| v.iter().map(|r| r.secs).collect::<Vec<f64>>();
    let (sa, sb) = (secs(&a), secs(&b));
    let sc: Vec<f64> = b.iter().map(|r| r.secs + r.cleanup).collect();
    let ratios: Vec<f64> = sa.iter().zip(&sb).map(|(m, s)| m / s).collect();
    let ratios_c: Vec<f64> = sa.iter().zip(&sc).map(|(m, s)| m / s).collect();
    let (ma, mb, mr) = (median(&sa), median(&sb), median(&ratios));
    println!("recipe {recipe_name}, {runs} pairs, warm cache, sync before each build, seconds: median (min-max)");
    println!("| build | median | spread |");
    println!("|---|---|---|");
    println!("| `mln template build` | {ma:.1} | {:.1}-{:.1} |", min(&sa), max(&sa));
    println!("| mmdebstrap + mke2fs -d + qemu-img convert + kernel pair | {mb:.1} | {:.1}-{:.1} |", min(&sb), max(&sb));
    println!("| the same + `rm -rf` of its root and raw image | {:.1} | {:.1}-{:.1} |", median(&sc), min(&sc), max(&sc));
    println!("| ratio (per pair) | {mr:.3} | {:.3}-{:.3} |", min(&ratios), max(&ratios));
    println!("| ratio with the bare cleanup (per pair) | {:.3} | {:.3}-{:.3} |", median(&ratios_c), min(&ratios_c), max(&ratios_c));
    let loads: Vec<String> = a.iter().zip(&b).map(|(m, s)| format!("{}/{}", m.load, s.load)).collect();
    println!("1-minute load average at the end of each build (mln/bare, per pair): {}", loads.join(", "));
    println!();
    println!("steps, median seconds (a step one side lacks is blank)");
    println!("| step | mln | bare |");
    println!("|---|---|---|");
    let (pa, pb) = (step_medians(&a), step_medians(&b));
    let mut names: Vec<&String> = a[0].steps.iter().map(|(n, _)| n).collect();
    for (n, _) in &b[0].steps {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let cell = |m: &BTreeMap<String, f64>, n: &str| m.get(n).map(|v| format!("{v:.2}")).unwrap_or_default();
    for n in names {
        println!("| {n} | {} | {} |", cell(&pa, n), cell(&pb, n));
    }
    println!("qcow2 bytes: mln {}, bare {}", a[0].qcow2, b[0].qcow2);
    let _ = std::fs::remove_dir_all(state.join("templates"));
}

fn step_medians(runs: &[Run]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for (n, s) in &r.steps {
            all.entry(n.clone()).or_default().push(*s);
        }
    }
    all.into_iter().map(|(n, v)| (n, median(&v))).collect()
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// The same work by hand: the cache linked in, mmdebstrap with mln's
/// options but no customize hook, letting mmdebstrap's own cleanup take
/// the packages out of the root (mln moves them out itself), the image,
/// the qcow2 and a copy of the kernel pair; the clock stops there. The
/// root and the raw image are then removed with `rm -rf`, timed apart.
fn bare(r: &mln::template::recipe::Recipe, cache: &Path, state: &Path) -> Run {
    let work = tempfile::tempdir_in(state).unwrap();
    let root = work.path().join("root");
    sync();
    let t = Instant::now();
    let mut steps = Vec::new();
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
    steps.push(("link the cache".to_string(), t.elapsed().as_secs_f64()));
    let s = Instant::now();
    let mut args: Vec<OsString> =
        ["--mode=root", "--variant=apt", "--format=directory", "--skip=check/empty", "--skip=essential/unlink", "--aptopt=APT::Install-Recommends \"false\""]
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
    let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let out = tools::run_phased(MMDEBSTRAP, &argv).unwrap();
    assert!(out.ran.ok, "mmdebstrap: {}", out.ran.output);
    steps.push(("mmdebstrap".to_string(), s.elapsed().as_secs_f64()));
    steps.extend(out.phases.into_iter().filter(|(_, s)| *s >= 0.05).map(|(n, s)| (format!("mmdebstrap: {n}"), s)));
    let s = Instant::now();
    let img = work.path().join("root.img");
    let size = mln::template::recipe::size_bytes(&r.size).unwrap();
    let st = Command::new("mke2fs").args(["-q", "-F", "-t", "ext4", "-d"]).arg(&root).arg(&img).arg(format!("{}k", size >> 10)).status().unwrap();
    assert!(st.success(), "mke2fs");
    steps.push(("mke2fs".to_string(), s.elapsed().as_secs_f64()));
    let s = Instant::now();
    let qcow2 = work.path().join("disk.qcow2");
    let st = Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&img).arg(&qcow2).status().unwrap();
    assert!(st.success(), "qemu-img");
    steps.push(("qemu-img".to_string(), s.elapsed().as_secs_f64()));
    let s = Instant::now();
    // What `cp root/boot/vmlinuz-* root/boot/initrd.img-* .` does (one
    // kernel in the root).
    for e in std::fs::read_dir(root.join("boot")).unwrap() {
        let e = e.unwrap();
        let n = e.file_name();
        if n.to_string_lossy().starts_with("vmlinuz-") || n.to_string_lossy().starts_with("initrd.img-") {
            std::fs::copy(e.path(), work.path().join(&n)).unwrap();
        }
    }
    steps.push(("copy the kernel pair".to_string(), s.elapsed().as_secs_f64()));
    let secs = t.elapsed().as_secs_f64();
    let load = load();
    let qcow2 = std::fs::metadata(&qcow2).unwrap().len();
    let s = Instant::now();
    assert!(Command::new("rm").arg("-rf").arg(&root).arg(&img).status().unwrap().success(), "rm -rf");
    let cleanup = s.elapsed().as_secs_f64();
    drop(work);
    Run { secs, steps, qcow2, cleanup, load }
}



