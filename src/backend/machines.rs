//! The libvirt backend: power, provisioning and saving of machines that
//! are libvirt domains (KVM, QEMU's emulation, Xen), through any libvirt
//! connection (the embedded QEMU driver by default); live migration in
//! `super::migrate`.

use super::domain::domain_name;
use super::libvirt::Libvirt;
use super::template::Template;
use crate::machine::{Backend, Done, Machine, MachineError, Outcome, Power, PowerState, Provision, Snapshot, Status, StopMode};
use crate::plan::Plan;
use crate::progress::Telemetry;
use crate::state::{ResourceKind, State};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LibvirtMachines<'a> {
    pub(super) state: &'a State,
    pub(super) lv: Libvirt,
    pub(super) templates: PathBuf,
    prepared: Mutex<Option<std::sync::Arc<Prepared>>>,
    /// More connections to a daemon, one per worker thread at a time (see
    /// `with_lv`).
    pool: Mutex<Vec<Libvirt>>,
}

/// What `prepare` found for a project, used by each host's build.
pub struct Prepared {
    pub project: String,
    pub kvm: bool,
    /// Switch name to its bridge (None: user-mode networking).
    pub switches: HashMap<String, Option<String>>,
    /// Template name to the template and its size in MiB.
    pub templates: HashMap<String, Result<(Template, u64), MachineError>>,
}

fn failed(e: impl std::fmt::Display) -> MachineError {
    MachineError::Failed(e.to_string())
}

impl<'a> LibvirtMachines<'a> {
    pub fn new(state: &'a State, lv: Libvirt, templates: PathBuf) -> LibvirtMachines<'a> {
        LibvirtMachines { state, lv, templates, prepared: Mutex::new(None), pool: Mutex::new(Vec::new()) }
    }
    /// Runs `f` on a connection of its own while other threads run theirs:
    /// libvirtd serves at most 5 calls of one client connection at once
    /// (`max_client_requests`), so 8 workers sharing `lv` saved 8 guests
    /// in two waves, 2.5 times as long as 8 `virsh save` processes. Only
    /// for a local daemon (`scheme:///...`): the embedded driver admits
    /// one connection per process, and a remote URI would open an SSH
    /// session per connection. Falls back to `lv` if a connection cannot
    /// be opened.
    fn with_lv<R>(&self, f: impl FnOnce(&Libvirt) -> R) -> R {
        let uri = &self.lv.uri;
        if !uri.contains(":///") || uri.starts_with("qemu:///embed") {
            return f(&self.lv);
        }
        let taken = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match taken.or_else(|| Libvirt::open(uri).ok()) {
            Some(lv) => {
                let r = f(&lv);
                self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(lv);
                r
            }
            None => f(&self.lv),
        }
    }
    /// Connects to `uri` (an embedded one is prepared first).
    pub fn connect(state: &'a State, uri: &str, templates: PathBuf) -> Result<LibvirtMachines<'a>, MachineError> {
        Ok(LibvirtMachines::new(state, Libvirt::connect(uri)?, templates))
    }
    pub fn uri(&self) -> &str {
        &self.lv.uri
    }
    pub fn connection(&self) -> &Libvirt {
        &self.lv
    }
    /// What `prepare` found for `plan`'s project, prepared now if not yet.
    pub(super) fn prepared_for(&self, plan: &Plan) -> Result<std::sync::Arc<Prepared>, MachineError> {
        let p = self.prepared.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match p {
            Some(p) if p.project == plan.project => Ok(p),
            _ => {
                self.prepare(plan, &crate::progress::Quiet)?;
                Ok(self.prepared.lock().unwrap_or_else(|p| p.into_inner()).clone().expect("prepared above"))
            }
        }
    }
    pub(super) fn domain(m: &Machine) -> String {
        domain_name(m.project, &m.host.name)
    }
}

impl Backend for LibvirtMachines<'_> {
    fn describe(&self) -> String {
        format!("libvirt ({})", self.lv.uri)
    }
    fn power(&self) -> Result<&dyn Power, MachineError> {
        Ok(self)
    }
    fn provision(&self) -> Result<&dyn Provision, MachineError> {
        Ok(self)
    }
    fn snapshot(&self) -> Result<&dyn Snapshot, MachineError> {
        Ok(self)
    }
    fn migrate(&self) -> Result<&dyn crate::machine::Migrate, MachineError> {
        Ok(self)
    }
    fn relocate(&self) -> Result<&dyn crate::machine::Relocate, MachineError> {
        Ok(self)
    }
    fn update(&self) -> Result<&dyn crate::machine::Update, MachineError> {
        Ok(self)
    }

    fn start_all(&self, project: &str, hosts: &[&crate::plan::Host], t: &dyn Telemetry) -> Vec<Outcome> {
        // A machine restarted since the build has lost its bridges and
        // VXLAN ports (the kernel keeps them in memory only): made again
        // from the recorded share first, or the guests cannot start.
        if let Ok(Some(rec)) = self.state.project(project) {
            let used = |sw: &&crate::plan::Switch| hosts.iter().any(|h| h.interfaces.iter().any(|i| i.switch.as_deref() == Some(&sw.name)));
            for sw in rec.plan.switches.iter().filter(used) {
                if let Err(e) = super::provision::switch(self, project, sw, false, t) {
                    t.note(None, &format!("switch {}: {e}", sw.name));
                }
            }
        }
        let p: &dyn Power = self;
        crate::machine::each("start", hosts, t, |h| Outcome::of(&h.name, p.start(&Machine { project, host: h })))
    }
}

impl Power for LibvirtMachines<'_> {
    fn state(&self, m: &Machine) -> Result<PowerState, MachineError> {
        Ok(self.with_lv(|lv| lv.state(&Self::domain(m))))
    }

