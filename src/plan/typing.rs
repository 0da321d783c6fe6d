//! One resolved host to a typed [`Host`], with a diagnostic for every value
//! that does not fit its type.

use super::model::*;
use super::values::{self, Bad};
use crate::diag::{Diagnostic, Diagnostics};
use crate::name::{self, NameKind};
use crate::resolve::{RSection, RValue, ResolvedHost};
use crate::source::{normalize, outside_diagnostic, FileSystem, Roots, Span};
use crate::definitions::Definitions;
use indexmap::IndexMap;
use std::net::Ipv4Addr;
use std::path::Path;

pub const DEFAULT_TEMPLATE: &str = "Debian-4.0.ext3";
pub const DEFAULT_SIZE_MIB: u64 = 250;
pub const DEFAULT_MEMORY_MIB: u64 = 128;
pub const DEFAULT_BOOT_ORDER: u32 = 99;
pub const MAX_VCPUS: u32 = 1024;
/// Display N is TCP port 5900 + N.
pub const MAX_VNC_DISPLAY: u32 = 65535 - 5900;
/// 4294967295 is (uid_t) -1: "no user" to chown and setuid.
pub const MAX_UID: u32 = u32::MAX - 1;

pub struct Typer<'a> {
    pub tree: &'a Definitions,
    pub project: &'a str,
    pub project_dir: &'a Path,
    pub fs: &'a dyn FileSystem,
    pub roots: &'a Roots,
    /// The project accepts DES password hashes (`des_hashes` in `global`).
    pub des_hashes: bool,
    pub diags: &'a mut Diagnostics,
}

