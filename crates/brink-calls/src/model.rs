//! The typed calls: what a workload asked of the file system, with the arguments that
//! decide crash consistency, in a form that serializes (serde, bincode-friendly: every
//! enum is externally tagged) into brink's trace.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `AT_FDCWD` as the kernel spells it: the directory argument meaning "the current directory".
pub const AT_FDCWD: i32 = -100;

/// One completed (or abandoned) system call of the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Order of completion in the trace, from 0: the order strace saw the calls return.
    pub seq: u64,
    /// The thread that made the call (strace's `-f` prefix; a process's first thread has
    /// the process id).
    pub tid: u32,
    /// When the call started, in microseconds since the Unix epoch (`-ttt`), if printed.
    pub time_us: Option<u64>,
    /// The system call's name as strace prints it (`openat`, `pwrite64`, …).
    pub name: String,
    pub kind: CallKind,
    pub result: CallResult,
    /// Innermost frame first (`-k`); empty when stacks were not recorded.
    pub stack: Vec<Frame>,
    /// The stack had more than [`crate::STACK_FRAMES_MAX`] frames; the outermost were dropped.
    pub stack_truncated: bool,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallResult {
    /// The return value (an address for `mmap`, a file descriptor for `open`, …).
    Ok(i64),
    /// The error name strace printed (`ENOENT`, `ERESTARTSYS`, or `errno 523` for one it
    /// cannot name).
    Err(String),
    /// The call never returned: the process died (or was replaced by `execve`) inside it.
    Unfinished,
    /// The call does not return by design (`exit`, `exit_group`; strace prints `= ?`).
    NoReturn,
}

/// A file descriptor argument (or result) and the path strace resolved for it (`-y`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    /// The number; [`AT_FDCWD`] for the current directory.
    pub num: i32,
    /// What `/proc/PID/fd/NUM` named when strace printed the call (an absolute path, or
    /// `pipe:[123]`, `socket:[456]`, `anon_inode:[io_uring]` …), as bytes.
    pub path: Option<Vec<u8>>,
    /// The file had been unlinked (`(deleted)`), or is an `O_TMPFILE` file not yet linked.
    pub deleted: bool,
}

impl Fd {
    /// The resolved path as a [`Path`], if strace printed one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(bytes_path)
    }
}

/// A path argument's bytes as a [`Path`].
pub fn bytes_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// What a call names: a path (relative to `dir`, when the call takes a directory) or a
/// file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Path { dir: Option<Fd>, path: Vec<u8> },
    Fd(Fd),
}

/// The access mode of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

/// A set of named bits, decoded from strace's `A|B|C` spelling; the names that matter to
/// crash consistency only, others are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flags(pub u32);

impl Flags {
    pub fn contains(self, bit: u32) -> bool {
        self.0 & bit == bit && bit != 0
    }
}

/// Bits of [`Flags`] for `open` flags (ours, not the kernel's values).
pub mod open_flag {
    pub const DIRECT: u32 = 1;
    pub const SYNC: u32 = 1 << 1;
    pub const DSYNC: u32 = 1 << 2;
    pub const APPEND: u32 = 1 << 3;
    pub const TRUNC: u32 = 1 << 4;
    pub const EXCL: u32 = 1 << 5;
    pub const CREAT: u32 = 1 << 6;
    pub const TMPFILE: u32 = 1 << 7;
    pub const DIRECTORY: u32 = 1 << 8;
    /// Name → bit, as strace prints them.
    pub const NAMES: &[(&str, u32)] = &[
        ("O_DIRECT", DIRECT),
        ("O_SYNC", SYNC),
        ("O_DSYNC", DSYNC),
        ("O_APPEND", APPEND),
        ("O_TRUNC", TRUNC),
        ("O_EXCL", EXCL),
        ("O_CREAT", CREAT),
        ("O_TMPFILE", TMPFILE),
        ("O_DIRECTORY", DIRECTORY),
    ];
}

/// Bits of [`Flags`] for `pwritev2`'s `RWF_*` flags.
pub mod rwf_flag {
    pub const DSYNC: u32 = 1;
    pub const SYNC: u32 = 1 << 1;
    pub const APPEND: u32 = 1 << 2;
    pub const NAMES: &[(&str, u32)] = &[("RWF_DSYNC", DSYNC), ("RWF_SYNC", SYNC), ("RWF_APPEND", APPEND)];
}

