//! `brink explore`, `brink replay`, `brink report`: flags to configs, progress, tables.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use brink_check::Verdict;
use brink_explore::{CheckerSpec, ExploreConfig, Progress, StateRecord};
use brink_pmodel::{CacheModel, Model, StateId, Strategy, Torn};
use clap::ValueEnum;

use crate::emit;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModelArg {
    Writeback,
    Writethrough,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TornArg {
    None,
    Sector,
    Prefix,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    Exhaustive,
    Prefix,
    OmitOne,
    OmitK,
    Sample,
}

#[derive(clap::Args)]
pub struct ExploreArgs {
    trace: PathBuf,
    /// A checker command (run with `sh -c` in the recovered file system), or `fsck` for
    /// the file system's own checker. Repeatable.
    #[arg(long = "checker")]
    checkers: Vec<String>,
    /// Results directory.
    #[arg(short, long, required_unless_present = "count_only")]
    output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "writeback")]
    model: ModelArg,
    #[arg(long, value_enum, default_value = "none")]
    torn: TornArg,
    #[arg(long, value_enum, default_value = "exhaustive")]
    strategy: StrategyArg,
    /// For `--strategy omit-k`: how many volatile writes may be dropped.
    #[arg(long, default_value_t = 2)]
    k: u32,
    /// For `--strategy sample`.
    #[arg(long, default_value_t = 1000)]
    samples: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Refuse exhaustive runs with more states than this.
    #[arg(long, default_value_t = 1_000_000)]
    max_states: u128,
    /// States checked at once (default: twice the number of CPUs, since a state spends
    /// most of its time waiting on the kernel and the FUSE disk rather than computing).
    #[arg(long)]
    jobs: Option<usize>,
    /// Seconds a checker may run on one state.
    #[arg(long, default_value_t = 30.0)]
    checker_timeout: f64,
    /// Stop after this many seconds, keeping what is done (resume later with --resume).
    #[arg(long)]
    time_budget: Option<f64>,
    /// Continue a run that was stopped or killed.
    #[arg(long)]
    resume: bool,
    /// Print the size of the space and stop.
    #[arg(long)]
    count_only: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn model(a: &ExploreArgs) -> Model {
    Model {
        cache: match a.model {
            ModelArg::Writeback => CacheModel::Writeback,
            ModelArg::Writethrough => CacheModel::Writethrough,
        },
        torn: match a.torn {
            TornArg::None => Torn::None,
            TornArg::Sector => Torn::Sector,
            TornArg::Prefix => Torn::Prefix,
        },
    }
}

fn strategy(a: &ExploreArgs) -> Strategy {
    match a.strategy {
        StrategyArg::Exhaustive => Strategy::Exhaustive,
        StrategyArg::Prefix => Strategy::Prefix,
        StrategyArg::OmitOne => Strategy::OmitK(1),
        StrategyArg::OmitK => Strategy::OmitK(a.k),
        StrategyArg::Sample => Strategy::Sample { samples: a.samples, seed: a.seed },
    }
}

