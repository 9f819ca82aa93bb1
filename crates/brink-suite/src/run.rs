//! The runner of workload modes: for each mode of each workload, record it, explore its
//! crash states and judge the outcome, one [`Row`] per mode. It serves the suite, the
//! fault sweep ([`crate::sweep`]) and workloads built in code ([`crate::ext4_modes`]).
//!
//! A mode that cannot be recorded or explored becomes a mismatch row saying why, so one
//! broken workload does not hide the others' results; a signal stops the whole run. The
//! caller supplies a [`Driver`]: the recording and the exploration are the two long
//! steps, and a binary wraps them in progress bars and prints the [`Step`]s, while a
//! test or a script can use [`Quiet`].

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use brink_explore::{ExploreConfig, ExploreError, Summary};
use brink_pmodel::Strategy;
use brink_record::{RecordConfig, RecordError, RecordOutcome};

use crate::error::{RunError, one_line};
use crate::judge::{Explored, Row, RunFacts, judge};
use crate::manifest::{Mode, Workload};
use crate::plan::{Plan, RunOpts};

/// What the runner has started or given up on, for a caller that tells people.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Step<'a> {
    /// `label` (`[N/TOTAL] WORKLOAD MODE`) is being recorded.
    Recording { label: &'a str },
    /// The recording of `label` holds `events` events, and they are being explored.
    Exploring { label: &'a str, events: u64 },
    /// `label` failed for the reason `why`; it becomes a mismatch row.
    Failed { label: &'a str, why: &'a str },
}

/// The two long steps of a mode, and where the runner's news goes.
pub trait Driver {
    fn record(&self, cfg: &RecordConfig) -> Result<RecordOutcome, RecordError>;
    fn explore(&self, cfg: &ExploreConfig) -> Result<Summary, ExploreError>;
    /// The logical level (`logical` in a manifest's mode) of the opened recording; by
    /// default without progress.
    fn explore_logical(
        &self,
        rec: &brink_logical::Recording,
        cfg: &brink_logical::LogicalConfig,
    ) -> Result<Summary, brink_logical::LogicalError> {
        brink_logical::explore(rec, cfg, &brink_explore::Progress::default())
    }
    /// Called as each mode reaches a step; by default nothing is said.
    fn step(&self, _step: Step<'_>) {}
}

/// A driver without progress or news.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Driver for Quiet {
    fn record(&self, cfg: &RecordConfig) -> Result<RecordOutcome, RecordError> {
        brink_record::record(cfg, &brink_record::Progress::default())
    }
    fn explore(&self, cfg: &ExploreConfig) -> Result<Summary, ExploreError> {
        brink_explore::explore(cfg, &brink_explore::Progress::default())
    }
}

/// The workloads to run, each with the modes selected.
pub type Selection = [(Workload, Vec<Mode>)];

/// Create `out`, refusing one that exists: a run never mixes its results with another's.
pub fn fresh_dir(out: &Path) -> Result<(), RunError> {
    if out.exists() {
        return Err(RunError::Exists(out.to_path_buf()));
    }
    std::fs::create_dir_all(out).map_err(|source| RunError::CreateDir { path: out.to_path_buf(), source })
}

/// Record, explore and judge each mode of each workload; rows in order. Directories are
/// `dir_of(workload, mode)`. A mode that fails becomes a mismatch row, unless a signal
/// stopped it: then the run stops with its error.
pub fn run_workloads(
    workloads: &Selection,
    dir_of: &dyn Fn(&Workload, &Mode) -> PathBuf,
    opts: &RunOpts,
    driver: &dyn Driver,
) -> Result<Vec<Row>, RunError> {
    let total: usize = workloads.iter().map(|(_, m)| m.len()).sum();
    let mut rows = Vec::new();
    let mut n = 0;
    for (w, modes) in workloads {
        for mode in modes {
            n += 1;
            let label = format!("[{n}/{total}] {} {}", w.name, mode.name);
            let dir = dir_of(w, mode);
            match run_mode(w, mode, &dir, opts, &label, driver) {
                Ok(row) => {
                    let logical = run_logical(w, mode, &dir, opts, &row, driver)?;
                    rows.push(row);
                    rows.extend(logical);
                }
                Err(e) if opts.interrupt.0.load(Ordering::Relaxed) != 0 => return Err(e),
                Err(e) => {
                    let why = one_line(&e);
                    driver.step(Step::Failed { label: &label, why: &why });
                    let (trace, results) = (dir.join("trace"), dir.join("results"));
                    rows.push(Row::failed(&w.name, mode, format!("error: {why}"), trace, results));
                }
            }
        }
    }
    Ok(rows)
}

fn run_mode(
    w: &Workload,
    mode: &Mode,
    dir: &Path,
    opts: &RunOpts,
    label: &str,
    driver: &dyn Driver,
) -> Result<Row, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::CreateDir { path: dir.to_path_buf(), source })?;
    let mut plan = w.plan(mode, dir, opts)?;
    let t = Instant::now();
    match &opts.traces {
        Some(from) => {
            // An earlier run's recording, explored again under this run's settings.
            let trace = from.join(&w.name).join(&mode.name).join("trace");
            (plan.record.output, plan.explore.trace) = (trace.clone(), trace);
        }
        None => {
            driver.step(Step::Recording { label });
            driver.record(&plan.record)?;
        }
    }
    let record_s = t.elapsed().as_secs_f64();
    let note = full_fallback(&mut plan, mode, opts)?;
    let meta = brink_trace::TraceReader::open(&plan.record.output)?.meta().clone();
    let workload = meta.workload.clone().ok_or_else(|| RunError::NotRecorded { trace: plan.record.output.clone() })?;
    driver.step(Step::Exploring { label, events: meta.events });
    let t = Instant::now();
    let summary = driver.explore(&plan.explore)?;
    let explore_s = t.elapsed().as_secs_f64();
    if let Some(why) = &summary.stopped_by {
        return Err(RunError::Stopped { why: why.clone(), dir: dir.to_path_buf() });
    }
    let records = brink_explore::Results::load(&plan.explore.results)?.states;
    Ok(judge(&RunFacts {
        workload: &w.name,
        mode,
        exit: (workload.exit.to_string(), workload.exit.code),
        workload_stderr: &workload.stderr,
        explored: Explored::from(&summary),
        records: &records,
        record_s,
        explore_s,
        trace: plan.record.output.clone(),
        results: plan.explore.results.clone(),
        note,
    }))
}

