#!/usr/bin/env bash
# Benchmark: does a trace of many small epochs keep every core busy? States per second
# with a checker that does nothing, at --jobs 1 and at the default jobs, on two traces:
#   many-epochs  250 appends, each fsynced and acknowledged (mostly one-state epochs)
#   bench        explore.sh's trace: six rounds of three files and a sync (large epochs)
# each run by this commit's brink and, side by side in the same run, by a baseline binary
# (BASELINE=path, e.g. a build of the commit before batching; skipped when unset), and
# with the checker given as a path (executed directly) and as a shell command; then the
# kernel's floor on the same states (mount_floor: mount and unmount, nothing else). Writes
# results/bench/epochs.md, each run's summary.json in results/bench/epochs/.
#
#   BASELINE=/path/to/old/brink BASELINE_NOTE="what it is" bench/epochs.sh   (as root)
#   FLOOR_STATES=300: states per trace in the floor
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_setup epochs

TMPDIR=$WORK "$B" record --no-syscalls --fs ext4 --mount-opts data=ordered --size 64M -o "$WORK/many-epochs" -- \
  sh -c 'for i in $(seq 250); do echo "record $i" >> log; sync log; echo "append $i" > "$BRINK_MARK"; done' 2>/dev/null
TMPDIR=$WORK "$B" record --no-syscalls --fs ext4 --mount-opts data=ordered --size 64M -o "$WORK/bench" -- \
  sh -c 'for r in 1 2 3 4 5 6; do for i in 1 2 3; do printf "r$r f$i" > f$r$i; done; sync -f .; echo "round $r" > "$BRINK_MARK"; done' 2>/dev/null

run() { # binary-label binary trace jobs checker-label checker -> prints states/s
  local name="$1-$3-jobs$4-$5"
  rm -rf "$WORK/res"
  "$2" explore "$WORK/$3" --checker "$6" --jobs "$4" -o "$WORK/res" --json > "$RAW/$name.json"
  cp "$WORK/res/states.jsonl" "$WORK/$3.states.jsonl"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f %d" % (d["states_per_s"], d["states_checked"]))' "$RAW/$name.json"
}
JOBS=$(( $(nproc) * 2 ))
declare -A R N
bins=(brink)
[ -n "${BASELINE:-}" ] && bins+=(baseline)
for bin in "${bins[@]}"; do
  path=$B; [ "$bin" = baseline ] && path=$BASELINE
  for trace in many-epochs bench; do
    for j in 1 "$JOBS"; do
      for ck in path shell; do
        c=/bin/true; [ "$ck" = shell ] && c=true
        read -r R[$bin,$trace,$j,$ck] N[$trace] < <(run "$bin" "$path" "$trace" "$j" "$ck" "$c")
      done
    done
  done
done
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

# The kernel's floor: FLOOR_STATES checked states of each trace spread evenly over it (a
# state's journal replay grows along the trace), each image in
# memory under a loop device of its own, mounted and unmounted by mount_floor with
# nothing else done (crates/brink-blockdev/examples/mount_floor.rs).
FLOOR_STATES=${FLOOR_STATES:-300}
cargo build --release -q -p brink-blockdev --example mount_floor
declare -A F
for trace in many-epochs bench; do
  mkdir -p "$WORK/floor-$trace"
  imgs=()
  while read -r id; do
    "$B" replay "$WORK/$trace" "$id" -o "$WORK/floor-$trace/$id" --no-mount > /dev/null
    imgs+=("$WORK/floor-$trace/$id/state.img")
  done < <(python3 -c '
import json,sys
ids=[r["id"] for r in map(json.loads, open(sys.argv[1])) if r["dup_of"] is None]
n=min(int(sys.argv[2]), len(ids))
print("\n".join(ids[i * len(ids) // n] for i in range(n)))' "$WORK/$trace.states.jsonl" "$FLOOR_STATES")
  for j in 1 "$JOBS"; do
    read -r F[$trace,$j] F[$trace,n] < <(target/release/examples/mount_floor ext4 data=ordered "$j" "${imgs[@]}")
    echo "${F[$trace,$j]} ${F[$trace,n]}" > "$RAW/floor-$trace-jobs$j.txt"
  done
  rm -rf "$WORK/floor-$trace"
done

{
  echo "# Explore speed across epochs: many small epochs against a few large ones"
  echo
  echo "By \`bench/epochs.sh\`; each run's summary in \`$RAW/\`."
  sh results/provenance.sh
  echo "Traces (ext4 data=ordered, 64 MiB): **many-epochs**, 250 appends each fsynced and"
  echo "acknowledged (${N[many-epochs]} states checked); **bench**, six rounds of three small files and a"
  echo "\`sync\` (${N[bench]} states checked). Checker: \`/bin/true\` (a path: executed directly) or"
  echo "\`true\` (a shell command: \`sh -c true\`). Default jobs: $JOBS (twice the cores)."
  echo
  echo "| brink | trace | checker | states/s, 1 job | states/s, $JOBS jobs | $JOBS jobs / 1 job |"
  echo "|---|---|---|---:|---:|---:|"
  for bin in "${bins[@]}"; do
    for trace in many-epochs bench; do
      for ck in path shell; do
        a=${R[$bin,$trace,1,$ck]}; b=${R[$bin,$trace,$JOBS,$ck]}
        echo "| $bin | $trace | $ck | $a | $b | $(ratio "$b" "$a") |"
      done
    done
  done
  echo
  echo "many-epochs / bench at $JOBS jobs, checker as a path: $(ratio "${R[brink,many-epochs,$JOBS,path]}" "${R[brink,bench,$JOBS,path]}")."
  echo
  echo "## The kernel's floor"
  echo
  echo "The same traces' checked states, ${F[bench,n]} of each spread evenly over the trace (a state's journal"
  echo "replay grows along it), each image in memory under a loop"
  echo "device of its own, mounted (journal replay included) and unmounted by"
  echo "\`mount_floor\` (crates/brink-blockdev/examples/mount_floor.rs) with nothing else done: no"
  echo "checker, no tree hash, no state to build. What no explorer that lets the kernel recover"
  echo "each state can beat on this machine."
  echo
  echo "| trace | floor states/s, 1 job | floor states/s, $JOBS jobs | $JOBS jobs / 1 job | brink / floor at $JOBS jobs (path) |"
  echo "|---|---:|---:|---:|---:|"
  for trace in many-epochs bench; do
    a=${F[$trace,1]}; b=${F[$trace,$JOBS]}
    echo "| $trace | $a | $b | $(ratio "$b" "$a") | $(ratio "${R[brink,$trace,$JOBS,path]}" "$b") |"
  done
  echo
  echo "many-epochs / bench at the floor, $JOBS jobs: $(ratio "${F[many-epochs,$JOBS]}" "${F[bench,$JOBS]}")."
  if [ -n "${BASELINE:-}" ]; then
    echo "This commit / baseline on many-epochs at $JOBS jobs, checker as a path: $(ratio "${R[brink,many-epochs,$JOBS,path]}" "${R[baseline,many-epochs,$JOBS,path]}");"
    echo "the baseline: ${BASELINE_NOTE:-$BASELINE}."
  fi
} > "$OUT"
cat "$OUT"
