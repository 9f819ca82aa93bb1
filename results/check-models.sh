#!/usr/bin/env bash
# The suite's recordings checked against the shipped models: for each workload mode
# recorded by a suite run (SUITE=DIR, its -o), `brink check-model` under `posix` and the
# model of the mode's own file system. Writes results/check-models.md; each run's JSON
# in results/check-models/.
#
#   SUITE=/path/to/suite/run results/check-models.sh [WORKLOAD…]   (as root)
#   MAX_STATES=2000000 (a model's space) MAX_KERNEL_STATES=5000 (recovered, else sampled)
#   BRINK=path (a built brink; default: build the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=results/check-models.md
RAW=results/check-models
MAX_STATES=${MAX_STATES:-2000000}
MAX_KERNEL_STATES=${MAX_KERNEL_STATES:-5000}
only=("$@")
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 2; }
[ -d "${SUITE:-}" ] || { echo "SUITE=DIR: a brink suite run's output folder" >&2; exit 2; }
if [ -z "${BRINK:-}" ]; then
  cargo build --release -q -p brink-cli
  BRINK=$PWD/target/release/brink
fi
B=$BRINK
WORK=$(mktemp -d /tmp/brink-check-models-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# A run of some workloads replaces their rows only; a whole run starts afresh.
if [ ${#only[@]} -eq 0 ]; then rm -rf "$RAW"; fi
mkdir -p "$RAW"
for w in "${only[@]}"; do rm -f "$RAW/$w"-*.json "$RAW/$w"-*.err "$RAW/$w"-*.row; done

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
  # The kernel's side is explored once, by the first model's run, and read by the second.
  first=
  for apm in $(model_of "$fs" "$opts") posix; do
    name="$workload-$mode-$apm"
    code=0
    if [ -z "$first" ]; then
      first=$name
      where=(-o "$WORK/$name")
    else
      where=(--results "$WORK/$first/block")
    fi
    timeout 1800 "$B" check-model "$trace" --apm "$apm" --max-states "$MAX_STATES" --max-kernel-states "$MAX_KERNEL_STATES" "${where[@]}" --json \
      > "$RAW/$name.json" 2> "$WORK/$name.err" || code=$?
    [ "$code" -eq 0 ] || [ "$code" -eq 1 ] || cp "$WORK/$name.err" "$RAW/$name.err"
    echo "$workload $mode $apm" > "$RAW/$name.row"
  done
done

rows=()
for row in "$RAW"/*.row; do
  name=${row%.row}
  read -r workload mode apm < "$row"
  rows+=("$(python3 - "$name.json" "$name.err" "$workload" "$mode" "$apm" "$MAX_STATES" <<'EOF'
import json, sys
out, err, workload, mode, apm, most = sys.argv[1:]
try:
    j = json.load(open(out))
    a = len(j["unexplained"])
    g = j.get("explained_with_garbage", 0)
    ks, wit = j["kernel_sampled"], j["witnesses_from"]
    if wit:
        ms = j.get("model_sample")
        pess = (f'~{100.0 * ms["never_recovered"] / max(ms["distinct"], 1):.0f}% (of a sample: {ms["distinct"]} contents)'
                if ms else "n/a (sampled)" if ks else "n/a (not listed)")
        space = f"over {int(most):,}: witnesses from " + "; ".join(wit)
        a = f"0 (+{len(j['undecided'])} undecided)" if j["undecided"] else "0"
    else:
        pess = "n/a (sampled)" if ks else f'{100.0 * j["model_only"] / max(j["model_states"], 1):.0f}%'
        space = f'{j["model_space"]:,}'
    kernel = f'{j["kernel_states"]} (of a sample of {ks["samples"]})' if ks else str(j["kernel_states"])
    print(f"| {workload} | {mode} | {apm} | {kernel} | {j['model_states']} | {space} | {a} | {g} | {pess} |")
except (OSError, ValueError, KeyError):
    try:
        why = (open(err).read().strip().splitlines() or ["?"])[-1].replace("|", "/")
    except OSError:
        why = "?"
    print(f"| {workload} | {mode} | {apm} | | | | not run: {why[:160]} | | |")
EOF
)")
done

{
  echo "# The suite's recordings against the shipped models"
  echo
  echo "By \`results/check-models.sh\` over the recordings of a \`brink suite\` run; each"
  echo "\`brink check-model\` output in \`$RAW/\`."
  sh results/provenance.sh
  echo "Per mode: posix and the model of the mode's own file system. The model's space is"
  echo "listed whole in process up to $MAX_STATES states (model space: all its states; model"
  echo "states: distinct (content, acknowledgements) among them). The block level: every"
  echo "state of the write-back model recovered by the kernel, up to MAX_KERNEL_STATES ($MAX_KERNEL_STATES;"
  echo "a sampled row gives its size); past it a stratified sample of that many (every crash point gets its share) and"
  echo "no pessimism figure. Kernel states: distinct (content, acknowledgements) the"
  echo "kernel recovered; (a): recovered states the"
  echo "model cannot produce (the model is wrong: each is listed in the JSON with the"
  echo "closest state the model allows); pessimism: the model's states the kernel never"
  echo "produced in this recording. Garbage: recovered states explained only where the"
  echo "model's state holds garbage (any bytes; compared per 4 KiB block, files up to 64 MiB)."
  echo "A space over the bound is not listed: witnesses (states of the model with a recovered"
  echo "state's content) are looked for where the row says, last by a search of the model's"
  echo "states per recovered state (\`Lister::find\`); undecided: no witness found, which"
  echo "is not counted against the model. Its pessimism is then estimated from a seeded sample"
  echo "of 1,000 of its states (distinct contents never recovered), when the kernel's side was whole."
  echo
  echo "sqlite-eio wal-retry's undecided states are ones no model allows: after the injected write"
  echo "error, ext4 left the WAL's retried frames as an unwritten extent (zeros) although their"
  echo "fdatasync succeeded and later transactions were acknowledged (workloads/sqlite-eio/README.md)."
  echo
  echo "| workload | mode | model | kernel states | model states | model space | (a) unexplained | garbage | pessimism |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
cat "$OUT"
