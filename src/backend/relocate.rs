//! Cold moves of libvirt domains: the machine is made still (its memory,
//! when it runs or is saved, to a file of its own directory), its files
//! are carried by whoever orchestrates, and the receiving libvirt defines
//! it from the sender's definition with its own paths, then restores the
//! memory (running, or paused and saved again, as the machine was).
//!
//! A memory image restores only under the same CPU architecture and a
//! QEMU that has the same machine type: the receiver checks both before
//! anything is carried.

use super::machines::LibvirtMachines;
use super::migrate::{check_definition, rewrite_paths};
use crate::local_error::LocalError;
use crate::machine::{Done, Incoming, Machine, MachineError, MemoryNeeds, Parcel, ParcelFile, PowerState, Provision, Relocate, MEMORY_FILE};
use crate::plan::Plan;
use std::path::{Path, PathBuf};

impl Relocate for LibvirtMachines<'_> {
    fn pack(&self, m: &Machine, then: PowerState) -> Result<Parcel, MachineError> {
        let name = Self::domain(m);
        let dir = self.state.host_dir(m.project, &m.host.name)?;
        let memory = dir.join(MEMORY_FILE);
        match self.lv.state(&name) {
            PowerState::Absent => return Err(MachineError::Refused(format!("{name} is not defined here"))),
            PowerState::Running => self.lv.save_to(&name, &memory)?,
            PowerState::Saved => {
                // libvirt's own image becomes a file of the machine's: the
                // machine is restored from it paused (no instruction runs)
                // and saved to its directory.
                let d = self.lv.domain(&name)?;
                d.create_with_flags(virt::sys::VIR_DOMAIN_START_PAUSED)
                    .map_err(|e| MachineError::from(super::libvirt::err(&format!("cannot take {name}'s saved memory"), e)))?;
                self.lv.save_to(&name, &memory)?;
            }
            // Shut off: stopped, or packed by an earlier run.
            PowerState::ShutOff => {}
        }
        let has_memory = memory.exists();
        let definition = self
            .lv
            .domain(&name)?
            .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_MIGRATABLE | virt::sys::VIR_DOMAIN_XML_SECURE)
            .map_err(|e| MachineError::from(super::libvirt::err(&format!("cannot read {name}'s definition"), e)))?;
        let needs = if has_memory {
            let image = self.lv.image_definition(&memory)?;
            let (arch, machine) = os_type(&image).ok_or_else(|| MachineError::Failed(format!("{}: no architecture or machine type in it", memory.display())))?;
            Some(MemoryNeeds { cpu: host_cpu(&self.lv.capabilities()?).unwrap_or_else(|| std::env::consts::ARCH.into()), arch, machine })
        } else {
            None
        };
        Ok(Parcel {
            files: files_of(&dir)?,
            definition,
            dir,
            templates: self.templates.clone(),
            then: if has_memory { then } else { PowerState::ShutOff },
            memory: needs,
        })
    }

    fn make_ready(&self, plan: &Plan, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError> {
        if let Some(needs) = &parcel.memory {
            can_run(&self.lv.capabilities()?, needs)?;
        }
        // Files are carried only into a directory no domain uses.
        if self.lv.exists(&Self::domain(m)) {
            return Err(MachineError::Refused(format!("a domain named {} exists here already", Self::domain(m))));
        }
        let p = self.prepared_for(plan)?;
        super::provision::incoming_host(self, &p, plan, m.host)?;
        Ok(Done::ok("ready"))
    }

    fn unpack(&self, plan: &Plan, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError> {
        let _ = plan;
        let name = Self::domain(m);
        let dir = self.state.host_dir(m.project, &m.host.name)?;
        // Defined here only once every file was: from then on the files
        // are its own (its console grows, its memory image goes).
        let defined = self.lv.exists(&name);
        // The names come from the sender: each a plain file name here.
        let paths = parcel
            .files
            .iter()
            .map(|f| crate::name::inside(&dir, &[f.name.as_str()]).map(|p| (f, p)).map_err(|e| MachineError::Refused(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let missing: Vec<&str> =
            paths.iter().filter(|(f, p)| std::fs::metadata(p).map(|md| md.len() != f.size).unwrap_or(true)).map(|(f, _)| f.name.as_str()).collect();
        if !defined && !missing.is_empty() {
            return Err(MachineError::Refused(format!("not all its files are here yet: {}", missing.join(", "))));
        }
        let here = Incoming { connect: String::new(), address: String::new(), dir: dir.clone(), templates: self.templates.clone() };
        let ours = |xml: &str| -> Result<String, MachineError> {
            let xml = rewrite_paths(xml, &[(&parcel.dir, &dir), (&parcel.templates, &self.templates)]);
            check_definition(&xml, &here)?;
            Ok(xml)
        };
        if !defined {
            let xml = ours(&parcel.definition)?;
            for (_, p) in paths.iter().filter(|(f, _)| f.name.ends_with(".qcow2")) {
                rebase(p, &parcel.templates, &self.templates)?;
            }
            self.lv.define(&xml)?;
        }
        let memory = dir.join(MEMORY_FILE);
        if memory.exists() {
            let xml = ours(&self.lv.image_definition(&memory)?)?;
            self.resume(&name, &memory, &xml, parcel.then)?;
        }
        Ok(Done::ok(format!("arrived, {}", self.lv.state(&name))))
    }

    fn unpack_home(&self, m: &Machine, parcel: &Parcel) -> Result<Done, MachineError> {
        let name = Self::domain(m);
        let memory = self.state.host_dir(m.project, &m.host.name)?.join(MEMORY_FILE);
        if !memory.exists() {
            return Ok(Done::ok(format!("here, {}", self.lv.state(&name))));
        }
        let xml = self.lv.image_definition(&memory)?;
        self.resume(&name, &memory, &xml, parcel.then)?;
        Ok(Done::ok(format!("back as it was, {}", self.lv.state(&name))))
    }

    fn discard(&self, plan: &Plan, m: &Machine) -> Result<Done, MachineError> {
        if self.lv.exists(&Self::domain(m)) {
            return Err(MachineError::Refused(format!("{} is defined here: it arrived", Self::domain(m))));
        }
        self.remove(&plan.project, &m.host.name)?;
        Ok(Done::ok("did not arrive: what was made ready for it is removed"))
    }
}

impl LibvirtMachines<'_> {
    /// A packed domain `name` brought back from its memory image as `then`
    /// says (running, or saved to be restored running), the image removed.
    /// Done already (not shut off any more): only the image goes.
    fn resume(&self, name: &str, memory: &Path, xml: &str, then: PowerState) -> Result<(), MachineError> {
        if self.lv.state(name) == PowerState::ShutOff {
            self.lv.restore_from(memory, xml, then == PowerState::Saved)?;
            if then == PowerState::Saved {
                self.lv.save_to_run(name)?;
            }
        }
        std::fs::remove_file(memory).map_err(LocalError::io("remove", memory))?;
        Ok(())
    }
}

/// The machine's regular files (not those being written: `.name.part`,
/// `name.tmp`), with sizes and SHA-256, in name order.
fn files_of(dir: &Path) -> Result<Vec<ParcelFile>, MachineError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(LocalError::io("read", dir))? {
        let e = e.map_err(LocalError::io("read", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type().map_err(LocalError::io("read", &e.path()))?;
        if !ft.is_file() || name.starts_with('.') || name.ends_with(".tmp") {
            continue;
        }
        let path = e.path();
        let (size, sha256) = sha256_of(&path)?;
        out.push(ParcelFile { name, size, sha256 });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn sha256_of(path: &Path) -> Result<(u64, String), MachineError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(LocalError::io("read", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(LocalError::io("read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

/// An overlay's backing file under the sender's templates directory,
/// pointed at the same template here (the same bytes: templates are
/// sent by checksum). The header alone changes.
fn rebase(disk: &Path, from: &Path, to: &Path) -> Result<(), MachineError> {
    let info = super::provision::qemu_img(&["info", "--output=json", "-U", &disk.to_string_lossy()])?;
    let v: serde_json::Value = serde_json::from_str(&info).map_err(|e| MachineError::Failed(format!("qemu-img info {}: {e}", disk.display())))?;
    // The image comes from the sender: an external data file would hand
    // the guest another file of this host.
    if v.get("format").and_then(|f| f.as_str()) != Some("qcow2") || v.pointer("/format-specific/data/data-file").is_some() {
        return Err(MachineError::Refused(format!("{}: not a plain qcow2 image", disk.display())));
    }
    let Some(backing) = v.get("backing-filename").and_then(|b| b.as_str()) else { return Ok(()) };
    let Ok(rest) = Path::new(backing).strip_prefix(from) else {
        return if Path::new(backing).starts_with(to) {
            Ok(())
        } else {
            Err(MachineError::Refused(format!("{}: its backing file {} is not a template", disk.display(), crate::term::escape(backing))))
        };
    };
    if rest.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(MachineError::Refused(format!("{}: its backing file {} is not a template", disk.display(), crate::term::escape(backing))));
    }
    let new: PathBuf = to.join(rest);
    let fmt = v.get("backing-filename-format").and_then(|f| f.as_str()).map(str::to_string).unwrap_or_else(|| super::template::format_of(&new).to_string());
    super::provision::qemu_img(&["rebase", "-u", "-F", &fmt, "-b", &new.to_string_lossy(), &disk.to_string_lossy()])?;
    Ok(())
}

/// `<type arch='…' machine='…'>` of a domain definition.
fn os_type(xml: &str) -> Option<(String, String)> {
    let start = xml.find("<type ")?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    Some((attr(tag, "arch")?, attr(tag, "machine")?))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    for q in ['\'', '"'] {
        let pat = format!(" {name}={q}");
        if let Some(i) = tag.find(&pat) {
            let rest = &tag[i + pat.len()..];
            return Some(rest[..rest.find(q)?].to_string());
        }
    }
    None
}

/// The host's CPU architecture in libvirt's capabilities.
fn host_cpu(caps: &str) -> Option<String> {
    let host = &caps[caps.find("<host>")?..];
    let cpu = &host[host.find("<arch>")? + "<arch>".len()..];
    Some(cpu[..cpu.find('<')?].trim().to_string())
}

/// Refused unless this hypervisor runs `needs`' memory image: the same
/// host CPU architecture, and the guest architecture with that machine
/// type among its QEMU's.
fn can_run(caps: &str, needs: &MemoryNeeds) -> Result<(), MachineError> {
    let refuse = |why: String| Err(MachineError::Refused(format!("its memory cannot be restored here: {why}")));
    let cpu = host_cpu(caps).unwrap_or_default();
    if cpu != needs.cpu {
        return refuse(format!("it was saved on a {} host, this one is {}", needs.cpu, if cpu.is_empty() { "unknown" } else { &cpu }));
    }
    let offered = caps.split("<guest>").skip(1).any(|g| {
        let arch_ok = g.contains(&format!("<arch name='{}'>", needs.arch)) || g.contains(&format!("<arch name=\"{}\">", needs.arch));
        let machine_ok = g.contains(&format!(">{}</machine>", needs.machine)) || g.contains(&format!("canonical='{}'", needs.machine));
        arch_ok && machine_ok
    });
    if !offered {
        return refuse(format!("QEMU here has no machine type {} for {}", crate::term::escape(&needs.machine), crate::term::escape(&needs.arch)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: &str = "<capabilities><host><uuid>x</uuid><cpu><arch>x86_64</arch></cpu></host>\
        <guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>\
        <machine maxCpus='255'>pc-i440fx-7.2</machine><machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>\
        <machine maxCpus='288'>pc-q35-7.2</machine></arch></guest></capabilities>";

    fn needs(cpu: &str, arch: &str, machine: &str) -> MemoryNeeds {
        MemoryNeeds { cpu: cpu.into(), arch: arch.into(), machine: machine.into() }
    }

    #[test]
    fn a_memory_image_restores_only_on_the_same_cpu_and_machine_type() {
        assert_eq!(host_cpu(CAPS).as_deref(), Some("x86_64"));
        assert!(can_run(CAPS, &needs("x86_64", "x86_64", "pc-i440fx-7.2")).is_ok());
        assert!(can_run(CAPS, &needs("x86_64", "x86_64", "pc-q35-7.2")).is_ok());
        for (n, why) in [
            (needs("aarch64", "x86_64", "pc-i440fx-7.2"), "saved on a aarch64 host"),
            (needs("x86_64", "x86_64", "pc-i440fx-9.0"), "no machine type pc-i440fx-9.0"),
            (needs("x86_64", "aarch64", "virt-7.2"), "no machine type virt-7.2"),
        ] {
            match can_run(CAPS, &n) {
                Err(MachineError::Refused(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_machine_type_is_read_from_the_definition() {
        let xml = "<domain type='qemu'><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os></domain>";
        assert_eq!(os_type(xml), Some(("x86_64".into(), "pc-i440fx-7.2".into())));
        assert_eq!(os_type("<domain/>"), None);
    }

    #[test]
    fn an_overlay_is_pointed_at_the_template_here_and_a_foreign_image_refused() {
        let d = tempfile::tempdir().unwrap();
        let (from, to) = (d.path().join("theirs"), d.path().join("ours"));
        for t in [&from, &to] {
            std::fs::create_dir_all(t.join("t")).unwrap();
            super::super::provision::qemu_img(&["create", "-q", "-f", "qcow2", &t.join("t/disk.qcow2").to_string_lossy(), "16M"]).unwrap();
        }
        let disk = d.path().join("disk.qcow2");
        let b = from.join("t/disk.qcow2");
        super::super::provision::qemu_img(&["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &b.to_string_lossy(), &disk.to_string_lossy()]).unwrap();
        rebase(&disk, &from, &to).unwrap();
        let info = super::super::provision::qemu_img(&["info", "--output=json", &disk.to_string_lossy()]).unwrap();
        assert!(info.contains(&format!("\"backing-filename\": \"{}\"", to.join("t/disk.qcow2").display())), "{info}");
        // A backing file outside the templates, or an external data file.
        let (elsewhere, stray) = (d.path().join("elsewhere.qcow2"), d.path().join("stray.qcow2"));
        super::super::provision::qemu_img(&["create", "-q", "-f", "qcow2", &elsewhere.to_string_lossy(), "1M"]).unwrap();
        super::super::provision::qemu_img(&["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &elsewhere.to_string_lossy(), &stray.to_string_lossy()]).unwrap();
        assert!(matches!(rebase(&stray, &from, &to), Err(MachineError::Refused(_))));
        let data = d.path().join("data.qcow2");
        super::super::provision::qemu_img(&["create", "-q", "-f", "qcow2", "-o", &format!("data_file={}", d.path().join("raw").display()), &data.to_string_lossy(), "1M"]).unwrap();
        assert!(matches!(rebase(&data, &from, &to), Err(MachineError::Refused(_))));
        let raw = d.path().join("raw.qcow2");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert!(matches!(rebase(&raw, &from, &to), Err(MachineError::Refused(_))), "a raw file named .qcow2");
    }

    #[test]
    fn only_the_machines_own_files_travel() {
        let d = tempfile::tempdir().unwrap();
        for (n, body) in [("disk.qcow2", "a"), ("seed.img", "bb"), (".disk.qcow2.part", "x"), ("swap.tmp", "y")] {
            std::fs::write(d.path().join(n), body).unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let f = files_of(d.path()).unwrap();
        assert_eq!(f.iter().map(|f| (f.name.as_str(), f.size)).collect::<Vec<_>>(), [("disk.qcow2", 1), ("seed.img", 2)]);
        assert_eq!(f[0].sha256, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
    }
}
