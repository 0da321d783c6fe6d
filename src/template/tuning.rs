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
    // there is nothing left to do, and every later unit of the boot
    // waits for it (Debian orders it before sysinit.target).
    ("/etc/systemd/system/cloud-init.service", None, 0o777),
    // Early units sysinit.target (so every later unit) waits for, each a process on the guest's one emulated CPU beside
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
    // A login needs three things from the seed: the host key mln gave the
    // guest, root's authorized keys and the addresses. A shell script
    // applies them before cloud-init's first Python start (11-15 s under
    // emulation), and sshd is started right after it, ahead of
    // sysinit.target, which Debian orders after cloud-init's local stage
    // (its `After=network.target` is Debian's unit's, so a whole unit
    // replaces it: a drop-in cannot take an ordering away). cloud-init
    // then applies the whole seed, the same keys and addresses included;
    // `mln ssh --wait` waits for it to finish (book/src/login.md).
    ("/usr/lib/mln/seed-early", Some(SEED_EARLY), 0o755),
    ("/etc/systemd/system/mln-seed-early.service", Some(SEED_EARLY_UNIT), 0o644),
    ("/etc/systemd/system/ssh.service", Some(SSH_UNIT), 0o644),
    // cloud-init's local stage starts once sshd listens, and at a lower
    // priority: the first login's sshd, PAM and shell get the guest's one
    // emulated CPU before a cold Python start (11-15 s of CPU) that would
    // otherwise take half of it at exactly that moment. It costs the
    // configuration the time sshd takes to start, and a login's CPU.
    ("/etc/systemd/system/cloud-init-local.service.d/90-mln.conf", Some(LOCAL_STAGE_DROP_IN), 0o644),
    ("/etc/fstab", Some("# The root file system, booted by mln with root=/dev/vda.\n/dev/vda / ext4 defaults,errors=remount-ro 0 0\n"), 0o644),
    ("/etc/hostname", Some("localhost\n"), 0o644),
    ("/etc/hosts", Some("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"), 0o644),
];

/// The early unit's script (see FILES). Everything it reads from the
/// seed is data: checked, then passed as an argument, never run. A seed
/// without mln's files (a guest made by an older mln) leaves it all to
/// cloud-init, and sshd waits for nothing it would need: the host key is
/// made here then (cloud-init keeps it: `ssh_deletekeys: false`).
pub const SEED_EARLY: &str = r#"#!/bin/sh
# Written by `mln template build` (book/src/templates.md). Few processes:
# each costs a lot on an emulated CPU that the rest of the boot shares.
set -u
umask 077
copy() {
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "$line"
    done < "$1" > "$2"
}
# Each line of $1 not yet in $2, appended: keys a user added stay.
add_lines() {
    : >> "$2"
    while IFS= read -r k || [ -n "$k" ]; do
        [ -n "$k" ] || continue
        found=
        while IFS= read -r l; do
            [ "$l" = "$k" ] && found=1 && break
        done < "$2"
        [ -n "$found" ] || printf '%s\n' "$k" >> "$2"
    done < "$1"
}
seed=
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    seed=$(blkid -o device -t LABEL=CIDATA)
    [ -n "$seed" ] && break
    sleep 0.1
done
m=/run/mln-seed
mkdir -p $m
if [ -n "$seed" ] && mount -t vfat -o ro,nosuid,nodev,noexec,umask=077 "${seed%%[[:space:]]*}" $m; then
    trap 'umount $m' EXIT
else
    echo "mln-seed-early: no seed disk" >&2
fi
# A guest keeps the host key it has (a seed made again for a migration may
# carry another), as cloud-init does.
if [ -s /etc/ssh/ssh_host_ed25519_key ]; then
    :
elif [ -s $m/mln-host-key ] && [ -s $m/mln-host-key.pub ]; then
    copy $m/mln-host-key /etc/ssh/ssh_host_ed25519_key
    copy $m/mln-host-key.pub /etc/ssh/ssh_host_ed25519_key.pub
else
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
if [ -s $m/mln-authorized-keys ]; then
    [ -d /root/.ssh ] || mkdir /root/.ssh
    add_lines $m/mln-authorized-keys /root/.ssh/authorized_keys
fi
if [ -s $m/mln-hostname ]; then
    read -r name < $m/mln-hostname
    case $name in
        *[!A-Za-z0-9.-]*|'') ;;
        *) echo "$name" > /proc/sys/kernel/hostname ;;
    esac
