//! Abstract persistence models (APMs, ALICE OSDI'14 §3): what each file system promises
//! about which parts of a logical operation persist separately and in what order. An APM
//! turns each [`LogicalOp`](crate::LogicalOp) into micro-operations ([`Micro`]) and says
//! which micro-operations must persist before which (`micro.rs` builds both).
//!
//! # Rules common to every APM
//! 1. A barrier (`fsync`, `fdatasync`, `msync(MS_SYNC)`, a synchronous write, `sync`, and
//!    an acknowledgement) orders time: every micro-op after it depends on it, so a state
//!    holding anything later holds the barrier and, through its dependencies, what it
//!    made durable (ALICE's rule 1; an acknowledgement is its `stdout`). A barrier
//!    depends on the previous barrier.
//! 2. `fsync(F)`/`fdatasync(F)` of a file depends on every earlier write and size
//!    change of F; of a directory, also on every earlier entry change in it. `sync`
//!    depends on everything earlier. A range sync (`msync`, a synchronous write)
//!    depends on the earlier writes overlapping its range and F's size changes.
//! 3. `sync_file_range` makes nothing durable in any APM: it writes data pages but
//!    neither the file's metadata nor the disk cache (sync_file_range(2): "extremely
//!    dangerous … no guarantees"); brink-lint counts it the same way.
//! 4. Writes are split at 4 KiB block boundaries ([`BLOCK`]); a block is atomic (BOB:
//!    single-sector overwrites are atomic everywhere; sub-block tearing is not modelled).
//! 5. Anything not ordered by these rules or the APM's own may persist in any order,
//!    or not at all.
//! 6. An `fsync` or `fdatasync` that failed with `EIO` or `ENOSPC` makes nothing
//!    durable, and the file's writes pending at it may never persist: Linux marks the
//!    pages of a failed writeback clean and reports the error once, so a retried fsync
//!    succeeds without writing them (Rebello et al., "Can Applications Recover from
//!    fsync Failures?", ATC'20; PostgreSQL's "fsyncgate"). They leave every later
//!    dependency: no later barrier, chain or acknowledgement holds them in. The model
//!    does not know which of them the device failed, so each may persist or not.
//!
//! # Per APM (sources: ALICE's `alicedefaultfs.py` and paper §3–5, BOB's Table 1,
//! Documentation/filesystems/ext4.rst, xfs and btrfs documentation)
//! - `posix`: ALICE's default APM, weaker than any real file system. Appends go per
//!   block through a zeros stage, a garbage stage and the data (each may persist alone:
//!   the size grows before the data); a growing `trunc` per block through garbage then
//!   zeros; a shrinking `trunc`, and an `unlink` of a file's last name, cut the size
//!   block by block. `rename` is not atomic: the replaced file is cut and unlinked, the
//!   old name removed and the new one made, separately. Entry changes are unordered,
//!   and `fsync` of a file does not persist its directory entry (only the directory's
//!   fsync does).
//! - `ext4-ordered` (data=ordered, delayed allocation, auto_da_alloc, the default):
//!   metadata (entry changes, size changes by `trunc`, `unlink`) is journaled: each
//!   metadata micro-op is atomic and they persist in program order (one journal, commits
//!   in order). An appended block never shows garbage (ordered mode writes data before
//!   the commit that exposes stale blocks), but it may show zeros: ext4 maps appended
//!   blocks at writeback as unwritten extents (dioread_nolock, the default for 4 KiB
//!   blocks since Linux 5.6) and updates the on-disk size when it maps them, before the
//!   data's I/O completes, so a commit in between leaves the size with zeros where the
//!   data was to be (check-model found the kernel leave LevelDB's 344-byte info log all
//!   zeros, and a RocksDB log 20 KiB of zeros past its data, which ALICE's ordered rule
//!   could not produce). So an appended block goes through a zeros stage (the size
//!   grows through them in order), and each page holds zeros or a prefix of the appends
//!   to it (the data writeback found there); pages complete in any order. Appends are
//!   not ordered with other files' metadata either (the classic
//!   zero-length file after create, write, rename, crash: BOB "append → any op").
//!   `rename` and `unlink` are atomic. An `fsync` or `fdatasync` commits the journal,
//!   so it also persists every earlier metadata micro-op (of any file; `fdatasync`
//!   up to the file's own last one). auto_da_alloc: a `rename` that replaces a file
//!   persists the source's earlier writes first (ext4.rst, `auto_da_alloc`).
//!   Overwrites are not journaled: per block, unordered.
//! - `ext4-writeback` (data=writeback): as ext4-ordered, but metadata is not held back
//!   for data: an appended block may show garbage (stale blocks) before its data (BOB:
//!   single-sector append fails in writeback modes), and the blocks appended to a file
//!   are not ordered among themselves: the size and allocations of a whole append may
//!   be committed with none of its data written (check-model found the kernel leave a
//!   256 KiB file of stale blocks on the stale-data workload, which the ordered rule
//!   could not produce). auto_da_alloc's flush is not waited for by the rename's
//!   commit, so a replacing rename does not wait for the data.
//! - `ext4-journal` (data=journal): data and metadata go through the journal in order:
//!   every micro-op depends on the one before it (BOB: only data-journal modes kept every
//!   tested operation in order); a multi-block write may still be cut at a block
//!   (handles are per page), so states are the prefixes of the micro-op sequence. An
//!   acknowledgement is not in the journal: a crash after it may still lose every
//!   uncommitted change before it.
//! - `xfs`: metadata is logged in order and atomically (renames, unlinks), `fsync`
//!   forces the log (every earlier metadata micro-op); the on-disk size is updated at
//!   I/O completion, so appends show no zeros or garbage and persist in order per
//!   file. No rename special case is modelled (xfs flushes on close after a truncate,
//!   not on rename), so a replacing rename may persist before the source's data.
//! - `btrfs`: copy-on-write: blocks are atomic, appends persist in order per file
//!   without zeros or garbage, renames and unlinks are atomic; directory operations
//!   are not ordered among themselves (BOB: btrfs reorders directory operations, its
//!   log tree replays what fsync logged), and `fsync` of a file persists its data and
//!   size, not its entry (conservatively; btrfs often logs new names too). A rename that
//!   replaces a file flushes the source's data first (btrfs's rename flush).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The block size writes are split at.
pub const BLOCK: u64 = 4096;

