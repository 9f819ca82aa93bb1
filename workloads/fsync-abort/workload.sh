#!/bin/sh
# fsync-abort: as fsync-retry, but the first fsync error is final: the application
# reports it and stops without acknowledging (what PostgreSQL does since 2018: a failed
# fsync is a crash, recovery starts from the last durable state).
set -u
head -c 65536 /dev/zero | tr '\0' n | dd of=data conv=notrunc bs=65536 status=none
if ! sync data; then
  echo "fsync failed: giving up without acknowledging" >&2
  exit 1
fi
echo "data v1" > "$BRINK_MARK"
