//! The results directory, specified as a wire format (fields may be added):
//!
//! ```text
//! RESULTS/
//!   run.json              what was explored: trace (path, digest), model, strategy, checkers
//!   states.partial.jsonl  verdicts as they finish, appended (survives a kill; resuming reads it)
//!   states.jsonl          every verdict, one JSON object a line, sorted by state id
//!   summary.json          counts, times, model, strategy, whether the run is complete
//!   minimal.jsonl         minimal states the strategy did not generate (block level)
//!   trace.json            what reports need of the trace (block level)
//!   ops.json              the logical ops in the program's terms (logical level)
//!   .lock                 held (flock) by the run using the directory; names it: `pid N, started T`
//! ```
//!
//! One run at a time: a run takes `.lock` (an exclusive, non-blocking `flock`) before it
//! reads or writes anything else here, and holds it until its last file is written; a
//! second run (a second resume while the first runs) is refused and told who holds it.
//! The lock file is never removed: removing it would let a third run lock a new file
//! while a second still holds the old one. A run's watchdog holds the lock too, so after
//! a `kill -9` the next run waits until the killed run's work area is cleaned up.
//!
//! A `states.jsonl` line:
//! `{"id":"120-3","position":120,"epoch":4,"marks":3,"omitted":[3],"torn":[{"write":7,"sectors":"f"}],
//!   "image":"…","verdict":"violation","checks":[{"checker":"./check","verdict":"violation",
//!   "message":"lost txn 17","ms":4}],"dup_of":null}`
//! - `marks`: how many of the trace's marks the state is held to (the first `marks`).
//! - `image`: the additive content hash of the state's disk before recovery; states with
//!   the same `image` and `marks` are checked once, the others name it in `dup_of` and
//!   repeat its checks.
//! - `verdict`: `violation` if any check found one, else `checker-failure` if any
//!   checker failed, else `consistent`.
//!
//! Invariants of `states.jsonl`, asserted when it is read back (`Results::load`,
//! `check_states`): ids sorted and each once; one representative (no `dup_of`) per
//! (`image`, `marks`); every `dup_of` names the representative of its own image and
//! marks; `verdict` is the overall verdict of `checks`. Every file here has a type that
//! reads and writes it: `RunIdentity` (`run.json`), `StateRecord` (`states.jsonl`,
//! `minimal.jsonl`), `TraceInfo` (`trace.json`), `Summary` (`summary.json`).
//!
//! # Logical results (`brink explore --level logical`, crate `brink-logical`)
//! The same files and types, for states of an abstract persistence model: `run.json` and
//! `summary.json` say `"level": "logical"` (absent at the block level) and name the APM
//! as their `model`; ids are logical state ids (`L7.2-3.0`, `brink_pmodel::LStateId`),
//! sorted in that type's order; `position` is the number of logical ops up to and
//! including the state's last persisted one (0 for `L`), `epoch` 0, `omitted` the
//! global indices of its missing micro-ops, `torn` empty; `image` the hash of the
//! materialized tree (names, kinds and contents; same width as a block image hash).
//! There is no `trace.json`; `minimal.jsonl` holds the minimization's probes (as at
//! the block level, brink-logical's minimize.rs); `ops.json` (`LogicalInfo`) names
//! each logical op by its call and says how many micro-ops the APM split it into, so
//! that a report explains a state id (`L9.0-6.0`: op 6 lost) in the program's terms.
//!
//! `states.jsonl` and `summary.json` are replaced atomically (temp, fsync, rename, fsync
//! the directory). Lines of `states.partial.jsonl` are written one `write(2)` each, so a
//! killed run keeps every finished verdict; it is fsynced at least once a second.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brink_attrib::{Attribution, CallLinks};
use brink_check::{CheckOutcome, Verdict};
use brink_pmodel::{Count, CrashState, LStateId, StateId, WriteChoice};
use brink_trace::{Event, TraceReader, durable};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::shard::Shard;
use crate::{ExploreError, ResultsError};

pub const RUN: &str = "run.json";
pub const PARTIAL: &str = "states.partial.jsonl";
pub const STATES: &str = "states.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const MINIMAL: &str = "minimal.jsonl";
pub const LOGICAL_INFO: &str = "ops.json";
pub const TRACE_INFO: &str = "trace.json";
pub const LOCK: &str = ".lock";
/// The partial log is fsynced at least this often, so a power cut loses at most this
/// much of a run's verdicts.
const PARTIAL_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long a run waits for a killed run's watchdog to finish cleaning up the work area
/// and release the lock (it unmounts for at most 5 s after waiting up to 15 s for the
/// killed process's threads and checkers).
const CLEANUP_WAIT_MAX: Duration = Duration::from_secs(30);

