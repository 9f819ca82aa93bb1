//! The suite: workloads with the verdicts they must get. A manifest (`workload.toml`,
//! see [`manifest`]) says how to record a workload and explore its crash states in
//! each mode (a journaling mode, a file system, application settings) and whether that
//! mode must be clean or must show violations. [`judge`] turns one mode's exploration
//! into a table row that passes or not. Recording and exploring are the other crates'
//! job; the binary drives them (with progress for people) between [`Workload::plan`]
//! and [`judge`], so this crate holds no I/O beyond reading manifests and describing
//! the machine.
//!
//! Why expectations live with the workload: a suite is a regression test of brink
//! itself. A buggy workload that stops failing means brink lost its eyes; a fixed one
//! that starts failing means a false positive. Both must turn the suite red.

pub mod judge;
mod machine;
pub mod manifest;

pub use judge::{Example, Outcome, Row, RunFacts, judge, render_markdown, render_text};
pub use machine::describe_machine;
pub use manifest::{Expect, ExploreSpec, Mode, Workload, discover, load};

use std::path::{Path, PathBuf};

use brink_explore::{CheckerSpec, ExploreConfig, Recovery};
use brink_pmodel::Strategy;
use brink_record::{Interrupt, RecordConfig};

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{path}: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl SuiteError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SuiteError {
        SuiteError::Io { path: path.to_path_buf(), source }
    }
}

/// How a suite run explores, whatever the manifests say.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// Exhaustive exploration of every mode, bounded by `full_max_states`.
    pub full: bool,
    pub full_max_states: u128,
    pub jobs: usize,
    pub recovery: Recovery,
    pub interrupt: Interrupt,
    /// The verdict cache folder every mode's exploration shares (`--cache`).
    pub cache: Option<PathBuf>,
}

/// What to do for one mode: where its trace and results go, and the two configs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub record: RecordConfig,
    pub explore: ExploreConfig,
}

impl Workload {
    /// The configs for `mode`, writing `dir/trace` and `dir/results`.
    pub fn plan(&self, mode: &Mode, dir: &Path, opts: &RunOpts) -> Result<Plan, SuiteError> {
        let mount_opts = mode.mount_opts.parse().map_err(|e| SuiteError::Manifest {
            path: self.dir.join("workload.toml"),
            msg: format!("mode '{}': {e}", mode.name),
        })?;
        let (strategy, max_states) =
            if opts.full { (Strategy::Exhaustive, opts.full_max_states) } else { (mode.strategy, mode.max_states) };
        Ok(Plan {
            record: RecordConfig {
                fs: mode.fs,
                mkfs_opts: mode.mkfs_opts.clone(),
                mount_opts,
                size: mode.size,
                setup: mode.setup.clone(),
                argv: vec!["/bin/sh".into(), "-c".into(), mode.command.clone()],
                output: dir.join("trace"),
                interrupt: opts.interrupt.clone(),
                inject: mode.inject.clone(),
                watch: Vec::new(),
            },
            explore: ExploreConfig {
                trace: dir.join("trace"),
                results: dir.join("results"),
                model: self.explore.model,
                strategy,
                max_states,
                checkers: self.checkers.iter().map(|c| CheckerSpec::parse(c)).collect(),
                jobs: opts.jobs,
                checker_timeout: self.explore.checker_timeout,
                time_budget: None,
                resume: false,
                recovery: opts.recovery,
                media_faults: false,
                cache: opts.cache.clone(),
                interrupt: opts.interrupt.0.clone(),
            },
        })
    }
}
