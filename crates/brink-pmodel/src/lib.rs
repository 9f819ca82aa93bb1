//! Persistence models: which disk states a power cut may leave behind, counted exactly
//! and enumerated lazily. This crate does no I/O: it sees a trace as epochs of writes
//! and marks and answers with crash states, which the explorer materializes.
//!
//! # Terms
//! - An **epoch** is the run of events between two flushes (or the start or end of the
//!   trace). Everything written in earlier epochs is durable when the epoch starts.
//! - A **crash point** is a position in the event log: a crash happens just before the
//!   event at that index. Points that matter are just before each mark (the latest
//!   moment with that set of acknowledgements) and at the end of each epoch (just
//!   before its flush completes, or at the end of the trace). A state at a point is held
//!   to the marks before it.
//! - A **volatile** write at a point is a write of the point's epoch that completed
//!   before the point and is not FUA. A **crash state** is a point plus a choice, for
//!   each volatile write, of persisted whole, omitted, or (with a torn model) persisted
//!   in part. Writes that persist are applied in completion order, so of two persisted
//!   writes to one sector the later wins.
//!
//! # The logical level (ALICE's abstract persistence models)
//! From the same recording's system calls, [`logical_ops`] gives ALICE-style logical
//! operations, an [`Apm`] splits them into micro-operations with ordering rules
//! ([`Plan`]; each APM's assumptions are argued in `apm.rs`), [`Plan::states`] visits
//! the legal sets of persisted micro-ops (ids `L<op.k>[-op.k]…`, documented in
//! `lstate.rs`), and an [`Applier`] gives the file tree each leaves. The rest of these
//! docs are about the block level.
//!
//! # Assumptions about the media, per model
//! `writeback` (default): a volatile write cache that honours flush and FUA.
//! 1. A write completed before a completed flush is durable; so is a FUA write once it
//!    completes.
//! 2. Any other completed write may or may not have reached the media at a crash,
//!    independently of the others: the cache may write back in any order, and may
//!    have written back a write to a block before a later write to the same block.
//! 3. Without `--torn`, each write is atomic: it persists whole or not at all.
//! 4. A discard (or write-zeroes) is a write of zeros for this purpose; it is never torn.
//!
//! `writethrough`: no volatile cache reordering.
//! 1. Writes reach the media in completion order; a crash keeps a prefix of the writes
//!    completed since the last flush (flushes still bound what must be durable).
//! 2. Atomicity as in `writeback`.
//!
//! Torn variants (with either cache model):
//! - `--torn sector`: a write of several sectors may persist any subset of its sectors
//!   (sectors themselves are atomic). A sector is the trace's (`brink_trace::SECTOR_BYTES`,
//!   512 bytes); this crate counts sectors and never needs their size in bytes.
//! - `--torn prefix`: a write persists a prefix of its sectors (the device writes in
//!   order and stops at the crash).
//!
//! Media faults (`brink explore --media-faults`, off by default): besides the states
//! above, at each crash point the state with every volatile write persisted is taken
//! again with **one** fault on one of those writes (never two faults in one state):
//! - *garbage tear* (`~gI`): write I persists its first half of sectors, and its other
//!   sectors read back as garbage (deterministic pseudo-random bytes), not as the old
//!   data: a torn write on a device that does not keep the old sector;
//! - *latent sector error* (`~lI`): write I persists, but reading its first sector
//!   fails with EIO while the file system recovers and the checkers run (served by
//!   the explorer's FUSE layer; kernel recovery only);
//! - *misdirected write* (`~mI`): write I's data lands on the sectors right after its
//!   own (before them at the end of the disk) and its own sectors keep the old data.
//!
//! Not modelled: writes that never completed (the recorder logs completions only),
//! corruption of data that had reached the media other than the media faults above,
//! lost writes. The file
//! system's journaling mode is not a model parameter: it is what the trace was recorded
//! under, and its effect is in the writes and flushes themselves.
//!
//! # State ids
//! A state is named `P` (the point's event index) followed, for each volatile write that
//! is not persisted whole, in event order, by `-I` (write at event index I omitted) or
//! `-ItMASK` (persisted sectors given by the hex bitmask MASK, least significant bit =
//! first sector), then, for a media fault, `~gI`, `~lI` or `~mI`. `120` is the crash
//! before event 120 with every volatile write persisted; `120-3-7tf` omits write 3 and
//! keeps the first four sectors of write 7; `120~m7` is `120` with write 7 misdirected.
//! Ids depend only on the trace, the model and the strategy, so they are the same on any
//! machine and at any parallelism.

#![forbid(unsafe_code)]

mod apm;
mod count;
mod epoch;
mod frontend;
mod id;
mod logical;
mod lstate;
mod micro;
mod rng;
mod strategy;
mod translate;
mod tree;

pub use apm::{Apm, BLOCK, UnknownApm};
pub use count::Count;
pub use epoch::{CrashPoint, Epoch, EpochBuilder, PWrite};
pub use frontend::{LogicalInput, call_index, logical_ops};
pub use id::{MediaFault, ParseIdError, StateId, WriteChoice};
pub use logical::{
    At, Gone, Initial, Ino, LogicalOp, LogicalTrace, NodeKind, Op, ROOT, RangeSync, Warning, WarningKind,
};
pub use lstate::{LState, LStateId, LStateIter, LStrategy, MicroRef, ParseLStateIdError};
pub use micro::{EntryChange, Fill, Micro, MicroOp, Plan};
pub use strategy::{CrashState, Draw, SampleCoverage, Sampler, StateIter, Strategy, count_point, shares};
pub use tree::{Applier, CHECKPOINT_EVERY, Extent, FileView, Inode, Tree};

use serde::{Deserialize, Serialize};

/// The disk cache model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheModel {
    Writeback,
    Writethrough,
}

/// Whether and how writes may tear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Torn {
    None,
    Sector,
    Prefix,
}

/// A persistence model: a cache model plus tearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Model {
    pub cache: CacheModel,
    pub torn: Torn,
}

impl Model {
    pub const WRITEBACK: Model = Model { cache: CacheModel::Writeback, torn: Torn::None };

    /// `writeback`, `writethrough`, `writeback+torn-sector`, …
    pub fn name(&self) -> String {
        let cache = match self.cache {
            CacheModel::Writeback => "writeback",
            CacheModel::Writethrough => "writethrough",
        };
        match self.torn {
            Torn::None => cache.to_string(),
            Torn::Sector => format!("{cache}+torn-sector"),
            Torn::Prefix => format!("{cache}+torn-prefix"),
        }
    }
}
