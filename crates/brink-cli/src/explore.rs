//! `brink explore`, `brink ext4-modes`, `brink replay`, `brink report`, `brink diff`:
//! flags to configs, progress, tables, exit codes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use brink_check::Verdict;
use brink_explore::{CheckerSpec, ExploreConfig, Recovery, Setting, StateRecord, Summary};
use brink_pmodel::{Apm, CacheModel, LStrategy, Model, StateId, Strategy, Torn};
use brink_suite::{Ext4Modes, RunOpts};
use clap::ValueEnum;

use crate::emit;
use crate::progress::Bars;

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
    /// Logical level only: ALICE's three phases (prefix, omit-one, partial).
    Alice,
    /// Logical level only: each op's partial persistence.
    Partial,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LevelArg {
    /// The recorded disk's crash states (block writes and flushes).
    Block,
    /// The recorded calls' crash states under abstract persistence models (--apm).
    Logical,
}

/// How to explore and check: shared by `explore` and `ext4-modes`.
#[derive(clap::Args)]
pub struct CheckOpts {
    /// A checker command, run in the recovered file system (directly when it is an
    /// absolute path to a program, else with `sh -c`), or `fsck` for the file system's
    /// own checker. Repeatable.
    #[arg(long = "checker", value_parser = checker_command)]
    checkers: Vec<String>,
    #[arg(long, value_enum, default_value = "writeback")]
    model: ModelArg,
    #[arg(long, value_enum, default_value = "none")]
    torn: TornArg,
    /// Default: exhaustive (block), alice (logical).
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// For `--strategy omit-k`: how many volatile writes may be dropped.
    #[arg(long, default_value_t = brink_explore::defaults::OMIT_K)]
    k: u32,
    /// For `--strategy sample`.
    #[arg(long, default_value_t = brink_explore::defaults::SAMPLES)]
    samples: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Refuse runs whose strategy visits more states than this (every strategy but
    /// sample, which is bounded by its sample).
    #[arg(long, default_value_t = brink_explore::defaults::STATES_MAX)]
    max_states: u128,
    /// States checked at once (default: twice the number of CPUs, since a state spends
    /// most of its time waiting on the kernel and the FUSE disk rather than computing).
    #[arg(long)]
    jobs: Option<usize>,
    /// Seconds a checker may run on one state.
    #[arg(long, default_value_t = brink_explore::defaults::CHECKER_TIMEOUT.as_secs_f64())]
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
    /// Run the checkers on every distinct image, even when its recovered files and
    /// marks equal a state already checked (by default that state takes its verdict).
    #[arg(long)]
    pub no_tree_dedup: bool,
    /// How checkers are called. brink: BRINK_MARKS and the rest in the environment,
    /// exit 1 a violation, other exits checker failures. alice: as ALICE calls them,
    /// `CHECKER CRASHED_DIR STDOUT_FILE WORKER_ID` (the acknowledgements so far as the
    /// stdout file), any non-zero exit or signal a violation.
    #[arg(long, value_enum, default_value = "brink")]
    checker_protocol: ProtocolArg,
    /// Kernel recovery (block level): what serves each state to the loop device. memory:
    /// the state's image in a memory file, restored where it changed between states
    /// (needs tracefs; not with latent sector errors; the images' data must fit 1 GiB
    /// over all slots). fuse: brink's FUSE daemon. auto: memory where it can, else fuse.
    #[arg(long, value_enum, default_value = "auto")]
    slots: SlotsArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SlotsArg {
    Auto,
    Memory,
    Fuse,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtocolArg {
    Brink,
    Alice,
}

fn protocol(o: &CheckOpts) -> brink_check::Protocol {
    match o.checker_protocol {
        ProtocolArg::Brink => brink_check::Protocol::Brink,
        ProtocolArg::Alice => brink_check::Protocol::Alice,
    }
}

/// A `--checker` is a command: an empty or blank one would pass every state.
fn checker_command(s: &str) -> Result<String, String> {
    if s.trim().is_empty() { Err("a checker is a command, and this one is empty".into()) } else { Ok(s.to_string()) }
}

/// A usage error of the argument parser as one line (without `error: `, the usage and
/// the advice to try `--help`), its tips kept after a `;`.
pub fn usage_error(e: &clap::Error) -> String {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand) {
        return "a command is required (brink --help lists them)".into();
    }
    let text = e.render().to_string();
    let text = text.split("\nUsage:").next().unwrap_or_default();
    let text = text.split("\nFor more information").next().unwrap_or_default();
    let parts: Vec<String> = text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    let line = parts.join("; ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    format!("{line} (see --help)")
}

/// An error as one line: the chain of causes joined, as "what: why". Library errors
/// spell out their cause too, so a cause already said anywhere before it is skipped
/// (not only in the message just before: "…: No space left on device (os error 28)"
/// must not repeat after a cause that does not say it).
pub fn error_line(e: &anyhow::Error) -> String {
    brink_check::error_line(e.as_ref()).replace('\n', " ")
}

/// `--recovery`; `auto` asks the explorer's defaults, and says so when it must fall
/// back to userspace.
fn recovery(o: &CheckOpts) -> Recovery {
    match o.recovery {
        RecoveryArg::Kernel => Recovery::Kernel,
        RecoveryArg::Userspace => Recovery::Userspace,
        RecoveryArg::Auto => {
            let r = brink_explore::defaults::recovery_auto();
            if r == Recovery::Userspace {
                eprintln!(
                    "brink: note: cannot mount here (not root, or no /dev/fuse or loop devices): recovering states in userspace with e2fsprogs"
                );
            }
            r
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
    /// `block`: the recorded disk's crash states; `logical`: the recorded calls' crash
    /// states under each abstract persistence model of --apm, as directory trees (no
    /// root needed, but to read an XFS trace's initial files; results in OUT/<apm>).
    #[arg(long, value_enum, default_value = "block")]
    level: LevelArg,
    /// With --level logical: the APMs, comma-separated (posix, ext4-ordered,
    /// ext4-writeback, ext4-journal, xfs, btrfs), or `all`.
    #[arg(long, value_delimiter = ',')]
    apm: Vec<String>,
    /// Explore shard I of N (0 ≤ I < N) of the states, into a results directory of its
    /// own; `brink merge` puts the shards' directories together. At the logical level,
    /// each APM's folder is merged apart.
    #[arg(long, value_name = "I/N")]
    shard: Option<brink_explore::Shard>,
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

fn strategy(a: &CheckOpts) -> Result<Strategy> {
    Ok(match a.strategy.unwrap_or(StrategyArg::Exhaustive) {
        StrategyArg::Exhaustive => Strategy::Exhaustive,
        StrategyArg::Prefix => Strategy::Prefix,
        StrategyArg::OmitOne => Strategy::OmitK(1),
        StrategyArg::OmitK => Strategy::OmitK(a.k),
        StrategyArg::Sample => Strategy::Sample { samples: a.samples, seed: a.seed },
        StrategyArg::Alice | StrategyArg::Partial => {
            bail!(
                "--strategy alice and partial are for --level logical; the block level has exhaustive, prefix, omit-one, omit-k and sample"
            )
        }
    })
}

/// `--strategy` at the logical level.
fn lstrategy(a: &CheckOpts) -> Result<LStrategy> {
    Ok(match a.strategy.unwrap_or(StrategyArg::Alice) {
        StrategyArg::Alice => LStrategy::Alice,
        StrategyArg::Prefix => LStrategy::Prefix,
        StrategyArg::OmitOne => LStrategy::OmitOne,
        StrategyArg::Partial => LStrategy::Partial,
        StrategyArg::Exhaustive => LStrategy::Exhaustive { max_missing: u32::MAX },
        StrategyArg::Sample => LStrategy::Sample { samples: a.samples, seed: a.seed },
        StrategyArg::OmitK => bail!(
            "--strategy omit-k is for --level block; at the logical level use exhaustive (bounded by --max-states)"
        ),
    })
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

/// A flag's seconds as a `Duration`, refused (not a panic) when out of the setting's range.
fn secs(setting: brink_explore::Setting, flag: &str, value: f64) -> Result<Duration> {
    brink_explore::seconds(setting, value).with_context(|| flag.to_string())
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
        strategy: strategy(o)?,
        max_states: o.max_states,
        checkers: o.checkers.iter().map(|c| CheckerSpec::parse(c)).collect(),
        jobs,
        checker_timeout: secs(Setting::CheckerTimeout, "--checker-timeout", o.checker_timeout)?,
        time_budget: o.time_budget.map(|t| secs(Setting::TimeBudget, "--time-budget", t)).transpose()?,
        resume,
        recovery: recovery(o),
        media_faults: false,
        cache: o.cache.clone(),
        interrupt: interrupt.0.clone(),
        shard: None,
        tree_dedup: !o.no_tree_dedup,
        checker_protocol: protocol(o),
        slots: match o.slots {
            SlotsArg::Auto => brink_explore::SlotKind::Auto,
            SlotsArg::Memory => brink_explore::SlotKind::Memory,
            SlotsArg::Fuse => brink_explore::SlotKind::Fuse,
        },
    })
}

/// The explorer names settings in words; on the command line, name its flags.
fn with_flags(e: brink_explore::ExploreError) -> anyhow::Error {
    use brink_explore::ExploreError as E;
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
        E::Results(r) => results_flags(r),
        e => e.into(),
    }
}

/// A results directory's errors, with the flags that answer them; both levels'.
fn results_flags(e: brink_explore::ResultsError) -> anyhow::Error {
    use brink_explore::ResultsError as R;
    match e {
        R::Exists { dir } => anyhow::anyhow!(
            "{} already exists: pass --resume to continue that run, or choose another -o",
            dir.display()
        ),
        R::NothingToResume { dir } => anyhow::anyhow!("--resume: {} does not exist", dir.display()),
        e => e.into(),
    }
}

pub fn explore(a: ExploreArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    if a.level == LevelArg::Logical {
        return explore_logical(&a, &interrupt);
    }
    if !a.apm.is_empty() {
        bail!("--apm is for --level logical");
    }
    if a.count_only {
        return count_only(&a, &interrupt);
    }
    let results = a.output.clone().expect("required by clap");
    let mut cfg = explore_config(&a.opts, &a.trace, &results, a.resume, &interrupt)?;
    cfg.media_faults = a.media_faults;
    cfg.shard = a.shard;
    let summary = crate::progress::explore(&cfg).map_err(with_flags)?;
    if a.json {
        emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        report(&cfg.results, false, None, None)?;
    }
    Ok(exit_code(&summary, &interrupt))
}

/// How long `--count-only` explores to measure states per second (with `--checker`).
const CALIBRATION: Duration = Duration::from_secs(10);

/// `--count-only`: the states the asked strategy checks, the other strategies' counts
/// beside it, and, given checkers, the time each would take at the states per second
/// of a short calibration run of the asked one (`CALIBRATION`).
fn count_only(a: &ExploreArgs, interrupt: &brink_record::Interrupt) -> Result<i32> {
    let asked = strategy(&a.opts)?;
    let c = brink_explore::count(&a.trace, model(&a.opts), asked)?;
    if a.json {
        emit(&(serde_json::to_string_pretty(&c)? + "\n"))?;
        return Ok(0);
    }
    let of = match c.states_total == c.states_to_check {
        true => String::new(),
        false => format!(", sampled from {} in the space", c.states_total),
    };
    let mut out = format!(
        "{} states to check{of} ({} over {} crash points in {} epochs; model {}), and the no-crash state\n",
        c.states_to_check, c.strategy, c.crash_points, c.epochs, c.model
    );
    let rate = if a.opts.checkers.is_empty() { None } else { Some(calibrate(a, interrupt)) };
    let all = [asked, Strategy::Exhaustive, Strategy::Prefix, Strategy::OmitK(1)];
    writeln!(out, "\n{:<24} {:>24}  time", "strategy", "states to check")?;
    for (i, st) in all.iter().enumerate().filter(|(i, st)| *i == 0 || **st != asked) {
        // The asked strategy's count is `c`; the others walk the trace once each.
        let n = match i {
            0 => c.states_to_check,
            _ => brink_explore::count(&a.trace, model(&a.opts), *st)?.states_to_check,
        };
        let time = match &rate {
            None => "give --checker to estimate".to_string(),
            Some(Err(why)) => format!("cannot calibrate: {why}"),
            Some(Ok(cal)) => estimate(n.as_f64() / cal.rate),
        };
        writeln!(out, "{:<24} {:>24}  {time}", st.name(), n.to_string())?;
    }
    if let Some(Ok(cal)) = rate {
        writeln!(
            out,
            "(at {:.1} states/s, measured by checking {} states in {:.1} s with these settings{})",
            cal.rate,
            cal.checked,
            cal.secs,
            if cal.whole { ": the whole run" } else { "" }
        )?;
    }
    emit(&out)?;
    Ok(0)
}

/// What a calibration run measured.
struct Calibration {
    rate: f64,
    checked: u64,
    secs: f64,
    /// It checked every state before its time was up.
    whole: bool,
}

/// States per second of the asked exploration, explored for at most `CALIBRATION` into
/// a scratch results directory.
fn calibrate(a: &ExploreArgs, interrupt: &brink_record::Interrupt) -> std::result::Result<Calibration, String> {
    let dir = tempfile::Builder::new().prefix("brink-calibrate-").tempdir().map_err(|e| e.to_string())?;
    let results = dir.path().join("r");
    let mut cfg = explore_config(&a.opts, &a.trace, &results, false, interrupt).map_err(|e| e.to_string())?;
    cfg.time_budget = Some(CALIBRATION);
    let s = brink_explore::explore(&cfg, &brink_explore::Progress::default()).map_err(|e| e.to_string())?;
    let secs = s.wall_s.max(1e-3);
    let whole = s.complete;
    Ok(Calibration { rate: s.states_checked.max(1) as f64 / secs, checked: s.states_checked, secs, whole })
}

/// A duration in words a person plans by.
fn estimate(secs: f64) -> String {
    match secs {
        s if !s.is_finite() || s > 1e9 => "more than 30 years".into(),
        s if s < 1.0 => "under 1 s".into(),
        s if s < 90.0 => format!("about {s:.0} s"),
        s if s < 5400.0 => format!("about {:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("about {:.1} h", s / 3600.0),
        s => format!("about {:.0} days", s / 86400.0),
    }
}

/// `--apm`: names, or `all`.
fn apms(list: &[String]) -> Result<Vec<Apm>> {
    if list.is_empty() {
        bail!(
            "--level logical needs --apm NAME[,NAME…] (posix, ext4-ordered, ext4-writeback, ext4-journal, xfs, btrfs) or --apm all"
        );
    }
    if list.iter().any(|a| a == "all") {
        return Ok(Apm::ALL.to_vec());
    }
    let mut out: Vec<Apm> = Vec::new();
    for name in list {
        let apm: Apm = name.parse()?;
        if !out.contains(&apm) {
            out.push(apm);
        }
    }
    Ok(out)
}

/// `brink explore --level logical`: each APM in turn, results in `OUT/<apm>`; the exit
/// code is the worst of theirs.
fn explore_logical(a: &ExploreArgs, interrupt: &brink_record::Interrupt) -> Result<i32> {
    let apms = apms(&a.apm)?;
    let strategy = lstrategy(&a.opts)?;
    if a.media_faults {
        bail!("--media-faults is for --level block");
    }
    let rec = brink_logical::Recording::open(&a.trace)?;
    if a.count_only {
        let mut out = String::new();
        for apm in apms {
            let plan = brink_pmodel::Plan::new(&rec.logical, apm);
            let max = usize::try_from(a.opts.max_states).unwrap_or(usize::MAX - 1).min(usize::MAX - 1);
            let n = plan.states(strategy).take(max + 1).count();
            let n = if n > max { format!("more than {max} (--max-states)") } else { n.to_string() };
            writeln!(
                out,
                "{apm}: {n} states ({}, {} ops, {} micro-ops)",
                brink_logical::strategy_name(strategy),
                plan.ops(),
                plan.micro.len()
            )?;
        }
        emit(&out)?;
        return Ok(0);
    }
    validate(&a.opts)?;
    let out = a.output.clone().expect("required by clap");
    let mut codes = Vec::new();
    for apm in apms {
        let cfg = brink_logical::LogicalConfig {
            trace: a.trace.clone(),
            results: out.join(apm.name()),
            apm,
            strategy,
            max_states: a.opts.max_states,
            checkers: a.opts.checkers.clone(),
            jobs: crate::suite::jobs(a.opts.jobs)?,
            checker_timeout: secs(Setting::CheckerTimeout, "--checker-timeout", a.opts.checker_timeout)?,
            time_budget: a.opts.time_budget.map(|t| secs(Setting::TimeBudget, "--time-budget", t)).transpose()?,
            resume: a.resume,
            shard: a.shard,
            checker_protocol: protocol(&a.opts),
            interrupt: interrupt.0.clone(),
            cache: a.opts.cache.clone(),
        };
        let summary = crate::progress::explore_logical(&rec, &cfg).map_err(logical_flags)?;
        if a.json {
            emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
        } else {
            report(&cfg.results, false, None, None)?;
        }
        let code = exit_code(&summary, interrupt);
        codes.push(code);
        if code > 2 {
            break;
        }
    }
    if !a.json && codes.len() > 1 && codes.iter().all(|c| *c <= 2) {
        report_matrix(&out, false, None)?;
    }
    Ok(codes.iter().copied().find(|c| *c > 2).or_else(|| codes.iter().copied().max()).unwrap_or(0))
}

/// The logical explorer names settings in words; on the command line, name its flags.
fn logical_flags(e: brink_logical::LogicalError) -> anyhow::Error {
    use brink_logical::LogicalError as E;
    match e {
        E::TooManyStates { apm, strategy, max } => anyhow::anyhow!(
            "the {strategy} space of {apm} has more than --max-states {max} states: raise --max-states, or use --strategy alice, prefix, omit-one or sample"
        ),
        E::Results(r) => results_flags(r),
        e => e.into(),
    }
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
    #[arg(long, default_value = crate::IMAGE_SIZE_DEFAULT)]
    size: String,
    /// The workload, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `brink ext4-modes`: record and explore one workload under ext4 data=ordered,
/// data=writeback and data=journal, and compare them in one table. It is the suite's
/// runner on a workload built from the flags (`brink_suite::Ext4Modes`), reported rather
/// than judged.
pub fn ext4_modes(a: ModesArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    validate(&a.opts)?;
    let spec = Ext4Modes {
        command: a.command.clone(),
        setup: a.setup.clone(),
        size: brink_blockdev::parse_size(&a.size).map_err(anyhow::Error::msg)?,
        checkers: a.opts.checkers.clone(),
        model: model(&a.opts),
        strategy: strategy(&a.opts)?,
        max_states: a.opts.max_states,
        checker_timeout: secs(Setting::CheckerTimeout, "--checker-timeout", a.opts.checker_timeout)?,
        dir: std::env::current_dir()?,
    };
    let w = spec.workload()?;
    let modes = w.modes.clone();
    let mut opts = RunOpts::new(crate::suite::jobs(a.opts.jobs)?, interrupt);
    opts.cache = a.opts.cache.clone();
    brink_suite::fresh_dir(&a.output)?;
    let rows = brink_suite::run_workloads(&[(w, modes)], &|_, m| a.output.join(&m.name), &opts, &Bars)?;
    emit(&format!("{}\ndetails: brink report {}/MODE/results\n", brink_suite::render_text(&rows), a.output.display()))?;
    Ok(if rows.iter().any(|r| r.violations > 0) { 1 } else { 0 })
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

/// Write a report file crash-safely, saying which file could not be written.
fn write_file(path: &Path, body: &str) -> Result<()> {
    brink_trace::durable::write_atomic(path, body.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `brink report RESULTS`: the vulnerabilities, the summary and the failing states, for
/// people (or the summary with the vulnerabilities as JSON).
pub fn report(dir: &Path, json: bool, html: Option<&Path>, junit: Option<&Path>) -> Result<i32> {
    if !dir.join(brink_explore::results::SUMMARY).exists() && !runs_in(dir)?.is_empty() {
        if junit.is_some() {
            bail!("{} holds several runs: --junit reports one run (name its directory)", dir.display());
        }
        return report_matrix(dir, json, html);
    }
    let analysis = brink_triage::analyze(dir)?;
    let (summary, recs) = (&analysis.summary, &analysis.states);
    if let Some(p) = html {
        write_file(p, &brink_triage::html(&analysis))?;
    }
    if let Some(p) = junit {
        write_file(p, &brink_triage::junit(&analysis))?;
    }
    if json {
        let mut obj = serde_json::to_value(summary)?;
        obj["vulnerabilities"] = serde_json::to_value(&analysis.vulnerabilities)?;
        obj["attributed"] = analysis.attributed.into();
        emit(&(serde_json::to_string_pretty(&obj)? + "\n"))?;
        return Ok(0);
    }
    let mut out = brink_triage::text(&analysis);
    writeln!(out, "\nresults {}", dir.display())?;
    summary_rows(&mut out, summary)?;
    failing_states(&mut out, dir, summary, recs)?;
    emit(&out)?;
    Ok(0)
}

/// The results directories directly under `dir` (those with a `summary.json`):
/// logical runs in the APMs' order, then block-level runs by name.
fn runs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut runs: Vec<PathBuf> = Vec::new();
    for e in entries {
        let p = e.with_context(|| format!("reading {}", dir.display()))?.path();
        if p.join(brink_explore::results::SUMMARY).is_file() {
            runs.push(p);
        }
    }
    let rank = |p: &PathBuf| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (Apm::ALL.iter().position(|a| a.name() == name).unwrap_or(Apm::ALL.len()), name)
    };
    runs.sort_by_key(rank);
    Ok(runs)
}

/// `brink report DIR` over a directory of runs of one recording (`explore --level
/// logical` under several APMs, with a kernel run beside them): the model matrix.
fn report_matrix(dir: &Path, json: bool, html: Option<&Path>) -> Result<i32> {
    let runs = runs_in(dir)?;
    let analyses = runs.iter().map(|r| brink_triage::analyze(r)).collect::<Result<Vec<_>, _>>()?;
    let key = |a: &brink_triage::Analysis| a.run.as_ref().map(|r| (r.trace_base_digest.clone(), r.trace_events));
    if let Some(other) = analyses.iter().find(|a| key(a) != key(&analyses[0])) {
        bail!(
            "{} and {} are runs of different recordings: a model matrix lines up runs of one",
            analyses[0].results,
            other.results
        );
    }
    let m = brink_triage::matrix(&analyses);
    if let Some(p) = html {
        write_file(p, &brink_triage::matrix_html(&m))?;
    }
    if json {
        emit(&(serde_json::to_string_pretty(&m)? + "\n"))?;
    } else {
        emit(&brink_triage::matrix_text(&m))?;
    }
    Ok(0)
}

/// The summary's rows of `brink report`: what was explored, the verdicts, the costs.
fn summary_rows(out: &mut String, s: &Summary) -> Result<()> {
    writeln!(out, "  trace        {} ({} {})", s.trace, s.fs, s.mount_opts)?;
    let level = if s.level.is_block() { "" } else { " (APM, logical level)" };
    writeln!(out, "  model        {}{level}   strategy {}", s.model, s.strategy)?;
    writeln!(out, "  checkers     {}", serde_json::to_string(&s.checkers)?)?;
    writeln!(
        out,
        "  states       {} in the space, {} generated, {} unique, {} checked",
        serde_json::to_value(s.states_total)?.to_string().trim_matches('"'),
        s.states_generated,
        s.states_unique,
        s.states_checked
    )?;
    writeln!(
        out,
        "  verdicts     {} violations, {} checker failures, {} consistent",
        s.violations, s.checker_failures, s.consistent
    )?;
    writeln!(out, "  time         {:.1}s ({:.1} states/s, {} jobs)", s.wall_s, s.states_per_s, s.jobs)?;
    if let Some(c) = &s.sample {
        let share = match s.fraction_covered {
            Some(f) => format!("{:.3}% of the space", 100.0 * f),
            None => "a share of the space not counted (over --max-states)".into(),
        };
        writeln!(
            out,
            "  sample       {share}; {} of {} crash points sampled, {} of them whole",
            c.points_sampled, c.points, c.points_whole
        )?;
    }
    if s.cache_hits + s.cache_stored > 0 {
        writeln!(out, "  cache        {} verdicts reused, {} added (--cache)", s.cache_hits, s.cache_stored)?;
    }
    if s.tree_dups > 0 {
        let n = s.tree_dups;
        writeln!(out, "  tree dedup   {n} states took the verdict of a state whose recovered files were the same")?;
    }
    if let Some(why) = &s.tree_dedup_off {
        writeln!(out, "  tree dedup   turned off during the run: {why}")?;
    }
    if s.minimize_probes > 0 {
        writeln!(out, "  minimizing   {} more states checked to find minimal failing states", s.minimize_probes)?;
    }
    if s.media_fault_states > 0 {
        let n = s.media_fault_states;
        writeln!(out, "  media faults {n} states with one media fault each (--media-faults)")?;
    }
    if let Some(n) = &s.no_crash {
        let message = n.message.as_deref().unwrap_or_default();
        let sep = if message.is_empty() { "" } else { ": " };
        let (id, verdict) = (&n.id, n.verdict.as_str());
        writeln!(out, "  no crash     state {id} (the disk as left, page cache dropped): {verdict}{sep}{message}")?;
    }
    if !s.complete {
        // What an overnight run (--time-budget) reached: the states it got to, of those
        // the strategy visits.
        let why = s.stopped_by.as_deref().unwrap_or("null");
        let reached = if s.sample.is_some() {
            format!("{} states of the sample reached", s.states_generated)
        } else {
            let total = serde_json::to_value(s.states_total)?.to_string().trim_matches('"').to_string();
            let pct = 100.0 * s.states_generated as f64 / s.states_total.as_f64().max(1.0);
            format!("{} of the {total} states reached ({pct:.3}%)", s.states_generated)
        };
        writeln!(out, "  INCOMPLETE   stopped by {why}: {reached}; --resume continues")?;
    }
    Ok(())
}

/// Failing states shown by `brink report`, at most.
const FAILING_SHOWN_MAX: usize = 50;

/// The failing states (the first [`FAILING_SHOWN_MAX`]), and how to reproduce one.
fn failing_states(out: &mut String, dir: &Path, summary: &Summary, recs: &[StateRecord]) -> Result<()> {
    let failing: Vec<&StateRecord> = recs.iter().filter(|r| r.verdict != Verdict::Consistent).collect();
    if failing.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{:<24} {:>5} {:<16} {:<14} message", "state", "marks", "verdict", "checker")?;
    for r in failing.iter().take(FAILING_SHOWN_MAX) {
        let c = r.checks.iter().find(|c| c.verdict == r.verdict);
        let message = c.map_or("", |c| c.message.as_str());
        let verdict = r.verdict.as_str();
        writeln!(
            out,
            "{:<24} {:>5} {:<16} {:<14} {}",
            short(&r.id, 24),
            r.marks,
            verdict,
            short(c.map_or("", |c| c.checker.as_str()), 14),
            match &r.fault {
                Some(f) => format!("[{f}] {message}"),
                None => message.to_string(),
            }
        )?;
    }
    if failing.len() > FAILING_SHOWN_MAX {
        let more = failing.len() - FAILING_SHOWN_MAX;
        writeln!(out, "… and {more} more in {}", dir.join("states.jsonl").display())?;
    }
    if summary.level.is_block() {
        writeln!(out, "\nreproduce one: brink replay {} {} -o DIR", summary.trace, failing[0].id)?;
    }
    Ok(())
}

/// Vulnerability ids of two workloads never match, so a diff of them would call every
/// vulnerability fixed and new: refused. A workload is told by its file system and its
/// checkers (the workload command may change between the versions compared).
fn same_workload(old: &Path, a: &Summary, new: &Path, b: &Summary) -> Result<()> {
    let what = if a.fs != b.fs {
        format!("file system {} and {}", a.fs, b.fs)
    } else if a.checkers != b.checkers {
        format!("checkers {} and {}", serde_json::to_string(&a.checkers)?, serde_json::to_string(&b.checkers)?)
    } else {
        return Ok(());
    };
    bail!(
        "{} and {} are explorations of different workloads ({what}): diff compares two explorations of one workload",
        old.display(),
        new.display()
    )
}

/// `brink diff OLD NEW`: the regression report; 1 if a vulnerability is new.
pub fn diff(old: &Path, new: &Path, json: bool) -> Result<i32> {
    let (a, b) = (brink_triage::analyze(old)?, brink_triage::analyze(new)?);
    same_workload(old, &a.summary, new, &b.summary)?;
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
    use brink_explore::replay::Recovery;
    let id: StateId = state.parse()?;
    let r = brink_explore::replay::replay(trace, &id, out, !no_mount)?;
    if let Some(f) = &id.fault {
        eprintln!("brink: media fault: {}", f.describe());
    }
    if let Some(note) = &r.note {
        eprintln!("brink: note: {note}");
    }
    let (image, marks) = (r.image.display(), r.marks_file.display());
    emit(&match &r.recovery {
        Recovery::NotAsked => format!("state {id} is in {image} (not recovered: --no-mount)\nmarks: {marks}\n"),
        Recovery::UnknownFs => format!("state {id} is in {image} (file system unknown: not mounted)\nmarks: {marks}\n"),
        Recovery::Mounted { target, device } => format!(
            "state {id}: recovered by the kernel and mounted at {}\n  image {image} on {}\n  marks it is held to: {marks} ({} marks)\nclean up with: umount {}   (the loop device then detaches itself)\n",
            target.display(),
            device.display(),
            r.marks,
            target.display()
        ),
        Recovery::DoesNotMount(e) => format!(
            "state {id}: the image does not mount ({e})\n  image {image} (inspect it, e.g. e2fsck -fn)\n  marks: {marks}\n"
        ),
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    /// Issue 13: an error line never repeats its cause, wherever in the chain it was said.
    #[test]
    fn errors_do_not_repeat_their_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "RESULTS/states.jsonl")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::from_raw_os_error(28);
        let said = format!("the run stopped: {io}");
        let e = anyhow::Error::new(Outer(io)).context(said);
        let line = super::error_line(&e);
        assert_eq!(line.matches("(os error 28)").count(), 1, "{line}");
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(28)).context("cannot write X");
        assert_eq!(super::error_line(&e), "cannot write X: No space left on device (os error 28)");
    }
}
