#!/usr/bin/env bash
# Benchmark: crash states per second, end to end, with a checker that does nothing.
# Compares `brink explore` with a plain shell loop that, per state, copies the state's
# image, attaches a loop device, mounts, runs the checker and unmounts (the way one
# would script it with losetup and mount), on the same states. Writes
# results/bench/explore.md.
#
#   bench/explore.sh   (as root)   # SHELL_STATES=200: states timed in the shell loop
set -euo pipefail
cd "$(dirname "$0")/.."
SHELL_STATES=${SHELL_STATES:-200}
OUT=results/bench/explore.md
RAW=results/bench/explore   # each run's summary.json, beside the table
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 2; }
cargo build --release -q -p brink-cli
B=$PWD/target/release/brink
WORK=$(mktemp -d /tmp/brink-bench-explore-XXXXXX)
cleanup() {
  mountpoint -q "$WORK/mnt" 2>/dev/null && umount "$WORK/mnt" || true
  [ -n "${DEV:-}" ] && losetup -d "$DEV" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/mnt" "$WORK/imgs"

# Six rounds of three small files and a sync: 25 epochs, 598 crash states.
TMPDIR=$WORK "$B" record --fs ext4 --mount-opts data=ordered --size 64M -o "$WORK/trace" -- \
  sh -c 'for r in 1 2 3 4 5 6; do for i in 1 2 3; do printf "r$r f$i" > f$r$i; done; sync -f .; echo "round $r" > "$BRINK_MARK"; done' 2>/dev/null
COUNT=$("$B" explore "$WORK/trace" --count-only | head -1)

run_brink() { # jobs slots -> summary json
  rm -rf "$WORK/res"
  "$B" explore "$WORK/trace" --checker true --jobs "$1" --slots "$2" -o "$WORK/res" --json | tee "$RAW/jobs-$1-$2.json"
}
rm -rf "$RAW" && mkdir -p "$RAW"
declare -A RATE PER MOUNT UMOUNT CHECK HASH OVER CHECKED
# The default slots (memory) at 1, 2 and 4 jobs, and the FUSE slots at 4 side by side.
for k in 1 2 4 4-fuse; do
  j=${k%-fuse}; slots=auto; [ "$k" != "$j" ] && slots=fuse
  read -r RATE[$k] PER[$k] MOUNT[$k] UMOUNT[$k] CHECK[$k] HASH[$k] OVER[$k] CHECKED[$k] < <(run_brink "$j" "$slots" | python3 -c '
import json,sys
d=json.load(sys.stdin); t=d["time_ms"]; n=max(d["states_checked"],1)
r=d["states_per_s"]
print("%.0f %.2f %.2f %.2f %.2f %.3f %.3f %d" % (r, t["per_state"], t["mount"]/n, t["unmount"]/n, t["checkers"]/n, t["hash"]/n, t["overlay"]/n, n))')
done
# Keep the results of the last run for the state list.
mapfile -t IDS < <(python3 -c '
import json,sys
ids=[json.loads(l)["id"] for l in open(sys.argv[1]) if json.loads(l)["dup_of"] is None]
print("\n".join(ids[:int(sys.argv[2])]))' "$WORK/res/states.jsonl" "$SHELL_STATES")
for id in "${IDS[@]}"; do
  "$B" replay "$WORK/trace" "$id" -o "$WORK/imgs/$id" --no-mount >/dev/null
done

t0=$(date +%s.%N)
for id in "${IDS[@]}"; do
  cp --sparse=always "$WORK/imgs/$id/state.img" "$WORK/work.img"
  DEV=$(losetup --find --show "$WORK/work.img")
  mount -o data=ordered "$DEV" "$WORK/mnt"
  (cd "$WORK/mnt" && true)
  umount "$WORK/mnt"
  losetup -d "$DEV"; DEV=
  rm -f "$WORK/work.img"
done
t1=$(date +%s.%N)
SHELL_RATE=$(python3 -c "print(f'{${#IDS[@]}/($t1-$t0):.0f}')")
SHELL_MS=$(python3 -c "print(f'{1000*($t1-$t0)/${#IDS[@]}:.2f}')")
echo "states ${#IDS[@]} start $t0 end $t1" > "$RAW/shell-loop.txt"

# Memory: a trace with 1 GiB written (four 256 MiB files, each written and fsynced),
# explored with the prefix strategy; peak RSS of the brink process.
head -c $((256 << 20)) /dev/urandom > "$WORK/rand.bin"
TMPDIR=$WORK "$B" record --fs ext4 --size 2G -o "$WORK/big" -- \
  sh -c "for i in 1 2 3 4; do dd if=$WORK/rand.bin of=big\$i bs=1M conv=fsync status=none; done" 2>/dev/null
BIG_WRITTEN=$("$B" show --json "$WORK/big" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_written"] >> 20)')
/usr/bin/time -f "%M" -o "$WORK/rss" "$B" explore "$WORK/big" --checker true --strategy prefix -o "$WORK/big-res" --json > "$WORK/big.json"
BIG_RSS=$(( $(cat "$WORK/rss") / 1024 ))
cp "$WORK/big.json" "$RAW/memory-prefix.json"; echo "peak_rss_kib $(cat "$WORK/rss")" > "$RAW/memory-prefix-rss.txt"
BIG_STATES=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["states_checked"], "states in %.1f s" % d["wall_s"])' "$WORK/big.json")
rm -f "$WORK/rand.bin"

{
  echo "# Explore speed: states per second with a checker that does nothing"
  echo
  echo "By \`bench/explore.sh\`; each run's summary in \`$RAW/\`, the shell loop's times in \`$RAW/shell-loop.txt\`."
  sh results/provenance.sh
  echo "Trace: ext4 data=ordered, 64 MiB image, six rounds of three small files and a \`sync\`: $COUNT"
  echo "Checker: \`true\` (a shell command: run through \`sh -c\`); tree dedup on (the default)."
  echo
  echo "| runner | jobs | states/s | worker ms per state | mount+recovery ms | unmount ms | checker ms | brink's own ms (hash + overlay) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for k in 1 2 4 4-fuse; do
    own=$(python3 -c "print(f'{${HASH[$k]}+${OVER[$k]}:.3f}')")
    label="brink explore"; [ "$k" = 4-fuse ] && label="brink explore --slots fuse"
    echo "| $label | ${k%-fuse} | ${RATE[$k]} | ${PER[$k]} | ${MOUNT[$k]} | ${UMOUNT[$k]} | ${CHECK[$k]} | $own |"
  done
  echo "| shell loop (cp, losetup, mount, checker, umount, losetup -d) | 1 | $SHELL_RATE | $SHELL_MS | | | | |"
  echo
  echo "brink / shell loop: $(python3 -c "print(f'{${RATE[4]}/$SHELL_RATE:.1f}')")× at the default jobs (4 = twice the cores), $(python3 -c "print(f'{${RATE[1]}/$SHELL_RATE:.1f}')")× with one job."
  echo "The shell loop ran the first ${#IDS[@]} unique states of the same exploration."
  echo
  echo "\"worker ms per state\" is jobs × wall time / states checked. The mount column is the"
  echo "kernel mounting the state (journal replay included) through the loop device and the"
  echo "slot, plus dropping the loop device's block cache; unmount likewise. The default slots"
  echo "are the memory slots (the state's image in a memory file, restored where it changed);"
  echo "the FUSE slots serve each read the kernel's cache misses and each write from brink's"
  echo "daemon. What remains after mount, unmount and checker is brink's own per-state work;"
  echo "the last column is the part of it that is measured directly (computing the state's"
  echo "content and hash, laying it into the slot, and for memory slots reading the kernel's"
  echo "writes from the write log)."
  echo
  echo "## Memory"
  echo
  echo "A trace with $BIG_WRITTEN MiB written (four 256 MiB files, each fsynced), \`--strategy prefix\`,"
  echo "$BIG_STATES: peak RSS of brink **$BIG_RSS MiB** (limit: 512 MiB). Payloads stay in"
  echo "the trace; a state's overlay references them, and hashing streams them once per epoch."
} > "$OUT"
cat "$OUT"
