#!/bin/bash
# Submit a sharded brink exploration to Slurm: an N-task job array (one shard each) and
# the merge, which runs once every task has succeeded.
#   cluster/slurm/submit.sh TRACE RESULTS N [explore flags...]
#   e.g. BRINK=/opt/brink/bin/brink cluster/slurm/submit.sh trace runs/r1 8 --checker ./check.sh
# Shards go to RESULTS/shard-I, the merge to RESULTS/merged, job output to RESULTS/logs.
# TRACE, RESULTS and a relative BRINK are made absolute; other relative paths in the
# flags (checkers) are relative to this directory, where the jobs run.
# Environment: BRINK (default `brink` on PATH, as the compute nodes see it),
# BRINK_MAX_PARALLEL (at most that many tasks at once: --array=0-(N-1)%K), and sbatch's
# own input variables for both jobs (SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_ACCOUNT…).
# Prints "ARRAYJOBID MERGEJOBID" on stdout.
set -euo pipefail

die() { echo "submit: $*" >&2; exit 2; }
is_uint() { case $1 in '' | *[!0-9]* | 0?*) return 1 ;; esac; }

[ $# -ge 3 ] || die "usage: submit.sh TRACE RESULTS N [explore flags...]"
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$1" ] || die "no trace directory $1"
trace=$(realpath "$1")
results=$(realpath -m "$2")
n=$3
shift 3
if ! is_uint "$n" || [ "$n" -lt 1 ]; then die "N='$n' is not a positive integer"; fi
BRINK=${BRINK:-brink}
case $BRINK in */*) BRINK=$(realpath -m "$BRINK") ;; esac
[ ! -e "$results/merged" ] || die "$results/merged exists: choose another RESULTS"
for d in "$results"/shard-*; do
  [ -e "$d" ] || continue
  echo "submit: $d exists: its task resumes it (brink refuses it if it is another exploration's)" >&2
done
mkdir -p "$results/logs"

array=0-$((n - 1))
if [ -n "${BRINK_MAX_PARALLEL:-}" ]; then
  is_uint "$BRINK_MAX_PARALLEL" || die "BRINK_MAX_PARALLEL='$BRINK_MAX_PARALLEL' is not a number"
  array+="%$BRINK_MAX_PARALLEL"
fi
export BRINK BRINK_SHARDS=$n
aid=$(sbatch --parsable --array="$array" --output="$results/logs/explore-%A_%a.out" \
  "$here/explore-array.sbatch" "$trace" "$results" "$@")
aid=${aid%%;*}
# --kill-on-invalid-dep: if a task fails, the merge is cancelled instead of pending forever.
mid=$(sbatch --parsable --dependency="afterok:$aid" --kill-on-invalid-dep=yes \
  --output="$results/logs/merge-%j.out" "$here/merge.sbatch" "$results")
mid=${mid%%;*}
echo "submit: array job $aid ($n shards of $trace into $results/shard-*), merge job $mid (into $results/merged)" >&2
echo "$aid $mid"
