//! What the state database holds, typed.

use crate::plan::Plan;
use serde::Serialize;

/// Where a project's build stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A build began and has not finished every host (interrupted, or
    /// still running): `build` again resumes it.
    Building,
    /// The last build failed on some hosts: `build` again finishes it.
    Failed,
    /// Every host is built.
    Built,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Building => "building",
            Phase::Failed => "failed",
            Phase::Built => "built",
        }
    }
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "building" => Phase::Building,
            "failed" => Phase::Failed,
            "built" => Phase::Built,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One project as this state directory knows it: on the managing machine
/// the whole plan and every service host that may hold part of it; on a
/// service host, its share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectRecord {
    pub name: String,
    pub phase: Phase,
    /// The project file it was built from.
    pub file: String,
    /// The libvirt connection of the hosts built here.
    pub connect: String,
    pub plan: Plan,
    /// Service hosts that hold (or may hold) part of the project, named
    /// before anything is made on them.
    pub places: Vec<String>,
}

/// One host of a project as this state directory knows it: where it is
/// and how far its build got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostRecord {
    pub host: String,
    /// The service host it is on; None: this machine.
    pub place: Option<String>,
    pub phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// A domain, by name.
    Domain,
    /// A file: disk, seed, kernel copy.
    Disk,
    Seed,
    /// A host's directory (removed with what it holds).
    Dir,
    /// A switch's bridge, by interface name (project-wide).
    Bridge,
    /// A switch's VXLAN port joining its bridges on several machines, by
    /// interface name (project-wide).
    Tunnel,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Domain => "domain",
            ResourceKind::Disk => "disk",
            ResourceKind::Seed => "seed",
            ResourceKind::Dir => "dir",
            ResourceKind::Bridge => "bridge",
            ResourceKind::Tunnel => "tunnel",
        }
    }
    pub fn parse(s: &str) -> Option<ResourceKind> {
        Some(match s {
            "domain" => ResourceKind::Domain,
            "disk" => ResourceKind::Disk,
            "seed" => ResourceKind::Seed,
            "dir" => ResourceKind::Dir,
            "bridge" => ResourceKind::Bridge,
            "tunnel" => ResourceKind::Tunnel,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Empty for project-wide resources (bridges).
    pub host: String,
    pub kind: ResourceKind,
    pub ident: String,
}

/// The plan as recorded: secrets that the running machines no longer need
/// (the VNC password went into the domain definition at build time) are
/// replaced by their SHA-256, so a record still tells whether a later plan
/// changed them.
pub fn redacted(plan: &Plan) -> Plan {
    let mut p = plan.clone();
    p.hosts.iter_mut().for_each(redact);
    p
}

/// One host as `redacted` records it.
pub fn redacted_host(h: &crate::plan::Host) -> crate::plan::Host {
    let mut h = h.clone();
    redact(&mut h);
    h
}

fn redact(h: &mut crate::plan::Host) {
    use sha2::{Digest, Sha256};
    if let Some(pw) = &mut h.vnc_password {
        if !pw.starts_with("sha256:") {
            let d = Sha256::digest(pw.as_bytes());
            *pw = format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
    }
}
