#!/usr/bin/env bash
# The suite's recordings checked against the shipped models: for each workload mode
# recorded by a suite run (SUITE=DIR, its -o), `brink check-model` under `posix` and the
# model of the mode's own file system. Writes results/check-models.md; each run's JSON
# in results/check-models/.
#
#   SUITE=/path/to/suite/run results/check-models.sh [WORKLOAD…]   (as root)   MAX_STATES=2000
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=results/check-models.md
RAW=results/check-models
MAX_STATES=${MAX_STATES:-2000}
only=("$@")
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 2; }
[ -d "${SUITE:-}" ] || { echo "SUITE=DIR: a brink suite run's output folder" >&2; exit 2; }
cargo build --release -q -p brink-cli
B=$PWD/target/release/brink
WORK=$(mktemp -d /tmp/brink-check-models-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$RAW" && mkdir -p "$RAW"

model_of() { # fs mount_opts -> the APM of that file system
  case "$1:$2" in
    ext4:*data=writeback*) echo ext4-writeback ;;
    ext4:*data=journal*) echo ext4-journal ;;
    ext4:*) echo ext4-ordered ;;
    xfs:*) echo xfs ;;
    btrfs:*) echo btrfs ;;
  esac
}

rows=()
for trace in "$SUITE"/*/*/trace; do
  mode_dir=$(dirname "$trace")
  mode=$(basename "$mode_dir")
  workload=$(basename "$(dirname "$mode_dir")")
  if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$workload"; then continue; fi
  read -r fs opts < <("$B" show --json "$trace" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["fs"], d["mount_opts"] or "-")')
  # Traces with injected faults or torn-write modes are explored differently; the
  # models describe power cuts on a well-behaved disk.
  for apm in $(model_of "$fs" "$opts") posix; do
    name="$workload-$mode-$apm"
    code=0
    timeout 900 "$B" check-model "$trace" --apm "$apm" --max-states "$MAX_STATES" -o "$WORK/$name" --json \
      > "$RAW/$name.json" 2> "$WORK/$name.err" || code=$?
    rows+=("$(python3 - "$RAW/$name.json" "$WORK/$name.err" "$workload" "$mode" "$apm" "$code" <<'EOF'
import json, sys
out, err, workload, mode, apm, code = sys.argv[1:]
try:
    j = json.load(open(out))
    a = len(j["unexplained"])
    pess = 100.0 * j["model_only"] / max(j["model_states"], 1)
    g = j.get("explained_with_garbage", 0)
    print(f"| {workload} | {mode} | {apm} | {j['kernel_states']} | {j['model_states']} | {a} | {g} | {pess:.0f}% |")
except (OSError, ValueError, KeyError):
    why = (open(err).read().strip().splitlines() or ["?"])[-1].replace("|", "/")
    print(f"| {workload} | {mode} | {apm} | | | not run: {why[:140]} | | |")
EOF
)")
  done
done

{
  echo "# The suite's recordings against the shipped models"
  echo
  echo "By \`results/check-models.sh\` over the recordings of a \`brink suite\` run; each"
  echo "\`brink check-model\` output in \`$RAW/\`."
  sh results/provenance.sh
  echo "Per mode: posix and the model of the mode's own file system; both spaces explored"
  echo "whole up to $MAX_STATES states (the block level: every state of the write-back model,"
  echo "recovered by the kernel). Kernel states: distinct (content, acknowledgements) the"
  echo "kernel recovered; model states: those the model allows; (a): recovered states the"
  echo "model cannot produce (the model is wrong: each is listed in the JSON with the"
  echo "closest state the model allows); pessimism: the model's states the kernel never"
  echo "produced in this recording. Garbage: recovered states explained only where the"
  echo "model's state holds garbage (any bytes; compared per 4 KiB block, files up to 1 MiB)."
  echo
  echo "| workload | mode | model | kernel states | model states | (a) unexplained | garbage | pessimism |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
cat "$OUT"
