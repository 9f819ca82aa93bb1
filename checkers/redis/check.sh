#!/bin/sh
# Checker for the redis-aof workload, through Redis itself: a server started on the
# recovered state loads its append-only file (Redis truncates a torn last command, as
# its next start would: aof-load-truncated yes), then every acknowledged "set kN" must
# read back as "value N".
# A server that does not start on the state is a violation (the application cannot
# recover), unless it did not start for a reason of the harness (no redis-server): that
# is exit 2, a checker failure.
# Not verified: unacknowledged keys may be present or absent.
command -v redis-server > /dev/null || { echo "redis-server is not installed"; exit 2; }
sock=$(mktemp -u "${TMPDIR:-/tmp}/brink-redis-check-XXXXXX.sock")
log=$(mktemp "${TMPDIR:-/tmp}/brink-redis-check-XXXXXX.log")
redis-server --port 0 --unixsocket "$sock" --dir "$PWD" --appendonly yes --save '' \
  --daemonize no --logfile "$log" > /dev/null 2>&1 &
server=$!
up=0
for _ in $(seq 100); do
  # Up once it answers, and done loading its append-only file (it answers LOADING until then).
  if [ "$(redis-cli -s "$sock" ping 2> /dev/null)" = PONG ]; then up=1; break; fi
  kill -0 $server 2> /dev/null || break
  sleep 0.05
done
if [ $up -ne 1 ]; then
  why=$(grep -m1 -E '#|Bad|rror' "$log" | sed 's/^[0-9]*:[A-Z] [^*#]*[*#] //')
  kill $server 2> /dev/null; rm -f "$log"
  echo "redis cannot start on this state: ${why:-it exited}"; exit 1
fi
status=0
for k in $(sed -n 's/^set \(k[0-9][0-9]*\)$/\1/p' "$BRINK_MARKS"); do
  v=$(redis-cli -s "$sock" get "$k")
  if [ "$v" != "value ${k#k}" ]; then
    echo "acknowledged 'set $k' lost: $k reads '$v'"; status=1; break
  fi
done
redis-cli -s "$sock" shutdown nosave > /dev/null 2>&1
wait $server 2> /dev/null
rm -f "$log"
exit $status
