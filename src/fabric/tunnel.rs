//! A service host's Unix socket reached through the fabric's SSH session:
//! a socket on this machine whose every connection becomes a
//! `direct-streamlocal@openssh.com` channel to a socket over there. The
//! managing machine holds libvirt connections to service hosts' daemons
//! this way (`qemu+unix:///system?socket=LOCAL`), with the host keys and
//! logins the fabric already checked, and no TCP port opened anywhere.

use super::config::ConfigError;
use super::ssh::Conn;
use super::FabricError;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// The daemon's socket for `qemu:///system` (with modular daemons,
/// virtproxyd listens there). Never the read-only `libvirt-sock-ro`: a
/// forward is for managing and migrating, which it refuses.
const SYSTEM_SOCKET: &str = "/run/libvirt/libvirt-sock";

/// A Unix socket on this machine forwarding each connection to `remote` on the service host.
///
/// The forwarding runs as tasks of the tokio runtime `forward_unix` was
/// awaited in, so that runtime must go on running while the socket is
/// used: a multi-thread runtime does so on its workers even while the
/// thread that made the forward blocks in libvirt. It keeps the SSH
/// session open while it lives, even if its `Conn` is dropped (not if the
/// `Conn` is closed or the session is lost). Dropping it stops
/// accepting, ends the connections in flight and removes the socket and
/// its directory; libvirt connections opened through it must be closed
/// first.
pub struct UnixForward {
    pub path: PathBuf,
    /// The remote socket, for messages.
    remote: String,
    accept: JoinHandle<()>,
    // Last: removed after the socket in it.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for UnixForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixForward").field("path", &self.path).field("remote", &self.remote).finish()
    }
}

