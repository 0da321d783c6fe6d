//! Upgrading built libvirt machines in place: what a running domain takes
//! is applied to it (memory down, pinning, interfaces plugged, unplugged
//! and moved) and to its definition; the guest's configuration is
//! written anew (a new seed, or the filesystem template's files, never
//! while that file system is mounted); what QEMU starts with needs a
//! restart; a grown disk grows under the running guest. Each step is
//! safe to run again: a re-run after an interruption finishes the rest.

use super::domain::domain_name;
use super::libvirt::err;
use super::machines::LibvirtMachines;
use crate::machine::{Done, Machine, MachineError, Power, PowerState, Provision, StopMode, Update, UpgradeOptions};
use crate::plan::{Host, Plan};
use crate::state::{Resource, ResourceKind};
use crate::upgrade::Class;
use std::time::Duration;

/// How long a guest gets to shut down for a restart an upgrade needs.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(120);

impl Update for LibvirtMachines<'_> {
    fn update(&self, plan: &Plan, old: &Host, m: &Machine, class: Class, opts: &UpgradeOptions) -> Result<Done, MachineError> {
        let h = m.host;
        let was = self.state(m)?;
        if was == PowerState::Absent {
            return Err(MachineError::Refused("not built (run mln build)".into()));
        }
        // Its memory image holds the old machine (and a mounted file
        // system): restored, it would undo the change or be corrupted by it.
        if was == PowerState::Saved && class != Class::Unchanged {
            return Err(MachineError::Refused("saved to disk: start it (or stop it with -H) before upgrading it".into()));
        }
        match class {
            Class::Unchanged => return Ok(Done::ok("unchanged")),
            Class::Migrate => {
                return Err(MachineError::Refused(format!(
                    "moving from {} to {} is a migration, which upgrade does not do yet",
                    old.service_host.as_deref().unwrap_or("this machine"),
                    h.service_host.as_deref().unwrap_or("this machine")
                )))
            }
            Class::Add | Class::Remove => return Err(MachineError::Refused(format!("{class} is not an update of a built host"))),
            _ => {}
        }
        let p = self.prepared_for(plan)?;
        // The host's class is its heaviest change; it may have lighter
        // ones of other kinds too (a disk grown and a kernel changed).
        let mut has = crate::upgrade::classes_of(old, h);
        has.insert(class);
        let new_disk = if has.contains(&Class::Disk) { new_disk_for(old, h)? } else { Vec::new() };
        let running = was == PowerState::Running;
        let fs_template = super::provision::uses_fs_template(&p, h);
        // A filesystem template's files are written into the disk itself,
        // and a disk is replaced: never under a running guest.
        let stop_first = running && (has.contains(&Class::Restart) || (has.contains(&Class::GuestConfig) && fs_template) || !new_disk.is_empty());
        let name = domain_name(m.project, &h.name);
        let mut said = Vec::new();
        if stop_first {
            let d = self.stop(m, StopMode::Graceful { wait: Some(SHUTDOWN_WAIT) })?;
            said.push(format!("stopped ({})", d.message));
        }
        // The old disks are set aside, not removed, until the host works
        // with its new ones; put back if it does not.
        let mut aside = Vec::new();
        let old_xml = self.lv.domain(&name).ok().and_then(|d| d.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE).ok());
        if !new_disk.is_empty() {
            aside = self.set_aside(m, old, h)?;
            said.push(format!("new disk ({} changed; the old one kept until the host works)", new_disk.join(", ")));
        } else if has.contains(&Class::Disk) {
            said.push(self.grow_disk(&p, m, running && !stop_first)?);
        }
        match self.finish_update(&p, plan, old, m, &has, opts, running, stop_first, fs_template, class) {
            Ok(more) => {
                said.extend(more);
                self.drop_aside(m, &aside);
                Ok(Done::ok(said.join("; ")))
            }
            Err(e) if !aside.is_empty() => {
                let back = self.put_back(m, &aside, old_xml.as_deref());
                Err(MachineError::Failed(format!("{e}; the old disks are back{}", back.err().map(|b| format!(" (but: {b})")).unwrap_or_default())))
            }
            Err(e) => Err(e),
        }
    }

    fn retire(&self, project: &str, host: &str, opts: &UpgradeOptions) -> Result<Done, MachineError> {
        self.retire_host(project, host, opts)
    }
}

