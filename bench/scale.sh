#!/usr/bin/env bash
# Benchmark: does the cost of a state grow with the trace? Traces of about 10, 100,
# 1,000 and 10,000 writes (files written and fsynced in a loop), each explored on a
# sample of the same size with a checker that does nothing; prints the worker time per
# state and brink's own part of it (hashing and overlays) per trace size, and beside it
# the kernel's own floor: FLOOR_STATES of the same states, each materialized on tmpfs and
# mounted from a plain loop device (no FUSE, no brink), timed around mount(8). Writes
# results/bench/scale.md, each run's summary in results/bench/scale/.
#
#   bench/scale.sh   (as root)   SAMPLES=200 FLOOR_STATES=20
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-200}
FLOOR_STATES=${FLOOR_STATES:-20}
. bench/lib.sh
bench_setup scale
SHM=$(mktemp -d /dev/shm/brink-bench-scale-XXXXXX)
mkdir -p "$WORK/mnt"
DEV=
cleanup_floor() {
  mountpoint -q "$WORK/mnt" && umount "$WORK/mnt"
  [ -n "$DEV" ] && losetup -d "$DEV" 2>/dev/null
  rm -rf "$SHM" "$WORK"
}
trap cleanup_floor EXIT

# floor TRACE RESULTS -> mean ms of mount(8) of FLOOR_STATES checked states, each
# materialized on tmpfs and mounted from a plain loop device (the kernel alone).
floor() {
  local ids total=0 n=0 t0 t1
  mapfile -t ids < <(python3 -c '
import json, sys
ids = [json.loads(l)["id"] for l in open(sys.argv[1]) if json.loads(l).get("dup_of") is None]
step = max(len(ids) // int(sys.argv[2]), 1)
print("\n".join(ids[::step][: int(sys.argv[2])]))' "$2/states.jsonl" "$FLOOR_STATES")
  for id in "${ids[@]}"; do
    rm -rf "$SHM/st"
    "$B" replay "$1" "$id" --no-mount -o "$SHM/st" >/dev/null
    DEV=$(losetup --find --show "$SHM/st/state.img")
    t0=$(date +%s%N)
    mount -t ext4 -o data=ordered "$DEV" "$WORK/mnt"
    t1=$(date +%s%N)
    umount "$WORK/mnt"
    losetup -d "$DEV"; DEV=
    total=$((total + t1 - t0)); n=$((n + 1))
  done
  rm -rf "$SHM/st"
  python3 -c "print(f'{$total / max($n, 1) / 1e6:.2f}')"
}

rows=()
for files in 2 25 250 2500; do
  TMPDIR=$WORK "$B" record --no-syscalls --fs ext4 --mount-opts data=ordered --size 256M -o "$WORK/t$files" -- \
    sh -c "i=0; while [ \$i -lt $files ]; do i=\$((i+1)); echo \"record \$i\" > f\$i; sync f\$i; done; echo done > \"\$BRINK_MARK\"" \
    2>/dev/null
  writes=$("$B" show --json "$WORK/t$files" | python3 -c 'import json,sys; print(json.load(sys.stdin)["writes"])')
  "$B" explore "$WORK/t$files" --checker /bin/true --no-tree-dedup --strategy sample --samples "$SAMPLES" \
    -o "$WORK/r$files" --json > "$RAW/writes-$writes.json" || [ $? -eq 1 ]
  kernel=$(floor "$WORK/t$files" "$WORK/r$files")
  echo "$writes $kernel" >> "$RAW/kernel-floor.txt"
  rows+=("$(python3 - "$RAW/writes-$writes.json" "$writes" "$kernel" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); t = d["time_ms"]; n = max(d["states_checked"], 1)
own = (t["hash"] + t["overlay"]) / n
print(f"| {sys.argv[2]} | {n} | {d['states_per_s']:.0f} | {t['per_state']:.2f} | {t['mount'] / n:.2f} | {sys.argv[3]} | {own:.3f} |")
EOF
)")
done

{
  echo "# Cost per state as the trace grows"
  echo
  echo "By \`bench/scale.sh\`; each run's summary in \`$RAW/\`."
  sh results/provenance.sh
  echo "Traces: ext4 data=ordered, 256 MiB image; N small files each written and fsynced."
  echo "Each explored on a stratified sample of $SAMPLES states, checker \`/bin/true\`, tree"
  echo "dedup off, default jobs. \"kernel alone\" is mount(8) of $FLOOR_STATES of the same states"
  echo "materialized on tmpfs, each from a plain loop device, one at a time (raw:"
  echo "\`$RAW/kernel-floor.txt\`): the kernel's own journal replay, which grows with what"
  echo "the journal holds when the crash comes, not with brink."
  echo
  echo "| writes in the trace | states checked | states/s | worker ms per state | mount+recovery ms | kernel alone: mount ms | brink's own ms (hash + overlay) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
cat "$OUT"
