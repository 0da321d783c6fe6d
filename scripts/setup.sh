#!/usr/bin/env bash
# Installs what mln needs to build and test on Debian 12, as root.
# Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential   # cc for mimalloc
  pkg-config
  python3           # the example external plugin
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install the Rust toolchain (rustup)"; exit 1; }
