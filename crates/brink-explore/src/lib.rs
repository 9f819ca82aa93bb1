//! The crash-state explorer: for every crash state a persistence model allows (or a
//! bounded or sampled part of them), build the disk, let the real kernel recover it,
//! and ask the checkers.
//!
//! How a run goes:
//! 1. A counting pass over the event kinds gives the exact size of the space (refused
//!    above `max_states` for exhaustive runs).
//! 2. The trace is streamed epoch by epoch. A *durable image* (a private sparse copy of
//!    the base image) holds everything flushed before the current epoch; after the
//!    epoch's states are checked, its writes are applied to it.
//! 3. For each state of the epoch, its content over the epoch's footprint is computed
//!    and hashed additively (`adhash`); states with the same image and the same marks
//!    are checked once. Hashing runs in parallel.
//! 4. Unique states are checked in parallel (rayon), one per *slot*: a FUSE file whose
//!    reads are the durable image plus a private overlay (`slots`), under a loop device
//!    attached once for the whole run. The kernel mounts it (journal replay), checkers
//!    run, it is unmounted (`worker`).
//! 5. After the last epoch, one more state, whatever the strategy: *no crash, page
//!    cache dropped*. The disk as the recording left it (every write that reached it,
//!    none of the failed ones) held to every mark: what another process reads once the
//!    cached pages are gone. Its id is the trace's event count (a crash after the last
//!    event). An application that acknowledged data a failed fsync threw away fails
//!    here without any crash.
//! 6. Verdicts are appended to `states.partial.jsonl` as they finish; the end writes
//!    `states.jsonl` sorted by state id and `summary.json` (`results`).
//!
//! What a run refuses to do (issue 13): start with a setting out of range or a program
//! it needs missing (`settings.rs`); share its results directory with another run
//! (a lock, `results.rs`); judge a state from another state's file system (a stale
//! slot is retired, `rig.rs`); record a verdict when its own I/O failed (the run stops,
//! and resume checks that state); call a run with unjudged states a pass
//! (`Summary::unjudged`).
//!
//! Where each part lives: the sequence itself in `engine.rs` (one method a step); the
//! machine side (work area, durable image, FUSE slots, loop devices, workers) in
//! `rig.rs`; media-fault states in `media.rs`; a state as an image file in
//! `state_image.rs`; hashing and pieces of an epoch's states in `footprint.rs`.
//!
//! Invariants: the explorer knows no checker by name except the built-in `fsck`; it
//! never copies an image per state; memory follows the epoch being explored (its
//! payloads and footprint) and the number of unique states (one small entry each).

#![forbid(unsafe_code)]

mod adhash;
pub mod cache;
pub mod defaults;
mod engine;
mod error;
mod footprint;
mod media;
mod memslots;
pub mod merge;
mod minimize;
mod overlay;
mod plan;
pub mod replay;
pub mod results;
mod rig;
mod settings;
pub mod shard;
mod slots;
mod state_image;
pub mod tree;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use brink_blockdev::{FsKind, MountOptions};
use brink_pmodel::{Count, Model, Strategy, count_point};
use brink_trace::TraceReader;
use serde::Serialize;

pub use adhash::ImageHash;
pub use error::{ExploreError, MergeError, ReplayError, ResultsError};
pub use footprint::hash_image;
pub use minimize::{PROBES_PER_STATE_MAX, ddmin, minimize_group};
pub use results::{
    AnyStateId, Level, MergeInfo, NoCrash, Results, RunIdentity, StateRecord, Summary, TimeSummary, TornRecord,
};
pub use settings::{MissingTool, Setting, SettingError, seconds};
pub use shard::{Shard, ShardError};
pub use worker::{CheckerSpec, InProcessCheck, Recovery};

#[derive(Debug, Clone)]
pub struct ExploreConfig {
    pub trace: PathBuf,
    pub results: PathBuf,
    pub model: Model,
    pub strategy: Strategy,
    /// Exhaustive runs larger than this are refused (default `defaults::STATES_MAX`).
    pub max_states: u128,
    pub checkers: Vec<CheckerSpec>,
    pub jobs: usize,
    pub checker_timeout: Duration,
    pub time_budget: Option<Duration>,
    pub resume: bool,
    pub recovery: Recovery,
    /// Also check the media-fault states (brink-pmodel's docs): one fault per state.
    pub media_faults: bool,
    /// A verdict cache folder shared between runs (`cache.rs`); none: every state is checked.
    pub cache: Option<PathBuf>,
    /// Set to a signal number by the binary's handlers: stop, keep what is done.
    pub interrupt: Arc<AtomicUsize>,
    /// Explore only this shard of the states (`shard.rs`); none: all of them.
    pub shard: Option<Shard>,
    /// A state whose recovered files and marks equal a checked state's takes its
    /// checkers' verdict (`tree.rs`); false: every distinct image runs the checkers.
    pub tree_dedup: bool,
    /// How user checkers are called: brink's protocol, or ALICE's (`brink_check::Protocol`).
    pub checker_protocol: brink_check::Protocol,
    /// What serves the states to kernel recovery (`rig.rs`).
    pub slots: SlotKind,
}