impl LibvirtMachines<'_> {
    /// What follows the disks in an update: configuration, definition,
    /// live changes, the restart the change needs.
    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &self,
        p: &super::machines::Prepared,
        plan: &Plan,
        old: &Host,
        m: &Machine,
        has: &std::collections::BTreeSet<Class>,
        opts: &UpgradeOptions,
        running: bool,
        stop_first: bool,
        fs_template: bool,
        class: Class,
    ) -> Result<Vec<String>, MachineError> {
        let h = m.host;
        let mut said = Vec::new();
        // The guest's configuration is written only when it is to be
        // applied, and never into the disk of a running guest.
        let xml = if running && !stop_first && fs_template {
            super::provision::definition(self, p, plan, h)?
        } else {
            super::provision::reconfigure(self, p, plan, h)?
        };
        let name = domain_name(m.project, &h.name);
        let xml = self.keep_vnc_secret(&name, h, xml)?;
        self.lv.define(&super::provision::keeping_uuid(self, m.project, h, &xml)).map_err(MachineError::from)?;
        if running && !stop_first {
            said.extend(self.apply_live(&name, old, h, &xml)?);
        }
        // A running guest reads its configuration at boot: restarted when
        // asked (-S), or when it is being configured again on purpose.
        let restart_for_config = running && !stop_first && has.contains(&Class::GuestConfig) && (opts.start_changed || opts.reconfigure.contains(&h.name));
        if restart_for_config {
            self.stop(m, StopMode::Graceful { wait: Some(SHUTDOWN_WAIT) })?;
        }
        let start = stop_first || restart_for_config || (!running && opts.start_changed && class != Class::Live);
        if start {
            self.start(m)?;
            said.push("started".into());
        } else if has.contains(&Class::GuestConfig) {
            said.push("new configuration: the guest applies it at its next boot (-S restarts it)".into());
        }
        if said.is_empty() {
            said.push("definition updated".into());
        }
        Ok(said)
    }

    /// The host's disks that a new one replaces, renamed `NAME.old` (and
    /// recorded, so `remove` finds them): its root disk, and its swap disk
    /// if that changed. Run again after an interruption, a disk already
    /// set aside stays the old one and what was made since is dropped.
    fn set_aside(&self, m: &Machine, old: &Host, new: &Host) -> Result<Vec<std::path::PathBuf>, MachineError> {
        let dir = self.state.host_dir(m.project, &new.name)?;
        let mut names = vec!["disk.qcow2", "disk.img"];
        if old.swap_mib != new.swap_mib {
            names.push("swap.img");
        }
        let mut out = Vec::new();
        for n in names {
            let (now, aside) = (dir.join(n), dir.join(format!("{n}.old")));
            if aside.exists() {
                let _ = std::fs::remove_file(&now);
            } else if now.exists() {
                self.state.record(m.project, &Resource { host: new.name.clone(), kind: ResourceKind::Disk, ident: aside.display().to_string() })?;
                std::fs::rename(&now, &aside).map_err(|e| MachineError::Failed(format!("cannot set {} aside: {e}", now.display())))?;
            } else {
                continue;
            }
            out.push(aside);
        }
        Ok(out)
    }

    /// The old disks, no longer needed: removed and forgotten.
    fn drop_aside(&self, m: &Machine, aside: &[std::path::PathBuf]) {
        for a in aside {
            if std::fs::remove_file(a).is_ok() || !a.exists() {
                let _ = self.state.forget_resource(m.project, &Resource { host: m.host.name.clone(), kind: ResourceKind::Disk, ident: a.display().to_string() });
            }
        }
    }

    /// The old disks back in place of the new ones, and the old definition.
    fn put_back(&self, m: &Machine, aside: &[std::path::PathBuf], old_xml: Option<&str>) -> Result<(), MachineError> {
        let _ = self.lv.destroy(&domain_name(m.project, &m.host.name));
        for a in aside {
            let orig = a.with_extension("");
            let _ = std::fs::remove_file(&orig);
            std::fs::rename(a, &orig).map_err(|e| MachineError::Failed(format!("cannot put {} back: {e}", orig.display())))?;
            let _ = self.state.forget_resource(m.project, &Resource { host: m.host.name.clone(), kind: ResourceKind::Disk, ident: a.display().to_string() });
        }
        if let Some(xml) = old_xml {
            self.lv.define(xml).map_err(MachineError::from)?;
        }
        Ok(())
    }

    fn retire_host(&self, project: &str, host: &str, opts: &UpgradeOptions) -> Result<Done, MachineError> {
        let mut kept = Vec::new();
        if opts.keep_disks {
            let name = domain_name(project, host);
            self.lv.destroy_and_undefine(&name).map_err(MachineError::from)?;
            // Each removal keeps into a directory of its own: a host of the
            // same name removed again later keeps its disks beside these.
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let dir = crate::name::inside(&self.state.dir().join("kept"), &[project, &format!("{host}-{stamp}")])
                .map_err(|e| MachineError::Refused(e.to_string()))?;
            for r in self.state.resources(project)?.into_iter().filter(|r| r.host == host && r.kind == ResourceKind::Disk) {
                let from = std::path::Path::new(&r.ident);
                if !self.state.owns_path(from) {
                    continue;
                }
                if from.exists() {
                    std::fs::create_dir_all(&dir).map_err(|e| MachineError::Failed(format!("cannot create {}: {e}", dir.display())))?;
                    let to = dir.join(from.file_name().unwrap_or_default());
                    if to.exists() {
                        return Err(MachineError::Refused(format!("{} exists: not overwriting a kept disk", to.display())));
                    }
                    std::fs::rename(from, &to).map_err(|e| MachineError::Failed(format!("cannot keep {}: {e}", from.display())))?;
                    kept.push(to.display().to_string());
                }
                self.state.forget_resource(project, &r)?;
            }
        }
        self.remove(project, host)?;
        Ok(Done::ok(if kept.is_empty() { "removed".into() } else { format!("removed; disks kept: {}", kept.join(", ")) }))
    }
}

