#!/bin/sh
# append-log, FIXED: creates logs/app.log, fsyncs it and its directory (and the parent
# that holds logs/), then appends 8 checksummed records, fsyncing the log after each
# append and only then acknowledging it.
set -eu
. "$1"   # the record format: checkers/append-log/record.sh
mkdir logs
: > logs/app.log
sync logs/app.log; sync logs; sync .   # the new file and new directory are durable
for i in 1 2 3 4 5 6 7 8; do
  record "$i" >> logs/app.log
  sync logs/app.log                      # fsync(app.log) before the acknowledgement
  echo "appended $i" > "$BRINK_MARK"
done
