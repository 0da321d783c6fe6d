//! Filesystem templates (MLN's `.ext2/.ext3/.ext4` images without a
//! partition table): the host's configuration is written straight into its
//! copy of the image with debugfs, without mounting it, in the files a
//! Debian system reads at boot.

use crate::local_error::LocalError;
use crate::plan::{Host, Plan};
use std::path::Path;
use std::process::Command;

/// True when the image holds an ext2/3/4 file system at offset 0.
pub fn is_ext(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut magic = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(1080))?;
            f.read_exact(&mut magic)
        })
        .is_ok()
        && magic == [0x53, 0xEF]
}

fn debugfs(image: &Path, cmds: &str, write: bool) -> Result<String, LocalError> {
    let dir = tempfile::tempdir().map_err(LocalError::io("make a temporary directory in", std::env::temp_dir()))?;
    let f = dir.path().join("cmds");
    std::fs::write(&f, cmds).map_err(LocalError::io("write", &f))?;
    let mut c = Command::new("debugfs");
    if write {
        c.arg("-w");
    }
    let out = c.arg("-f").arg(&f).arg(image).output().map_err(|source| LocalError::Missing { tool: "debugfs", source })?;
    if !out.status.success() {
        return Err(LocalError::Tool { tool: "debugfs".into(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A file of the image, if it has one.
pub fn read(image: &Path, path: &str) -> Option<String> {
    let out = Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The files a host gets: (path, content, mode).
pub fn files(plan: &Plan, h: &Host, image: &Path, contents: &[String]) -> Result<Vec<(String, String, u32)>, LocalError> {
    let mut out = vec![(String::from("/etc/hostname"), format!("{}\n", h.name), 0o644)];
    let mut hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n", h.name);
    for other in &plan.hosts {
        if let Some(a) = other.interfaces.iter().find_map(|i| i.address.as_deref()) {
            hosts += &format!("{a}\t{}\n", other.name);
        }
    }
    out.push(("/etc/hosts".into(), hosts, 0o644));
    let mut ifaces = String::from("auto lo\niface lo inet loopback\n");
    for i in &h.interfaces {
        ifaces += &format!("\n# mac {}\nauto {}\n", i.mac, i.name);
        if i.dhcp || i.address.is_none() {
            ifaces += &format!("iface {} inet dhcp\n", i.name);
        } else {
            let prefix = i.netmask.as_deref().and_then(|m| m.parse::<std::net::Ipv4Addr>().ok()).map(|m| u32::from(m).leading_ones()).unwrap_or(24);
            ifaces += &format!("iface {} inet static\n    address {}/{prefix}\n", i.name, i.address.as_deref().unwrap_or_default());
            if let Some(g) = &i.gateway {
                ifaces += &format!("    gateway {g}\n");
            }
        }
    }
    out.push(("/etc/network/interfaces".into(), ifaces, 0o644));
    if !h.nameservers.is_empty() {
        out.push(("/etc/resolv.conf".into(), h.nameservers.iter().map(|n| format!("nameserver {n}\n")).collect(), 0o644));
    }
    // Accounts: the image's own, then the plan's (replacing same names).
    let base = |p: &str| read(image, p).unwrap_or_default();
    let (mut passwd, mut shadow, mut group) = (base("/etc/passwd"), base("/etc/shadow"), base("/etc/group"));
    // Ids in use: the image's accounts and the plan's explicit ids; new
    // ones are the lowest free ids from 1000 (never wrapping into root's).
    let mut used: std::collections::BTreeSet<u32> = passwd.lines().chain(group.lines()).filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect();
    used.extend(h.users.iter().filter_map(|u| u.uid));
    let mut next = 1000u32;
    let mut fresh = || -> Result<u32, LocalError> {
        while used.contains(&next) {
            next = next.checked_add(1).filter(|n| *n < u32::MAX).ok_or_else(|| LocalError::Refused("no free user or group id is left".into()))?;
        }
        used.insert(next);
        Ok(next)
    };
    for u in &h.users {
        let keep = |text: &str| text.lines().filter(|l| !l.starts_with(&format!("{}:", u.name))).map(|l| format!("{l}\n")).collect::<String>();
        passwd = keep(&passwd);
        shadow = keep(&shadow);
        group = keep(&group);
        let id = match u.uid {
            // (uid_t)-1 means "no change" to chown and friends.
            Some(u32::MAX) => return Err(LocalError::Refused(format!("user {}: uid 4294967295 is not a valid id", u.name))),
            Some(0) if u.name != "root" => return Err(LocalError::Refused(format!("user {}: uid 0 would make it root", u.name))),
            Some(id) => id,
            None => fresh()?,
        };
        let home = u.home.clone().unwrap_or_else(|| format!("/home/{}", u.name));
        passwd += &format!("{}:x:{id}:{id}::{home}:/bin/sh\n", u.name);
        shadow += &format!("{}:{}:19000:0:99999:7:::\n", u.name, u.password_hash);
        group += &format!("{}:x:{id}:\n", u.name);
    }
    if let Some(root) = &h.root_password_hash {
        shadow = shadow.lines().filter(|l| !l.starts_with("root:")).map(|l| format!("{l}\n")).collect();
        shadow = format!("root:{root}:19000:0:99999:7:::\n{shadow}");
    }
    for g in &h.groups {
        group = group.lines().filter(|l| !l.starts_with(&format!("{}:", g.name))).map(|l| format!("{l}\n")).collect();
        group += &format!("{}:x:{}:{}\n", g.name, fresh()?, g.members.join(","));
    }
    out.push(("/etc/passwd".into(), passwd, 0o644));
    out.push(("/etc/shadow".into(), shadow, 0o640));
    out.push(("/etc/group".into(), group, 0o644));
    // Written even when empty: commands an upgrade removed must stop
    // running (the file system keeps whatever was written before).
    let startup: Vec<&String> = h.startup.iter().chain(h.plugins.values().flat_map(|o| o.startup.iter())).collect();
    let lines: Vec<&str> = startup.iter().map(|s| s.as_str()).collect();
    out.push(("/etc/mln/startup.sh".into(), format!("#!/bin/sh\n{}\n", lines.join("\n")), 0o755));
    if !startup.is_empty() {
        out.push(("/etc/rc.local".into(), "#!/bin/sh\n/etc/mln/startup.sh\nexit 0\n".into(), 0o755));
    }
    out.push(("/etc/mln/shutdown.sh".into(), format!("#!/bin/sh\n{}\n", h.shutdown.join("\n")), 0o755));
    if h.swap_mib.is_some() {
        // The image's own fstab, with the swap disk's line once (a build
        // run again finds the line it wrote).
        let spec = crate::guest::SWAP_SPEC;
        let mut fstab: String = base("/etc/fstab").lines().filter(|l| l.split_whitespace().next() != Some(spec)).map(|l| format!("{l}\n")).collect();
        fstab += &format!("{spec}\tnone\tswap\tsw\t0\t0\n");
        out.push(("/etc/fstab".into(), fstab, 0o644));
    }
    if !h.modules.is_empty() {
        out.push(("/etc/modules".into(), format!("{}{}\n", base("/etc/modules"), h.modules.join("\n")), 0o644));
    }
    for (f, c) in h.files.iter().zip(contents) {
        let mode = f.mode.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or(0o644);
        out.push((f.dest.clone(), c.clone(), mode));
    }
    for o in h.plugins.values() {
        for f in &o.files {
            let mode = f.mode.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or(0o644);
            out.push((f.path.clone(), f.content.clone(), mode));
        }
    }
    Ok(out)
}

/// Writes the files into the image (replacing existing ones, making
/// parent directories), without mounting it.
pub fn inject(image: &Path, files: &[(String, String, u32)]) -> Result<(), LocalError> {
    let dir = tempfile::tempdir().map_err(LocalError::io("make a temporary directory in", std::env::temp_dir()))?;
    let mut cmds = String::new();
    let mut made = std::collections::BTreeSet::new();
    for (i, (path, content, mode)) in files.iter().enumerate() {
        if !path.starts_with('/') || path.contains(['\n', '"']) {
            return Err(LocalError::Refused(format!("cannot write {path:?} into a filesystem template")));
        }
        let local = dir.path().join(format!("f{i}"));
        std::fs::write(&local, content).map_err(LocalError::io("write", &local))?;
        // Parents, outermost first (debugfs mkdir does one level).
        let mut parent = String::new();
        for part in path.trim_start_matches('/').split('/').collect::<Vec<_>>().split_last().map(|(_, p)| p.to_vec()).unwrap_or_default() {
            parent = format!("{parent}/{part}");
            if made.insert(parent.clone()) {
                cmds += &format!("mkdir \"{parent}\"\n");
            }
        }
        cmds += &format!("rm \"{path}\"\nwrite \"{}\" \"{path}\"\nsif \"{path}\" mode 0{:o}\n", local.display(), 0o100000 | mode);
    }
    debugfs(image, &cmds, true).map(drop)
}