impl LibvirtMachines<'_> {
    /// The root disk to the new plan's size: under a running guest (which
    /// sees its disk grow), or with qemu-img.
    fn grow_disk(&self, p: &super::machines::Prepared, m: &Machine, live: bool) -> Result<String, MachineError> {
        let (disk, mib) = super::provision::disk_of(self, p, m.project, m.host)?;
        let now = super::provision::disk_mib_now(&disk)?;
        if mib < now {
            return Err(MachineError::Refused(format!("the disk is {now} MiB: it cannot shrink to {mib} MiB")));
        }
        if mib == now {
            return Ok(format!("disk already {mib} MiB"));
        }
        if live {
            let d = self.lv.domain(&domain_name(m.project, &m.host.name)).map_err(MachineError::from)?;
            d.block_resize(&disk.to_string_lossy(), mib << 20, virt::sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
                .map_err(|e| MachineError::from(err("cannot grow the disk", e)))?;
        } else {
            super::provision::resize(&disk, mib)?;
        }
        Ok(format!("disk grown to {mib} MiB"))
    }

    /// What the running domain takes of the change from `old` to `new`.
    fn apply_live(&self, name: &str, old: &Host, new: &Host, new_xml: &str) -> Result<Vec<String>, MachineError> {
        let live = virt::sys::VIR_DOMAIN_AFFECT_LIVE;
        let d = self.lv.domain(name).map_err(MachineError::from)?;
        fn fail(what: &str) -> impl FnOnce(virt::error::Error) -> MachineError + '_ {
            move |e| MachineError::from(err(what, e))
        }
        let mut said = Vec::new();
        if new.memory_mib < old.memory_mib {
            d.set_memory_flags(new.memory_mib << 10, live).map_err(fail("cannot lower the memory"))?;
            said.push(format!("memory {} MiB", new.memory_mib));
        }
        if new.cpus != old.cpus {
            let cpus = self.lv.conn().node_info().map(|n| n.cpus as usize).unwrap_or(1).max(1);
            let map = cpumap(new.cpus.as_deref(), cpus).ok_or_else(|| MachineError::Refused(format!("cpus {} names no CPU of this machine's {cpus}", new.cpus.as_deref().unwrap_or(""))))?;
            for v in 0..new.vcpus {
                d.pin_vcpu_flags(v, &map, live).map_err(fail("cannot pin the vCPUs"))?;
            }
            said.push(format!("pinned to {}", new.cpus.as_deref().unwrap_or("all CPUs")));
        }
        // Interfaces as the running domain has them now, so a re-run after
        // an interruption does only what is left.
        let running_xml = d.xml_desc(0).map_err(fail("cannot read the domain"))?;
        let plugged = |mac: &str| interface_block(&running_xml, mac);
        for o in old.interfaces.iter().filter(|o| !new.interfaces.iter().any(|n| n.mac == o.mac)) {
            if let Some(block) = plugged(&o.mac) {
                d.detach_device_flags(&block, live).map_err(fail(&format!("cannot unplug {}", o.name)))?;
                said.push(format!("{} unplugged", o.name));
            }
        }
        for n in &new.interfaces {
            let Some(block) = interface_block(new_xml, &n.mac) else { continue };
            match old.interfaces.iter().find(|o| o.mac == n.mac) {
                // The same card moved to another switch or bridge: its
                // link changes in place.
                Some(o) if o.switch != n.switch || o.bridge != n.bridge => {
                    d.update_device_flags(&block, live).map_err(fail(&format!("cannot move {}", n.name)))?;
                    said.push(format!("{} moved", n.name));
                }
                Some(_) => {}
                None if plugged(&n.mac).is_none() => {
                    d.attach_device_flags(&block, live).map_err(fail(&format!("cannot plug {} in", n.name)))?;
                    said.push(format!("{} plugged in", n.name));
                }
                None => {}
            }
        }
        Ok(said)
    }

    /// A plan read back from the record holds the VNC password's hash
    /// only: the domain keeps the password it has.
    fn keep_vnc_secret(&self, name: &str, h: &Host, xml: String) -> Result<String, MachineError> {
        let Some(pw) = h.vnc_password.as_deref().filter(|p| p.starts_with("sha256:")) else { return Ok(xml) };
        let current = self
            .lv
            .domain(name)
            .and_then(|d| d.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE).map_err(|e| err(&format!("cannot read {name}"), e)))
            .map_err(MachineError::from)?;
        let attr = |x: &str| -> Option<String> {
            let i = x.find("<graphics")?;
            let rest = &x[i..x[i..].find('>').map(|e| i + e)?];
            let p = rest.find("passwd='")? + "passwd='".len();
            Some(rest[p..p + rest[p..].find('\'')?].to_string())
        };
        match attr(&current) {
            Some(keep) => Ok(xml.replace(&format!("passwd='{pw}'"), &format!("passwd='{keep}'"))),
            None => Ok(xml.replace(&format!(" passwd='{pw}'"), "")),
        }
    }
}