/// An abstract persistence model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Apm {
    Posix,
    Ext4Ordered,
    Ext4Writeback,
    Ext4Journal,
    Xfs,
    Btrfs,
}

/// The switches the APMs differ by (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// An appended block may show zeros before its data.
    pub zeros_stage: bool,
    /// An appended block may show garbage before its data.
    pub garbage_stage: bool,
    /// Appended blocks of a file persist in order.
    pub append_in_order: bool,
    /// Appends persist as writeback does them (ext4's unwritten extents): the file's
    /// size grows through the zeros stages in order, and each 4 KiB page holds zeros or
    /// a prefix of the appends to it (its data stages in order, each after its own zeros
    /// stage); pages are not ordered among themselves.
    pub page_prefix: bool,
    pub rename_atomic: bool,
    /// `unlink` of a last name, and shrinking and growing `trunc`, go block by block.
    pub size_by_block: bool,
    /// Metadata micro-ops persist in program order (a journal).
    pub meta_chain: bool,
    /// Every micro-op persists in program order.
    pub total_order: bool,
    /// A file's fsync also persists every earlier metadata micro-op (journal commit).
    pub fsync_commits: bool,
    /// A rename replacing a file persists the source's earlier writes first.
    pub replace_flushes: bool,
}

impl Apm {
    pub const ALL: [Apm; 6] =
        [Apm::Posix, Apm::Ext4Ordered, Apm::Ext4Writeback, Apm::Ext4Journal, Apm::Xfs, Apm::Btrfs];

    pub fn name(self) -> &'static str {
        match self {
            Apm::Posix => "posix",
            Apm::Ext4Ordered => "ext4-ordered",
            Apm::Ext4Writeback => "ext4-writeback",
            Apm::Ext4Journal => "ext4-journal",
            Apm::Xfs => "xfs",
            Apm::Btrfs => "btrfs",
        }
    }

    /// The model of a file system as recorded (`fs`, its mount options), if one is shipped.
    pub fn of_fs(fs: &str, mount_opts: &str) -> Option<Apm> {
        let data = mount_opts.split(',').find_map(|o| o.strip_prefix("data=")).unwrap_or("ordered");
        match (fs, data) {
            ("ext4", "ordered") => Some(Apm::Ext4Ordered),
            ("ext4", "writeback") => Some(Apm::Ext4Writeback),
            ("ext4", "journal") => Some(Apm::Ext4Journal),
            ("xfs", _) => Some(Apm::Xfs),
            ("btrfs", _) => Some(Apm::Btrfs),
            _ => None,
        }
    }

    pub(crate) fn rules(self) -> Rules {
        let journaled = Rules {
            zeros_stage: false,
            garbage_stage: false,
            append_in_order: true,
            page_prefix: false,
            rename_atomic: true,
            size_by_block: false,
            meta_chain: true,
            total_order: false,
            fsync_commits: true,
            replace_flushes: false,
        };
        match self {
            Apm::Posix => Rules {
                zeros_stage: true,
                garbage_stage: true,
                append_in_order: false,
                rename_atomic: false,
                size_by_block: true,
                meta_chain: false,
                fsync_commits: false,
                ..journaled
            },
            Apm::Ext4Ordered => Rules {
                zeros_stage: true,
                append_in_order: false,
                page_prefix: true,
                replace_flushes: true,
                ..journaled
            },
            Apm::Ext4Writeback => Rules { garbage_stage: true, append_in_order: false, ..journaled },
            Apm::Ext4Journal => Rules { total_order: true, ..journaled },
            Apm::Xfs => journaled,
            Apm::Btrfs => Rules { meta_chain: false, fsync_commits: false, replace_flushes: true, ..journaled },
        }
    }
}

impl fmt::Display for Apm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An APM name that is not one of [`Apm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown APM '{0}': expected one of posix, ext4-ordered, ext4-writeback, ext4-journal, xfs, btrfs")]
#[non_exhaustive]
pub struct UnknownApm(pub String);

impl FromStr for Apm {
    type Err = UnknownApm;
    fn from_str(s: &str) -> Result<Apm, UnknownApm> {
        Apm::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| UnknownApm(s.to_string()))
    }
}
