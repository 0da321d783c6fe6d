//! Provisioning on libvirt: for each host a directory, a disk from its
//! template (or a configured copy of a filesystem template), a NoCloud
//! seed and a libvirt domain (defined, not started). Everything is
//! recorded before it is made, so a re-run after an interruption finishes
//! what was begun and `remove` finds everything.

use super::domain::{domain_name, domain_xml, DomainSpec, DomainType, Nic};
use super::machines::{LibvirtMachines as Machines, Prepared};
use super::template::{self, Template};
use crate::local_error::LocalError;
use crate::machine::{Done, MachineError};
use crate::plan::{DiskMode, Host, HostKind, Plan};
use crate::progress::Telemetry;
use crate::state::{Resource, ResourceKind};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn failed(e: impl std::fmt::Display) -> MachineError {
    MachineError::Failed(e.to_string())
}

/// Project-wide preparation: the switches' bridges, whether KVM works,
/// each template found and measured once (not once per host).
pub(super) fn prepare(m: &Machines, plan: &Plan, t: &dyn Telemetry) -> Result<Prepared, MachineError> {
    // The compiler refuses bad names; a plan can also come over the wire
    // (an agent) or from an older database.
    crate::name::check_plan(plan).map_err(|e| MachineError::Refused(format!("refusing the plan: {e}")))?;
    let switches = bridges(m, plan, t)?;
    let wants_kvm = plan.hosts.iter().any(|h| h.kind == HostKind::Kvm);
    // Kernels the hosts will boot are the best to try KVM with.
    let kernels: Vec<std::path::PathBuf> =
        plan.hosts.iter().filter_map(|h| template::find(&m.templates, &h.template).ok()?.kernel.map(|k| k.0)).collect();
    let kvm = wants_kvm && super::kvm::works(m.state.dir(), &kernels);
    if wants_kvm && !kvm {
        t.note(None, "KVM does not work on this machine (probed): kvm hosts run under QEMU's software emulation");
    }
    let mut templates: HashMap<String, Result<(Template, u64), MachineError>> = HashMap::new();
    for h in &plan.hosts {
        templates.entry(h.template.clone()).or_insert_with(|| {
            let t = template::find(&m.templates, &h.template)?;
            let size = match &t.disk {
                Some((p, fmt)) => virtual_mib(p, fmt)?,
                None => 0,
            };
            Ok((t, size))
        });
    }
    Ok(Prepared { project: plan.project.clone(), kvm, switches, templates })
}

/// The bridge of each switch, made if missing, and joined to the switch's
/// other machines when its share says so. Where bridges cannot be made
/// (not root), the switch's interfaces fall back to user-mode networking,
/// with a note: the guests come up but do not reach each other.
fn bridges(m: &Machines, plan: &Plan, t: &dyn Telemetry) -> Result<HashMap<String, Option<String>>, MachineError> {
    let mut out = HashMap::new();
    for sw in &plan.switches {
        out.insert(sw.name.clone(), switch(m, &plan.project, sw, true, t)?);
    }
    Ok(out)
}

/// One switch made ready on this machine: its bridge's name, or None
/// (user-mode networking). Each resource is recorded before it is made.
/// With `prune`, a port the switch no longer needs (it is on this machine
/// alone now) is removed; a start, which reads a record that may lack the
/// segments, only adds what is missing.
pub(super) fn switch(m: &Machines, project: &str, sw: &crate::plan::Switch, prune: bool, t: &dyn Telemetry) -> Result<Option<String>, MachineError> {
    if sw.attach {
        attachable(&sw.bridge)?;
        // Someone else's bridge: used as it is, never made or removed.
        if !super::bridge::exists(&sw.bridge) {
            t.note(None, &format!("switch {}: bridge {} does not exist on this machine: its guests cannot start until it does", sw.name, crate::term::escape(&sw.bridge)));
        }
        return Ok(Some(sw.bridge.clone()));
    }
    let name = super::bridge::name(project, &sw.name);
    m.state.record(project, &Resource { host: String::new(), kind: ResourceKind::Bridge, ident: name.clone() })?;
    if let Err(e) = super::bridge::ensure(&name) {
        t.note(None, &format!("switch {}: cannot make bridge {name} ({e}); its interfaces use user-mode networking", sw.name));
        return Ok(None);
    }
    let port = super::vxlan::name(&name);
    match &sw.segment {
        Some(seg) => {
            m.state.record(project, &Resource { host: String::new(), kind: ResourceKind::Tunnel, ident: port })?;
            match super::vxlan::ensure(&name, seg) {
                Ok(Some(warning)) => t.note(None, &format!("switch {}: {warning}", sw.name)),
                Ok(None) => {}
                Err(e) => return Err(MachineError::from(e)),
            }
        }
        None if prune && super::bridge::exists(&port) => {
            super::vxlan::remove(&port)?;
            m.state.forget_resource(project, &Resource { host: String::new(), kind: ResourceKind::Tunnel, ident: port })?;
        }
        None => {}
    }
    Ok(Some(name))
}

