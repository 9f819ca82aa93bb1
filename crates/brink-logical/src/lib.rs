//! The logical explorer (issue 15): one recording's system calls replayed under an
//! abstract persistence model ([`brink_pmodel::Apm`]), each crash state the model allows
//! materialized as a directory tree and checked with the checker protocol of
//! `brink-check`. No root, no loop device, no mount.
//!
//! ```text
//! Recording::open   the trace's calls → logical ops; the base image's files extracted
//!                   once (debugfs, btrfs restore; XFS mounted) → the initial tree (base.rs)
//! explore           per APM: the plan, the strategy's states in order; each state's tree
//!                   (brink_pmodel::Applier) hashed → dedup by (tree, marks) → the
//!                   representatives built incrementally in per-worker directories and
//!                   checked in parallel → verdicts recorded           (engine.rs)
//! ```
//!
//! Results are a brink-explore results directory at the logical level (see
//! `brink_explore::results`: `run.json`, `states.partial.jsonl`, `states.jsonl`,
//! `summary.json`), one per APM. They are the same at any `--jobs`: states are generated
//! and deduplicated in one order on one thread (the first state of each (tree, marks) in
//! the strategy's order is its representative), and only checks run in parallel.
//!
//! The checker protocol is brink-check's, with `BRINK_STATE_ROOT` the state's tree (a
//! plain directory), `BRINK_MARKS` its acknowledged marks, `BRINK_STATE_ID` its logical
//! id (`L7.2-3.0`), `BRINK_TRACE` the trace and `BRINK_IMAGE` empty (there is no image).

#![forbid(unsafe_code)]

mod base;
mod content;
mod engine;
mod error;
mod listing;
mod materialize;
mod member;
mod minimize;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use brink_pmodel::{Apm, LStrategy};

pub use base::Base;
pub use content::{Content, Hasher};
pub use engine::{Recording, explore, strategy_name};
pub use error::LogicalError;
pub use listing::{Lister, ModelListing, ModelSpace, model_space};
pub use materialize::{Node, WorkDir};

/// One logical exploration: a trace under one APM.
#[derive(Debug, Clone)]
pub struct LogicalConfig {
    pub trace: PathBuf,
    /// This APM's results directory (`OUT/<apm>` on the command line).
    pub results: PathBuf,
    pub apm: Apm,
    pub strategy: LStrategy,
    /// Runs visiting more states than this are refused (`exhaustive`; the others are
    /// bounded by the trace).
    pub max_states: u128,
    /// Commands run through `sh -c` in the state's tree.
    pub checkers: Vec<String>,
    pub jobs: usize,
    pub checker_timeout: Duration,
    pub time_budget: Option<Duration>,
    pub resume: bool,
    /// Explore only this shard's states (`brink_explore::Shard::owns_state`).
    pub shard: Option<brink_explore::Shard>,
    /// How checkers are called (brink's protocol or ALICE's).
    pub checker_protocol: brink_check::Protocol,
    /// A verdict cache folder shared between runs (`brink_explore::cache`), keyed by the
    /// state's tree hash and marks: equal trees share verdicts across runs and models.
    pub cache: Option<PathBuf>,
    /// Set to a signal number by the binary's handlers: stop, keep what is done.
    pub interrupt: Arc<AtomicUsize>,
}