fi
[ -s $m/mln-links ] || exit 0
[ -d /run/network ] || mkdir /run/network
while read -r mac name addr gw; do
    case $name in *[!A-Za-z0-9_.-]*|'') continue ;; esac
    case $mac in *[!0-9a-f:]*|'') continue ;; esac
    # Words for `ip -batch`: nothing but an address's characters.
    case $addr$gw in *[!0-9A-Fa-f.:/-]*) continue ;; esac
    # udev may rename the link at the same time: it leaves a name given
    # from user space alone, so once ours holds, it stays.
    for try in 1 2 3 4 5; do
        cur=
        for d in /sys/class/net/*; do
            read -r a < "$d/address" && [ "$a" = "$mac" ] && cur=${d##*/}
        done
        [ -z "$cur" ] || [ "$cur" = "$name" ] && break
        ip link set dev "$cur" name "$name" 2>/dev/null || sleep 0.1
    done
    [ "$cur" = "$name" ] || continue
    case $addr in
        -|dhcp) ip link set dev "$name" up; continue ;;
    esac
    {
        echo "link set dev $name up"
        echo "address add $addr dev $name"
        [ "$gw" = - ] || echo "route add default via $gw dev $name"
    } | ip -batch - || continue
    # ifupdown (cloud-init's renderer) then finds the link configured, as
    # cloud-init writes it, instead of failing to add the address again.
    echo "$name" > "/run/network/ifstate.$name"
done < $m/mln-links
"#;

/// The early unit (see FILES): as soon as the root is writable (the
/// kernel has made the seed's device node and the links; udev is not
/// waited for), before cloud-init's local stage (which applies the same
/// seed again and must not rename links under it), ahead of the other
/// early units on the CPU (its few processes, not sshd's children).
pub const SEED_EARLY_UNIT: &str = "\
# Written by `mln template build` (book/src/templates.md).
[Unit]
Description=What a login needs, from mln's seed
DefaultDependencies=no
After=systemd-remount-fs.service
Before=cloud-init-local.service ssh.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
Nice=-5
ExecStart=/usr/lib/mln/seed-early
StandardOutput=journal+console
";

/// cloud-init's local stage after sshd, niced (see FILES).
pub const LOCAL_STAGE_DROP_IN: &str = "\
# Written by `mln template build` (book/src/templates.md).
[Unit]
After=ssh.service
[Service]
Nice=10
";

/// Debian's ssh.service, started as soon as the early unit is done
/// instead of after network.target and sysinit.target (see FILES). It
/// starts without first running sshd once to check its configuration
/// (`sshd -t`): a second sshd start under emulation on the way to the
/// first login; a broken configuration still fails the start.
pub const SSH_UNIT: &str = "\
# Written by `mln template build` (book/src/templates.md): Debian's unit,
# ordered after mln-seed-early.service instead of network.target.
[Unit]
Description=OpenBSD Secure Shell server
Documentation=man:sshd(8) man:sshd_config(5)
DefaultDependencies=no
Wants=mln-seed-early.service
After=mln-seed-early.service systemd-remount-fs.service systemd-journald.socket
Before=shutdown.target
Conflicts=shutdown.target
ConditionPathExists=!/etc/ssh/sshd_not_to_be_run

[Service]
EnvironmentFile=-/etc/default/ssh
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS
ExecReload=/usr/sbin/sshd -t
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure
RestartPreventExitStatus=255
Type=notify
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755

[Install]
WantedBy=multi-user.target
Alias=sshd.service
";

/// The cloud-init configuration: only the NoCloud seed (and none) is
/// probed, one host key type is made, and only the modules mln's seeds
/// use run. The seed is applied in the local stage, the only Python
/// start before the guest is configured but for the config and final
/// stages' (`dsmode: local`; NoCloud takes a dsmode from its own
/// configuration before the seed's meta-data, which has none, and the
/// seed's user-data replaces the empty one here). `mounts` waits for the
/// config stage, after the network: an NFS mount needs it. `locale` is
/// left out: it fails on a root without locales; `resizefs` too: it
/// failed on the first boots we tried (the root is the recipe's size).
/// The host key the early unit installed is kept (`ssh_deletekeys:
/// false`; the template has none of its own): sshd already serves it.
pub const CLOUD_CFG: &str = "\
# Written by `mln template build` (book/src/templates.md).
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    meta-data: {dsmode: local}
    user-data: \"\"
