#!/bin/sh
# One shard of a brink exploration in a pod of a Kubernetes Indexed Job:
#   shard.sh TRACE RESULTS [explore flags...]
# runs `brink explore TRACE --shard I/N -o RESULTS/shard-I [explore flags...]` where I is
# JOB_COMPLETION_INDEX (set by Kubernetes in an Indexed Job's pods) and N is BRINK_SHARDS
# (set it to the Job's completions), with --resume when RESULTS/shard-I exists (an
# earlier pod of this index was killed or evicted), and nothing when that shard is
# already complete. BRINK: the binary (default `brink`).
# Exit: 0 when the shard is explored, violations or not (brink's 1, "violations found",
# is a result: a failed pod would be retried); 2 when the index or N is unset, not a
# number or out of range, or the arguments are wrong; else brink's.
set -eu

die() {
  echo "shard.sh: $*" >&2
  exit 2
}
is_uint() { case $1 in '' | *[!0-9]* | 0?*) return 1 ;; esac; }

[ $# -ge 2 ] || die "usage: shard.sh TRACE RESULTS [explore flags...] (env JOB_COMPLETION_INDEX, BRINK_SHARDS)"
trace=$1
results=$2
shift 2
i=${JOB_COMPLETION_INDEX-}
n=${BRINK_SHARDS-}
[ -n "$i" ] || die "JOB_COMPLETION_INDEX is not set: run me in a pod of an Indexed Job (completionMode: Indexed)"
is_uint "$i" || die "JOB_COMPLETION_INDEX='$i' is not an index (0, 1, 2, ...)"
[ -n "$n" ] || die "BRINK_SHARDS is not set: set it to the Job's completions"
if ! is_uint "$n" || [ "$n" -lt 1 ]; then die "BRINK_SHARDS='$n' is not a positive integer"; fi
[ "$i" -lt "$n" ] || die "JOB_COMPLETION_INDEX=$i is out of range for BRINK_SHARDS=$n (0 <= index < N): do completions and BRINK_SHARDS differ?"
brink=${BRINK:-brink}
command -v "$brink" >/dev/null 2>&1 || die "no brink binary '$brink': set BRINK to its path"
[ -e "$trace" ] || die "no trace at $trace"

out=$results/shard-$i
mkdir -p "$results"
if [ -f "$out/summary.json" ] && grep -Eq '"complete": *true' "$out/summary.json"; then
  # A pod of this index finished it (and was then evicted, or the Job restarted): keep
  # its results as they are (`--resume` would rewrite its summary: see cluster/README.md).
  echo "shard.sh: shard $i/$n is already complete in $out: nothing to do"
  exit 0
fi
if [ -e "$out" ]; then
  echo "shard.sh: $out exists (an earlier pod): resuming"
  set -- --resume "$@"
fi
echo "shard.sh: shard $i/$n on $(hostname): $brink explore $trace --shard $i/$n -o $out $*"

# brink runs in the background: as a container's PID 1 this shell would otherwise ignore
# the SIGTERM of a pod's deletion; it is passed on and brink stops cleanly.
"$brink" explore "$trace" --shard "$i/$n" -o "$out" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
while :; do
  rc=0
  wait "$pid" || rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
case $rc in
  0) echo "shard.sh: shard $i/$n done: no violation" ;;
  1)
    echo "shard.sh: shard $i/$n done: violations found (the merge reports them)"
    rc=0
    ;;
  *) echo "shard.sh: shard $i/$n: brink exited $rc (a new pod of this index resumes it)" >&2 ;;
esac
exit "$rc"
