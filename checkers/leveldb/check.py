#!/usr/bin/python3
"""Checker for the leveldb workload, through LevelDB itself (1.23, via plyvel): opening
./db with create_if_missing, as the workload's next start would, runs LevelDB's own
recovery (it replays every log file the manifest still lists). Always opened with
paranoid_checks=True: a damaged log record is then an error on open, not a record
silently skipped.

Verifies: the database opens; every put acknowledged up to the last acknowledged
  synchronous put ("put kN sync" in $BRINK_MARKS), asynchronous ones included, reads
  back its value (LevelDB's docs: a synchronous write is durable, and a crash loses at
  most the asynchronous writes after the last synchronous one); every acknowledged
  synchronous put reads back; no key holds a value the workload never wrote.
Not verified: unacknowledged puts, and asynchronous puts acknowledged after the last
  acknowledged synchronous one, may be present or absent (both are correct).

Exit 0 consistent; 1 a violation, the first stdout line saying what was lost, or
"leveldb cannot open db on this state: <LevelDB's error>" (the application cannot
recover); 2 when the harness is wrong (no plyvel, no $BRINK_MARKS, the state not
writable, an unexpected Python error).
"""
import os
import re
import sys

VALUE_BYTES = 4000  # as workloads/leveldb/workload.py


def value(n):
    return (f"value of k{n};".encode() * VALUE_BYTES)[:VALUE_BYTES]


def harness(msg):
    print(f"checker failure: {msg}")
    sys.exit(2)


def leveldb_error(e):
    """plyvel's exception as LevelDB's status text (plyvel gives it as bytes)."""
    a = e.args[0] if e.args else e
    return a.decode(errors="replace") if isinstance(a, bytes) else str(a)


def violation(msg):
    print(msg)
    sys.exit(1)


def main():
    try:
        import plyvel
    except ImportError as e:
        harness(f"plyvel is not installed for {sys.executable}: {e}")
    marks_path = os.environ.get("BRINK_MARKS")
    if not marks_path:
        harness("BRINK_MARKS is not set")
    try:
        with open(marks_path) as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError as e:
        harness(f"cannot read BRINK_MARKS: {e}")
    marks = []  # (n, sync) in acknowledgement order
    for l in lines:
        m = re.fullmatch(r"put k(\d+) (sync|async)", l)
        if not m:
            harness(f"unexpected mark {l!r}")
        marks.append((int(m.group(1)), m.group(2) == "sync"))
    if not os.access(".", os.W_OK):
        harness("the recovered state is not writable (LevelDB's recovery writes)")

    try:
        db = plyvel.DB("db", create_if_missing=True, paranoid_checks=True)
    except plyvel.Error as e:
        # LevelDB refuses this state (typically "Corruption: ..."): the application
        # cannot start on it.
        violation(f"leveldb cannot open db on this state: {leveldb_error(e)}")

    try:
        last_sync = max((i for i, (_, s) in enumerate(marks) if s), default=-1)
        for i, (n, sync) in enumerate(marks):
            if i > last_sync:
                break
            got = db.get(f"k{n}".encode())
            if got != value(n):
                what = "absent" if got is None else f"a wrong value of {len(got)} bytes"
                why = (" (a synchronous put)" if sync else
                       f" (an asynchronous put), though the later synchronous"
                       f" 'put k{marks[last_sync][0]}' was acknowledged")
                violation(f"acknowledged 'put k{n}' lost: k{n} is {what}{why}")
        for key, val in db.iterator():
            m = re.fullmatch(rb"k(\d+)", key)
            if not m or val != value(int(m.group(1))):
                violation(f"db holds {key!r} with a value never written ({len(val)} bytes)")
    except plyvel.Error as e:
        violation(f"leveldb cannot read db on this state: {leveldb_error(e)}")
    finally:
        db.close()
    sys.exit(0)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # a bug of the harness, not a verdict on the state
        harness(f"{type(e).__name__}: {e}")
