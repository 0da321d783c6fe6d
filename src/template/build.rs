//! `mln template build`: a recipe becomes a kernel-bundle template
//! (`vmlinuz`, `initrd.img`, `cmdline`, `disk.qcow2`, `manifest.json`).
//!
//! mmdebstrap (root mode) makes the root in a directory, `mke2fs -d` an
//! ext4 image straight from it, `qemu-img convert` the qcow2: no loop
//! device, no mount of ours. Everything happens in a temporary directory
//! inside the templates directory, renamed into place only when complete,
//! so a failure (or a kill) never leaves a template half-written.

use super::error::TemplateError;
use super::manifest::{self, Manifest};
use super::recipe::{self, Loaded};
use super::scratch;
use super::tools::{self, DPKG_QUERY, MKE2FS, MMDEBSTRAP, QEMU_IMG};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Request<'a> {
    pub recipe: &'a Loaded,
    pub templates: &'a Path,
    /// Downloaded packages are kept here between builds (per suite).
    pub cache: &'a Path,
    /// Where projects' disks live, to refuse replacing a template that
    /// backs them.
    pub projects: Option<&'a Path>,
    pub mirror: Option<&'a str>,
    pub name: Option<&'a str>,
}

pub struct Built {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Where the recipe's files and script wait inside the root for
/// mmdebstrap's customize hook; removed before the image is made.
const STAGE: &str = ".mln-recipe";

/// The customize hook (mmdebstrap runs it with `sh -c`, `$1` the root):
/// fixed text, so no recipe value is ever part of a command line here.
const HOOK: &str = "chroot \"$1\" /bin/sh /.mln-recipe/run.sh";

/// What a slim recipe leaves out (dpkg never unpacks it): manuals, info
/// pages, translations and documentation other than copyright notices.
/// A guest is used over SSH by programs, and unpacking less is faster.
const SLIM: &[&str] = &[
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
];

pub fn build(req: &Request, note: &mut dyn FnMut(&str)) -> Result<Built, TemplateError> {
    let r = &req.recipe.recipe;
    let name = req.name.unwrap_or(&r.name).to_string();
    crate::name::check(crate::name::NameKind::Template, &name)?;
    let mirror = req.mirror.unwrap_or(&r.mirror).to_string();
    recipe::check_mirror(&mirror).map_err(|message| TemplateError::Recipe { source_name: "--mirror".into(), message })?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(TemplateError::NeedsRoot);
    }
    for t in [MMDEBSTRAP, MKE2FS, QEMU_IMG, DPKG_QUERY] {
        tools::which(t)?;
    }
    let size = recipe::size_bytes(&r.size).map_err(|message| TemplateError::Recipe { source_name: req.recipe.origin.clone(), message })?;
    std::fs::create_dir_all(req.templates).map_err(TemplateError::io("create", req.templates))?;
    let dest = req.templates.join(&name);
    if let Some(projects) = req.projects {
        let users = super::store::users_of(&dest, projects);
        if !users.is_empty() {
            return Err(TemplateError::InUse { name, users });
        }
    }
    note(&format!("checking the mirror {mirror}"));
    super::mirror::reachable(&mirror)?;

    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix(".build-").tempdir_in(req.templates).map_err(TemplateError::io("create a directory in", req.templates))?;
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).map_err(TemplateError::io("create", &root))?;
    let cache = req.cache.join(format!("{}-{}", r.distribution, r.suite));
    std::fs::create_dir_all(&cache).map_err(TemplateError::io("create", &cache))?;
    let cache_bytes: u64 = debs(&cache)?.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let tmpfs = scratch::tmpfs_bytes(size, cache_bytes);
    let job = Job { req, mirror: &mirror, out: tmp.path(), root: &root, cache: &cache, size };

    // The build runs on a thread of its own, which may give itself a mount
    // namespace for the tmpfs (see scratch.rs); its notes come back here.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let built = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let say = |m: String| drop(tx.send(m));
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            let place = match scratch::choose(&meminfo, tmpfs).and_then(|()| scratch::mount_tmpfs(job.root, tmpfs)) {
                Ok(()) => {
                    say(format!("scratch root in memory (a tmpfs of at most {} MiB)", tmpfs >> 20));
                    scratch::Place::Memory
                }
                Err(why) => {
                    say(format!("scratch root on disk ({why})"));
                    scratch::Place::Disk
                }
            };
            let done = job.run(place, &say);
            if place == scratch::Place::Memory {
                // Unmounting frees the whole root at once; the empty mount
                // point must not go into the template.
                scratch::unmount(job.root);
                let _ = std::fs::remove_dir(job.root);
            }
            done
        });
        for m in rx {
            note(&m);
        }
        worker.join().unwrap_or_else(|_| Err(TemplateError::Tool { tool: "mln", output: "the build's thread panicked".into() }))
    });
    let Made { steps, packages, cmdline, cached, downloaded, files, place } = built?;

    let t = Instant::now();
    let mut m = Manifest {
        name: name.clone(),
        recipe_origin: req.recipe.origin.clone(),
        recipe_sha256: manifest::sha256_hex(req.recipe.text.as_bytes()),
        distribution: r.distribution.clone(),
        suite: r.suite.clone(),
        mirror,
        image_bytes: size,
        cmdline,
        built_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        packages_cached: cached,
        packages_downloaded: downloaded,
        packages,
        files,
        steps,
        scratch: Some(place),
        seconds: 0.0,
    };
    m.steps.push(("manifest".to_string(), t.elapsed().as_secs_f64()));
    m.seconds = started.elapsed().as_secs_f64();
    manifest::write(&m, &tmp.path().join("manifest.json"))?;
    place_dir(tmp, &dest)?;
    Ok(Built { name, dir: dest, manifest: m })
}