/// A bridge a project may attach its guests to: not one of mln's own
/// (each project's switches are its alone).
pub(super) fn attachable(bridge: &str) -> Result<(), MachineError> {
    if bridge.starts_with("mln") || bridge.starts_with("mlx") {
        return Err(MachineError::Refused(format!(
            "bridge {}: names starting with mln or mlx are mln's own switches and ports; a project attaches only to bridges of the machine",
            crate::term::escape(bridge)
        )));
    }
    Ok(())
}

fn nic(i: &crate::plan::Interface, switches: &std::collections::HashMap<String, Option<String>>) -> Result<Nic, MachineError> {
    Ok(match (&i.switch, &i.bridge) {
        (Some(sw), _) => switches.get(sw).cloned().flatten().map(Nic::Bridge).unwrap_or(Nic::User),
        (None, Some(b)) => {
            attachable(b)?;
            Nic::Bridge(b.clone())
        }
        (None, None) => Nic::User,
    })
}

/// What this backend cannot build, whatever the template.
pub(super) fn refused(h: &Host) -> Result<(), MachineError> {
    if h.kind == HostKind::Baremetal {
        return Err(MachineError::Refused("bare-metal hosts are not built on libvirt".into()));
    }
    if h.disk_mode == DiskMode::Lvm {
        return Err(MachineError::Refused(
            "LVM disks are not supported: they need device-mapper, which the kernels mln is tested on lack (book: backends)".into(),
        ));
    }
    Ok(())
}

/// Builds one host (see the module's comment).
pub(super) fn build_host(m: &Machines, p: &Prepared, plan: &Plan, h: &Host) -> Result<Done, MachineError> {
    let made = make_host(m, p, plan, h, Making::Build)?;
    m.lv.define(&keeping_uuid(m, &plan.project, h, &domain_xml(&made.spec))).map_err(MachineError::from)?;
    // Said at every build: such a guest reaches nothing but QEMU's own
    // services, which is rarely what was meant.
    let user: Vec<&str> = h.interfaces.iter().zip(&made.spec.nics).filter(|(_, n)| **n == Nic::User).map(|(i, _)| i.name.as_str()).collect();
    let user = if user.is_empty() { String::new() } else { format!("; {} on user-mode networking (no switch or bridge)", user.join(", ")) };
    Ok(Done::ok(format!("built from {}{}{user}", made.template, if made.fs_template { " (filesystem template, configured in place)" } else { "" })))
}

/// `xml` with the UUID of the host's domain if it exists already (a build
/// finishing an interrupted one, an upgrade redefining it), so the
/// definition replaces the domain instead of colliding with it.
pub(super) fn keeping_uuid(m: &Machines, project: &str, h: &Host, xml: &str) -> String {
    match m.lv.domain(&domain_name(project, &h.name)).ok().and_then(|d| d.uuid_string().ok()) {
        Some(uuid) => with_uuid(xml, &uuid),
        None => xml.to_string(),
    }
}

/// `xml` with `<uuid>` after its `<name>`.
pub(super) fn with_uuid(xml: &str, uuid: &str) -> String {
    match xml.find("</name>") {
        Some(i) => format!("{}\n  <uuid>{uuid}</uuid>{}", &xml[..i + "</name>".len()], &xml[i + "</name>".len()..]),
        None => xml.to_string(),
    }
}

/// A disk image's virtual size now, in MiB (a running guest's too).
pub(super) fn disk_mib_now(disk: &Path) -> Result<u64, MachineError> {
    Ok(virtual_mib(disk, template::format_of(disk))?)
}

/// A built host's files written again from `plan` (its seed, or its
/// filesystem template's files; disks that exist are kept) and the domain
/// definition it now has.
pub(super) fn reconfigure(m: &Machines, p: &Prepared, plan: &Plan, h: &Host) -> Result<String, MachineError> {
    Ok(domain_xml(&make_host(m, p, plan, h, Making::Build)?.spec))
}

