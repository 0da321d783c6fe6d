#!/usr/bin/env bash
# Quick start, step one: install what is missing, build mln, and plan the
# paper's 36-node cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
mln=target/release/mln
echo "== mln check examples/mpi_cluster.mln (silence means no problem)"
$mln check examples/mpi_cluster.mln
echo "== mln plan examples/mpi_cluster.mln"
$mln plan examples/mpi_cluster.mln
echo "== mln explain examples/mpi_cluster.mln node07 network.eth0.gateway"
$mln explain examples/mpi_cluster.mln node07 network.eth0.gateway
echo
echo "Next: $mln plan --json examples/mpi_cluster.mln, $mln check tests/diagnostics/bad_values.mln"
