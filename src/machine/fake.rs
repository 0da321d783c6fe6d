//! Machines held in memory, for tests of the orchestration: every call is
//! logged in order, and hosts can be told to fail or to ignore a graceful
//! shutdown.

use super::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

#[derive(Default)]
pub struct Fake {
    inner: Mutex<Inner>,
    name: String,
    /// Where calls are logged too, shared with others (hooks, other
    /// fakes) so a test sees one order of everything.
    shared: Option<std::sync::Arc<Mutex<Vec<String>>>>,
    /// Unique to this fake: what it is reached at for a move.
    id: u64,
}

#[derive(Default)]
struct Inner {
    machines: BTreeMap<(String, String), PowerState>,
    log: Vec<String>,
    fail: HashSet<(String, String)>,
    ignores_acpi: HashSet<String>,
    bridges: BTreeMap<String, Vec<String>>,
}

impl Fake {
    pub fn new(name: &str) -> Fake {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Fake { inner: Mutex::default(), name: name.to_string(), shared: None, id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }
    /// Logs every call also into `log`, as `NAME: op host`.
    pub fn logging_to(mut self, log: std::sync::Arc<Mutex<Vec<String>>>) -> Fake {
        self.shared = Some(log);
        self
    }
    fn push(&self, i: &mut Inner, line: String) {
        if let Some(l) = &self.shared {
            l.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{}: {line}", self.name));
        }
        i.log.push(line);
    }
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Every call so far, as `op host` lines, in order.
    pub fn log(&self) -> Vec<String> {
        self.inner().log.clone()
    }
    /// `op` (build, start, stop, remove) fails for `host`.
    pub fn fail(&self, op: &str, host: &str) {
        self.inner().fail.insert((op.to_string(), host.to_string()));
    }
    /// `op` works again for `host`.
    pub fn heal(&self, op: &str, host: &str) {
        self.inner().fail.remove(&(op.to_string(), host.to_string()));
    }
    /// `host` ignores the ACPI power button.
    pub fn ignore_acpi(&self, host: &str) {
        self.inner().ignores_acpi.insert(host.to_string());
    }
    pub fn machine(&self, project: &str, host: &str) -> PowerState {
        self.inner().machines.get(&(project.to_string(), host.to_string())).copied().unwrap_or(PowerState::Absent)
    }
    fn step(&self, op: &str, project: &str, host: &str) -> Result<(), MachineError> {
        let mut i = self.inner();
        self.push(&mut i, format!("{op} {host}"));
        if i.fail.contains(&(op.to_string(), host.to_string())) {
            return Err(MachineError::Failed(format!("{op} {host}: made to fail")));
        }
        let _ = project;
        Ok(())
    }
    fn set(&self, project: &str, host: &str, s: PowerState) {
        let mut i = self.inner();
        if s == PowerState::Absent {
            i.machines.remove(&(project.to_string(), host.to_string()));
        } else {
            i.machines.insert((project.to_string(), host.to_string()), s);
        }
    }
}

impl Backend for Fake {
    fn describe(&self) -> String {
        format!("the fake backend {}", self.name)
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
    fn migrate(&self) -> Result<&dyn Migrate, MachineError> {
        Ok(self)
    }
    fn relocate(&self) -> Result<&dyn Relocate, MachineError> {
        Ok(self)
    }
    fn update(&self) -> Result<&dyn Update, MachineError> {
        Ok(self)
    }
}

/// An update is logged with its class (`update HOST CLASS`); a restart
/// leaves a running machine running.
impl Update for Fake {
    fn update(&self, plan: &Plan, _: &Host, m: &Machine, class: crate::upgrade::Class, opts: &UpgradeOptions) -> Result<Done, MachineError> {
        let h = &m.host.name;
        let s = self.machine(&plan.project, h);
        if s == PowerState::Absent {
            return Err(MachineError::Refused("not built (run mln build)".into()));
        }
        {
            let mut i = self.inner();
            self.push(&mut i, format!("update {h} {class}"));
            if i.fail.contains(&("update".to_string(), h.clone())) {
                return Err(MachineError::Failed(format!("update {h}: made to fail")));
            }
        }
        if (opts.start_changed && class != crate::upgrade::Class::Live) || (s == PowerState::Running && opts.reconfigure.contains(h)) {
            self.set(&plan.project, h, PowerState::Running);
        }
        Ok(Done::ok(format!("{class} applied")))
    }
    fn retire(&self, project: &str, host: &str, _: &UpgradeOptions) -> Result<Done, MachineError> {
        self.step("retire", project, host)?;
        self.set(project, host, PowerState::Absent);
        Ok(Done::ok("removed"))
    }
}

impl Power for Fake {
    fn state(&self, m: &Machine) -> Result<PowerState, MachineError> {
        Ok(self.machine(m.project, &m.host.name))
    }
    fn start(&self, m: &Machine) -> Result<Done, MachineError> {
        let h = &m.host.name;
        match self.machine(m.project, h) {
            PowerState::Absent => Err(MachineError::Refused("not built (run mln build)".into())),
            PowerState::Running => Ok(Done::ok("already running")),
            PowerState::Saved => self.restore(m),
            PowerState::ShutOff => {
                self.step("start", m.project, h)?;
                self.set(m.project, h, PowerState::Running);
                Ok(Done::ok("started"))
            }
        }
    }
    fn stop(&self, m: &Machine, mode: StopMode) -> Result<Done, MachineError> {
        let h = &m.host.name;
        let s = self.machine(m.project, h);
        if s != PowerState::Running {
            return Ok(Done::ok(format!("not running ({s})")));
        }
        match mode {
            StopMode::Save => self.save(m),
            StopMode::Hard => {
                self.step("stop", m.project, h)?;
                self.set(m.project, h, PowerState::ShutOff);
                Ok(Done::ok("forced off"))
            }
            StopMode::Graceful { wait } => {
                self.step("stop", m.project, h)?;
                self.set(m.project, h, PowerState::ShutOff);
                if self.inner().ignores_acpi.contains(h) {
                    let w = wait.map(|w| format!("{} s", w.as_secs())).unwrap_or_else(|| "the wait".into());
                    Ok(Done::warning(format!("did not shut down within {w}: forced off")))
                } else {
                    Ok(Done::ok("shut down"))
                }
            }
        }
    }
}

impl Snapshot for Fake {
    fn save(&self, m: &Machine) -> Result<Done, MachineError> {
        self.step("save", m.project, &m.host.name)?;
        self.set(m.project, &m.host.name, PowerState::Saved);
        Ok(Done::ok("saved"))
    }
    fn restore(&self, m: &Machine) -> Result<Done, MachineError> {
        self.step("restore", m.project, &m.host.name)?;
        self.set(m.project, &m.host.name, PowerState::Running);
        Ok(Done::ok("restored"))
    }
}

impl Provision for Fake {
    fn check(&self, _: &Plan, m: &Machine) -> Result<Done, MachineError> {
        if self.inner().fail.contains(&("build".to_string(), m.host.name.clone())) {
            return Err(MachineError::Refused(format!("{} would fail", m.host.name)));
        }
        Ok(Done::ok(format!("would build from {}", m.host.template)))
    }
    fn prepare(&self, plan: &Plan, _: &dyn Telemetry) -> Result<(), MachineError> {
        let mut i = self.inner();
        self.push(&mut i, format!("prepare {}", plan.project));
        for sw in &plan.switches {
            if let Some(seg) = &sw.segment {
                let peers: Vec<String> = seg.peers.iter().map(ToString::to_string).collect();
                self.push(&mut i, format!("join {} from {} to {}", sw.name, seg.local, peers.join(",")));
            }
        }
        let names = plan.switches.iter().map(|s| s.name.clone()).collect();
        i.bridges.insert(plan.project.clone(), names);
        Ok(())
    }
    fn build(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        let h = &m.host.name;
        if self.machine(&plan.project, h) != PowerState::Absent {
            let mut i = self.inner();
            self.push(&mut i, format!("build {h} (already built)"));
            return Ok(Done::ok("already built"));
        }
        self.step("build", &plan.project, h)?;
        self.set(&plan.project, h, PowerState::ShutOff);
        Ok(Done::ok(format!("built from {}", m.host.template)))
    }
    fn remove(&self, project: &str, host: &str) -> Result<Done, MachineError> {
        self.step("remove", project, host)?;
        self.set(project, host, PowerState::Absent);
        Ok(Done::ok("removed"))
    }
    fn hosts_of(&self, project: &str) -> Result<Vec<String>, MachineError> {
        Ok(self.inner().machines.keys().filter(|(p, _)| p == project).map(|(_, h)| h.clone()).collect())
    }
    fn finish_remove(&self, project: &str) -> Vec<Outcome> {
        let mut i = self.inner();
        self.push(&mut i, format!("finish_remove {project}"));
        i.bridges
            .remove(project)
            .unwrap_or_default()
            .into_iter()
            .map(|b| Outcome { host: format!("switch {b}"), place: None, status: Status::Ok, message: "removed".into(), retry: false })
            .collect()
    }
}

impl Fake {
    fn reached_at(&self) -> String {
        format!("fake://{}#{}", self.name, self.id)
    }
}

/// Machines sent by any fake and not yet taken in: a receiver says a
/// machine arrived only if one was sent (as libvirt's receiving side
/// finds a domain there only after a send).
fn in_flight() -> &'static Mutex<std::collections::HashSet<(String, String, String)>> {
    static SENT: std::sync::OnceLock<Mutex<std::collections::HashSet<(String, String, String)>>> = std::sync::OnceLock::new();
    SENT.get_or_init(Default::default)
}

/// A fake machine "arrives" at the fake that prepared for it when told so
/// by `finish_incoming`, if a fake sent it; the sender only forgets it.
impl Migrate for Fake {
    fn prepare_incoming(&self, plan: &Plan, m: &Machine, address: &str) -> Result<Incoming, MachineError> {
        if self.machine(&plan.project, &m.host.name) != PowerState::Absent {
            return Err(MachineError::Refused(format!("{} is here already", m.host.name)));
        }
        self.step("prepare_incoming", &plan.project, &m.host.name)?;
        Ok(Incoming { connect: self.reached_at(), address: address.to_string(), dir: Default::default(), templates: Default::default() })
    }
    fn send(&self, m: &Machine, to: &Incoming) -> Result<Done, MachineError> {
        let s = self.machine(m.project, &m.host.name);
        if s != PowerState::Running {
            return Err(MachineError::Refused(format!("{s}: only a running machine migrates live")));
        }
        self.step("send", m.project, &m.host.name)?;
        self.set(m.project, &m.host.name, PowerState::Absent);
        in_flight().lock().unwrap_or_else(|p| p.into_inner()).insert((to.connect.clone(), m.project.to_string(), m.host.name.clone()));
        Ok(Done::ok(format!("migrated live to {}", to.connect)))
    }
    fn finish_incoming(&self, plan: &Plan, m: &Machine, arrived: bool) -> Result<Done, MachineError> {
        let key = (self.reached_at(), plan.project.clone(), m.host.name.clone());
        let here = self.machine(&plan.project, &m.host.name) == PowerState::Running;
        if arrived && !here && !in_flight().lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
            return Err(MachineError::Failed(format!("{} is not here", m.host.name)));
        }
        self.step(if arrived { "arrived" } else { "not_arrived" }, &plan.project, &m.host.name)?;
        if arrived {
            in_flight().lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        }
        self.set(&plan.project, &m.host.name, if arrived { PowerState::Running } else { PowerState::Absent });
        Ok(Done::ok(if arrived { "arrived" } else { "removed what was prepared" }))
    }
}

