//! From a raw call (numbers and bytes) to brink-calls' typed [`CallKind`], the same one
//! strace's text decodes to, and the descriptor tables brought up to date after it.
//! Flags are decoded from the kernel's values (x86_64) into brink-calls' bits.

use brink_calls::{
    AT_FDCWD, Access, CallKind, CallResult, Fd, Flags, Mmap, Target, Untraceable, falloc_flag, map_flag, open_flag,
    rename_flag, rwf_flag,
};

use crate::assemble::RawCall;
use crate::fds::Fds;

const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_TRUNC: u64 = 0o1000;
const O_APPEND: u64 = 0o2000;
const O_DSYNC: u64 = 0o10000;
const O_DIRECT: u64 = 0o40000;
const O_DIRECTORY: u64 = 0o200000;
const O_CLOEXEC: u64 = 0o2000000;
const O_SYNC: u64 = 0o4010000;
const O_TMPFILE: u64 = 0o20200000;
const AT_REMOVEDIR: u64 = 0x200;
const CLOSE_RANGE_CLOEXEC: u64 = 4;
const FICLONE: u64 = 0x4004_9409;
const FICLONERANGE: u64 = 0x4020_940d;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_SETFL: u64 = 4;
const F_DUPFD_CLOEXEC: u64 = 1030;

/// Kernel bit → brink-calls bit, for the flag sets decoded by table.
const FALLOC: &[(u64, u32)] = &[
    (0x01, falloc_flag::KEEP_SIZE),
    (0x02, falloc_flag::PUNCH_HOLE),
    (0x08, falloc_flag::COLLAPSE_RANGE),
    (0x10, falloc_flag::ZERO_RANGE),
    (0x20, falloc_flag::INSERT_RANGE),
    (0x40, falloc_flag::UNSHARE_RANGE),
];
/// The open flags that are one bit each (`O_SYNC` and `O_TMPFILE` are not: `open_flags`).
const OPEN: &[(u64, u32)] = &[
    (O_CREAT, open_flag::CREAT),
    (O_EXCL, open_flag::EXCL),
    (O_TRUNC, open_flag::TRUNC),
    (O_APPEND, open_flag::APPEND),
    (O_DIRECT, open_flag::DIRECT),
];
const RENAME: &[(u64, u32)] = &[(1, rename_flag::NOREPLACE), (2, rename_flag::EXCHANGE), (4, rename_flag::WHITEOUT)];
const RWF: &[(u64, u32)] = &[(0x2, rwf_flag::DSYNC), (0x4, rwf_flag::SYNC), (0x10, rwf_flag::APPEND)];
const PROT: &[(u64, u32)] = &[(1, map_flag::PROT_READ), (2, map_flag::PROT_WRITE), (4, map_flag::PROT_EXEC)];
const MAP: &[(u64, u32)] = &[
    (0x01, map_flag::SHARED),
    (0x02, map_flag::PRIVATE),
    (0x10, map_flag::FIXED),
    (0x20, map_flag::ANONYMOUS),
    (0x8_0000, map_flag::SYNC),
    (0x10_0000, map_flag::FIXED),
];
const MSYNC: &[(u64, u32)] = &[(1, map_flag::MS_ASYNC), (2, map_flag::MS_INVALIDATE), (4, map_flag::MS_SYNC)];

fn table(v: u64, t: &[(u64, u32)]) -> Flags {
    Flags(t.iter().filter(|(k, _)| v & k == *k).fold(0, |acc, (_, b)| acc | b))
}

/// Open flags as strace names them: `O_SYNC` (which includes `O_DSYNC`'s bit) alone,
/// `O_TMPFILE` (which includes `O_DIRECTORY`'s) alone.
fn open_flags(f: u64) -> Flags {
    let mut bits = table(f, OPEN).0;
    bits |= match f & O_SYNC {
        O_SYNC => open_flag::SYNC,
        O_DSYNC => open_flag::DSYNC,
        _ => 0,
    };
    bits |= match f & O_TMPFILE {
        O_TMPFILE => open_flag::TMPFILE,
        O_DIRECTORY => open_flag::DIRECTORY,
        _ => 0,
    };
    Flags(bits)
}

fn access(f: u64) -> Access {
    match f & 3 {
        O_RDWR => Access::ReadWrite,
        O_WRONLY => Access::WriteOnly,
        _ => Access::ReadOnly,
    }
}

/// An argument as a descriptor number (the kernel reads an `int`).
fn num(v: u64) -> i32 {
    v as u32 as i32
}

