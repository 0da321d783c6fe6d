//! Bare-metal nodes: Kadeploy-style disk imaging and DRBL-style diskless
//! boot, as a second backend beside libvirt (see
//! ../../book/src/baremetal.md once written).
//!
//! This file holds what the parts share, so they can be written apart:
//! the plan's description of a node ([`NodeSpec`]), power control
//! ([`PowerDriver`]) and network-boot profiles ([`NetBoot`]). The
//! deployment automaton drives nodes only through these traits, so a new
//! power driver or boot service is one new implementation.

pub mod automaton;
pub mod backend;
pub mod env;
pub mod split;
pub mod stats;

use serde::{Deserialize, Serialize};

/// A bare-metal host as the plan holds it (`plan::Host::baremetal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The MAC the node network-boots from: lower case, colon-separated.
    pub mac: String,
    pub power: PowerSpec,
    /// The disk the environment is written to (`/dev/sda`); None when the
    /// node boots diskless.
    pub disk: Option<String>,
    /// The partition of `disk` the environment goes to; None: the whole
    /// disk gets one partition table with one root partition.
    pub partition: Option<u32>,
    pub environment: EnvRef,
    pub boot: BootMode,
    /// The power-command level below the node's own driver (`power {
    /// fallback { } }`): a PDU outlet, the site's script. It wins over
    /// its cluster's `power_command` (the fabric file's site default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<automaton::PowerCommand>,
}

/// `environment NAME[:VERSION]`: None is the newest version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRef {
    pub name: String,
    pub version: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// Deployed to the disk, then booted from it.
    Disk,
    /// Booted from the network into a RAM root; nothing written to disk.
    Diskless,
}

/// `power { driver ...; ... }`. Secrets never stand in the project file:
/// IPMI reads its password from a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "lowercase")]
pub enum PowerSpec {
    Ipmi { address: String, port: u16, user: String, password_file: String },
    /// Command templates with `{host}` and `{mac}`, each run as an argv
    /// (split into words before the placeholders are filled in, never
    /// through a shell). `cycle` is the "very hard" level (a PDU outlet).
    Command { on: String, off: String, reset: String, status: String, cycle: Option<String> },
    /// A soft reboot through SSH only: no power on or off.
    Ssh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    On,
    Off,
    Reset,
    /// Off, then on (the "very hard" reboot).
    Cycle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerReading {
    On,
    Off,
}

/// Kadeploy's reboot escalation: each level is tried when the one before
/// failed or is not configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebootLevel {
    /// `reboot` through SSH on the running system.
    Soft,
    /// IPMI reset (or the command driver's `reset`).
    Hard,
    /// Power cycle (or the command driver's `cycle`).
    VeryHard,
}

/// Which power control did a power action: the reboot escalation's
/// levels are done by different drivers, and a refused driver hands the
/// action down to the power-command level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerVia {
    /// `reboot` in the running system, over SSH (the soft level, or
    /// `driver ssh`).
    Ssh,
    Ipmi,
    /// The node's own `driver command` templates.
    Command,
    /// The node's `power { fallback { } }` templates.
    Fallback,
    /// Its cluster's `power_command` (the fabric file).
    ClusterCommand,
}

impl PowerVia {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerVia::Ssh => "ssh",
            PowerVia::Ipmi => "ipmi",
            PowerVia::Command => "command",
            PowerVia::Fallback => "fallback",
            PowerVia::ClusterCommand => "power_command",
        }
    }
    /// The node's own driver.
    pub fn of(spec: &PowerSpec) -> PowerVia {
        match spec {
            PowerSpec::Ipmi { .. } => PowerVia::Ipmi,
            PowerSpec::Command { .. } => PowerVia::Command,
            PowerSpec::Ssh => PowerVia::Ssh,
        }
    }
}

impl RebootLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RebootLevel::Soft => "soft",
            RebootLevel::Hard => "hard",
            RebootLevel::VeryHard => "very_hard",
        }
    }
}

/// The reboot that acted in a step: its level and who did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerUse {
    pub level: RebootLevel,
    pub via: PowerVia,
}

impl std::fmt::Display for PowerUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.level.as_str(), self.via.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    /// This driver has no such action (ssh cannot power on).
    #[error("the {driver} driver cannot {action}")]
    Unsupported { driver: &'static str, action: &'static str },
    /// The controller refused the credentials: trying again will not help.
    #[error("power control of {node} refused the credentials: {detail}")]
    Auth { node: String, detail: String },
    /// The controller did not answer (may be busy or rebooting).
    #[error("power control of {node} did not answer: {detail}")]
    Unreachable { node: String, detail: String },
    /// The command ran and failed.
    #[error("power control of {node} failed: {detail}")]
    Failed { node: String, detail: String, retry: bool },
}

impl PowerError {
    pub fn retryable(&self) -> bool {
        match self {
            PowerError::Unsupported { .. } | PowerError::Auth { .. } => false,
            PowerError::Unreachable { .. } => true,
            PowerError::Failed { retry, .. } => *retry,
        }
    }
}

/// One node's power control.
pub trait PowerDriver: Send + Sync {
    fn act(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError>;
    fn status(&self, node: &str, spec: &NodeSpec) -> Result<PowerReading, PowerError>;
    /// A power action, and which power control did it (a driver that
    /// hands refused actions down to a power-command level says so).
    fn act_via(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<PowerVia, PowerError> {
        self.act(node, spec, action).map(|()| PowerVia::of(&spec.power))
    }
    /// Best effort: the firmware's next boot from the local disk (IPMI
    /// `chassis bootdev disk`); drivers with no such setting do nothing.
    fn boot_disk_next(&self, _node: &str, _spec: &NodeSpec) {}
    /// Through which lower power level the node was driven, and why (its
    /// own driver refused), if it was: the build reports it.
    fn escalated(&self, _node: &str) -> Option<String> {
        None
    }
}

/// What a node boots into the next time it boots from the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "profile", rename_all = "snake_case")]
pub enum BootProfile {
    /// The deploy system mln builds (kernel + initramfs with an SSH server
    /// and the disk tools).
    Deploy,
    /// Boot from the local disk (iPXE `sanboot`/`exit`).
    Disk,
    /// The environment's kernel with a RAM root and the node's
    /// configuration, served over HTTP/TFTP; nothing written to disk.
    Diskless { environment: EnvRef },
}

/// A node as the boot service knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootNode {
    pub project: String,
    pub host: String,
    pub mac: String,
    /// The address the boot service leases to it.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetBootError {
    #[error("the network-boot service failed: {detail}")]
    Service { detail: String, retry: bool },
    #[error("{0}")]
    Refused(String),
}

/// DHCP leases, TFTP/HTTP files and per-node iPXE scripts: dnsmasq run by
/// mln, or profiles written into an existing PXE server's directory.
pub trait NetBoot: Send + Sync {
    /// The node's lease and its next boot.
    fn set_profile(&self, node: &BootNode, profile: &BootProfile) -> Result<(), NetBootError>;
    /// The node's lease and profile gone (on `remove`).
    fn forget(&self, project: &str, host: &str) -> Result<(), NetBootError>;
    /// After a removal: a service mln runs stops once it serves no node
    /// (so nothing of mln's answers DHCP on a network it is done with).
    fn idle(&self) -> Result<bool, NetBootError> {
        Ok(false)
    }
}

pub mod power;
pub mod netboot;
pub mod deploysys;
pub mod ops;
pub mod chain;
pub mod hop;
pub mod deploysrc;
pub mod bootnet;
pub mod diskless;