/// What the build's thread hands back for the manifest.
struct Made {
    steps: Vec<(String, f64)>,
    packages: Vec<(String, String)>,
    cmdline: String,
    cached: usize,
    downloaded: usize,
    files: Vec<manifest::FileEntry>,
    place: scratch::Place,
}

/// One build's inputs and its directories: `out` is the temporary
/// template directory, `root` the scratch root inside it.
struct Job<'a> {
    req: &'a Request<'a>,
    mirror: &'a str,
    out: &'a Path,
    root: &'a Path,
    cache: &'a Path,
    size: u64,
}

impl Job<'_> {
    fn run(&self, place: scratch::Place, note: &dyn Fn(String)) -> Result<Made, TemplateError> {
        let (r, root, out, mirror) = (&self.req.recipe.recipe, self.root, self.out, self.mirror);
        let archives = root.join("var/cache/apt/archives");
        std::fs::create_dir_all(archives.join("partial")).map_err(TemplateError::io("create", &archives))?;
        let placed = link_debs(self.cache, &archives)?;
        let cached = placed.len();
        stage(root, r)?;
        let mut steps = Vec::new();

        note(format!("mmdebstrap {} ({} packages asked, {cached} in the cache)", r.suite, r.packages.len()));
        let t = Instant::now();
        let include = format!("--include={}", r.packages.join(","));
        let hook = format!("--customize-hook={HOOK}");
        let components = format!("--components={}", r.components.join(","));
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("--mode=root"),
            OsStr::new("--variant=apt"),
            OsStr::new("--format=directory"),
            // The root directory exists already: it holds the cached
            // packages and the staged recipe.
            OsStr::new("--skip=check/empty"),
            // Keep every downloaded package for the cache.
            OsStr::new("--skip=essential/unlink"),
            OsStr::new("--skip=cleanup/apt/cache"),
            OsStr::new("--aptopt=APT::Install-Recommends \"false\""),
            OsStr::new(&components),
            OsStr::new(&include),
            OsStr::new(&hook),
        ];
        if r.slim {
            args.extend(SLIM.iter().map(OsStr::new));
        }
        args.extend([OsStr::new(&r.suite), root.as_os_str(), OsStr::new(mirror)]);
        let ran = tools::run_phased(MMDEBSTRAP, &args)?;
        if !ran.ran.ok {
            return Err(classify(&ran.ran.output, &r.suite, mirror));
        }
        steps.push(("mmdebstrap".to_string(), t.elapsed().as_secs_f64()));
        // Where mmdebstrap's time went, phase by phase
        // (book/src/benchmarks.md compares them with the bare sequence's).
        steps.extend(ran.phases.into_iter().filter(|(_, s)| *s >= 0.05).map(|(n, s)| (format!("mmdebstrap: {n}"), s)));

        let t = Instant::now();
        let downloaded = keep_debs(&archives, self.cache, &placed)?;
        remove_all(&root.join(STAGE))?;
        let packages = installed(root)?;
        let (vmlinuz, initrd) = kernel(root)?;
        let cmdline = format!("root=/dev/vda rw {}", r.cmdline.trim());
        std::fs::write(out.join("cmdline"), format!("{cmdline}\n")).map_err(TemplateError::io("write", out.join("cmdline")))?;
        steps.push(("cache and package list".to_string(), t.elapsed().as_secs_f64()));

        note(format!("mke2fs -d ({} MiB)", self.size >> 20));
        let t = Instant::now();
        let raw = out.join("root.img");
        let kib = format!("{}k", self.size >> 10);
        tools::must(
            MKE2FS,
            &[OsStr::new("-q"), OsStr::new("-F"), OsStr::new("-t"), OsStr::new("ext4"), OsStr::new("-L"), OsStr::new("mln-root"), OsStr::new("-d"), root.as_os_str(), raw.as_os_str(), OsStr::new(&kib)],
        )?;
        steps.push(("mke2fs".to_string(), t.elapsed().as_secs_f64()));

        // The image holds the root now: the kernel pair moves out of it
        // (a rename on disk, a copy out of the tmpfs), and the rest is
        // deleted beside qemu-img and the hashing.
        move_file(&vmlinuz, &out.join("vmlinuz"))?;
        move_file(&initrd, &out.join("initrd.img"))?;
        note("qemu-img convert to qcow2".into());
        let sweep = (place == scratch::Place::Disk).then_some(root);
        let files = convert_and_hash(out, sweep, &raw, &mut steps)?;
        Ok(Made { steps, packages, cmdline, cached, downloaded, files, place })
    }
}

