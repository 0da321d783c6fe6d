//! `mln template export NAME --env`: a built template as a bare-metal tar
//! environment (src/baremetal/env.rs): the root file system as a tar
//! archive, the kernel and initrd, and the `env.toml` that `mln env add`
//! takes.
//!
//! The root is read out of the template's own disk, not kept from the
//! build: every built template (and the ones built before this existed)
//! can be exported, and a build pays nothing for an export it may never
//! need. Nothing is mounted: `qemu-img` makes a raw copy, debugfs's
//! `rdump` copies the tree out, and a second debugfs pass lists every
//! directory (`ls -p`: inode, mode, owner) to put back what `rdump` loses:
//! set-uid/set-gid bits (its chown after chmod clears them), device nodes
//! (it skips them), hard links (it writes each name as its own copy).
//! Extended attributes (file capabilities) are not carried; Debian's base
//! system sets none.

use super::error::TemplateError;
use super::tools::{self, DEBUGFS, QEMU_IMG, TAR};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
}

impl Compression {
    fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => "tar.zst",
            Compression::Gzip => "tar.gz",
        }
    }
    /// The name env.toml gives it (src/baremetal/env.rs `Compression`).
    fn env_name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }
    fn tar_flag(self) -> &'static str {
        match self {
            Compression::Zstd => "--zstd",
            Compression::Gzip => "--gzip",
        }
    }
}

pub struct Exported {
    /// The environment description, for `mln env add`.
    pub env_toml: PathBuf,
    pub tarball: PathBuf,
    pub tar_bytes: u64,
    /// Files, directories, links... in the archive.
    pub entries: usize,
}

/// The files a template must have to be exported: a built (kernel-bundle)
/// one; an imported disk image has its own partitions and boot loader.
const NEEDED: [&str; 4] = ["vmlinuz", "initrd.img", "cmdline", "disk.qcow2"];

