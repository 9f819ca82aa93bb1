#!/bin/sh
# The base image: app.db with the schema (as the sqlite workload) and its journal or
# WAL file already grown to 1 MiB and kept, so the file's blocks exist before the
# workload and an injection can aim at them (file:app.db-journal, file:app.db-wal), as
# in a long-running database whose journal is reused. $1: PERSIST or WAL.
set -eu
if [ "$1" = WAL ]; then keep=".filectrl persist_wal 1"; else keep=""; fi
sqlite3 -bail app.db <<SQL
$keep
PRAGMA journal_mode=$1;
PRAGMA wal_autocheckpoint=0;
CREATE TABLE txn(id INTEGER PRIMARY KEY, items INTEGER NOT NULL);
CREATE TABLE item(txn INTEGER NOT NULL, k INTEGER NOT NULL, v BLOB NOT NULL);
CREATE TABLE counter(n INTEGER NOT NULL);
INSERT INTO counter VALUES(0);
CREATE TABLE junk(v BLOB NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250)
  INSERT INTO junk SELECT randomblob(1500) FROM n;
UPDATE junk SET v = randomblob(1500);
SQL
sync -f .   # this file system only: a global sync would flush other recordings running at once