/// How the call ended, as strace would say it.
pub(crate) fn result(c: &RawCall, name: &str) -> CallResult {
    match c.ret {
        None if matches!(name, "exit" | "exit_group") => CallResult::NoReturn,
        None => CallResult::Unfinished,
        Some(r) if (-4095..0).contains(&r) => {
            let errno = nix::errno::Errno::from_raw(i32::try_from(-r).unwrap_or(0));
            match errno {
                nix::errno::Errno::UnknownErrno => CallResult::Err(format!("errno {}", -r)),
                e => CallResult::Err(format!("{e:?}")),
            }
        }
        Some(r) => CallResult::Ok(r),
    }
}

/// A readable path argument, or why not.
fn path(c: &RawCall, arg: u32) -> Option<Vec<u8>> {
    c.string(arg).map(<[u8]>::to_vec)
}

/// The descriptor a decoded directory argument names (`AT_FDCWD` when it names none:
/// the old calls without one).
fn dir_num(dir: &Option<Fd>) -> i32 {
    dir.as_ref().map_or(AT_FDCWD, |d| d.num)
}

/// `Some(fd)` of a `*at` call's directory argument.
fn dir(fds: &mut Fds, c: &RawCall, arg: usize) -> Option<Fd> {
    Some(fds.fd(c.pid, num(c.args[arg])))
}

/// The typed call; `None` when an argument the decoding needs was not read.
pub(crate) fn kind(fds: &mut Fds, c: &RawCall, name: &str) -> Option<CallKind> {
    let a = c.args;
    let fd0 = |fds: &mut Fds| fds.fd(c.pid, num(a[0]));
    Some(match name {
        "open" | "openat" | "openat2" | "creat" => open(fds, c, name)?,
        "close" => CallKind::Close { fd: fd0(fds) },
        "dup" => CallKind::Dup { old: fd0(fds), new: None, cloexec: false },
        "dup2" | "dup3" => {
            CallKind::Dup { old: fd0(fds), new: Some(num(a[1])), cloexec: name == "dup3" && a[2] & O_CLOEXEC != 0 }
        }
        "fcntl" => fcntl(fds, c),
        "chdir" => CallKind::Chdir { target: Target::Path { dir: None, path: path(c, 0)? } },
        "fchdir" => CallKind::Chdir { target: Target::Fd(fd0(fds)) },
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => write(fds, c, name),
        "read" | "readv" => CallKind::Read { fd: fd0(fds) },
        "lseek" => CallKind::Seek { fd: fd0(fds) },
        "truncate" => CallKind::Truncate { target: Target::Path { dir: None, path: path(c, 0)? }, len: a[1] },
        "ftruncate" => CallKind::Truncate { target: Target::Fd(fd0(fds)), len: a[1] },
        "fallocate" => CallKind::Fallocate { fd: fd0(fds), mode: table(a[1], FALLOC), offset: a[2], len: a[3] },
        "rename" => {
            CallKind::Rename { old_dir: None, old: path(c, 0)?, new_dir: None, new: path(c, 1)?, flags: Flags(0) }
        }
        "renameat" | "renameat2" => CallKind::Rename {
            old_dir: dir(fds, c, 0),
            old: path(c, 1)?,
            new_dir: dir(fds, c, 2),
            new: path(c, 3)?,
            flags: if name == "renameat2" { table(a[4], RENAME) } else { Flags(0) },
        },
        "link" => CallKind::Link { old_dir: None, old: path(c, 0)?, new_dir: None, new: path(c, 1)? },
        "linkat" => {
            CallKind::Link { old_dir: dir(fds, c, 0), old: path(c, 1)?, new_dir: dir(fds, c, 2), new: path(c, 3)? }
        }
        "unlink" | "rmdir" => CallKind::Unlink { dir: None, path: path(c, 0)?, removes_dir: name == "rmdir" },
        "unlinkat" => {
            CallKind::Unlink { dir: dir(fds, c, 0), path: path(c, 1)?, removes_dir: a[2] & AT_REMOVEDIR != 0 }
        }
        "mkdir" => CallKind::Mkdir { dir: None, path: path(c, 0)?, mode: a[1] as u32 },
        "mkdirat" => CallKind::Mkdir { dir: dir(fds, c, 0), path: path(c, 1)?, mode: a[2] as u32 },
        "symlink" => CallKind::Symlink { target: path(c, 0)?, dir: None, path: path(c, 1)? },
        "symlinkat" => CallKind::Symlink { target: path(c, 0)?, dir: dir(fds, c, 1), path: path(c, 2)? },
        _ => return more(fds, c, name),
    })
}

