#!/bin/sh
# append-log, NO DIRECTORY FSYNC: as the fixed variant (fsync after each append, then
# acknowledge), but the newly created log file's directory entries are never fsynced.
# POSIX does not promise the file survives; whether it does is the file system's choice.
set -eu
. "$1"   # the record format: checkers/append-log/record.sh
mkdir logs
: > logs/app.log                         # created; neither logs/ nor . is ever fsynced
for i in 1 2 3 4 5 6 7 8; do
  record "$i" >> logs/app.log
  sync logs/app.log
  echo "appended $i" > "$BRINK_MARK"
done