pub fn export(templates: &Path, name: &str, out: &Path, compression: Compression, note: &mut dyn FnMut(&str)) -> Result<Exported, TemplateError> {
    crate::name::check(crate::name::NameKind::Template, name)?;
    let dir = templates.join(name);
    if !dir.is_dir() {
        let have = super::store::list(templates).map(|l| l.into_iter().map(|e| e.name).collect()).unwrap_or_default();
        return Err(TemplateError::NotFound { name: name.into(), dir: templates.to_path_buf(), have });
    }
    if let Some(missing) = NEEDED.iter().find(|f| !dir.join(f).is_file()) {
        return Err(TemplateError::BadImage {
            path: dir.clone(),
            message: format!("it has no {missing}: only a template built by `mln template build` (kernel, initrd and an ext4 root) exports as an environment"),
        });
    }
    crate::name::check(crate::name::NameKind::Environment, name)?;
    for t in [QEMU_IMG, DEBUGFS, TAR] {
        tools::which(t)?;
    }
    if compression == Compression::Zstd {
        tools::which(tools::ZSTD)?;
    }
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).map_err(TemplateError::io("read", dir.join("cmdline")))?;
    let manifest = super::manifest::read(&dir);

    std::fs::create_dir_all(out).map_err(TemplateError::io("create", out))?;
    let env_toml = out.join("env.toml");
    let tarball = out.join(format!("rootfs.{}", compression.suffix()));
    for p in [&env_toml, &tarball] {
        if p.exists() {
            return Err(TemplateError::Io { what: "write", path: p.clone(), source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it exists; give another -o") });
        }
    }
    // Everything is made in here and moved out when complete.
    let tmp = tempfile::Builder::new().prefix(".export-").tempdir_in(out).map_err(TemplateError::io("create a directory in", out))?;
    let raw = tmp.path().join("root.img");
    note("qemu-img convert to a raw copy");
    tools::must(QEMU_IMG, &[OsStr::new("convert"), OsStr::new("-q"), OsStr::new("-O"), OsStr::new("raw"), dir.join("disk.qcow2").as_os_str(), raw.as_os_str()])?;
    if !is_ext(&raw)? {
        return Err(TemplateError::BadImage { path: dir.join("disk.qcow2"), message: "its disk is not an ext2/3/4 file system".into() });
    }
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).map_err(TemplateError::io("create", &tree))?;
    note("debugfs rdump of the root");
    let mut req = std::ffi::OsString::from("rdump / ");
    req.push(&tree);
    tools::must(DEBUGFS, &[OsStr::new("-R"), &req, raw.as_os_str()])?;
    if !tree.join("etc").is_dir() {
        return Err(TemplateError::Tool { tool: "debugfs", output: "rdump left no /etc: the disk does not hold a root file system".into() });
    }
    remove_tree(&tree.join("lost+found"))?;
    let listing = list_tree(&raw, &tree, tmp.path())?;
    restore(&raw, &tree, tmp.path(), &listing)?;

    note(&format!("tar {}", compression.env_name()));
    let part = tmp.path().join(format!("rootfs.{}", compression.suffix()));
    tools::must(
        TAR,
        &[
            OsStr::new("--create"),
            OsStr::new("--file"),
            part.as_os_str(),
            OsStr::new(compression.tar_flag()),
            OsStr::new("--numeric-owner"),
            OsStr::new("--sort=name"),
            OsStr::new("--directory"),
            tree.as_os_str(),
            OsStr::new("."),
        ],
    )?;
    let tar_bytes = std::fs::metadata(&part).map_err(TemplateError::io("read", &part))?.len();
    for f in ["vmlinuz", "initrd.img"] {
        std::fs::copy(dir.join(f), tmp.path().join(f)).map_err(TemplateError::io("copy", dir.join(f)))?;
    }
    let what = match &manifest {
        Some(m) => format!("mln template {name}: {} {}, {} packages (recipe {})", m.distribution, m.suite, m.packages.len(), m.recipe_origin),
        None => format!("mln template {name}"),
    };
    let text = env_description(name, &what, &kernel_params(&cmdline), compression);
    std::fs::write(tmp.path().join("env.toml"), text).map_err(TemplateError::io("write", tmp.path().join("env.toml")))?;
    // The description last: a directory with env.toml is complete.
    for (from, to) in
        [(part, tarball.clone()), (tmp.path().join("vmlinuz"), out.join("vmlinuz")), (tmp.path().join("initrd.img"), out.join("initrd.img")), (tmp.path().join("env.toml"), env_toml.clone())]
    {
        std::fs::rename(&from, &to).map_err(TemplateError::io("rename into", &to))?;
    }
    Ok(Exported { env_toml, tarball, tar_bytes, entries: listing.len() })
}

/// The template's command line without what names the VM's disk: the
/// deployment says where the root is.
fn kernel_params(cmdline: &str) -> String {
    cmdline.split_whitespace().filter(|w| !w.starts_with("root=") && *w != "rw" && *w != "ro").collect::<Vec<_>>().join(" ")
}

fn env_description(name: &str, what: &str, params: &str, compression: Compression) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        "# Exported by `mln template export {name} --env`; add it with `mln env add` on this file.\n\
         name = {}\ndescription = {}\nvisibility = \"public\"\nos = \"linux\"\nfilesystem = \"ext4\"\n\
         kernel = \"vmlinuz\"\ninitrd = \"initrd.img\"\nkernel_params = {}\n\n[image]\nfile = \"rootfs.{}\"\nkind = \"tar\"\ncompression = \"{}\"\n",
        q(name),
        q(what),
        q(params),
        compression.suffix(),
        compression.env_name()
    )
}

fn is_ext(raw: &Path) -> Result<bool, TemplateError> {
    use std::io::Read;
    let mut head = vec![0u8; 2048];
    let n = std::fs::File::open(raw).and_then(|mut f| f.read(&mut head)).map_err(TemplateError::io("read", raw))?;
    Ok(n >= 1082 && head[1080] == 0x53 && head[1081] == 0xef)
}