/// A built host's domain definition from `plan`, writing nothing of the
/// guest's (for a running guest whose configuration lives in its disk).
pub(super) fn definition(m: &Machines, p: &Prepared, plan: &Plan, h: &Host) -> Result<String, MachineError> {
    Ok(domain_xml(&make_host(m, p, plan, h, Making::Definition)?.spec))
}

/// The template `h` is built from and its size, as `prepare` found them.
fn template_of<'p>(p: &'p Prepared, h: &Host) -> Result<&'p (Template, u64), MachineError> {
    match p.templates.get(&h.template) {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => Err(e.clone()),
        None => Err(MachineError::Failed(format!("template {} was not looked up for this plan", h.template))),
    }
}

/// A host's root disk in its directory: a raw copy of a filesystem
/// template, else a qcow2 image.
fn disk_path(dir: &Path, fs_template: bool) -> std::path::PathBuf {
    dir.join(if fs_template { "disk.img" } else { "disk.qcow2" })
}

/// Whether `h` is built from a filesystem template (configured by writing
/// into its disk).
pub(super) fn uses_fs_template(p: &Prepared, h: &Host) -> bool {
    matches!(&p.templates.get(&h.template), Some(Ok((t, _))) if t.disk.as_ref().is_some_and(|(d, _)| crate::guest::fstemplate::is_ext(d)))
}

/// A built host's root disk and the size the plan gives it, in MiB.
pub(super) fn disk_of(m: &Machines, p: &Prepared, project: &str, h: &Host) -> Result<(std::path::PathBuf, u64), MachineError> {
    let (_, base_mib) = template_of(p, h)?;
    let disk = disk_path(&m.state.host_dir(project, &h.name)?, uses_fs_template(p, h));
    if !disk.exists() {
        return Err(MachineError::Refused(format!("{} has no disk of its own to grow", h.name)));
    }
    Ok((disk, disk_mib(h, *base_mib)))
}

/// Grows a disk image that no guest is using to `mib` MiB.
pub(super) fn resize(disk: &Path, mib: u64) -> Result<(), MachineError> {
    let fmt = template::format_of(disk);
    qemu_img(&["resize", "-q", "-f", fmt, &disk.to_string_lossy(), &format!("{mib}M")])?;
    Ok(())
}

/// The files of a host about to arrive by live migration: its directory,
/// seed and kernel as a build makes them, and its disks empty but the
/// size of the sender's, for the sender's data to be copied into (an
/// overlay on this place's copy of the template: only the sender's own
/// writes travel). Defines nothing: the migration does. Returns the
/// host's directory.
pub(super) fn incoming_host(m: &Machines, p: &Prepared, plan: &Plan, h: &Host) -> Result<std::path::PathBuf, MachineError> {
    let name = domain_name(&plan.project, &h.name);
    if m.lv.exists(&name) {
        return Err(MachineError::Refused(format!("a domain named {name} exists here already")));
    }
    Ok(make_host(m, p, plan, h, Making::Incoming)?.dir)
}

/// Whether a host's files are made for a build, for a machine arriving
/// by migration (disks left empty for the sender's data), or only its
/// definition is wanted (nothing of the guest's written).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Making {
    Build,
    Incoming,
    Definition,
}

struct Made<'a> {
    spec: DomainSpec<'a>,
    dir: std::path::PathBuf,
    template: String,
    fs_template: bool,
}