/// Bits of [`Flags`] for `renameat2`'s flags.
pub mod rename_flag {
    pub const NOREPLACE: u32 = 1;
    pub const EXCHANGE: u32 = 1 << 1;
    pub const WHITEOUT: u32 = 1 << 2;
    pub const NAMES: &[(&str, u32)] =
        &[("RENAME_NOREPLACE", NOREPLACE), ("RENAME_EXCHANGE", EXCHANGE), ("RENAME_WHITEOUT", WHITEOUT)];
}

/// Bits of [`Flags`] for `fallocate`'s mode (0 is plain allocation).
pub mod falloc_flag {
    pub const KEEP_SIZE: u32 = 1;
    pub const PUNCH_HOLE: u32 = 1 << 1;
    pub const ZERO_RANGE: u32 = 1 << 2;
    pub const COLLAPSE_RANGE: u32 = 1 << 3;
    pub const INSERT_RANGE: u32 = 1 << 4;
    pub const UNSHARE_RANGE: u32 = 1 << 5;
    pub const NAMES: &[(&str, u32)] = &[
        ("FALLOC_FL_KEEP_SIZE", KEEP_SIZE),
        ("FALLOC_FL_PUNCH_HOLE", PUNCH_HOLE),
        ("FALLOC_FL_ZERO_RANGE", ZERO_RANGE),
        ("FALLOC_FL_COLLAPSE_RANGE", COLLAPSE_RANGE),
        ("FALLOC_FL_INSERT_RANGE", INSERT_RANGE),
        ("FALLOC_FL_UNSHARE_RANGE", UNSHARE_RANGE),
    ];
}

/// Bits of [`Flags`] for `sync_file_range`'s flags.
pub mod sync_range_flag {
    pub const WAIT_BEFORE: u32 = 1;
    pub const WRITE: u32 = 1 << 1;
    pub const WAIT_AFTER: u32 = 1 << 2;
    pub const NAMES: &[(&str, u32)] = &[
        ("SYNC_FILE_RANGE_WAIT_BEFORE", WAIT_BEFORE),
        ("SYNC_FILE_RANGE_WRITE", WRITE),
        ("SYNC_FILE_RANGE_WAIT_AFTER", WAIT_AFTER),
    ];
}

/// Bits of [`Flags`] for `mmap`'s protection and flags, and `msync`'s flags.
pub mod map_flag {
    pub const PROT_READ: u32 = 1;
    pub const PROT_WRITE: u32 = 1 << 1;
    pub const PROT_EXEC: u32 = 1 << 2;
    pub const SHARED: u32 = 1 << 3;
    pub const PRIVATE: u32 = 1 << 4;
    pub const ANONYMOUS: u32 = 1 << 5;
    pub const FIXED: u32 = 1 << 6;
    pub const SYNC: u32 = 1 << 7;
    pub const MS_SYNC: u32 = 1 << 8;
    pub const MS_ASYNC: u32 = 1 << 9;
    pub const MS_INVALIDATE: u32 = 1 << 10;
    pub const NAMES: &[(&str, u32)] = &[
        ("PROT_READ", PROT_READ),
        ("PROT_WRITE", PROT_WRITE),
        ("PROT_EXEC", PROT_EXEC),
        ("MAP_SHARED", SHARED),
        ("MAP_SHARED_VALIDATE", SHARED),
        ("MAP_PRIVATE", PRIVATE),
        ("MAP_ANONYMOUS", ANONYMOUS),
        ("MAP_FIXED", FIXED),
        ("MAP_FIXED_NOREPLACE", FIXED),
        ("MAP_SYNC", SYNC),
        ("MS_SYNC", MS_SYNC),
        ("MS_ASYNC", MS_ASYNC),
        ("MS_INVALIDATE", MS_INVALIDATE),
    ];
}

/// A file mapping (`mmap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mmap {
    pub len: u64,
    /// `PROT_*` and `MAP_*` bits of [`map_flag`].
    pub flags: Flags,
    /// `None` for an anonymous mapping.
    pub fd: Option<Fd>,
    pub offset: u64,
}

