//! The project's ed25519 key pairs, made on the first build and kept in
//! the project's state directory (`login/`, private keys 0600, the
//! directory 0700); removed with the project. Two pairs: `id_ed25519`
//! logs mln (and its user) into every guest; `cluster_ed25519` is given to
//! the guests of a `cluster` project so that nodes log into each other.

use super::LoginError;
use russh::keys::ssh_key::{private::{Ed25519Keypair, KeypairData}, LineEnding, PrivateKey};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const LOGIN: &str = "id_ed25519";
pub const CLUSTER: &str = "cluster_ed25519";
/// On a service host: the managing machine's login key, public half only
/// (`give`); a project that has it authorizes it instead of a key of its own.
pub const GIVEN: &str = "given_id_ed25519.pub";
/// In a guest's state directory: the host key mln made for it, given to
/// it in its seed (a template that takes it: `Template::takes_host_key`).
pub const HOST_KEY: &str = "ssh_host_ed25519_key";

/// One key pair as guests are given it: OpenSSH texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    pub private_openssh: String,
    pub public_openssh: String,
}

/// The keys a guest's seed carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestKeys {
    /// Authorized for root and every planned user.
    pub login: String,
    /// The cluster pair: authorized too, and installed as each account's
    /// own key (only where the `cluster` plugin is used).
    pub cluster: KeyPair,
    /// The guest's own host key, installed by cloud-init (`ssh_keys`), so
    /// that its public half is known before the guest boots.
    pub host: Option<KeyPair>,
}

pub fn dir(state: &crate::state::State, project: &str) -> Result<PathBuf, LoginError> {
    Ok(state.project_dir(project)?.join("login"))
}

/// The private key's path (what `ssh -i` takes).
pub fn private_path(state: &crate::state::State, project: &str) -> Result<PathBuf, LoginError> {
    Ok(dir(state, project)?.join(LOGIN))
}

/// The project's keys, made if missing. Safe when several hosts are
/// built at once: a pair is published with a link that fails if another
/// thread published first, and then that one is read.
pub fn ensure(state: &crate::state::State, project: &str) -> Result<GuestKeys, LoginError> {
    ensure_in(&dir(state, project)?, project)
}

fn ensure_in(d: &Path, project: &str) -> Result<GuestKeys, LoginError> {
    make_dir(d)?;
    let cluster = pair(d, CLUSTER, &format!("mln-{project}-cluster"))?;
    let given = d.join(GIVEN);
    let login = match std::fs::read_to_string(&given) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => pair(d, LOGIN, &format!("mln-{project}"))?.public_openssh,
        Err(e) => return Err(LoginError::io("read", &given)(e)),
    };
    Ok(GuestKeys { login, cluster, host: None })
}

/// The keys a service host is to give the guests it builds for this
/// project: this machine's (made if missing), so that this machine logs
/// into them (book/src/login.md).
pub fn for_service_host(state_dir: &Path, project: &str) -> Result<crate::fabric::proto::ProjectKeys, LoginError> {
    let d = crate::name::inside(state_dir, &["projects", project, "login"]).map_err(crate::state::StateError::from)?;
    let k = ensure_in(&d, project)?;
    Ok(crate::fabric::proto::ProjectKeys { login_public: k.login, cluster_private: k.cluster.private_openssh })
}

/// On a service host: takes the managing machine's keys as the project's
/// (replacing any made here before), checked to be keys first: they come
/// over the wire.
pub fn give(state: &crate::state::State, project: &str, keys: &crate::fabric::proto::ProjectKeys) -> Result<(), LoginError> {
    let d = dir(state, project)?;
    make_dir(&d)?;
    let bad = |name: &str, e: &dyn std::fmt::Display| LoginError::Key { path: d.join(name), message: format!("the managing machine sent no valid key: {e}") };
    let login = russh::keys::ssh_key::PublicKey::from_openssh(keys.login_public.trim()).map_err(|e| bad(GIVEN, &e))?;
    let cluster = PrivateKey::from_openssh(&keys.cluster_private).map_err(|e| bad(CLUSTER, &e))?;
    let login = login.to_openssh().map_err(|e| bad(GIVEN, &e))?;
    let public = cluster.public_key().to_openssh().map_err(|e| bad(CLUSTER, &e))?;
    let text = cluster.to_openssh(LineEnding::LF).map_err(|e| bad(CLUSTER, &e))?;
    crate::state::write_private(&d.join(GIVEN), format!("{login}\n").as_bytes())?;
    crate::state::write_private(&d.join(format!("{CLUSTER}.pub")), format!("{public}\n").as_bytes())?;
    crate::state::write_private(&d.join(CLUSTER), text.as_bytes())?;
    Ok(())
}

fn make_dir(d: &Path) -> Result<(), LoginError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // The project's directory with the usual mode: QEMU (another user)
    // passes through it to the guests' files; only `login/` is private.
    if let Some(project) = d.parent() {
        std::fs::create_dir_all(project).map_err(LoginError::io("create", project))?;
    }
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d) {
        Ok(()) => {}
        Err(e) => return Err(LoginError::io("create", d)(e)),
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(LoginError::io("make private", d))
}

fn pair(d: &Path, name: &str, comment: &str) -> Result<KeyPair, LoginError> {
    let path = d.join(name);
    if !path.exists() {
        let key = generate(comment, &path)?;
        let text = key.to_openssh(LineEnding::LF).map_err(|e| LoginError::Key { path: path.clone(), message: e.to_string() })?;
        let public = key.public_key().to_openssh().map_err(|e| LoginError::Key { path: path.clone(), message: e.to_string() })?;
        publish(&d.join(format!("{name}.pub")), format!("{public}\n").as_bytes(), 0o644)?;
        publish(&path, text.as_bytes(), 0o600)?;
    }
    read(&path)
}

