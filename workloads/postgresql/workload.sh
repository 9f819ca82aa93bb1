#!/bin/sh
# postgresql: a PostgreSQL 15 server on pgdata/ (from setup.sh) with the mode's settings
# ($@: name=value, e.g. fsync=off), its socket outside the recorded file system. First a
# read of `pad` (its 48 pages get hint bits: dirty, unlogged). Then five transactions,
# one psql each, insert row N into `ack`; "insert N" is acknowledged once psql has
# returned from the COMMIT. Then a CHECKPOINT: the pages changed since setup's checkpoint
# (ack's page, pad's, a pruned pg_proc page) reach their files, the writes that
# full_page_writes protects. Then one more acknowledged insert, and an immediate stop (no
# shutdown checkpoint: to PostgreSQL, a crash; the next start recovers from the WAL).
set -eu
bin=/usr/lib/postgresql/15/bin
[ -x $bin/postgres ] || { echo "PostgreSQL 15 is not installed ($bin)" >&2; exit 2; }
sock=$(mktemp -d "${TMPDIR:-/tmp}/brink-pg-XXXXXX")
chown postgres:postgres "$sock"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
# An immediate stop (SIGQUIT), then SIGKILL if the server is still there after 30 s.
stop() {
  pid=$(head -n 1 pgdata/postmaster.pid 2> /dev/null) || pid=
  as_pg $bin/pg_ctl -D "$PWD/pgdata" -m immediate -w -t 30 stop > /dev/null 2>&1 ||
    { [ -z "$pid" ] || kill -KILL "$pid" 2> /dev/null; }
  rm -rf "$sock"
}
trap stop EXIT
trap 'exit 2' INT TERM HUP
opts="-k $sock"
for s in "$@"; do opts="$opts -c $s"; done
as_pg $bin/pg_ctl -D "$PWD/pgdata" -o "$opts" -l "$sock/server.log" -w -t 60 start > /dev/null ||
  { cat "$sock/server.log" >&2; exit 2; }
sql() {
  as_pg $bin/psql -h "$sock" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 -c "$1" > /dev/null
}
sql "SELECT count(*) FROM pad"
for i in 1 2 3 4 5; do
  sql "INSERT INTO ack VALUES ($i, 'insert $i')"
  echo "insert $i" > "$BRINK_MARK"
done
sql CHECKPOINT
sql "INSERT INTO ack VALUES (6, 'insert 6')"
echo "insert 6" > "$BRINK_MARK"
