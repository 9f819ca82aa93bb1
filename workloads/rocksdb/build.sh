#!/bin/sh
# Build kv.cc (beside this script) once, outside the recorded file system, and print the
# binary's path: ${TMPDIR:-/tmp}/brink-rocksdb-<first 16 hex of the source's sha256>/kv.
# Concurrent callers (a setup and parallel checkers) wait on one lock; the binary appears
# by rename, so no caller ever runs a half-written one. Exit 2 if it cannot be built.
set -eu
src=$(cd "$(dirname "$0")" && pwd)/kv.cc
sum=$(sha256sum "$src" | cut -c1-16)
cache=${TMPDIR:-/tmp}/brink-rocksdb-$sum
bin=$cache/kv
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -x "$bin" ]; then
      g++ -O1 -std=c++17 -o "$bin.tmp" "$src" -lrocksdb > "$cache/build.log" 2>&1 \
        || { echo "building kv.cc failed (see $cache/build.log)" >&2; exit 2; }
      mv "$bin.tmp" "$bin"
    fi
  ) 9> "$cache/lock" || exit 2
fi
echo "$bin"
