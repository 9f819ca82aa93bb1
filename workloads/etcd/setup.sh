#!/bin/sh
# The base image. $1 = init: an empty file system (the workload bootstraps the member).
# $1 = bootstrapped: a member bootstrapped here (etcd started once on ./etcd, healthy, stopped),
# so that the recording holds the workload's puts, not the initialisation (whose WAL
# preallocates two 64 MB segments and whose bbolt file is created).
set -eu
[ "${1:-}" = init ] && exit 0
. "$(dirname "$0")/etcd.sh"
etcd_start "$PWD/etcd"
trap 'etcd_stop; etcd_cleanup' EXIT
etcd_wait 30 || { echo "etcd did not start:" >&2; tail -5 "$etcd_log" >&2; exit 2; }
etcd_stop
sync -f .   # this file system only: a global sync would flush other recordings running at once