/// How often the lock is tried again meanwhile.
const CLEANUP_POLL: Duration = Duration::from_millis(50);

/// What reports need of the trace, so a results directory explains itself without it:
/// one letter per event (`w` write, `f` flush, `d` discard, `z` write-zeroes, `m` mark,
/// `e` injected error), the marks, what each write holds (brink-attrib), and, when the
/// trace holds the workload's calls and its writes are attributed, the calls each write
/// carries (`brink_attrib::link`), so vulnerabilities can be told in the program's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceInfo {
    pub trace: String,
    pub events: String,
    pub marks: Vec<MarkAt>,
    pub attribution: Attribution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallLinks>,
}

/// `ops.json` of a logical run (module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalInfo {
    /// The workload's directory (the calls' paths are relative to it).
    pub cwd: String,
    /// The logical ops, in order (op `i` of a state id is `ops[i]`).
    pub ops: Vec<OpInfo>,
}

/// One logical op (`LogicalInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpInfo {
    /// ALICE's name for it: `creat`, `append`, `rename`, `fsync`, `ack`, …
    pub name: String,
    /// How many micro-ops the APM split it into.
    pub parts: u32,
    /// The call it came from, in the program's terms (absent when no row names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<brink_attrib::CallRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkAt {
    pub index: u64,
    pub text: String,
}

impl TraceInfo {
    pub fn of_trace(reader: &TraceReader) -> Result<TraceInfo, ExploreError> {
        let mut events = String::new();
        let mut marks = Vec::new();
        for ev in reader.events()? {
            let ev = ev?;
            events.push(match &ev.event {
                Event::Write(_) => 'w',
                Event::Flush => 'f',
                Event::Discard { .. } => 'd',
                Event::WriteZeroes { .. } => 'z',
                Event::Mark { text } => {
                    marks.push(MarkAt { index: ev.index, text: text.clone() });
                    'm'
                }
                Event::Error(_) => 'e',
            });
        }
        let attribution = Attribution::of_trace(reader).map_err(ExploreError::Attribution)?;
        let calls = links_of(reader, &attribution, &marks)?;
        Ok(TraceInfo { trace: reader.dir().display().to_string(), events, marks, attribution, calls })
    }
}

/// The longest write whose data linking reads back (a mark is a line of text).
const LINK_DATA_MAX: u64 = 64 << 10;

