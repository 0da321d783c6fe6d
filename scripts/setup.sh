#!/usr/bin/env bash
# Installs what mln needs to build and test on Debian 12, as root.
# Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential         # cc for mimalloc
  pkg-config
  python3                 # the example external plugin
  libvirt-dev             # the virt crate links to libvirt
  libvirt-daemon-system   # libvirt's QEMU driver (used embedded: no daemon is started)
  libvirt-clients         # virt-xml-validate
  libxml2-utils           # xmllint, which virt-xml-validate runs
  qemu-system-x86         # the hypervisor (software emulation where KVM does not work)
  qemu-utils              # qemu-img
  busybox-static          # the test guest
  cpio
  linux-image-cloud-amd64 # the test guest's kernel
  e2fsprogs               # debugfs and mke2fs: filesystem templates
  iproute2                # ip: the bridges of switches, test hosts in namespaces
  openssh-server          # sshd of the test service hosts (tests only)
  openssh-client          # ssh-keygen for the test hosts' keys
  util-linux              # unshare and nsenter for the test hosts
  mmdebstrap              # mln template build: Debian roots from packages
  dnsmasq-base            # bare metal: the DHCP/TFTP network-boot service mln runs
  ipmitool                # bare metal: IPMI power control
  ipxe-qemu               # bare metal tests: QEMU's network-boot ROM
  kexec-tools             # bare metal: the deploy system's kexec boot
  dropbear-bin            # bare metal: the deploy system's SSH server
  fdisk                   # bare metal: sfdisk in the deploy system
  extlinux                # bare metal: the deployed disk's bootloader (and syslinux's MBR)
  zstd                    # bare metal: image decompressors in the deploy system
  xz-utils
  python3-venv            # bare metal tests: virtualbmc's venv
  libvirt-daemon          # bare metal tests: the rig's own libvirtd (virtualbmc needs a URI)
)

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | awk '/install ok installed/ {print $4}'; }

missing=()
for p in "${packages[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Some images carry a newer qemu-utils (from backports) than Debian 12's
  # qemu-system-x86 accepts; align the QEMU packages on the system's version.
  want=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  pins=()
  for q in qemu-utils qemu-block-extra; do
    have=$(installed_version "$q")
    if [ -n "$have" ] && [ -n "$want" ] && [ "$have" != "$want" ]; then pins+=("$q=$want"); fi
  done
  apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" "${pins[@]}"
fi
# virtualbmc (IPMI in front of the bare-metal test rig's QEMU nodes), in
# a venv of its own: PyPI only, it builds libvirt-python against libvirt-dev.
vbmc_venv=/opt/mln-vbmc/venv
if [ ! -x "$vbmc_venv/bin/vbmcd" ]; then
  echo "setup: installing virtualbmc into $vbmc_venv"
  python3 -m venv "$vbmc_venv"
  "$vbmc_venv/bin/pip" install -q virtualbmc
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install the Rust toolchain (rustup)"; exit 1; }
