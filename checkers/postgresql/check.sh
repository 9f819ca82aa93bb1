#!/bin/sh
# Checker for the postgresql workload, through PostgreSQL 15 itself: a server started on
# the recovered pgdata/ replays the WAL from the last checkpoint, as the next start after
# a power cut would; once it accepts connections the checker reads the tables back.
# Verifies: the server starts and finishes recovery; amcheck's verify_heapam finds no
#   corruption in `ack` and `pad` (and the catalog lookups that needs work); every row
#   of ack reads as (N, 'insert N'), no N twice; every acknowledged "insert N" is there;
#   pad still holds its 192 rows (written by setup, only read by the workload).
# Not verified: unacknowledged inserts may be present or absent; indexes, other catalog
#   rows and the WAL beyond what replaying it needs are not checked.
# A server that cannot start or recover on the state, or tables that cannot be read, is a
# violation (the application cannot recover), with the server's error. A server that
# cannot start for a reason of the harness (no PostgreSQL 15, no setpriv, the data
# directory out of the postgres user's reach, a socket or shared memory it cannot get,
# a start slower than 20 s) is exit 2, a checker failure.
# The state is this checker's private copy: it is chowned to postgres if need be, and a
# stale postmaster.pid is removed first (its PID may now belong to an unrelated process).
# The checker's server runs with fsync=off: its own durability does not matter, and it
# skips the fsync of the whole directory PostgreSQL does before recovering from a crash.
bin=/usr/lib/postgresql/15/bin
for b in postgres psql; do
  [ -x $bin/$b ] || { echo "PostgreSQL 15 is not installed: no $bin/$b"; exit 2; }
done
command -v setpriv > /dev/null || { echo "setpriv is not installed"; exit 2; }
id postgres > /dev/null 2>&1 || { echo "there is no postgres user"; exit 2; }
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
[ -d pgdata ] || { echo "pgdata is missing: PostgreSQL cannot start"; exit 1; }
if [ "$(stat -c %U pgdata)" != postgres ]; then
  chown -R postgres:postgres pgdata || { echo "cannot give pgdata to the postgres user"; exit 2; }
fi
rm -f pgdata/postmaster.pid
as_pg test -r "$PWD/pgdata/PG_VERSION" -a -w "$PWD/pgdata" -a -x "$PWD/pgdata" 2> /dev/null ||
  { echo "the postgres user cannot reach $PWD/pgdata (is every parent directory searchable?)"; exit 2; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/brink-pg-check-XXXXXX") || { echo "cannot create a socket directory"; exit 2; }
chown postgres:postgres "$dir" || { echo "cannot give the socket directory to the postgres user"; exit 2; }
port=$((20000 + $$ % 30000))
server=
# Whether process $1 has exited (gone, or a zombie: a postmaster exits after its children).
exited() { ! [ -d /proc/$1 ] || sed 's/^.*) //' /proc/$1/stat 2> /dev/null | grep -q '^Z'; }
cleanup() {
  if [ -n "$server" ] && ! exited "$server"; then
    kill -QUIT "$server" 2> /dev/null   # an immediate shutdown: it stops its children first
    for _ in $(seq 200); do exited $server && break; sleep 0.05; done   # at most 10 s
    exited $server || kill -KILL "$server" 2> /dev/null
  fi
  [ -z "$server" ] || wait "$server" 2> /dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 3' INT TERM HUP
# Not through as_pg: a function runs in a subshell, and $! must be the postmaster.
setpriv --reuid=postgres --regid=postgres --init-groups -- $bin/postgres -D "$PWD/pgdata" \
  -k "$dir" -p $port -c listen_addresses= -c fsync=off -c logging_collector=off \
  -c log_min_messages=warning > "$dir/log" 2>&1 &
server=$!
# The server's first error: the FATAL or PANIC that stopped it, else the first ERROR or
# LOG, else its first words (a start that fails before logging begins prints plain text).
why() {
  { grep -m1 -E '(FATAL|PANIC):' "$dir/log" || grep -m1 -E '(ERROR|LOG):' "$dir/log" ||
    tr '\n' ' ' < "$dir/log" | cut -c1-300; } |
    sed -E 's/^[^[]*\[[0-9]+\] //; s/^(FATAL|PANIC|ERROR|LOG): +/\1: /'
}
# Ready once postmaster.pid's status line says so (what pg_ctl -w waits for), after
# recovery: the server accepts connections from then on.
up=0
for _ in $(seq 1000); do   # 20 s
  case $(sed -n 8p pgdata/postmaster.pid 2> /dev/null) in ready*) up=1; break ;; esac
  exited $server && break
  sleep 0.02
done
if [ $up -ne 1 ]; then
  if ! exited $server; then
    echo "postgres did not finish starting within 20 s (machine too slow?): $(why)"; exit 2
  fi
  w=$(why)
  case $w in
    *"could not bind"*|*"could not create Unix"*|*"could not create any Unix"*|*"lock file"*".s.PGSQL"*|\
    *"shared memory segment"*|*"could not change directory"*|*"could not map anonymous shared memory"*)
      echo "postgres could not start for a reason of the harness: $w"; exit 2 ;;
  esac
  echo "postgres cannot start on this state: ${w:-it exited without a message}"; exit 1
fi
# One session: the first corruption amcheck reports, pad's row count, then ack's rows.
if ! out=$(as_pg $bin/psql -h "$dir" -p $port -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 -F ' ' \
  -c "SELECT 'corrupt', t || ' block ' || blkno || ' item ' || offnum || ': ' || msg
      FROM (SELECT 'ack' t, * FROM verify_heapam('ack') UNION ALL
            SELECT 'pad' t, * FROM verify_heapam('pad')) v LIMIT 1" \
  -c "SELECT 'pad', count(*) FROM pad" \
  -c "SELECT 'row', n, note = 'insert ' || n FROM ack ORDER BY n" 2>&1); then
  echo "the tables cannot be read: $(printf '%s\n' "$out" | grep -m1 -E 'ERROR|FATAL|PANIC|psql' | sed 's/^psql:[^ ]* //; s/  */ /g')"
  exit 1
fi
c=$(printf '%s\n' "$out" | sed -n 's/^corrupt //p')
[ -z "$c" ] || { echo "a table is corrupt: $c"; exit 1; }
p=$(printf '%s\n' "$out" | sed -n 's/^pad //p')
[ "$p" = 192 ] || { echo "pad holds $p rows, not 192"; exit 1; }
rows=$(printf '%s\n' "$out" | sed -n 's/^row //p')
ns=$(printf '%s\n' "$rows" | cut -d' ' -f1 | tr '\n' ' ')
bad=$(printf '%s\n' "$rows" | grep -m1 ' f$' | cut -d' ' -f1)
[ -z "$bad" ] || { echo "row $bad of ack is garbled: its note is not 'insert $bad'"; exit 1; }
dup=$(printf '%s\n' "$rows" | cut -d' ' -f1 | uniq -d | head -n 1)
[ -z "$dup" ] || { echo "row $dup of ack is there twice (rows: ${ns% })"; exit 1; }
for n in $(sed -n 's/^insert \([0-9][0-9]*\)$/\1/p' "$BRINK_MARKS"); do
  printf '%s\n' "$rows" | grep -q "^$n " || { echo "acknowledged 'insert $n' lost: ack holds rows ${ns% }"; exit 1; }
done
exit 0