/// The host key of the guest whose state directory is `host_dir`: made
/// once per build of the guest (the directory goes with a removal or a
/// rebuild, and a rebuilt guest gets a new key). The private half goes
/// only into the guest's seed, which is as private as this file.
pub fn host_key(host_dir: &Path, project: &str, host: &str) -> Result<KeyPair, LoginError> {
    pair(host_dir, HOST_KEY, &format!("mln-{project}-{host}"))
}

/// The host key made for the guest whose state directory is `host_dir`,
/// if one was.
pub fn host_key_made(host_dir: &Path) -> Result<Option<KeyPair>, LoginError> {
    let path = host_dir.join(HOST_KEY);
    if !path.exists() {
        return Ok(None);
    }
    read(&path).map(Some)
}

/// The public half of the host key made for the guest whose state
/// directory is `host_dir`, as `type base64`; `None` if none was made.
pub fn host_key_public(host_dir: &Path) -> Result<Option<String>, LoginError> {
    let path = host_dir.join(format!("{HOST_KEY}.pub"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoginError::io("read", &path)(e)),
    };
    let mut key = russh::keys::ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| LoginError::Key { path: path.clone(), message: e.to_string() })?;
    // Comments are the guest's to choose; known_hosts holds `type base64`.
    key.set_comment("");
    Ok(Some(key.to_openssh().map_err(|e| LoginError::Key { path, message: e.to_string() })?.trim().to_string()))
}

/// Reads a pair back, checking the private key is private.
pub fn read(path: &Path) -> Result<KeyPair, LoginError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(LoginError::io("read", path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(LoginError::Key { path: path.into(), message: "readable by others than its owner: refused".into() });
    }
    let text = std::fs::read_to_string(path).map_err(LoginError::io("read", path))?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| LoginError::Key { path: path.into(), message: e.to_string() })?;
    let public = key.public_key().to_openssh().map_err(|e| LoginError::Key { path: path.into(), message: e.to_string() })?;
    Ok(KeyPair { private_openssh: text, public_openssh: public })
}

/// A fresh ed25519 key from the kernel's random source (ssh-key does
/// the curve arithmetic).
fn generate(comment: &str, path: &Path) -> Result<PrivateKey, LoginError> {
    let mut seed = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom).and_then(|mut f| f.read_exact(&mut seed)).map_err(LoginError::io("read", urandom))?;
    let kp = Ed25519Keypair::from_seed(&seed);
    seed.fill(0);
    PrivateKey::new(KeypairData::Ed25519(kp), comment).map_err(|e| LoginError::Key { path: path.into(), message: e.to_string() })
}

/// Writes `data` under a temporary name with its final mode, then links
/// it into place unless a file is already there (another builder's).
fn publish(path: &Path, data: &[u8], mode: u32) -> Result<(), LoginError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()) + &format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), ""));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(LoginError::io("write", &tmp))?;
    f.write_all(data).map_err(LoginError::io("write", &tmp))?;
    drop(f);
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(LoginError::io("write", path)(e)),
    }
}

/// A pair written into `dir` under `name` (tests elsewhere need real keys).
#[cfg(test)]
pub(crate) fn generate_into(dir: &Path, name: &str) -> Result<PathBuf, LoginError> {
    pair(dir, name, "test")?;
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn given_keys_replace_the_service_hosts_own_and_junk_is_refused() {
        let here = tempfile::tempdir().unwrap();
        let there = crate::state::State::open(&tempfile::tempdir().unwrap().keep()).unwrap();
        let sent = for_service_host(here.path(), "p").unwrap();
        assert!(here.path().join("projects/p/login").join(LOGIN).exists(), "the private half stays here");
        let own = ensure(&there, "p").unwrap();
        assert_ne!(own.login, sent.login_public);
        give(&there, "p", &sent).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&there.project_dir("p").unwrap()) & 0o001, 0o001, "QEMU passes through the project's directory");
        assert_eq!(mode(&dir(&there, "p").unwrap()), 0o700);
        let got = ensure(&there, "p").unwrap();
        assert_eq!(got.login, sent.login_public.trim());
        assert_eq!(got.cluster.private_openssh, sent.cluster_private);
        let junk = crate::fabric::proto::ProjectKeys { login_public: "ssh-ed25519 nonsense".into(), cluster_private: sent.cluster_private.clone() };
        assert!(matches!(give(&there, "p", &junk), Err(LoginError::Key { .. })));
        let junk = crate::fabric::proto::ProjectKeys { login_public: sent.login_public.clone(), cluster_private: "-----BEGIN x".into() };
        assert!(matches!(give(&there, "p", &junk), Err(LoginError::Key { .. })));
        assert_eq!(ensure(&there, "p").unwrap(), got, "a refused gift changes nothing");
    }

    #[test]
    fn a_pair_is_made_once_private_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let a = pair(t.path(), LOGIN, "c").unwrap();
        let b = pair(t.path(), LOGIN, "c").unwrap();
        assert_eq!(a, b);
        assert!(a.public_openssh.starts_with("ssh-ed25519 "));
        assert!(a.private_openssh.contains("BEGIN OPENSSH PRIVATE KEY"));
        assert_eq!(std::fs::metadata(t.path().join(LOGIN)).unwrap().permissions().mode() & 0o777, 0o600);
        let other = pair(t.path(), CLUSTER, "c").unwrap();
        assert_ne!(a.public_openssh, other.public_openssh);
        std::fs::set_permissions(t.path().join(LOGIN), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&t.path().join(LOGIN)).is_err());
    }
}
