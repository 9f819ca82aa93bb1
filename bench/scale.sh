#!/usr/bin/env bash
# Benchmark: does the cost of a state grow with the trace? Traces of about 10, 100,
# 1,000 and 10,000 writes (files written and fsynced in a loop), each explored on a
# sample of the same size with a checker that does nothing; prints the worker time per
# state and brink's own part of it (hashing and overlays) per trace size. Writes
# results/bench/scale.md, each run's summary in results/bench/scale/.
#
#   bench/scale.sh   (as root)   SAMPLES=200
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-200}
. bench/lib.sh
bench_setup scale

rows=()
for files in 2 25 250 2500; do
  TMPDIR=$WORK "$B" record --no-syscalls --fs ext4 --mount-opts data=ordered --size 256M -o "$WORK/t$files" -- \
    sh -c "i=0; while [ \$i -lt $files ]; do i=\$((i+1)); echo \"record \$i\" > f\$i; sync f\$i; done; echo done > \"\$BRINK_MARK\"" \
    2>/dev/null
  writes=$("$B" show --json "$WORK/t$files" | python3 -c 'import json,sys; print(json.load(sys.stdin)["writes"])')
  "$B" explore "$WORK/t$files" --checker /bin/true --no-tree-dedup --strategy sample --samples "$SAMPLES" \
    -o "$WORK/r$files" --json > "$RAW/writes-$writes.json" || [ $? -eq 1 ]
  rows+=("$(python3 - "$RAW/writes-$writes.json" "$writes" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); t = d["time_ms"]; n = max(d["states_checked"], 1)
own = (t["hash"] + t["overlay"]) / n
print(f"| {sys.argv[2]} | {n} | {d['states_per_s']:.0f} | {t['per_state']:.2f} | {t['mount'] / n:.2f} | {own:.3f} |")
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
  echo "dedup off, default jobs."
  echo
  echo "| writes in the trace | states checked | states/s | worker ms per state | mount+recovery ms | brink's own ms (hash + overlay) |"
  echo "|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
cat "$OUT"
