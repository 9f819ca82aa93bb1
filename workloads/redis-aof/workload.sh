#!/bin/sh
# redis-aof: a Redis 7 server with the append-only file on, fsync policy $1 (always or
# everysec), in the recorded file system. The workload sets k1..k8, one at a time, and
# acknowledges "set kN" once redis-cli has the server's OK; then it shuts the server down.
# The server listens on a socket outside the file system (the recorder's own directory).
set -eu
sock=${TMPDIR:-/tmp}/brink-redis-$$.sock
redis-server --port 0 --unixsocket "$sock" --dir "$PWD" --appendonly yes --appendfsync "$1" \
  --save '' --daemonize no --logfile "" --loglevel warning > /dev/null 2>&1 &
server=$!
i=0
until redis-cli -s "$sock" ping > /dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 200 ] || { echo "redis-server did not start" >&2; kill $server; exit 2; }
  sleep 0.05
done
for i in 1 2 3 4 5 6 7 8; do
  [ "$(redis-cli -s "$sock" set "k$i" "value $i")" = OK ]
  echo "set k$i" > "$BRINK_MARK"
done
redis-cli -s "$sock" shutdown nosave > /dev/null 2>&1 || true
wait $server || true
