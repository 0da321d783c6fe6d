//! Fake programs for unit tests. A file written by this process and then
//! executed can fail with ETXTBSY: another test thread's fork, between its
//! fork and exec, still holds the write descriptor. The file is written by
//! a child `sh` instead, so no descriptor open for writing ever exists in
//! this process.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `content` to `path`, mode 0755, from a child process.
pub fn write_executable(path: &Path, content: &str) {
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh runs");
    sh.stdin.take().expect("piped").write_all(content.as_bytes()).expect("sh reads its input");
    assert!(sh.wait().expect("sh ends").success(), "cannot write {}", path.display());
}
