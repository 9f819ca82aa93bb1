#!/bin/sh
# Regenerates results/suite.md: the whole suite, exhaustive where the space allows
# (`--full`), with the prose of intro.md above the table the suite writes, and the run's
# rows (suite.json) kept beside it as raw data. Run as root from the repository root:
#   sh results/suite/run.sh
set -eu
brink=${BRINK:-target/release/brink}
out=${OUT:-/tmp/brink-suite-full}
rm -rf "$out"
"$brink" suite workloads --full --max-states 2000 -o "$out" >/dev/null || true
cp "$out/suite.json" results/suite/suite.json
{
  echo "# The suite, exhaustive run"
  echo
  sh results/provenance.sh
  echo
  cat results/suite/intro.md
  # The suite's own suite.md from its machine section on (its title is replaced above).
  sed -n '/^## Machine/,$p' "$out/suite.md"
  echo
  python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); ok=sum(1 for r in rows if r["outcome"]=="pass"); lg=sum(1 for r in rows if " (logical " in r["mode"]); print(f"{len(rows)} rows ({len(rows)-lg} modes and {lg} logical rows), {ok} with the expected verdict.")' results/suite/suite.json
} > results/suite.md
