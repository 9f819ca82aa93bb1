#!/bin/sh
# Checker for the sqlite workload, through SQLite itself (the sqlite3 shell). Opening the
# database runs SQLite's own recovery (a hot rollback journal is rolled back, a WAL is
# replayed), exactly as the application's next start would.
# Verifies: PRAGMA integrity_check says ok; the txn ids present are 1..m with no gap and
#   m is at least the last acknowledged "txn N"; no transaction is half there: every txn
#   has its 3 items, no item lacks its txn, and the counter equals the number of txns.
# Not verified: unacknowledged transactions may be present or absent (both are correct).
acked=$(sed -n 's/^txn \([0-9][0-9]*\)$/\1/p' "$BRINK_MARKS" | tail -n 1)
acked=${acked:-0}
[ -f app.db ] || { echo "app.db is missing (acknowledged txn $acked)"; exit 1; }
if ! ic=$(sqlite3 -bail app.db 'PRAGMA integrity_check;' 2>&1) || [ "$ic" != ok ]; then
  echo "app.db is corrupt: $(printf %s "$ic" | head -n 1)"; exit 1
fi
if ! r=$(sqlite3 -bail -separator ' ' app.db "
  SELECT count(*), coalesce(max(id), 0), coalesce(min(id), 1) FROM txn;
  SELECT count(*) FROM txn WHERE items != (SELECT count(*) FROM item WHERE item.txn = txn.id);
  SELECT count(*) FROM item WHERE txn NOT IN (SELECT id FROM txn);
  SELECT n FROM counter;" 2>&1); then
  echo "app.db cannot be queried: $(printf %s "$r" | head -n 1)"; exit 1
fi
set -- $r
count=$1 max=$2 min=$3 half=$4 orphans=$5 counter=$6
if [ "$half" -ne 0 ] || [ "$orphans" -ne 0 ] || [ "$counter" -ne "$count" ]; then
  echo "a transaction is half there: $half txns lack items, $orphans items lack their txn, counter $counter for $count txns"; exit 1
fi
if [ "$count" -ne "$max" ] || [ "$min" -ne 1 ]; then
  echo "txn ids have a gap: $count txns, ids $min..$max"; exit 1
fi
if [ "$max" -lt "$acked" ]; then
  echo "acknowledged 'txn $acked' lost: app.db holds txns up to $max"; exit 1
fi
exit 0
