#!/bin/sh
# The base image: an empty RocksDB database "db", durable before recording (so the
# recorded writes are the workload's: reopening the database and the Puts). Also builds
# kv, outside the file system (build.sh), so that the workload does not pay for it.
set -eu
kv=$(sh "$(dirname "$0")/build.sh")
"$kv" init
sync -f .   # this file system only: a global sync would flush other recordings running at once