fn make_host<'a>(m: &Machines, p: &Prepared, plan: &Plan, h: &'a Host, making: Making) -> Result<Made<'a>, MachineError> {
    refused(h)?;
    let (t, base_mib) = template_of(p, h)?;
    let (kvm_works, switches, env) = (p.kvm, &p.switches, m);
    let dir = env.state.host_dir(&plan.project, &h.name)?;
    let name = domain_name(&plan.project, &h.name);
    let seed_path = dir.join("seed.img");
    let swap_path = h.swap_mib.map(|_| dir.join("swap.img"));
    // A filesystem template is copied raw and configured by writing into
    // it; any other disk template is the backing of an overlay (or copied).
    let fs_template = t.disk.as_ref().is_some_and(|(p, _)| crate::guest::fstemplate::is_ext(p));
    let disk_path = disk_path(&dir, fs_template);
    let ours = env.state.has_resource(&plan.project, ResourceKind::Domain, &name)?;
    if env.lv.exists(&name) && !ours {
        return Err(MachineError::Refused(format!("a domain named {name} exists and was not made by mln for this project")));
    }
    // Everything this host will have, recorded before any of it is made.
    let res = |kind: ResourceKind, ident: String| Resource { host: h.name.clone(), kind, ident };
    let mut rs = vec![
        res(ResourceKind::Dir, dir.display().to_string()),
        res(ResourceKind::Seed, seed_path.display().to_string()),
        res(ResourceKind::Domain, name.clone()),
    ];
    if t.disk.is_some() {
        rs.push(res(ResourceKind::Disk, disk_path.display().to_string()));
    }
    if let Some(p) = &swap_path {
        rs.push(res(ResourceKind::Disk, p.display().to_string()));
    }
    env.state.record_all(&plan.project, &rs)?;
    std::fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))?;

    let contents = h
        .files
        .iter()
        .map(|f| std::fs::read_to_string(&f.source).map_err(LocalError::io("read", &f.source)))
        .collect::<Result<Vec<_>, _>>()?;

    let disk = match &t.disk {
        Some(_) if making == Making::Incoming => {
            if !disk_path.exists() {
                empty_disk(env, h, t, *base_mib, fs_template, &disk_path)?;
            }
            Some((disk_path, if fs_template { "raw" } else { "qcow2" }))
        }
        Some((tpath, _)) if fs_template => {
            if !disk_path.exists() {
                let tmp = disk_path.with_extension("tmp");
                std::fs::copy(tpath, &tmp).map_err(LocalError::io("copy", tpath))?;
                crate::state::make_private(&tmp)?;
                std::fs::rename(&tmp, &disk_path).map_err(LocalError::io("place", &disk_path))?;
            }
            // Written on every build: idempotent, and a resumed build
            // finishes what an interrupted one began.
            if making == Making::Build {
                let files = crate::guest::fstemplate::files(plan, h, &disk_path, &contents)?;
                crate::guest::fstemplate::inject(&disk_path, &files)?;
            }
            Some((disk_path, "raw"))
        }
        Some((tpath, fmt)) => {
            let disk = disk_path;
            if !disk.exists() {
                make_disk(env, h, tpath, fmt, *base_mib, &disk)?;
            }
            Some((disk, "qcow2"))
        }
        None => None,
    };
    if let (Some(p), Some(mib)) = (&swap_path, h.swap_mib) {
        if !p.exists() {
            match making {
                Making::Build | Making::Definition => make_swap(p, mib)?,
                Making::Incoming => sparse_file(p, mib)?,
            }
        }
    }
    if !fs_template && (making != Making::Definition || !seed_path.exists()) {
        // The project's login keys, made on its first build (book/src/login.md).
        let mut keys = crate::login::keys::ensure(env.state, &plan.project).map_err(|e| failed(format!("cannot make the project's keys: {e}")))?;
        if t.takes_host_key {
            // Its host key made here: `mln ssh` knows it without waiting
            // for the guest to print it on its console (book/src/login.md).
            // Only a build makes one: a guest arriving by migration booted
            // elsewhere and keeps the key it has, collected as before.
            let made = match making {
                Making::Build => crate::login::keys::host_key(&dir, &plan.project, &h.name).map(Some),
                Making::Incoming | Making::Definition => crate::login::keys::host_key_made(&dir),
            };
            keys.host = made.map_err(|e| failed(format!("cannot make the guest's host key: {e}")))?;
        }
        let seed = crate::guest::seed_files_with_keys(plan, h, &contents, Some(&keys));
        let files: Vec<(&str, &[u8])> = seed.as_list().iter().map(|(n, d)| (*n, d.as_bytes())).collect();
        let image = crate::guest::fat_image("cidata", &files).map_err(|e| failed(format!("cannot make the seed: {e}")))?;
        crate::state::write_private(&seed_path, &image)?;
    }
    let spec = DomainSpec {
        name: name.clone(),
        host: h,
        domain_type: DomainType::for_host(h, kvm_works).expect("bare metal was refused above"),
        disk,
        seed: (!fs_template).then_some(seed_path),
        swap: swap_path,
        kernel: kernel_of(h, t, &dir)?,
        console_log: dir.join("console.log"),
        nics: h.interfaces.iter().map(|i| nic(i, switches)).collect::<Result<_, _>>()?,
    };
    Ok(Made { spec, dir, template: t.name.clone(), fs_template })
}