/// A rename, or a copy and a removal across file systems (out of the
/// tmpfs).
fn move_file(from: &Path, to: &Path) -> Result<(), TemplateError> {
    match std::fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(from, to).map_err(TemplateError::io("copy", from))?;
            std::fs::remove_file(from).map_err(TemplateError::io("remove", from))
        }
        r => r.map_err(TemplateError::io("move", from)),
    }
}

/// The template's files, hashed in the manifest.
const FILES: &[&str] = &["vmlinuz", "initrd.img", "cmdline", "disk.qcow2"];

/// `qemu-img convert` of the raw image into `out/disk.qcow2`, then the
/// hashes of the template's files, while the root (in the image now; None
/// when it is a tmpfs, which unmounting frees) is deleted beside both and the raw image beside the hashing: the deletions
/// are mln's cleanup, which the bare tools leave to their user. Every
/// thread is joined before an error returns (the scope does it), so the
/// temporary directory's own removal never races them; the root is gone
/// before the rename into place. Each part's seconds go into `steps`.
fn convert_and_hash(out: &Path, root: Option<&Path>, raw: &Path, steps: &mut Vec<(String, f64)>) -> Result<Vec<manifest::FileEntry>, TemplateError> {
    let died = |what: &Path| TemplateError::Tool { tool: "remove", output: format!("removing {} failed", what.display()) };
    std::thread::scope(|s| {
        let sweep = s.spawn(|| root.map_or(Ok(()), remove_all));
        let t = Instant::now();
        let qcow2 = out.join("disk.qcow2");
        let converted = tools::must(QEMU_IMG, &[OsStr::new("convert"), OsStr::new("-q"), OsStr::new("-f"), OsStr::new("raw"), OsStr::new("-O"), OsStr::new("qcow2"), raw.as_os_str(), qcow2.as_os_str()]);
        steps.push(("qemu-img convert".to_string(), t.elapsed().as_secs_f64()));
        let files = converted.and_then(|_| {
            let t = Instant::now();
            let unlink = s.spawn(|| std::fs::remove_file(raw).map_err(TemplateError::io("remove", raw)));
            let files = manifest::hash_files(out, FILES);
            steps.push(("hashes (raw image removed beside)".to_string(), t.elapsed().as_secs_f64()));
            let unlinked = unlink.join().unwrap_or_else(|_| Err(died(raw)));
            files.and_then(|f| unlinked.map(|()| f))
        });
        let t = Instant::now();
        let swept = sweep.join().unwrap_or_else(|_| Err(died(root.unwrap_or(out))));
        steps.push(("removing the root, beyond the above".to_string(), t.elapsed().as_secs_f64()));
        let files = files?;
        swept?;
        Ok(files)
    })
}

