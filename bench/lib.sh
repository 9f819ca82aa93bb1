# shellcheck shell=bash disable=SC2034  # OUT, RAW, B, WORK are for the sourcing script
# What every benchmark script starts with (sourced, from the repository's root):
# `bench_setup NAME` checks for root, builds the release binary into $B, makes a scratch
# folder $WORK (removed on exit; mode 755, so checkers that drop privileges reach the
# states) and an empty raw-data folder RAW=results/bench/NAME, with OUT its table.
bench_setup() {
  [ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 2; }
  OUT=results/bench/$1.md
  RAW=results/bench/$1
  cargo build --release -q -p brink-cli
  B=$PWD/target/release/brink
  WORK=$(mktemp -d "/tmp/brink-bench-$1-XXXXXX")
  chmod 755 "$WORK"
  trap 'rm -rf "$WORK"' EXIT
  rm -rf "$RAW" && mkdir -p "$RAW"
}
