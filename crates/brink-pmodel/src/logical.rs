//! Logical operations: a workload's system calls reduced, as ALICE (OSDI'14) does, to
//! what they did to the recorded file system (create a name, append bytes, rename, fsync,
//! acknowledge…), with files named by identity (an inode number of our own) so that an
//! abstract persistence model ([`crate::Apm`]) can split each into micro-operations.
//! The calls themselves are read by the front end (`frontend.rs`).

use std::path::PathBuf;

use serde::Serialize;

/// A file identity (an inode to the kernel) in a [`LogicalTrace`]: [`ROOT`] is the
/// recorded file system's root; the others are numbered in order of first sight.
pub type Ino = u32;

/// The root directory's identity.
pub const ROOT: Ino = 0;

/// What kind of file an identity is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    File,
    Dir,
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
}

/// A file or directory that existed before the workload ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Initial {
    /// Relative to the root (`dir/file`); never empty.
    pub path: PathBuf,
    pub kind: NodeKind,
    /// Bytes, for a file (0 otherwise).
    pub size: u64,
}

/// A directory entry: a name in a directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct At {
    pub parent: Ino,
    pub name: Vec<u8>,
}

/// The file a rename replaced (or an unlink removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gone {
    pub ino: Ino,
    /// It was the file's last name.
    pub last: bool,
    /// Its size then.
    pub size: u64,
}

/// Which call asked for a range to be made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeSync {
    /// `sync_file_range`: starts or waits for writeback of data pages only.
    FileRange,
    /// `msync(MS_SYNC)` over a shared mapping of the file.
    Msync,
    /// A write through an `O_SYNC`/`O_DSYNC` description, or `pwritev2` with `RWF_*SYNC`.
    SyncWrite,
}

/// One logical operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Op {
    /// A new regular file (`open` with `O_CREAT` of a missing name).
    Creat {
        at: At,
        ino: Ino,
    },
    Mkdir {
        at: At,
        ino: Ino,
    },
    Symlink {
        at: At,
        ino: Ino,
    },
    /// A new name for an existing file.
    Link {
        at: At,
        ino: Ino,
    },
    Unlink {
        at: At,
        gone: Gone,
    },
    Rmdir {
        at: At,
        ino: Ino,
    },
    /// `from` now names nothing; `to` names `ino` (and no longer `replaced`).
    Rename {
        from: At,
        to: At,
        ino: Ino,
        replaced: Option<Gone>,
    },
    /// Bytes past the end of the file: `len` bytes of the call's data from `data_at`.
    Append {
        ino: Ino,
        offset: u64,
        len: u64,
        data_at: u64,
        offset_known: bool,
    },
    /// Bytes below the end of the file.
    Overwrite {
        ino: Ino,
        offset: u64,
        len: u64,
        data_at: u64,
        offset_known: bool,
    },
    /// The size changes from `from` to `to` (a grown file reads zeros there).
    Trunc {
        ino: Ino,
        from: u64,
        to: u64,
    },
    /// `fsync`, or (`data_only`) `fdatasync`, of a file or directory.
    Fsync {
        ino: Ino,
        data_only: bool,
    },
    /// An `fsync` or `fdatasync` of a file that failed with an I/O error (`EIO`,
    /// `ENOSPC`): the kernel may have dropped the file's writes that were pending, and
    /// no later sync makes them durable (Linux marks the pages clean: "Can Applications
    /// Recover from fsync Failures?", ATC'20).
    FsyncFailed {
        ino: Ino,
    },
    /// A range of a file to be made durable (`len` `u64::MAX`: to the end).
    SyncRange {
        ino: Ino,
        offset: u64,
        len: u64,
        why: RangeSync,
    },
    /// `sync`, or `syncfs` of the recorded file system.
    Sync,
    /// An acknowledgement: a line written to the mark file.
    Ack {
        mark: String,
    },
}

impl Op {
    /// The op's name, as ALICE spells them.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Creat { .. } => "creat",
            Op::Mkdir { .. } => "mkdir",
            Op::Symlink { .. } => "symlink",
            Op::Link { .. } => "link",
            Op::Unlink { .. } => "unlink",
            Op::Rmdir { .. } => "rmdir",
            Op::Rename { .. } => "rename",
            Op::Append { .. } => "append",
            Op::Overwrite { .. } => "overwrite",
            Op::Trunc { .. } => "trunc",
            Op::Fsync { data_only: false, .. } => "fsync",
            Op::Fsync { data_only: true, .. } => "fdatasync",
            Op::FsyncFailed { .. } => "failed-fsync",
            Op::SyncRange { why: RangeSync::FileRange, .. } => "sync_file_range",
            Op::SyncRange { why: RangeSync::Msync, .. } => "msync",
            Op::SyncRange { why: RangeSync::SyncWrite, .. } => "sync-write",
            Op::Sync => "sync",
            Op::Ack { .. } => "ack",
        }
    }
}

/// A logical operation and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogicalOp {
    /// The call's [`brink_calls::Call::seq`]: its source line, for reports.
    pub seq: u64,
    /// The file's path relative to the root at that moment (a rename's new path), for
    /// people; empty for `sync` and acknowledgements.
    pub path: PathBuf,
    pub op: Op,
}

/// What the front end could not follow exactly. Loud: a state built over it may not be
/// what the file system could hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub seq: u64,
    pub kind: WarningKind,
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WarningKind {
    /// A plain `write` whose file position is unknown (a descriptor not opened in the
    /// trace, or after a read that did not return); its offset was guessed (the end
    /// of the file) and its op says `offset_known: false`.
    OffsetUnknown,
    /// A file or directory used but absent from the initial listing: taken as existing
    /// (a file of size 0).
    NotListed,
    /// A call whose effect on the files is not modelled (`copy_file_range`, a punched
    /// hole, `RENAME_EXCHANGE`, `O_TMPFILE`, stores through a shared mapping, io_uring).
    NotModelled,
    /// A write whose data strace printed only in part; the rest is trace data brink does
    /// not have.
    DataTruncated,
}

/// A trace's logical operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogicalTrace {
    /// The files and directories before the workload ran, parents first (with any the
    /// calls showed that the listing lacked, flagged by [`WarningKind::NotListed`]).
    pub initial: Vec<Initial>,
    /// The identity of each of `initial`.
    pub initial_inos: Vec<Ino>,
    /// What each identity is: `kinds[ino]`.
    pub kinds: Vec<NodeKind>,
    pub ops: Vec<LogicalOp>,
    pub warnings: Vec<Warning>,
    /// Files mapped shared and writable: stores through the mapping are no system calls,
    /// so no model knows the bytes they left (check-model compares such a file's blocks
    /// as it does the model's garbage: any bytes).
    pub unseen_stores: std::collections::BTreeSet<Ino>,
}
