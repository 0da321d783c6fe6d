//! Which action each changed key of a host needs, and why. The rules are
//! MLN's (section V of the paper) with libvirt's limits: what a running
//! domain takes (less memory, fewer vCPUs, pinning, interfaces) is live;
//! what the guest reads at boot is a new seed; what QEMU is started with
//! needs a restart; disks and places are their own actions.

use serde::Serialize;
use serde_json::Value;

/// The action a host needs, lightest first: a host with several changes
/// takes the heaviest (the order of the variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Unchanged,
    /// Applied to the running domain and to its definition.
    Live,
    /// A new seed (or filesystem-template write) with a new instance id:
    /// the guest applies it at its next boot.
    GuestConfig,
    /// Stop, redefine, start.
    Restart,
    /// The disk grows, or a new disk is made.
    Disk,
    /// The host moves to another service host.
    Migrate,
    Add,
    Remove,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unchanged => "unchanged",
            Class::Live => "live",
            Class::GuestConfig => "guest-config",
            Class::Restart => "restart",
            Class::Disk => "disk",
            Class::Migrate => "migrate",
            Class::Add => "add",
            Class::Remove => "remove",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change no action can make: the new file is refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impossible(pub String);

fn number(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// The class of one changed top-level key of a host (`interfaces` and its
/// parts are classified by `interface_key`), with the reason.
pub fn key(name: &str, old: &Value, new: &Value) -> Result<(Class, String), Impossible> {
    let grows = |what: &str| match (number(old), number(new)) {
        (Some(a), Some(b)) if b < a => Ok((Class::Live, format!("{what} goes down: the running domain gives it back"))),
        _ => Ok((Class::Restart, format!("{what} above the domain's maximum ({}) needs a new QEMU", show(old)))),
    };
    match name {
        "memory_mib" => grows("memory"),
        // Every vCPU of a domain is there from its start: none can be
        // unplugged from the running guest.
        "vcpus" => Ok((Class::Restart, "the number of vCPUs is what QEMU starts with".into())),
        "cpus" => Ok((Class::Live, "vCPU pinning changes on the running domain".into())),
        "boot_order" | "description" => Ok((Class::Live, format!("{name} is recorded; nothing on the machine changes"))),
        "service_host" => Ok((Class::Migrate, "the host belongs on another service host".into())),
        "disk_mib" => match (number(old), number(new)) {
            (Some(a), Some(b)) if b < a => Err(Impossible(format!("the disk cannot shrink ({a} MiB to {b} MiB)"))),
            _ => Ok((Class::Disk, "the disk grows (the guest's file system is grown at its next boot)".into())),
        },
        "template" | "free_space_mib" | "disk_mode" | "lvm_vg" | "lvm_options" => {
            Ok((Class::Disk, format!("{name} changed: a new disk is made (the old one is kept until the new one works)")))
        }
        "swap_mib" => Ok((Class::Disk, "the swap disk is made anew".into())),
        "nameservers" | "root_password_hash" | "users" | "groups" | "startup" | "shutdown" | "files" | "mounts" | "modules" | "plugins"
        | "plugin_settings" => Ok((Class::GuestConfig, format!("{} is configured by the guest at boot", label(name)))),
        "kernel" | "ramdisk" | "hvm" | "kind" | "vnc_display" | "vnc_password" => Ok((Class::Restart, format!("{} is what QEMU starts with", label(name)))),
        // Only a name: the resolved values it gave are compared themselves.
        "superclass" => Ok((Class::Unchanged, String::new())),
        other => Ok((Class::Restart, format!("no lighter way is known to apply {other}"))),
    }
}

/// The class of a change inside one interface (`address`, `switch`...).
pub fn interface_key(name: &str) -> (Class, String) {
    match name {
        "mac" | "switch" | "bridge" => (Class::Live, format!("the interface is plugged anew ({name})")),
        _ => (Class::GuestConfig, format!("the guest configures {name} at boot")),
    }
}

/// What people read for a key.
pub fn label(name: &str) -> &str {
    match name {
        "memory_mib" => "memory (MiB)",
        "disk_mib" => "size (MiB)",
        "free_space_mib" => "free_space (MiB)",
        "swap_mib" => "swap (MiB)",
        "root_password_hash" => "root password",
        "vnc_display" => "vnc",
        "vnc_password" => "vnc password",
        "service_host" => "service_host",
        other => other,
    }
}

/// Values that are secrets (hashes of passwords) or may hold some (what
/// plugins wrote) are never shown.
pub fn secret(name: &str) -> bool {
    matches!(name, "root_password_hash" | "vnc_password" | "users" | "plugins" | "plugin_settings")
}

/// A value for a person: strings unquoted, absent as `-`.
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            let items: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            if items.is_empty() { "(none)".into() } else { items.join(", ") }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn memory_down_is_live_and_up_needs_a_restart() {
        assert_eq!(key("memory_mib", &json!(512), &json!(256)).unwrap().0, Class::Live);
        assert_eq!(key("memory_mib", &json!(512), &json!(1024)).unwrap().0, Class::Restart);
        assert_eq!(key("vcpus", &json!(2), &json!(1)).unwrap().0, Class::Restart);
    }

    #[test]
    fn a_disk_grows_but_never_shrinks() {
        assert_eq!(key("disk_mib", &json!(1024), &json!(2048)).unwrap().0, Class::Disk);
        assert!(key("disk_mib", &json!(2048), &json!(1024)).is_err());
    }

    #[test]
    fn the_heaviest_class_wins() {
        let mut v = [Class::GuestConfig, Class::Live, Class::Disk, Class::Restart];
        v.sort();
        assert_eq!(v.last(), Some(&Class::Disk));
        assert!(Class::Migrate > Class::Disk && Class::Live > Class::Unchanged);
    }
}
