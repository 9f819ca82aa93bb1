//! The explorer's errors, one enum per concern: running an exploration
//! ([`ExploreError`]), reading and writing a results directory ([`ResultsError`]) and
//! materializing one state ([`ReplayError`]).
//!
//! Messages state the problem and name settings in words ("the maximum number of
//! states", "resume"), never as a command-line flag: the binary and a suite manifest
//! spell settings differently, and each maps the words to its own spelling. The cause,
//! where there is one, is the error's `source()`, not part of its message, so a caller
//! printing the chain prints each part once.

use std::path::{Path, PathBuf};

use brink_blockdev::FsKind;
use brink_pmodel::{Count, StateId};

/// Why an exploration (or counting its space) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExploreError {
    #[error(transparent)]
    Trace(#[from] brink_trace::TraceError),
    #[error(transparent)]
    Blockdev(#[from] brink_blockdev::BlockdevError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Setting(#[from] crate::SettingError),
    #[error(transparent)]
    MissingTool(#[from] crate::MissingTool),
    #[error("kernel recovery needs root (it mounts every crash state): run as root, or recover in userspace (ext4)")]
    NeedsRoot,
    #[error(
        "the trace's file system is '{fs}': brink explores ext4, xfs and btrfs (for an imported trace, name its file system when importing)"
    )]
    UnknownFs { fs: String },
    #[error("userspace recovery uses e2fsprogs and covers ext4 only, not {fs}")]
    UserspaceNotExt4 { fs: FsKind },
    #[error(
        "the {strategy} space has {count} states, more than the maximum number of states ({max}): raise that maximum, or use a strategy that visits fewer (prefix, omit-one, or sample, which is bounded by its sample)"
    )]
    TooManyStates { strategy: String, count: Count, max: u128 },
    #[error("bad mount options in the trace")]
    MountOptions(#[source] brink_blockdev::BlockdevError),
    #[error("event {event}: {len} bytes at byte {offset} is not whole sectors")]
    Unaligned { event: u64, offset: u64, len: u64 },
    #[error("event {event}: a write of {len} bytes is too large")]
    WriteTooLarge { event: u64, len: u64 },
    #[error("cannot read the durable image")]
    ReadDurable(#[source] std::io::Error),
    #[error("cannot write the durable image")]
    WriteDurable(#[source] std::io::Error),
    #[error("cannot mount the state slots (FUSE) on {}", path.display())]
    SlotMount { path: PathBuf, source: std::io::Error },
    #[error("cannot start {jobs} worker threads")]
    Pool { jobs: usize, source: rayon::ThreadPoolBuildError },
    /// Checkers left more state file systems busy than a run retires slots for
    /// (rig.rs): their processes still hold them.
    #[error(
        "processes started by the checkers kept {retired} states' file systems busy after their checks, as many as a run can set aside: stop those processes (the checker must wait for what it starts), then resume"
    )]
    SlotsExhausted { retired: usize },
    /// `--slots memory` was asked for a run the memory slots cannot serve (`rig.rs`).
    #[error("the memory slots cannot serve this run ({0}): use --slots fuse or auto")]
    MemorySlots(String),
    /// brink's own scratch files (a state's image, its marks, extracted files) could not
    /// be written: no state is judged from them.
    #[error("cannot write brink's scratch file {}: no state is judged from it", path.display())]
    Scratch { path: PathBuf, source: std::io::Error },
    /// The scratch directory's file system is (nearly) full after a step: what the step
    /// wrote there (a checker's captured output) may be cut.
    #[error(
        "the file system of {} has {avail} bytes left, less than the {min} a state's checks need: their output may be cut, so the state is not judged; make room, then resume",
        path.display()
    )]
    ScratchFull { path: PathBuf, avail: u64, min: u64 },
    /// The scratch directory's file system has no inode left: a checker's output
    /// cannot be captured.
    #[error(
        "the file system of {} has no inode left: a state's checks cannot capture their output, so the state is not judged; make room, then resume",
        path.display()
    )]
    NoInodes { path: PathBuf },
    /// A program of the userspace recovery disappeared after the run started.
    #[error("{prog} is no longer installed")]
    ToolGone { prog: &'static str },
    /// A program of the userspace recovery could not be run or its output captured.
    #[error("cannot run {prog}")]
    Tool { prog: &'static str, source: brink_check::RunError },
    #[error("cannot attribute the trace's writes")]
    Attribution(#[source] brink_attrib::AttribError),
}

impl ExploreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ExploreError::Io { path: path.to_path_buf(), source }
    }
}