impl Mmap {
    /// Stores through this mapping change a file without a system call.
    pub fn is_shared_writable_file(&self) -> bool {
        self.fd.is_some() && self.flags.contains(map_flag::SHARED) && self.flags.contains(map_flag::PROT_WRITE)
    }
}

/// What brink cannot follow call by call: the caller should say so loudly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Untraceable {
    /// A shared writable mapping of a file: later stores through it write the file with
    /// no system call, so no call explains them (only `msync`/`munmap` bound them).
    SharedWritableMapping(Mmap),
    /// An io_uring instance (`io_uring_setup`) or a submission to one (`io_uring_enter`):
    /// its reads, writes and syncs are not system calls strace sees.
    IoUring { fd: Option<Fd> },
}

impl Untraceable {
    /// One line for a user.
    pub fn what(&self) -> String {
        match self {
            Untraceable::SharedWritableMapping(m) => {
                let file = m.fd.as_ref().and_then(Fd::path).map_or_else(|| "?".into(), |p| p.display().to_string());
                format!(
                    "stores through a shared writable mapping of {file} ({} bytes at offset {}) are not system calls and are not seen",
                    m.len, m.offset
                )
            }
            Untraceable::IoUring { .. } => "io_uring requests are not system calls and are not seen".into(),
        }
    }
}

/// The call, typed by what it does to files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CallKind {
    /// `open`, `openat`, `openat2`, `creat`. `fd` is the returned descriptor with the path
    /// strace resolved for it (absolute), on success.
    Open {
        dir: Option<Fd>,
        path: Vec<u8>,
        access: Access,
        flags: Flags,
        mode: Option<u32>,
        fd: Option<Fd>,
    },
    Close {
        fd: Fd,
    },
    /// `dup`, `dup2`, `dup3`, and `fcntl(F_DUPFD*)`: `new` is the requested number
    /// (or minimum, for `fcntl`); the result is the new descriptor.
    Dup {
        old: Fd,
        new: Option<i32>,
        cloexec: bool,
    },
    /// Any other `fcntl`; `flags` are decoded for `F_SETFL` (`O_APPEND`, `O_DIRECT`).
    Fcntl {
        fd: Fd,
        cmd: String,
        flags: Option<Flags>,
    },
    Chdir {
        target: Target,
    },
    /// `write`, `pwrite64`, `writev`, `pwritev`, `pwritev2`. `offset` is `None` for the
    /// file position; `len` is the length asked for (the result says how much was
    /// written); `data` the bytes strace printed, `truncated` when it printed fewer.
    Write {
        fd: Fd,
        offset: Option<u64>,
        len: u64,
        data: Vec<u8>,
        truncated: bool,
        flags: Flags,
    },
    Truncate {
        target: Target,
        len: u64,
    },
    /// `mode` holds [`falloc_flag`] bits.
    Fallocate {
        fd: Fd,
        mode: Flags,
        offset: u64,
        len: u64,
    },
    /// `rename`, `renameat`, `renameat2`; `flags` holds [`rename_flag`] bits.
    Rename {
        old_dir: Option<Fd>,
        old: Vec<u8>,
        new_dir: Option<Fd>,
        new: Vec<u8>,
        flags: Flags,
    },
    Link {
        old_dir: Option<Fd>,
        old: Vec<u8>,
        new_dir: Option<Fd>,
        new: Vec<u8>,
    },
    /// `unlink`, `unlinkat`, `rmdir`: `removes_dir` for `rmdir` and `AT_REMOVEDIR`.
    Unlink {
        dir: Option<Fd>,
        path: Vec<u8>,
        removes_dir: bool,
    },
    Mkdir {
        dir: Option<Fd>,
        path: Vec<u8>,
        mode: u32,
    },
    Symlink {
        target: Vec<u8>,
        dir: Option<Fd>,
        path: Vec<u8>,
    },
    /// `fsync` and (`data_only`) `fdatasync`.
    Fsync {
        fd: Fd,
        data_only: bool,
    },
    /// `flags` holds [`sync_range_flag`] bits.
    SyncFileRange {
        fd: Fd,
        offset: u64,
        len: u64,
        flags: Flags,
    },
    Sync,
    Syncfs {
        fd: Fd,
    },
    /// `flags` holds `MS_*` bits of [`map_flag`].
    Msync {
        addr: u64,
        len: u64,
        flags: Flags,
    },
    /// Every traced `mmap` that is not a shared writable file mapping (those are
    /// [`CallKind::Untraceable`]).
    Mmap(Mmap),
    /// `copy_file_range`, `sendfile`, `splice`, and the `FICLONE`/`FICLONERANGE` ioctls
    /// (`len` 0 for a whole-file clone): data moved inside the kernel.
    Copy {
        from: Fd,
        from_offset: Option<u64>,
        to: Fd,
        to_offset: Option<u64>,
        len: u64,
    },
    /// A new process or thread: `clone`, `clone3`, `fork`, `vfork`; the result is its id.
    Spawn {
        thread: bool,
    },
    Exec {
        path: Vec<u8>,
        argv: Vec<Vec<u8>>,
    },
    Exit {
        group: bool,
        code: i64,
    },
    /// Something brink cannot follow exactly.
    Untraceable {
        what: Untraceable,
    },
    /// Any other traced call (or one whose arguments did not decode), with its
    /// arguments as strace printed them (at most [`crate::RAW_ARGS_CHARS_MAX`] characters).
    Other {
        raw_args: String,
    },
    // New variants go here, after the others: a variant's place is its number in
    // `calls.log` (bincode), so a variant added in the middle breaks every trace
    // recorded before (`brink-trace`'s `old_traces_with_calls_still_read` guards it).
    /// `read` and `readv` (traced raw, `-e raw=`, so no data and no `-y` path: only
    /// the descriptor number): the result is how far the file position moved.
    Read {
        fd: Fd,
    },
    /// `lseek`: the result is the new file position.
    Seek {
        fd: Fd,
    },
}

