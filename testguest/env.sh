#!/usr/bin/env bash
# Makes the test guest (testguest/build.sh's output) into a tar
# environment: OUTDIR/rootfs.tar.gz from rootfs.ext4 (read with debugfs,
# no mount), and OUTDIR/env.toml beside it. Then: mln env add OUTDIR/env.toml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/testguest}
[ -f "$out/rootfs.ext4" ] || { echo "no $out/rootfs.ext4: run testguest/build.sh first" >&2; exit 1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
debugfs -R "rdump / $tree" "$out/rootfs.ext4" >/dev/null 2>&1
rm -rf "$tree/lost+found"
tar -C "$tree" --numeric-owner --owner=0 --group=0 -czf "$out/rootfs.tar.gz" .
cp "$here/env.toml" "$out/env.toml"
echo "$out/env.toml"