/// Why a results directory cannot be opened, resumed or read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    #[error("{}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} already exists: resume continues that run, or choose another results directory", dir.display())]
    Exists { dir: PathBuf },
    /// Another run holds the directory's lock (results.rs): `holder` names it.
    #[error("{} is in use by another brink run ({holder}): one run at a time per results directory", dir.display())]
    Busy { dir: PathBuf, holder: String },
    #[error("cannot resume: {} does not exist", dir.display())]
    NothingToResume { dir: PathBuf },
    #[error("{} holds no brink run to resume (no valid {})", dir.display(), crate::results::RUN)]
    NoRun { dir: PathBuf },
    #[error(
        "{} was explored with other settings (trace, model, strategy or checkers): resume needs the same ones",
        dir.display()
    )]
    OtherSettings { dir: PathBuf },
    /// Resuming a shard needs the same shard (`shard.rs`).
    #[error("{} holds {had}, not {asked}: resume needs the same shard", dir.display())]
    OtherShard { dir: PathBuf, had: String, asked: String },
    /// A line (or, without a line number, a whole file) that is not what brink writes.
    #[error("{}{}", path.display(), line.map(|n| format!(": line {n}")).unwrap_or_default())]
    Json { path: PathBuf, line: Option<usize>, source: serde_json::Error },
    #[error("bad image hash '{hex}' in {}", path.display())]
    BadImageHash { path: PathBuf, hex: String },
    #[error("{}: line {line}: bad state id '{id}'", path.display())]
    BadStateId { path: PathBuf, line: usize, id: String },
    /// `states.jsonl` breaks one of its invariants (results.rs): it was not written by
    /// brink, or was edited.
    #[error("{}: line {line}: {what}", path.display())]
    Invariant { path: PathBuf, line: usize, what: String },
    /// A partial log's record of a state this exploration never generates (an id that
    /// passes every check of its own, e.g. one write index changed): not this run's.
    #[error("{}: state {id} is not one this exploration generates: the partial log is not this run's", path.display())]
    Foreign { path: PathBuf, id: String },
    /// A results file that is not a regular file (`results::open_file`).
    #[error(transparent)]
    Unreadable { source: brink_trace::TraceError },
}

impl ResultsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ResultsError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn json(path: &Path, line: Option<usize>, source: serde_json::Error) -> Self {
        ResultsError::Json { path: path.to_path_buf(), line, source }
    }
}

/// Why a state cannot be materialized (`replay::materialize`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] brink_trace::TraceError),
    #[error("{}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state {id}: the trace has only {events} events")]
    PastTheEnd { id: StateId, events: u64 },
    #[error("state {id} does not fit this trace: event {event} is not a volatile write at crash point {}", id.position)]
    NotVolatile { id: StateId, event: u64 },
    #[error("state {id}: write {write} has both a choice and a media fault")]
    ChoiceAndFault { id: StateId, write: u64 },
    #[error("state {id}: write {write} has nowhere to be misdirected to")]
    NowhereToMisdirect { id: StateId, write: u64 },
    #[error("{} already exists; choose a new directory", path.display())]
    OutputExists { path: PathBuf },
    #[error(transparent)]
    Blockdev(#[from] brink_blockdev::BlockdevError),
    #[error("bad mount options in the trace")]
    MountOptions(#[source] brink_blockdev::BlockdevError),
}

impl ReplayError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReplayError::Io { path: path.to_path_buf(), source }
    }
}

/// Why shards cannot be merged (`merge.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("nothing to merge: name the shards' results directories")]
    NoInputs,
    #[error("{} holds no finished run (no {}): it is running, or was killed; resume it first", dir.display(), crate::results::SUMMARY)]
    Unfinished { dir: PathBuf },
    #[error("{} is not a shard: it was not explored with a shard (its {} names none)", dir.display(), crate::results::RUN)]
    NotSharded { dir: PathBuf },
    #[error("{} and {} are shards of different explorations ({what} differ): merge needs shards of one", a.display(), b.display())]
    OtherExploration { a: PathBuf, b: PathBuf, what: String },
    #[error("{} is shard {sa} and {} shard {sb}: merge needs shards of one split", a.display(), b.display())]
    OtherSplit { a: PathBuf, sa: crate::Shard, b: PathBuf, sb: crate::Shard },
    #[error("{} and {} are both shard {shard}: name each shard once", a.display(), b.display())]
    SameShard { a: PathBuf, b: PathBuf, shard: crate::Shard },
    #[error("state {id} is in {} and in {}: the shards do not partition one exploration", a.display(), b.display())]
    StateInTwoShards { id: String, a: PathBuf, b: PathBuf },
    #[error("{} already exists; choose a new directory for the merge", dir.display())]
    OutputExists { dir: PathBuf },
}

impl MergeError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        MergeError::Io { path: path.to_path_buf(), source }
    }
}
