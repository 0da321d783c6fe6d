//! The templates directory as a user manages it: list, show, remove,
//! import. Names are checked by the one name grammar (src/name.rs) before
//! any path is made from them.

use super::error::TemplateError;
use super::manifest::{self, Manifest};
use super::tools::{self, QEMU_IMG};
use crate::name::{check, NameKind};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    pub name: String,
    /// `bundle` (a directory booted directly) or the image's format.
    pub kind: &'static str,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

/// The templates, by name; entries starting with `.` are builds and
/// imports under way (or left by a killed one) and are not listed.
pub fn list(dir: &Path) -> Result<Vec<Entry>, TemplateError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TemplateError::Io { what: "read", path: dir.to_path_buf(), source: e }),
    };
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect();
    names.sort();
    Ok(names.into_iter().map(|n| entry(dir, n)).collect())
}

fn entry(dir: &Path, name: String) -> Entry {
    let p = dir.join(&name);
    if p.is_dir() {
        let bytes = std::fs::read_dir(&p).map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0);
        Entry { name, kind: "bundle", bytes, manifest: manifest::read(&p) }
    } else {
        let bytes = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        Entry { name, kind: crate::backend::template::format_of(&p), bytes, manifest: None }
    }
}

/// One template, named exactly.
pub fn show(dir: &Path, name: &str) -> Result<Entry, TemplateError> {
    existing(dir, name)?;
    Ok(entry(dir, name.to_string()))
}

fn existing(dir: &Path, name: &str) -> Result<PathBuf, TemplateError> {
    check(NameKind::Template, name)?;
    let p = dir.join(name);
    if std::fs::symlink_metadata(&p).is_err() {
        let have = list(dir)?.into_iter().map(|e| e.name).collect();
        return Err(TemplateError::NotFound { name: name.to_string(), dir: dir.to_path_buf(), have });
    }
    Ok(p)
}

/// Removes a template no project's disk is an overlay of.
pub fn remove(dir: &Path, name: &str, projects: Option<&Path>) -> Result<(), TemplateError> {
    let p = existing(dir, name)?;
    if let Some(projects) = projects {
        let users = users_of(&p, projects);
        if !users.is_empty() {
            return Err(TemplateError::InUse { name: name.to_string(), users });
        }
    }
    let r = if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    r.map_err(TemplateError::io("remove", &p))
}

/// `project/host` of every disk under `projects` whose qcow2 backing file
/// is `template` or inside it.
pub fn users_of(template: &Path, projects: &Path) -> Vec<String> {
    let mut users = Vec::new();
    let Ok(rd) = std::fs::read_dir(projects) else { return users };
    for project in rd.filter_map(|e| e.ok()) {
        let Ok(hosts) = std::fs::read_dir(project.path()) else { continue };
        for host in hosts.filter_map(|e| e.ok()) {
            let Ok(files) = std::fs::read_dir(host.path()) else { continue };
            for f in files.filter_map(|e| e.ok()) {
                if backing_of(&f.path()).is_some_and(|b| Path::new(&b).starts_with(template)) {
                    users.push(format!("{}/{}", project.file_name().to_string_lossy(), host.file_name().to_string_lossy()));
                    break;
                }
            }
        }
    }
    users.sort();
    users
}

/// A qcow2 file's backing file name, read from its header.
fn backing_of(p: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).ok()?;
    let mut h = [0u8; 20];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"QFI\xfb" {
        return None;
    }
    let off = u64::from_be_bytes(h[8..16].try_into().ok()?);
    let len = u32::from_be_bytes(h[16..20].try_into().ok()?) as usize;
    if off == 0 || len == 0 || len > 4096 {
        return None;
    }
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut name = vec![0u8; len];
    f.read_exact(&mut name).ok()?;
    String::from_utf8(name).ok()
}

/// The name an imported file gets by default: its file name with the
/// extension made `.qcow2` (what it is once imported).
pub fn default_import_name(file: &Path) -> String {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("imported");
    let stem = stem.strip_suffix(".img").or_else(|| stem.strip_suffix(".qcow2")).unwrap_or(stem);
    format!("{stem}.qcow2")
}