/// The mode's recording explored at the logical level under each APM its manifest
/// names (`logical`): ALICE's strategy, the application's checkers (the built-in fsck
/// has no file system to check there), results in `DIR/logical/APM`; a row each, named
/// `MODE (logical APM)`. The recording (`block`'s trace) is opened once for them all.
/// A failure becomes a mismatch row, unless a signal stopped it.
fn run_logical(
    w: &Workload,
    mode: &Mode,
    dir: &Path,
    opts: &RunOpts,
    block: &Row,
    driver: &dyn Driver,
) -> Result<Vec<Row>, RunError> {
    if mode.logical.is_empty() {
        return Ok(Vec::new());
    }
    let trace = &block.trace;
    let rec = brink_logical::Recording::open(trace).map_err(|e| format!("error: {}", one_line(&e)));
    let mut rows = Vec::new();
    for &(apm, expect) in &mode.logical {
        // The block row judged the workload's exit already.
        let name = format!("{} (logical {apm})", mode.name);
        let m = Mode { name, expect: Some(expect), message: None, exit_code: None, ..mode.clone() };
        let results = dir.join("logical").join(apm.name());
        let rec = match &rec {
            Ok(rec) => rec,
            Err(why) => {
                rows.push(Row::failed(&w.name, &m, why.clone(), trace.clone(), results));
                continue;
            }
        };
        let cfg = brink_logical::LogicalConfig {
            trace: trace.clone(),
            results: results.clone(),
            apm,
            strategy: brink_pmodel::LStrategy::Alice,
            max_states: mode.max_states,
            checkers: w.checkers.iter().filter(|c| c.trim() != "fsck").cloned().collect(),
            jobs: opts.jobs,
            checker_timeout: w.explore.checker_timeout,
            time_budget: None,
            resume: false,
            shard: None,
            checker_protocol: brink_check::Protocol::Brink,
            interrupt: opts.interrupt.0.clone(),
            cache: opts.cache.clone(),
        };
        let t = Instant::now();
        let explored = driver.explore_logical(rec, &cfg).map_err(RunError::from).and_then(|s| {
            let records = brink_explore::Results::load(&results)?.states;
            Ok((s, records))
        });
        rows.push(match explored {
            Ok((summary, records)) => judge(&RunFacts {
                workload: &w.name,
                mode: &m,
                exit: (block.exit.clone(), None),
                workload_stderr: "",
                explored: Explored::from(&summary),
                records: &records,
                record_s: 0.0,
                explore_s: t.elapsed().as_secs_f64(),
                trace: trace.clone(),
                results,
                note: String::new(),
            }),
            Err(e) if opts.interrupt.0.load(Ordering::Relaxed) != 0 => return Err(e),
            Err(e) => Row::failed(&w.name, &m, format!("error: {}", one_line(&e)), trace.clone(), results),
        });
    }
    Ok(rows)
}

/// The `full` policy: a full run explores exhaustively, but a mode whose space is over
/// the bound falls back to its manifest's strategy, and its row says so (the returned
/// note; empty when nothing changed).
fn full_fallback(plan: &mut Plan, mode: &Mode, opts: &RunOpts) -> Result<String, RunError> {
    if !opts.full {
        return Ok(String::new());
    }
    let space = brink_explore::count(&plan.record.output, plan.explore.model, Strategy::Exhaustive)?.states_total;
    if space.0 <= opts.full_max_states {
        return Ok(String::new());
    }
    (plan.explore.strategy, plan.explore.max_states) = (mode.strategy, mode.max_states);
    Ok(format!("exhaustive space {} states > bound {}", space.0, opts.full_max_states))
}

/// Write `bytes` to `path` crash-safely.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    brink_trace::durable::write_atomic(path, bytes)
        .map_err(|source| RunError::Write { path: path.to_path_buf(), source })
}

/// Write `suite.json` (the rows) and `suite.md` (`title`, the machine, then the table)
/// into `out`, crash-safely. `brink_version` is the version the machine section names.
pub fn write_tables(out: &Path, rows: &[Row], title: &str, brink_version: &str) -> Result<(), RunError> {
    let json = serde_json::to_string_pretty(rows).expect("rows serialize") + "\n";
    write(&out.join("suite.json"), json.as_bytes())?;
    let md = format!(
        "# {title}\n\n## Machine\n\n{}\n## Results\n\n{}",
        crate::describe_machine(brink_version),
        crate::render_markdown(rows)
    );
    write(&out.join("suite.md"), md.as_bytes())
}