ssh_genkeytypes: [ed25519]
ssh_deletekeys: false
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
/// share them; each guest gets its own at first boot (from its seed, or
/// made by the early unit where the seed has none).
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

    /// sshd starts after the early unit, which runs before cloud-init's
    /// local stage, and waits for nothing that waits for that stage
    /// (network.target, sysinit.target): it never accepts a connection
    /// before the host key and the project key are in place, and never
    /// waits for Python.
    #[test]
    fn sshd_starts_after_the_early_unit_and_before_cloud_init() {
        let unit = |path: &str| FILES.iter().find(|(p, _, _)| *p == path).unwrap().1.unwrap();
        let ssh = unit("/etc/systemd/system/ssh.service").split("[Service]").next().unwrap();
        assert!(ssh.contains("\nDefaultDependencies=no\n") && ssh.contains("\nWants=mln-seed-early.service\n"), "{ssh}");
        let after = ssh.lines().filter_map(|l| l.strip_prefix("After=")).collect::<Vec<_>>().join(" ");
        assert!(after.split(' ').any(|u| u == "mln-seed-early.service"), "{after}");
        for u in ["network.target", "sysinit.target", "cloud-init-local.service", "cloud-init.service", "basic.target"] {
            assert!(!after.contains(u), "sshd waits for {u}");
        }
        let early = unit("/etc/systemd/system/mln-seed-early.service");
        assert!(early.contains("\nDefaultDependencies=no\n") && early.contains("\nBefore=cloud-init-local.service ssh.service "), "{early}");
        assert!(early.contains("ExecStart=/usr/lib/mln/seed-early\n"));
        assert!(FILES.iter().any(|(p, c, m)| *p == "/usr/lib/mln/seed-early" && c.is_some() && *m == 0o755));
        // The local stage waits for sshd (no cycle: sshd waits for nothing
        // that waits for the local stage).
        let local = unit("/etc/systemd/system/cloud-init-local.service.d/90-mln.conf");
        assert!(local.contains("[Unit]\nAfter=ssh.service\n") && local.contains("\nNice=10\n"), "{local}");
        // cloud-init keeps the key sshd already serves.
        assert!(CLOUD_CFG.contains("\nssh_deletekeys: false\n"));
        // Nothing masks the local stage.
        assert!(!FILES.iter().any(|(p, _, _)| p.ends_with("/cloud-init-local.service")));
    }

    /// The early script parses as shell (dash, Debian's /bin/sh, where
    /// installed) and has no construct that would run what it reads. What
    /// it does is checked on a booted guest in tests/e2e_template.rs.
    #[test]
    fn the_early_script_is_valid_shell() {
        let out = std::process::Command::new("sh").args(["-n", "-c", SEED_EARLY]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!SEED_EARLY.contains("eval") && !SEED_EARLY.contains(". $m") && !SEED_EARLY.contains("source "));
    }

    /// The script's own functions, run by a real shell: root's keys from
    /// the seed are added to what is there (a key a user added stays, a
    /// key already there is not repeated, a last line without a newline
    /// counts), and a copy is exact.
    #[test]
    fn the_early_script_adds_keys_and_keeps_the_others() {
        let functions = &SEED_EARLY[SEED_EARLY.find("copy() {").unwrap()..SEED_EARLY.find("\nseed=\n").unwrap()];
        let d = tempfile::tempdir().unwrap();
        let (seed, auth, copied) = (d.path().join("seed"), d.path().join("auth"), d.path().join("copied"));
        std::fs::write(&seed, "ssh-ed25519 AAAALOGIN mln\nssh-ed25519 AAAACLUSTER c").unwrap();
        std::fs::write(&auth, "ssh-ed25519 AAAAUSER own\nssh-ed25519 AAAALOGIN mln\n").unwrap();
        let run = format!("{functions}\nadd_lines {0} {1}; add_lines {0} {1}; copy {0} {2}", seed.display(), auth.display(), copied.display());
        let out = std::process::Command::new("sh").args(["-c", &run]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(&auth).unwrap(), "ssh-ed25519 AAAAUSER own\nssh-ed25519 AAAALOGIN mln\nssh-ed25519 AAAACLUSTER c\n");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "ssh-ed25519 AAAALOGIN mln\nssh-ed25519 AAAACLUSTER c\n");
        // Into a file that does not exist yet.
        let fresh = d.path().join("fresh");
        let run = format!("{functions}\nadd_lines {} {}", seed.display(), fresh.display());
        assert!(std::process::Command::new("sh").args(["-c", &run]).status().unwrap().success());
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "ssh-ed25519 AAAALOGIN mln\nssh-ed25519 AAAACLUSTER c\n");
    }
}