impl Drop for UnixForward {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every copy.
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Conn {
    /// A fresh socket on this machine (in a directory only this user can
    /// enter) whose every connection is forwarded to `remote`, a Unix
    /// socket on the service host. Nothing is opened over there until a
    /// connection comes: a socket that is missing there, or an sshd that
    /// forbids streamlocal forwarding, ends that connection (logged),
    /// which its client sees as the peer closing.
    pub async fn forward_unix(&self, remote: &str) -> Result<UnixForward, FabricError> {
        use std::os::unix::fs::PermissionsExt;
        let host = self.server.name.clone();
        if self.handle.is_closed() {
            return Err(FabricError::Unreachable(format!("{host}: cannot forward to {remote}: the SSH session is closed")));
        }
        let local = |what: &str, e: std::io::Error| FabricError::Local(format!("cannot forward to {remote} on {host}: {what}: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("mln-fwd-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(std::env::temp_dir())
            .map_err(|e| local("cannot make a private directory", e))?;
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).map_err(|e| local(&format!("cannot listen on {}", path.display()), e))?;
        let handle = Arc::clone(&self.handle);
        let remote_path = remote.to_string();
        let accept = tokio::spawn(async move {
            let mut copies = JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((stream, _)) => {
                            if handle.is_closed() {
                                tracing::warn!("{host}: SSH session lost: no longer forwarding to {remote_path}");
                                return;
                            }
                            copies.spawn(forward_one(Arc::clone(&handle), stream, host.clone(), remote_path.clone()));
                        }
                        // Out of descriptors and the like: the next accept may succeed.
                        Err(e) => {
                            tracing::warn!("{host}: forward to {remote_path}: cannot accept a connection: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    },
                    Some(_) = copies.join_next(), if !copies.is_empty() => {}
                }
            }
        });
        tracing::debug!("{}: forwarding {} to {remote}", self.server.name, path.display());
        Ok(UnixForward { path, remote: remote.to_string(), accept, _dir: dir })
    }
}

/// One connection: a channel to `remote`, then bytes both ways until
/// either side is done.
async fn forward_one<H: russh::client::Handler>(handle: Arc<russh::client::Handle<H>>, mut stream: UnixStream, host: String, remote: String) {
    let channel = match handle.channel_open_direct_streamlocal(remote.as_str()).await {
        Ok(c) => c,
        Err(russh::Error::ChannelOpenFailure(why)) => {
            // Dropping the stream closes it: the client sees the peer hang up.
            tracing::warn!(
                "{host}: sshd refused a channel to {remote} ({why:?}): the socket may be missing there, or sshd forbids it (AllowStreamLocalForwarding)"
            );
            return;
        }
        Err(e) => {
            tracing::warn!("{host}: cannot open a channel to {remote}: {e}");
            return;
        }
    };
    let mut channel = channel.into_stream();
    match tokio::io::copy_bidirectional(&mut stream, &mut channel).await {
        Ok((out, back)) => tracing::debug!("{host}: connection to {remote} done ({out} bytes sent, {back} received)"),
        Err(e) => tracing::debug!("{host}: connection to {remote} ended: {e}"),
    }
}

/// The libvirt daemon's socket on the service host for a libvirt URI as
/// configured (`Server::libvirt`): its `?socket=` if given, else
/// /run/libvirt/libvirt-sock for `qemu:///system` and
/// `qemu+unix:///system`. Other URIs have no socket to forward to.
pub fn libvirt_socket(uri: &str) -> Result<String, FabricError> {
    let unsupported = |why: &str| {
        FabricError::Config(ConfigError::Invalid(vec![format!(
            "libvirt URI {}: {why}; a forward reaches qemu:///system or qemu+unix:///system (optionally with ?socket=PATH)",
            crate::term::escape(uri)
        )]))
    };
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let Some(rest) = base.strip_prefix("qemu://").or_else(|| base.strip_prefix("qemu+unix://")) else {
        return Err(unsupported("not a local QEMU driver URI"));
    };
    // A host would mean a daemon elsewhere (TCP, TLS, SSH), not a socket on this service host.
    let Some(path) = rest.strip_prefix('/') else {
        return Err(unsupported("it names a host, not the service host's own daemon"));
    };
    let mut socket = None;
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        if let Some(v) = param.strip_prefix("socket=") {
            // As libvirt decodes URI parameters.
            socket = Some(crate::percent::decode(v).ok_or_else(|| unsupported("its socket= is not valid percent-encoded UTF-8"))?);
        }
    }
    let socket = match socket {
        Some(s) => s,
        None if path == "system" => return Ok(SYSTEM_SOCKET.to_string()),
        None => return Err(unsupported("only /system has a known socket (give ?socket= for others)")),
    };
    if !socket.starts_with('/') {
        return Err(unsupported("its socket= is not an absolute path"));
    }
    if socket.ends_with("-ro") {
        return Err(unsupported("its socket= is the read-only socket, which cannot manage or migrate domains"));
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_daemon_has_its_read_write_socket() {
        for uri in ["qemu:///system", "qemu+unix:///system", "qemu:///system?mode=legacy"] {
            assert_eq!(libvirt_socket(uri).unwrap(), "/run/libvirt/libvirt-sock", "{uri}");
        }
    }

    #[test]
    fn a_given_socket_is_used_decoded() {
        assert_eq!(libvirt_socket("qemu+unix:///system?socket=/var/run/x/libvirt-sock").unwrap(), "/var/run/x/libvirt-sock");
        assert_eq!(libvirt_socket("qemu:///system?mode=direct&socket=/srv/a%20b/sock").unwrap(), "/srv/a b/sock");
        assert_eq!(libvirt_socket("qemu:///session?socket=/run/user/1000/libvirt/virtqemud-sock").unwrap(), "/run/user/1000/libvirt/virtqemud-sock");
    }

    #[test]
    fn other_uris_are_refused_saying_what_is_supported() {
        for uri in [
            "qemu+ssh://root@h1/system",
            "qemu+tcp://h1/system",
            "qemu://h1/system",
            "test:///default",
            "xen:///system",
            "qemu:///session",
            "qemu:///system?socket=/run/libvirt/libvirt-sock-ro",
            "qemu:///system?socket=relative/sock",
            "qemu:///system?socket=%zz",
            "qemu:///system?socket=%ff",
            "",
            "qemu",
        ] {
            let e = libvirt_socket(uri).unwrap_err();
            assert!(matches!(e, FabricError::Config(_)), "{uri}: {e:?}");
            let m = e.to_string();
            assert!(m.contains("qemu:///system or qemu+unix:///system"), "{uri}: {m}");
        }
    }

    #[test]
    fn the_read_only_socket_is_never_chosen() {
        let e = libvirt_socket("qemu:///system?socket=/run/libvirt/libvirt-sock-ro").unwrap_err().to_string();
        assert!(e.contains("read-only"), "{e}");
    }
}
