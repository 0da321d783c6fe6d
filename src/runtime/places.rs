//! Where machines are: this machine, or a service host. The orchestration
//! asks a [`Places`] for the backend of a place and nothing else, so the
//! decision between local and remote lives here, not in the CLI.

use crate::backend::machines::LibvirtMachines;
use crate::baremetal::split::{Split, Vms};
use crate::machine::{Backend, MachineError, PowerState};
use crate::plan::{Host, Plan};
use crate::progress::Telemetry;
use crate::state::{ProjectRecord, State};
use std::path::PathBuf;
use std::sync::OnceLock;

pub trait Places: Sync {
    /// The backend of a place (`None`: this machine).
    fn backend(&self, place: Option<&str>) -> Result<&dyn Backend, MachineError>;
    /// The libvirt connection recorded with a project built here.
    fn local_uri(&self) -> String;
    /// Before a build, what every place needs at once (the fabric: reach
    /// every service host, check its capacity, send the templates it lacks
    /// by one relay for all); one result per share.
    fn before_build(&self, shares: &[(Option<String>, Plan)], t: &dyn Telemetry) -> Vec<Result<(), MachineError>> {
        let _ = t;
        shares.iter().map(|_| Ok(())).collect()
    }
    /// Reaches these service hosts at once and keeps each connection for
    /// the calls that follow (a move warms the places it will visit);
    /// one result per name, an error naming the host it is about.
    fn reach(&self, places: &[String]) -> Vec<Result<(), MachineError>> {
        places.iter().map(|_| Ok(())).collect()
    }
    /// The address a place is reached at by the other places (its
    /// fabric address); None where unknown.
    fn address(&self, place: Option<&str>) -> Option<String> {
        let _ = place;
        None
    }
    /// The power states of `hosts` of `project` at `place`, read without
    /// opening its machine manager where that is reliable and cheaper;
    /// None: ask the backend.
    fn glance(&self, place: Option<&str>, project: &str, hosts: &[&Host]) -> Option<Vec<PowerState>> {
        let _ = (place, project, hosts);
        None
    }
    /// Carries a machine's files (a cold move) from its directory at one
    /// place to its directory at another, each file checked where it
    /// lands. Only the fabric has more than one place.
    fn carry(&self, from: Option<&str>, to: Option<&str>, project: &str, host: &str, files: &[crate::machine::ParcelFile]) -> Result<(), MachineError> {
        let _ = (from, to, project, host, files);
        Err(MachineError::Refused("a machine's files move between places only over the fabric (service hosts)".into()))
    }
    /// Tells each share how its switches reach the same switches on the
    /// other places (one network per switch across places). Where every
    /// place is this machine there is nothing to join; an agent keeps the
    /// segments its manager sent.
    fn join_segments(&self, shares: &mut [(Option<String>, Plan)], t: &dyn Telemetry) {
        let _ = (shares, t);
    }
}

/// The libvirt connection for a project: the one asked for, else the one
/// it was built with, else the embedded QEMU driver in the state
/// directory (no daemon needed).
pub fn local_uri(state: &State, asked: Option<&str>, project: Option<&ProjectRecord>) -> String {
    asked
        .map(str::to_string)
        .or_else(|| project.map(|p| p.connect.clone()).filter(|c| !c.is_empty()))
        .unwrap_or_else(|| state.embedded_uri())
}

/// This machine only: libvirt, connected on first use (a project on
/// service hosts alone never opens it), and, when given, a bare-metal
/// backend that the project's bare-metal hosts go to (`with_baremetal`).
pub struct LocalPlaces<'a> {
    state: &'a State,
    uri: String,
    split: Split<'a, LazyLibvirt<'a>>,
    baremetal: bool,
}

/// Libvirt on this machine, connected when first asked for.
pub struct LazyLibvirt<'a> {
    state: &'a State,
    uri: String,
    templates: PathBuf,
    cell: OnceLock<Result<LibvirtMachines<'a>, MachineError>>,
}

impl<'a> LazyLibvirt<'a> {
    fn libvirt(&self) -> Result<&LibvirtMachines<'a>, MachineError> {
        self.cell.get_or_init(|| LibvirtMachines::connect(self.state, &self.uri, self.templates.clone())).as_ref().map_err(Clone::clone)
    }
}

impl Vms for LazyLibvirt<'_> {
    fn get(&self) -> Result<&dyn Backend, MachineError> {
        Ok(self.libvirt()? as &dyn Backend)
    }
}

/// Stands for the bare-metal backend where none was given: each node is
/// refused, saying so.
struct NoBareMetal;

impl Backend for NoBareMetal {
    fn describe(&self) -> String {
        "no bare-metal backend (no power driver or boot service set up)".into()
    }
}

static NO_BARE_METAL: NoBareMetal = NoBareMetal;

impl<'a> LocalPlaces<'a> {
    pub fn new(state: &'a State, uri: String, templates: PathBuf) -> LocalPlaces<'a> {
        let vms = LazyLibvirt { state, uri: uri.clone(), templates, cell: OnceLock::new() };
        LocalPlaces { state, uri, split: Split { vms, metal: &NO_BARE_METAL }, baremetal: false }
    }
    /// Bare-metal hosts go to `metal`; the others to libvirt as before.
    pub fn with_baremetal(mut self, metal: &'a dyn Backend) -> LocalPlaces<'a> {
        self.split.metal = metal;
        self.baremetal = true;
        self
    }
    /// The local backend itself (connecting if needed).
    pub fn libvirt(&self) -> Result<&LibvirtMachines<'a>, MachineError> {
        self.split.vms.libvirt()
    }
    pub fn templates(&self) -> &std::path::Path {
        &self.split.vms.templates
    }
    pub fn state(&self) -> &'a State {
        self.state
    }
}

impl Places for LocalPlaces<'_> {
    fn backend(&self, place: Option<&str>) -> Result<&dyn Backend, MachineError> {
        match place {
            // Bare-metal hosts of a plan are here too, sent to their backend.
            None if self.baremetal => Ok(&self.split),
            None => Ok(self.libvirt()? as &dyn Backend),
            Some(s) => Err(MachineError::Refused(format!(
                "planned on service host {s}, but no fabric configuration is in use (--fabric FILE, $MLN_FABRIC or fabric.toml in the state directory)"
            ))),
        }
    }
    fn local_uri(&self) -> String {
        self.uri.clone()
    }
    /// The embedded driver, not opened yet: from its files (opening it
    /// costs a reconnection to every running guest).
    fn glance(&self, place: Option<&str>, project: &str, hosts: &[&Host]) -> Option<Vec<PowerState>> {
        if place.is_some() || self.baremetal || self.uri != self.state.embedded_uri() || self.split.vms.cell.get().is_some() {
            return None;
        }
        let root = self.state.libvirt_root();
        hosts.iter().map(|h| crate::backend::glance::state(&root, &crate::backend::domain::domain_name(project, &h.name))).collect()
    }
}