/// Writes the recipe's files and the script the hook runs into the root.
/// The script copies mln's tuning, then the recipe's files (so a recipe
/// may override mln's choices), then runs the recipe's commands, each
/// announced so a failure can be told apart from apt's.
fn stage(root: &Path, r: &recipe::Recipe) -> Result<(), TemplateError> {
    let files = root.join(STAGE).join("files");
    let write = |path: &str, content: Option<&str>, mode: u32| -> Result<(), TemplateError> {
        let parts = recipe::guest_path(path).map_err(|message| TemplateError::Recipe { source_name: path.to_string(), message })?;
        let mut p = files.clone();
        p.extend(parts);
        let parent = p.parent().expect("a guest path has a parent");
        std::fs::create_dir_all(parent).map_err(TemplateError::io("create", parent))?;
        let _ = std::fs::remove_file(&p);
        match content {
            Some(c) => {
                std::fs::write(&p, c).map_err(TemplateError::io("write", &p))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(TemplateError::io("set the mode of", &p))?;
            }
            None => std::os::unix::fs::symlink("/dev/null", &p).map_err(TemplateError::io("create", &p))?,
        }
        Ok(())
    };
    for (path, content, mode) in super::tuning::FILES {
        write(path, *content, *mode)?;
    }
    for f in &r.files {
        let mode = f.mode.as_deref().map(recipe::mode).transpose().map_err(|message| TemplateError::Recipe { source_name: f.path.clone(), message })?;
        write(&f.path, Some(&f.content), mode.unwrap_or(0o644))?;
    }
    // Directories the copy creates get root's usual mode.
    let mut script = String::from("set -e\numask 022\ncp -a /.mln-recipe/files/. /\n");
    for (i, c) in r.commands.iter().enumerate() {
        script.push_str(&format!("echo 'mln-recipe: command {}' >&2\n{c}\n", i + 1));
    }
    script.push_str("echo 'mln-recipe: commands done' >&2\n");
    script.push_str(super::tuning::FINISH);
    let p = root.join(STAGE).join("run.sh");
    std::fs::write(&p, script).map_err(TemplateError::io("write", &p))
}

