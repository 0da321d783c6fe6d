//! What mln puts into every template it builds so that a guest is
//! configured fast under software emulation, where each cloud-init stage
//! starting Python costs 4-20 s. book/src/templates.md says why for each.

/// `(path in the guest, content, mode)`; a content of `None` is a symlink
/// to /dev/null (a masked systemd unit).
pub const FILES: &[(&str, Option<&str>, u32)] = &[
    ("/etc/cloud/cloud.cfg.d/90-mln.cfg", Some(CLOUD_CFG), 0o644),
    // e2scrub_reap checks ext4 metadata on LVM; with no LVM it still costs
    // 15-37 s of an emulated boot.
    ("/etc/systemd/system/e2scrub_reap.service", None, 0o777),
    // The network stage: with the seed applied in the local stage
    // (`dsmode: local` below) it would only start Python again to find
    // there is nothing left to do, and every unit of the boot (sshd too)
    // waits for it (Debian orders it before sysinit.target).
    ("/etc/systemd/system/cloud-init.service", None, 0o777),
    // Early units sysinit.target (so cloud-init's local stage, so sshd)
    // waits for, each a process on the guest's one emulated CPU beside
    // cloud-init's Python: modules the kernel loads on first use anyway,
    // binfmt (no formats registered), the kernel's debug and trace file
    // systems, huge pages.
    ("/etc/systemd/system/modprobe@dm_mod.service", None, 0o777),
    ("/etc/systemd/system/modprobe@loop.service", None, 0o777),
    ("/etc/systemd/system/modprobe@fuse.service", None, 0o777),
    ("/etc/systemd/system/modprobe@efi_pstore.service", None, 0o777),
    ("/etc/systemd/system/systemd-binfmt.service", None, 0o777),
    ("/etc/systemd/system/proc-sys-fs-binfmt_misc.automount", None, 0o777),
    ("/etc/systemd/system/sys-kernel-debug.mount", None, 0o777),
    ("/etc/systemd/system/sys-kernel-tracing.mount", None, 0o777),
    ("/etc/systemd/system/dev-hugepages.mount", None, 0o777),
    // sshd answers only once the local stage has applied the seed: the
    // host key mln gave the guest and the authorized keys are written by
    // the `ssh` and `users_groups` modules there. Debian orders that
    // stage before sysinit.target, so before sshd, already; said here so
    // that no unit a recipe adds (or cloud-init's own ordering, with its
    // network stage masked) can let sshd accept a login the key is not in
    // place for yet. And sshd starts without first running itself once
    // to check its configuration (`sshd -t`): a second sshd start on the
    // way to the first login. A broken configuration still fails the start.
    ("/etc/systemd/system/ssh.service.d/90-mln.conf", Some(SSH_DROP_IN), 0o644),
    ("/etc/fstab", Some("# The root file system, booted by mln with root=/dev/vda.\n/dev/vda / ext4 defaults,errors=remount-ro 0 0\n"), 0o644),
    ("/etc/hostname", Some("localhost\n"), 0o644),
    ("/etc/hosts", Some("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"), 0o644),
];

/// sshd's drop-in (see FILES).
pub const SSH_DROP_IN: &str = "\
# Written by `mln template build` (book/src/templates.md).
[Unit]
After=cloud-init-local.service
[Service]
ExecStartPre=
";

/// The cloud-init configuration: only the NoCloud seed (and none) is
/// probed, one host key type is made, and only the modules mln's seeds
/// use run. The seed is applied in the local stage, the one Python start
/// before sshd (`dsmode: local`; NoCloud takes a dsmode from its own
/// configuration before the seed's meta-data, which has none, and the
/// seed's user-data replaces the empty one here). `mounts` waits for the
/// config stage, after the network: an NFS mount needs it. `locale` is
/// left out: it fails on a root without locales; `resizefs` too: it
/// failed on the first boots we tried (the root is the recipe's size).
pub const CLOUD_CFG: &str = "\
# Written by `mln template build` (book/src/templates.md).
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    meta-data: {dsmode: local}
    user-data: \"\"
ssh_genkeytypes: [ed25519]
ssh_deletekeys: true
cloud_init_modules:
  - bootcmd
  - write_files
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - users_groups
  - ssh
cloud_config_modules:
  - mounts
  - set_passwords
  - runcmd
cloud_final_modules:
  - write_files_deferred
  - scripts_per_once
  - scripts_per_boot
  - scripts_per_instance
  - scripts_user
  - ssh_authkey_fingerprints
  - keys_to_console
  - final_message
";

/// Run inside the guest root after the recipe's commands (fixed text):
/// a template must not carry host keys, or every guest made from it would
/// share them; cloud-init makes each guest's own at first boot.
pub const FINISH: &str = "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The network stage is masked only together with the seed applied in
    /// the local stage (else nothing would apply it), and what needs the
    /// network (`mounts`: NFS) waits for the config stage.
    #[test]
    fn the_network_stage_goes_only_with_the_seed_applied_locally() {
        for (p, _, _) in FILES {
            assert!(crate::template::recipe::guest_path(p).is_ok(), "{p}");
        }
        assert!(FILES.iter().any(|(p, c, _)| *p == "/etc/systemd/system/cloud-init.service" && c.is_none()));
        assert!(CLOUD_CFG.contains("\n  NoCloud:\n    meta-data: {dsmode: local}\n"));
        let init = CLOUD_CFG.split("cloud_init_modules:").nth(1).unwrap().split("cloud_config_modules:").next().unwrap();
        for m in ["write_files", "set_hostname", "users_groups", "ssh"] {
            assert!(init.contains(&format!("  - {m}\n")), "{m} not in the local stage");
        }
        assert!(!init.contains("mounts"));
        assert!(CLOUD_CFG.contains("cloud_config_modules:\n  - mounts\n"));
    }

    /// The modules that write what a login needs (the host key, root's and
    /// the users' authorized keys) run in the local stage, and sshd is
    /// ordered after that stage: it never accepts a connection before the
    /// project key is in place (a refused first login, seen in CI).
    #[test]
    fn sshd_starts_after_the_stage_that_installs_the_keys() {
        let init = CLOUD_CFG.split("cloud_init_modules:").nth(1).unwrap().split("cloud_config_modules:").next().unwrap();
        assert!(init.contains("  - users_groups\n") && init.contains("  - ssh\n"));
        let (_, content, _) = FILES.iter().find(|(p, _, _)| *p == "/etc/systemd/system/ssh.service.d/90-mln.conf").unwrap();
        let unit = content.unwrap().split("[Service]").next().unwrap();
        assert!(unit.contains("[Unit]\nAfter=cloud-init-local.service\n"), "{unit}");
        // Nothing masks the local stage.
        assert!(!FILES.iter().any(|(p, _, _)| p.ends_with("/cloud-init-local.service")));
    }
}