/// A process's end, as strace saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEnd {
    pub tid: u32,
    pub how: EndKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndKind {
    Exited(i64),
    /// Killed by a signal (`SIGKILL`), and whether it dumped core.
    Killed {
        signal: String,
        core: bool,
    },
    /// Replaced by an `execve` in another thread of its process.
    Superseded,
}

/// One return address on a call's stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The executable or library; a non-path marker (`unexpected_backtracing_error`)
    /// when strace could not unwind.
    pub object: PathBuf,
    /// The function: from DWARF once symbolized, else strace's symbol (`main`, `__open64`).
    pub function: Option<String>,
    /// Offset of the return address in the object's *file* (strace's `[0x…]`), which
    /// [`crate::Symbolizer`] maps to a virtual address through the program headers.
    pub offset: u64,
    pub source: Option<SourceLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLine {
    pub file: PathBuf,
    pub line: u32,
}

/// File-name prefixes of the objects that are the C library and the loader, not the
/// program: [`Call::user_frame`] skips them.
pub const SYSTEM_OBJECT_PREFIXES: &[&str] =
    &["libc.so", "libc-", "ld-linux", "ld64.so", "ld-musl", "libpthread", "libdl.so", "librt.so"];

/// Whether a frame's object is the C library or the dynamic loader (or no object at all).
pub fn is_system_object(object: &Path) -> bool {
    if !object.is_absolute() {
        return true;
    }
    let name = object.file_name().map(OsStr::as_bytes).unwrap_or_default();
    SYSTEM_OBJECT_PREFIXES.iter().any(|p| name.starts_with(p.as_bytes()))
}

impl Call {
    /// The first frame in the program (outside the C library and the loader), as ALICE
    /// reports a call: the line of the user's code that made it. A frame with a source
    /// line is preferred: a binary without debug info (`mv`) run by a script gives way to
    /// the script's line (`script.rs`), which is outermost.
    pub fn user_frame(&self) -> Option<&Frame> {
        let mut user = self.stack.iter().filter(|f| !is_system_object(&f.object));
        let first = user.clone().next();
        user.find(|f| f.source.is_some()).or(first)
    }

    /// What brink cannot follow about this call, if anything.
    pub fn untraceable(&self) -> Option<&Untraceable> {
        match &self.kind {
            CallKind::Untraceable { what } => Some(what),
            _ => None,
        }
    }
}