/// What mmdebstrap's failure means, from what apt and the script printed.
fn classify(output: &str, suite: &str, mirror: &str) -> TemplateError {
    let mut missing: Vec<String> = Vec::new();
    for l in output.lines() {
        let l = l.trim();
        let name = l
            .strip_prefix("E: Unable to locate package ")
            .map(str::trim)
            .or_else(|| l.strip_prefix("E: Package '").and_then(|r| r.split('\'').next()))
            .or_else(|| l.strip_prefix("E: Couldn't find any package by glob '").and_then(|r| r.split('\'').next()));
        if let Some(n) = name {
            if !missing.iter().any(|m| m == n) {
                missing.push(n.to_string());
            }
        }
    }
    if !missing.is_empty() {
        return TemplateError::PackageNotFound { packages: missing, suite: suite.into(), mirror: mirror.into() };
    }
    let net = ["Could not resolve", "Temporary failure resolving", "Could not connect", "Unable to connect", "Connection timed out", "Connection refused", "Failed to fetch"];
    if let Some(l) = output.lines().find(|l| net.iter().any(|n| l.contains(n))) {
        return TemplateError::MirrorUnreachable { mirror: mirror.into(), detail: l.trim().to_string() };
    }
    let last_command = output.lines().rev().find_map(|l| l.trim().strip_prefix("mln-recipe: command ")).and_then(|n| n.parse().ok());
    if let (Some(index), false) = (last_command, output.contains("mln-recipe: commands done")) {
        return TemplateError::CommandFailed { index, output: tools::tail(output, 20) };
    }
    TemplateError::Tool { tool: "mmdebstrap", output: tools::tail(output, 20) }
}

/// The packages put into the root from the cache: file name and inode.
type Placed = std::collections::HashMap<std::ffi::OsString, u64>;

/// Puts the cache's packages where apt looks first; a hard link costs
/// nothing, a copy only when the cache is on another file system.
fn link_debs(cache: &Path, archives: &Path) -> Result<Placed, TemplateError> {
    use std::os::unix::fs::MetadataExt;
    let mut placed = Placed::new();
    for p in debs(cache)? {
        let name = p.file_name().expect("a listed file has a name");
        let to = archives.join(name);
        if std::fs::hard_link(&p, &to).is_err() {
            std::fs::copy(&p, &to).map_err(TemplateError::io("copy", &p))?;
        }
        let ino = std::fs::symlink_metadata(&to).map_err(TemplateError::io("read", &to))?.ino();
        placed.insert(name.to_os_string(), ino);
    }
    Ok(placed)
}

/// Moves the packages apt fetched out of the root into the cache and
/// drops the root's links to packages the cache already had, so no .deb
/// ends up in the image. (A rename onto another link of the same file
/// does nothing and succeeds, so those must be removed, not renamed.)
/// Returns how many were fetched.
fn keep_debs(archives: &Path, cache: &Path, placed: &Placed) -> Result<usize, TemplateError> {
    use std::os::unix::fs::MetadataExt;
    let mut fetched = 0;
    for p in debs(archives)? {
        let name = p.file_name().expect("a listed file has a name");
        let to = cache.join(name);
        // apt writes a package it fetches to a new file (partial/, then a
        // rename), so the inode placed from the cache tells them apart.
        let from_cache = std::fs::symlink_metadata(&p).is_ok_and(|m| placed.get(name) == Some(&m.ino()));
        if from_cache {
            std::fs::remove_file(&p).map_err(TemplateError::io("remove", &p))?;
            continue;
        }
        if std::fs::rename(&p, &to).is_err() {
            std::fs::copy(&p, &to).map_err(TemplateError::io("copy", &p))?;
            std::fs::remove_file(&p).map_err(TemplateError::io("remove", &p))?;
        }
        fetched += 1;
    }
    Ok(fetched)
}

fn debs(dir: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    let rd = std::fs::read_dir(dir).map_err(TemplateError::io("read", dir))?;
    Ok(rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension() == Some(OsStr::new("deb")))
        .collect())
}

