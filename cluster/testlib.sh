# shellcheck shell=bash
# Shared by cluster/slurm/test-one-node.sh and cluster/k8s/test-indexed-locally.sh (sourced,
# bash): the brink binary, the workload, the explore flags, recording, the one-machine run
# and the comparison. Expects $repo (the checkout) and defines:
#   BRINK          the brink binary (env BRINK, default `brink` on PATH), made absolute
#   WORKLOAD       an append-log workload of workloads/ (env, default append-log-fixed;
#                  append-log-buggy gives vulnerabilities to compare)
#   explore_flags  the flags every exploration of the test gets (checkers, --jobs)
#   record_trace DIR            records WORKLOAD into the trace DIR
#   one_machine TRACE OUT LOG   explores TRACE on this machine; sets one_rc (0 or 1)
#   compare MERGED ONE          cluster/compare.py; prints its line, fails the test if differ
#   logtail FILE...             prints their last lines (before a failure's reason)
#   why LOG                     brink's error line in LOG (else its last line)
#   fail MSG / now / since T    (fail prints "<test>: FAIL: MSG" and exits 1)

: "${repo:?set repo to the checkout before sourcing testlib.sh}"
test_name=${test_name:-test}
fail() {
  echo "$test_name: FAIL: $*" >&2
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

brink_given=${BRINK:-brink}
BRINK=$(command -v "$brink_given") || fail "no brink binary '$brink_given': set BRINK to its path"
case $BRINK in /*) ;; *) BRINK=$(realpath "$BRINK") ;; esac
export BRINK
WORKLOAD=${WORKLOAD:-append-log-fixed}
case $WORKLOAD in append-log-*) ;; *) fail "WORKLOAD=$WORKLOAD: only the append-log workloads (their checker is checkers/append-log)" ;; esac
[ -f "$repo/workloads/$WORKLOAD/workload.sh" ] || fail "no workload $repo/workloads/$WORKLOAD"
explore_flags=(--checker "$repo/checkers/append-log/check.sh" --checker fsck --jobs 2)

record_trace() {
  "$BRINK" record --output "$1" -- \
    sh "$repo/workloads/$WORKLOAD/workload.sh" "$repo/checkers/append-log/record.sh" \
    >"$1.log" 2>&1 || fail "brink record failed: $(why "$1.log")"
}

one_machine() {
  one_rc=0
  "$BRINK" explore "$1" "${explore_flags[@]}" -o "$2" >"$3" 2>&1 || one_rc=$?
  [ "$one_rc" -le 1 ] || fail "one-machine brink explore exited $one_rc: $(why "$3")"
}

why() { # LOG: brink's one-line error in LOG if it has one, else LOG's last line
  local line
  line=$(grep '^brink: ' "$1" | grep -v '^brink: recorded\|^brink: merged\|^brink: stopped' | tail -n 1) || true
  echo "${line:-$(tail -n 1 "$1")}"
}

logtail() { # FILE...: the last lines of logs, before a failure's one-line reason
  local f
  for f in "$@"; do [ -f "$f" ] && { echo "--- $f" && tail -n 15 "$f"; } >&2; done
  return 0
}

compare() {
  local line
  line=$(python3 "$repo/cluster/compare.py" "$1" "$2") || fail "${line#compare: }"
  echo "$line"
}
