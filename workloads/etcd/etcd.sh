# Sourced by setup.sh and workload.sh (and by checkers/etcd/check.sh, given this folder):
# start and stop one etcd 3.4 member whose data directory is ./etcd in the working
# directory (the recorded file system), serving on unix sockets in a private directory
# outside it, so that parallel runs never share a port or a socket.
#
# etcd_start DATA_DIR: start etcd in the background ($etcd_pid, log in $etcd_log), with
#   the sockets in a new directory $etcd_run (etcd names a unix socket by the URL's host,
#   relative to its working directory, and wants host:port: unix://c.sock:0).
#   Raft ticks of 10 ms (election after 100 ms, not 1 s): a single member elects itself
#   sooner; persistence is the same (the WAL is fsynced before a put is answered).
# etcd_http PATH: curl GET of one of the member's HTTP endpoints.
# etcd_healthy: the member answers /health with true (it has a leader and can read).
# etcd_wait SECONDS: 0 once healthy, 1 if etcd exited, 2 if not healthy in time.
# etcd_ctl ARGS: etcdctl against it (the checker).   etcd_stop [SIG]: SIG (default
#   TERM), wait (SIGKILL after 10 s).   etcd_cleanup: remove $etcd_run.
etcd_start() {
  etcd_run=$(mktemp -d "${TMPDIR:-/tmp}/brink-etcd-XXXXXX")
  etcd_log=$etcd_run/etcd.log
  : > "$etcd_log"
  (cd "$etcd_run" && exec etcd --name m --data-dir "$1" --logger zap --log-outputs stderr \
    --heartbeat-interval 10 --election-timeout 100 \
    --listen-client-urls unix://c.sock:0 --advertise-client-urls unix://c.sock:0 \
    --listen-peer-urls unix://p.sock:0 --initial-advertise-peer-urls unix://p.sock:0 \
    --initial-cluster m=unix://p.sock:0 > "$etcd_log" 2>&1) &
  etcd_pid=$!
}

etcd_ctl() {
  (cd "$etcd_run" && ETCDCTL_API=3 etcdctl --endpoints unix://c.sock:0 --dial-timeout 2s \
    --command-timeout 5s "$@")
}

etcd_http() {
  curl -s --max-time 2 --unix-socket "$etcd_run/c.sock:0" "http://localhost$1"
}

etcd_healthy() {
  etcd_http /health 2> /dev/null | grep -q '"health":"true"'
}

etcd_wait() {
  _deadline=$(( $(date +%s) + $1 ))
  while :; do
    kill -0 "$etcd_pid" 2> /dev/null || return 1
    etcd_healthy && return 0
    [ "$(date +%s)" -lt "$_deadline" ] || return 2
    sleep 0.1
  done
}

etcd_stop() {
  if kill -"${1:-TERM}" "$etcd_pid" 2> /dev/null; then
    _i=0
    while kill -0 "$etcd_pid" 2> /dev/null && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
    kill -KILL "$etcd_pid" 2> /dev/null || true
  fi
  wait "$etcd_pid" 2> /dev/null || true
}

etcd_cleanup() {
  rm -rf "$etcd_run"
}
