//! What a machine can do, as small capability traits in the spirit of
//! cloud-hypervisor's `Pausable` / `Snapshottable` / `Migratable`: power
//! (state, start, stop), provision (build, remove), snapshot (save,
//! restore), migrate (send, receive). A [`Backend`] offers the ones it
//! has; asking for another is a typed "not supported by this backend".
//!
//! Implementations: libvirt (`crate::backend::machines`, all of them), a
//! service host's agent (`crate::fabric::machines`, which
//! forwards), and an in-memory fake ([`fake`]) for tests. The orchestration
//! (`crate::runtime`) knows only these traits: a new backend (bare metal,
//! a power driver) is one new module implementing them.

mod error;
pub mod fake;
mod window;

pub use error::{Capability, MachineError};
pub use window::each;

use crate::plan::{Host, Plan};
use crate::progress::Telemetry;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// Replace a project built before (remove it first).
    pub replace: bool,
    /// The managing machine is finishing an interrupted build: a share
    /// already built from this very plan counts as done.
    pub resume: bool,
}

/// A machine of a project, as planned.
#[derive(Clone, Copy, Debug)]
pub struct Machine<'a> {
    pub project: &'a str,
    pub host: &'a Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    Running,
    /// Memory saved to disk; the next start restores it.
    Saved,
    #[serde(rename = "shut off")]
    ShutOff,
    /// Not built (or removed).
    Absent,
}

impl PowerState {
    /// The state a `status` line names (`as_str`'s inverse).
    pub fn parse(s: &str) -> Option<PowerState> {
        [PowerState::Running, PowerState::Saved, PowerState::ShutOff, PowerState::Absent].into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "running",
            PowerState::Saved => "saved",
            PowerState::ShutOff => "shut off",
            PowerState::Absent => "absent",
        }
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// Ask the guest to shut down; force it off after `wait` (None: wait
    /// as long as it takes).
    Graceful { wait: Option<Duration> },
    /// Save memory state to disk; the next start restores it.
    Save,
    /// Force off at once.
    Hard,
}

/// How one machine's step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Done, but not as asked (a graceful stop that had to force).
    Warning,
    Failed,
}

/// One machine's outcome of an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub host: String,
    /// The service host it is on; None: this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    pub status: Status,
    pub message: String,
    /// A failure that may go away when tried again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

