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
    ("/etc/fstab", Some("# The root file system, booted by mln with root=/dev/vda.\n/dev/vda / ext4 defaults,errors=remount-ro 0 0\n"), 0o644),
    ("/etc/hostname", Some("localhost\n"), 0o644),
    ("/etc/hosts", Some("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"), 0o644),
];

/// The cloud-init configuration: only the NoCloud seed (and none) is
/// probed, one host key type is made, and only the modules mln's seeds
/// use run. `locale` is left out: it fails on a root without locales;
/// `resizefs` too: it failed on the first boots we tried (the root is the
/// recipe's size).
pub const CLOUD_CFG: &str = "\
# Written by `mln template build` (book/src/templates.md).
datasource_list: [NoCloud, None]
ssh_genkeytypes: [ed25519]
ssh_deletekeys: true
cloud_init_modules:
  - bootcmd
  - write_files
  - mounts
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - users_groups
  - ssh
cloud_config_modules:
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
