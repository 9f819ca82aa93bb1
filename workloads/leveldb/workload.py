"""leveldb: LevelDB 1.23 (through plyvel) in the recorded file system, its database in
./db. Puts k1..k17, each a 4,000-byte value, acknowledging each one once put() has
returned: a line "put kN async" or "put kN sync" written to $BRINK_MARK.

The write buffer is LevelDB's smallest (64 KiB), so the memtable is full after 16
puts: the 17th put makes LevelDB switch to a new log file and flush the old memtable to
a table file in its background thread (DBImpl::MakeRoomForWrite).

Mode (argument 1):
  async-then-sync  k1..k16 asynchronous (sync=False), then k17 synchronous: the put
                   that switches the log. LevelDB closes the old log without syncing
                   it and syncs only the new one.
  sync             every put synchronous (sync=True).

The database is opened with paranoid_checks, as the checker opens it. Exit 2 when the
harness is wrong (no plyvel, no BRINK_MARK, a bad mode).
"""
import os
import sys
import time

N_PUTS = 17
VALUE_BYTES = 4000
WRITE_BUFFER = 64 * 1024  # LevelDB's minimum (it clips smaller values up to this)


def value(n):
    """The value of kN; the checker computes the same."""
    return (f"value of k{n};".encode() * VALUE_BYTES)[:VALUE_BYTES]


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("async-then-sync", "sync"):
        print("usage: workload.py async-then-sync|sync", file=sys.stderr)
        return 2
    mode = sys.argv[1]
    mark = os.environ.get("BRINK_MARK")
    if not mark:
        print("BRINK_MARK is not set", file=sys.stderr)
        return 2
    try:
        import plyvel
    except ImportError as e:
        print(f"plyvel is not installed for {sys.executable}: {e}", file=sys.stderr)
        return 2
    db = plyvel.DB("db", create_if_missing=True, paranoid_checks=True,
                   write_buffer_size=WRITE_BUFFER)
    for n in range(1, N_PUTS + 1):
        sync = mode == "sync" or n == N_PUTS
        db.put(f"k{n}".encode(), value(n), sync=sync)
        with open(mark, "w") as f:
            f.write(f"put k{n} {'sync' if sync else 'async'}\n")
    # Let the background flush of the old memtable finish (its table in a level, the
    # manifest synced, the old log deleted) before closing: a close while it runs
    # abandons it ("Deleting DB during memtable compaction"), which is not the case
    # studied here. A long-running application would go on writing meanwhile.
    for _ in range(500):
        if any(db.get_property(b"leveldb.num-files-at-level%d" % level) != b"0"
               for level in range(7)):
            break
        time.sleep(0.01)
    else:
        print("the memtable was not flushed within 5 s", file=sys.stderr)
        return 2
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