    fn start(&self, m: &Machine) -> Result<Done, MachineError> {
        self.with_lv(|lv| start_on(lv, m))
    }

    fn stop(&self, m: &Machine, mode: StopMode) -> Result<Done, MachineError> {
        self.with_lv(|lv| stop_on(lv, m, mode))
    }
}

fn start_on(lv: &Libvirt, m: &Machine) -> Result<Done, MachineError> {
    let name = LibvirtMachines::domain(m);
    match lv.state(&name) {
        PowerState::Running => match lv.resume_if_paused(&name)? {
            true => Ok(Done::ok("resumed (it was paused)")),
            false => Ok(Done::ok("already running")),
        },
        PowerState::Absent => Err(MachineError::Refused("not built (run mln build)".into())),
        PowerState::Saved => restore_on(lv, &name),
        PowerState::ShutOff => {
            lv.start(&name).map_err(MachineError::from)?;
            Ok(Done::ok("started"))
        }
    }
}

fn stop_on(lv: &Libvirt, m: &Machine, mode: StopMode) -> Result<Done, MachineError> {
    let name = LibvirtMachines::domain(m);
    let s = lv.state(&name);
    if s != PowerState::Running {
        return Ok(Done::ok(format!("not running ({s})")));
    }
    match mode {
        StopMode::Save => save_on(lv, &name),
        StopMode::Hard => lv.destroy(&name).map(|_| Done::ok("forced off")).map_err(MachineError::from),
        StopMode::Graceful { wait } => {
            lv.shutdown(&name).map_err(MachineError::from)?;
            let deadline = wait.map(|w| Instant::now() + w);
            while deadline.is_none_or(|d| Instant::now() < d) {
                if !lv.is_active(&name).map_err(MachineError::from)? {
                    return Ok(Done::ok("shut down"));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            lv.destroy(&name).map_err(MachineError::from)?;
            Ok(Done::warning(format!("did not shut down within {} s: forced off", wait.unwrap_or_default().as_secs())))
        }
    }
}

fn save_on(lv: &Libvirt, name: &str) -> Result<Done, MachineError> {
    lv.save(name).map(|_| Done::ok("saved")).map_err(MachineError::from)
}

fn restore_on(lv: &Libvirt, name: &str) -> Result<Done, MachineError> {
    // libvirt starts a domain with a managed save image from it.
    lv.start(name).map(|_| Done::ok("restored")).map_err(MachineError::from)
}

impl Snapshot for LibvirtMachines<'_> {
    fn save(&self, m: &Machine) -> Result<Done, MachineError> {
        self.with_lv(|lv| save_on(lv, &Self::domain(m)))
    }
    fn restore(&self, m: &Machine) -> Result<Done, MachineError> {
        self.with_lv(|lv| restore_on(lv, &Self::domain(m)))
    }
}

impl Provision for LibvirtMachines<'_> {
    fn check(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let h = m.host;
        super::provision::refused(h)?;
        let t = super::template::find(&self.templates, &h.template)?;
        let disk = if t.disk.is_some() { format!("{:?} disk", h.disk_mode).to_lowercase() } else { "direct kernel boot".into() };
        Ok(Done::ok(format!("would build from {} ({disk}), a NoCloud seed, and domain {}", t.name, domain_name(&plan.project, &h.name))))
    }
    fn prepare(&self, plan: &Plan, t: &dyn Telemetry) -> Result<(), MachineError> {
        let p = super::provision::prepare(self, plan, t)?;
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::new(p));
        Ok(())
    }

    fn build(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let p = self.prepared_for(plan)?;
        super::provision::build_host(self, &p, plan, m.host)
    }

    fn remove(&self, project: &str, host: &str) -> Result<Done, MachineError> {
        let resources = self.state.resources(project)?;
        // Domains first (a running guest holds its disk), then files.
        let mut mine: Vec<_> = resources.iter().filter(|r| r.host == host).collect();
        mine.sort_by_key(|r| match r.kind {
            ResourceKind::Domain => 0,
            ResourceKind::Disk | ResourceKind::Seed => 1,
            _ => 2,
        });
        for r in mine {
            let path = std::path::Path::new(&r.ident);
            match r.kind {
                ResourceKind::Domain => {
                    self.lv.destroy_and_undefine(&r.ident).map_err(MachineError::from)?;
                    // QEMU's log of the domain, kept by the embedded driver
                    // in our own root (a daemon keeps its own elsewhere).
                    if self.lv.uri == self.state.embedded_uri() {
                        if let Ok(log) = crate::name::inside(&self.state.libvirt_root(), &["log", "qemu", &format!("{}.log", r.ident)]) {
                            let _ = std::fs::remove_file(log);
                        }
                    }
                }
                // A path outside the project's directories (recorded by an
                // older mln from a name it should have refused) is
                // forgotten, never followed.
                ResourceKind::Dir if self.state.owns_path(path) => remove_path(&r.ident, true)?,
                ResourceKind::Disk | ResourceKind::Seed if self.state.owns_path(path) => remove_path(&r.ident, false)?,
                _ => {}
            }
            self.state.forget_resource(project, r)?;
        }
        Ok(Done::ok("removed"))
    }

    fn hosts_of(&self, project: &str) -> Result<Vec<String>, MachineError> {
        let mut hosts: Vec<String> = self.state.resources(project)?.into_iter().filter(|r| !r.host.is_empty()).map(|r| r.host).collect();
        hosts.dedup();
        Ok(hosts)
    }

    fn finish_remove(&self, project: &str) -> Vec<Outcome> {
        let mut out = Vec::new();
        let resources = match self.state.resources(project) {
            Ok(r) => r,
            Err(e) => return vec![Outcome::failed("(switches)", &e.into())],
        };
        // A bridge's VXLAN port outlives the bridge: ports first.
        let mut project_wide: Vec<_> = resources.iter().filter(|r| r.host.is_empty() && matches!(r.kind, ResourceKind::Bridge | ResourceKind::Tunnel)).collect();
        project_wide.sort_by_key(|r| r.kind != ResourceKind::Tunnel);
        for r in project_wide {
            let (result, label) = match r.kind {
                ResourceKind::Tunnel => (super::vxlan::remove(&r.ident), format!("switch port {}", r.ident)),
                _ => (super::bridge::remove(&r.ident), format!("switch bridge {}", r.ident)),
            };
            let result = result.map_err(failed).and_then(|_| Ok(self.state.forget_resource(project, r)?));
            out.push(match result {
                Ok(()) => Outcome { host: label, place: None, status: Status::Ok, message: "removed".into(), retry: false },
                Err(e) => Outcome::failed(&label, &e),
            });
        }
        if let Ok(dir) = self.state.project_dir(project) {
            // The project's keys and known_hosts (crate::login) go with it.
            let _ = std::fs::remove_dir_all(dir.join("login"));
            let _ = std::fs::remove_dir(dir);
        }
        out
    }
}

/// Removes a file or a directory tree; what does not exist, or cannot
/// exist (a name too long for the file system), is already gone.
fn remove_path(path: &str, dir: bool) -> Result<(), MachineError> {
    let r = if dir { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidFilename) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => Ok(()),
        Err(e) => Err(failed(format!("cannot remove {}: {e}", crate::term::escape(path)))),
    }
}
