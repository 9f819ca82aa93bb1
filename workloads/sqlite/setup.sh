#!/bin/sh
# The base image: app.db with the schema, in the journal mode under test ($1: DELETE or
# WAL; WAL is a persistent property of the database file). Durable before recording.
set -eu
sqlite3 -bail app.db <<SQL
PRAGMA journal_mode=$1;
CREATE TABLE txn(id INTEGER PRIMARY KEY, items INTEGER NOT NULL);
CREATE TABLE item(txn INTEGER NOT NULL, k INTEGER NOT NULL, v BLOB NOT NULL);
CREATE TABLE counter(n INTEGER NOT NULL);
INSERT INTO counter VALUES(0);
SQL
sync -f .   # this file system only: a global sync would flush other recordings running at once