impl Typer<'_> {
    pub(super) fn report(&mut self, span: Span, e: Bad, code: &'static str) {
        let mut d = Diagnostic::error(code, e.message).label(span, "");
        if let Some(h) = e.help {
            d = d.help(h);
        }
        self.diags.push(d);
    }

    /// The value's span: the words if they were written, else the statement.
    pub(super) fn check<T>(&mut self, v: &RValue, r: Result<T, Bad>, code: &'static str) -> Option<T> {
        match r {
            Ok(t) => Some(t),
            Err(_) if v.is_broken() => None,
            Err(e) => {
                self.report(v.origin.span, e, code);
                None
            }
        }
    }

    fn size_mib(&mut self, s: &RSection, key: &str) -> Option<u64> {
        let v = s.value(key)?;
        self.check(v, values::size(&v.text), "mln::value::size").map(values::mib)
    }

    /// A whole number in `lo..=hi`, reported as not a number or out of
    /// range.
    pub(super) fn uint_in(&mut self, v: &RValue, text: &str, lo: u64, hi: u64, what: &str, why: &str) -> Option<u64> {
        match values::uint_in(text, lo, hi, what, why) {
            Ok(n) => Some(n),
            Err(_) if v.is_broken() => None,
            Err(e) => {
                let code = e.code();
                self.report(v.origin.span, e.into_bad(), code);
                None
            }
        }
    }

    fn uint32(&mut self, s: &RSection, key: &str, lo: u32, hi: u32, why: &str) -> Option<u32> {
        let v = s.value(key)?;
        let n = self.uint_in(v, &v.text, u64::from(lo), u64::from(hi), key, why)?;
        Some(u32::try_from(n).expect("checked against a u32 range"))
    }

    /// Checks a name read from the file; false (after reporting) when bad.
    fn name(&mut self, v: &RValue, kind: NameKind, text: &str, span: Span) -> bool {
        if v.is_broken() {
            return true;
        }
        match name::diagnose(kind, None, text, span) {
            Some(d) => {
                self.diags.push(d);
                false
            }
            None => true,
        }
    }

    fn hash(&mut self, v: &RValue, text: &str) -> Option<String> {
        match values::password(text, self.des_hashes) {
            Ok(warning) => {
                if let Some(w) = warning {
                    let mut d = Diagnostic::warning("mln::password::weak", w.message).label(v.origin.span, "");
                    if let Some(h) = w.help {
                        d = d.help(h);
                    }
                    self.diags.push(d);
                }
                Some(text.to_string())
            }
            Err(_) if v.is_broken() => None,
            Err((code, e)) => {
                self.report(v.origin.span, e, code);
                None
            }
        }
    }

    pub fn host(&mut self, r: &ResolvedHost) -> Host {
        let s = &r.section;
        let txt = |k: &str| s.text(k).map(str::to_string);
        let kind = self.kind(s);
        let superclass = r.chain.get(1).map(|id| self.tree.def(*id).name.clone());
        let memory_mib = self.size_mib(s, "memory").unwrap_or(DEFAULT_MEMORY_MIB);
        if memory_mib == 0 {
            if let Some(v) = s.value("memory") {
                self.report(v.origin.span, Bad { message: "memory must be at least 1M".into(), help: None }, "mln::value::size");
            }
        }
        let vcpus = self.uint32(s, "vcpus", 1, MAX_VCPUS, "a host has from 1 to 1024 virtual CPUs").unwrap_or(1);
        let free_space_mib = self.size_mib(s, "free_space");
        let size_mib = self.size_mib(s, "size");
        if let (Some(_), Some(_), Some(sv), Some(fv)) = (size_mib, free_space_mib, s.value("size"), s.value("free_space")) {
            self.diags.push(
                Diagnostic::warning("mln::disk::size_ignored", "`size` is ignored: `free_space` sets the disk size")
                    .label(sv.origin.span, "ignored")
                    .label(fv.origin.span, "the disk is the template's size plus this")
                    .help("keep one of the two"),
            );
        }
        let disk_mib = match (size_mib, free_space_mib) {
            (_, Some(_)) => None, // template size + free space, known at build time
            (Some(m), None) => Some(m),
            (None, None) => Some(DEFAULT_SIZE_MIB),
        };
        let disk_mode = if s.has("lvm") {
            DiskMode::Lvm
        } else {
            match s.value("clone") {
                Some(v) if v.text == "full" => DiskMode::Full,
                Some(v) if v.text == "linked" => DiskMode::Linked,
                Some(v) => {
                    let e = Bad { message: format!("unknown clone mode `{}`", v.text), help: Some("use `clone linked` (default) or `clone full`".into()) };
                    self.report(v.origin.span, e, "mln::value::choice");
                    DiskMode::Linked
                }
                None => DiskMode::Linked,
            }
        };
        let cpus = s.value("cpus").and_then(|v| match values::cpuset(&v.text) {
            Ok(c) => Some(c),
            Err(_) if v.is_broken() => None,
            Err((code, e)) => {
                self.report(v.origin.span, e, code);
                None
            }
        });
        let swap_mib = self.size_mib(s, "swap");
        if swap_mib == Some(0) {
            if let Some(v) = s.value("swap") {
                self.report(v.origin.span, Bad { message: "swap must be at least 1M".into(), help: Some("leave `swap` out for no swap disk".into()) }, "mln::value::size");
            }
        }
        for (key, kind) in [("template", NameKind::Template), ("service_host", NameKind::ServiceHost)] {
            if let Some(v) = s.value(key) {
                self.name(v, kind, &v.text, v.origin.span);
            }
        }
        let root_password_hash = s.value("root_password").and_then(|v| self.hash(v, &v.text.clone()));
        self.kind_keywords(s, kind == HostKind::Baremetal);
        let baremetal = if kind == HostKind::Baremetal { self.node_spec(r).map(Box::new) } else { None };
        let mut interfaces = self.interfaces(r, kind);
        // A node's first card is the one it network-boots from, unless its
        // MAC was written: a derived MAC means nothing on real hardware.
        if let (Some(node), Some(first)) = (&baremetal, interfaces.first_mut()) {
            let written = s.named("network").and_then(|n| n.get(&first.name)).is_some_and(|n| n.value("mac").is_some());
            if !written {
                first.mac = node.mac.clone();
            }
        }
        let mut nameservers = vec![];
        if let Some(v) = s.value("nameserver") {
            for w in &v.words {
                if self.check(v, values::ipv4(w), "mln::value::ip").is_some() {
                    nameservers.push(w.clone());
                }
            }
        }
        Host {
            name: r.name.clone(),
            kind,
            superclass,
            service_host: txt("service_host"),
            memory_mib,
            vcpus,
            cpus,
            template: txt("template").unwrap_or_else(|| DEFAULT_TEMPLATE.to_string()),
            disk_mib,
            free_space_mib,
            swap_mib: swap_mib.filter(|m| *m > 0),
            disk_mode,
            lvm_vg: txt("lvm_vg"),
            lvm_options: s.value("lvm").map(|v| v.text.clone()).filter(|t| !t.is_empty()),
            boot_order: self
                .uint32(s, "boot_order", 0, u32::MAX, "boot orders are 32-bit numbers")
                .unwrap_or(DEFAULT_BOOT_ORDER),
            kernel: self.boot_file(s, "kernel"),
            ramdisk: self.boot_file(s, "ramdisk"),
            hvm: s.has("hvm"),
            vnc_display: self.uint32(s, "vncdisplay", 0, MAX_VNC_DISPLAY, "VNC display N listens on TCP port 5900+N, and ports end at 65535"),
            vnc_password: txt("vncpasswd"),
            description: txt("description"),
            interfaces,
            nameservers,
            root_password_hash,
            users: self.users(s),
            groups: self.groups(s),
            startup: s.lines("startup").iter().map(|l| l.text.clone()).collect(),
            shutdown: s.lines("shutdown").iter().map(|l| l.text.clone()).collect(),
            files: self.files(s),
            mounts: self.mounts(s),
            modules: s.lines("modules").iter().flat_map(|l| l.words.clone()).collect(),
            plugins: IndexMap::new(),
            plugin_settings: self.plugin_settings(s),
            baremetal,
        }
    }

    fn kind(&mut self, s: &RSection) -> HostKind {
        if let Some(v) = s.value("uml") {
            self.diags.push(
                Diagnostic::error("mln::kind::uml", "User-Mode Linux is not supported")
                    .label(v.origin.span, "")
                    .help("use `kvm` (the default) or `xen`; the same template boots under both"),
            );
        }
        let set: Vec<(&str, &RValue)> =
            ["xen", "kvm", "baremetal"].into_iter().filter_map(|k| s.value(k).map(|v| (k, v))).collect();
        if set.len() > 1 {
            let mut d = Diagnostic::error(
                "mln::kind::conflict",
                format!("a host is one kind only, but {} are set", set.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(" and ")),
            );
            for (k, v) in &set {
                d = d.label(v.origin.span, format!("`{k}` set here"));
            }
            self.diags.push(d);
        }
        match set.first().map(|(k, _)| *k) {
            Some("xen") => HostKind::Xen,
            Some("baremetal") => HostKind::Baremetal,
            _ => HostKind::Kvm,
        }
    }

    /// Where the user wrote a host's `network LABEL` block: in the host or
    /// the nearest superclass that has one; a plugin's (autoenum's) only
    /// when no one else wrote it.
    fn network_block_span(&self, r: &ResolvedHost, label: &str, resolved: Span) -> Span {
        r.chain
            .iter()
            .map(|id| self.tree.def(*id))
            .filter(|d| d.plugin.is_none())
            .find_map(|d| match d.statements().entries.get("network") {
                Some(crate::definitions::Item::Named(m)) => m.get(label).map(|n| n.span).filter(|s| !s.is_empty()),
                _ => None,
            })
            .unwrap_or(resolved)
    }

    fn interfaces(&mut self, r: &ResolvedHost, kind: HostKind) -> Vec<Interface> {
        let (host, s) = (r.name.as_str(), &r.section);
        let Some(nets) = s.named("network") else { return vec![] };
        let mut out = Vec::new();
        for (name, n) in nets {
            if let Some(d) = name::diagnose(NameKind::Interface, None, name, n.span) {
                self.diags.push(d);
            }
            if let Some(v) = n.value("bridge") {
                self.name(v, NameKind::Interface, &v.text, v.origin.span);
            }
            // What the backend does then (provision.rs, `nic`); bare-metal
            // hosts are not built on libvirt.
            if n.value("switch").is_none() && n.value("bridge").is_none() && kind != HostKind::Baremetal {
                self.diags.push(
                    Diagnostic::warning("mln::network::user_mode", format!("interface `{}` has neither `switch` nor `bridge`: it gets user-mode networking", crate::term::escape(name)))
                        .label(self.network_block_span(r, name, n.span), "on no switch")
                        .help("a guest on QEMU's user-mode networking reaches nothing but QEMU's own services (DHCP, DNS, outgoing NAT): not the other hosts, and nothing reaches it; give it `switch NAME`, or `bridge NAME` for an existing host bridge"),
                );
            }
            let mut address = None;
            let mut dhcp = false;
            if let Some(v) = n.value("address") {
                if v.text == "dhcp" {
                    dhcp = true;
                } else {
                    address = self.check(v, values::ipv4(&v.text), "mln::value::ip");
                }
            }
            let netmask = n.value("netmask").and_then(|v| self.check(v, values::netmask(&v.text), "mln::value::netmask"));
            let gateway = n.value("gateway").and_then(|v| self.check(v, values::ipv4(&v.text), "mln::value::ip"));
            let broadcast = n.value("broadcast").and_then(|v| self.check(v, values::ipv4(&v.text), "mln::value::ip"));
            let mac = n.value("mac").and_then(|v| self.check(v, values::mac(&v.text), "mln::value::mac"));
            if let (Some(a), Some(m)) = (address, netmask) {
                self.subnet(n, a, m, gateway, broadcast);
            }
            let derived_bcast = match (address, netmask) {
                (Some(a), Some(m)) => Some(Ipv4Addr::from(u32::from(a) | !u32::from(m))),
                _ => None,
            };
            out.push(Interface {
                name: name.clone(),
                address: address.map(values::ipv4_text),
                dhcp,
                netmask: netmask.map(values::ipv4_text),
                gateway: gateway.map(values::ipv4_text),
                broadcast: broadcast.or(derived_bcast).map(values::ipv4_text),
                mac: mac.unwrap_or_else(|| values::derived_mac(self.project, host, name, 0)),
                switch: n.text("switch").map(str::to_string),
                bridge: n.text("bridge").map(str::to_string),
            });
        }
        out
    }

    /// The address must be a host of its subnet; gateway and broadcast must
    /// belong to that subnet.
    fn subnet(&mut self, n: &RSection, a: Ipv4Addr, m: Ipv4Addr, gw: Option<Ipv4Addr>, bc: Option<Ipv4Addr>) {
        let (a32, m32) = (u32::from(a), u32::from(m));
        let net = Ipv4Addr::from(a32 & m32);
        let bcast = Ipv4Addr::from(a32 | !m32);
        let prefix = m32.leading_ones();
        let addr_v = n.value("address").expect("address present");
        if prefix < 31 && (a == net || a == bcast) {
            let what = if a == net { "network" } else { "broadcast" };
            self.diags.push(
                Diagnostic::error("mln::network::address_outside", format!("{a} is the {what} address of {net}/{prefix}"))
                    .label(addr_v.origin.span, "not a usable host address")
                    .label(n.value("netmask").expect("netmask present").origin.span, "with this netmask"),
            );
        }
        if let (Some(g), Some(gv)) = (gw, n.value("gateway")) {
            if u32::from(g) & m32 != a32 & m32 || g == a {
                let msg = if g == a {
                    format!("gateway {g} is the interface's own address")
                } else {
                    format!("gateway {g} is outside the subnet {net}/{prefix}")
                };
                self.diags.push(
                    Diagnostic::error("mln::network::gateway_outside", msg)
                        .label(gv.origin.span, "gateway")
                        .label(addr_v.origin.span, format!("address {a}"))
                        .help("a gateway must be reachable directly: inside the interface's subnet"),
                );
            }
        }
        if let (Some(b), Some(bv)) = (bc, n.value("broadcast")) {
            if b != bcast {
                self.diags.push(
                    Diagnostic::error("mln::network::broadcast", format!("broadcast {b} does not match {net}/{prefix}"))
                        .label(bv.origin.span, format!("the subnet's broadcast address is {bcast}"))
                        .label(addr_v.origin.span, format!("address {a}")),
                );
            }
        }
    }

    fn users(&mut self, s: &RSection) -> Vec<User> {
        let mut out: Vec<User> = Vec::new();
        for l in s.lines("users") {
            let w = &l.words;
            if w.len() < 2 {
                self.diags.push(
                    Diagnostic::error("mln::users::line", "a user line is `NAME CRYPT-HASH [HOME] [UID]`")
                        .label(l.origin.span, "no password hash"),
                );
                continue;
            }
            self.name(l, NameKind::User, &w[0], l.origin.span);
            let Some(hash) = self.hash(l, &w[1]) else { continue };
            let uid = match w.get(3) {
                Some(u) => self
                    .uint_in(l, u, 0, MAX_UID.into(), "uid", "4294967295 is (uid_t) -1, which means \"no user\" to the system")
                    .map(|n| u32::try_from(n).expect("checked against a u32 range")),
                None => None,
            };
            // Another name for root is a back door nobody sees in a review.
            if uid == Some(0) && w[0] != "root" {
                self.diags.push(
                    Diagnostic::error("mln::users::root_uid", format!("user `{}` would have uid 0: it would be root", crate::term::escape(&w[0])))
                        .label(l.origin.span, "uid 0")
                        .help("only `root` has uid 0; give this user another uid, or none (one is picked)"),
                );
            }
            if w.len() > 4 {
                self.diags.push(
                    Diagnostic::error("mln::users::line", "a user line is `NAME CRYPT-HASH [HOME] [UID]`")
                        .label(l.origin.span, "too many words"),
                );
            }
            // A subclass may redefine a user; the nearest line wins.
            out.retain(|u| u.name != w[0]);
            out.push(User { name: w[0].clone(), password_hash: hash, home: w.get(2).cloned(), uid });
        }
        out
    }

    /// `kernel` or `ramdisk`: relative to the project file (as `files`
    /// sources are), and under the project's directory or an allowed one.
    fn boot_file(&mut self, s: &RSection, key: &str) -> Option<String> {
        let v = s.value(key)?;
        let path = normalize(&self.project_dir.join(&v.text));
        if let Err(resolved) = self.roots.check(self.fs, &path) {
            if !v.is_broken() {
                self.diags.push(outside_diagnostic(key, &v.text, &resolved, self.roots, v.origin.span));
            }
        }
        Some(path.display().to_string())
    }

    fn groups(&mut self, s: &RSection) -> Vec<Group> {
        let Some(g) = s.block("groups") else { return vec![] };
        let mut out = Vec::new();
        for name in g.entries.keys() {
            // The group's own name is checked where it is written (tree).
            let lines = g.lines(name);
            for l in lines {
                for m in &l.words {
                    self.name(l, NameKind::User, m, l.origin.span);
                }
            }
            out.push(Group { name: name.clone(), members: lines.iter().flat_map(|l| l.words.clone()).collect() });
        }
        out
    }

    fn files(&mut self, s: &RSection) -> Vec<FileCopy> {
        let mut out = Vec::new();
        for l in s.lines("files") {
            let w = &l.words;
            if !(2..=3).contains(&w.len()) {
                self.diags.push(
                    Diagnostic::error("mln::files::line", "a files line is `SOURCE DESTINATION [MODE]`").label(l.origin.span, ""),
                );
                continue;
            }
            let src = normalize(&self.project_dir.join(&w[0]));
            if let Err(resolved) = self.roots.check(self.fs, &src) {
                self.diags.push(outside_diagnostic("file source", &w[0], &resolved, self.roots, l.origin.span));
            } else if !self.fs.exists(&src) {
                self.diags.push(
                    Diagnostic::error("mln::files::missing", format!("`{}` does not exist", w[0]))
                        .label(l.origin.span, format!("looked for {}", src.display()))
                        .help("file sources are relative to the project file"),
                );
            }
            if let Some(m) = w.get(2) {
                self.check(l, values::octal_mode(m), "mln::value::mode");
            }
            out.push(FileCopy { source: src.display().to_string(), dest: w[1].clone(), mode: w.get(2).cloned() });
        }
        out
    }

    fn mounts(&mut self, s: &RSection) -> Vec<Mount> {
        let mut out = Vec::new();
        for l in s.lines("mount") {
            let w = &l.words;
            if w.len() < 3 {
                self.diags.push(
                    Diagnostic::error("mln::mount::line", "a mount line is `SOURCE MOUNTPOINT FSTYPE [OPTIONS]`")
                        .label(l.origin.span, ""),
                );
                continue;
            }
            out.push(Mount {
                source: w[0].clone(),
                mountpoint: w[1].clone(),
                fstype: w[2].clone(),
                options: (w.len() > 3).then(|| w[3..].join(" ")),
            });
        }
        out
    }

    /// What each plugin's keywords say in the host (its blocks, one-line
    /// keywords, keywords in interfaces), by plugin, in order of the keys.
    fn plugin_settings(&self, s: &RSection) -> IndexMap<String, serde_json::Value> {
        let core = &self.tree.core;
        let nets = s.named("network").into_iter().flat_map(|m| m.values());
        let found = s
            .entries
            .keys()
            .filter_map(|key| core.host.get(key))
            .chain(nets.flat_map(|n| n.entries.keys()).filter_map(|key| core.network().get(key)))
            .filter_map(|k| k.plugin.as_deref());
        let mut names: Vec<&str> = Vec::new();
        for p in found {
            if !names.contains(&p) {
                names.push(p);
            }
        }
        names.into_iter().map(|p| (p.to_string(), crate::plugin::settings(s, &core.host, core, p).to_json())).collect()
    }
}
