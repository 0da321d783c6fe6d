//! A libvirt connection. Every call is blocking FFI; callers on an async
//! runtime run them with `spawn_blocking`.

use std::path::Path;
use std::sync::Once;
use virt::connect::Connect;
use virt::domain::Domain;

/// How long a second mln waits for the embedded driver.
const EMBED_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

pub struct Libvirt {
    conn: Connect,
    pub uri: String,
    /// Held while an embedded driver is open (dropped after `conn`).
    _embed_lock: Option<std::fs::File>,
    /// Keeps the probe watcher waiting (see `probes`).
    _watch: Option<std::process::ChildStdin>,
}

fn embed_lock(root: &Path) -> Result<std::fs::File, LibvirtError> {
    use std::os::unix::io::AsRawFd;
    let path = root.join("mln.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LibvirtError::local(format!("cannot open {}", path.display()), e))?;
    let deadline = std::time::Instant::now() + EMBED_WAIT;
    let mut said = false;
    // SAFETY: flock on a descriptor we own.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if std::time::Instant::now() > deadline {
            return Err(LibvirtError {
                what: format!("another mln has been using {} for {} s", root.display(), EMBED_WAIT.as_secs()),
                message: "giving up".into(),
                retry: true,
            });
        }
        if !said {
            tracing::info!("waiting for another mln using {}", root.display());
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(f)
}

/// The embedded QEMU driver (and events generally) need libvirt's event
/// loop running on a thread before the connection opens; once per process.
fn event_loop() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if virt::event::event_register_default_impl().is_ok() {
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                })
                .expect("a thread can be started");
        }
    });
}

/// A libvirt call that failed: what was asked, libvirt's message, and
/// whether the same call may succeed later (a lost or busy connection, a
/// time-out) as opposed to failing again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct LibvirtError {
    pub what: String,
    pub message: String,
    pub retry: bool,
}

impl LibvirtError {
    /// An error of mln's own around libvirt (a file it could not make).
    fn local(what: String, message: impl std::fmt::Display) -> LibvirtError {
        LibvirtError { what, message: message.to_string(), retry: false }
    }
}

pub(super) fn err(what: &str, e: virt::error::Error) -> LibvirtError {
    use virt::error::ErrorNumber as N;
    let retry = e.code().is_any(vec![N::NoConnect, N::Rpc, N::OperationTimeout, N::ResourceBusy, N::AgentUnresponsive, N::SystemError]);
    LibvirtError { what: what.to_string(), message: e.message().to_string(), retry }
}

impl From<LibvirtError> for crate::machine::MachineError {
    fn from(e: LibvirtError) -> Self {
        if e.retry {
            crate::machine::MachineError::Transient(e.to_string())
        } else {
            crate::machine::MachineError::Failed(e.to_string())
        }
    }
}