/// One entry of the image, from debugfs `ls -p`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    inode: u64,
    /// `i_mode`: type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// Every entry under the root (`"etc/passwd"` → its inode, mode, owner),
/// listed by one debugfs run over every directory the copy has.
fn list_tree(raw: &Path, tree: &Path, tmp: &Path) -> Result<HashMap<String, Entry>, TemplateError> {
    let mut dirs = vec![String::new()];
    let mut i = 0;
    while i < dirs.len() {
        let d = tree.join(&dirs[i]);
        let rd = std::fs::read_dir(&d).map_err(TemplateError::io("read", &d))?;
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if let Some(n) = e.file_name().to_str() {
                    dirs.push(if dirs[i].is_empty() { n.to_string() } else { format!("{}/{n}", dirs[i]) });
                }
            }
        }
        i += 1;
    }
    // debugfs reads its requests a line at a time and takes a quoted
    // argument as one: names with a newline or a quote are left as rdump
    // wrote them.
    let cmds: String = dirs.iter().filter(|d| !d.contains(['\n', '"'])).map(|d| format!("ls -p \"/{d}\"\n")).collect();
    let out = debugfs_script(raw, tmp, &cmds)?;
    Ok(parse_listing(&out))
}

/// Runs debugfs's requests from a file, returning what it printed (each
/// request's output after a `debugfs: REQUEST` line).
fn debugfs_script(raw: &Path, tmp: &Path, cmds: &str) -> Result<String, TemplateError> {
    let file = tmp.join("debugfs-requests");
    std::fs::write(&file, cmds).map_err(TemplateError::io("write", &file))?;
    tools::must(DEBUGFS, &[OsStr::new("-f"), file.as_os_str(), raw.as_os_str()])
}

fn parse_listing(out: &str) -> HashMap<String, Entry> {
    let mut map = HashMap::new();
    let mut dir: Option<String> = None;
    for line in out.lines() {
        if let Some(req) = line.strip_prefix("debugfs: ") {
            dir = req.strip_prefix("ls -p \"/").and_then(|r| r.strip_suffix('"')).map(String::from);
            continue;
        }
        let Some(d) = &dir else { continue };
        // `/inode/mode/uid/gid/name/size/` (size empty for a directory).
        let f: Vec<&str> = line.split('/').collect();
        if f.len() != 8 || !f[0].is_empty() || f[5] == "." || f[5] == ".." || f[5].is_empty() {
            continue;
        }
        let (Ok(inode), Ok(mode), Ok(uid), Ok(gid)) = (f[1].parse(), u32::from_str_radix(f[2], 8), f[3].parse(), f[4].parse()) else {
            continue;
        };
        let path = if d.is_empty() { f[5].to_string() } else { format!("{d}/{}", f[5]) };
        map.insert(path, Entry { inode, mode, uid, gid });
    }
    map
}