/// What serves crash states to kernel recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// The memory slots where they can serve the run, else the FUSE slots.
    Auto,
    /// Each state in a memory file under a loop device (`memslots.rs`).
    Memory,
    /// Each state served by brink's FUSE daemon (`slots.rs`): the only slots that serve
    /// latent sector errors.
    Fuse,
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub violations: AtomicU64,
    pub checker_failures: AtomicU64,
}

/// Counts of the space, without checking anything.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceCount {
    pub model: String,
    pub strategy: String,
    /// Runs of writes between flushes (each holds at least one), as `brink show` counts
    /// them: the epochs that have crash points.
    pub epochs: u64,
    pub crash_points: u64,
    /// The states the strategy visits (for `sample`: the space it samples from).
    pub states_total: Count,
    /// The states a run checks, the no-crash state aside: `states_total`, or for
    /// `sample` the sample (at most the space).
    pub states_to_check: Count,
}

/// Count the states `strategy` visits (exact; saturates at 2^128 − 1).
pub fn count(trace: &Path, model: Model, strategy: Strategy) -> Result<SpaceCount, ExploreError> {
    count_in(&TraceReader::open(trace)?, model, strategy)
}

/// [`count`] over a trace already open.
pub(crate) fn count_in(reader: &TraceReader, model: Model, strategy: Strategy) -> Result<SpaceCount, ExploreError> {
    count_points(reader, model, strategy, None)
}

/// `count_in`, and each crash point's count pushed onto `points` when given (what a
/// stratified sample is drawn from).
pub(crate) fn count_points(
    reader: &TraceReader,
    model: Model,
    strategy: Strategy,
    mut points: Option<&mut Vec<Count>>,
) -> Result<SpaceCount, ExploreError> {
    let mut c = SpaceCount {
        model: model.name(),
        strategy: strategy.name(),
        epochs: 0,
        crash_points: 0,
        states_total: Count::ZERO,
        states_to_check: Count::ZERO,
    };
    let mut marks = Vec::new();
    plan::for_each_epoch(reader, &mut marks, |ed, _| {
        c.epochs += u64::from(!ed.writes.is_empty());
        for p in &ed.epoch.points {
            c.crash_points += 1;
            let n = count_point(model, strategy, &ed.epoch, p);
            c.states_total = c.states_total.add(n);
            if let Some(points) = points.as_deref_mut() {
                points.push(n);
            }
        }
        Ok(true)
    })?;
    c.states_to_check = match strategy {
        Strategy::Sample { samples, .. } => Count(c.states_total.0.min(u128::from(samples))),
        _ => c.states_total,
    };
    Ok(c)
}

fn fs_of(meta_fs: &str) -> Result<FsKind, ExploreError> {
    meta_fs.parse().map_err(|_| ExploreError::UnknownFs { fs: meta_fs.to_string() })
}

/// Mount options for recovering states of a trace: the recorded ones, plus `nouuid`
/// for XFS (several slots hold file systems with the same UUID at once).
pub fn state_mount_options(fs: FsKind, recorded: &str) -> Result<MountOptions, brink_blockdev::BlockdevError> {
    let mut text = recorded.to_string();
    if fs == FsKind::Xfs && !text.split(',').any(|o| o == "nouuid") {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str("nouuid");
    }
    text.parse()
}

/// Explore `cfg.trace`. See the crate docs for the sequence, `engine.rs` for its steps.
pub fn explore(cfg: &ExploreConfig, progress: &Progress) -> Result<Summary, ExploreError> {
    engine::Explorer::open(cfg, progress, None)?.run()
}

/// Explore `cfg.trace` with `check` recovering and checking each state in this process
/// instead of `cfg.recovery` and `cfg.checkers` (which still name the run in `run.json`
/// and key the verdict cache): no root, mounts or e2fsprogs needed. For tests of the
/// engine itself; latent sector errors are not generated (only the slots serve them).
pub fn explore_in_process(
    cfg: &ExploreConfig,
    progress: &Progress,
    check: Arc<dyn InProcessCheck>,
) -> Result<Summary, ExploreError> {
    engine::Explorer::open(cfg, progress, Some(check))?.run()
}
