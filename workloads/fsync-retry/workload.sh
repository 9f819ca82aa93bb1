#!/bin/sh
# fsync-retry: overwrite `data` in place with the new version ('n'), fsync it, and when
# fsync fails, retry it until it succeeds, then acknowledge. After a failed writeback
# Linux reports the error once and marks the pages clean, so the retry succeeds while the
# new data never reached the disk: the acknowledgement is a lie.
set -u
head -c 65536 /dev/zero | tr '\0' n | dd of=data conv=notrunc bs=65536 status=none
tries=1
until sync data; do                       # fsync(data); on EIO, try again
  echo "fsync failed (try $tries); retrying" >&2
  tries=$((tries + 1))
  [ "$tries" -le 5 ] || exit 1
done
echo "data v1" > "$BRINK_MARK"