impl Fake {
    /// A cold move's files arrive here (what a test's places do for
    /// `Places::carry`), logged as `carry HOST`; fails when told to.
    pub fn receive_files(&self, project: &str, host: &str) -> Result<(), MachineError> {
        self.step("carry", project, host)?;
        in_flight().lock().unwrap_or_else(|p| p.into_inner()).insert((self.reached_at(), project.to_string(), host.to_string()));
        Ok(())
    }
}

/// A cold move: packing leaves the machine shut off (its memory kept
/// when it ran or was saved); it is unpacked only where its files were
/// carried, as it was.
impl Relocate for Fake {
    fn pack(&self, m: &Machine, then: PowerState) -> Result<Parcel, MachineError> {
        let s = self.machine(m.project, &m.host.name);
        if s == PowerState::Absent {
            return Err(MachineError::Refused("not defined here".into()));
        }
        self.step("pack", m.project, &m.host.name)?;
        self.set(m.project, &m.host.name, PowerState::ShutOff);
        let memory = then != PowerState::ShutOff;
        Ok(Parcel {
            files: vec![ParcelFile { name: "disk.qcow2".into(), size: 1, sha256: "0".repeat(64) }],
            definition: self.reached_at(),
            dir: Default::default(),
            templates: Default::default(),
            then,
            memory: memory.then(|| MemoryNeeds { cpu: "x86_64".into(), arch: "x86_64".into(), machine: "pc".into() }),
        })
    }
    fn make_ready(&self, plan: &Plan, m: &Machine, _: &Parcel) -> Result<Done, MachineError> {
        if self.machine(&plan.project, &m.host.name) != PowerState::Absent {
            return Err(MachineError::Refused(format!("{} is here already", m.host.name)));
        }
        self.step("make_ready", &plan.project, &m.host.name)?;
        Ok(Done::ok("ready"))
    }
    fn unpack(&self, plan: &Plan, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError> {
        let key = (self.reached_at(), plan.project.clone(), m.host.name.clone());
        if self.machine(&plan.project, &m.host.name) != PowerState::Absent {
            return Ok(Done::ok("arrived already"));
        }
        if !in_flight().lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
            return Err(MachineError::Refused("not all its files are here yet".into()));
        }
        self.step("unpack", &plan.project, &m.host.name)?;
        in_flight().lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        self.set(&plan.project, &m.host.name, parcel.then);
        Ok(Done::ok(format!("arrived, {}", parcel.then)))
    }
    fn unpack_home(&self, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError> {
        self.step("home", m.project, &m.host.name)?;
        if self.machine(m.project, &m.host.name) == PowerState::ShutOff {
            self.set(m.project, &m.host.name, parcel.then);
        }
        Ok(Done::ok(format!("back as it was, {}", parcel.then)))
    }
    fn discard(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        if self.machine(&plan.project, &m.host.name) != PowerState::Absent {
            return Err(MachineError::Refused("defined here: it arrived".into()));
        }
        self.step("discard", &plan.project, &m.host.name)?;
        in_flight().lock().unwrap_or_else(|p| p.into_inner()).remove(&(self.reached_at(), plan.project.clone(), m.host.name.clone()));
        Ok(Done::ok("removed what was made ready"))
    }
}