impl Outcome {
    pub fn of(host: &str, r: Result<Done, MachineError>) -> Outcome {
        match r {
            Ok(d) => Outcome { host: host.to_string(), place: None, status: if d.warning { Status::Warning } else { Status::Ok }, message: d.message, retry: false },
            Err(e) => Outcome::failed(host, &e),
        }
    }
    pub fn failed(host: &str, e: &MachineError) -> Outcome {
        Outcome { host: host.to_string(), place: None, status: Status::Failed, message: e.to_string(), retry: e.retryable() }
    }
    pub fn ok(&self) -> bool {
        self.status != Status::Failed
    }
    /// `host` or `host@place`.
    pub fn label(&self) -> String {
        match &self.place {
            Some(p) => format!("{}@{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// What a step did, for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub message: String,
    pub warning: bool,
}

impl Done {
    pub fn ok(message: impl Into<String>) -> Done {
        Done { message: message.into(), warning: false }
    }
    pub fn warning(message: impl Into<String>) -> Done {
        Done { message: message.into(), warning: true }
    }
}

pub trait Power: Sync {
    fn state(&self, m: &Machine) -> Result<PowerState, MachineError>;
    /// Starts (or restores) the machine; one already running is fine.
    fn start(&self, m: &Machine) -> Result<Done, MachineError>;
    /// Stops the machine; one not running is fine.
    fn stop(&self, m: &Machine, mode: StopMode) -> Result<Done, MachineError>;
}

pub trait Provision: Sync {
    /// What `build` would do for one machine, doing nothing; refused as
    /// `build` would refuse it.
    fn check(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError>;
    /// Project-wide preparation before hosts are built (switches, probes).
    fn prepare(&self, plan: &Plan, t: &dyn Telemetry) -> Result<(), MachineError>;
    /// Makes one machine (not started); run again after an interruption,
    /// it finishes what was begun.
    fn build(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError>;
    /// Removes everything made for one host of a project; what is gone
    /// already is fine.
    fn remove(&self, project: &str, host: &str) -> Result<Done, MachineError>;
    /// The hosts this backend holds something of for `project`.
    fn hosts_of(&self, project: &str) -> Result<Vec<String>, MachineError>;
    /// Project-wide removal once every host is gone (switches' bridges).
    fn finish_remove(&self, project: &str) -> Vec<Outcome>;
}

/// How an upgrade is applied (MLN's `upgrade` flags).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOptions {
    /// `-S`: start the hosts that were changed (a guest-config change is
    /// applied by restarting the guest).
    pub start_changed: bool,
    /// `-k`: keep the disks of removed hosts.
    pub keep_disks: bool,
    /// `-l`: hosts to migrate live.
    pub live: Vec<String>,
    /// Hosts whose configuration is written anew even if unchanged
    /// (`mln reconfigure`: back to the recorded plan).
    #[serde(default)]
    pub reconfigure: Vec<String>,
}

/// Bringing a built machine to a new plan: one host's part of an upgrade,
/// classified before (`crate::upgrade`).
pub trait Update: Sync {
    /// Brings `m` (as the new plan has it) from `old` (as it was built),
    /// doing what `class` says and nothing more: a running machine keeps
    /// running unless the class needs a restart.
    fn update(&self, plan: &Plan, old: &Host, m: &Machine, class: crate::upgrade::Class, opts: &UpgradeOptions) -> Result<Done, MachineError>;
    /// Removes a host the new plan no longer has; with `keep_disks` its
    /// disks are kept (moved out of the project) and named.
    fn retire(&self, project: &str, host: &str, opts: &UpgradeOptions) -> Result<Done, MachineError>;
}

pub trait Snapshot: Sync {
    fn save(&self, m: &Machine) -> Result<Done, MachineError>;
    fn restore(&self, m: &Machine) -> Result<Done, MachineError>;
}

/// A place made ready to receive a machine: what the receiving side
/// answers to [`Migrate::prepare_incoming`] and the sending side needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// The receiving side's machine manager, as the sender can reach it
    /// (a libvirt URI).
    pub connect: String,
    /// The receiving host's address the streams go to (memory, disks);
    /// it listens there only, and only while the migration runs.
    pub address: String,
    /// The machine's directory there: the sender's paths under its own
    /// directory are rewritten to it.
    pub dir: std::path::PathBuf,
    /// Where templates are there (paths under the sender's templates
    /// directory are rewritten to it).
    pub templates: std::path::PathBuf,
}

/// Moving a running machine between places while it runs: the receiving
/// side prepares (its files, empty where the sender's will be copied),
/// the sender sends (memory and its own disks; the template must already
/// be there), the receiving side finishes (records the machine, or
/// removes what it prepared when the send failed). A machine that is not
/// running moves cold: its files are copied by whoever orchestrates.
pub trait Migrate: Sync {
    fn prepare_incoming(&self, plan: &Plan, m: &Machine, address: &str) -> Result<Incoming, MachineError>;
    /// On success the machine runs at `to` and is gone from here but for
    /// its files (removed by [`Provision::remove`]); on failure it goes on
    /// running here.
    fn send(&self, m: &Machine, to: &Incoming) -> Result<Done, MachineError>;
    /// Before a send, while the receiver is being made ready: what the
    /// send needs of this side that can be had ahead (connections), so the
    /// send starts at once. Changes nothing; a failure here is found again
    /// by the send.
    fn ready_to_send(&self, m: &Machine) -> Result<(), MachineError> {
        let _ = m;
        Ok(())
    }
    fn finish_incoming(&self, plan: &Plan, m: &Machine, arrived: bool) -> Result<Done, MachineError>;
}

/// One of a machine's files, as it leaves: its name in the machine's
/// directory, its size and its SHA-256 (checked where it arrives).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A machine made still and ready to be carried to another place with
/// its files: what the sending side answers to [`Relocate::pack`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub files: Vec<ParcelFile>,
    /// Its definition at the sender (the receiver rewrites the paths
    /// under `dir` and `templates` to its own).
    pub definition: String,
    pub dir: std::path::PathBuf,
    pub templates: std::path::PathBuf,
    /// How it is to be once it has arrived: running (it was running, and
    /// its memory goes with it), saved (likewise, restored at the next
    /// start), or shut off.
    pub then: PowerState,
    /// With its memory (the file `memory.save`): the CPU architecture
    /// and QEMU machine type the memory image needs.
    pub memory: Option<MemoryNeeds>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryNeeds {
    /// The CPU architecture of the host it was saved on.
    pub cpu: String,
    /// The guest's architecture and QEMU machine type.
    pub arch: String,
    pub machine: String,
}

/// The file a packed machine's memory is in, in its directory.
pub const MEMORY_FILE: &str = "memory.save";

/// Moving a machine that does not run, or is frozen for the move, with
/// its files (a cold move): the sender packs it (its memory, if it runs
/// or is saved, to a file; nothing of it runs any more), the receiver
/// makes ready (checks it can run that memory, makes the machine's
/// directory), whoever orchestrates carries the files, the receiver
/// unpacks (defines it; restores it running, or saved, as it was). If
/// the move fails, the sender brings it back as it was. The sender's
/// copy is removed only once the receiver has it.
pub trait Relocate: Sync {
    /// `then`: how it is to be at the end (`Running` makes a running
    /// machine still by saving its memory). Packing a packed machine
    /// again answers the same parcel.
    fn pack(&self, m: &Machine, then: PowerState) -> Result<Parcel, MachineError>;
    fn make_ready(&self, plan: &Plan, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError>;
    /// Refused while a file of the parcel is missing here (carry it).
    fn unpack(&self, plan: &Plan, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError>;
    /// At the sender, after a failed move: as it was before `pack`.
    fn unpack_home(&self, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError>;
    /// At the receiver, after a failed move: what `make_ready` made goes
    /// (refused once the machine is defined there: it arrived).
    fn discard(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError>;
}

/// Machines in one place: this machine's libvirt, a service host, a fake.
/// Each capability is optional. The batch forms are what the
/// orchestration calls; their defaults run the one-machine calls a window
/// at a time, and a backend that can do better (a remote one: one request
/// for the batch) overrides them.
pub trait Backend: Sync + Send {
    /// What this backend is, for messages ("libvirt qemu:///embed?...").
    fn describe(&self) -> String;

    fn power(&self) -> Result<&dyn Power, MachineError> {
        Err(MachineError::unsupported(Capability::Power, self.describe()))
    }
    fn provision(&self) -> Result<&dyn Provision, MachineError> {
        Err(MachineError::unsupported(Capability::Provision, self.describe()))
    }
    fn snapshot(&self) -> Result<&dyn Snapshot, MachineError> {
        Err(MachineError::unsupported(Capability::Snapshot, self.describe()))
    }
    fn migrate(&self) -> Result<&dyn Migrate, MachineError> {
        Err(MachineError::unsupported(Capability::Migrate, self.describe()))
    }
    fn update(&self) -> Result<&dyn Update, MachineError> {
        Err(MachineError::unsupported(Capability::Update, self.describe()))
    }
    fn relocate(&self) -> Result<&dyn Relocate, MachineError> {
        Err(MachineError::unsupported(Capability::Relocate, self.describe()))
    }

    /// Applies an upgrade to this place's share: `old` as it was built,
    /// `new` as it is to be, each host's class given. Hosts added are
    /// built, hosts gone are retired, the others updated.
    fn upgrade_all(&self, old: &Plan, new: &Plan, classes: &[(String, crate::upgrade::Class)], opts: &UpgradeOptions, t: &dyn Telemetry) -> Vec<Outcome> {
        use crate::upgrade::Class;
        let (p, u) = match (self.provision(), self.update()) {
            (Ok(p), Ok(u)) => (p, u),
            (Err(e), _) | (_, Err(e)) => return classes.iter().map(|(h, _)| Outcome::failed(h, &e)).collect(),
        };
        // Switches too: one that gained or lost another place is joined anew.
        if classes.iter().any(|(_, c)| *c != Class::Remove && *c != Class::Unchanged) || (!new.hosts.is_empty() && old.switches != new.switches) {
            if let Err(e) = p.prepare(new, t) {
                return classes.iter().map(|(h, _)| Outcome::failed(h, &e)).collect();
            }
        }
        let items: Vec<&(String, Class)> = classes.iter().filter(|(_, c)| *c != Class::Unchanged).collect();
        let (old_at, new_at) = (old.hosts_by_name(), new.hosts_by_name());
        let mut out = each("upgrade", &items, t, |(h, class)| {
            let newh = new_at.get(h.as_str()).copied();
            let oldh = old_at.get(h.as_str()).copied();
            let r = match (class, newh, oldh) {
                (Class::Remove, _, _) => u.retire(&old.project, h, opts),
                (Class::Add, Some(n), _) => {
                    let m = Machine { project: &new.project, host: n };
                    p.build(new, &m).and_then(|built| match opts.start_changed {
                        true => self.power()?.start(&m).map(|_| Done::ok(format!("{}; started", built.message))),
                        false => Ok(built),
                    })
                }
                (c, Some(n), Some(o)) => u.update(new, o, &Machine { project: &new.project, host: n }, *c, opts),
                _ => Err(MachineError::Refused(format!("{h}: not in both plans"))),
            };
            Outcome::of(h, r)
        });
        // Nothing of the project left here: what is project-wide goes too.
        if new.hosts.is_empty() && out.iter().all(Outcome::ok) {
            out.extend(p.finish_remove(&old.project));
        }
        out
    }

    /// Builds every host of `plan` (this place's share of a project).
    fn build_all(&self, plan: &Plan, opts: BuildOptions, t: &dyn Telemetry) -> Vec<Outcome> {
        let _ = opts; // the share's record is the orchestration's here
        let hosts: Vec<&Host> = plan.hosts.iter().collect();
        let p = match self.provision() {
            Ok(p) => p,
            Err(e) => return hosts.iter().map(|h| Outcome::failed(&h.name, &e)).collect(),
        };
        if let Err(e) = p.prepare(plan, t) {
            return hosts.iter().map(|h| Outcome::failed(&h.name, &e)).collect();
        }
        each("build", &hosts, t, |h| Outcome::of(&h.name, p.build(plan, &Machine { project: &plan.project, host: h })))
    }

    /// What building these hosts would do (`build -s`), doing nothing.
    fn check_all(&self, plan: &Plan, hosts: &[&Host], t: &dyn Telemetry) -> Vec<Outcome> {
        match self.provision() {
            Ok(p) => each("check", hosts, t, |h| Outcome::of(&h.name, p.check(plan, &Machine { project: &plan.project, host: h }))),
            Err(e) => hosts.iter().map(|h| Outcome::failed(&h.name, &e)).collect(),
        }
    }

    fn start_all(&self, project: &str, hosts: &[&Host], t: &dyn Telemetry) -> Vec<Outcome> {
        match self.power() {
            Ok(p) => each("start", hosts, t, |h| Outcome::of(&h.name, p.start(&Machine { project, host: h }))),
            Err(e) => hosts.iter().map(|h| Outcome::failed(&h.name, &e)).collect(),
        }
    }

    fn stop_all(&self, project: &str, hosts: &[&Host], mode: StopMode, t: &dyn Telemetry) -> Vec<Outcome> {
        match self.power() {
            Ok(p) => each("stop", hosts, t, |h| Outcome::of(&h.name, p.stop(&Machine { project, host: h }, mode))),
            Err(e) => hosts.iter().map(|h| Outcome::failed(&h.name, &e)).collect(),
        }
    }

    fn states(&self, project: &str, hosts: &[&Host]) -> Vec<Result<PowerState, MachineError>> {
        match self.power() {
            Ok(p) => hosts.iter().map(|h| p.state(&Machine { project, host: h })).collect(),
            Err(e) => hosts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Removes everything of `project` in this place.
    fn remove_all(&self, project: &str, t: &dyn Telemetry) -> Vec<Outcome> {
        let p = match self.provision() {
            Ok(p) => p,
            Err(e) => return vec![Outcome::failed("(all)", &e)],
        };
        let hosts = match p.hosts_of(project) {
            Ok(h) => h,
            Err(e) => return vec![Outcome::failed("(all)", &e)],
        };
        let refs: Vec<&String> = hosts.iter().collect();
        let mut out = each("remove", &refs, t, |h| Outcome::of(h, p.remove(project, h)));
        if out.iter().all(Outcome::ok) {
            out.extend(p.finish_remove(project));
        }
        out
    }
}