/// An empty disk the size a build would make for `h`: an overlay on the
/// template when disks are linked (the receiving side's copy of the
/// template supplies what the sender did not write), otherwise a blank
/// image, as the sender's disk has no backing and is copied whole.
fn empty_disk(env: &Machines, h: &Host, t: &Template, base_mib: u64, fs_template: bool, disk: &Path) -> Result<(), LocalError> {
    let Some((tpath, fmt)) = &t.disk else { return Ok(()) };
    if fs_template {
        let bytes = std::fs::metadata(tpath).map_err(LocalError::io("measure", tpath))?.len();
        return sparse_file(disk, bytes.div_ceil(1 << 20));
    }
    if h.disk_mode == DiskMode::Linked {
        return make_disk(env, h, tpath, fmt, base_mib, disk);
    }
    let tmp = disk.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    qemu_img(&["create", "-q", "-f", "qcow2", &tmp.to_string_lossy(), &format!("{}M", disk_mib(h, base_mib))])?;
    crate::state::make_private(&tmp)?;
    std::fs::rename(&tmp, disk).map_err(LocalError::io("place", disk))
}

/// A private sparse file of `mib` MiB, made under a temporary name.
fn sparse_file(path: &Path, mib: u64) -> Result<(), LocalError> {
    let tmp = sparse_tmp(path, mib)?;
    std::fs::rename(&tmp, path).map_err(LocalError::io("place", path))
}

/// A private sparse file of `mib` MiB beside `path`, under a temporary
/// name (one left by an interrupted run is replaced).
fn sparse_tmp(path: &Path, mib: u64) -> Result<std::path::PathBuf, LocalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(LocalError::io("write", &tmp))?;
    f.set_len(mib << 20).map_err(LocalError::io("size", &tmp))?;
    Ok(tmp)
}

/// The size of `h`'s disk in MiB: the template's, grown by `free_space`
/// or to `size`.
fn disk_mib(h: &Host, base_mib: u64) -> u64 {
    match (h.disk_mib, h.free_space_mib) {
        (_, Some(free)) => base_mib + free,
        (Some(m), None) => m.max(base_mib),
        (None, None) => base_mib,
    }
}

/// The host's own kernel settings win over the template's. A host's own
/// kernel and ramdisk are files outside mln's directories: libvirt hands
/// what it boots to the QEMU user (and, with `remember_owner = 0`, does not
/// give it back), so the guest boots a private copy in its directory.
fn kernel_of(h: &Host, t: &Template, dir: &Path) -> Result<Option<(std::path::PathBuf, Option<std::path::PathBuf>, String)>, LocalError> {
    let Some(k) = &h.kernel else { return Ok(t.kernel.clone()) };
    let kernel = private_copy(Path::new(k), &dir.join("kernel"))?;
    let ramdisk = match &h.ramdisk {
        Some(r) => Some(private_copy(Path::new(r), &dir.join("ramdisk"))?),
        None => None,
    };
    Ok(Some((kernel, ramdisk, template::DEFAULT_CMDLINE.into())))
}

/// Copies `from` to `to` (under a temporary name, then renamed).
fn private_copy(from: &Path, to: &Path) -> Result<std::path::PathBuf, LocalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = to.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut src = std::fs::File::open(from).map_err(LocalError::io("read", from))?;
    let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(LocalError::io("write", &tmp))?;
    std::io::copy(&mut src, &mut dst).map_err(LocalError::io("copy", from))?;
    std::fs::rename(&tmp, to).map_err(LocalError::io("place", to))?;
    Ok(to.to_path_buf())
}

