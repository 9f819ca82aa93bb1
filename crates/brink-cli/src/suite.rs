//! `brink suite`: record and explore every workload in every mode, judge each against
//! its manifest, print one table, and write `suite.json` and `suite.md`. The same
//! runner serves `brink demo` (bundled workloads) and `brink ext4-modes` (a workload
//! given on the command line, reported rather than judged).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use brink_explore::Recovery;
use brink_pmodel::Strategy;
use brink_suite::{Outcome, Row, RunFacts, RunOpts, Workload};

use crate::emit;

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
    #[arg(long, default_value_t = 10_000_000)]
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
}

/// `--jobs`, or twice the number of CPUs (a state spends most of its time waiting on
/// the kernel and the FUSE disk rather than computing).
pub(crate) fn jobs(flag: Option<usize>) -> Result<usize> {
    let jobs = flag.unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    Ok(jobs)
}

/// Record, explore and judge each mode of each workload; rows in order. Directories are
/// `dir_of(workload, mode)`.
pub(crate) fn run_workloads(
    workloads: &[(Workload, Vec<brink_suite::Mode>)],
    dir_of: &dyn Fn(&Workload, &brink_suite::Mode) -> PathBuf,
    opts: &RunOpts,
) -> Result<Vec<Row>> {
    let total: usize = workloads.iter().map(|(_, m)| m.len()).sum();
    let mut rows = Vec::new();
    for (w, modes) in workloads {
        for mode in modes {
            let n = rows.len() + 1;
            let dir = dir_of(w, mode);
            match run_mode(w, mode, &dir, opts, &format!("[{n}/{total}] {} {}", w.name, mode.name)) {
                Ok(row) => rows.push(row),
                // A signal stops the suite; any other failure is this mode's mismatch.
                Err(e) if opts.interrupt.0.load(std::sync::atomic::Ordering::Relaxed) != 0 => return Err(e),
                Err(e) => {
                    let why = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ");
                    eprintln!("brink: [{n}/{total}] {} {}: {why}", w.name, mode.name);
                    rows.push(Row::failed(
                        &w.name,
                        mode,
                        format!("error: {why}"),
                        dir.join("trace"),
                        dir.join("results"),
                    ));
                }
            }
        }
    }
    Ok(rows)
}

fn run_mode(w: &Workload, mode: &brink_suite::Mode, dir: &Path, opts: &RunOpts, label: &str) -> Result<Row> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut plan = w.plan(mode, dir, opts)?;
    eprintln!("brink: {label}: recording");
    let t = Instant::now();
    let rec = crate::record_with_progress(&plan.record)?;
    let record_s = t.elapsed().as_secs_f64();
    // A --full run over its bound falls back to the manifest's strategy, and says so.
    let mut note = String::new();
    if opts.full {
        let space = brink_explore::count(&plan.record.output, plan.explore.model, Strategy::Exhaustive)?.states_total;
        if space.0 > opts.full_max_states {
            note = format!("exhaustive space {} states > bound {}", space.0, opts.full_max_states);
            (plan.explore.strategy, plan.explore.max_states) = (mode.strategy, mode.max_states);
        }
    }
    let meta = brink_trace::TraceReader::open(&plan.record.output)?.meta().clone();
    let stderr = meta.workload.map(|w| w.stderr).unwrap_or_default();
    eprintln!("brink: {label}: exploring {} events", rec.stats.events);
    let t = Instant::now();
    let summary = crate::explore::run_explore(&plan.explore)?;
    let explore_s = t.elapsed().as_secs_f64();
    if let Some(why) = &summary.stopped_by {
        bail!("stopped by {why}; the results so far are in {}", dir.display());
    }
    let (_, records) = brink_explore::results::load(&plan.explore.results)?;
    Ok(brink_suite::judge(&RunFacts {
        workload: &w.name,
        mode,
        exit: (rec.exit.to_string(), rec.exit.code),
        workload_stderr: &stderr,
        summary: &summary,
        records: &records,
        record_s,
        explore_s,
        trace: plan.record.output.clone(),
        results: plan.explore.results.clone(),
        note,
    }))
}

/// Write `suite.json` (the rows) and `suite.md` (machine, then the table), crash-safely.
pub(crate) fn write_tables(out: &Path, rows: &[Row], title: &str) -> Result<()> {
    brink_trace::durable::write_atomic(
        &out.join("suite.json"),
        (serde_json::to_string_pretty(rows)? + "\n").as_bytes(),
    )?;
    let md = format!(
        "# {title}\n\n## Machine\n\n{}\n## Results\n\n{}",
        brink_suite::describe_machine(env!("CARGO_PKG_VERSION")),
        brink_suite::render_markdown(rows)
    );
    brink_trace::durable::write_atomic(&out.join("suite.md"), md.as_bytes())?;
    Ok(())
}

pub(crate) fn run_opts(
    full: bool,
    full_max_states: u128,
    jobs: Option<usize>,
    interrupt: brink_record::Interrupt,
) -> Result<RunOpts> {
    Ok(RunOpts { full, full_max_states, jobs: self::jobs(jobs)?, recovery: Recovery::Kernel, interrupt, cache: None })
}

/// Refuse an output directory that exists (a suite never mixes two runs).
pub(crate) fn fresh_dir(out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} already exists; choose a new directory", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
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
    let mut opts = run_opts(a.full, a.max_states, a.run.jobs, interrupt)?;
    opts.cache = a.run.cache.clone();
    fresh_dir(&a.output)?;
    let t = Instant::now();
    let rows = run_workloads(&selected, &|w, m| a.output.join(&w.name).join(&m.name), &opts)?;
    let title = if a.full { "brink suite --full (exhaustive)" } else { "brink suite (bounded, as in CI)" };
    write_tables(&a.output, &rows, title)?;
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
