//! libvirt on a service host reached through the fabric's SSH session
//! (`fabric::tunnel`): a local socket forwarded to the host's libvirtd,
//! opened with the `virt` crate from blocking code while a multi-thread
//! runtime carries the bytes, as live migration between service hosts
//! does.
//!
//! Needs root: `cargo test --test e2e_fabric_tunnel -- --include-ignored`.

#[path = "support/testhosts.rs"]
mod testhosts;

use mln::fabric::ssh::Conn;
use mln::fabric::tunnel::libvirt_socket;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use testhosts::Lab;

/// One lab at a time: on a 2-core machine several at once starve each
/// other's sshd past its timeouts.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LABS: Mutex<()> = Mutex::new(());
    LABS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything mln logs in this test process, wherever it runs (the
/// forwarding runs on the runtime's workers).
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("mln=debug")
            .with_ansi(false)
            .with_writer(move || Sink(w.clone()))
            .init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn connect(rt: &tokio::runtime::Runtime, lab: &Lab, host: &str) -> Conn {
    let state = tempfile::tempdir().unwrap();
    let fabric = mln::fabric::Fabric::find(Some(&lab.fabric("")), state.path()).unwrap();
    rt.block_on(mln::fabric::ssh::connect(&fabric.server(host))).unwrap_or_else(|e| panic!("ssh to {host}: {e}"))
}

fn uri(path: &std::path::Path) -> String {
    format!("qemu+unix:///system?socket={}", path.display())
}

/// `f` on another thread, failing the test if it has not returned after a
/// minute: what is tested is that it returns at all.
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what} hung (or panicked)"))
}

#[test]
#[ignore = "slow, root: a service host in a namespace with its own sshd and libvirtd; run with --ignored"]
fn libvirt_through_the_ssh_session_reaches_the_service_hosts_daemon() {
    let _one = one_at_a_time();
    log();
    let lab = Lab::new(1, true);
    let rt = runtime();
    let conn = connect(&rt, &lab, "h1");
    let sock = libvirt_socket(&conn.server.libvirt).unwrap();
    assert_eq!(sock, "/run/libvirt/libvirt-sock");
    let fwd = rt.block_on(conn.forward_unix(&sock)).unwrap();
    let dir = fwd.path.parent().unwrap().to_path_buf();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());

    // From this (blocking) thread, as the migration code does; the runtime's workers forward.
    let lv = virt::connect::Connect::open(Some(&uri(&fwd.path))).unwrap();
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(), "h1");
    assert_eq!(lv.hostname().unwrap(), "h1", "the namespace's libvirtd, not this machine's");
    // Read-write: a domain defined through the forward is there for the host's own virsh.
    let name = "mln-tunnel-probe";
    let xml = format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><os><type arch='{}'>hvm</type></os></domain>",
        std::env::consts::ARCH
    );
    let dom = lv.define_domain_xml(&xml).unwrap();
    assert_eq!(lab.domains("h1"), vec![name.to_string()]);
    let listed: Vec<String> = lv.list_all_domains(0).unwrap().iter().map(|d| d.name().unwrap()).collect();
    assert_eq!(listed, vec![name.to_string()]);
    dom.undefine().unwrap();
    assert!(lab.domains("h1").is_empty());

    // Two connections at once, each busy on its own thread, then one closed under the other.
    let second = virt::connect::Connect::open(Some(&uri(&fwd.path))).unwrap();
    let path = fwd.path.clone();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let u = uri(&path);
            std::thread::spawn(move || {
                let c = virt::connect::Connect::open(Some(&u)).unwrap();
                (0..20).map(|_| (c.hostname().unwrap(), c.list_all_domains(0).unwrap().len())).collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        assert!(w.join().unwrap().iter().all(|r| *r == ("h1".to_string(), 0)));
    }
    drop(lv);
    assert_eq!(second.hostname().unwrap(), "h1");
    drop(second);

    let path = fwd.path.clone();
    drop(fwd);
    assert!(!path.exists() && !dir.exists(), "the socket and its directory are removed");
    rt.block_on(conn.close());
}

#[test]
#[ignore = "slow, root: a service host in a namespace with its own sshd and libvirtd; run with --ignored"]
fn a_socket_missing_or_forbidden_there_ends_that_connection_only() {
    let _one = one_at_a_time();
    log();
    let lab = Lab::new(1, true);
    let rt = runtime();
    let conn = connect(&rt, &lab, "h1");

    let missing = rt.block_on(conn.forward_unix("/run/libvirt/no-such-sock")).unwrap();
    for _ in 0..2 {
        let u = uri(&missing.path);
        let r = returns("opening libvirt through a forward to a missing socket", move || {
            virt::connect::Connect::open(Some(&u)).map(|_| ()).map_err(|e| e.to_string())
        });
        let e = r.expect_err("no daemon there");
        eprintln!("libvirt says: {e}");
    }
    // A plain client sees the peer close.
    let mut s = std::os::unix::net::UnixStream::connect(&missing.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(s.read(&mut [0; 16]).unwrap(), 0);
    assert!(logged().contains("h1: sshd refused a channel to /run/libvirt/no-such-sock"), "{}", logged());

    // The session is unharmed: the daemon's socket through it works.
    let good = rt.block_on(conn.forward_unix(&libvirt_socket("qemu:///system").unwrap())).unwrap();
    let u = uri(&good.path);
    assert_eq!(returns("libvirt after a refusal", move || virt::connect::Connect::open(Some(&u)).unwrap().hostname().unwrap()), "h1");
    drop((missing, good));
    rt.block_on(conn.close());

    // An sshd that forbids forwarding to sockets.
    lab.kill_sshd("h1");
    let cfg = lab.host("h1").root.join("sshd_config");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}AllowStreamLocalForwarding no\n")).unwrap();
    lab.start_sshd("h1");
    let conn = connect(&rt, &lab, "h1");
    let fwd = rt.block_on(conn.forward_unix("/run/libvirt/libvirt-sock")).unwrap();
    let u = uri(&fwd.path);
    let r = returns("opening libvirt where sshd forbids the forward", move || virt::connect::Connect::open(Some(&u)).map(|_| ()).map_err(|e| e.to_string()));
    eprintln!("libvirt says: {}", r.expect_err("sshd forbids it"));
    assert!(logged().contains("h1: sshd refused a channel to /run/libvirt/libvirt-sock"), "{}", logged());
    // Still a working session for commands.
    let out = rt.block_on(conn.exec("hostname", b"")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "h1");
    drop(fwd);
    rt.block_on(conn.close());
}
