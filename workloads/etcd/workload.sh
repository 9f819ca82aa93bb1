#!/bin/sh
# etcd: an etcd 3.4 member with its data directory ./etcd in the recorded file system
# (bootstrapped by setup.sh, or here when the mode's setup left it empty), serving on
# unix sockets outside it. put.py waits for it, puts k1..k8 one at a time through etcd's
# v3 JSON gateway and acknowledges "put kN" once the server's reply carries the put's
# revision; then the server is stopped (SIGTERM).
set -eu
. "$(dirname "$0")/etcd.sh"
etcd_start "$PWD/etcd"
trap 'etcd_stop; etcd_cleanup' EXIT
# The system's python3, not a version manager's shim (a shim execs dozens of programs,
# each traced with stacks).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -I -S "$(dirname "$0")/put.py" "$etcd_run/c.sock:0" 60
