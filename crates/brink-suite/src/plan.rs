//! From a mode of a workload to the configs that record and explore it. The run options
//! ([`RunOpts`]) are what a whole run decides whatever the manifests say: the jobs, the
//! recovery, the verdict cache, and the `full` policy that trades each manifest's bound
//! for an exhaustive exploration.

use std::path::{Path, PathBuf};

use brink_explore::{CheckerSpec, ExploreConfig, Recovery};
use brink_pmodel::{Model, Strategy};
use brink_record::{Interrupt, RecordConfig};

use crate::error::{ManifestError, ManifestProblem};
use crate::manifest::{Mode, Workload};

/// Refuse a `full` run's mode whose exhaustive space is larger than this, by default.
pub const FULL_MAX_STATES_DEFAULT: u128 = 10_000_000;

/// How a suite run explores, whatever the manifests say.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// Exhaustive exploration of every mode, bounded by `full_max_states`.
    pub full: bool,
    pub full_max_states: u128,
    pub jobs: usize,
    pub recovery: Recovery,
    pub interrupt: Interrupt,
    /// The verdict cache folder every mode's exploration shares.
    pub cache: Option<PathBuf>,
    /// Tree deduplication (`ExploreConfig::tree_dedup`), on by default.
    pub tree_dedup: bool,
    /// Explore the traces an earlier run recorded under this folder
    /// (`WORKLOAD/MODE/trace`) instead of recording again: the same recordings under
    /// other settings (`--jobs`, `--no-tree-dedup`, `--full`).
    pub traces: Option<PathBuf>,
}

impl RunOpts {
    /// A bounded run (each manifest's strategy), recovering with the kernel, no cache.
    pub fn new(jobs: usize, interrupt: Interrupt) -> RunOpts {
        RunOpts {
            full: false,
            full_max_states: 0,
            jobs,
            recovery: Recovery::Kernel,
            interrupt,
            cache: None,
            tree_dedup: true,
            traces: None,
        }
    }
}

/// What to do for one mode: where its trace and results go, and the two configs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub record: RecordConfig,
    pub explore: ExploreConfig,
}

impl Workload {
    /// The configs for `mode`, writing `dir/trace` and `dir/results`.
    pub fn plan(&self, mode: &Mode, dir: &Path, opts: &RunOpts) -> Result<Plan, ManifestError> {
        let mount_opts = mode.mount_opts.parse().map_err(|e| ManifestError::Invalid {
            path: self.dir.join("workload.toml"),
            problem: ManifestProblem::MountOptions { mode: mode.name.clone(), message: crate::manifest::text(e) },
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
                // The suite's workloads are scripts running binaries without debug info: their
                // lines are the scripts' (found without stacks).
                syscalls: brink_record::Syscalls::Calls,
                tracer: brink_record::CallTracer::default(),
            },
            explore: ExploreConfig {
                trace: dir.join("trace"),
                results: dir.join("results"),
                model: Model { torn: mode.torn, ..self.explore.model },
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
                shard: None,
                tree_dedup: opts.tree_dedup,
                checker_protocol: brink_check::Protocol::Brink,
                slots: brink_explore::SlotKind::Auto,
            },
        })
    }
}
