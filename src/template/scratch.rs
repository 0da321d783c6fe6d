//! Where a build's scratch root lives: in memory (a tmpfs) when this
//! machine has the room, else on disk beside the template.
//!
//! On disk, deleting the ~400 MB root after `mke2fs -d` took 21-31 s on a
//! shared ext4 mounted with `discard` (1.5 s on a quiet one), and dpkg
//! syncs every file it unpacks. On a tmpfs both cost nothing, and the image
//! the build keeps is written to disk either way.
//!
//! The tmpfs is mounted in a mount namespace of the build's own thread
//! (`unshare(CLONE_NEWNS)` acts on the calling thread only), so no other
//! process or thread ever sees it, and it goes away with the last process
//! in that namespace: a build killed with `kill -9` leaves no mount and no
//! memory behind, only its empty `.build-*` directory, as before.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where the root was built (recorded in the manifest).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Memory,
    Disk,
}

/// Room left to everything else on the machine beside the tmpfs.
const SPARE: u64 = 1 << 30;
/// Packages apt may still fetch into the root (the Open MPI recipe's whole
/// download is ~114 MB).
const FETCH: u64 = 512 << 20;

/// The tmpfs's size: whatever fits the image fits the root, plus the
/// packages apt keeps in it while it works.
pub fn tmpfs_bytes(image: u64, cached_debs: u64) -> u64 {
    image.saturating_add(cached_debs).saturating_add(FETCH)
}

/// Memory if `MemAvailable` covers the tmpfs's limit and [`SPARE`] besides
/// (a tmpfs only takes what is written into it, ~500 MB for the shipped
/// recipes, but the limit is what it may take); else why not.
pub fn choose(meminfo: &str, tmpfs: u64) -> Result<(), String> {
    let avail = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib << 10)
        .ok_or("no MemAvailable in /proc/meminfo")?;
    let need = tmpfs.saturating_add(SPARE);
    if avail >= need {
        Ok(())
    } else {
        Err(format!("{} MiB of memory available, {} MiB needed", avail >> 20, need >> 20))
    }
}

/// Gives the calling thread a mount namespace of its own (nothing mounted
/// in it propagates out) and mounts a tmpfs of `bytes` on `dir` in it.
/// Only for a thread that ends with the build: the namespace stays with it.
pub fn mount_tmpfs(dir: &Path, bytes: u64) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &[u8]| std::ffi::CString::new(s).map_err(|_| "a path with a NUL byte".to_string());
    let errno = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: unshare takes flags only; it detaches this thread's
    // file-system context and mount namespace from the others'.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(errno("unshare(CLONE_NEWNS)"));
    }
    let root = c(b"/")?;
    // SAFETY: valid C strings; null source, type and data are allowed for
    // a propagation change.
    if unsafe { libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) } != 0 {
        return Err(errno("making mounts private"));
    }
    let (src, target, fstype) = (c(b"mln-build")?, c(dir.as_os_str().as_bytes())?, c(b"tmpfs")?);
    let data = c(format!("size={bytes},mode=0755").as_bytes())?;
    // SAFETY: valid C strings; tmpfs's data is a C string of options.
    if unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), libc::MS_NOSUID, data.as_ptr().cast()) } != 0 {
        return Err(errno("mounting a tmpfs"));
    }
    Ok(())
}

/// Frees the tmpfs at once (its files need no deleting one by one).
pub fn unmount(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(target) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: a valid C string; a lazy unmount of our own mount.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_only_with_room_to_spare() {
        let info = "MemTotal: 24000000 kB\nMemAvailable:    3000000 kB\n";
        let t = tmpfs_bytes(2 << 30, 100 << 20);
        let e = choose(info, t).unwrap_err();
        assert!(e.contains("2929 MiB of memory available") && e.contains("3684 MiB needed"), "{e}");
        assert!(choose("MemAvailable: 23000000 kB\n", t).is_ok());
        assert!(choose("MemFree: 1 kB\n", t).is_err());
        // A recipe's size is checked to fit u64, not to leave room for the rest.
        assert!(choose(info, tmpfs_bytes(u64::MAX, 1 << 30)).is_err());
    }

    /// The tmpfs is seen by the thread that mounted it (and its children),
    /// never by the rest of the process; when that thread ends it is gone.
    #[test]
    fn the_tmpfs_is_the_build_threads_alone() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("root");
        std::fs::create_dir(&dir).unwrap();
        let mounted = std::sync::Barrier::new(2);
        let looked = std::sync::Barrier::new(2);
        let (in_thread, outside_sees) = std::thread::scope(|s| {
            let t = s.spawn(|| {
                let r = (|| {
                    mount_tmpfs(&dir, 1 << 20)?;
                    std::fs::write(dir.join("f"), b"x").map_err(|e| e.to_string())?;
                    let child = std::process::Command::new("stat").args(["-f", "-c", "%T"]).arg(&dir).output().map_err(|e| e.to_string())?;
                    let thread_sees = std::thread::scope(|s2| s2.spawn(|| dir.join("f").exists()).join().unwrap());
                    // Past the limit: ENOSPC, not the machine's memory.
                    let limited = std::fs::write(dir.join("big"), vec![0u8; 2 << 20]).is_err();
                    Ok::<_, String>((String::from_utf8_lossy(&child.stdout).trim().to_string(), thread_sees, limited))
                })();
                mounted.wait();
                looked.wait();
                unmount(&dir);
                r
            });
            mounted.wait();
            let outside = dir.join("f").exists();
            looked.wait();
            (t.join().unwrap(), outside)
        });
        let Ok((fs, thread_sees, limited)) = in_thread else {
            eprintln!("no mount namespace here ({in_thread:?}): skipped");
            return;
        };
        assert_eq!(fs, "tmpfs", "a child process sees the tmpfs");
        assert!(thread_sees, "a thread the build thread starts sees it");
        assert!(limited, "the tmpfs has its size limit");
        assert!(!outside_sees, "the rest of the process never sees it");
    }
}
