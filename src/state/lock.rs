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
    pub fn acquire(path: &Path, project: &str) -> Result<ProjectLock, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open lock {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let who = holder.trim();
            return Err(format!(
                "another mln is working on project {project}{}; wait for it to finish",
                if who.is_empty() { String::new() } else { format!(" ({who})") }
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(ProjectLock { _file: file })
    }
}
