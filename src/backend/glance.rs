//! Power states read from the embedded QEMU driver's own files, without
//! opening it. Opening the embedded driver makes libvirt reconnect to
//! every running guest's QEMU (several QMP round trips each, answered by
//! emulated guests competing for the CPUs), and mln must wait for those
//! reconnections before it may leave (see `Libvirt::settle`): up to a
//! second or more for a `status` that changes nothing. libvirt keeps
//! what it knows of each domain in files under the root, written whole
//! (a temporary file renamed), and these say the same:
//!
//! * `etc/qemu/NAME.xml`: the domain is defined;
//! * `run/qemu/NAME.xml` and `run/qemu/NAME.pid`: it was started, by that
//!   QEMU process (alive, and a QEMU named for it: it runs);
//! * `lib/qemu/save/NAME.save`: its memory is saved (the next start
//!   restores it).
//!
//! Anything else (a file unreadable, a state libvirt would have to settle)
//! answers None, and the caller asks libvirt.

use crate::machine::PowerState;
use std::path::Path;

/// The power state of domain `name` under the embedded root `root`.
pub fn state(root: &Path, name: &str) -> Option<PowerState> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let defined = root.join("etc/qemu").join(format!("{name}.xml"));
    let status = root.join("run/qemu").join(format!("{name}.xml"));
    let pid_file = root.join("run/qemu").join(format!("{name}.pid"));
    let saved = root.join("lib/qemu/save").join(format!("{name}.save"));
    if status.exists() {
        let pid: u32 = std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()?;
        return qemu_of(pid, name).then_some(PowerState::Running);
    }
    match (defined.exists(), saved.exists()) {
        (false, _) => Some(PowerState::Absent),
        (true, true) => Some(PowerState::Saved),
        (true, false) => Some(PowerState::ShutOff),
    }
}

/// Whether process `pid` is the QEMU of guest `name` (not a process that
/// took the number of a QEMU gone since).
fn qemu_of(pid: u32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
    let first = args.next().unwrap_or_default();
    let is_qemu = first.rsplit('/').next().is_some_and(|b| b.starts_with("qemu-system-") || b == "qemu-kvm");
    let guest = format!("guest={name},");
    is_qemu && args.any(|a| a.starts_with(&guest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for sub in ["etc/qemu", "run/qemu", "lib/qemu/save"] {
            std::fs::create_dir_all(d.path().join(sub)).unwrap();
        }
        d
    }

    #[test]
    fn states_follow_libvirts_files() {
        let r = root();
        let p = r.path();
        assert_eq!(state(p, "a.p"), Some(PowerState::Absent));
        std::fs::write(p.join("etc/qemu/a.p.xml"), "<domain/>").unwrap();
        assert_eq!(state(p, "a.p"), Some(PowerState::ShutOff));
        std::fs::write(p.join("lib/qemu/save/a.p.save"), "x").unwrap();
        assert_eq!(state(p, "a.p"), Some(PowerState::Saved));
        std::fs::remove_file(p.join("lib/qemu/save/a.p.save")).unwrap();
        // A QEMU of that guest runs: a process named so, with its name.
        // Named through argv[0], not a copy of bash: executing a file just
        // written fails with ETXTBSY while another test thread's fork still
        // holds it open for writing (CI saw it).
        use std::os::unix::process::CommandExt;
        let mut qemu = std::process::Command::new("/bin/bash").arg0("/usr/bin/qemu-system-x86_64").args(["-c", "sleep 60; true", "-name", "guest=a.p,debug-threads=on"]).spawn().unwrap();
        std::fs::write(p.join("run/qemu/a.p.xml"), "<domstatus state='running'/>").unwrap();
        std::fs::write(p.join("run/qemu/a.p.pid"), qemu.id().to_string()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state(p, "a.p") != Some(PowerState::Running) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(state(p, "a.p"), Some(PowerState::Running));
        // Another guest's QEMU, or a process that is not QEMU, is not it.
        assert!(!qemu_of(qemu.id(), "b.p"));
        assert!(!qemu_of(std::process::id(), "a.p"));
        qemu.kill().unwrap();
        qemu.wait().unwrap();
        // Its QEMU gone, the status file left: not running (libvirt would
        // find it shut off, crashed).
        assert_eq!(state(p, "a.p"), None);
        std::fs::write(p.join("run/qemu/a.p.pid"), "not a number").unwrap();
        assert_eq!(state(p, "a.p"), None);
        assert_eq!(state(p, "../x"), None);
    }
}
