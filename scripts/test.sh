#!/usr/bin/env bash
# Quick start, step two: the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Every test, the slow end-to-end ones (marked #[ignore]: they boot QEMU
# guests) included. Benches are compiled and run in test mode, which exits
# at once: timings are never asserted.
cargo test --all-targets -- --include-ignored
# Formatting of the examples is a test too (tests/cli.rs), and so is the
# release build the quick start uses.
cargo build --release --quiet
# kinds.mln boots a Xen kernel from /boot.
target/release/mln --allow-path /boot check examples/*.mln
# The book must build: it includes the grammar and is the reference.
command -v mdbook >/dev/null || cargo install mdbook --locked --version 0.5.4 --quiet
mdbook build book