/// The calls each write carries, if the trace holds calls and its writes are attributed.
pub fn links_of(
    reader: &TraceReader,
    attribution: &Attribution,
    marks: &[MarkAt],
) -> Result<Option<CallLinks>, ExploreError> {
    let (Some(meta), Some(iter)) = (reader.meta().calls.as_ref(), reader.calls()?) else { return Ok(None) };
    if !attribution.covered {
        return Ok(None);
    }
    // Linking needs where calls wrote, and the marks' text, not what they wrote.
    let calls = iter.data_up_to(LINK_DATA_MAX).collect::<Result<Vec<_>, _>>()?;
    let place = brink_calls::Place { cwd: meta.cwd.as_bytes(), mark_file: meta.mark_file.as_bytes() };
    let mark_events: Vec<u64> = marks.iter().map(|m| m.index).collect();
    Ok(Some(brink_attrib::link(attribution, &calls, place, &mark_events)))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TornRecord {
    pub write: u64,
    /// Persisted sectors, hex bitmask (bit 0 = first sector).
    pub sectors: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub id: String,
    pub position: u64,
    pub epoch: u64,
    pub marks: u64,
    pub omitted: Vec<u64>,
    pub torn: Vec<TornRecord>,
    pub image: String,
    pub verdict: Verdict,
    pub checks: Vec<CheckOutcome>,
    pub dup_of: Option<String>,
    /// A media-fault state's fault, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// A violating state's minimal state: the fewest of its drops and tears that still
    /// fail with the same message class (found by delta debugging). Its record is in
    /// `states.jsonl` or, if the strategy did not generate it, in `minimal.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal: Option<String>,
    /// The state whose checkers' outcomes this state took because its recovered files
    /// were the same (`tree.rs`); its fsck, if any, ran. Like a check's `ms`, it depends
    /// on scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_dup_of: Option<String>,
}

/// `summary.json`. Fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub trace: String,
    pub fs: String,
    pub mount_opts: String,
    pub model: String,
    pub strategy: String,
    pub checkers: Vec<String>,
    /// Size of the space the strategy visits (for `sample`: the legal space sampled).
    #[serde(deserialize_with = "count_from_json")]
    pub states_total: Count,
    pub states_generated: u64,
    /// Distinct (image, marks) pairs among the recorded states; each is checked once, so
    /// this equals `states_checked` (both count earlier runs of a resumed exploration).
    pub states_unique: u64,
    pub states_checked: u64,
    pub violations: u64,
    pub checker_failures: u64,
    pub consistent: u64,
    pub wall_s: f64,
    pub states_per_s: f64,
    pub jobs: usize,
    /// False when a time budget or an interrupt stopped the run; resuming it continues.
    pub complete: bool,
    pub stopped_by: Option<String>,
    /// For `sample`: the fraction of the legal space the unique samples cover.
    pub fraction_covered: Option<f64>,
    /// For `sample`: how the sample covers the crash points (every point first, the
    /// rest by size: `brink_pmodel::Sampler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<brink_pmodel::SampleCoverage>,
    /// States whose checkers did not run because their recovered files and marks equal a
    /// state's that ran them (`tree.rs`; `tree_dup_of` in `states.jsonl`).
    #[serde(default)]
    pub tree_dups: u64,
    /// Time per step summed over states and workers, in ms (this run only).
    pub time_ms: TimeSummary,
    /// The verdict on the state without a crash (crate docs, step 5); `None` when the
    /// run stopped before it.
    pub no_crash: Option<NoCrash>,
    /// Media-fault states checked (`ExploreConfig::media_faults`), included in the counts above.
    pub media_fault_states: u64,
    /// States checked only to minimize failing ones (not counted in `states_checked`).
    #[serde(default)]
    pub minimize_probes: u64,
    /// Unique states whose verdict came from the verdict cache (`ExploreConfig::cache`), and verdicts
    /// this run added to it.
    #[serde(default)]
    pub cache_hits: u64,
    #[serde(default)]
    pub cache_stored: u64,
    /// Processes checkers left running (escaped daemons, stray children) that brink
    /// stopped, in this run; absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub processes_left_behind: u64,
    /// Why checkers were contained without cgroup v2 (processes found by process group
    /// and by their files under the state's mount); absent when cgroup v2 was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment_note: Option<String>,
    /// Why tree dedup was turned off during the run (it did not pay: `tree.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_dedup_off: Option<String>,
    /// `logical` for an APM's states (module docs); absent at the block level.
    #[serde(default, skip_serializing_if = "Level::is_block")]
    pub level: Level,
    /// The shard this run explored (`shard.rs`); absent for a whole exploration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// How a merge (`merge.rs`) put this directory together from shards; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergeInfo>,
}

/// `summary.json`'s `merged`: which shards a merge had, and what they cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeInfo {
    /// N, the number of shards the exploration was split into.
    pub shards: u32,
    /// The shard indices merged, ascending.
    pub merged: Vec<u32>,
    /// Shard indices no input had.
    pub missing: Vec<u32>,
    /// Shards merged whose run had stopped (a time budget, a signal) before its end.
    pub incomplete: Vec<u32>,
    /// The fraction of the space the complete shards cover: each shard holds an equal
    /// share of the expected work (`shard.rs`), so complete shards / N.
    pub fraction_covered: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Which states a results directory holds: the disk's (block) or an APM's (logical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    #[default]
    Block,
    Logical,
}

impl Level {
    /// Block results do not write the field (they are as before it existed).
    pub fn is_block(&self) -> bool {
        *self == Level::Block
    }
}

/// A state id of either level, ordered within its level (block ids sort before logical
/// ones; one directory holds one level).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnyStateId {
    Block(StateId),
    Logical(LStateId),
}

impl std::str::FromStr for AnyStateId {
    type Err = ();
    fn from_str(s: &str) -> Result<AnyStateId, ()> {
        if s.starts_with('L') {
            s.parse().map(AnyStateId::Logical).map_err(|_| ())
        } else {
            s.parse().map(AnyStateId::Block).map_err(|_| ())
        }
    }
}

impl std::fmt::Display for AnyStateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyStateId::Block(id) => id.fmt(f),
            AnyStateId::Logical(id) => id.fmt(f),
        }
    }
}

impl AnyStateId {
    /// The `position` a record of this id has (see the module docs for logical ids).
    pub fn position(&self) -> u64 {
        match self {
            AnyStateId::Block(id) => id.position,
            AnyStateId::Logical(id) => id.end.map_or(0, |e| u64::from(e.op) + 1),
        }
    }
}