/// The rest of [`kind`]: syncs, mappings, copies, processes.
fn more(fds: &mut Fds, c: &RawCall, name: &str) -> Option<CallKind> {
    let a = c.args;
    let fd = |fds: &mut Fds, i: usize| fds.fd(c.pid, num(a[i]));
    Some(match name {
        "fsync" | "fdatasync" => CallKind::Fsync { fd: fd(fds, 0), data_only: name == "fdatasync" },
        // SYNC_FILE_RANGE_* have brink-calls' bit values.
        "sync_file_range" => {
            CallKind::SyncFileRange { fd: fd(fds, 0), offset: a[1], len: a[2], flags: Flags(a[3] as u32 & 7) }
        }
        "sync" => CallKind::Sync,
        "syncfs" => CallKind::Syncfs { fd: fd(fds, 0) },
        "msync" => CallKind::Msync { addr: a[0], len: a[1], flags: table(a[2], MSYNC) },
        "mmap" => mmap(fds, c),
        "copy_file_range" | "splice" => CallKind::Copy {
            from: fd(fds, 0),
            from_offset: offset_at(c, 1),
            to: fd(fds, 2),
            to_offset: offset_at(c, 3),
            len: a[4],
        },
        "sendfile" => CallKind::Copy {
            to: fd(fds, 0),
            from: fd(fds, 1),
            from_offset: offset_at(c, 2),
            to_offset: None,
            len: a[3],
        },
        "ioctl" => clone_ioctl(fds, c)?,
        "io_uring_setup" => {
            let fd = c.ret.filter(|r| *r >= 0).map(|r| fds.fd(c.pid, r as i32));
            CallKind::Untraceable { what: Untraceable::IoUring { fd } }
        }
        "io_uring_enter" | "io_uring_register" => {
            CallKind::Untraceable { what: Untraceable::IoUring { fd: Some(fd(fds, 0)) } }
        }
        "clone" | "clone3" | "fork" | "vfork" => CallKind::Spawn { thread: c.spawns_thread()? },
        "execve" | "execveat" => exec(c, u32::from(name == "execveat"))?,
        "exit" | "exit_group" => CallKind::Exit { group: name == "exit_group", code: a[0] as i32 as i64 },
        _ => CallKind::Other { raw_args: format!("{:#x}, {:#x}, {:#x}", a[0], a[1], a[2]) },
    })
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
}

/// An offset passed by pointer (`None` for a null pointer: the file position).
fn offset_at(c: &RawCall, arg: u32) -> Option<u64> {
    if c.args[arg as usize] == 0 {
        return None;
    }
    c.blob(arg).and_then(u64_of)
}

fn open(fds: &mut Fds, c: &RawCall, name: &str) -> Option<CallKind> {
    let (dir, path, flags, mode) = match name {
        "creat" => (None, path(c, 0)?, O_WRONLY | O_CREAT | O_TRUNC, Some(c.args[1])),
        "open" => (None, path(c, 0)?, c.args[1], Some(c.args[2])),
        "openat" => (dir(fds, c, 0), path(c, 1)?, c.args[2], Some(c.args[3])),
        _ => {
            let how = c.blob(2)?;
            (dir(fds, c, 0), path(c, 1)?, u64_of(how)?, how.get(8..).and_then(u64_of))
        }
    };
    let creates = flags & O_CREAT != 0 || flags & O_TMPFILE == O_TMPFILE;
    let mode = mode.filter(|_| creates).map(|m| m as u32);
    // The new descriptor with the path it was opened by, as strace's `-y` prints it.
    let tmpfile = flags & O_TMPFILE == O_TMPFILE;
    let returned = c.ret.filter(|r| *r >= 0).map(|r| Fd {
        num: r as i32,
        path: fds.absolute(c.pid, dir_num(&dir), &path),
        deleted: tmpfile,
    });
    Some(CallKind::Open { dir, path, access: access(flags), flags: open_flags(flags), mode, fd: returned })
}

fn fcntl(fds: &mut Fds, c: &RawCall) -> CallKind {
    let fd = fds.fd(c.pid, num(c.args[0]));
    match c.args[1] {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            CallKind::Dup { old: fd, new: Some(num(c.args[2])), cloexec: c.args[1] == F_DUPFD_CLOEXEC }
        }
        F_SETFL => CallKind::Fcntl { fd, cmd: "F_SETFL".into(), flags: Some(open_flags(c.args[2])) },
        F_SETFD => CallKind::Fcntl { fd, cmd: "F_SETFD".into(), flags: None },
        cmd => CallKind::Fcntl { fd, cmd: format!("{cmd:#x}"), flags: None },
    }
}

