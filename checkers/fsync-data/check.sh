#!/bin/sh
# Checker for the fsync-retry and fsync-abort workloads.
# Verifies: once "data v1" is acknowledged, `data` is 64 KiB of the new version ('n');
#   before, any mix of old ('o') and new blocks (the overwrite was in flight).
# Not verified: nothing else in the file system.
[ -f data ] || { echo "data is missing"; exit 1; }
size=$(wc -c < data)
[ "$size" -eq 65536 ] || { echo "data has $size bytes, not 65536"; exit 1; }
if grep -qx 'data v1' "$BRINK_MARKS"; then
  old=$(tr -d 'n' < data | wc -c)
  [ "$old" -eq 0 ] || { echo "acknowledged 'data v1' lost: $old of 65536 bytes of data are not the new version"; exit 1; }
else
  junk=$(tr -d 'on' < data | wc -c)
  [ "$junk" -eq 0 ] || { echo "data holds $junk bytes that are neither version"; exit 1; }
fi
exit 0
