#!/bin/sh
# append-log, BUGGY: appends 8 checksummed records to logs/app.log and acknowledges each
# as soon as it is written, fsyncing only every 4th record (a group commit done wrong:
# the acknowledgement comes before the fsync that would make the record durable).
set -eu
. "$1"   # the record format: checkers/append-log/record.sh
mkdir logs
: > logs/app.log
sync logs/app.log; sync logs; sync .   # the log file and its directory are durable
for i in 1 2 3 4 5 6 7 8; do
  record "$i" >> logs/app.log
  echo "appended $i" > "$BRINK_MARK"     # BUG: acknowledged before fsync
  [ $((i % 4)) -ne 0 ] || sync logs/app.log
done
