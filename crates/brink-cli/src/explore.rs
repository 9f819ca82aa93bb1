//! `brink explore`, `brink replay`, `brink report`: flags to configs, progress, tables.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use brink_check::Verdict;
use brink_explore::{CheckerSpec, ExploreConfig, Progress, Recovery, StateRecord};
use brink_pmodel::{CacheModel, Model, StateId, Strategy, Torn};
use brink_suite::{ExploreSpec, Mode, Workload};
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
pub enum RecoveryArg {
    /// Kernel if brink can mount (root, /dev/fuse, loop devices), else userspace.
    Auto,
    Kernel,
    Userspace,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    Exhaustive,
    Prefix,
    OmitOne,
    OmitK,
    Sample,
}

/// How to explore and check: shared by `explore` and `ext4-modes`.
#[derive(clap::Args)]
pub struct CheckOpts {
    /// A checker command (run with `sh -c` in the recovered file system), or `fsck` for
    /// the file system's own checker. Repeatable.
    #[arg(long = "checker")]
    checkers: Vec<String>,
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
    /// How states are recovered: the kernel mounts them, or (ext4, no privileges needed)
    /// e2fsck replays the journal and debugfs extracts the files.
    #[arg(long, value_enum, default_value = "auto")]
    recovery: RecoveryArg,
    /// Reuse verdicts of earlier runs kept in this folder (keyed by image hash, marks
    /// and checker identity), and add this run's to it.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
}

fn recovery(o: &CheckOpts) -> Recovery {
    match o.recovery {
        RecoveryArg::Kernel => Recovery::Kernel,
        RecoveryArg::Userspace => Recovery::Userspace,
        RecoveryArg::Auto => {
            let root = std::fs::read_to_string("/proc/self/status")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
            if root && Path::new("/dev/fuse").exists() && Path::new("/dev/loop-control").exists() {
                Recovery::Kernel
            } else {
                eprintln!(
                    "brink: note: cannot mount here (not root, or no /dev/fuse or loop devices): recovering states in userspace with e2fsprogs"
                );
                Recovery::Userspace
            }
        }
    }
}

#[derive(clap::Args)]
pub struct ExploreArgs {
    trace: PathBuf,
    #[command(flatten)]
    opts: CheckOpts,
    /// Results directory.
    #[arg(short, long, required_unless_present = "count_only")]
    output: Option<PathBuf>,
    /// Continue a run that was stopped or killed.
    #[arg(long)]
    resume: bool,
    /// Print the size of the space and stop.
    #[arg(long)]
    count_only: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Also check media-fault states, one fault each: a torn write whose lost sectors
    /// read back as garbage, a latent sector error (reading fails during recovery), a
    /// misdirected write. Off by default; see `brink-pmodel`'s assumptions.
    #[arg(long)]
    media_faults: bool,
}

fn model(a: &CheckOpts) -> Model {
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

fn strategy(a: &CheckOpts) -> Strategy {
    match a.strategy {
        StrategyArg::Exhaustive => Strategy::Exhaustive,
        StrategyArg::Prefix => Strategy::Prefix,
        StrategyArg::OmitOne => Strategy::OmitK(1),
        StrategyArg::OmitK => Strategy::OmitK(a.k),
        StrategyArg::Sample => Strategy::Sample { samples: a.samples, seed: a.seed },
    }
}

/// The checks on `CheckOpts` that clap cannot express.
fn validate(o: &CheckOpts) -> Result<()> {
    if o.checkers.is_empty() {
        bail!("no checker given: pass --checker CMD (repeatable) or --checker fsck");
    }
    if o.checker_timeout.is_nan() || o.checker_timeout <= 0.0 {
        bail!("--checker-timeout must be a positive number of seconds");
    }
    Ok(())
}

fn explore_config(
    o: &CheckOpts,
    trace: &Path,
    results: &Path,
    resume: bool,
    interrupt: &brink_record::Interrupt,
) -> Result<ExploreConfig> {
    validate(o)?;
    let jobs = crate::suite::jobs(o.jobs)?;
    Ok(ExploreConfig {
        trace: trace.to_path_buf(),
        results: results.to_path_buf(),
        model: model(o),
        strategy: strategy(o),
        max_states: o.max_states,
        checkers: o.checkers.iter().map(|c| CheckerSpec::parse(c)).collect(),
        jobs,
        checker_timeout: Duration::from_secs_f64(o.checker_timeout),
        time_budget: o.time_budget.map(Duration::from_secs_f64),
        resume,
        recovery: recovery(o),
        media_faults: false,
        cache: o.cache.clone(),
        interrupt: interrupt.0.clone(),
    })
}

/// Explore with a progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn run_explore(cfg: &ExploreConfig) -> Result<brink_explore::Summary> {
    let progress = Progress::default();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} states  {per_sec}  ETA {eta}  {msg}")
            .expect("template"),
    );
    let refresh = |bar: &indicatif::ProgressBar| {
        let p = &progress;
        bar.set_length(p.total.load(Ordering::Relaxed));
        bar.set_position(p.done.load(Ordering::Relaxed));
        bar.set_message(format!(
            "violations {}  checker failures {}",
            p.violations.load(Ordering::Relaxed),
            p.checker_failures.load(Ordering::Relaxed)
        ));
    };
    crate::with_progress(&bar, refresh, || brink_explore::explore(cfg, &progress)).map_err(with_flags)
}

