//! Files and directories other local users must not read.

use super::StateError;
use std::path::Path;

/// The user QEMU runs as under libvirt's QEMU driver on Debian (the
/// embedded driver included, whose qemu.conf mln writes and leaves at the
/// built-in default).
const QEMU_USER: &str = "libvirt-qemu";

/// The group that must be able to reach guests' disks and libvirt's
/// per-domain files under the state directory: the QEMU user's, when mln
/// runs as root and that user exists.
fn qemu_gid() -> Option<libc::gid_t> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new(QEMU_USER).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer valid until the next call;
    // we copy the one field we need at once. mln calls it from one thread
    // (at `State::open`).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    (!pw.is_null()).then(|| unsafe { (*pw).pw_gid })
}

/// Makes the state directory unreachable for other local users: 0700, or
/// 0710 with the QEMU user's group where QEMU (another user) must pass
/// through it to open disks, seeds and libvirt's per-domain files. Mode
/// bits on the one top directory guard everything below it, including the
/// files libvirt makes with its own modes.
pub(super) fn guard(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match qemu_gid() {
        Some(gid) => {
            std::os::unix::fs::chown(dir, None, Some(gid)).map_err(|err| StateError::io(dir, "give to QEMU's group", err))?;
            0o710
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|err| StateError::io(dir, "make private", err))
}

/// Writes `data` to `path` through a temporary name, readable by its owner
/// only (seeds hold password hashes and the guest's configuration).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|err| StateError::io(&tmp, "write", err))?;
    f.write_all(data).map_err(|err| StateError::io(&tmp, "write", err))?;
    std::fs::rename(&tmp, path).map_err(|err| StateError::io(path, "write", err))
}

/// Makes an existing file readable by its owner only.
pub fn make_private(path: &Path) -> Result<(), StateError> {
    private(path, 0o600)
}


/// Sets `path`'s mode.
pub(super) fn private(path: &Path, mode: u32) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|err| StateError::io(path, "make private", err))
}
