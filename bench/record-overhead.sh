#!/usr/bin/env bash
# Benchmark: what recording costs. Runs the same workloads on a plain loop-mounted
# image, under `brink record --no-syscalls` (block I/O only) and under `brink record`
# (block I/O and the system calls, under strace), side by side in one run (alternating,
# REPS times each, median taken), and writes results/bench/record-overhead.md.
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

# brink WORKLOAD [FLAGS] -> "total_s workload_s written stored"
brink_run() {
  local trace=$WORK/trace-$1 t0 wall j
  rm -rf "$trace"
  t0=$(now)
  TMPDIR=$WORK "$BRINK" record --fs ext4 --mount-opts data=ordered --size $SIZE ${2:-} -o "$trace" -- sh "$WORK/$1.sh" 2>/dev/null
  local total; total=$(echo "$(now) - $t0" | bc)
  j=$("$BRINK" show --json "$trace")
  wall=$(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["workload_wall_ms"]/1000, d["bytes_written"], d["bytes_stored"])')
  echo "$total $wall"
  rm -rf "$trace"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A P_TOT P_WL N_TOT N_WL S_TOT S_WL B_TOT B_WL B_W B_S
printf 'workload\trep\tplain_total_s\tplain_workload_s\tblock_total_s\tblock_workload_s\tnostacks_total_s\tnostacks_workload_s\tcalls_total_s\tcalls_workload_s\tbytes_written\tbytes_stored\n' > "$RAW.new"
for wl in sqlite seq appends; do
  for r in $(seq 1 "$REPS"); do
    read -r pt pw < <(plain "$wl")
    read -r nt nw _ _ < <(brink_run "$wl" --no-syscalls)
    read -r st sw _ _ < <(brink_run "$wl" --no-stacks)
    read -r bt bw bwr bst < <(brink_run "$wl")
    P_TOT[$wl]+="$pt "; P_WL[$wl]+="$pw "; N_TOT[$wl]+="$nt "; N_WL[$wl]+="$nw "; B_TOT[$wl]+="$bt "; B_WL[$wl]+="$bw "
    S_TOT[$wl]+="$st "; S_WL[$wl]+="$sw "
    B_W[$wl]=$bwr; B_S[$wl]=$bst
    echo "$wl rep $r: plain ${pt}s/${pw}s | block only ${nt}s/${nw}s | calls, no stacks ${st}s/${sw}s | calls ${bt}s/${bw}s (total/workload)" >&2
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$r" "$pt" "$pw" "$nt" "$nw" "$st" "$sw" "$bt" "$bw" "$bwr" "$bst" >> "$RAW.new"
  done
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

{
  echo "# Recording overhead: plain loop mount vs \`brink record\`, without and with system calls"
  echo
  echo "By \`bench/record-overhead.sh\` (REPS=$REPS, SQLITE_TXNS=$SQLITE_TXNS, SEQ_MIB=$SEQ_MIB, APPENDS=$APPENDS), medians; every repetition in \`$RAW\`."
  sh results/provenance.sh
  echo "ext4 data=ordered on a 1 GiB image (4 KiB blocks, no lazy init), image file on the host's ext4; $(sqlite3 --version | cut -d' ' -f1,2 | sed 's/^/SQLite /'); $(strace -V | head -1)."
  echo
  echo "Total wall time of each recording, in seconds (the workload's own time in parentheses):"
  echo
  echo "| workload | plain | block only | calls, no stacks | calls and stacks | no stacks / block only | stacks / block only | bytes written | bytes stored |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for wl in sqlite seq appends; do
    pw=$(med "${P_WL[$wl]}"); nw=$(med "${N_WL[$wl]}"); sw=$(med "${S_WL[$wl]}"); bw=$(med "${B_WL[$wl]}")
    pt=$(med "${P_TOT[$wl]}"); nt=$(med "${N_TOT[$wl]}"); st=$(med "${S_TOT[$wl]}"); bt=$(med "${B_TOT[$wl]}")
    printf '| %s | %.3f (%.3f) | %.3f (%.3f) | %.3f (%.3f) | %.3f (%.3f) | %s | %s | %s | %s |\n' "$wl" "$pt" "$pw" "$nt" "$nw" \
      "$st" "$sw" "$bt" "$bw" "$(ratio "$st" "$nt")" "$(ratio "$bt" "$nt")" "${B_W[$wl]}" "${B_S[$wl]}"
  done
  echo
  echo "\"block only\" is \`brink record --no-syscalls\`; \"calls, no stacks\" is \`--no-stacks\` (strace"
  echo "\`-f --seccomp-bpf\`: a ptrace stop per traced call); \"calls and stacks\" is the default (\`-k\` too:"
  echo "each traced call's stack unwound through ptrace)."
  echo "Targets (issue 14): with calls at most 1.5x block only on sqlite, 2x on appends, in total"
  echo "wall time of the recording. The total includes parsing strace's output, symbolizing the"
  echo "stacks and writing calls.log. \"bytes stored\" is the payload pack (each distinct 4 KiB"
  echo "chunk once), with calls. The plain run's fsyncs go to the host disk; under brink a flush"
  echo "is an event in the log and the trace is made durable once, at the end."
} > "$OUT"
mv "$RAW.new" "$RAW"
cat "$OUT"
