//! The recorder's disk: a FUSE file system with two files, `disk.img` (the disk image,
//! put under a loop device) and `mark` (the workload's acknowledgement channel).
//!
//! Why this gives an exact, ordered log:
//! - The session runs one thread, so requests are handled one at a time, and a request
//!   is in the ordered log queue before it is answered (a logger thread hashes payloads
//!   and appends them to the trace behind it, off the I/O path; the queue is FIFO, so
//!   the trace order is the queue order). The loop driver in buffered mode has one write in
//!   flight, and a flush (`FSYNC`) reaches us only after the writes it covers were
//!   answered: the log order is the completion order, and a flush covers exactly the
//!   writes logged before it.
//! - Writeback cache is never granted (it would reorder writes inside a flush interval),
//!   and FSYNC and FALLOCATE are implemented: a single ENOSYS answer would make the
//!   kernel silently stop sending flushes or discards for the rest of the mount.
//! - A line written to `mark` is queued by the same thread before the `write(2)` returns,
//!   so it falls exactly between the block requests completed before and after it.
//!
//! Who may write what: the mount allows other users (`allow_other`) and lets the kernel
//! check modes (`default_permissions`). `mark` is mode 0666, so a workload that runs the
//! application as another user (PostgreSQL refuses root; `setpriv`, `su`, `runuser`)
//! can acknowledge from it; `disk.img` is 0600, root's alone. The recorder's work
//! directory, which holds the mount, is 0711 so that such a user can reach `mark`.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::inject::Armed;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, WriteFlags as FuseWriteFlags,
};

pub(crate) const DISK_NAME: &str = "disk.img";
pub(crate) const MARK_NAME: &str = "mark";
/// `mark` is writable by every user of the workload (see the module docs).
const MARK_MODE: u16 = 0o666;
const ROOT: INodeNo = INodeNo(1);
const DISK: INodeNo = INodeNo(2);
const MARK: INodeNo = INodeNo(3);
const TTL: Duration = Duration::from_secs(60);
/// `PR_SET_IO_FLUSHER` (linux/prctl.h; not in the libc crate for Linux): the daemon
/// writes back pages of the file system it serves, so it must not itself wait on
/// writeback under memory pressure.
const PR_SET_IO_FLUSHER: libc::c_int = 57;

/// Mark the calling thread as one that writeback depends on. Failure (old kernel, no
/// capability) only loses the memory-pressure protection. Neither `nix` nor std wraps
/// this prctl, hence the crate's one unsafe block.
pub(crate) fn set_io_flusher() {
    // SAFETY: PR_SET_IO_FLUSHER takes integer arguments only; the kernel reads no memory
    // from this process, and the call changes a flag of the calling thread alone.
    unsafe {
        libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
    }
}

/// Which part of the run the disk is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// mkfs and setup: applied to the image, not logged (they make the base image).
    Prepare,
    /// Logged.
    Recording,
    /// After the final unmount: nothing should arrive; anything that does is counted.
    Done,
}

/// One block event or mark on its way to the trace.
pub(crate) enum Op {
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Flush,
    Discard {
        offset: u64,
        len: u64,
    },
    WriteZeroes {
        offset: u64,
        len: u64,
    },
    Mark(String),
    /// A request failed by fault injection.
    Error(brink_trace::Failed),
}

pub(crate) struct Log {
    pub phase: Phase,
    /// The ordered queue to the logger thread, present while recording.
    pub queue: Option<SyncSender<Op>>,
    /// Block requests that arrived in the `Done` phase (must stay zero).
    pub unrecorded: u64,
    /// Marks written outside the `Recording` phase (during setup); not logged.
    pub ignored_marks: u64,
    /// Fault injection, armed when recording starts.
    pub faults: Armed,
}

/// Live counters for progress display.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
}

pub(crate) struct DiskFs {
    pub backing: File,
    pub size: u64,
    pub log: Arc<Mutex<Log>>,
    pub counters: Arc<Counters>,
}

