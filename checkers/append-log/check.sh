#!/bin/sh
# Checker for the append-log workloads.
# Verifies: logs/app.log is a run of valid records 1, 2, 3, … (sequence number and cksum
#   both right), possibly followed by one damaged record at the tail (a torn last append,
#   which a reader discards), and holds at least every record acknowledged ("appended N").
# Not verified: records after the last acknowledgement may be present or not.
. "$(dirname "$0")/record.sh"
acked=$(sed -n 's/^appended \([0-9][0-9]*\)$/\1/p' "$BRINK_MARKS" | tail -n 1)
acked=${acked:-0}
if [ ! -f logs/app.log ]; then
  [ "$acked" -eq 0 ] && exit 0
  echo "acknowledged 'appended $acked' lost: logs/app.log is missing"; exit 1
fi
valid=0 damaged=0
while IFS= read -r line || [ -n "$line" ]; do
  if [ "$damaged" -eq 1 ]; then
    echo "logs/app.log has a damaged record $((valid + 1)) followed by more data"; exit 1
  fi
  body=${line% *} sum=${line##* }
  expect=$(printf 'rec %04d' $((valid + 1)))
  if [ "${body%% [0-9]*}" != "rec" ] || [ "${body#"$expect" }" = "$body" ] || \
     [ "$(crc "$body")" != "$sum" ]; then
    damaged=1
  else
    valid=$((valid + 1))
  fi
done < logs/app.log
if [ "$valid" -lt "$acked" ]; then
  echo "acknowledged 'appended $acked' lost: logs/app.log holds $valid valid records"; exit 1
fi
exit 0
