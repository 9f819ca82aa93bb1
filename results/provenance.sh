#!/bin/sh
# Prints the provenance line every table in results/ carries: date, commit and machine.
# Used by the scripts that write those tables: `sh results/provenance.sh`.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- crates 2>/dev/null || commit="$commit (with uncommitted changes to crates/)"
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
echo "Measured $(date -u +%Y-%m-%d) at commit $commit on $(nproc) cores ($cpu), $mem, Linux $(uname -r)."