/// If mln is killed, a tool it runs must not go on writing a disk that the
/// next run will make again (found by the kill -9 test).
fn dies_with_mln(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The swap disk: a sparse raw file of `mib` MiB, formatted on this machine
/// by util-linux's `mkswap` with the label the guest mounts it by
/// (`mln-swap`) and 4 KiB pages (an x86-64 guest's). Private, made under a
/// temporary name and renamed, so an interrupted build leaves no half disk.
fn make_swap(path: &Path, mib: u64) -> Result<(), LocalError> {
    let tmp = sparse_tmp(path, mib)?;
    // mkswap lives in sbin, which a user's PATH may lack.
    let mut last = None;
    for exe in ["mkswap", "/usr/sbin/mkswap", "/sbin/mkswap"] {
        let mut cmd = Command::new(exe);
        cmd.args(["-L", "mln-swap", "-p", "4096"]).arg(&tmp);
        dies_with_mln(&mut cmd);
        match cmd.output() {
            Ok(out) if out.status.success() => {
                return std::fs::rename(&tmp, path).map_err(LocalError::io("place", path));
            }
            Ok(out) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(LocalError::Tool { tool: "mkswap".into(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
            }
            Err(e) => last = Some(e),
        }
    }
    let _ = std::fs::remove_file(&tmp);
    Err(LocalError::Missing { tool: "mkswap (util-linux)", source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()) })
}

pub(super) fn qemu_img(args: &[&str]) -> Result<String, LocalError> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(args);
    dies_with_mln(&mut cmd);
    let out = cmd.output().map_err(|source| LocalError::Missing { tool: "qemu-img", source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LocalError::Tool { tool: format!("qemu-img {}", args[0]), message: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// The disk: a copy-on-write overlay on the template (the default: its cost
/// does not depend on the template's size), or a full copy. Made under a
/// temporary name and renamed, so an interrupted build leaves no half disk.
/// A fresh overlay holds only its backing file's name and its size, so one
/// made by qemu-img serves every host with the same template and size:
/// copying it costs microseconds, running qemu-img ~10 ms. Prototypes live
/// in the state directory's cache, keyed by template, its modification
/// time, format and size.
fn overlay_prototype(env: &Machines, template: &Path, fmt: &str, mib: u64) -> Result<std::path::PathBuf, LocalError> {
    use sha2::{Digest, Sha256};
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let mtime = std::fs::metadata(template).and_then(|m| m.modified()).map(|t| format!("{t:?}")).unwrap_or_default();
    let key = Sha256::digest(format!("{}|{mtime}|{fmt}|{mib}", template.display()).as_bytes());
    let key: String = key[..12].iter().map(|b| format!("{b:02x}")).collect();
    let dir = env.state.dir().join("cache");
    let proto = dir.join(format!("overlay-{key}.qcow2"));
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    if !proto.exists() {
        std::fs::create_dir_all(&dir).map_err(LocalError::io("create", &dir))?;
        let tmp = proto.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        qemu_img(&["create", "-q", "-f", "qcow2", "-F", fmt, "-b", &template.to_string_lossy(), &tmp.to_string_lossy(), &format!("{mib}M")])?;
        std::fs::rename(&tmp, &proto).map_err(LocalError::io("place", &proto))?;
    }
    Ok(proto)
}

/// A disk image's virtual size in MiB.
/// (`-U`: a running guest's QEMU holds its image's lock; the size is only
/// read.)
fn virtual_mib(path: &Path, fmt: &str) -> Result<u64, LocalError> {
    let p = path.to_string_lossy();
    let info: serde_json::Value = serde_json::from_str(&qemu_img(&["info", "-U", "--output=json", "-f", fmt, &p])?)
        .map_err(|e| LocalError::Tool { tool: "qemu-img info".into(), message: format!("unreadable answer: {e}") })?;
    Ok(info["virtual-size"].as_u64().unwrap_or(0).div_ceil(1 << 20))
}

fn make_disk(env: &Machines, h: &Host, template: &Path, fmt: &str, base_mib: u64, disk: &Path) -> Result<(), LocalError> {
    let tpath = template.canonicalize().map_err(LocalError::io("find template", template))?;
    let t = tpath.to_string_lossy();
    let want_mib = disk_mib(h, base_mib);
    let tmp = disk.with_extension("tmp");
    // Left by an interrupted run.
    let _ = std::fs::remove_file(&tmp);
    let tmp_s = tmp.to_string_lossy();
    let size = format!("{want_mib}M");
    match h.disk_mode {
        DiskMode::Linked => {
            let proto = overlay_prototype(env, &tpath, fmt, want_mib)?;
            std::fs::copy(&proto, &tmp).map_err(LocalError::io("write", &tmp))?;
            String::new()
        }
        DiskMode::Full => {
            qemu_img(&["convert", "-q", "-f", fmt, "-O", "qcow2", &t, &tmp_s])?;
            qemu_img(&["resize", "-q", &tmp_s, &size])?
        }
        DiskMode::Lvm => return Err(LocalError::Refused("LVM disks are not supported".into())),
    };
    crate::state::make_private(&tmp)?;
    std::fs::rename(&tmp, disk).map_err(LocalError::io("place", disk))
}