/// Copies a qcow2 or raw disk image the user has into the templates
/// directory as a standalone qcow2. `qemu-img info` decides what the file
/// is; one with a backing file is refused (it would make the template
/// read a file we did not check, wherever it points).
pub fn import(dir: &Path, file: &Path, name: &str) -> Result<Entry, TemplateError> {
    check(NameKind::Template, name)?;
    let bad = |message: String| TemplateError::BadImage { path: file.to_path_buf(), message };
    if !file.is_file() {
        return Err(bad("not a file".into()));
    }
    let info = tools::must(QEMU_IMG, &[OsStr::new("info"), OsStr::new("--output=json"), file.as_os_str()])?;
    let info: serde_json::Value = serde_json::from_str(&info).map_err(|e| bad(format!("qemu-img info: {e}")))?;
    let format = info["format"].as_str().unwrap_or_default().to_string();
    if info.get("backing-filename").is_some() {
        return Err(bad("it has a backing file; `qemu-img convert` it to a standalone image first".into()));
    }
    match format.as_str() {
        "qcow2" => {}
        "raw" => looks_bootable(file).map_err(bad)?,
        other => return Err(bad(format!("format `{other}`: only qcow2 and raw images are imported"))),
    }
    std::fs::create_dir_all(dir).map_err(TemplateError::io("create", dir))?;
    let dest = dir.join(name);
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Err(bad(format!("a template `{name}` exists; remove it first or give --name")));
    }
    let tmp = tempfile::Builder::new().prefix(".import-").tempdir_in(dir).map_err(TemplateError::io("create a directory in", dir))?;
    let img = tmp.path().join("image.qcow2");
    tools::must(QEMU_IMG, &[OsStr::new("convert"), OsStr::new("-q"), OsStr::new("-f"), OsStr::new(&format), OsStr::new("-O"), OsStr::new("qcow2"), file.as_os_str(), img.as_os_str()])?;
    std::fs::rename(&img, &dest).map_err(TemplateError::io("rename into", &dest))?;
    Ok(entry(dir, name.to_string()))
}

/// Every file is a "raw image" to qemu-img; a disk has a partition table
/// (MBR or GPT) or is an ext2/3/4 file system.
fn looks_bootable(file: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = vec![0u8; 2048];
    let n = std::fs::File::open(file).and_then(|mut f| f.read(&mut head)).map_err(|e| e.to_string())?;
    let mbr = n >= 512 && head[510] == 0x55 && head[511] == 0xaa;
    let gpt = n >= 520 && &head[512..520] == b"EFI PART";
    let ext = n >= 1082 && head[1080] == 0x53 && head[1081] == 0xef;
    if mbr || gpt || ext {
        Ok(())
    } else {
        Err("a raw file with no partition table and no ext file system".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_missing_templates_list_what_is_there() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.qcow2"), b"QFI\xfb").unwrap();
        std::fs::create_dir(d.path().join(".build-x")).unwrap();
        assert_eq!(list(d.path()).unwrap().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a.qcow2"]);
        assert!(matches!(remove(d.path(), "../etc", None), Err(TemplateError::BadName(_))));
        let e = remove(d.path(), "b", None).unwrap_err();
        assert!(e.to_string().contains("a.qcow2"), "{e}");
        remove(d.path(), "a.qcow2", None).unwrap();
        assert!(list(d.path()).unwrap().is_empty());
    }

    #[test]
    fn a_template_backing_a_disk_is_not_removed() {
        let d = tempfile::tempdir().unwrap();
        let templates = d.path().join("templates");
        let t = templates.join("deb");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("disk.qcow2"), b"QFI\xfb").unwrap();
        let host = d.path().join("projects/p/h");
        std::fs::create_dir_all(&host).unwrap();
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-u", "-b"])
            .arg(t.join("disk.qcow2"))
            .arg(host.join("disk.qcow2"))
            .arg("16M")
            .status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("qemu-img not usable here; skipped");
            return;
        }
        let e = remove(&templates, "deb", Some(&d.path().join("projects"))).unwrap_err();
        assert!(matches!(&e, TemplateError::InUse { users, .. } if users == &["p/h"]), "{e}");
        assert!(t.exists());
    }

    #[test]
    fn imports_refuse_what_is_not_a_disk() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("notes.txt");
        std::fs::write(&f, vec![b'x'; 4096]).unwrap();
        if tools::which(QEMU_IMG).is_err() {
            return;
        }
        let e = import(&d.path().join("t"), &f, "n").unwrap_err();
        assert!(matches!(e, TemplateError::BadImage { .. }), "{e}");
        assert!(!d.path().join("t/n").exists());
        assert_eq!(default_import_name(Path::new("/x/debian-12-genericcloud-amd64.raw")), "debian-12-genericcloud-amd64.qcow2");
    }
}
