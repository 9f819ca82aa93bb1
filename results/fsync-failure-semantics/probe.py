"""Probe of a file system's behaviour after a failed fsync, run by brink record with an
injected write error (see run.sh). The setup left `f` holding 16 KiB of 'o' (old),
durable. This overwrites it with 'n' (new), fsyncs, fsyncs again, re-reads it from the
page cache, re-reads it after dropping the file's cached pages, and checks the file
system still takes a durable write. Prints one `key=value` per line."""
import os

SIZE = 16384


def content(data):
    if data == b"n" * SIZE:
        return "new"
    if data == b"o" * SIZE:
        return "old"
    return "mixed(%d new)" % data.count(b"n")


def attempt(what):
    try:
        what()
        return "ok"
    except OSError as e:
        return os.strerror(e.errno).replace(" ", "-")


fd = os.open("f", os.O_RDWR)
os.pwrite(fd, b"n" * SIZE, 0)
print("fsync1=" + attempt(lambda: os.fsync(fd)))
print("fsync2=" + attempt(lambda: os.fsync(fd)))
print("read_cached=" + content(os.pread(fd, SIZE, 0)))
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
print("read_evicted=" + content(os.pread(fd, SIZE, 0)))
os.close(fd)


def still_writable():
    g = os.open("g", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(g, b"x")
    os.fsync(g)
    os.close(g)


print("new_write=" + attempt(still_writable))