impl Summary {
    /// States the run could not judge: every checker failure (a checker missing,
    /// hanging, crashing, or leaving processes behind in the state) leaves its state
    /// without a verdict on the application. A run with any is not a pass, whatever
    /// its violations: an exit status must not say "clean" over them.
    pub fn unjudged(&self) -> u64 {
        self.checker_failures
    }

    /// Whether the run judged every state it recorded and found nothing: no violation
    /// and no state left unjudged.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.unjudged() == 0
    }
}

/// The verdict on the disk as the recording left it, held to every mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoCrash {
    pub id: String,
    pub verdict: Verdict,
    /// The first violation's (or checker failure's) message.
    pub message: Option<String>,
}

impl NoCrash {
    pub fn of(r: &StateRecord) -> NoCrash {
        NoCrash {
            id: r.id.clone(),
            verdict: r.verdict.clone(),
            message: r
                .checks
                .iter()
                .find(|c| c.verdict == r.verdict && r.verdict != Verdict::Consistent)
                .map(|c| c.message.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeSummary {
    pub hash: f64,
    pub overlay: f64,
    pub mount: f64,
    pub checkers: f64,
    pub unmount: f64,
    /// Worker time per checked state: `jobs × wall / checked`.
    pub per_state: f64,
}

/// `summary.json`'s `states_total`: a number, or a string when it does not fit in u64
/// (`Count`'s JSON form; saturated: "more than …").
fn count_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Number(u64),
        Text(String),
    }
    match Form::deserialize(d)? {
        Form::Number(n) => Ok(Count(u128::from(n))),
        Form::Text(t) if t.starts_with("more than ") => Ok(Count::MAX),
        Form::Text(t) => t.parse().map(Count).map_err(serde::de::Error::custom),
    }
}

/// `run.json`: what was explored. Resuming needs the same identity. Fields may be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub trace: String,
    pub trace_base_digest: String,
    pub trace_events: u64,
    pub model: String,
    pub strategy: String,
    pub checkers: Vec<String>,
    pub media_faults: bool,
    /// `logical` for an APM's states (module docs); absent at the block level.
    #[serde(default, skip_serializing_if = "Level::is_block")]
    pub level: Level,
    /// The shard explored (`shard.rs`): resuming needs the same one. Absent for a whole
    /// exploration (and in a merge of shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl RunIdentity {
    pub fn of(cfg: &crate::ExploreConfig, meta: &brink_trace::TraceMeta) -> RunIdentity {
        RunIdentity {
            trace: trace_identity(&cfg.trace),
            trace_base_digest: meta.base_image_digest.clone(),
            trace_events: meta.events,
            model: cfg.model.name(),
            strategy: cfg.strategy.name(),
            checkers: cfg.checkers.iter().map(|c| c.name().to_string()).collect(),
            media_faults: cfg.media_faults,
            level: Level::Block,
            shard: cfg.shard,
        }
    }
}

/// A trace's path as `run.json` keeps it: absolute, so that a resume from another
/// directory, or a merge, names the same trace.
pub fn trace_identity(trace: &Path) -> String {
    std::fs::canonicalize(trace).unwrap_or_else(|_| trace.to_path_buf()).display().to_string()
}

pub fn overall(checks: &[CheckOutcome]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Violation) {
        Verdict::Violation
    } else if checks.iter().any(|c| c.verdict == Verdict::CheckerFailure) {
        Verdict::CheckerFailure
    } else {
        Verdict::Consistent
    }
}

impl StateRecord {
    pub fn new(s: &CrashState, image: String, checks: Vec<CheckOutcome>, dup_of: Option<String>) -> StateRecord {
        let mut omitted = Vec::new();
        let mut torn = Vec::new();
        for (i, c) in &s.id.choices {
            match c {
                WriteChoice::Omitted => omitted.push(*i),
                WriteChoice::Torn(_) => torn.push(TornRecord { write: *i, sectors: c.mask_hex().expect("torn") }),
            }
        }
        StateRecord {
            id: s.id.to_string(),
            position: s.id.position,
            epoch: s.epoch,
            marks: s.marks_before,
            omitted,
            torn,
            image,
            verdict: overall(&checks),
            checks,
            dup_of,
            fault: s.id.fault.map(|f| f.describe()),
            minimal: None,
            tree_dup_of: None,
        }
    }
}

/// Appends finished verdicts; fsyncs at most once a second. Holds the directory's lock.
pub struct PartialLog {
    file: File,
    path: PathBuf,
    last_sync: Instant,
    lock: RunLock,
}

