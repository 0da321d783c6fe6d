//! The agent protocol: requests as JSON lines on the agent's stdin, one
//! at a time (the next is sent after the answer, so one agent process
//! serves a channel's requests in turn); answers are JSON lines on its
//! stdout (`listening`, then `ok` or `error`); its stderr carries progress events
//! ([`crate::progress::Event`], one JSON line each) that the manager
//! passes on to its own telemetry. `PROTOCOL` changes whenever a message
//! changes shape.

use crate::plan::Plan;
use serde::{Deserialize, Serialize};

pub const PROTOCOL: u32 = 7;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello,
    Info,
    /// Build these hosts (the service host's share of the project).
    /// `keys`: the managing machine's project keys, for the guests' seeds
    /// (absent from an older manager: the agent then makes its own).
    Build {
        plan: Plan,
        file: String,
        opts: crate::machine::BuildOptions,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<ProjectKeys>,
    },
    /// Start (stop) these hosts of the service host's share: one
    /// boot-order group; the manager runs the hooks and the order.
    Start { project: String, hosts: Vec<String> },
    Stop { project: String, hosts: Vec<String>, mode: crate::machine::StopMode },
    Status { project: String, hosts: Vec<String> },
    Remove { project: String },
    /// Bring the service host's share to this one (the agent compares it
    /// with the share it has recorded; none recorded: it builds it).
    Upgrade {
        plan: Plan,
        file: String,
        opts: crate::machine::UpgradeOptions,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<ProjectKeys>,
    },
    /// Make ready to receive `host` of this share, running, from another
    /// service host; the streams come to `address` (this host's). Answers
    /// a `machine::Incoming`.
    Incoming { plan: Plan, host: String, address: String },
    /// The move of `host` ended: take it in (it arrived) or remove what
    /// was made ready for it.
    Arrived { plan: Plan, host: String, arrived: bool },
    /// Where a host's files are here, for a move out (`Located`).
    Locate { project: String, host: String },
    /// What a host's serial console printed from byte `offset` on.
    Console { project: String, host: String, offset: u64 },
    /// Sizes and SHA-256 of template entries (exact names).
    Templates { entries: Vec<String> },
    /// Receive one file into the templates directory: listen, answer
    /// `listening`, read the downstream plan as the next stdin line, then
    /// take the data from whoever connects with the token. The agent
    /// listens on the address the manager reached it at (SSH_CONNECTION),
    /// else on `bind`, the address the manager and the peers use for it.
    Receive {
        path: String,
        size: u64,
        sha256: String,
        token: String,
        #[serde(default)]
        bind: Option<String>,
        /// Into a host's directory (a file of a machine moving here cold)
        /// instead of the templates directory; `path` is then a plain
        /// file name.
        #[serde(default)]
        into: Option<HostFiles>,
    },
    /// Cold move, at the sender: make `host` still (`then`: how it is to
    /// be at the end) and answer its `machine::Parcel`.
    Pack { project: String, host: String, then: crate::machine::PowerState },
    /// Cold move, at the receiver: check it can take the parcel, make the
    /// host's directory.
    Ready { plan: Plan, host: String, parcel: crate::machine::Parcel },
    /// Cold move, at the receiver: the files are here; define it, restore
    /// it as it was, take it into this host's record.
    Unpack { plan: Plan, host: String, parcel: crate::machine::Parcel },
    /// Cold move failed, at the sender: bring it back as it was.
    Home { project: String, host: String, parcel: crate::machine::Parcel },
    /// Send one of a host's files to `to`, a receiver listening for it
    /// with `token` (answers `Received`).
    Send { project: String, host: String, file: String, size: u64, token: String, to: Peer },
}

/// The keys a project's guests get, as the managing machine made them
/// (book/src/login.md): the login key's public half only (its private
/// half never leaves the managing machine), and the cluster pair, which
/// the guests hold anyway.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectKeys {
    pub login_public: String,
    pub cluster_private: String,
}

/// A host's directory on a service host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostFiles {
    pub project: String,
    pub host: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub state: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Info {
    pub hostname: String,
    pub mln_version: String,
    pub libvirt_version: String,
    pub libvirt_uri: String,
    pub cpus: u32,
    pub memory_total_mib: u64,
    pub memory_available_mib: u64,
    pub domains: Vec<DomainInfo>,
    pub projects: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    /// Relative to the templates directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Where a relay sends what it receives: each inner list is one
/// downstream link, its candidates in order (the next one is tried when
/// one is dead: the chain closes over it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Downstream {
    pub links: Vec<Vec<Peer>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Received {
    pub ok: bool,
    pub message: String,
    /// Peers this relay sent the whole file to.
    pub forwarded: Vec<String>,
    /// Peers it gave up on.
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Listening(u16),
    Ok(serde_json::Value),
    /// The request as a whole failed there (one machine's failure is an
    /// outcome inside `Ok` instead); typed, so a manager can tell whether
    /// to try again.
    Error(crate::machine::MachineError),
}

/// Where a host's files are on a service host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Located {
    /// The host's directory.
    pub dir: std::path::PathBuf,
    /// The templates directory.
    pub templates: std::path::PathBuf,
    /// The libvirt URI the agent uses.
    pub connect: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsoleChunk {
    /// The bytes from the asked offset on, as text (invalid UTF-8 replaced).
    pub data: String,
    /// Where the next read starts.
    pub offset: u64,
}
