//! Live migration of libvirt domains between two libvirts (each a
//! service host's daemon): the receiving side makes the machine's files
//! with its disks empty, the sender has libvirt copy memory and the
//! machine's own disks (copy-storage-inc: an overlay's template is
//! already there and does not travel) straight between the two QEMUs,
//! to the receiving host's address only. This process holds both
//! connections (libvirt's managed migration), so neither libvirt needs
//! to reach the other, and neither listens for more than the migration.

use super::libvirt::{err, Libvirt};
use super::machines::LibvirtMachines;
use crate::machine::{Done, Incoming, Machine, MachineError, Migrate, PowerState, Power, Provision};
use crate::plan::Plan;
use std::net::IpAddr;
use std::path::Path;

impl Migrate for LibvirtMachines<'_> {
    fn prepare_incoming(&self, plan: &Plan, m: &Machine, address: &str) -> Result<Incoming, MachineError> {
        let ip = address_of(address)?;
        if self.uri().starts_with("qemu:///embed") {
            return Err(MachineError::Refused(format!(
                "{} is libvirt's embedded driver, which no other process can reach: a machine migrates live only to a libvirt daemon",
                self.uri()
            )));
        }
        let p = self.prepared_for(plan)?;
        let dir = super::provision::incoming_host(self, &p, plan, m.host)?;
        Ok(Incoming { connect: self.uri().to_string(), address: ip.to_string(), dir, templates: self.templates.clone() })
    }

    fn send(&self, m: &Machine, to: &Incoming) -> Result<Done, MachineError> {
        let here = self.state.host_dir(m.project, &m.host.name)?;
        send_live(&self.lv, &Self::domain(m), &here, &self.templates, to)
    }

    fn finish_incoming(&self, plan: &Plan, m: &Machine, arrived: bool) -> Result<Done, MachineError> {
        if !arrived {
            // What was prepared, and recorded, goes; a domain here would
            // mean it did arrive after all, and is left alone.
            if self.lv.exists(&Self::domain(m)) {
                return Err(MachineError::Refused(format!("{} is defined here: it arrived", Self::domain(m))));
            }
            self.remove(&plan.project, &m.host.name)?;
            return Ok(Done::ok("did not arrive: what was prepared for it is removed"));
        }
        match self.state(m)? {
            PowerState::Running => Ok(Done::ok("arrived, running")),
            s => Err(MachineError::Failed(format!("expected it running here after the migration, found it {s}"))),
        }
    }
}

/// Sends the running domain `name` from `src` to the place `to` made
/// ready, live: its definition's paths under `here` (the machine's
/// directory at the sender) and `templates` (the sender's) rewritten to
/// the receiver's, memory and the machine's own disks streamed to the
/// receiver's address only. The caller holds both connections, so neither
/// libvirt needs to reach the other.
pub fn send_live(src: &Libvirt, name: &str, here: &Path, templates: &Path, to: &Incoming) -> Result<Done, MachineError> {
    match src.state(name) {
        PowerState::Running => {}
        s => {
            return Err(MachineError::Refused(format!(
                "{s}: only a running machine migrates live (one that is not running moves cold, with its files)"
            )))
        }
    }
    let ip = address_of(&to.address)?;
    // The receiving side names the URI: never one that runs a command.
    safe_uri(&to.connect)?;
    let dst = Libvirt::open(&to.connect).map_err(MachineError::from)?;
    let dom = src.domain(name).map_err(MachineError::from)?;
    // Paused: left so by a migration interrupted at its end (mln has no
    // pause of its own). It runs on here until it has moved.
    if matches!(dom.state(), Ok((s, _)) if s.is_any(vec![virt::domain::DomainState::Paused])) {
        dom.resume().map_err(|e| MachineError::from(err(&format!("cannot resume {name}, found paused"), e)))?;
    }
    let xml = dom
        .xml_desc(virt::sys::VIR_DOMAIN_XML_MIGRATABLE | virt::sys::VIR_DOMAIN_XML_SECURE)
        .map_err(|e| MachineError::from(err(&format!("cannot read {name}'s definition"), e)))?;
    let xml = rewrite_paths(&xml, &[(here, &to.dir), (templates, &to.templates)]);
    // The definition comes from the sending host, which the receiving
    // host need not trust: only what a machine of mln's may hold goes.
    check_definition(&xml, to)?;
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let params = virt::domain::MigrateParameters {
        uri: Some(format!("tcp://{host}")),
        listen_address: Some(ip.to_string()),
        disks_uri: Some(format!("tcp://{host}")),
        dest_xml: Some(xml.clone()),
        persist_xml: Some(xml),
        ..Default::default()
    };
    let flags = virt::sys::VIR_MIGRATE_LIVE | virt::sys::VIR_MIGRATE_PERSIST_DEST | virt::sys::VIR_MIGRATE_UNDEFINE_SOURCE | virt::sys::VIR_MIGRATE_NON_SHARED_INC;
    tracing::debug!(target: crate::runtime::MIGRATE_TIMING, "libvirt: both ends open, migrate3 called");
    dom.migrate3(dst.conn(), params, flags).map_err(|e| MachineError::from(err(&format!("cannot migrate {name} to {}", to.address), e)))?;
    Ok(Done::ok(format!("migrated live to {}", to.address)))
}