/// The results directory's lock (module docs), released when dropped.
pub struct RunLock(Flock<File>);

impl RunLock {
    /// Take `dir`'s lock, or say which run holds it. A holder that is gone was killed,
    /// and its watchdog holds the lock until its work area is clean (`rig.rs`): wait
    /// for that, at most [`CLEANUP_WAIT_MAX`].
    pub fn take(dir: &Path) -> Result<RunLock, ResultsError> {
        let path = dir.join(LOCK);
        let started = Instant::now();
        let lock = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| ResultsError::io(&path, e))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut holder = String::new();
                    let _ = std::io::Read::read_to_string(&mut file, &mut holder);
                    if holder_is_gone(&holder) && started.elapsed() < CLEANUP_WAIT_MAX {
                        std::thread::sleep(CLEANUP_POLL);
                        continue;
                    }
                    let holder = holder.trim();
                    let holder = if holder.is_empty() { "a run starting now".to_string() } else { holder.to_string() };
                    return Err(ResultsError::Busy { dir: dir.to_path_buf(), holder });
                }
                Err((_, e)) => return Err(ResultsError::io(&path, e.into())),
            }
        };
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let holder = format!("pid {}, started {}\n", std::process::id(), utc(started.as_secs()));
        lock.set_len(0).map_err(|e| ResultsError::io(&path, e))?;
        lock.write_all_at(holder.as_bytes(), 0).map_err(|e| ResultsError::io(&path, e))?;
        Ok(RunLock(lock))
    }

    /// The locked file, for a watchdog to hold (`fusectl::start_holding`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether the run named in a lock file (`pid N, started …`) has ended: no such process,
/// or a zombie.
fn holder_is_gone(holder: &str) -> bool {
    let Some(pid) = holder.strip_prefix("pid ").and_then(|r| r.split(',').next()).and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    brink_blockdev::cgroup::process_ended(pid)
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil calendar from days,
/// after Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

impl PartialLog {
    /// The results directory's lock.
    pub fn lock(&self) -> &RunLock {
        &self.lock
    }

    pub fn append(&mut self, rec: &StateRecord) -> Result<(), ResultsError> {
        let mut line = serde_json::to_vec(rec).expect("record serializes");
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| ResultsError::io(&self.path, e))?;
        if self.last_sync.elapsed() > PARTIAL_SYNC_INTERVAL {
            self.file.sync_data().map_err(|e| ResultsError::io(&self.path, e))?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }
}

/// Open (or, with `resume`, reopen) a results directory. Returns the verdicts already
/// recorded by an earlier run of the same exploration.
pub fn open(dir: &Path, run: &RunIdentity, resume: bool) -> Result<(PartialLog, Vec<StateRecord>), ResultsError> {
    // Compared and written as a JSON value: a run.json with a field this version does
    // not know is another exploration's, and keys are written sorted.
    let events = run.trace_events;
    let run = &serde_json::to_value(run).expect("json");
    let run_path = dir.join(RUN);
    let mut done = Vec::new();
    let lock;
    if dir.exists() {
        if !resume {
            return Err(ResultsError::Exists { dir: dir.to_path_buf() });
        }
        lock = RunLock::take(dir)?;
        let old: serde_json::Value = read_file(&run_path)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ResultsError::NoRun { dir: dir.to_path_buf() })?;
        let shard_of = |v: &serde_json::Value| v.get("shard").cloned().unwrap_or(serde_json::Value::Null);
        if shard_of(&old) != shard_of(run) {
            let text =
                |v: serde_json::Value| v.as_str().map_or("the whole exploration".into(), |s| format!("shard {s}"));
            return Err(ResultsError::OtherShard {
                dir: dir.to_path_buf(),
                had: text(shard_of(&old)),
                asked: text(shard_of(run)),
            });
        }
        if canonical_trace(old) != canonical_trace(run.clone()) {
            return Err(ResultsError::OtherSettings { dir: dir.to_path_buf() });
        }
        done = read_partial(&dir.join(PARTIAL), events)?;
    } else {
        if resume {
            return Err(ResultsError::NothingToResume { dir: dir.to_path_buf() });
        }
        std::fs::create_dir_all(dir).map_err(|e| ResultsError::io(dir, e))?;
        lock = RunLock::take(dir)?;
        durable::write_atomic(&run_path, &serde_json::to_vec_pretty(run).expect("json"))
            .map_err(|e| ResultsError::io(&run_path, e))?;
    }
    // Rewrite the partial log with the whole lines only, so a cut line is not followed
    // by new ones.
    let path = dir.join(PARTIAL);
    let mut body = Vec::new();
    for r in &done {
        body.extend(serde_json::to_vec(r).expect("json"));
        body.push(b'\n');
    }
    durable::write_atomic(&path, &body).map_err(|e| ResultsError::io(&path, e))?;
    let file = OpenOptions::new().append(true).open(&path).map_err(|e| ResultsError::io(&path, e))?;
    Ok((PartialLog { file, path, last_sync: Instant::now(), lock }, done))
}

