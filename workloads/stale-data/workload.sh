#!/bin/sh
# stale-data: a careless application writes a 256 KiB report without fsyncing it, then
# appends to its log, fsyncs the log, and acknowledges the report as saved. fsync of the
# log commits the journal transaction that also holds the report's new block allocation.
# Under data=writeback nothing orders the report's data before that commit, so a crash
# can leave the report pointing at blocks that still hold another file's old bytes.
set -eu
head -c 262144 /dev/zero | tr '\0' 'P' > report.dat   # no fsync: careless
echo "report saved" >> app.log
sync app.log                                          # fsync(app.log) commits the journal
echo "report saved" > "$BRINK_MARK"
