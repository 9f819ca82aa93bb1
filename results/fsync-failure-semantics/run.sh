#!/bin/sh
# Measure, with brink, how each file system behaves after a failed fsync (the table of
# Rebello et al., ATC'20), and write fsync-failure-semantics.md's measured table.
# usage (root): sh run.sh BRINK OUT_DIR > measured.jsonl; python3 table.py measured.jsonl
set -eu
brink=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
setup="head -c 16384 /dev/zero | tr '\\0' o > f && sync"
# name | fs | mount options | size | injection
configs="ext4-ordered|ext4|data=ordered|64M|file:f
ext4-writeback|ext4|data=writeback|64M|file:f
ext4-journal|ext4|data=journal|64M|file:f
ext4-journal-jblock|ext4|data=journal|64M|write:1
xfs|xfs||300M|file:f
btrfs|btrfs||300M|write:1"
printf '%s\n' "$configs" | while IFS='|' read -r name fs opts size inject; do
  rm -rf "$out/$name"
  "$brink" record --fs "$fs" --mount-opts "$opts" --size "$size" --setup "$setup" \
    --inject "$inject" -o "$out/$name" -- python3 "$here/probe.py" 2>/dev/null
  # On disk after the clean unmount: the final image, mounted (journal replayed).
  events=$("$brink" show "$out/$name" --json --summary | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
  rm -rf "$out/$name.final"
  "$brink" replay "$out/$name" "$events" -o "$out/$name.final" >/dev/null 2>&1
  python3 - "$out/$name" "$out/$name.final/mnt/f" "$name" "$inject" <<'PY'
import json, sys
trace, f, name, inject = sys.argv[1:5]
meta = json.load(open(trace + "/meta.json"))
kv = dict(l.split("=", 1) for l in meta["workload"]["stdout"].split() if "=" in l)
data = open(f, "rb").read()
disk = "new" if data == b"n" * 16384 else "old" if data == b"o" * 16384 else "mixed"
kv.update(name=name, inject=inject, disk_after_unmount=disk, exit=meta["workload"]["exit"]["code"])
print(json.dumps(kv))
PY
  umount "$out/$name.final/mnt"
done