impl Libvirt {
    /// `qemu:///embed?root=DIR` runs the QEMU driver inside this process:
    /// no daemon. Only one embed root per process (a libvirt limit).
    pub fn embedded(root: &Path) -> Result<Libvirt, LibvirtError> {
        let etc = root.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| LibvirtError::local(format!("cannot create {}", etc.display()), e))?;
        // QEMU's own output goes to a file, not to virtlogd: no daemon.
        let conf = etc.join("qemu.conf");
        if !conf.exists() {
            std::fs::write(&conf, "stdio_handler = \"file\"\nremember_owner = 0\n").map_err(|e| LibvirtError::local(format!("cannot write {}", conf.display()), e))?;
        }
        // libvirt lets one process at a time use an embedded root, and a
        // process that fails to start the driver cannot try again: so mln
        // processes take turns on a lock of their own first, and the second
        // waits for the first.
        let lock = embed_lock(root)?;
        // Probes left by an mln that was killed: none can be ours yet.
        super::probes::reap(root);
        let watch = super::probes::watch(root);
        let mut lv = Libvirt::open(&format!("qemu:///embed?root={}", root.display()))?;
        lv._embed_lock = Some(lock);
        lv._watch = watch;
        lv.settle();
        Ok(lv)
    }

    /// Opening an embedded driver reconnects to the QEMU processes of
    /// running domains in background threads. A process that ends before
    /// they finish makes libvirt treat the reconnection as failed and kill
    /// the guest ("reason=daemon"), and can crash on the way out. Every
    /// reconnection holds a job on its domain; an API call that needs a job
    /// (memory statistics) waits for it, so after this nothing is pending.
    fn settle(&self) {
        if let Ok(active) = self.conn.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE) {
            for d in active {
                let _ = d.memory_stats(0);
            }
        }
    }

    /// Any URI; an embedded one gets its root prepared as in `embedded`.
    pub fn connect(uri: &str) -> Result<Libvirt, LibvirtError> {
        match uri.strip_prefix("qemu:///embed?root=") {
            Some(root) => Libvirt::embedded(Path::new(root)),
            None => Libvirt::open(uri),
        }
    }

    pub fn open(uri: &str) -> Result<Libvirt, LibvirtError> {
        // libvirt prints errors to stderr by default; we report them.
        virt::error::clear_error_callback();
        event_loop();
        // The embedded driver starts QEMU as our child (crate::memory).
        crate::memory::allow_huge_pages();
        // On one fixed CPU: the driver keeps its QEMU capabilities only
        // while it opens on a CPU that answers CPUID as before (steady_cpu).
        let conn = super::steady_cpu::on_first_cpu(|| Connect::open(Some(uri))).map_err(|e| err(&format!("cannot connect to {uri}"), e))?;
        Ok(Libvirt { conn, uri: uri.to_string(), _embed_lock: None, _watch: None })
    }

    /// The connection itself, for calls that need two (migration).
    pub(super) fn conn(&self) -> &Connect {
        &self.conn
    }

    pub fn define(&self, xml: &str) -> Result<Domain, LibvirtError> {
        self.conn.define_domain_xml(xml).map_err(|e| err("cannot define the domain", e))
    }

    pub fn start(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?.create().map_err(|e| err(&format!("cannot start {name}"), e))
    }

    pub fn domain(&self, name: &str) -> Result<Domain, LibvirtError> {
        self.conn.lookup_domain_by_name(name).map_err(|e| err(&format!("no domain {name}"), e))
    }

    pub fn is_active(&self, name: &str) -> Result<bool, LibvirtError> {
        self.domain(name)?.is_active().map_err(|e| err(name, e))
    }

    /// Stops (forcefully) and forgets a domain, with any saved memory
    /// image; a domain already gone is fine, so this can be run again after
    /// an interruption.
    pub fn destroy_and_undefine(&self, name: &str) -> Result<(), LibvirtError> {
        let Ok(d) = self.conn.lookup_domain_by_name(name) else { return Ok(()) };
        if d.is_active().unwrap_or(false) {
            d.destroy().map_err(|e| err(&format!("cannot stop {name}"), e))?;
        }
        d.undefine_flags(virt::sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            .map_err(|e| err(&format!("cannot undefine {name}"), e))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.conn.lookup_domain_by_name(name).is_ok()
    }

    /// Asks the guest to shut down (ACPI power button).
    pub fn shutdown(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?.shutdown().map_err(|e| err(&format!("cannot shut down {name}"), e))
    }

    pub fn destroy(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?.destroy().map_err(|e| err(&format!("cannot stop {name}"), e))
    }

    /// Saves memory state to disk and stops; the next start restores it.
    pub fn save(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?.managed_save(0).map_err(|e| err(&format!("cannot save {name}"), e))
    }

    /// Saves a running domain's memory to `path` (a file of mln's, not
    /// libvirt's managed image) and stops it.
    pub fn save_to(&self, name: &str, path: &Path) -> Result<(), LibvirtError> {
        let d = self.domain(name)?;
        let to = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| LibvirtError::local(format!("cannot save {name}"), e))?;
        // virt 0.5 has no binding for virDomainSaveFlags.
        // SAFETY: the domain is alive for the call; `to` is NUL-terminated;
        // a null dxml is allowed.
        let r = unsafe { virt::sys::virDomainSaveFlags(d.as_ptr(), to.as_ptr(), std::ptr::null(), 0) };
        if r < 0 {
            return Err(err(&format!("cannot save {name} to {}", path.display()), virt::error::Error::last_error()));
        }
        Ok(())
    }

    /// Starts a domain from its memory image at `path`, with `xml` (its
    /// definition with this host's paths); paused if asked (the guest
    /// runs no instruction).
    pub fn restore_from(&self, path: &Path, xml: &str, paused: bool) -> Result<(), LibvirtError> {
        let flags = if paused { virt::sys::VIR_DOMAIN_SAVE_PAUSED } else { virt::sys::VIR_DOMAIN_SAVE_RUNNING };
        self.conn.restore_domain_flags(&path.to_string_lossy(), Some(xml), flags).map_err(|e| err(&format!("cannot restore from {}", path.display()), e))
    }

    /// The definition held in a memory image.
    pub fn image_definition(&self, path: &Path) -> Result<String, LibvirtError> {
        self.conn
            .save_image_xml_desc(&path.to_string_lossy(), virt::sys::VIR_DOMAIN_SAVE_IMAGE_XML_SECURE)
            .map_err(|e| err(&format!("cannot read the memory image {}", path.display()), e))
    }

    /// What this hypervisor can run (libvirt's capabilities XML).
    pub fn capabilities(&self) -> Result<String, LibvirtError> {
        self.conn.capabilities().map_err(|e| err("cannot read the hypervisor's capabilities", e))
    }

    /// Resumes a running domain that is paused (mln pauses none itself;
    /// an interrupted move or restore can leave one so). Whether it was.
    pub fn resume_if_paused(&self, name: &str) -> Result<bool, LibvirtError> {
        let d = self.domain(name)?;
        match d.state() {
            Ok((s, _)) if s.is_any(vec![virt::domain::DomainState::Paused]) => {
                d.resume().map_err(|e| err(&format!("cannot resume {name}"), e))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Saves a (paused) domain's memory as `save` does, to be restored
    /// running: the image otherwise records the pause, and the next start
    /// would leave the guest paused.
    pub fn save_to_run(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?.managed_save(virt::sys::VIR_DOMAIN_SAVE_RUNNING).map_err(|e| err(&format!("cannot save {name}"), e))
    }

    pub fn state(&self, name: &str) -> crate::machine::PowerState {
        use crate::machine::PowerState;
        match self.conn.lookup_domain_by_name(name) {
            Err(_) => PowerState::Absent,
            Ok(d) if d.is_active().unwrap_or(false) => PowerState::Running,
            Ok(d) if d.has_managed_save(0).unwrap_or(false) => PowerState::Saved,
            Ok(_) => PowerState::ShutOff,
        }
    }

    /// Names of all domains, running or not.
    pub fn domains(&self) -> Result<Vec<String>, LibvirtError> {
        let all = self.conn.list_all_domains(0).map_err(|e| err("cannot list domains", e))?;
        Ok(all.iter().filter_map(|d| d.name().ok()).collect())
    }

    /// libvirt's version and every domain with its state.
    pub fn inventory(&self) -> Result<(String, Vec<(String, String)>), LibvirtError> {
        let v = self.conn.lib_version().map_err(|e| err("cannot ask libvirt's version", e))?;
        let version = format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000);
        let names = self.domains()?;
        Ok((version, names.into_iter().map(|n| { let s = self.state(&n).as_str().to_string(); (n, s) }).collect()))
    }
}
