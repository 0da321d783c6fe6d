//! libvirt's capability probes must not outlive mln.
//!
//! When the embedded QEMU driver (re)learns what QEMU can do, it starts
//! `qemu-system-* -machine none -qmp unix:ROOT/lib/qemu/qmp-XXXX/...
//! -daemonize` and talks to it over QMP. The probe is daemonized, so it is
//! nobody's child: if mln is killed mid-probe (kill -9 included), the probe
//! waits for QMP commands forever (35-45 MB each). Two safeguards:
//! * a watcher process, started with the driver, that holds the read end
//!   of a pipe whose write end only mln has: the kernel closes it however
//!   mln ends, and the watcher then kills the probes of that root, unless
//!   another mln has taken the root's lock in the meantime;
//! * the next mln that takes a root's lock kills whatever probes of that
//!   root are left (none can be its own: it has not opened the driver yet).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that turns an `mln` process into a watcher.
pub const WATCH_ENV: &str = "MLN_WATCH_PROBES";

static WATCHER: AtomicBool = AtomicBool::new(false);

/// Lets [`watch`] start watcher processes (the `mln` binary calls this;
/// a test binary that links the library cannot act as a watcher).
pub fn enable_watcher() {
    WATCHER.store(true, Ordering::SeqCst);
}

/// The processes of probes made under `root`: (pid, command line).
pub fn find(root: &Path) -> Vec<(i32, String)> {
    let needle = format!("unix:{}/lib/qemu/qmp-", root.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let is_probe = args.first().is_some_and(|a| a.contains("qemu-system"))
                && args.iter().any(|a| a.starts_with("none"))
                && args.iter().any(|a| a.starts_with(&needle));
            is_probe.then(|| (pid, args.join(" ")))
        })
        .collect()
}

/// Kills the probes of `root`; returns how many there were.
pub fn reap(root: &Path) -> usize {
    let found = find(root);
    for (pid, _) in &found {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    found.len()
}

/// Starts a watcher for `root` (when enabled); the returned pipe end must
/// live as long as the driver: dropping it (or dying) sets the watcher off.
pub fn watch(root: &Path) -> Option<std::process::ChildStdin> {
    if !WATCHER.load(Ordering::SeqCst) {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut child = std::process::Command::new(exe)
        .env(WATCH_ENV, root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take();
    // Reaped by nobody: it outlives us by design, and init takes it.
    std::mem::forget(child);
    stdin
}

/// The watcher's whole life: wait for the pipe to close, then, as soon as
/// no mln holds the root (another may have taken it meanwhile, or another
/// watcher be cleaning up), end the probes left there: with the root's lock
/// held, none of them can belong to a live mln.
pub fn run_watcher(root: PathBuf) -> std::process::ExitCode {
    use std::io::Read;
    use std::os::unix::io::AsRawFd;
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    let Ok(lock) = std::fs::OpenOptions::new().write(true).open(root.join("mln.lock")) else {
        return std::process::ExitCode::SUCCESS;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            reap(&root);
            break;
        }
        if std::time::Instant::now() > deadline {
            // The next mln to take the root ends them instead.
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::process::ExitCode::SUCCESS
}
