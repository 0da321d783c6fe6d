//! Does KVM work here? `/dev/kvm` existing is not enough. On our machines a
//! bare `hlt` through the KVM ioctls works and so does a BIOS boot sector,
//! yet a Linux guest hangs without a word. So the probe boots a Linux
//! kernel under QEMU with KVM and no root file system: a working KVM gets
//! to the kernel's "VFS: Unable to mount root fs" panic in about a second.
//! The answer is cached per host boot, since a failing probe costs its
//! timeout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(8);

/// Whether KVM runs Linux guests here. `MLN_KVM=0` or `1` overrides the
/// probe. `cache_dir` keeps the answer until the machine reboots.
pub fn works(cache_dir: &Path, kernels: &[PathBuf]) -> bool {
    match std::env::var("MLN_KVM").as_deref() {
        Ok("0") => return false,
        Ok("1") => return true,
        _ => {}
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = cache_dir.join("kvm-probe");
    if let Ok(c) = std::fs::read_to_string(&cache) {
        if let Some((id, answer)) = c.split_once('\n') {
            if id == boot_id.trim() {
                return answer.trim() == "works";
            }
        }
    }
    let ok = probe(kernels).is_ok();
    // Written under a fresh name and renamed: never through a link.
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(cache_dir) {
        use std::io::Write;
        if write!(tmp, "{}\n{}\n", boot_id.trim(), if ok { "works" } else { "broken" }).is_ok() {
            let _ = tmp.persist(&cache);
        }
    }
    ok
}

/// The first readable Linux kernel among `extra` and /boot.
fn kernel(extra: &[PathBuf]) -> Option<PathBuf> {
    let mut boot: Vec<PathBuf> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz")))
        .collect();
    boot.sort();
    extra.iter().cloned().chain(boot).find(|p| std::fs::File::open(p).is_ok())
}

pub fn probe(kernels: &[PathBuf]) -> Result<(), String> {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return Err("/dev/kvm cannot be opened".into());
    }
    let k = kernel(kernels).ok_or("no Linux kernel to try KVM with")?;
    boots(&k, "kvm", TIMEOUT)
}

/// Whether `kernel` gets to its no-root-file-system panic under `accel`.
fn boots(k: &Path, accel: &str, timeout: Duration) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    // The console goes to a file in a fresh private directory: a fixed name
    // under /tmp could be a link planted by someone else.
    let dir = tempfile::Builder::new().prefix("mln-probe-").tempdir().map_err(|e| format!("cannot make a directory for the KVM probe: {e}"))?;
    let out = dir.path().join("console.log");
    let mut cmd = std::process::Command::new("qemu-system-x86_64");
    cmd.args(["-accel", accel, "-machine", "pc", "-m", "128", "-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(k)
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", out.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // The probe dies with mln, even with kill -9.
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
    let deadline = Instant::now() + timeout;
    let reached = |s: &str| s.contains("VFS:") || s.contains("Kernel panic");
    let result = loop {
        if std::fs::read_to_string(&out).is_ok_and(|s| reached(&s)) {
            break Ok(());
        }
        if let Ok(Some(_)) = child.try_wait() {
            break if std::fs::read_to_string(&out).is_ok_and(|s| reached(&s)) {
                Ok(())
            } else {
                Err("QEMU with KVM stopped before the kernel got far".into())
            };
        }
        if Instant::now() > deadline {
            break Err(format!("a Linux guest under {accel} got nowhere in {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    /// The probe's test boot succeeds where the accelerator works: QEMU's
    /// emulation works wherever QEMU is installed.
    #[test]
    fn the_probe_boot_succeeds_under_emulation() {
        let k = super::kernel(&[]).expect("a kernel in /boot (setup.sh installs one)");
        // Links planted, again and again while the probe runs, where an
        // earlier mln wrote the probe's console (a predictable name under
        // /tmp) must not be written through.
        let victim = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(victim.path(), "precious").unwrap();
        let names: Vec<_> = (1..64)
            .map(|t| std::env::temp_dir().join(format!("mln-tcg-probe-{}-ThreadId({t}).log", std::process::id())))
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for p in &names {
                        let _ = std::os::unix::fs::symlink(victim.path(), p);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            });
            let r = super::boots(&k, "tcg", std::time::Duration::from_secs(120));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        for p in &names {
            let _ = std::fs::remove_file(p);
        }
        r.unwrap();
        assert_eq!(std::fs::read_to_string(victim.path()).unwrap(), "precious");
    }

    #[test]
    fn the_answer_is_cached_until_the_machine_reboots() {
        let dir = tempfile::tempdir().unwrap();
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        std::fs::write(dir.path().join("kvm-probe"), format!("{}\nworks\n", id.trim())).unwrap();
        assert!(super::works(dir.path(), &[]));
        std::fs::write(dir.path().join("kvm-probe"), format!("{}\nbroken\n", id.trim())).unwrap();
        assert!(!super::works(dir.path(), &[]));
    }
}
