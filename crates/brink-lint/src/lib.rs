//! `brink lint`: crash-consistency mistakes visible in a workload's file-system calls
//! alone, found in one pass over its strace record ([`brink_calls::Call`]s) without
//! exploring a single crash state. It is fast and explains each mistake by the call and
//! source line that made it; it finds only the patterns below, and exploration remains
//! the judge of what a crash really loses.
//!
//! A workload *acknowledges* by writing a line to its mark file: everything acknowledged
//! must survive a power cut. Each lint is a change that an acknowledgement came after
//! before the change was made durable:
//!
//! - [`LintKind::RenameWithoutDirFsync`]: a directory entry changed by `rename`, `link`,
//!   `mkdir`, `symlink`, `unlink` or an `open` with `O_CREAT` that created the file
//!   (`O_EXCL`, or a path not seen before in the trace nor listed in
//!   [`LintOptions::preexisting`]), with no fsync or fdatasync of a descriptor open on
//!   the directory (both directories for a rename across two), nor `sync`/`syncfs`,
//!   between it and the acknowledgement. A name created and then renamed or removed
//!   before the acknowledgement needs no durability of its own: the rename is what
//!   counts (an atomic replace is one finding, not two).
//! - [`LintKind::DataWithoutFsync`]: a `write`, `pwrite64`, `writev`, `pwritev(2)`,
//!   `truncate`/`ftruncate`, `fallocate`, or an `open` with `O_TRUNC` of a file it did
//!   not create, to a regular file with no fsync or fdatasync
//!   of any descriptor of that file (under any of its names), nor `sync`/`syncfs`, before
//!   the acknowledgement. Writes through an `O_SYNC`/`O_DSYNC` description, and
//!   `pwritev2` with `RWF_SYNC`/`RWF_DSYNC`, are durable when they return.
//!   `sync_file_range`, even with `WAIT_BEFORE|WRITE|WAIT_AFTER`, does not count: it
//!   writes data pages but neither the file's metadata (its size, its extents) nor the
//!   disk's write cache.
//! - [`LintKind::AckAfterFailedFsync`] ("fsyncgate"): an fsync or fdatasync that failed
//!   (`EIO`, `ENOSPC`, …; not `EBADF`, `EINVAL`, `EROFS`, `EINTR`), followed by any
//!   acknowledgement before the file was written again and then fsynced successfully.
//!   After a failed fsync Linux may drop the pages it could not write and mark them
//!   clean: a retried fsync that succeeds does not make that data durable.
//! - [`LintKind::DirectAndBuffered`]: a write through a description of a file while
//!   another description of the same file is open (in any process) with the other
//!   `O_DIRECT` setting (`open` flags, or `fcntl(F_SETFL)`): direct I/O bypasses the
//!   page cache, so the two can read or persist different data. Reads are not traced, so
//!   an open description counts as a possible reader. Reported with the next
//!   acknowledgement, if any.
//! - [`LintKind::CopyWithoutFsync`]: data moved in the kernel (`copy_file_range`,
//!   `sendfile`, `splice`, `FICLONE`/`FICLONERANGE`) into a file acknowledged before the
//!   destination was fsynced (as for data).
//! - [`LintKind::MmapWithoutMsync`]: a shared writable mapping of a file followed by an
//!   acknowledgement with no `msync(MS_SYNC)` over it (`MS_ASYNC` does not count) nor
//!   fsync of the file. strace cannot see the stores, so this cannot be verified: the
//!   stores through the mapping may not be durable.
//!
//! A failed call changes nothing (except a failed fsync, above, and a failed `close`,
//! which closes anyway unless `EBADF`). Writes through descriptors the workload did not
//! open (inherited, such as a standard output redirected to a log) and writes to the mark
//! file are not data. Each change pending at an acknowledgement is reported with that
//! acknowledgement and then forgotten; a change never followed by one is no mistake.
//!
//! Findings are grouped by root cause: (lint, source line or call site, path with digit
//! runs folded to `N`); a loop making one mistake 100 times is one finding with a count
//! and its first and last acknowledgement.

#![forbid(unsafe_code)]

mod finding;
mod paths;
mod state;
mod walk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use brink_calls::Call;

pub use brink_calls::Site;
pub use finding::{Ack, CallRef, Finding, LintKind};

/// What the lint needs beyond the calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LintOptions {
    /// The file the workload writes its acknowledgements to (`$BRINK_MARK`), absolute.
    pub mark_file: PathBuf,
    /// The workload's starting directory, absolute: the working directory of its first
    /// process until a call shows another, and the directory paths are shown relative to.
    pub base_dir: Option<PathBuf>,
    /// Absolute paths that existed before the workload ran: an `open` with `O_CREAT`
    /// (without `O_EXCL`) of one of them does not create it. Without them, such an open
    /// of a path the trace has not shown to exist counts as a creation.
    pub preexisting: BTreeSet<PathBuf>,
    /// The file system linted, absolute: files elsewhere (the recorder's own, `/tmp`)
    /// are not in any crash state, so they are not linted. Everything, when None.
    pub root: Option<PathBuf>,
}

impl LintOptions {
    pub fn new(mark_file: &Path) -> Self {
        LintOptions { mark_file: mark_file.to_path_buf(), ..LintOptions::default() }
    }

    /// Linting only files under `root`.
    #[must_use]
    pub fn root(mut self, root: &Path) -> Self {
        self.root = Some(root.to_path_buf());
        self
    }

    /// With `base_dir` as the starting directory.
    #[must_use]
    pub fn base_dir(mut self, base_dir: &Path) -> Self {
        self.base_dir = Some(base_dir.to_path_buf());
        self
    }
}

/// The findings in `calls` (a whole trace, in its order), acknowledgements being the
/// writes to `mark_file`; in the order of their first offending call.
pub fn lint(calls: &[Call], mark_file: &Path) -> Vec<Finding> {
    lint_with(calls, &LintOptions::new(mark_file))
}

/// [`lint`] with every option.
pub fn lint_with(calls: &[Call], options: &LintOptions) -> Vec<Finding> {
    let mut walker = walk::Walker::new(calls, options.base_dir.as_deref(), &options.mark_file, &options.preexisting);
    walker.state.root = options.root.as_deref().map(paths::normalize);
    for call in calls {
        walker.step(call);
    }
    walker.finish()
}

#[cfg(test)]
mod tests;