/// `(package, version)` of everything installed, from the root's dpkg
/// database (read by the host's dpkg-query: nothing runs in the root).
fn installed(root: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    let admindir = root.join("var/lib/dpkg");
    let mut arg = std::ffi::OsString::from("--admindir=");
    arg.push(&admindir);
    let out = tools::must(DPKG_QUERY, &[&arg, OsStr::new("-W"), OsStr::new("-f=${db:Status-Abbrev}\t${Package}\t${Version}\n")])?;
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let status = f.next()?;
            let (p, ver) = (f.next()?, f.next()?);
            status.starts_with("ii").then(|| (p.to_string(), ver.to_string()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The root's kernel and its initrd (the newest, if there are several).
fn kernel(root: &Path) -> Result<(PathBuf, PathBuf), TemplateError> {
    let boot = root.join("boot");
    let rd = std::fs::read_dir(&boot).map_err(TemplateError::io("read", &boot))?;
    let mut versions: Vec<String> =
        rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("vmlinuz-")).map(String::from)).collect();
    versions.sort_by_key(|v| natural(v));
    let none = || TemplateError::Tool { tool: "mmdebstrap", output: "the root has no kernel and initrd in /boot: the recipe needs a linux-image package".into() };
    let v = versions.pop().ok_or_else(none)?;
    let initrd = boot.join(format!("initrd.img-{v}"));
    if !initrd.is_file() {
        return Err(none());
    }
    Ok((boot.join(format!("vmlinuz-{v}")), initrd))
}

/// Orders `6.1.0-10` after `6.1.0-9`.
fn natural(s: &str) -> Vec<(u64, String)> {
    s.split(|c: char| !c.is_ascii_alphanumeric()).map(|p| (p.parse().unwrap_or(0), p.to_string())).collect()
}

fn remove_all(p: &Path) -> Result<(), TemplateError> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TemplateError::Io { what: "remove", path: p.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

/// Renames the finished directory into place; one that was there is moved
/// aside first and removed only once the new one stands.
pub(super) fn place_dir(tmp: tempfile::TempDir, dest: &Path) -> Result<(), TemplateError> {
    let parent = dest.parent().expect("a template is inside the templates directory");
    let aside = if std::fs::symlink_metadata(dest).is_ok() {
        let a = parent.join(format!(".old-{}-{}", std::process::id(), dest.file_name().and_then(|n| n.to_str()).unwrap_or("t")));
        std::fs::rename(dest, &a).map_err(TemplateError::io("move aside", dest))?;
        Some(a)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(tmp.path(), dest) {
        if let Some(a) = &aside {
            let _ = std::fs::rename(a, dest);
        }
        return Err(TemplateError::Io { what: "rename into", path: dest.to_path_buf(), source: e });
    }
    let _ = tmp.keep();
    if let Some(a) = aside {
        let _ = if a.is_dir() { std::fs::remove_dir_all(&a) } else { std::fs::remove_file(&a) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_failures_are_told_apart() {
        let e = classify("I: x\nE: Unable to locate package nosuchpkg-mln\nE: Package 'gone' has no installation candidate\n", "bookworm", "http://m");
        assert!(matches!(&e, TemplateError::PackageNotFound { packages, .. } if packages == &["nosuchpkg-mln", "gone"]), "{e}");
        assert!(e.to_string().contains("nosuchpkg-mln"));
        let e = classify("Err:1 http://m bookworm InRelease\n  Could not resolve 'm'\n", "bookworm", "http://m");
        assert!(matches!(e, TemplateError::MirrorUnreachable { .. }), "{e}");
        let e = classify("mln-recipe: command 1\nmln-recipe: command 2\nfalse: failed\n", "bookworm", "http://m");
        assert!(matches!(e, TemplateError::CommandFailed { index: 2, .. }), "{e}");
        let e = classify("mln-recipe: command 1\nmln-recipe: commands done\nsomething else\n", "bookworm", "http://m");
        assert!(matches!(e, TemplateError::Tool { .. }), "{e}");
    }

    #[test]
    fn the_newest_kernel() {
        let d = tempfile::tempdir().unwrap();
        let boot = d.path().join("boot");
        std::fs::create_dir(&boot).unwrap();
        assert!(kernel(d.path()).is_err());
        for v in ["6.1.0-9-cloud-amd64", "6.1.0-10-cloud-amd64"] {
            std::fs::write(boot.join(format!("vmlinuz-{v}")), b"k").unwrap();
            std::fs::write(boot.join(format!("initrd.img-{v}")), b"i").unwrap();
        }
        assert_eq!(kernel(d.path()).unwrap().0, boot.join("vmlinuz-6.1.0-10-cloud-amd64"));
    }

    #[test]
    fn no_package_stays_in_the_root_and_only_fetched_ones_count() {
        let d = tempfile::tempdir().unwrap();
        let (cache, archives) = (d.path().join("cache"), d.path().join("archives"));
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(&archives).unwrap();
        std::fs::write(cache.join("a_1.deb"), b"a").unwrap();
        std::fs::write(cache.join("b_1.deb"), b"b").unwrap();
        let placed = link_debs(&cache, &archives).unwrap();
        assert_eq!(placed.len(), 2);
        // apt fetched c, and fetched b again (a new file under the same name).
        std::fs::write(archives.join("c_1.deb"), b"c").unwrap();
        std::fs::remove_file(archives.join("b_1.deb")).unwrap();
        std::fs::write(archives.join("b_1.deb"), b"B").unwrap();
        assert_eq!(keep_debs(&archives, &cache, &placed).unwrap(), 2);
        assert!(debs(&archives).unwrap().is_empty());
        let mut names: Vec<String> = debs(&cache).unwrap().iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()).collect();
        names.sort();
        assert_eq!(names, ["a_1.deb", "b_1.deb", "c_1.deb"]);
        assert_eq!(std::fs::read(cache.join("b_1.deb")).unwrap(), b"B");
    }

    #[test]
    fn the_qcow2_is_made_and_hashed_and_the_scratch_is_gone_even_on_failure() {
        if tools::which(QEMU_IMG).is_err() {
            eprintln!("qemu-img not installed; skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (out, root, raw) = (d.path().join("out"), d.path().join("root"), d.path().join("out/root.img"));
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/x"), b"x").unwrap();
        std::fs::create_dir_all(&out).unwrap();
        for f in ["vmlinuz", "initrd.img", "cmdline"] {
            std::fs::write(out.join(f), f.as_bytes()).unwrap();
        }
        std::fs::write(&raw, vec![7u8; 1 << 20]).unwrap();
        let mut steps = Vec::new();
        let files = convert_and_hash(&out, Some(&root), &raw, &mut steps).unwrap();
        assert_eq!(files.iter().map(|f| f.file.as_str()).collect::<Vec<_>>(), FILES);
        let disk = &files[3];
        assert_eq!(disk.sha256, manifest::sha256_hex(&std::fs::read(out.join("disk.qcow2")).unwrap()));
        assert!(!root.exists() && !raw.exists());
        assert_eq!(steps.len(), 3, "{steps:?}");
        // qemu-img fails (no raw image): the error is its, and the root
        // is still deleted before it returns.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let e = convert_and_hash(&out, Some(&root), &raw, &mut steps).unwrap_err();
        assert!(matches!(e, TemplateError::Tool { tool: "qemu-img", .. }), "{e}");
        assert!(!root.exists());
    }

    #[test]
    fn a_replaced_template_is_swapped_whole() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("t");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old"), b"o").unwrap();
        let tmp = tempfile::Builder::new().prefix(".build-").tempdir_in(d.path()).unwrap();
        std::fs::write(tmp.path().join("new"), b"n").unwrap();
        place_dir(tmp, &dest).unwrap();
        let names: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["t"]);
        assert!(dest.join("new").exists() && !dest.join("old").exists());
    }
}