/// Puts back on the copy what rdump does not carry: modes with their
/// set-uid/set-gid/sticky bits, owners, device nodes, hard links.
fn restore(raw: &Path, tree: &Path, tmp: &Path, listing: &HashMap<String, Entry>) -> Result<(), TemplateError> {
    let mut paths: Vec<&String> = listing.keys().collect();
    paths.sort();
    let devices: Vec<&String> = paths.iter().copied().filter(|p| matches!(listing[*p].mode & S_IFMT, S_IFCHR | S_IFBLK) && !p.contains(['\n', '"'])).collect();
    if !devices.is_empty() {
        let cmds: String = devices.iter().map(|p| format!("stat \"/{p}\"\n")).collect();
        let out = debugfs_script(raw, tmp, &cmds)?;
        for (p, (major, minor)) in devices.iter().zip(device_numbers(&out)) {
            let e = &listing[*p];
            mknod(&tree.join(p), e.mode, major, minor)?;
        }
    }
    let mut first_of: HashMap<u64, &String> = HashMap::new();
    for p in paths {
        let e = &listing[p];
        let path = tree.join(p);
        match e.mode & S_IFMT {
            S_IFREG => {
                if let Some(first) = first_of.get(&e.inode) {
                    // Another name of an inode already copied.
                    std::fs::remove_file(&path).map_err(TemplateError::io("remove", &path))?;
                    std::fs::hard_link(tree.join(first), &path).map_err(TemplateError::io("link", &path))?;
                    continue;
                }
                first_of.insert(e.inode, p);
            }
            S_IFDIR | S_IFCHR | S_IFBLK => {}
            S_IFLNK => {
                let _ = std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid));
                continue;
            }
            // FIFOs and sockets: rdump skips them and a root needs none.
            _ => continue,
        }
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if m.uid() != e.uid || m.gid() != e.gid {
            std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(TemplateError::io("change the owner of", &path))?;
        }
        // After the owner: a chown clears set-uid and set-gid.
        if m.mode() & 0o7777 != e.mode & 0o7777 || m.uid() != e.uid || m.gid() != e.gid {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode & 0o7777)).map_err(TemplateError::io("set the mode of", &path))?;
        }
    }
    Ok(())
}

/// `Device major/minor number: 01:03 (hex 01:03)` of each `stat`, in order.
fn device_numbers(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Device major/minor number:"))
        .filter_map(|r| {
            let (maj, min) = r.split_whitespace().next()?.split_once(':')?;
            Some((maj.parse().ok()?, min.parse().ok()?))
        })
        .collect()
}

