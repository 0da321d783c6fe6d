#!/usr/bin/env bash
# Makes the test guest (testguest/build.sh's output) into a tar
# environment: OUTDIR/rootfs.tar.gz from rootfs.ext4 (read with debugfs,
# no mount), and OUTDIR/env.toml beside it. Then: mln env add OUTDIR/env.toml
#
# The root also gets an SSH server, so that `mln stop` of a deployed node
# can be a clean power-off (soft) rather than a power cut: dropbear,
# busybox and their libraries, and /usr/lib/mln/sshd, which a project's
# startup commands run (`sh /fsroot/usr/lib/mln/sshd`): the test guest
# runs from its initramfs with this root mounted read-only at /fsroot, so
# the script starts dropbear chrooted into it (tmpfs /tmp; the node's
# host key, made at deployment by the post-install script hostkey.sh,
# or else one made at boot). Logins: keys only (root's authorized_keys, which
# mln writes into the deployed root). kexec-tools too, for mln's `kexec`
# deploy system, and mkfs.ext4, sfdisk, extlinux and syslinux's boot code
# for the `nomini` one. `poweroff` there is busybox's: it
# signals PID 1, the test guest's init, which says so on the console
# and powers off.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/testguest}
[ -f "$out/rootfs.ext4" ] || { echo "no $out/rootfs.ext4: run testguest/build.sh first" >&2; exit 1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
debugfs -R "rdump / $tree" "$out/rootfs.ext4" >/dev/null 2>&1
rm -rf "$tree/lost+found"

. "$here/../scripts/copy-binary.sh"
copy_binary "$tree" dropbear
copy_binary "$tree" dropbearkey
# kexec: a later deployment boots the deploy system from this running
# system without the firmware (the `kexec` deploy-system variant).
copy_binary "$tree" kexec
# The tools of mln's `nomini` deploy system (the running system writes
# a new deployment onto a partition it does not use): mkfs.ext4, and
# the disk's bootloader (extlinux, sfdisk, syslinux's boot code). The
# rest (nc, tar, gzip, sha256sum, mkfifo) are busybox's.
copy_binary "$tree" mkfs.ext4
copy_binary "$tree" sfdisk
copy_binary "$tree" extlinux
mkdir -p "$tree/usr/lib/EXTLINUX"
cp /usr/lib/EXTLINUX/mbr.bin /usr/lib/EXTLINUX/gptmbr.bin "$tree/usr/lib/EXTLINUX/"
# libgcc_s beside libc, as every distribution has it: mln's `mln-hop`,
# which a `nomini` install pushes into the running system, needs both.
gcc_s=$(/sbin/ldconfig -p | awk '$1 == "libgcc_s.so.1" && /x86-64/ && !p { p = $NF } END { print p }')
[ -n "$gcc_s" ] && { mkdir -p "$tree$(dirname "$gcc_s")"; cp -L "$gcc_s" "$tree$gcc_s"; }
# /mnt: where an install mounts the new root (the running root is
# read-only: it cannot be made then).
mkdir -p "$tree"/{bin,tmp,proc,sys,dev,root,mnt,usr/lib/mln}
chmod 700 "$tree/root"
cp /bin/busybox "$tree/bin/busybox"
ln -sf busybox "$tree/bin/sh"
cat > "$tree/usr/lib/mln/sshd" <<'SH'
#!/bin/sh
# Run by the test guest's init (startup commands), this root at /fsroot.
r=/fsroot
mount -t tmpfs tmpfs "$r/tmp"
mount -t proc proc "$r/proc"
mount -t sysfs sys "$r/sys"
mount -t devtmpfs dev "$r/dev"
mkdir -p "$r/dev/pts" && mount -t devpts devpts "$r/dev/pts"
key=/etc/dropbear/dropbear_ed25519_host_key
if [ ! -s "$r$key" ]; then
    key=/tmp/host_key
    chroot "$r" /usr/bin/dropbearkey -t ed25519 -f "$key" >/dev/null 2>&1
fi
if chroot "$r" /usr/sbin/dropbear -s -r "$key" -p 22 -P /tmp/dropbear.pid; then
    echo "mln-testguest: sshd started"
else
    echo "mln-testguest: sshd failed"
fi
SH
chmod 755 "$tree/usr/lib/mln/sshd"
tar -C "$tree" --numeric-owner --owner=0 --group=0 -czf "$out/rootfs.tar.gz" .
cp "$here/env.toml" "$out/env.toml"
# Post-install (run in the deploy system, the deployed root at
# $MLN_ROOT): the node's own SSH host key, kept across its boots.
cat > "$out/hostkey.sh" <<'SH'
set -e
mkdir -p "$MLN_ROOT/etc/dropbear"
rm -f "$MLN_ROOT/etc/dropbear/dropbear_ed25519_host_key"
chroot "$MLN_ROOT" /usr/bin/dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key >/dev/null 2>&1
SH
echo "$out/env.toml"
