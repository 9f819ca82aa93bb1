//! `brink suite`: flags to a selection of workloads and modes, the suite's runner
//! (`brink_suite::run`) with progress, one table printed, and the exit code. Also the
//! flags every runner of workload manifests takes ([`RunArgs`]) and the jobs default.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use brink_suite::{Outcome, RunOpts};

use crate::emit;
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct SuiteArgs {
    /// The folder of workloads (each a folder with a workload.toml).
    #[arg(default_value = "workloads")]
    workloads: PathBuf,
    /// Run only these workloads (folder names).
    names: Vec<String>,
    /// Results directory (must not exist): WORKLOAD/MODE/{trace,results}, suite.json,
    /// suite.md.
    #[arg(short, long)]
    output: PathBuf,
    /// Run only the modes with these names (repeatable).
    #[arg(long = "mode")]
    modes: Vec<String>,
    /// Explore every mode exhaustively (overnight), instead of each manifest's bound.
    #[arg(long)]
    full: bool,
    /// With --full: refuse a mode whose space is larger than this.
    #[arg(long, default_value_t = brink_suite::FULL_MAX_STATES_DEFAULT)]
    max_states: u128,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags every runner of workload manifests takes (suite, faults sweep).
#[derive(clap::Args)]
pub struct RunArgs {
    /// What `{checkers}` stands for in manifests (default: `checkers` beside the
    /// workloads folder).
    #[arg(long)]
    checkers: Option<PathBuf>,
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Reuse verdicts of earlier runs kept in this folder, and add this run's to it.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Run the checkers on every distinct image, even when its recovered files and
    /// marks equal a state already checked.
    #[arg(long)]
    pub no_tree_dedup: bool,
    /// Explore the traces an earlier suite run recorded in DIR (its -o) instead of
    /// recording again: the same recordings under other settings.
    #[arg(long, value_name = "DIR")]
    pub traces: Option<PathBuf>,
}

impl RunArgs {
    /// `--checkers`, or the `checkers` folder beside the folder of workloads.
    pub fn checkers_dir(&self, workloads: &Path) -> PathBuf {
        self.checkers.clone().unwrap_or_else(|| {
            std::path::absolute(workloads)
                .unwrap_or(workloads.to_path_buf())
                .parent()
                .map_or("checkers".into(), |p| p.join("checkers"))
        })
    }

    /// The options of a bounded run: `--jobs`, `--cache` and `--no-tree-dedup`.
    pub fn run_opts(&self, interrupt: brink_record::Interrupt) -> Result<RunOpts> {
        let mut opts = RunOpts::new(jobs(self.jobs)?, interrupt);
        opts.cache = self.cache.clone();
        opts.tree_dedup = !self.no_tree_dedup;
        opts.traces = self.traces.clone();
        Ok(opts)
    }
}

/// `--jobs`, or the explorer's default (twice the number of CPUs).
pub(crate) fn jobs(flag: Option<usize>) -> Result<usize> {
    brink_explore::defaults::jobs(flag).map_err(|_| anyhow::anyhow!("--jobs must be at least 1"))
}

pub fn suite(a: SuiteArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    let checkers = a.run.checkers_dir(&a.workloads);
    let mut selected = Vec::new();
    for dir in brink_suite::discover(&a.workloads, &a.names)? {
        let w = brink_suite::load(&dir, &checkers)?;
        let modes: Vec<_> =
            w.modes.iter().filter(|m| a.modes.is_empty() || a.modes.contains(&m.name)).cloned().collect();
        if !modes.is_empty() {
            selected.push((w, modes));
        }
    }
    for m in &a.modes {
        if !selected.iter().any(|(_, modes)| modes.iter().any(|x| &x.name == m)) {
            bail!("no selected workload has a mode named '{m}'");
        }
    }
    let mut opts = a.run.run_opts(interrupt)?;
    (opts.full, opts.full_max_states) = (a.full, a.max_states);
    brink_suite::fresh_dir(&a.output)?;
    let t = Instant::now();
    let rows = brink_suite::run_workloads(&selected, &|w, m| a.output.join(&w.name).join(&m.name), &opts, &Bars)?;
    let title = if a.full { "brink suite --full (exhaustive)" } else { "brink suite (bounded, as in CI)" };
    brink_suite::write_tables(&a.output, &rows, title, env!("CARGO_PKG_VERSION"))?;
    if a.run.json {
        emit(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
    } else {
        let mismatches = rows.iter().filter(|r| r.outcome == Outcome::Mismatch).count();
        emit(&format!(
            "{}\n{} modes, {} as expected, {mismatches} mismatches, {:.0}s; tables in {}\n",
            brink_suite::render_text(&rows),
            rows.len(),
            rows.len() - mismatches,
            t.elapsed().as_secs_f64(),
            a.output.join("suite.md").display()
        ))?;
    }
    Ok(if rows.iter().any(|r| r.outcome == Outcome::Mismatch) { 1 } else { 0 })
}
