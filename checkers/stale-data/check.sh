#!/bin/sh
# Checker for the stale-data workload.
# Verifies: no file shows bytes that were never written to it: no file holds the setup's
#   deleted secret, report.dat holds only 'P' bytes, app.log only "report saved" lines.
#   Zeros are allowed anywhere (a hole or an unwritten extent reads as zeros).
# Not verified: that report.dat is present or complete (the application never fsynced
#   it, so losing it is expected; this checker looks for exposure, not durability).
for f in $(find . -xdev -type f ! -path './lost+found/*'); do
  if grep -q 'SECRET-KEY' "$f"; then
    echo "$f shows bytes never written to it: stale data of a deleted file ('SECRET-KEY…')"; exit 1
  fi
done
if [ -f report.dat ]; then
  junk=$(tr -d 'P\000' < report.dat | head -c 32 | od -An -c | tr -s ' ' | head -n 1)
  [ -z "$junk" ] || { echo "report.dat shows bytes never written to it:$junk"; exit 1; }
fi
if [ -f app.log ]; then
  junk=$(tr -d '\000' < app.log | grep -vx 'report saved' | head -n 1)
  [ -z "$junk" ] || { echo "app.log shows bytes never written to it: '$junk'"; exit 1; }
fi
exit 0