/// Refuses a definition that reaches outside the machine's own files on
/// the receiving host: devices or options that hand the guest host
/// resources or run commands, a file outside its directory and the
/// templates, an emulator that is not QEMU.
pub(super) fn check_definition(xml: &str, to: &Incoming) -> Result<(), MachineError> {
    let refuse = |why: String| Err(MachineError::Refused(format!("the definition sent for the move: {why}")));
    for bad in ["qemu:commandline", "qemu:capabilities", "qemu:override", "<hostdev", "<filesystem", "<redirdev", "<smartcard", "<shmem", "<hub"] {
        if xml.contains(bad) {
            return refuse(format!("it holds {}, which a machine of mln's never has", bad.trim_start_matches('<')));
        }
    }
    let (dir, templates) = (escape_xml(&to.dir.to_string_lossy()), escape_xml(&to.templates.to_string_lossy()));
    let ours = |v: &str| {
        let under = |root: &str| v.strip_prefix(root).is_some_and(|rest| rest.starts_with('/') || rest.is_empty());
        (under(&dir) || under(&templates)) && !v.split('/').any(|c| c == ".." || c == ".")
    };
    let mut values: Vec<(String, String)> = Vec::new();
    for attr in ["file", "path", "dir"] {
        for q in ['\'', '"'] {
            let pat = format!(" {attr}={q}");
            for (i, _) in xml.match_indices(&pat) {
                let rest = &xml[i + pat.len()..];
                values.push((attr.to_string(), rest[..rest.find(q).unwrap_or(rest.len())].to_string()));
            }
        }
    }
    for el in ["kernel", "initrd", "loader", "nvram", "emulator"] {
        let open = format!("<{el}");
        for (i, _) in xml.match_indices(&open) {
            let rest = &xml[i + open.len()..];
            let Some(start) = rest.find('>') else { continue };
            if rest[..start].ends_with('/') {
                continue;
            }
            let body = &rest[start + 1..];
            values.push((el.to_string(), body[..body.find('<').unwrap_or(body.len())].trim().to_string()));
        }
    }
    for (what, v) in values {
        let ok = match what.as_str() {
            "emulator" => {
                let name = v.rsplit('/').next().unwrap_or("");
                (v.starts_with("/usr/bin/") || v.starts_with("/usr/libexec/")) && (name.starts_with("qemu-system-") || name == "qemu-kvm") && !v.contains("..")
            }
            "loader" => ours(&v) || v == "/usr/lib/xen/boot/hvmloader",
            _ => ours(&v),
        };
        if !ok {
            return refuse(format!("{what} {} is outside the machine's files there", crate::term::escape(&v)));
        }
    }
    Ok(())
}

/// A libvirt URI this process may open on a peer's word: a local socket,
/// TCP, TLS or SSH without options that run a command or name a key.
fn safe_uri(uri: &str) -> Result<(), MachineError> {
    let refuse = |why: &str| Err(MachineError::Refused(format!("{}: {why}", crate::term::escape(uri))));
    let scheme = uri.split("://").next().unwrap_or("");
    if !matches!(scheme, "qemu" | "qemu+unix" | "qemu+tcp" | "qemu+tls" | "qemu+ssh") {
        return refuse("not a libvirt URI mln opens for a migration (qemu, qemu+unix, qemu+tcp, qemu+tls, qemu+ssh)");
    }
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let key = kv.split('=').next().unwrap_or("");
        if !matches!(key, "socket" | "no_verify" | "no_tty" | "mode") {
            return refuse(&format!("option `{}` is not accepted", crate::term::escape(key)));
        }
    }
    Ok(())
}