/// What changed that needs a new disk (none: a grown one is grown in
/// place). LVM disks are not built at all, so never made anew either.
fn new_disk_for(old: &Host, new: &Host) -> Result<Vec<&'static str>, MachineError> {
    if old.lvm_vg != new.lvm_vg || old.lvm_options != new.lvm_options {
        return Err(MachineError::Refused("lvm changed: LVM disks are not supported (book: backends)".into()));
    }
    Ok([
        ("template", old.template != new.template),
        ("free_space", old.free_space_mib != new.free_space_mib),
        ("swap", old.swap_mib != new.swap_mib),
        ("disk mode", old.disk_mode != new.disk_mode),
    ]
    .into_iter()
    .filter(|(_, c)| *c)
    .map(|(n, _)| n)
    .collect())
}

/// The `<interface>` element of `xml` with MAC address `mac`.
fn interface_block(xml: &str, mac: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(start) = rest.find("<interface") {
        let end = rest[start..].find("</interface>")? + start + "</interface>".len();
        let block = &rest[start..end];
        if block.contains(&format!("address='{mac}'")) || block.contains(&format!("address=\"{mac}\"")) {
            return Some(block.to_string());
        }
        rest = &rest[end..];
    }
    None
}

/// A CPU set (`0-3,^2`, checked by the compiler) as libvirt's CPU map
/// for a machine of `cpus` CPUs, one bit each; none means every CPU. None
/// when the set names none of them.
fn cpumap(set: Option<&str>, cpus: usize) -> Option<Vec<u8>> {
    let mut on = vec![set.is_none(); cpus.max(64)];
    if let Some(set) = set {
        for item in set.split(',') {
            let (neg, item) = match item.strip_prefix('^') {
                Some(i) => (true, i),
                None => (false, item),
            };
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                for c in a..=b.min(on.len() - 1) {
                    on[c] = !neg;
                }
            }
        }
    }
    on.truncate(cpus);
    if !on.iter().any(|&x| x) {
        return None;
    }
    Some(on.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |b, (i, &x)| b | ((x as u8) << i))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redefinition_keeps_the_uuid() {
        let x = super::super::provision::with_uuid("<domain type='qemu'>\n  <name>a.p</name>\n  <memory>1</memory>\n</domain>\n", "0-1-2");
        assert_eq!(x, "<domain type='qemu'>\n  <name>a.p</name>\n  <uuid>0-1-2</uuid>\n  <memory>1</memory>\n</domain>\n");
    }

    #[test]
    fn interfaces_are_found_by_mac() {
        let xml = "<devices><interface type='user'><mac address='52:54:00:00:00:01'/></interface>\
                   <interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='b'/></interface></devices>";
        assert_eq!(interface_block(xml, "52:54:00:00:00:02").unwrap(), "<interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='b'/></interface>");
        assert!(interface_block(xml, "52:54:00:00:00:03").is_none());
    }

    #[test]
    fn cpu_sets_become_maps() {
        assert_eq!(cpumap(Some("0-1,^0"), 4), Some(vec![0b10]));
        assert_eq!(cpumap(None, 10), Some(vec![0xff, 0b11]));
        assert_eq!(cpumap(Some("8-9"), 4), None, "a set naming no CPU of the machine");
    }
}
