//! libvirt domain XML for a planned host: KVM, QEMU software emulation, or
//! Xen (PV with kernel/ramdisk, HVM with `hvm`).

use crate::plan::{Host, HostKind};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainType {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulation (TCG): where KVM does not work.
    Qemu,
    Xen,
}

impl DomainType {
    /// The libvirt domain type for a host: `xen` hosts are Xen domains;
    /// `kvm` hosts use KVM where it works (the caller probes) and QEMU's
    /// emulation otherwise.
    pub fn for_host(h: &Host, kvm_works: bool) -> Option<DomainType> {
        match h.kind {
            HostKind::Xen => Some(DomainType::Xen),
            HostKind::Kvm if kvm_works => Some(DomainType::Kvm),
            HostKind::Kvm => Some(DomainType::Qemu),
            HostKind::Baremetal => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nic {
    /// A libvirt network (one per switch and project).
    Network(String),
    /// An existing host bridge.
    Bridge(String),
    /// QEMU's user-mode networking: no host set-up, the guest reaches
    /// nothing but QEMU's own services.
    User,
}

#[derive(Clone, Debug)]
pub struct DomainSpec<'a> {
    pub name: String,
    pub host: &'a Host,
    pub domain_type: DomainType,
    /// The root disk and its format (`qcow2`, `raw`).
    pub disk: Option<(PathBuf, &'static str)>,
    /// The NoCloud seed image, attached read-only.
    pub seed: Option<PathBuf>,
    /// The swap disk (raw, `mkswap`ed), attached after the others.
    pub swap: Option<PathBuf>,
    /// Direct kernel boot: kernel, initrd and command line.
    pub kernel: Option<(PathBuf, Option<PathBuf>, String)>,
    /// Where the serial console is written.
    pub console_log: PathBuf,
    /// One per planned interface, in order.
    pub nics: Vec<Nic>,
}

/// The libvirt name of a host's domain: unique per project.
pub fn domain_name(project: &str, host: &str) -> String {
    format!("{host}.{project}")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

fn path(p: &std::path::Path) -> String {
    esc(&p.display().to_string())
}

pub fn domain_xml(s: &DomainSpec) -> String {
    let h = s.host;
    let xen = s.domain_type == DomainType::Xen;
    let pv = xen && !h.hvm;
    let kind = match s.domain_type {
        DomainType::Kvm => "kvm",
        DomainType::Qemu => "qemu",
        DomainType::Xen => "xen",
    };
    let mut x = String::new();
    let _ = writeln!(x, "<domain type='{kind}'>");
    let _ = writeln!(x, "  <name>{}</name>", esc(&s.name));
    if let Some(d) = &h.description {
        let _ = writeln!(x, "  <description>{}</description>", esc(d));
    }
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", h.memory_mib);
    match &h.cpus {
        // Pinned: every virtual CPU runs on the set's physical CPUs.
        Some(set) => {
            let _ = writeln!(x, "  <vcpu placement='static' cpuset='{}'>{}</vcpu>", esc(set), h.vcpus);
        }
        None => {
            let _ = writeln!(x, "  <vcpu>{}</vcpu>", h.vcpus);
        }
    }
    x.push_str("  <os>\n");
    if pv {
        x.push_str("    <type>linux</type>\n");
    } else if xen {
        x.push_str("    <type>hvm</type>\n    <loader>/usr/lib/xen/boot/hvmloader</loader>\n");
    } else {
        x.push_str("    <type arch='x86_64'>hvm</type>\n");
    }
    match &s.kernel {
        Some((k, initrd, cmdline)) => {
            let _ = writeln!(x, "    <kernel>{}</kernel>", path(k));
            if let Some(i) = initrd {
                let _ = writeln!(x, "    <initrd>{}</initrd>", path(i));
            }
            let _ = writeln!(x, "    <cmdline>{}</cmdline>", esc(cmdline));
        }
        None if !pv => x.push_str("    <boot dev='hd'/>\n"),
        None => {}
    }
    x.push_str("  </os>\n");
    if !pv {
        x.push_str("  <features>\n    <acpi/>\n  </features>\n");
    }
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n");
    x.push_str("  <devices>\n");
    let (bus, prefix) = if xen { ("xen", "xvd") } else { ("virtio", "vd") };
    let mut letter = b'a';
    let mut disk = |x: &mut String, file: &std::path::Path, format: &str, readonly: bool| {
        let _ = writeln!(x, "    <disk type='file' device='disk'>");
        if !xen {
            let _ = writeln!(x, "      <driver name='qemu' type='{format}'/>");
        }
        let _ = writeln!(x, "      <source file='{}'/>", path(file));
        let _ = writeln!(x, "      <target dev='{prefix}{}' bus='{bus}'/>", letter as char);
        if readonly {
            x.push_str("      <readonly/>\n");
        }
        x.push_str("    </disk>\n");
        letter += 1;
    };
    if let Some((p, format)) = &s.disk {
        disk(&mut x, p, format, false);
    }
    if let Some(seed) = &s.seed {
        disk(&mut x, seed, "raw", true);
    }
    if let Some(swap) = &s.swap {
        disk(&mut x, swap, "raw", false);
    }
    for (iface, nic) in h.interfaces.iter().zip(&s.nics) {
        let (t, source) = match nic {
            Nic::Network(n) => ("network", format!("      <source network='{}'/>\n", esc(n))),
            Nic::Bridge(b) => ("bridge", format!("      <source bridge='{}'/>\n", esc(b))),
            Nic::User => ("user", String::new()),
        };
        let _ = writeln!(x, "    <interface type='{t}'>");
        let _ = writeln!(x, "      <mac address='{}'/>", iface.mac);
        x.push_str(&source);
        if !xen {
            x.push_str("      <model type='virtio'/>\n");
        }
        x.push_str("    </interface>\n");
    }
    if pv {
        // Xen PV guests have no serial port: their console is hvc0.
        let _ = writeln!(x, "    <console type='file'>\n      <source path='{}'/>\n      <target type='xen' port='0'/>\n    </console>", path(&s.console_log));
    } else {
        let _ = writeln!(
            x,
            "    <serial type='file'>\n      <source path='{}' append='on'/>\n      <target port='0'/>\n    </serial>",
            path(&s.console_log)
        );
    }
    if let Some(d) = h.vnc_display {
        let pw = h.vnc_password.as_deref().map(|p| format!(" passwd='{}'", esc(p))).unwrap_or_default();
        let _ = writeln!(x, "    <graphics type='vnc' port='{}'{pw}/>", 5900 + d);
    }
    x.push_str("  </devices>\n</domain>\n");
    x
}
