#!/bin/sh
# Checker for the atomic-replace workloads.
# Verifies: `config` exists and is whole (512 lines, all of one version), and its version
#   is the one acknowledged last ("config vN" in $BRINK_MARKS) or the next one (a replace
#   in flight when the power went); before any acknowledgement, version 0 or 1.
# Not verified: config.tmp (a leftover temporary file is harmless) or any other file.
acked=$(sed -n 's/^config v\([0-9][0-9]*\)$/\1/p' "$BRINK_MARKS" | tail -n 1)
acked=${acked:-0}
if [ ! -f config ]; then
  echo "acknowledged 'config v$acked' lost: config is missing"; exit 1
fi
lines=$(wc -l < config)
versions=$(sed 's/^config version \([0-9][0-9]*\) line [0-9]*$/\1/' config | sort -u | tr '\n' ' ')
set -- $versions
if [ "$lines" -ne 512 ] || [ $# -ne 1 ] || ! [ "$1" -ge 0 ] 2>/dev/null; then
  echo "config is not whole: $lines lines, contents '$(printf %s "$versions" | head -c 60)'"; exit 1
fi
v=$1
if [ "$v" -lt "$acked" ]; then
  echo "acknowledged 'config v$acked' lost: config holds version $v"; exit 1
fi
if [ "$v" -gt $((acked + 1)) ]; then
  echo "config holds version $v, but only v$acked was acknowledged and v$((acked + 1)) was in flight"; exit 1
fi
exit 0
