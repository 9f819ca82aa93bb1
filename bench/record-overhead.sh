#!/usr/bin/env bash
# Benchmark: what recording costs. Runs the same workloads on a plain loop-mounted
# image, under `brink record --no-syscalls` (block I/O only) and under `brink record`
# with the system calls (brink's kernel tracer, the default, and strace; each with and
# without stacks), side by side in one run (alternating, REPS times each, median taken),
# and writes results/bench/record-overhead.md.
#
#   bench/record-overhead.sh   (as root)   # REPS=3 SQLITE_TXNS=500 SEQ_MIB=256 APPENDS=1000
#
# Workloads (ext4, data=ordered, 1 GiB image, same mkfs options brink uses):
#   sqlite:  sqlite3 CLI, journal_mode=DELETE, synchronous=FULL, one INSERT per
#            transaction (each commit fsyncs the journal and the database);
#   seq:     dd of SEQ_MIB MiB of random data in 1 MiB blocks, then fsync;
#   appends: APPENDS appends of 100 bytes to one file, each fsynced (python3).
# Timed: the workload alone (what the application feels), and the whole pipeline
# (mkfs, mount, workload, unmount; for brink also saving the trace).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
SQLITE_TXNS=${SQLITE_TXNS:-500}
SEQ_MIB=${SEQ_MIB:-256}
APPENDS=${APPENDS:-1000}
SIZE=1G
OUT=results/bench/record-overhead.md
RAW=results/bench/record-overhead.tsv   # every repetition, beside the table