/// A run identity (as JSON) with its trace path canonical, so `T`, `./T`, `T/` and the
/// absolute path name one trace. A path that no longer resolves is compared as written,
/// less a trailing `/`.
fn canonical_trace(mut run: serde_json::Value) -> serde_json::Value {
    if let Some(t) = run.get_mut("trace") {
        if let Some(text) = t.as_str() {
            let canonical = match std::fs::canonicalize(text) {
                Ok(p) => p.display().to_string(),
                Err(_) if text.len() > 1 => text.trim_end_matches('/').to_string(),
                Err(_) => text.to_string(),
            };
            *t = canonical.into();
        }
    }
    run
}

/// The whole records of a partial log left by an earlier run of a trace of `events`
/// events. A line cut by a kill can only be the last one, without its newline: it is
/// dropped (its state is checked again). Any other line that is not a record of a state
/// of this trace is an error naming it, never skipped nor kept.
fn read_partial(path: &Path, events: u64) -> Result<Vec<StateRecord>, ResultsError> {
    let Some(body) = read_file(path)? else { return Ok(Vec::new()) };
    let mut done = Vec::new();
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    // After the last newline: empty, or the line a kill cut.
    let whole = &lines[..lines.len() - 1];
    for (n, line) in whole.iter().enumerate() {
        let line_no = n + 1;
        let r: StateRecord = serde_json::from_slice(line).map_err(|e| ResultsError::json(path, Some(line_no), e))?;
        let bad_id = || ResultsError::BadStateId { path: path.to_path_buf(), line: line_no, id: r.id.clone() };
        let any: AnyStateId = r.id.parse().map_err(|_| bad_id())?;
        if any.to_string() != r.id {
            return Err(bad_id());
        }
        let what = match &any {
            AnyStateId::Block(id) => outside_the_space(id, &r, events),
            AnyStateId::Logical(_) => logical_mismatch(&any, &r),
        };
        if let Some(what) = what {
            return Err(ResultsError::Invariant { path: path.to_path_buf(), line: line_no, what });
        }
        done.push(r);
    }
    Ok(done)
}

/// Why a recorded state cannot be a state of a trace of `events` events, if it cannot.
fn outside_the_space(id: &StateId, r: &StateRecord, events: u64) -> Option<String> {
    let p = id.position;
    let why = if p > events {
        format!("a crash before event {p}, past the trace's {events} events")
    } else if r.position != p {
        format!("position {}, not its id's", r.position)
    } else if id.choices.iter().any(|(i, _)| *i >= p) || id.fault.is_some_and(|f| f.write() >= p) {
        format!("a write at or after its crash position {p}")
    } else if r.image.parse::<crate::ImageHash>().is_err() {
        format!("a bad image hash '{}'", r.image)
    } else {
        return None;
    };
    Some(format!("state {} is outside this trace's state space: {why}", r.id))
}

/// Why a logical record cannot be its id's state, if it cannot (its space is checked by
/// the logical explorer, which knows the plan).
fn logical_mismatch(id: &AnyStateId, r: &StateRecord) -> Option<String> {
    let why = if r.position != id.position() {
        format!("position {}, not its id's", r.position)
    } else if r.image.parse::<crate::ImageHash>().is_err() {
        format!("a bad image hash '{}'", r.image)
    } else {
        return None;
    };
    Some(format!("state {} is not a state of this exploration: {why}", r.id))
}

/// Every verdict recorded so far, sorted by state id (the last record of an id wins).
pub fn collect(dir: &Path) -> Result<Vec<StateRecord>, ResultsError> {
    let path = dir.join(PARTIAL);
    let f = open_file(&path)?;
    let mut recs: HashMap<String, StateRecord> = HashMap::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| ResultsError::io(&path, e))?;
        let r: StateRecord = serde_json::from_str(&line).map_err(|e| ResultsError::json(&path, None, e))?;
        recs.insert(r.id.clone(), r);
    }
    let mut recs: Vec<(AnyStateId, StateRecord)> = recs
        .into_values()
        .map(|r| match r.id.parse::<AnyStateId>() {
            Ok(id) => Ok((id, r)),
            Err(_) => Err(ResultsError::BadStateId { path: path.clone(), line: 0, id: r.id }),
        })
        .collect::<Result<_, _>>()?;
    recs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(recs.into_iter().map(|(_, r)| r).collect())
}

