#!/bin/sh
# append-log, FIXED: creates logs/app.log, fsyncs it and its directory (and the parent
# that holds logs/), then appends 8 checksummed records, fsyncing the log after each
# append and only then acknowledging it.
set -eu
# One record: "rec NNNN <990 digits> CRC", CRC being the POSIX cksum of all before it.
record() {
  body=$(printf 'rec %04d %0990d' "$1" "$1")
  printf '%s %s\n' "$body" "$(printf %s "$body" | cksum | cut -d' ' -f1)"
}
mkdir logs
: > logs/app.log
sync logs/app.log; sync logs; sync .   # the new file and new directory are durable
for i in 1 2 3 4 5 6 7 8; do
  record "$i" >> logs/app.log
  sync logs/app.log                      # fsync(app.log) before the acknowledgement
  echo "appended $i" > "$BRINK_MARK"
done
