#!/bin/bash
# A real one-node Slurm cluster on this machine runs a sharded exploration through
# submit.sh, and its merge must equal a one-machine `brink explore` of the same trace.
#   cluster/slurm/test-one-node.sh      (root; Debian 12: apt-get install slurm-wlm munge)
# Environment: BRINK (the binary, default `brink` on PATH), WORKLOAD (default
# append-log-fixed; append-log-buggy has vulnerabilities), SHARDS (3), WAIT (seconds the
# jobs may take, 600).
# Everything lives in a temporary directory /tmp/slurm-brink-test.*: munged (as the munge
# user, its own key and socket), slurm.conf, slurmctld and slurmd (their own ports, state,
# spool, logs and pid files). On every exit the jobs are cancelled, the daemons stopped,
# any process still naming the directory killed, and the directory removed.
# Checks: the node comes up idle; every array task COMPLETED with exit 0 and says which
# shard it ran; task 1 resumed the stopped attempt at shard 1 left before submission;
# the merge job ran after them, merged every shard, and exited as the one-machine run
# did (0 clean, 1 violations); cluster/compare.py finds the merge equal to the
# one-machine results. Prints "test-one-node: PASS: …" or "test-one-node: FAIL: …"
# (exit 1) as its last line.
set -euo pipefail
test_name=test-one-node
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=testlib.sh
. "$repo/cluster/testlib.sh"
SHARDS=${SHARDS:-3}
WAIT=${WAIT:-600}
t0=$(now)

[ "$(id -u)" -eq 0 ] || fail "run as root (slurmd, munged and brink's loop devices need it)"
for c in slurmctld slurmd sbatch squeue sinfo scontrol scancel munged munge unmunge runuser ss python3; do
  command -v "$c" >/dev/null || fail "no $c on PATH (apt-get install slurm-wlm munge)"
done
id munge >/dev/null 2>&1 || fail "no munge user (apt-get install munge)"

tmp=$(mktemp -d /tmp/slurm-brink-test.XXXXXX)
chmod 711 "$tmp" # the munge user must reach its socket below
conf=$tmp/slurm.conf
msock=$tmp/munge/munge.socket
ctld_pid='' slurmd_pid='' munged_pid=''

alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
stop() { # PID: SIGTERM, up to 20 s to go, then SIGKILL
  alive "$1" || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do alive "$1" || return 0; sleep 0.2; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$? p ids left=""
  trap - EXIT INT TERM
  set +e
  if alive "$ctld_pid"; then
    ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086 # one word per job
      scancel $ids 2>/dev/null
      for _ in $(seq 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
  fi
  stop "$slurmd_pid"
  stop "$ctld_pid"
  stop "$munged_pid"
  # Whatever still names the directory (a job step slurmd left, a daemon that forked).
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    if grep -qsF "$tmp" "/proc/$p/cmdline" "/proc/$p/environ"; then
      left="$left $p($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-40))"
      kill -KILL "$p" 2>/dev/null
    fi
  done
  grep -F " $tmp" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l
  rm -rf "$tmp"
  if [ -n "$left" ]; then
    echo "$test_name: killed processes left behind:$left" >&2
    [ "$rc" -ne 0 ] || { echo "$test_name: FAIL: processes were left behind" >&2; rc=1; }
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

free_port() { # the first port from $1 nobody listens on
  local p
  for p in $(seq "$1" "$(($1 + 500))"); do
    [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }
  done
  fail "no free TCP port from $1"
}

# --- munge: its own key, socket, pid, log and seed files, run as the munge user
mkdir "$tmp/munge"
chown munge:munge "$tmp/munge"
chmod 711 "$tmp/munge" # munged wants its socket's directory searchable by all
if command -v mungekey >/dev/null; then
  runuser -u munge -- mungekey --create --keyfile "$tmp/munge/munge.key" || fail "mungekey failed"
else
  dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
  chown munge:munge "$tmp/munge/munge.key"
  chmod 400 "$tmp/munge/munge.key"
fi
runuser -u munge -- munged --socket="$msock" --key-file="$tmp/munge/munge.key" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" \
  --seed-file="$tmp/munge/munged.seed" ||
  { logtail "$tmp/munge/munged.log"; fail "munged did not start"; }
munged_pid=$(cat "$tmp/munge/munged.pid")
munge -n -S "$msock" | unmunge -S "$msock" >/dev/null ||
  { logtail "$tmp/munge/munged.log"; fail "munge credentials do not round-trip through $msock"; }

# --- slurm.conf: one node (this machine as `slurmd -C` describes it), partition `test`
host=$(hostname -s)
node=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=') ||
  node="NodeName=$host CPUs=$(nproc) RealMemory=$(free -m | awk '/^Mem:/ { print $2 }')"
ctld_port=$(free_port 16817)
slurmd_port=$(free_port $((ctld_port + 1)))
mkdir "$tmp/state" "$tmp/spool"
cat >"$conf" <<EOF
ClusterName=brinktest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$msock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=900
MailProg=/bin/true
$node State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf

# --- slurmctld and slurmd (daemonized; their pid files name them)
t=$(now)
wait_pidfile() { # FILE LOG NAME
  for _ in $(seq 50); do
    if [ -s "$1" ] && alive "$(cat "$1")"; then cat "$1"; return; fi
    sleep 0.2
  done
  logtail "$2"
  fail "$3 did not start (see its log above)"
}
slurmctld -f "$conf" || { logtail "$tmp/slurmctld.log"; fail "slurmctld -f $conf failed"; }
ctld_pid=$(wait_pidfile "$tmp/slurmctld.pid" "$tmp/slurmctld.log" slurmctld)
slurmd -f "$conf" || { logtail "$tmp/slurmd.log"; fail "slurmd -f $conf failed"; }
slurmd_pid=$(wait_pidfile "$tmp/slurmd.pid" "$tmp/slurmd.log" slurmd)
state=''
for _ in $(seq 120); do
  state=$(sinfo -h -N -n "$host" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || { logtail "$tmp/slurmctld.log" "$tmp/slurmd.log"; fail "node $host is '${state:-unknown}', not idle, 60 s after slurmd started"; }
echo "$test_name: one-node cluster up ($node; ports $ctld_port/$slurmd_port) in $(since "$t")"

# --- the trace, the submission, the wait
t=$(now)
record_trace "$tmp/trace"
echo "$test_name: recorded $WORKLOAD in $(since "$t")"
# An earlier attempt at shard 1 that stopped before checking anything (--time-budget 0
# stands in for a killed task): its array task must resume it.
"$BRINK" explore "$tmp/trace" "${explore_flags[@]}" --shard "1/$SHARDS" -o "$tmp/results/shard-1" \
  --time-budget 0 >"$tmp/attempt-1.log" 2>&1 || fail "brink explore --shard 1/$SHARDS --time-budget 0 failed: $(why "$tmp/attempt-1.log")"
t=$(now)
cd "$tmp"
ids=$("$here/submit.sh" "$tmp/trace" "$tmp/results" "$SHARDS" "${explore_flags[@]}") ||
  fail "submit.sh exited $?"
read -r aid mid <<<"$ids"
[ -n "$mid" ] || fail "submit.sh printed '$ids', not 'ARRAYJOBID MERGEJOBID'"
tasks() { scontrol -o show job "$aid" 2>/dev/null | grep -o 'ArrayTaskId=[0-9]* JobState=[A-Z_]*' | tr '\n' ' '; }
deadline=$(($(date +%s) + WAIT))
most=0
while :; do
  st=$(squeue -h -j "$mid" -o '%T %r' 2>/dev/null || true)
  case $st in
    *DependencyNeverSatisfied*)
      logtail "$tmp"/results/logs/explore-*.out
      fail "a shard failed, so the merge can never run: $(tasks)"
      ;;
    '' | COMPLETED* | FAILED* | CANCELLED* | TIMEOUT* | NODE_FAIL* | OUT_OF_MEMORY* | BOOT_FAIL* | DEADLINE* | PREEMPTED*) break ;;
  esac
  r=$(squeue -h -j "$aid" -t RUNNING -o %i 2>/dev/null | wc -l)
  [ "$r" -le "$most" ] || most=$r
  [ "$(date +%s)" -lt "$deadline" ] || fail "the jobs are not done after ${WAIT}s: merge '$st', tasks: $(tasks)"
  sleep 0.5
done
jobs_time=$(since "$t")

# --- what the jobs did
n_ok=0
while read -r line; do
  task=$(grep -o 'ArrayTaskId=[0-9]*' <<<"$line" | cut -d= -f2)
  js=$(grep -o 'JobState=[A-Z_]*' <<<"$line" | cut -d= -f2)
  ec=$(grep -o ' ExitCode=[0-9:]*' <<<"$line" | cut -d= -f2)
  if [ "$js" != COMPLETED ] || [ "$ec" != 0:0 ]; then
    logtail "$tmp/results/logs/explore-${aid}_$task.out"
    fail "array task $task: $js, exit $ec"
  fi
  grep -q "^explore-array: shard $task/$SHARDS on " "$tmp/results/logs/explore-${aid}_$task.out" ||
    fail "array task $task's output does not say it ran shard $task/$SHARDS"
  n_ok=$((n_ok + 1))
done < <(scontrol -o show job "$aid")
grep -q "^explore-array: .*exists (an earlier attempt): resuming" "$tmp/results/logs/explore-${aid}_1.out" ||
  fail "array task 1 did not resume the earlier attempt at shard 1"
[ "$n_ok" -eq "$SHARDS" ] || fail "$n_ok array tasks COMPLETED, not $SHARDS"
mline=$(scontrol -o show job "$mid") || fail "scontrol knows no merge job $mid"
mstate=$(grep -o 'JobState=[A-Z_]*' <<<"$mline" | cut -d= -f2)
mexit=$(grep -o ' ExitCode=[0-9:]*' <<<"$mline" | cut -d= -f2)
mlog=$tmp/results/logs/merge-$mid.out
[ -f "$mlog" ] || fail "no merge job output $mlog (merge job $mstate, exit $mexit)"
grep -q "merged $SHARDS of $SHARDS shards" "$mlog" || { logtail "$mlog"; fail "the merge job's output does not say 'merged $SHARDS of $SHARDS shards' ($mstate, exit $mexit)"; }
[ -f "$tmp/results/merged/summary.json" ] || fail "no $tmp/results/merged/summary.json"

# --- the same exploration on this machine, and the comparison
t=$(now)
one_machine "$tmp/trace" "$tmp/one" "$tmp/one.log"
one_time=$(since "$t")
if [ "$mexit" != "$one_rc:0" ]; then
  logtail "$mlog" "$tmp/one.log"
  fail "the merge job exited $mexit ($mstate), the one-machine explore $one_rc"
fi
cmp=$(compare "$tmp/results/merged" "$tmp/one")
echo "$test_name: $SHARDS array tasks COMPLETED (at most $most running at once seen), merge $mstate exit $mexit, in $jobs_time; one machine: exit $one_rc in $one_time"
echo "$test_name: $cmp"
echo "$test_name: PASS: $WORKLOAD, $SHARDS shards on one-node Slurm = one machine (total $(since "$t0"))"