/// Make the smallest id of each (image, marks) its representative, in records sorted by
/// id: the others name it and repeat its checks. Media-fault states are left as they
/// are (never deduplicated). A one-machine block run already has this form; shards
/// merged, and a logical run (whose representative is the first state generated), are
/// brought to it.
pub fn smallest_representatives(recs: &mut [StateRecord]) {
    let mut reps: HashMap<(String, u64), (String, Vec<brink_check::CheckOutcome>)> = HashMap::new();
    for r in recs.iter_mut().filter(|r| r.fault.is_none()) {
        match reps.get(&(r.image.clone(), r.marks)) {
            None => {
                reps.insert((r.image.clone(), r.marks), (r.id.clone(), r.checks.clone()));
                r.dup_of = None;
            }
            Some((rep, checks)) => {
                r.dup_of = Some(rep.clone());
                r.checks = checks.clone();
                r.verdict = overall(&r.checks);
            }
        }
    }
}

/// Records as JSON lines.
pub(crate) fn jsonl(recs: &[StateRecord]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in recs {
        body.extend(serde_json::to_vec(r).expect("json"));
        body.push(b'\n');
    }
    body
}

/// Write `states.jsonl`, `minimal.jsonl`, `trace.json` and (last) `summary.json`, each
/// atomically.
pub fn write_final(
    dir: &Path,
    recs: &[StateRecord],
    probes: &[StateRecord],
    info: &TraceInfo,
    summary: &Summary,
) -> Result<(), ResultsError> {
    for (name, body) in
        [(STATES, jsonl(recs)), (MINIMAL, jsonl(probes)), (TRACE_INFO, serde_json::to_vec(info).expect("json"))]
    {
        let path = dir.join(name);
        durable::write_atomic(&path, &body).map_err(|e| ResultsError::io(&path, e))?;
    }
    write_summary(dir, summary)
}

/// Write `states.jsonl`, `minimal.jsonl` (when there are probes), `ops.json` (when
/// given) and (last) `summary.json`, each atomically: all a logical exploration writes
/// at its end.
pub fn write_states_and_summary(
    dir: &Path,
    recs: &[StateRecord],
    probes: &[StateRecord],
    ops: Option<&LogicalInfo>,
    summary: &Summary,
) -> Result<(), ResultsError> {
    let path = dir.join(STATES);
    durable::write_atomic(&path, &jsonl(recs)).map_err(|e| ResultsError::io(&path, e))?;
    if !probes.is_empty() {
        let path = dir.join(MINIMAL);
        durable::write_atomic(&path, &jsonl(probes)).map_err(|e| ResultsError::io(&path, e))?;
    }
    if let Some(ops) = ops {
        let path = dir.join(LOGICAL_INFO);
        durable::write_atomic(&path, &serde_json::to_vec(ops).expect("json"))
            .map_err(|e| ResultsError::io(&path, e))?;
    }
    write_summary(dir, summary)
}

fn write_summary(dir: &Path, summary: &Summary) -> Result<(), ResultsError> {
    let sp = dir.join(SUMMARY);
    let mut json = serde_json::to_vec_pretty(summary).expect("json");
    json.push(b'\n');
    durable::write_atomic(&sp, &json).map_err(|e| ResultsError::io(&sp, e))
}

fn read_jsonl(path: &Path) -> Result<Vec<StateRecord>, ResultsError> {
    let f = open_file(path)?;
    let mut recs = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| ResultsError::io(path, e))?;
        recs.push(serde_json::from_str(&line).map_err(|e| ResultsError::json(path, Some(n + 1), e))?);
    }
    Ok(recs)
}

/// The JSON file at `path`, or None if there is none (files older versions did not write).
fn read_json_if_any<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ResultsError> {
    match read_file(path)? {
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| ResultsError::json(path, None, e))?)),
        None => Ok(None),
    }
}

/// The JSON file at `path`, which must be there.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ResultsError> {
    let b = read_file(path)?.ok_or_else(|| ResultsError::io(path, std::io::ErrorKind::NotFound.into()))?;
    serde_json::from_slice(&b).map_err(|e| ResultsError::json(path, None, e))
}

