//! The results directory, specified as a wire format (fields may be added):
//!
//! ```text
//! RESULTS/
//!   run.json              what was explored: trace (path, digest), model, strategy, checkers
//!   states.partial.jsonl  verdicts as they finish, appended (survives a kill; resuming reads it)
//!   states.jsonl          every verdict, one JSON object a line, sorted by state id
//!   summary.json          counts, times, model, strategy, whether the run is complete
//! ```
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
//! `states.jsonl` and `summary.json` are replaced atomically (temp, fsync, rename, fsync
//! the directory). Lines of `states.partial.jsonl` are written one `write(2)` each, so a
//! killed run keeps every finished verdict; it is fsynced at least once a second.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brink_attrib::Attribution;
use brink_check::{CheckOutcome, Verdict};
use brink_pmodel::{CrashState, StateId, WriteChoice};
use brink_trace::{Event, TraceReader, durable};
use serde::{Deserialize, Serialize};

use crate::{ExploreError, ResultsError};

pub const RUN: &str = "run.json";
pub const PARTIAL: &str = "states.partial.jsonl";
pub const STATES: &str = "states.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const MINIMAL: &str = "minimal.jsonl";
pub const TRACE_INFO: &str = "trace.json";
/// The partial log is fsynced at least this often, so a power cut loses at most this
/// much of a run's verdicts.
const PARTIAL_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What reports need of the trace, so a results directory explains itself without it:
/// one letter per event (`w` write, `f` flush, `d` discard, `z` write-zeroes, `m` mark,
/// `e` injected error), the marks, and what each write holds (brink-attrib).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceInfo {
    pub trace: String,
    pub events: String,
    pub marks: Vec<MarkAt>,
    pub attribution: Attribution,
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
        Ok(TraceInfo { trace: reader.dir().display().to_string(), events, marks, attribution })
    }
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
        }
    }
}

/// Appends finished verdicts; fsyncs at most once a second.
pub struct PartialLog {
    file: File,
    path: PathBuf,
    last_sync: Instant,
}

impl PartialLog {
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
pub fn open(dir: &Path, run: &serde_json::Value, resume: bool) -> Result<(PartialLog, Vec<StateRecord>), ResultsError> {
    let run_path = dir.join(RUN);
    let mut done = Vec::new();
    if dir.exists() {
        if !resume {
            return Err(ResultsError::Exists { dir: dir.to_path_buf() });
        }
        let old: serde_json::Value = std::fs::read(&run_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ResultsError::NoRun { dir: dir.to_path_buf() })?;
        if &old != run {
            return Err(ResultsError::OtherSettings { dir: dir.to_path_buf() });
        }
        if let Ok(f) = File::open(dir.join(PARTIAL)) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                // A line cut by a kill is the last one; everything before it is whole.
                match serde_json::from_str::<StateRecord>(&line) {
                    Ok(r) => done.push(r),
                    Err(_) => break,
                }
            }
        }
    } else {
        if resume {
            return Err(ResultsError::NothingToResume { dir: dir.to_path_buf() });
        }
        std::fs::create_dir_all(dir).map_err(|e| ResultsError::io(dir, e))?;
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
    Ok((PartialLog { file, path, last_sync: Instant::now() }, done))
}

/// Every verdict recorded so far, sorted by state id (the last record of an id wins).
pub fn collect(dir: &Path) -> Result<Vec<StateRecord>, ResultsError> {
    let path = dir.join(PARTIAL);
    let f = File::open(&path).map_err(|e| ResultsError::io(&path, e))?;
    let mut recs: HashMap<String, StateRecord> = HashMap::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| ResultsError::io(&path, e))?;
        let r: StateRecord = serde_json::from_str(&line).map_err(|e| ResultsError::json(&path, None, e))?;
        recs.insert(r.id.clone(), r);
    }
    let mut recs: Vec<(StateId, StateRecord)> = recs
        .into_values()
        .map(|r| match r.id.parse::<StateId>() {
            Ok(id) => Ok((id, r)),
            Err(_) => Err(ResultsError::BadStateId { path: path.clone(), line: 0, id: r.id }),
        })
        .collect::<Result<_, _>>()?;
    recs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(recs.into_iter().map(|(_, r)| r).collect())
}

fn jsonl(recs: &[StateRecord]) -> Vec<u8> {
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
    summary: &impl Serialize,
) -> Result<(), ResultsError> {
    for (name, body) in
        [(STATES, jsonl(recs)), (MINIMAL, jsonl(probes)), (TRACE_INFO, serde_json::to_vec(info).expect("json"))]
    {
        let path = dir.join(name);
        durable::write_atomic(&path, &body).map_err(|e| ResultsError::io(&path, e))?;
    }
    let sp = dir.join(SUMMARY);
    let mut json = serde_json::to_vec_pretty(summary).expect("json");
    json.push(b'\n');
    durable::write_atomic(&sp, &json).map_err(|e| ResultsError::io(&sp, e))
}

/// Read a finished results directory.
pub fn load(dir: &Path) -> Result<(serde_json::Value, Vec<StateRecord>), ResultsError> {
    let sp = dir.join(SUMMARY);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&sp).map_err(|e| ResultsError::io(&sp, e))?)
        .map_err(|e| ResultsError::json(&sp, None, e))?;
    Ok((summary, read_jsonl(&dir.join(STATES))?))
}

fn read_jsonl(path: &Path) -> Result<Vec<StateRecord>, ResultsError> {
    let f = File::open(path).map_err(|e| ResultsError::io(path, e))?;
    let mut recs = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| ResultsError::io(path, e))?;
        recs.push(serde_json::from_str(&line).map_err(|e| ResultsError::json(path, Some(n + 1), e))?);
    }
    Ok(recs)
}

/// The records of minimal states the strategy did not generate, and the trace info,
/// of a finished results directory (absent in runs of older versions: then none).
pub fn load_analysis(dir: &Path) -> Result<(Vec<StateRecord>, Option<TraceInfo>), ResultsError> {
    let minimal = if dir.join(MINIMAL).exists() { read_jsonl(&dir.join(MINIMAL))? } else { Vec::new() };
    let path = dir.join(TRACE_INFO);
    let info = match std::fs::read(&path) {
        Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| ResultsError::json(&path, None, e))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ResultsError::io(&path, e)),
    };
    Ok((minimal, info))
}
