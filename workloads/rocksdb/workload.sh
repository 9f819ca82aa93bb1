#!/bin/sh
# rocksdb: RocksDB 7.8 through kv (kv.cc, built outside the recorded file system by
# build.sh): open the database of the base image and Put k1..k8 one at a time, with
# WriteOptions.sync = $1 (sync or nosync), acknowledging "put kN" after each Put returns.
# $2 (optional): each value padded to this many bytes (16384: the 64 KiB write buffer
# fills, so the memtable is switched to a new WAL and flushed to an SST mid-run).
set -eu
kv=$(sh "$(dirname "$0")/build.sh")
exec "$kv" put 8 "$1" ${2:-}