fn mknod(path: &Path, mode: u32, major: u64, minor: u64) -> Result<(), TemplateError> {
    use std::os::unix::ffi::OsStrExt;
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| TemplateError::io("create", path)(std::io::Error::other("a NUL in the name")))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, libc::makedev(major as u32, minor as u32)) };
    if r != 0 {
        return Err(TemplateError::io("create the device node", path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn remove_tree(p: &Path) -> Result<(), TemplateError> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TemplateError::io("remove", p)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn listings_and_device_numbers_parse() {
        let out = "debugfs 1.47.0\ndebugfs: ls -p \"/\"\n/2/040755/0/0/.//\n/12/040755/0/0/dev//\n/13/104755/0/0/su/100/\n\
                   debugfs: ls -p \"/dev\"\n/22/020666/0/0/null/0/\n/23/100644/1000/100/odd name/3/\n";
        let l = parse_listing(out);
        assert_eq!(l.len(), 4, "{l:?}");
        assert_eq!(l["su"], Entry { inode: 13, mode: 0o104755, uid: 0, gid: 0 });
        assert_eq!(l["dev/null"].mode & S_IFMT, S_IFCHR);
        assert_eq!(l["dev/odd name"].uid, 1000);
        assert_eq!(device_numbers("Inode: 22\n Device major/minor number: 01:03 (hex 01:03)\n"), [(1, 3)]);
        assert_eq!(kernel_params("root=/dev/vda rw console=ttyS0 quiet\n"), "console=ttyS0 quiet");
    }

    /// A small template made the way `mln template build` makes one (an
    /// ext4 image from a directory by `mke2fs -d`, as a qcow2), exported,
    /// unpacked, compared with what went in, and added to an environment
    /// library.
    #[test]
    fn a_small_template_exports_as_an_environment_the_library_takes() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || !["mke2fs", "debugfs", "qemu-img", "tar", "zstd"].iter().all(|t| tools::which((t, "")).is_ok()) {
            eprintln!("needs root, mke2fs, debugfs, qemu-img, tar, zstd; skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        for dir in ["etc", "usr/bin", "dev", "home/alice", "tmp"] {
            std::fs::create_dir_all(src.join(dir)).unwrap();
        }
        std::fs::write(src.join("etc/hostname"), "small\n").unwrap();
        std::fs::write(src.join("usr/bin/su"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("usr/bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(src.join("usr/bin/su"), src.join("usr/bin/su-again")).unwrap();
        std::fs::write(src.join("home/alice/notes"), "mine\n").unwrap();
        std::os::unix::fs::chown(src.join("home/alice/notes"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::chown(src.join("home/alice"), Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(src.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::symlink("../usr/bin/su", src.join("etc/su-link")).unwrap();
        mknod(&src.join("dev/null"), S_IFCHR | 0o666, 1, 3).unwrap();

        let templates = d.path().join("templates");
        let t = templates.join("small");
        std::fs::create_dir_all(&t).unwrap();
        let img = d.path().join("root.img");
        assert!(Command::new("mke2fs").args(["-q", "-F", "-t", "ext4", "-d"]).arg(&src).arg(&img).arg("8M").status().unwrap().success());
        assert!(Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&img).arg(t.join("disk.qcow2")).status().unwrap().success());
        std::fs::write(t.join("vmlinuz"), "kernel").unwrap();
        std::fs::write(t.join("initrd.img"), "initrd").unwrap();
        std::fs::write(t.join("cmdline"), "root=/dev/vda rw console=ttyS0 quiet\n").unwrap();

        let out = d.path().join("out");
        let ex = export(&templates, "small", &out, Compression::Zstd, &mut |_| {}).unwrap();
        assert_eq!(ex.tarball, out.join("rootfs.tar.zst"));
        let names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(!names.iter().any(|n| n.starts_with(".export-")), "{names:?}");
        // A second export into the same directory would replace the first.
        assert!(export(&templates, "small", &out, Compression::Zstd, &mut |_| {}).is_err());

        let back = d.path().join("back");
        std::fs::create_dir(&back).unwrap();
        assert!(Command::new("tar").args(["--zstd", "--numeric-owner", "-xpf"]).arg(&ex.tarball).arg("-C").arg(&back).status().unwrap().success());
        assert_eq!(std::fs::read_to_string(back.join("etc/hostname")).unwrap(), "small\n");
        let su = std::fs::metadata(back.join("usr/bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755, "set-uid kept");
        assert_eq!(su.ino(), std::fs::metadata(back.join("usr/bin/su-again")).unwrap().ino(), "hard link kept");
        let notes = std::fs::metadata(back.join("home/alice/notes")).unwrap();
        assert_eq!((notes.uid(), notes.gid()), (1000, 1000));
        assert_eq!(std::fs::metadata(back.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(std::fs::read_link(back.join("etc/su-link")).unwrap(), Path::new("../usr/bin/su"));
        let null = std::fs::metadata(back.join("dev/null")).unwrap();
        assert_eq!((null.mode() & S_IFMT, null.rdev()), (S_IFCHR, libc::makedev(1, 3)));
        assert!(!back.join("lost+found").exists());

        let state = crate::state::State::open(&d.path().join("state")).unwrap();
        let env = crate::baremetal::env::add(&state, &ex.env_toml).unwrap();
        assert_eq!((env.name.as_str(), env.version, env.kernel_params.as_str()), ("small", 1, "console=ttyS0 quiet"));
        assert_eq!(env.image.compression, crate::baremetal::env::Compression::Zstd);
        assert_eq!(env.filesystem.as_deref(), Some("ext4"));
        assert_eq!(env.image.file.sha256, crate::baremetal::env::sha256_of(&ex.tarball).unwrap());
    }

    #[test]
    fn an_imported_disk_is_not_exported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("t/img")).unwrap();
        std::fs::write(d.path().join("t/img/disk.qcow2"), b"QFI\xfb").unwrap();
        let e = export(&d.path().join("t"), "img", &d.path().join("o"), Compression::Gzip, &mut |_| {}).err().unwrap();
        assert!(matches!(e, TemplateError::BadImage { .. }), "{e}");
        let e = export(&d.path().join("t"), "nothere", &d.path().join("o"), Compression::Gzip, &mut |_| {}).err().unwrap();
        assert!(matches!(e, TemplateError::NotFound { .. }), "{e}");
        assert!(!d.path().join("o").exists());
    }
}
