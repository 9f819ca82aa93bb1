#!/usr/bin/env bash
# Benchmark: checker runs saved by tree deduplication (a state whose recovered files and
# marks equal a checked state's takes its verdict), on the suite's database workloads.
# Each mode is run by the suite twice, side by side: with tree dedup (the default) and
# with --no-tree-dedup; the table gives the checker runs of each, the runs saved, the
# wall time of each, and whether every state's verdict is the same. Writes
# results/bench/tree-dedup.md, the suite rows in results/bench/tree-dedup/.
#
#   bench/tree-dedup.sh [WORKLOAD…]   (as root; default: leveldb postgresql rocksdb etcd)
set -euo pipefail
cd "$(dirname "$0")/.."
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(leveldb postgresql rocksdb etcd)
. bench/lib.sh
bench_setup tree-dedup

# The flags that explore a suite mode's trace as the suite did (from its run.json).
flags_of() {
  python3 - "$1" <<'PY'
import json, re, shlex, sys
r = json.load(open(sys.argv[1]))
cache, _, torn = r["model"].partition("+torn-")
out = ["--model", cache] + (["--torn", torn] if torn else [])
m = re.fullmatch(r"sample\((\d+), seed (\d+)\)", r["strategy"])
if m:
    out += ["--strategy", "sample", "--samples", m[1], "--seed", m[2]]
elif r["strategy"].startswith("omit-") and r["strategy"] != "omit-one":
    out += ["--strategy", "omit-k", "--k", r["strategy"][5:]]
else:
    out += ["--strategy", r["strategy"]]
for c in r["checkers"]:
    out += ["--checker", c]
print(shlex.join(out))
PY
}

for w in "${workloads[@]}"; do
  "$B" suite workloads "$w" -o "$WORK/dedup/$w" --json > "$RAW/$w-suite.json" || true
  for mode in "$WORK/dedup/$w/$w"/*/; do
    mode=$(basename "$mode")
    d=$WORK/dedup/$w/$w/$mode
    [ -f "$d/results/run.json" ] || continue
    eval "flags=($(flags_of "$d/results/run.json"))"
    "$B" explore "$d/trace" "${flags[@]}" --max-states 1000000 --no-tree-dedup \
      -o "$WORK/all/$w/$mode" --json > "$RAW/$w-$mode-all.json" || true
  done
done

python3 - "$WORK" "${workloads[@]}" > "$WORK/table" <<'EOF'
import json, os, sys
work, names = sys.argv[1], sys.argv[2:]

def states(results):
    out = {}
    for line in open(os.path.join(results, "states.jsonl")):
        r = json.loads(line)
        out[r["id"]] = r["verdict"]
    return out

print("| workload | mode | states | checker runs, dedup | checker runs, all | saved | s, dedup | s, all | same verdicts |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|")
total = [0, 0]
for w in names:
    base = os.path.join(work, "dedup", w, w)
    for mode in sorted(os.listdir(base)):
        a = os.path.join(work, "dedup", w, w, mode, "results")
        b = os.path.join(work, "all", w, mode)
        try:
            sa, sb = (json.load(open(os.path.join(d, "summary.json"))) for d in (a, b))
        except OSError:
            print(f"| {w} | {mode} | | | | | | | a run failed |")
            continue
        runs_a = sa["states_checked"] - sa.get("tree_dups", 0)
        runs_b = sb["states_checked"]
        total[0] += runs_a
        total[1] += runs_b
        same = "yes" if states(a) == states(b) else "**no**"
        saved = 100.0 * (runs_b - runs_a) / max(runs_b, 1)
        print(f"| {w} | {mode} | {sa['states_generated']} | {runs_a} | {runs_b} | {saved:.0f}% | "
              f"{sa['wall_s']:.1f} | {sb['wall_s']:.1f} | {same} |")
print()
print(f"All modes: {total[0]} checker runs with tree dedup, {total[1]} without "
      f"({100.0 * (total[1] - total[0]) / max(total[1], 1):.0f}% saved).")
EOF

{
  echo "# Checker runs saved by tree deduplication"
  echo
  echo "By \`bench/tree-dedup.sh\`; the suite's rows in \`$RAW/\`."
  sh results/provenance.sh
  echo "Each mode recorded and explored by \`brink suite\` (its bounded default run, tree"
  echo "dedup on), then the same trace explored again with the same settings and"
  echo "\`--no-tree-dedup\`; the verdict column compares the two state by state."
  echo "Checker runs: states whose checkers ran (fsck runs per distinct image either way)."
  echo
  cat "$WORK/table"
} > "$OUT"
cat "$OUT"
