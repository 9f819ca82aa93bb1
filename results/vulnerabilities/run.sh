#!/bin/sh
# Regenerates results/vulnerabilities.md and the report screenshot: runs the suite's
# buggy workloads (bounded, as the suite does), triages each mode with `brink report
# --json`, tabulates the vulnerabilities, and renders one HTML report in headless
# Chromium. Run as root from the repository root: sh results/vulnerabilities/run.sh
set -eu
brink=${BRINK:-target/release/brink}
out=${OUT:-/tmp/brink-vulnerabilities}
rm -rf "$out"
"$brink" suite workloads atomic-replace-buggy stale-data append-log-buggy fsync-retry sqlite-eio -o "$out" >/dev/null || true
rm -rf results/vulnerabilities/raw && mkdir -p results/vulnerabilities/raw
python3 results/vulnerabilities/table.py "$brink" "$out" results/vulnerabilities/raw > results/vulnerabilities.md
"$brink" report "$out/atomic-replace-buggy/data=ordered/results" --html results/vulnerabilities/atomic-replace-buggy.html >/dev/null
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,900 \
  --screenshot=results/vulnerabilities/report.png "file://$PWD/results/vulnerabilities/atomic-replace-buggy.html" 2>/dev/null
