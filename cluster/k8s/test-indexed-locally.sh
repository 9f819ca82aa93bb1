#!/bin/bash
# The Kubernetes Indexed Job's pods, played on this machine: shard.sh runs once per index
# with JOB_COMPLETION_INDEX and BRINK_SHARDS set as Kubernetes sets them (one after the
# other), the merge runs as merge-job.yaml runs it, and the result must equal a
# one-machine `brink explore` of the same trace.
#   cluster/k8s/test-indexed-locally.sh      (root: brink mounts crash states)
# Environment: BRINK (default `brink` on PATH), WORKLOAD (default append-log-fixed;
# append-log-buggy has vulnerabilities), SHARDS (3).
# Layout as in the pods: /tmp/slurm-k8s-test.*/data/{trace,results,cache}; the shards share
# the verdict cache as explore-indexed-job.yaml has them do. Also checks that shard.sh
# refuses (exit 2) an unset index, an unset BRINK_SHARDS and an index out of range, that
# a pod resumes an incomplete shard (index 1's first pod stops at once: --time-budget 0)
# and that a pod of a finished index leaves its shard as it is. The
# directory is removed on every exit. Last line: "test-indexed-locally: PASS: …" or
# "…: FAIL: <reason>" (exit 1).
set -euo pipefail
test_name=test-indexed-locally
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=testlib.sh
. "$repo/cluster/testlib.sh"
SHARDS=${SHARDS:-3}
t0=$(now)

[ "$(id -u)" -eq 0 ] || fail "run as root (brink's loop devices and mounts need it)"
command -v python3 >/dev/null || fail "no python3 on PATH"
tmp=$(mktemp -d /tmp/slurm-k8s-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'fail "interrupted"' INT TERM
data=$tmp/data
mkdir "$data"

# The pods' command: shard.sh /data/trace /data/results [explore flags] (+ --cache).
shard_flags=("${explore_flags[@]}" --cache "$data/cache")
pod() { # INDEX|-: one pod, JOB_COMPLETION_INDEX=INDEX (unset for -), BRINK_SHARDS=$SHARDS
  if [ "$1" = - ]; then
    env -u JOB_COMPLETION_INDEX BRINK_SHARDS="$SHARDS" "$here/shard.sh" "$data/trace" "$data/results" "${shard_flags[@]}"
  else
    JOB_COMPLETION_INDEX=$1 BRINK_SHARDS=$SHARDS "$here/shard.sh" "$data/trace" "$data/results" "${shard_flags[@]}"
  fi
}
refused() { # WHAT CMD...: CMD must exit 2 with a shard.sh message, and create nothing
  local rc=0 out
  out=$("${@:2}" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "shard.sh with $1 exited $rc, not 2: $out"
  grep -q '^shard.sh: ' <<<"$out" || fail "shard.sh with $1 gave no reason: $out"
  [ ! -e "$data/results" ] || fail "shard.sh with $1 created $data/results"
  echo "$test_name: refused $1: ${out#shard.sh: }"
}

t=$(now)
record_trace "$data/trace"
echo "$test_name: recorded $WORKLOAD in $(since "$t")"

refused "JOB_COMPLETION_INDEX unset" pod -
refused "BRINK_SHARDS unset" env -u BRINK_SHARDS JOB_COMPLETION_INDEX=0 "$here/shard.sh" "$data/trace" "$data/results"
refused "index $SHARDS of $SHARDS" pod "$SHARDS"
refused "index x" pod x

t=$(now)
# The first pod of index 1 stops before checking anything (--time-budget 0 stands in for
# a pod killed early), leaving an incomplete shard-1 that the next pod of index 1 resumes.
rc=0
JOB_COMPLETION_INDEX=1 BRINK_SHARDS=$SHARDS "$here/shard.sh" "$data/trace" "$data/results" \
  "${shard_flags[@]}" --time-budget 0 >"$tmp/pod-1a.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "pod 1 with --time-budget 0: shard.sh exited $rc: $(why "$tmp/pod-1a.log")"
grep -q "stopped by time budget" "$tmp/pod-1a.log" || fail "pod 1 with --time-budget 0 was not stopped by it: $(why "$tmp/pod-1a.log")"
for ((i = 0; i < SHARDS; i++)); do
  rc=0
  pod "$i" >"$tmp/pod-$i.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    logtail "$tmp/pod-$i.log"
    fail "pod $i: shard.sh exited $rc: $(why "$tmp/pod-$i.log")"
  fi
  grep -q "^shard.sh: shard $i/$SHARDS done" "$tmp/pod-$i.log" || fail "pod $i's output does not say shard $i/$SHARDS is done"
done
grep -q "exists (an earlier pod): resuming" "$tmp/pod-1.log" || fail "the second pod of index 1 did not resume"
shards_time=$(since "$t")
# A second pod of index 0 (the first was "evicted" after finishing): it changes nothing.
cp -a "$data/results/shard-0" "$tmp/shard-0.before"
rc=0
pod 0 >"$tmp/pod-0b.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "pod 0 again: shard.sh exited $rc: $(why "$tmp/pod-0b.log")"
grep -q "already complete" "$tmp/pod-0b.log" || fail "pod 0 again did not see its shard complete: $(why "$tmp/pod-0b.log")"
diff -r "$tmp/shard-0.before" "$data/results/shard-0" >/dev/null || fail "pod 0 again changed the finished shard-0"

# merge-job.yaml's command.
t=$(now)
merge_rc=0
"$BRINK" merge "$data"/results/shard-* -o "$data/results/merged" >"$tmp/merge.log" 2>&1 || merge_rc=$?
grep -q "merged $SHARDS of $SHARDS shards" "$tmp/merge.log" || fail "brink merge exited $merge_rc: $(why "$tmp/merge.log")"
merge_time=$(since "$t")

t=$(now)
one_machine "$data/trace" "$tmp/one" "$tmp/one.log"
one_time=$(since "$t")
if [ "$merge_rc" -ne "$one_rc" ]; then
  logtail "$tmp/merge.log" "$tmp/one.log"
  fail "brink merge exited $merge_rc, the one-machine explore $one_rc"
fi
cmp=$(compare "$data/results/merged" "$tmp/one")
echo "$test_name: $SHARDS pods in $shards_time, merge exit $merge_rc in $merge_time; one machine: exit $one_rc in $one_time"
echo "$test_name: $cmp"
echo "$test_name: PASS: $WORKLOAD, $SHARDS indexed pods = one machine (total $(since "$t0"))"
