#!/bin/sh
# Checker for the etcd workload, through etcd itself: an etcd 3.4 member is started on
# the recovered data directory ./etcd (its WAL replayed, its bbolt backend opened, as the
# next start would), on unix sockets in a private directory (helpers in etcd.sh of the
# workload's folder, $1), and must answer a health check (/health) within 20 s.
# A start waits ~0.3 s here (10 ms raft ticks, see etcd.sh).
# Verifies: every acknowledged "put kN" reads back (etcdctl get, a linearizable read) as
#   "value N".
# A member that exits or never becomes healthy on the state is a violation, with the
# reason from its log (the application cannot recover); a problem of the harness (etcd,
# etcdctl or curl not installed, a socket it cannot bind) exits 2, a checker failure.
# Not verified: unacknowledged keys may be present or absent; revisions, the member's
#   other state (leases, members), bbolt pages etcd does not read when it starts.
here=$(cd "$(dirname "$0")" && pwd)
wl=${1:-$here/../../workloads/etcd}
for c in etcd etcdctl curl; do command -v $c > /dev/null || { echo "$c is not installed"; exit 2; }; done
[ -n "${BRINK_MARKS:-}" ] && [ -r "$BRINK_MARKS" ] || { echo "no readable BRINK_MARKS"; exit 2; }
. "$wl/etcd.sh" || { echo "cannot read $wl/etcd.sh"; exit 2; }
etcd_start "$PWD/etcd"
# The state is private and thrown away: no need for a graceful stop.
trap 'etcd_stop KILL 2> /dev/null; etcd_cleanup' EXIT
# Why etcd stopped or is stuck, from its log (zap JSON): the first fatal or panic line,
# or else the last error.
why() {
  line=$(grep -m1 -E '"level":"(fatal|panic|dpanic)"|^panic:' "$etcd_log")
  [ -n "$line" ] || line=$(grep '"level":"error"' "$etcd_log" | tail -1)
  [ -n "$line" ] || line=$(tail -1 "$etcd_log")
  msg=$(printf '%s' "$line" | sed -n 's/.*"msg":"\([^"]*\)".*/\1/p')
  err=$(printf '%s' "$line" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p')
  if [ -n "$msg" ]; then echo "$msg${err:+: $err}"; else printf '%s\n' "$line" | cut -c1-200; fi
}
# Up once it answers a health check. A member that restarts (its WAL exists) from a WAL
# without a single entry has no voters, so it can never elect itself (raft logs
# "newRaft ... lastindex: 0" after "restarting local member"): judged at once rather
# than after the 20 s. Any other member that cannot commit logs "failed to publish local
# member" once its publish request times out (about 10 s here).
deadline=$(( $(date +%s) + 20 ))
while :; do
  if ! kill -0 "$etcd_pid" 2> /dev/null; then
    reason=$(why)
    case $reason in
      *"address already in use"*|*"bind:"*) echo "etcd cannot listen (harness): $reason"; exit 2 ;;
    esac
    echo "etcd cannot start on this state: $reason"; exit 1
  fi
  if grep -q '"restarting local member"' "$etcd_log" && grep -q '"msg":"newRaft [^"]*lastindex: 0,' "$etcd_log"; then
    echo "etcd starts on this state but never becomes healthy: it restarts as an existing member from a WAL with no entries (no voters, no leader)"
    exit 1
  fi
  etcd_healthy && break
  if grep -q '"failed to publish local member' "$etcd_log" || [ "$(date +%s)" -ge "$deadline" ]; then
    echo "etcd starts on this state but never becomes healthy: $(why)"; exit 1
  fi
  sleep 0.1
done
# All keys k* at once: etcdctl prints each key, then its value, one a line.
if ! etcd_ctl get k --prefix > "$etcd_run/kv" 2> "$etcd_run/get.err"; then
  echo "etcd cannot read the keys on this state: $(head -1 "$etcd_run/get.err")"; exit 1
fi
for k in $(sed -n 's/^put \(k[0-9][0-9]*\)$/\1/p' "$BRINK_MARKS"); do
  v=$(awk -v k="$k" 'NR % 2 == 1 && $0 == k { getline; print; exit }' "$etcd_run/kv")
  if [ "$v" != "value ${k#k}" ]; then
    if [ -z "$v" ]; then what="$k is absent"; else what="$k reads '$v'"; fi
    echo "acknowledged 'put $k' lost: $what"; exit 1
  fi
done
exit 0
