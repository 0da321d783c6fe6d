//! The typed plan: what `mln plan --json` prints and backends consume.
//! Field names and types are a documented interface (book: plan schema).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub project: String,
    pub hosts: Vec<Host>,
    pub switches: Vec<Switch>,
    /// Project hook scripts by name (`beforeProjectStart`...), each a list
    /// of shell lines run on the managing machine.
    pub hooks: IndexMap<String, Vec<String>>,
}

impl Plan {
    /// Its hosts by name (a lookup per host of a large plan stays cheap).
    pub fn hosts_by_name(&self) -> std::collections::HashMap<&str, &Host> {
        self.hosts.iter().map(|h| (h.name.as_str(), h)).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    Kvm,
    Xen,
    Baremetal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskMode {
    /// A copy-on-write overlay backed by the template.
    Linked,
    /// A full copy of the template.
    Full,
    /// A logical volume.
    Lvm,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub kind: HostKind,
    /// The nearest superclass, if any.
    pub superclass: Option<String>,
    /// None: built on the local machine.
    pub service_host: Option<String>,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// Physical CPUs the virtual CPUs are pinned to (`cpus`, Xen's
    /// syntax, which is libvirt's `cpuset`): `0-3,^2`, checked and written
    /// without spaces.
    pub cpus: Option<String>,
    pub template: String,
    /// Planned disk size; None when `free_space` asks for template + N.
    pub disk_mib: Option<u64>,
    pub free_space_mib: Option<u64>,
    /// A swap disk of this size (at least 1), attached after the root disk
    /// and the seed, labelled `mln-swap`.
    pub swap_mib: Option<u64>,
    pub disk_mode: DiskMode,
    pub lvm_vg: Option<String>,
    pub lvm_options: Option<String>,
    pub boot_order: u32,
    pub kernel: Option<String>,
    pub ramdisk: Option<String>,
    pub hvm: bool,
    pub vnc_display: Option<u32>,
    pub vnc_password: Option<String>,
    pub description: Option<String>,
    pub interfaces: Vec<Interface>,
    pub nameservers: Vec<String>,
    pub root_password_hash: Option<String>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub startup: Vec<String>,
    pub shutdown: Vec<String>,
    pub files: Vec<FileCopy>,
    pub mounts: Vec<Mount>,
    pub modules: Vec<String>,
    /// What each plugin's configure hook produced for this host, by plugin
    /// name, in plugin order.
    pub plugins: IndexMap<String, PluginOutput>,
    /// Keys of plugin blocks written in the host (host-context plugins), as
    /// resolved text, by plugin name.
    pub plugin_settings: IndexMap<String, serde_json::Value>,
    /// Set on a `baremetal` host whose node keywords are complete (book:
    /// baremetal.md). Absent from plans made before bare metal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Boxed: most hosts are VMs, and a node's spec (216 bytes) in every
    // host of 100,000 was 20 MB.
    pub baremetal: Option<Box<crate::baremetal::NodeSpec>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    /// None with `dhcp` or when no address is given.
    pub address: Option<String>,
    pub dhcp: bool,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    /// Given, or derived from address and netmask.
    pub broadcast: Option<String>,
    /// Given, or derived deterministically from project, host and interface.
    pub mac: String,
    pub switch: Option<String>,
    pub bridge: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub home: Option<String>,
    pub uid: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCopy {
    /// Resolved against the project file's directory.
    pub source: String,
    pub dest: String,
    pub mode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginOutput {
    pub files: Vec<GeneratedFile>,
    pub startup: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedFile {
    pub path: String,
    pub content: String,
    pub mode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub name: String,
    /// Given, or `<switch>.<project>` cut to 15 characters.
    pub bridge: String,
    pub service_host: Option<String>,
    /// `bridge` was given: an existing bridge of the machine the guests
    /// run on (a physical LAN), attached to as it is, never made or
    /// removed by mln.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach: bool,
    /// Set on a place's share when the switch's guests are on more than
    /// one place: the segment that joins its bridges into one. Not part of
    /// what the file says (the runtime fills it in per share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
}

/// One switch over several machines: a VXLAN network (`vni`) whose frames
/// go from this machine (`local`) to every other machine carrying the
/// switch (`peers`), by unicast, at their fabric addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub vni: u32,
    pub local: std::net::IpAddr,
    pub peers: Vec<std::net::IpAddr>,
}
