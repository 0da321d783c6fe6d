#!/usr/bin/env bash
# Quick start, step one: install what is missing, build mln and the test
# guest, plan the paper's 36-node cluster, then bring examples/quickstart.mln
# up on this machine (QEMU through libvirt's embedded driver: no daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
mln=target/release/mln
state=${MLN_STATE_DIR:-/var/lib/mln}

echo "== mln, its shell completions and its man page installed"
install -m 755 "$mln" /usr/local/bin/mln
# The VM commands: `mln` hands them to this binary beside it.
install -m 755 target/release/mln-libvirt /usr/local/bin/mln-libvirt
# The image chain's hop, which bare-metal deploy systems carry.
install -m 755 target/release/mln-hop /usr/local/bin/mln-hop
mkdir -p /usr/share/bash-completion/completions /usr/share/zsh/vendor-completions \
  /usr/share/fish/vendor_completions.d /usr/local/share/man/man1
$mln completions bash > /usr/share/bash-completion/completions/mln
$mln completions zsh > /usr/share/zsh/vendor-completions/_mln
$mln completions fish > /usr/share/fish/vendor_completions.d/mln.fish
$mln completions man > /usr/local/share/man/man1/mln.1

echo "== mln plan examples/mpi_cluster.mln (the paper's Figure 3)"
$mln plan examples/mpi_cluster.mln | head -6
echo "   ..."

echo "== the test guest becomes the template mln-testguest"
testguest/build.sh "$state/templates/mln-testguest" >/dev/null

echo "== mln build -r -f examples/quickstart.mln"
$mln --state-dir "$state" build -r -f examples/quickstart.mln
echo "== mln start -p quickstart"
$mln --state-dir "$state" start -p quickstart
# Wait until both guests have applied their configuration.
for host in alpha beta; do
  for _ in $(seq 120); do
    grep -q MLN-APPLIED "$state/projects/quickstart/$host/console.log" 2>/dev/null && break
    sleep 1
  done
done
echo "== mln status -p quickstart"
$mln --state-dir "$state" status -p quickstart
echo "== what alpha reports on its console"
grep -a MLN-APPLIED "$state/projects/quickstart/alpha/console.log"
cat <<TXT

A guest's console:     $mln console -p quickstart -h alpha
Save and restore:      $mln stop -p quickstart -S; $mln start -p quickstart
Remove the project:    $mln remove -p quickstart
TXT
