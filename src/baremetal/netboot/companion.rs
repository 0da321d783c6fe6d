//! The process mln starts beside its dnsmasq, with the same lifetime: the
//! boot network's IPv6 "no router here" responder ([`super::ra`]) and the
//! boot files over HTTP ([`super::http`]). It is `mln-libvirt` started
//! with [`COMPANION_ENV`] set, in a session of its own: it outlives the
//! `mln` that started it, as dnsmasq does, and ends when that dnsmasq has
//! ended or the boot interface is gone (a test or a kill that ends
//! dnsmasq ends it too). Either service that cannot start costs only
//! time: iPXE then waits for its router discovery, or fetches over TFTP.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Makes `mln-libvirt` this process: the boot interface's name.
pub const COMPANION_ENV: &str = "MLN_NETBOOT_COMPANION";
/// The records directory it belongs to (how its process is told from
/// others').
pub const RECORDS_ENV: &str = "MLN_NETBOOT_RECORDS";
/// The pid of the dnsmasq it stands beside.
pub const SIBLING_ENV: &str = "MLN_NETBOOT_DNSMASQ";
/// Where HTTP listens (`ADDRESS:PORT`), and the root it serves.
pub const HTTP_LISTEN_ENV: &str = "MLN_NETBOOT_HTTP_LISTEN";
pub const HTTP_ROOT_ENV: &str = "MLN_NETBOOT_HTTP_ROOT";
/// Its HTTP requests, a line each, in the records directory.
pub const HTTP_LOG: &str = "http.log";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets [`Companion::ensure`] start companions (`mln-libvirt` calls this;
/// a test binary linking the library cannot be one).
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// The companion of one boot interface, tracked by its pid file in the
/// records directory.
pub struct Companion {
    pub records: PathBuf,
    pub interface: String,
    /// Where the boot files are served over HTTP, and from which root.
    pub http: Option<(SocketAddr, PathBuf)>,
}

impl Companion {
    pub fn pid_path(&self) -> PathBuf {
        self.records.join("companion.pid")
    }

    /// The running companion's pid, if it is this one (a reused pid is not).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_path()).ok()?.trim().parse().ok()?;
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let want = format!("{RECORDS_ENV}={}", self.records.display());
        env.split(|b| *b == 0).any(|v| v == want.as_bytes()).then_some(pid)
    }

    /// Starts it beside the dnsmasq `sibling` unless it runs. What cannot
    /// start is said, not an error: the network boot still works, slower.
    pub fn ensure(&self, sibling: i32) {
        if !ENABLED.load(Ordering::SeqCst) || self.pid().is_some() {
            return;
        }
        // Tried here first, so that a refusal is said rather than lost
        // with a child's exit status.
        let iface = crate::term::escape(&self.interface);
        let ra = super::ra::open(&self.interface).map(drop);
        if let Err(e) = &ra {
            tracing::warn!("no IPv6 router advertisement on {iface}: {e} (iPXE waits about 13 s for one on each network boot)");
        }
        let http = match &self.http {
            Some((addr, _)) => TcpListener::bind(addr).map(drop).map_err(|e| tracing::warn!("the boot files are not served over HTTP on {addr}: {e} (iPXE fetches them over TFTP)")).is_ok(),
            None => false,
        };
        if ra.is_err() && !http {
            return;
        }
        if let Err(e) = self.spawn(sibling) {
            tracing::warn!("cannot start the network boot's companion on {iface}: {e}");
        }
    }

    fn spawn(&self, sibling: i32) -> std::io::Result<()> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let mut c = std::process::Command::new(exe);
        c.env(COMPANION_ENV, &self.interface)
            .env(RECORDS_ENV, &self.records)
            .env(SIBLING_ENV, sibling.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((addr, root)) = &self.http {
            c.env(HTTP_LISTEN_ENV, addr.to_string()).env(HTTP_ROOT_ENV, root);
        }
        // SAFETY: setsid is async-signal-safe; its own session, so a
        // terminal's hang-up does not end it (as dnsmasq daemonizes).
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = c.spawn()?;
        std::fs::write(self.pid_path(), format!("{}\n", child.id()))?;
        // Reaped by nobody: it outlives this mln, as dnsmasq does.
        std::mem::forget(child);
        Ok(())
    }

    /// Stops it (if running).
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) of the process checked above as ours.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            super::wait_ended(pid);
        }
        let _ = std::fs::remove_file(self.pid_path());
    }
}

/// The companion's whole life (`mln-libvirt` with [`COMPANION_ENV`] set).
pub fn run(interface: &std::ffi::OsStr) -> std::process::ExitCode {
    let interface = interface.to_string_lossy().into_owned();
    let sibling: Option<i32> = std::env::var(SIBLING_ENV).ok().and_then(|p| p.parse().ok());
    let Ok(ifindex) = super::ra::index(&interface) else { return std::process::ExitCode::FAILURE };
    let stopped = Arc::new(AtomicBool::new(false));
    let alive = {
        let (stopped, interface) = (stopped.clone(), interface.clone());
        move || !stopped.load(Ordering::SeqCst) && sibling.is_none_or(|p| !super::ended(p)) && super::ra::index(&interface).ok() == Some(ifindex)
    };
    let http = http_server(alive.clone());
    // The responder returns when it should end; without IPv6 this thread
    // only watches.
    if super::ra::serve(&interface, alive.clone()).is_err() {
        while alive() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    stopped.store(true, Ordering::SeqCst);
    if let Some(h) = http {
        let _ = h.join();
    }
    std::process::ExitCode::SUCCESS
}

/// The HTTP server's thread, when asked for and its address could be bound.
fn http_server(alive: impl Fn() -> bool + Send + 'static) -> Option<std::thread::JoinHandle<()>> {
    let listen: SocketAddr = std::env::var(HTTP_LISTEN_ENV).ok()?.parse().ok()?;
    let root = PathBuf::from(std::env::var_os(HTTP_ROOT_ENV)?);
    let records = PathBuf::from(std::env::var_os(RECORDS_ENV)?);
    let listener = TcpListener::bind(listen).ok()?;
    let log = std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(records.join(HTTP_LOG)).ok());
    Some(std::thread::spawn(move || {
        let write = move |line: &str| {
            use std::io::Write;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            if let Some(f) = log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                let _ = writeln!(f, "{}.{:03} {line}", now.as_secs(), now.subsec_millis());
            }
        };
        let _ = super::http::serve(listener, root, alive, write);
    }))
}
