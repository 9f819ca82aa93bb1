#!/usr/bin/env bash
# Benchmark: one exploration split into 1, 2 and 4 shards (`explore --shard I/N`), the
# shards run one after another on this machine as stand-ins for N machines, then merged
# and compared with the one-machine run (cluster/compare.py). Prints per N the states
# and wall time of each shard, the slowest shard (the makespan N machines would see),
# the speedup over one machine and the balance; then a worked estimate for 10^8 states
# on a cluster. Writes results/bench/shards.md, the summaries in results/bench/shards/.
#
#   bench/shards.sh   (as root)     WORKLOAD=append-log-fixed (an append-log workload)
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${WORKLOAD:-append-log-fixed}
. bench/lib.sh
bench_setup shards
CHECK=$PWD/checkers/append-log/check.sh

TMPDIR=$WORK "$B" record --no-syscalls --fs ext4 --mount-opts data=ordered --size 64M -o "$WORK/trace" -- \
  sh "$PWD/workloads/$WORKLOAD/workload.sh" "$PWD/checkers/append-log/record.sh" 2>/dev/null
# Torn writes (a prefix of each write's sectors), omit-one: about 500 states over 25
# crash points, enough for the points to be dealt evenly.
flags=(--checker "$CHECK" --checker fsck --jobs 2 --no-tree-dedup --torn prefix --strategy omit-one)
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

"$B" explore "$WORK/trace" "${flags[@]}" -o "$WORK/one" --json > "$RAW/one.json" || [ $? -eq 1 ]
ONE_WALL=$(field "$RAW/one.json" wall_s)
ONE_STATES=$(field "$RAW/one.json" states_checked)
ONE_RATE=$(field "$RAW/one.json" states_per_s)

declare -A MAXW SUMW SHARDS SAME
for n in 1 2 4; do
  walls=()
  states=()
  dirs=()
  for ((i = 0; i < n; i++)); do
    d=$WORK/s$n-$i
    "$B" explore "$WORK/trace" "${flags[@]}" --shard "$i/$n" -o "$d" --json > "$RAW/shard-$i-of-$n.json" || [ $? -eq 1 ]
    walls+=("$(field "$RAW/shard-$i-of-$n.json" wall_s)")
    states+=("$(field "$RAW/shard-$i-of-$n.json" states_generated)")
    dirs+=("$d")
  done
  "$B" merge "${dirs[@]}" -o "$WORK/m$n" --json > "$RAW/merged-$n.json" || [ $? -eq 1 ]
  SAME[$n]=$(BRINK=$B python3 cluster/compare.py "$WORK/m$n" "$WORK/one" | head -1)
  MAXW[$n]=$(printf '%s\n' "${walls[@]}" | sort -g | tail -1)
  SUMW[$n]=$(printf '%s\n' "${walls[@]}" | paste -sd+ | bc)
  SHARDS[$n]="$(printf '%s ' "${states[@]}") / $(printf '%.1f ' "${walls[@]}")"
done
r() { python3 -c "print(f'{$1:.${2:-2}f}')"; }

{
  echo "# One exploration on 1, 2 and 4 shards"
  echo
  echo "By \`bench/shards.sh\`; each run's summary in \`$RAW/\`."
  sh results/provenance.sh
  echo "Trace: \`workloads/$WORKLOAD\` recorded on ext4 data=ordered; checkers"
  echo "\`checkers/append-log/check.sh\` and \`fsck\`; \`--torn prefix --strategy omit-one\`; every"
  echo "run \`--jobs 2\` (one 2-core machine per shard) and \`--no-tree-dedup\` (each shard"
  echo "would dedup only its own states)."
  echo "The shards ran one after another here, standing in for N machines: the makespan"
  echo "is the slowest shard's wall time."
  echo
  echo "One machine: $ONE_STATES states checked in $(r "$ONE_WALL" 1) s ($(r "$ONE_RATE" 0) states/s)."
  echo
  echo "| shards | states per shard / seconds per shard | makespan s | speedup | balance (mean/max) | merge = one machine |"
  echo "|---:|---|---:|---:|---:|---|"
  for n in 1 2 4; do
    echo "| $n | ${SHARDS[$n]} | $(r "${MAXW[$n]}" 1) | $(r "$ONE_WALL/${MAXW[$n]}") | $(r "${SUMW[$n]}/$n/${MAXW[$n]}") | ${SAME[$n]} |"
  done
  echo
  echo "## 10^8 states on a cluster, worked"
  echo
  per_core=$(r "$ONE_RATE/2" 1)
  echo "Measured here: $(r "$ONE_RATE" 0) states/s on 2 cores with this cheap checker, so"
  echo "about $per_core states/s per core (brink runs twice as many jobs as cores)."
  echo "A server database's checker costs far more: PostgreSQL's start, recovery and"
  echo "queries take about 0.2 s a state here (\`workloads/postgresql\`), about 5 states/s"
  echo "per core (\`results/suite.md\`). Shards need no communication until the merge, so"
  echo "the time is states / (per-core rate × cores), plus the merge (it reads every shard's"
  echo "\`states.jsonl\`: minutes for 10^8 lines) and the largest crash point, which one shard"
  echo "holds whole."
  echo
  echo "| checker | per-core states/s | 100 cores | 1,000 cores |"
  echo "|---|---:|---:|---:|"
  for rate in "$per_core" 5; do
    name="cheap (this table's)"; [ "$rate" = 5 ] && name="PostgreSQL (0.2 s a state)"
    h100=$(r "1e8/($rate*100)/3600" 1); h1000=$(r "1e8/($rate*1000)/3600" 1)
    echo "| $name | $rate | $h100 h | $h1000 h |"
  done
} > "$OUT"
cat "$OUT"