[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 2; }
cargo build --release -q -p brink-cli
BRINK=$PWD/target/release/brink
WORK=$(mktemp -d /tmp/brink-bench-XXXXXX)
cleanup() {
  mountpoint -q "$WORK/mnt" 2>/dev/null && umount "$WORK/mnt" || true
  [ -n "${LOOPDEV:-}" ] && losetup -d "$LOOPDEV" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/mnt"
head -c $((SEQ_MIB << 20)) /dev/urandom > "$WORK/random.bin"
{
  echo "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;"
  echo "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
  for i in $(seq 1 "$SQLITE_TXNS"); do echo "INSERT INTO t(v) VALUES (printf('%.200c', 'x') || $i);"; done
} > "$WORK/sqlite.sql"

# Workload scripts take their inputs from outside the mount.
cat > "$WORK/sqlite.sh" <<EOS
sqlite3 db.sqlite < $WORK/sqlite.sql > /dev/null
EOS
cat > "$WORK/seq.sh" <<EOS
dd if=$WORK/random.bin of=big bs=1M conv=fsync status=none
EOS
cat > "$WORK/appends.sh" <<EOS
python3 -c '
import os
fd = os.open("log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range($APPENDS):
    os.write(fd, b"%099d" % i + b"\\n")
    os.fsync(fd)
'
EOS

now() { date +%s.%N; }

# plain WORKLOAD -> "total_s workload_s"
plain() {
  local img=$WORK/plain.img t0 t1 t2
  rm -f "$img"; truncate -s $SIZE "$img"
  t0=$(now)
  LOOPDEV=$(losetup --find --show "$img")
  mkfs.ext4 -F -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$LOOPDEV"
  mount -o data=ordered "$LOOPDEV" "$WORK/mnt"
  t1=$(now)
  (cd "$WORK/mnt" && sh "$WORK/$1.sh")
  t2=$(now)
  umount "$WORK/mnt"; losetup -d "$LOOPDEV"; LOOPDEV=
  echo "$(echo "$(now) - $t0" | bc) $(echo "$t2 - $t1" | bc)"
  rm -f "$img"
}

# brink WORKLOAD [FLAGS...] -> "total_s workload_s written stored"
brink_run() {
  local trace=$WORK/trace-$1 t0 wall j
  rm -rf "$trace"
  t0=$(now)
  TMPDIR=$WORK "$BRINK" record --fs ext4 --mount-opts data=ordered --size $SIZE "${@:2}" -o "$trace" -- sh "$WORK/$1.sh" 2>/dev/null
  local total; total=$(echo "$(now) - $t0" | bc)
  j=$("$BRINK" show --json "$trace")
  wall=$(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["workload_wall_ms"]/1000, d["bytes_written"], d["bytes_stored"])')
  echo "$total $wall"
  rm -rf "$trace"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The recordings compared: label and `brink record` flags.
VARIANTS=(block kernel_nostacks kernel strace_nostacks strace)
declare -A FLAGS=([block]=--no-syscalls [kernel_nostacks]=--no-stacks [kernel]= \
  [strace_nostacks]="--tracer strace --no-stacks" [strace]="--tracer strace")
declare -A TOT WL B_W B_S
printf 'workload\trep\tvariant\ttotal_s\tworkload_s\tbytes_written\tbytes_stored\n' > "$RAW.new"
for wl in sqlite seq appends; do
  for r in $(seq 1 "$REPS"); do
    read -r pt pw < <(plain "$wl")
    TOT[$wl,plain]+="$pt "; WL[$wl,plain]+="$pw "
    printf '%s\t%s\tplain\t%s\t%s\t\t\n' "$wl" "$r" "$pt" "$pw" >> "$RAW.new"
    line="$wl rep $r: plain ${pt}s/${pw}s"
    for v in "${VARIANTS[@]}"; do
      # shellcheck disable=SC2086 # FLAGS holds several words
      read -r t w bwr bst < <(brink_run "$wl" ${FLAGS[$v]})
      TOT[$wl,$v]+="$t "; WL[$wl,$v]+="$w "
      [ "$v" = kernel ] && { B_W[$wl]=$bwr; B_S[$wl]=$bst; }
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$r" "$v" "$t" "$w" "$bwr" "$bst" >> "$RAW.new"
      line+=" | $v ${t}s/${w}s"
    done
    echo "$line (total/workload)" >&2
  done
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
cell() { printf '%.3f (%.3f)' "$(med "${TOT[$1,$2]}")" "$(med "${WL[$1,$2]}")"; }
over() { ratio "$(med "${TOT[$1,$2]}")" "$(med "${TOT[$1,block]}")"; }

{
  echo "# Recording overhead: plain loop mount vs \`brink record\`, without and with system calls"
  echo
  echo "By \`bench/record-overhead.sh\` (REPS=$REPS, SQLITE_TXNS=$SQLITE_TXNS, SEQ_MIB=$SEQ_MIB, APPENDS=$APPENDS), medians; every repetition in \`$RAW\`."
  sh results/provenance.sh
  echo "ext4 data=ordered on a 1 GiB image (4 KiB blocks, no lazy init), image file on the host's ext4; $(sqlite3 --version | cut -d' ' -f1,2 | sed 's/^/SQLite /'); $(strace -V | head -1)."
  echo
  echo "Total wall time of each recording, in seconds (the workload's own time in parentheses):"
  echo
  echo "| workload | plain | block only | kernel tracer, no stacks | kernel tracer (default) | strace, no stacks | strace with stacks |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for wl in sqlite seq appends; do
    echo "| $wl | $(cell "$wl" plain) | $(cell "$wl" block) | $(cell "$wl" kernel_nostacks) | $(cell "$wl" kernel) | $(cell "$wl" strace_nostacks) | $(cell "$wl" strace) |"
  done
  echo
  echo "The same, as a ratio to block only (issue 14's targets: with calls at most 1.5x on sqlite, 2x on appends):"
  echo
  echo "| workload | kernel tracer, no stacks | kernel tracer (default) | strace, no stacks | strace with stacks | bytes written | bytes stored |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for wl in sqlite seq appends; do
    echo "| $wl | $(over "$wl" kernel_nostacks) | $(over "$wl" kernel) | $(over "$wl" strace_nostacks) | $(over "$wl" strace) | ${B_W[$wl]} | ${B_S[$wl]} |"
  done
  echo
  echo "\"block only\" is \`brink record --no-syscalls\`. The kernel tracer (\`brink-ebpf\`, the default)"
  echo "copies each traced call's arguments, written data, registers and the top 8 KiB of its stack"
  echo "into a ring buffer without stopping the workload; stacks are unwound after the workload"
  echo "ends. strace (\`--tracer strace\`, \`-f --seccomp-bpf\`) stops the workload at each traced"
  echo "call, and with stacks (\`-k\`) unwinds each through ptrace. Totals include decoding the"
  echo "calls, unwinding and symbolizing the stacks and writing calls.log. \"bytes stored\" is the"
  echo "payload pack (each distinct 4 KiB chunk once) of the default recording. The plain run's"
  echo "fsyncs go to the host disk; under brink a flush is an event in the log and the trace is"
  echo "made durable once, at the end."
} > "$OUT"
mv "$RAW.new" "$RAW"
cat "$OUT"
