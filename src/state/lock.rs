//! One mln per project at a time: an advisory lock (flock) on a file that
//! names the holder. The kernel drops it when the process dies, so a crash
//! never leaves a project locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

#[derive(Debug)]
pub struct ProjectLock {
    _file: File,
}

impl ProjectLock {
    pub fn acquire(path: &Path, project: &str) -> Result<ProjectLock, super::StateError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| super::StateError::io(path, "open lock", e))?;
            // A lock just released can still be held for a moment by a
            // child forked in between (until its exec closes the copy of
            // the descriptor): look again for a short while before saying
            // another mln has it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            let r = loop {
                // SAFETY: flock on a file descriptor we own.
                let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                if r == 0 || std::time::Instant::now() > deadline {
                    break r;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            if r != 0 {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let who = crate::term::escape(holder.trim()).into_owned();
                return Err(super::StateError::Locked { project: project.to_string(), holder: (!who.is_empty()).then_some(who) });
            }
            // `remove` deletes the lock file of the project it removed: a
            // lock taken on a file that is no longer at `path` locks nothing.
            let same = match (file.metadata(), std::fs::symlink_metadata(path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "pid {}", std::process::id());
            return Ok(ProjectLock { _file: file });
        }
    }
}