pub fn explore(a: ExploreArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    let (m, s) = (model(&a), strategy(&a));
    if a.count_only {
        let c = brink_explore::count(&a.trace, m, s)?;
        if a.json {
            emit(&(serde_json::to_string_pretty(&c)? + "\n"))?;
        } else {
            emit(&format!(
                "{} states ({} over {} crash points in {} epochs; model {})\n",
                c.states_total, c.strategy, c.crash_points, c.epochs, c.model
            ))?;
        }
        return Ok(0);
    }
    if a.checkers.is_empty() {
        bail!("no checker given: pass --checker CMD (repeatable) or --checker fsck");
    }
    if !(a.checker_timeout > 0.0) {
        bail!("--checker-timeout must be a positive number of seconds");
    }
    let jobs = a.jobs.unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let cfg = ExploreConfig {
        trace: a.trace.clone(),
        results: a.output.clone().expect("required by clap"),
        model: m,
        strategy: s,
        max_states: a.max_states,
        checkers: a.checkers.iter().map(|c| CheckerSpec::parse(c)).collect(),
        jobs,
        checker_timeout: Duration::from_secs_f64(a.checker_timeout),
        time_budget: a.time_budget.map(Duration::from_secs_f64),
        resume: a.resume,
        interrupt: interrupt.0.clone(),
    };
    let progress = Arc::new(Progress::default());
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} states  {per_sec}  ETA {eta}  {msg}")
            .expect("template"),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (p, bar, done) = (progress.clone(), bar.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                bar.set_length(p.total.load(Ordering::Relaxed));
                bar.set_position(p.done.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "violations {}  checker failures {}",
                    p.violations.load(Ordering::Relaxed),
                    p.checker_failures.load(Ordering::Relaxed)
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let result = brink_explore::explore(&cfg, &progress);
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    bar.finish_and_clear();
    let summary = result?;
    if a.json {
        emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        report(&cfg.results, false)?;
    }
    if let Some(why) = &summary.stopped_by {
        eprintln!("brink: stopped by {why}; continue with the same command and --resume");
        let signal = interrupt.0.load(Ordering::Relaxed);
        if signal != 0 {
            return Ok(128 + signal as i32);
        }
    }
    Ok(if summary.violations > 0 { 1 } else { 0 })
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// `brink report RESULTS`: the summary and the failing states, for people.
pub fn report(dir: &Path, json: bool) -> Result<i32> {
    let (summary, recs) = brink_explore::results::load(dir)?;
    if json {
        emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
        return Ok(0);
    }
    let g = |k: &str| summary.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default();
    let mut out = String::new();
    writeln!(out, "results {}", dir.display())?;
    writeln!(out, "  trace        {} ({} {})", g("trace"), g("fs"), g("mount_opts"))?;
    writeln!(out, "  model        {}   strategy {}", g("model"), g("strategy"))?;
    writeln!(out, "  checkers     {}", g("checkers"))?;
    writeln!(
        out,
        "  states       {} in the space, {} generated, {} unique, {} checked",
        g("states_total"),
        g("states_generated"),
        g("states_unique"),
        g("states_checked")
    )?;
    writeln!(
        out,
        "  verdicts     {} violations, {} checker failures, {} consistent",
        g("violations"),
        g("checker_failures"),
        g("consistent")
    )?;
    let rate = summary.get("states_per_s").and_then(|v| v.as_f64()).unwrap_or(0.0);
    writeln!(out, "  time         {:.1}s ({rate:.1} states/s, {} jobs)", summary.get("wall_s").and_then(|v| v.as_f64()).unwrap_or(0.0), g("jobs"))?;
    if summary.get("complete") == Some(&serde_json::Value::Bool(false)) {
        writeln!(out, "  INCOMPLETE   stopped by {}; --resume continues", g("stopped_by"))?;
    }
    let failing: Vec<&StateRecord> = recs.iter().filter(|r| r.verdict != Verdict::Consistent).collect();
    if !failing.is_empty() {
        writeln!(out, "\n{:<24} {:>5} {:<16} {:<14} message", "state", "marks", "verdict", "checker")?;
        for r in failing.iter().take(50) {
            let c = r.checks.iter().find(|c| c.verdict == r.verdict);
            let verdict = match r.verdict {
                Verdict::Violation => "violation",
                Verdict::CheckerFailure => "checker-failure",
                Verdict::Consistent => "consistent",
            };
            writeln!(
                out,
                "{:<24} {:>5} {:<16} {:<14} {}",
                short(&r.id, 24),
                r.marks,
                verdict,
                short(c.map_or("", |c| c.checker.as_str()), 14),
                c.map_or("", |c| c.message.as_str())
            )?;
        }
        if failing.len() > 50 {
            writeln!(out, "… and {} more in {}", failing.len() - 50, dir.join("states.jsonl").display())?;
        }
        writeln!(out, "\nreproduce one: brink replay {} {} -o DIR", g("trace"), failing[0].id)?;
    }
    emit(&out)?;
    Ok(0)
}

/// `brink replay TRACE STATE_ID -o DIR`: one state, recovered and left mounted.
pub fn replay(trace: &Path, state: &str, out: &Path, no_mount: bool) -> Result<i32> {
    let id: StateId = state.parse()?;
    if out.exists() {
        bail!("{} already exists; choose a new directory", out.display());
    }
    std::fs::create_dir_all(out)?;
    let image = out.join("state.img");
    let m = brink_explore::replay::materialize(trace, &id, &image)?;
    let marks = out.join("marks");
    let mut text = m.marks.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(&marks, text)?;
    let meta = brink_trace::TraceReader::open(trace)?.meta().clone();
    let fs = meta.fs.parse::<brink_blockdev::FsKind>();
    if no_mount || fs.is_err() {
        let why = if no_mount { "not recovered: --no-mount" } else { "file system unknown: not mounted" };
        emit(&format!("state {id} is in {} ({why})\nmarks: {}\n", image.display(), marks.display()))?;
        return Ok(0);
    }
    let fs = fs.expect("checked");
    let mnt = out.join("mnt");
    std::fs::create_dir(&mnt)?;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&image)?;
    let dev = brink_blockdev::LoopDevice::attach(&f, &image, false)?;
    let opts = brink_explore::state_mount_options(fs, &meta.mount_opts)?;
    match brink_blockdev::Mount::mount(dev.path(), &mnt, fs.name(), &opts) {
        Ok(mount) => {
            let target = mount.leak();
            let dev = dev.leak();
            emit(&format!(
                "state {id}: recovered by the kernel and mounted at {}\n  image {} on {}\n  marks it is held to: {} ({} marks)\nclean up with: umount {}   (the loop device then detaches itself)\n",
                target.display(),
                image.display(),
                dev.display(),
                marks.display(),
                m.marks.len(),
                target.display()
            ))?;
        }
        Err(e) => {
            drop(dev);
            emit(&format!(
                "state {id}: the image does not mount ({e})\n  image {} (inspect it, e.g. e2fsck -fn)\n  marks: {}\n",
                image.display(),
                marks.display()
            ))?;
        }
    }
    Ok(0)
}
