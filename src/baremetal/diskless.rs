//! A diskless node's own configuration (DRBL serves a per-node tree over
//! NFS; mln serves one archive): the files a filesystem template gets
//! (hostname, hosts, addresses, accounts, keys, files, startup) as a
//! `newc` cpio archive, which the diskless init fetches over TFTP from
//! `config/<mac>.cpio` in the boot tree and unpacks over its RAM root.
//! Only that node's files are in it; its name is the node's checked MAC.

/// `files` (path, content, mode) as a `newc` cpio archive, paths without
/// their leading `/` (what `cpio -id` in `/` expects). A path with `..`
/// or a control character is refused (the plan checks them already; this
/// archive is unpacked as root).
pub fn archive(files: &[(String, String, u32)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (i, (path, content, mode)) in files.iter().enumerate() {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.split('/').any(|c| c == ".." || c.is_empty()) || name.chars().any(|c| c.is_control()) {
            return Err(format!("{:?} cannot be a diskless node's file", crate::term::escape(path)));
        }
        entry(&mut out, i as u32 + 1, name, 0o100000 | (mode & 0o7777), content.as_bytes());
    }
    entry(&mut out, 0, "TRAILER!!!", 0, b"");
    Ok(out)
}

fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
    // devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
    let fields = [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Where a node's archive is, relative to the boot tree's root.
pub fn path(mac: &str) -> String {
    format!("config/{mac}.cpio")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_unpacks_the_files_with_their_modes() {
        let files = vec![("/etc/hostname".to_string(), "bm6\n".to_string(), 0o644), ("/etc/mln/startup.sh".to_string(), "#!/bin/sh\necho hi\n".to_string(), 0o755)];
        let a = archive(&files).unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut c = std::process::Command::new("cpio");
        c.args(["-idm", "--quiet"]).current_dir(d.path()).stdin(std::process::Stdio::piped());
        let Ok(mut child) = c.spawn() else { return }; // no cpio here: the format checks below still run
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(d.path().join("etc/hostname")).unwrap(), "bm6\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.path().join("etc/mln/startup.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn paths_that_climb_out_are_refused() {
        for p in ["/../etc/passwd", "/etc/../../x", "/", "/etc//x", "/etc/x\ny"] {
            assert!(archive(&[(p.to_string(), String::new(), 0o644)]).is_err(), "{p:?}");
        }
        let a = archive(&[]).unwrap();
        assert!(a.starts_with(b"070701") && a.len() % 4 == 0);
        assert!(String::from_utf8_lossy(&a).contains("TRAILER!!!"));
    }
}
