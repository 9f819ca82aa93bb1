#!/usr/bin/env bash
# Installs what brink and its tests need on Debian 12 (as root, no sudo), builds brink and
# runs its demo. The packages are listed once, in packages.txt.
#   ./setup.sh            install, build, run the demo
#   ./setup.sh --no-demo  install only (what .ci/run uses)
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "setup: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root: brink mounts file systems and attaches loop devices"
command -v cargo >/dev/null || die "no cargo on PATH: install a Rust toolchain (1.85 or newer, e.g. by rustup) first"

packages=$(sed -e 's/#.*//' packages.txt | tr -s ' \n' ' ')
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $packages >/dev/null
modprobe fuse 2>/dev/null || true
modprobe loop 2>/dev/null || true
[ -e /dev/fuse ] || die "/dev/fuse is missing: load the fuse module (modprobe fuse)"

if [ "${1:-}" != "--no-demo" ]; then
  cargo run --release --locked -q -p brink-cli -- demo
fi