/// A results file opened for reading. Only a regular file: a FIFO in its place would
/// block the reader, a device never end.
pub(crate) fn open_file(path: &Path) -> Result<File, ResultsError> {
    brink_trace::open_regular(path).map_err(|e| match e {
        brink_trace::TraceError::Io { source, .. } => ResultsError::io(path, source),
        other => ResultsError::Unreadable { source: other },
    })
}

/// The whole results file at `path`, or None if there is none ([`open_file`]).
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, ResultsError> {
    let mut f = match open_file(path) {
        Ok(f) => f,
        Err(ResultsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut body).map_err(|e| ResultsError::io(path, e))?;
    Ok(Some(body))
}

/// A finished results directory, read back typed and checked: `states.jsonl` holds its
/// invariants (`check_states`), or loading fails.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Results {
    /// `run.json` (absent in directories written by hand).
    pub run: Option<RunIdentity>,
    pub summary: Summary,
    /// `states.jsonl`: sorted by state id, each id once.
    pub states: Vec<StateRecord>,
    /// `minimal.jsonl`: minimal states the strategy did not generate (none in runs of
    /// older versions).
    pub minimal: Vec<StateRecord>,
    /// `trace.json` (absent in runs of older versions).
    pub trace: Option<TraceInfo>,
    /// `ops.json` (logical runs; absent in runs of older versions).
    pub logical: Option<LogicalInfo>,
}

impl Results {
    pub fn load(dir: &Path) -> Result<Results, ResultsError> {
        let run = read_json_if_any(&dir.join(RUN))?;
        let summary = read_json(&dir.join(SUMMARY))?;
        let states = read_jsonl(&dir.join(STATES))?;
        check_states(&dir.join(STATES), &states)?;
        let minimal = if dir.join(MINIMAL).exists() { read_jsonl(&dir.join(MINIMAL))? } else { Vec::new() };
        let trace = read_json_if_any(&dir.join(TRACE_INFO))?;
        let logical = read_json_if_any(&dir.join(LOGICAL_INFO))?;
        Ok(Results { run, summary, states, minimal, trace, logical })
    }
}

/// The invariants of `states.jsonl` (`path`), as the explorer writes it:
/// - every id is a state id (block or logical, module docs), and its record's
///   `position` is the id's;
/// - ids are sorted (in state id order), each once;
/// - each record's `verdict` is the overall verdict of its `checks`;
/// - each (image, marks) has one representative (a record without `dup_of`): states with
///   the same image and marks are checked once (media-fault states, never deduplicated,
///   are left out of this rule);
/// - a `dup_of` names a representative with the same image and marks.
pub fn check_states(path: &Path, states: &[StateRecord]) -> Result<(), ResultsError> {
    let broken = |line: usize, what: String| ResultsError::Invariant { path: path.to_path_buf(), line, what };
    let mut prev: Option<AnyStateId> = None;
    let mut reps: HashMap<(&str, u64), &str> = HashMap::new();
    for (n, r) in states.iter().enumerate() {
        let line = n + 1;
        let id: AnyStateId =
            r.id.parse().map_err(|_| ResultsError::BadStateId { path: path.to_path_buf(), line, id: r.id.clone() })?;
        if r.image.parse::<crate::ImageHash>().is_err() {
            return Err(ResultsError::BadImageHash { path: path.to_path_buf(), hex: r.image.clone() });
        }
        if id.position() != r.position {
            return Err(broken(line, format!("state {} has position {}, not its id's", r.id, r.position)));
        }
        if prev.as_ref().is_some_and(|p| *p >= id) {
            return Err(broken(line, format!("state {} is out of order: states are sorted by id, each once", r.id)));
        }
        if r.verdict != overall(&r.checks) {
            return Err(broken(line, format!("state {}'s verdict is not the overall verdict of its checks", r.id)));
        }
        // Media-fault states are never deduplicated (a latent sector error leaves the image
        // as it is), so only crash states take part in the one-representative rule.
        if r.dup_of.is_none() && r.fault.is_none() {
            if let Some(other) = reps.insert((r.image.as_str(), r.marks), r.id.as_str()) {
                return Err(broken(
                    line,
                    format!("states {other} and {} both represent one image and marks, which is checked once", r.id),
                ));
            }
        }
        prev = Some(id);
    }
    for (n, r) in states.iter().enumerate() {
        let Some(rep) = &r.dup_of else { continue };
        if reps.get(&(r.image.as_str(), r.marks)) != Some(&rep.as_str()) {
            return Err(broken(
                n + 1,
                format!(
                    "state {} names {rep} as its representative, which does not represent its image and marks",
                    r.id
                ),
            ));
        }
    }
    Ok(())
}
