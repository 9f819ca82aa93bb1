#!/bin/sh
# Checker for the rocksdb workload, through RocksDB itself: `kv check` (kv.cc in the
# workload's folder, $1) opens the recovered database as the application's next start
# would, with the WAL recovery mode $2 (default point-in-time: kPointInTimeRecovery,
# RocksDB 7.8's default), then:
# Verifies: every acknowledged "put kN" reads back as "value N"; no key holds a value
#   never written; the keys present are a prefix k1..kM (point-in-time recovery promises
#   no hole: a later Put recovered while an earlier one is lost).
# A database that RocksDB refuses to open is a violation (the application cannot
# recover); a checker that cannot run (kv not built, no $BRINK_MARKS) exits 2.
# Not verified: unacknowledged keys may be present or absent; SST/MANIFEST internals
#   beyond what DB::Open checks.
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-$here/../../workloads/rocksdb}
kv=$(sh "$src/build.sh") || { echo "cannot build kv from $src/kv.cc"; exit 2; }
exec "$kv" check "${2:-point-in-time}"
