#!/usr/bin/env bash
# Builds the test guest into target/testguest/: the kernel of Debian's
# linux-image-cloud-amd64 and a busybox initramfs running testguest/init.
# Nothing is downloaded. Needs busybox-static, cpio and that kernel package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/testguest}
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1)
[ -n "$kernel" ] || { echo "no cloud kernel: apt-get install linux-image-cloud-amd64" >&2; exit 1; }
version=${kernel#/boot/vmlinuz-}
mods=/lib/modules/$version
mkdir -p "$out"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,etc,tmp,modules,seed}
cp /bin/busybox "$root/bin/busybox"
cp "$here/init" "$root/init"
# Helpers for a project's startup commands (mln-reach, mln-recv,
# mln-send): commands with no `$` in them, which MLN would read as a
# variable.
cp "$here"/bin/mln-* "$root/bin/"

# Modules for virtio disks and network, the FAT seed, the ACPI power
# button as an input device (for acpid) and the memory balloon (a live
# memory change), with their dependencies first (from modules.dep), loaded
# in this order by init.
want="virtio_pci virtio_blk virtio_net vfat nls_cp437 nls_iso8859-1 nls_ascii button evdev virtio_balloon"
. "$here/../scripts/kernel-modules.sh"
for m in $want; do add "$m"; done

# The filesystem-template variant's root: an ext4 image with a base /etc,
# which mln configures by writing into it (testguest/README in the book).
fs=$(mktemp -d)
mkdir -p "$fs"/etc/network "$fs"/home
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$fs/etc/passwd"
printf 'root:*:19000:0:99999:7:::\n' > "$fs/etc/shadow"
printf 'root:x:0:\n' > "$fs/etc/group"
echo template > "$fs/etc/hostname"
rm -f "$out/rootfs.ext4"
truncate -s 32M "$out/rootfs.ext4"
mke2fs -q -t ext4 -F -d "$fs" "$out/rootfs.ext4"
rm -rf "$fs"

cp "$kernel" "$out/vmlinuz"
# Under software emulation on a loaded machine the kernel's check of the
# IO-APIC timer can fail and panic the boot ("IO-APIC + timer doesn't
# work"); the timer works, so the check is skipped.
echo "console=ttyS0 quiet no_timer_check" > "$out/cmdline"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.gz"
echo "$out/vmlinuz $out/initrd.gz $out/rootfs.ext4 ($version; modules: $(tr '\n' ' ' < "$root/modules.list"))"