/// The explorer names settings in words; on the command line, name its flags.
fn with_flags(e: brink_explore::ExploreError) -> anyhow::Error {
    use brink_explore::{ExploreError as E, ResultsError as R};
    match e {
        E::TooManyStates { strategy, count, max } => anyhow::anyhow!(
            "the {strategy} space has {count} states, more than --max-states {max}: raise --max-states, or use --strategy prefix, omit-one or sample"
        ),
        E::NeedsRoot => anyhow::anyhow!(
            "kernel recovery needs root (it mounts every crash state): run as root, or use --recovery userspace (ext4)"
        ),
        E::UnknownFs { fs } => anyhow::anyhow!(
            "the trace's file system is '{fs}': brink explores ext4, xfs and btrfs (for an import, pass --fs)"
        ),
        E::Results(R::Exists { dir }) => anyhow::anyhow!(
            "{} already exists: pass --resume to continue that run, or choose another -o",
            dir.display()
        ),
        E::Results(R::NothingToResume { dir }) => anyhow::anyhow!("--resume: {} does not exist", dir.display()),
        e => e.into(),
    }
}

pub fn explore(a: ExploreArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    if a.count_only {
        let c = brink_explore::count(&a.trace, model(&a.opts), strategy(&a.opts))?;
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
    let results = a.output.clone().expect("required by clap");
    let mut cfg = explore_config(&a.opts, &a.trace, &results, a.resume, &interrupt)?;
    cfg.media_faults = a.media_faults;
    let summary = run_explore(&cfg)?;
    if a.json {
        emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        report(&cfg.results, false, None, None)?;
    }
    Ok(exit_code(&summary, &interrupt))
}

fn exit_code(summary: &brink_explore::Summary, interrupt: &brink_record::Interrupt) -> i32 {
    if let Some(why) = &summary.stopped_by {
        eprintln!("brink: stopped by {why}; continue with the same command and --resume");
        let signal = interrupt.0.load(Ordering::Relaxed);
        if signal != 0 {
            return 128 + signal as i32;
        }
    }
    if summary.violations > 0 {
        return 1;
    }
    if summary.unjudged() > 0 {
        eprintln!("brink: checker failures left {} states unjudged: this run is not a pass", summary.unjudged());
        return 2;
    }
    0
}

#[derive(clap::Args)]
pub struct ModesArgs {
    #[command(flatten)]
    opts: CheckOpts,
    /// Output directory: MODE/trace and MODE/results for each data mode.
    #[arg(short, long)]
    output: PathBuf,
    /// Shell command run before recording (the base image), as for `brink record`.
    #[arg(long)]
    setup: Option<String>,
    #[arg(long, default_value = "64M")]
    size: String,
    /// The workload, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `brink ext4-modes`: record and explore one workload under ext4 data=ordered,
/// data=writeback and data=journal, and compare them in one table. It is the suite's
/// runner on a workload built from the flags, reported rather than judged.
pub fn ext4_modes(a: ModesArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    validate(&a.opts)?;
    let size = brink_blockdev::parse_size(&a.size).map_err(anyhow::Error::msg)?;
    let command = shlex::try_join(a.command.iter().map(String::as_str))?;
    let modes: Vec<Mode> = ["ordered", "writeback", "journal"]
        .into_iter()
        .map(|m| Mode {
            name: m.into(),
            fs: brink_blockdev::FsKind::Ext4,
            size,
            mkfs_opts: String::new(),
            mount_opts: format!("data={m}"),
            setup: a.setup.clone(),
            command: command.clone(),
            expect: None,
            message: None,
            strategy: strategy(&a.opts),
            max_states: a.opts.max_states,
            inject: Vec::new(),
            exit_code: Some(0),
        })
        .collect();
    let w = Workload {
        name: "workload".into(),
        dir: std::env::current_dir()?,
        description: command.clone(),
        checkers: a.opts.checkers.clone(),
        explore: ExploreSpec {
            model: model(&a.opts),
            checker_timeout: Duration::from_secs_f64(a.opts.checker_timeout),
        },
        modes: modes.clone(),
    };
    let mut opts = crate::suite::run_opts(false, 0, a.opts.jobs, interrupt)?;
    opts.cache = a.opts.cache.clone();
    crate::suite::fresh_dir(&a.output)?;
    let rows = crate::suite::run_workloads(&[(w, modes)], &|_, m| a.output.join(&m.name), &opts)?;
    emit(&format!("{}\ndetails: brink report {}/MODE/results\n", brink_suite::render_text(&rows), a.output.display()))?;
    Ok(if rows.iter().any(|r| r.violations > 0) { 1 } else { 0 })
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// `brink report RESULTS`: the summary and the failing states, for people.
fn write_file(path: &Path, body: &str) -> Result<()> {
    brink_trace::durable::write_atomic(path, body.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn report(dir: &Path, json: bool, html: Option<&Path>, junit: Option<&Path>) -> Result<i32> {
    let analysis = brink_triage::analyze(dir)?;
    let (summary, recs) = brink_explore::results::load(dir)?;
    if let Some(p) = html {
        write_file(p, &brink_triage::html(&analysis))?;
    }
    if let Some(p) = junit {
        write_file(p, &brink_triage::junit(&analysis))?;
    }
    if json {
        let mut obj = summary.clone();
        obj["vulnerabilities"] = serde_json::to_value(&analysis.vulnerabilities)?;
        obj["attributed"] = analysis.attributed.into();
        emit(&(serde_json::to_string_pretty(&obj)? + "\n"))?;
        return Ok(0);
    }
    let g = |k: &str| summary.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default();
    let mut out = brink_triage::text(&analysis);
    writeln!(out, "\nresults {}", dir.display())?;
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
    writeln!(
        out,
        "  time         {:.1}s ({rate:.1} states/s, {} jobs)",
        summary.get("wall_s").and_then(|v| v.as_f64()).unwrap_or(0.0),
        g("jobs")
    )?;
    let num = |k: &str| summary.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
    if num("cache_hits") + num("cache_stored") > 0 {
        writeln!(out, "  cache        {} verdicts reused, {} added (--cache)", num("cache_hits"), num("cache_stored"))?;
    }
    if num("minimize_probes") > 0 {
        writeln!(out, "  minimizing   {} more states checked to find minimal failing states", num("minimize_probes"))?;
    }
    if let Some(n) = summary.get("media_fault_states").and_then(|n| n.as_u64()).filter(|&n| n > 0) {
        writeln!(out, "  media faults {n} states with one media fault each (--media-faults)")?;
    }
    if let Some(n) = summary.get("no_crash").filter(|n| !n.is_null()) {
        let field = |k: &str| n.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let message = field("message");
        let sep = if message.is_empty() { "" } else { ": " };
        writeln!(
            out,
            "  no crash     state {} (the disk as left, page cache dropped): {}{sep}{message}",
            field("id"),
            field("verdict")
        )?;
    }
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
                match &r.fault {
                    Some(f) => format!("[{f}] {}", c.map_or("", |c| c.message.as_str())),
                    None => c.map_or("", |c| c.message.as_str()).to_string(),
                }
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

/// `brink diff OLD NEW`: the regression report; 1 if a vulnerability is new.
pub fn diff(old: &Path, new: &Path, json: bool) -> Result<i32> {
    let (a, b) = (brink_triage::analyze(old)?, brink_triage::analyze(new)?);
    let d = brink_triage::diff(&a, &b);
    if json {
        emit(&(serde_json::to_string_pretty(&d)? + "\n"))?;
    } else {
        emit(&brink_triage::diff_text(&d))?;
    }
    Ok(if d.added.is_empty() { 0 } else { 1 })
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
    if let Some(f) = id.fault {
        eprintln!("brink: media fault: {}", f.describe());
    }
    if let Some(note) = &m.note {
        eprintln!("brink: note: {note}");
    }
    let marks = out.join("marks");
    brink_check::write_marks(&marks, &m.marks)?;
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
