#!/bin/sh
# sqlite: one sqlite3 process runs 6 transactions on app.db with journal_mode=$1 and
# synchronous=$2. Each transaction inserts a txn row, 3 items of 1500 random bytes (two
# pages) and bumps a counter, so a half-applied one is visible; after each COMMIT
# returns, the workload acknowledges "txn N" (the CLI's .system runs the echo in order).
set -eu
{
  echo "PRAGMA journal_mode=$1;"
  echo "PRAGMA synchronous=$2;"
  for i in 1 2 3 4 5 6; do
    echo "BEGIN;"
    echo "INSERT INTO txn VALUES($i, 3);"
    for k in 1 2 3; do echo "INSERT INTO item VALUES($i, $k, randomblob(1500));"; done
    echo "UPDATE counter SET n = n + 1;"
    echo "COMMIT;"
    echo ".system echo 'txn $i' > \"\$BRINK_MARK\""
  done
} | sqlite3 -bail app.db > /dev/null
