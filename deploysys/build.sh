#!/usr/bin/env bash
# Builds mln's deploy system into OUT (default target/deploysys): the
# host's cloud kernel (as the test guest uses) and an initramfs with
# busybox, dropbear, sfdisk, mke2fs, GNU tar, gzip/xz/zstd, kexec, openssl
# (the image chain's SHA-256 when it runs its script), mln-hop (its
# one-process hop, $MLN_HOP) and
# extlinux (with syslinux's MBR code: the deployed disk's bootloader),
# each binary with the libraries ldd names. No secrets are in it: mln
# appends a second archive with the SSH host key and authorized key
# (src/baremetal/deploysys.rs). Nothing is downloaded.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/deploysys}
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1)
[ -n "$kernel" ] || { echo "no cloud kernel: apt-get install linux-image-cloud-amd64" >&2; exit 1; }
version=${kernel#/boot/vmlinuz-}
mods=/lib/modules/$version
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,etc/dropbear,tmp,mnt,root/.ssh,modules,lib64,usr/share/udhcpc}
cp /bin/busybox "$root/bin/busybox"

. "$here/../scripts/copy-binary.sh"
for t in dropbear sfdisk mke2fs tar gzip xz zstd kexec extlinux openssl; do copy_binary "$root" "$t"; done
[ -f /usr/lib/EXTLINUX/mbr.bin ] || { echo "missing /usr/lib/EXTLINUX/mbr.bin (scripts/setup.sh: extlinux)" >&2; exit 1; }
mkdir -p "$root/usr/lib/EXTLINUX"
cp /usr/lib/EXTLINUX/mbr.bin "$root/usr/lib/EXTLINUX/mbr.bin"
# GPT disks: syslinux's boot code for a protective MBR.
cp /usr/lib/EXTLINUX/gptmbr.bin "$root/usr/lib/EXTLINUX/gptmbr.bin"
ln -sf "$(command -v mke2fs)" "$root/sbin/mkfs.ext4"
# The image chain's hop (src/baremetal/hop.rs), one process per node
# instead of the busybox pipeline: MLN_HOP names it (mln passes the one
# beside itself); else one on the PATH, else the newest this source tree
# built (run by hand or by a test); without it the chain runs its
# busybox script.
if [ -z "${MLN_HOP:-}" ]; then
    MLN_HOP=$(command -v mln-hop || ls -t "${CARGO_TARGET_DIR:-$here/../target}"/{release,debug}/mln-hop 2>/dev/null | head -n1 || true)
fi
if [ -n "${MLN_HOP:-}" ] && [ -x "$MLN_HOP" ]; then
    echo "mln-hop: $MLN_HOP" >&2
    cp -L "$MLN_HOP" "$root/bin/mln-hop"
    strip "$root/bin/mln-hop" 2>/dev/null || true
    for lib in $(ldd "$MLN_HOP" 2>/dev/null | grep -o '/[^ ]*'); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
else
    echo "no mln-hop: the image chain will run its busybox script" >&2
fi

# Modules: virtio disk and network, ext4 (for writing the configuration
# into a deployed root), with their dependencies first (modules.dep).
want="virtio_pci virtio_blk virtio_net af_packet ext4"
. "$here/../scripts/kernel-modules.sh"
for m in $want; do add "$m"; done

printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root::19000:0:99999:7:::\n' > "$root/etc/shadow"
printf 'root:x:0:\n' > "$root/etc/group"
printf '/bin/sh\n' > "$root/etc/shells"
cp "$here/init" "$root/init"
cp "$here/udhcpc.script" "$root/usr/share/udhcpc/default.script"
chmod 755 "$root/init" "$root/usr/share/udhcpc/default.script"
chmod 700 "$root/root" "$root/root/.ssh"
mkdir -p "$out"
cp "$kernel" "$out/vmlinuz"
echo "console=ttyS0 quiet no_timer_check" > "$out/cmdline"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -6) > "$out/initrd.gz"
echo "$out/vmlinuz $out/initrd.gz ($version; $(du -h "$out/initrd.gz" | cut -f1))"
