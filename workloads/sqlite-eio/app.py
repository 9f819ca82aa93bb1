"""sqlite-eio: an application on real SQLite (Python's sqlite3 module, the system's
libsqlite3) that commits 6 transactions and acknowledges each one after COMMIT returns.
The recorder fails one write to the database's journal or WAL with EIO; this program
shows what SQLite reports and what the application's error policy does with it.

usage: app.py JOURNAL_MODE SYNCHRONOUS POLICY
  POLICY stop:  on an error, give up without acknowledging (exit 1);
         retry: roll back and run the same transaction again, up to 3 tries.
"""
import os
import sqlite3
import sys

journal_mode, synchronous, policy = sys.argv[1:4]
db = sqlite3.connect("app.db", isolation_level=None)
db.execute(f"PRAGMA journal_mode={journal_mode}")
db.execute(f"PRAGMA synchronous={synchronous}")
if journal_mode.upper() == "WAL":
    # No checkpoint while the transactions run: every commit appends to the WAL.
    db.execute("PRAGMA wal_autocheckpoint=0")


def transaction(i):
    db.execute("BEGIN")
    db.execute("INSERT INTO txn VALUES(?, 3)", (i,))
    for k in (1, 2, 3):
        db.execute("INSERT INTO item VALUES(?, ?, randomblob(1500))", (i, k))
    db.execute("UPDATE counter SET n = n + 1")
    db.execute("COMMIT")


for i in range(1, 7):
    for attempt in range(1, 4):
        try:
            transaction(i)
            break
        except sqlite3.Error as e:
            print(f"txn {i} try {attempt}: {e}", file=sys.stderr, flush=True)
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error as e2:
                    print(f"txn {i}: rollback: {e2}", file=sys.stderr, flush=True)
            if policy == "stop":
                sys.exit(1)
    else:
        sys.exit(1)
    with open(os.environ["BRINK_MARK"], "w") as mark:
        mark.write(f"txn {i}\n")