fn attr(ino: INodeNo, size: u64) -> FileAttr {
    let (kind, perm) = match ino {
        ROOT => (FileType::Directory, 0o755),
        MARK => (FileType::RegularFile, MARK_MODE),
        _ => (FileType::RegularFile, 0o600),
    };
    FileAttr {
        ino,
        size,
        // st_blocks counts 512-byte units whatever the disk's sector size.
        blocks: size.div_ceil(512),
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm,
        nlink: if ino == ROOT { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl DiskFs {
    fn attr_of(&self, ino: INodeNo) -> Option<FileAttr> {
        match ino {
            ROOT => Some(attr(ROOT, 0)),
            DISK => Some(attr(DISK, self.size)),
            MARK => Some(attr(MARK, 0)),
            _ => None,
        }
    }

    /// Queue one event if recording. Returns false when the request must fail (the
    /// logger stopped on an error, which `record` reports).
    fn log(&self, op: impl FnOnce() -> Op) -> bool {
        let mut log = self.log.lock().expect("log lock");
        match log.phase {
            Phase::Prepare => true,
            Phase::Done => {
                log.unrecorded += 1;
                true
            }
            Phase::Recording => {
                let queue = log.queue.as_ref().expect("a queue while recording");
                if queue.send(op()).is_err() {
                    return false;
                }
                self.counters.events.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// While recording, ask the injection rules about a request; a request they fail is
    /// logged as an error (and must then be answered with EIO, untouched).
    fn injected(&self, decide: impl FnOnce(&mut Armed) -> bool, failed: brink_trace::Failed) -> bool {
        let mut log = self.log.lock().expect("log lock");
        if log.phase != Phase::Recording || !decide(&mut log.faults) {
            return false;
        }
        let queue = log.queue.as_ref().expect("a queue while recording");
        // If the logger stopped, `record` reports it; the request fails either way.
        let _ = queue.send(Op::Error(failed));
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn in_range(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.size)
    }
}

impl Filesystem for DiskFs {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> std::io::Result<()> {
        set_io_flusher();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = match (parent, name.to_str()) {
            (ROOT, Some(DISK_NAME)) => DISK,
            (ROOT, Some(MARK_NAME)) => MARK,
            _ => return reply.error(Errno::ENOENT),
        };
        reply.entry(&TTL, &self.attr_of(ino).expect("known inode"), Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The disk has a fixed size; truncating `mark` (shell `>` redirection) is a no-op.
        if ino == DISK && size.is_some_and(|s| s != self.size) {
            return reply.error(Errno::EPERM);
        }
        match self.attr_of(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match ino {
            DISK => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            // Direct I/O: every write(2) to the mark file reaches the daemon at once.
            MARK => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != DISK || offset >= self.size {
            return reply.data(&[]);
        }
        let n = (size as u64).min(self.size - offset) as usize;
        let mut buf = vec![0u8; n];
        match self.backing.read_exact_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: FuseWriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match ino {
            DISK => {
                if !self.in_range(offset, data.len() as u64) {
                    return reply.error(Errno::ENOSPC);
                }
                if data.is_empty() {
                    return reply.written(0);
                }
                let len = data.len() as u64;
                if self.injected(|f| f.write(offset, len), brink_trace::Failed::Write { offset, len }) {
                    return reply.error(Errno::EIO);
                }
                if self.backing.write_all_at(data, offset).is_err() {
                    return reply.error(Errno::EIO);
                }
                self.counters.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                if self.log(|| Op::Write { offset, data: data.to_vec() }) {
                    reply.written(data.len() as u32)
                } else {
                    reply.error(Errno::EIO)
                }
            }
            MARK => {
                let text = String::from_utf8_lossy(data);
                let lines: Vec<&str> =
                    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.is_empty()).collect();
                if lines.iter().any(|l| l.len() > brink_trace::MARK_BYTES_MAX) {
                    return reply.error(Errno::EINVAL);
                }
                let mut log = self.log.lock().expect("log lock");
                if log.phase != Phase::Recording {
                    log.ignored_marks += lines.len() as u64;
                    return reply.written(data.len() as u32);
                }
                drop(log);
                for line in lines {
                    if !self.log(|| Op::Mark(line.to_string())) {
                        return reply.error(Errno::EIO);
                    }
                }
                reply.written(data.len() as u32)
            }
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close(2) of a descriptor, not a cache flush: nothing to log.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // The image needs no host fsync: the trace, not the image, is what must survive,
        // and it is made durable when the recording is finished.
        if ino == DISK && self.injected(Armed::flush, brink_trace::Failed::Flush) {
            return reply.error(Errno::EIO);
        }
        if ino == DISK && !self.log(|| Op::Flush) {
            return reply.error(Errno::EIO);
        }
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if ino != DISK {
            return reply.error(Errno::EOPNOTSUPP);
        }
        if !self.in_range(offset, length) {
            return reply.error(Errno::EINVAL);
        }
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        let logged = match mode {
            // Preallocation changes no content.
            0 | libc::FALLOC_FL_KEEP_SIZE => true,
            PUNCH | ZERO => {
                if brink_trace::image::zero_range(&self.backing, offset, length).is_err() {
                    return reply.error(Errno::EIO);
                }
                if mode == PUNCH {
                    self.log(|| Op::Discard { offset, len: length })
                } else {
                    self.log(|| Op::WriteZeroes { offset, len: length })
                }
            }
            _ => return reply.error(Errno::EOPNOTSUPP),
        };
        if logged { reply.ok() } else { reply.error(Errno::EIO) }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (DISK, FileType::RegularFile, DISK_NAME),
            (MARK, FileType::RegularFile, MARK_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // bsize becomes the loop device's discard granularity.
        reply.statfs(self.size / 4096, 0, 0, 3, 0, 4096, 255, 4096);
    }
}
