//! Templates: what a host's disk (or, for kernel bundles, its boot) is made
//! from. In the templates directory a template is
//! * a disk image file (qcow2 or raw), or
//! * a directory holding `vmlinuz`, optionally `initrd.gz` (or `initrd.img`),
//!   `cmdline`, and a disk image `disk.qcow2`/`disk.img`: booted directly.
//!
//! As in MLN, `NAME` also finds `NAME-VERSION` entries and takes the latest
//! version.

use crate::local_error::LocalError;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub disk: Option<(PathBuf, &'static str)>,
    pub kernel: Option<(PathBuf, Option<PathBuf>, String)>,
    /// Built by `mln template build` (it has a manifest): cloud-init with
    /// its `ssh` module, which installs the host key the seed gives it
    /// (book/src/login.md). Other templates' keys come from the console.
    pub takes_host_key: bool,
}

pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet no_timer_check";

pub fn format_of(path: &Path) -> &'static str {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok();
    if ok && &magic == b"QFI\xfb" {
        "qcow2"
    } else {
        "raw"
    }
}

/// Version order: numbers compared as numbers (`1.10` after `1.9`).
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                num.clear();
            }
            text.push(c);
        }
    }
    if !num.is_empty() {
        out.push((num.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

/// The template `name` in `dir`; one that is not there, or not whole, is
/// refused with what the directory has.
pub fn find(dir: &Path, name: &str) -> Result<Template, LocalError> {
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(LocalError::io("read templates directory", dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let chosen = if entries.iter().any(|e| e == name) {
        name.to_string()
    } else {
        let prefix = format!("{name}-");
        entries
            .iter()
            .filter(|e| e.strip_prefix(&prefix).is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())))
            .max_by_key(|e| version_key(&e[prefix.len()..]))
            .cloned()
            .ok_or_else(|| {
                let mut all = entries.clone();
                all.sort();
                LocalError::Refused(format!(
                    "template `{name}` is not in {} (it has: {})",
                    dir.display(),
                    if all.is_empty() { "nothing".to_string() } else { all.join(", ") }
                ))
            })?
    };
    let path = crate::name::inside(dir, &[&chosen]).map_err(|e| LocalError::Refused(e.to_string()))?;
    if path.is_dir() {
        let k = path.join("vmlinuz");
        if !k.exists() {
            return Err(LocalError::Refused(format!("template directory {} has no vmlinuz", path.display())));
        }
        let initrd = ["initrd.gz", "initrd.img"].iter().map(|f| path.join(f)).find(|p| p.exists());
        let cmdline = std::fs::read_to_string(path.join("cmdline")).map(|s| s.trim().to_string()).unwrap_or_else(|_| DEFAULT_CMDLINE.into());
        let disk = ["disk.qcow2", "disk.img"].iter().map(|f| path.join(f)).find(|p| p.exists()).map(|p| {
            let f = format_of(&p);
            (p, f)
        });
        let takes_host_key = path.join(crate::template::manifest::FILE).is_file();
        Ok(Template { name: chosen, disk, kernel: Some((k, initrd, cmdline)), takes_host_key })
    } else {
        let f = format_of(&path);
        Ok(Template { name: chosen, disk: Some((path, f)), kernel: None, takes_host_key: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_then_the_latest_version() {
        let d = tempfile::tempdir().unwrap();
        for f in ["debian-4.0.ext3", "debian-10.2.ext3", "debian-9.13.ext3", "ubuntu.qcow2"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        std::fs::write(d.path().join("ubuntu.qcow2"), b"QFI\xfb....").unwrap();
        assert_eq!(find(d.path(), "debian").unwrap().name, "debian-10.2.ext3");
        assert_eq!(find(d.path(), "debian-4.0.ext3").unwrap().name, "debian-4.0.ext3");
        let u = find(d.path(), "ubuntu.qcow2").unwrap();
        assert_eq!(u.disk.unwrap().1, "qcow2");
        let err = find(d.path(), "centos").unwrap_err();
        assert!(matches!(&err, LocalError::Refused(m) if m.contains("debian-10.2.ext3")), "{err}");
    }

    #[test]
    fn kernel_bundles() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("tiny-1");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("vmlinuz"), b"k").unwrap();
        std::fs::write(b.join("initrd.gz"), b"i").unwrap();
        let t = find(d.path(), "tiny").unwrap();
        let (k, i, c) = t.kernel.unwrap();
        assert_eq!((k, i, c.as_str()), (b.join("vmlinuz"), Some(b.join("initrd.gz")), DEFAULT_CMDLINE));
        assert!(t.disk.is_none());
    }
}