fn write(fds: &mut Fds, c: &RawCall, name: &str) -> CallKind {
    let a = c.args;
    let fd = fds.fd(c.pid, num(a[0]));
    let plain = matches!(name, "write" | "pwrite64");
    let len = if plain { a[2] } else { c.ret.and_then(|r| u64::try_from(r).ok()).unwrap_or(0) };
    let offset = match name {
        "pwrite64" | "pwritev" => Some(a[3]),
        "pwritev2" => (a[3] != u64::MAX).then_some(a[3]),
        _ => None,
    };
    let flags = if name == "pwritev2" { table(a[5], RWF) } else { Flags(0) };
    let truncated = c.data_unreadable || (c.data.len() as u64) < len;
    // The data is moved in by the caller (`decode.rs`), not copied here.
    CallKind::Write { fd, offset, len, data: Vec::new(), truncated, flags }
}

fn mmap(fds: &mut Fds, c: &RawCall) -> CallKind {
    let a = c.args;
    let anonymous = a[3] & 0x20 != 0 || (a[4] as i32) < 0;
    let fd = (!anonymous).then(|| fds.fd(c.pid, num(a[4])));
    let mapping = Mmap { len: a[1], flags: Flags(table(a[2], PROT).0 | table(a[3], MAP).0), fd, offset: a[5] };
    if mapping.is_shared_writable_file() {
        CallKind::Untraceable { what: Untraceable::SharedWritableMapping(mapping) }
    } else {
        CallKind::Mmap(mapping)
    }
}

fn clone_ioctl(fds: &mut Fds, c: &RawCall) -> Option<CallKind> {
    let to = fds.fd(c.pid, num(c.args[0]));
    match c.args[1] {
        FICLONE => {
            Some(CallKind::Copy { from: fds.fd(c.pid, num(c.args[2])), from_offset: None, to, to_offset: None, len: 0 })
        }
        FICLONERANGE => {
            let r = c.blob(2)?;
            let field = |i: usize| r.get(i * 8..).and_then(u64_of);
            Some(CallKind::Copy {
                from: fds.fd(c.pid, num(field(0)?)),
                from_offset: field(1),
                len: field(2)?,
                to_offset: field(3),
                to,
            })
        }
        _ => None,
    }
}

fn exec(c: &RawCall, first: u32) -> Option<CallKind> {
    let argv = (16..16 + crate::events::ARGV_MAX as u32).map_while(|i| c.string(i).map(<[u8]>::to_vec)).collect();
    Some(CallKind::Exec { path: path(c, first)?, argv })
}

/// Bring the descriptor tables up to date after `c` (returned successfully).
pub(crate) fn update(fds: &mut Fds, c: &RawCall, kind: &CallKind) {
    let Some(ret) = c.ret.filter(|r| *r >= 0) else { return };
    let pid = c.pid;
    match kind {
        // The returned descriptor carries the absolute path `open` resolved.
        CallKind::Open { fd: Some(Fd { path: Some(abs), deleted, .. }), .. } => {
            fds.opened(pid, ret as i32, abs.clone(), *deleted, open_raw_flags(c) & O_CLOEXEC != 0);
        }
        CallKind::Close { fd } => fds.closed(pid, fd.num),
        CallKind::Dup { old, cloexec, .. } => fds.duplicated(pid, old.num, ret as i32, *cloexec),
        CallKind::Fcntl { fd, cmd, .. } if cmd == "F_SETFD" => fds.set_cloexec(pid, fd.num, c.args[2] & 1 != 0),
        CallKind::Chdir { target: Target::Path { path, .. } } => {
            if let Some(abs) = fds.absolute(pid, AT_FDCWD, path) {
                fds.chdir(pid, abs);
            }
        }
        CallKind::Chdir { target: Target::Fd(fd) } => {
            if let Some(p) = fd.path.clone() {
                fds.chdir(pid, p);
            }
        }
        CallKind::Rename { old_dir, old, new_dir, new, .. } => {
            let (o, n) = (fds.absolute(pid, dir_num(old_dir), old), fds.absolute(pid, dir_num(new_dir), new));
            if let (Some(o), Some(n)) = (o, n) {
                fds.renamed(&o, &n);
            }
        }
        CallKind::Unlink { dir, path, .. } => {
            if let Some(abs) = fds.absolute(pid, dir_num(dir), path) {
                fds.unlinked(&abs);
            }
        }
        CallKind::Exec { .. } => fds.exec(pid),
        _ if c.nr == 436 => {
            fds.closed_range(pid, c.args[0] as u32, c.args[1] as u32, c.args[2] & CLOSE_RANGE_CLOEXEC != 0)
        }
        _ => {}
    }
}

/// The kernel's open flags of an open call (for `O_CLOEXEC`, which the model drops).
fn open_raw_flags(c: &RawCall) -> u64 {
    match c.nr {
        2 => c.args[1],
        257 => c.args[2],
        437 => c.blob(2).and_then(u64_of).unwrap_or(0),
        _ => 0,
    }
}