/// The address streams go to: an IP address, never a name to resolve.
fn address_of(address: &str) -> Result<IpAddr, MachineError> {
    address.parse().map_err(|_| MachineError::Refused(format!("{}: not an IP address", crate::term::escape(address))))
}

/// `xml` with every path under one of `moves`' first directories moved
/// under its second: in attributes (`file='…'`) and in elements
/// (`<kernel>…</kernel>`), compared whole component by component.
pub(super) fn rewrite_paths(xml: &str, moves: &[(&Path, &Path)]) -> String {
    let mut out = xml.to_string();
    for (from, to) in moves {
        let (from, to) = (escape_xml(&from.to_string_lossy()), escape_xml(&to.to_string_lossy()));
        for (open, close) in [("'", "'"), ("\"", "\""), (">", "<")] {
            for sep in ["/", close] {
                out = out.replace(&format!("{open}{from}{sep}"), &format!("{open}{to}{sep}"));
            }
        }
    }
    out
}

fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_move_whole_components_only() {
        let xml = "<disk><source file='/a/p/h/disk.qcow2'/></disk><kernel>/t/k/vmlinuz</kernel>\
                   <serial><source path=\"/a/p/h/console.log\"/></serial><x file='/a/p/h2/disk'/><y>/a/p/h</y>";
        let out = rewrite_paths(xml, &[(Path::new("/a/p/h"), Path::new("/b/q/h")), (Path::new("/t"), Path::new("/u"))]);
        assert_eq!(
            out,
            "<disk><source file='/b/q/h/disk.qcow2'/></disk><kernel>/u/k/vmlinuz</kernel>\
             <serial><source path=\"/b/q/h/console.log\"/></serial><x file='/a/p/h2/disk'/><y>/b/q/h</y>"
        );
    }

    #[test]
    fn a_definition_from_the_sender_reaches_only_the_machines_own_files() {
        let to = Incoming { connect: String::new(), address: "10.0.0.2".into(), dir: "/var/lib/mln/projects/p/h".into(), templates: "/var/lib/mln/templates".into() };
        let good = "<domain><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
                    <disk><source file='/var/lib/mln/projects/p/h/disk.qcow2'/><backingStore><source file='/var/lib/mln/templates/t/disk.qcow2'/></backingStore></disk>\
                    <serial type='file'><source path='/var/lib/mln/projects/p/h/console.log'/></serial></devices>\
                    <os><kernel>/var/lib/mln/templates/t/vmlinuz</kernel><initrd>/var/lib/mln/templates/t/initrd.gz</initrd></os></domain>";
        assert!(check_definition(good, &to).is_ok(), "{:?}", check_definition(good, &to));
        for bad in [
            good.replace("/var/lib/mln/projects/p/h/disk.qcow2", "/etc/shadow"),
            good.replace("/var/lib/mln/projects/p/h/console.log", "/var/lib/mln/projects/p/h/../../../../../root/.ssh/authorized_keys"),
            good.replace("/var/lib/mln/projects/p/h/console.log", "/var/lib/mln/projects/p/h2/console.log"),
            good.replace("/usr/bin/qemu-system-x86_64", "/bin/sh"),
            good.replace("<os>", "<os><loader>/tmp/evil</loader>"),
            good.replace("</devices>", "<hostdev mode='subsystem' type='pci'/></devices>"),
            good.replace("</domain>", "<qemu:commandline><qemu:arg value='-x'/></qemu:commandline></domain>"),
            good.replace("<kernel>/var/lib/mln/templates/t/vmlinuz", "<kernel>/boot/vmlinuz"),
        ] {
            assert!(matches!(check_definition(&bad, &to), Err(MachineError::Refused(_))), "{bad}");
        }
    }

    #[test]
    fn a_peer_cannot_make_us_run_a_command() {
        assert!(safe_uri("qemu+unix:///system?socket=/run/libvirt/libvirt-sock").is_ok());
        assert!(safe_uri("qemu+tcp://10.0.0.2/system").is_ok());
        for bad in ["qemu+ext:///system?command=/bin/sh", "qemu+ssh://h/system?netcat=/tmp/x", "qemu+ssh://h/system?keyfile=/root/.ssh/id", "lxc:///"] {
            assert!(matches!(safe_uri(bad), Err(MachineError::Refused(_))), "{bad}");
        }
    }

    #[test]
    fn an_address_is_an_ip_address() {
        assert!(address_of("10.1.2.3").is_ok());
        assert!(address_of("::1").is_ok());
        assert!(matches!(address_of("evil.example; rm -rf /"), Err(MachineError::Refused(_))));
    }
}
