#!/bin/sh
# The base image: a PostgreSQL 15 cluster in pgdata/ (owned by the postgres user, 1 MB
# WAL segments) with the amcheck extension (for the checker), the table `ack` (one row,
# n = 0) and the table `pad` (192 rows of 1.9 kB, 48 pages), after a clean shutdown: its
# shutdown checkpoint is the redo point of every crash state. The settings that keep
# the trace small go to postgresql.conf (the checker's server reads them too); the
# mode's durability setting is the workload's (-c on its command line), so the checker
# recovers with the defaults.
set -eu
bin=/usr/lib/postgresql/15/bin
[ -x $bin/postgres ] || { echo "PostgreSQL 15 is not installed ($bin)" >&2; exit 2; }
mkdir pgdata
chown postgres:postgres pgdata
chmod 700 pgdata
sock=$(mktemp -d /tmp/brink-pg-setup-XXXXXX)
log=$sock/log
chown postgres:postgres "$sock"
trap 'rm -rf "$sock"' EXIT
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
# 1 MB WAL segments (the default 16 MB would be zero-filled block by block).
as_pg $bin/initdb -D "$PWD/pgdata" --wal-segsize=1 --auth=trust --username=postgres \
  --encoding=UTF8 --locale=C --no-instructions > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
cat >> pgdata/postgresql.conf <<CONF

# brink: a small, quiet cluster (no TCP, no background writes besides the WAL writer).
listen_addresses = ''
max_connections = 10
shared_buffers = 2MB
wal_level = minimal
max_wal_senders = 0
min_wal_size = 2MB
max_wal_size = 4MB
checkpoint_timeout = 1d
autovacuum = off
bgwriter_lru_maxpages = 0
huge_pages = off
logging_collector = off
CONF
as_pg $bin/pg_ctl -D "$PWD/pgdata" -o "-k $sock" -l "$sock/server.log" -w -t 60 start > /dev/null || { cat "$sock/server.log" >&2; exit 1; }
as_pg $bin/psql -h "$sock" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 \
  -c "CREATE EXTENSION amcheck" \
  -c "CREATE TABLE ack(n int NOT NULL, note text NOT NULL)" \
  -c "INSERT INTO ack VALUES (0, 'insert 0')" \
  -c "CREATE TABLE pad(i int NOT NULL, s text NOT NULL)" \
  -c "ALTER TABLE pad ALTER s SET STORAGE PLAIN" \
  -c "INSERT INTO pad SELECT g, repeat('x', 1900) FROM generate_series(1, 192) g" > /dev/null
as_pg $bin/pg_ctl -D "$PWD/pgdata" -m fast -w -t 60 stop > /dev/null
# Caches every start deletes (the relcache init files; the statistics, which a start
# after a crash discards): deleted here, they are not deleted in the recorded trace.
rm -f pgdata/global/pg_internal.init pgdata/base/*/pg_internal.init pgdata/pg_stat/pgstat.stat
sync -f .   # this file system only: a global sync would flush other recordings running at once
