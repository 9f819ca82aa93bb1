//! The logical explorer's engine: one APM's exploration of a [`Recording`].
//!
//! ```text
//! open        the plan, the size of the space, the results directory (resume: the
//!             verdicts already recorded, whose representatives seed the dedup table)
//! each chunk  generate states in the strategy's order (one thread) → each one's tree,
//!             hashed → dedup by (tree, marks) → the representatives built and checked
//!             on `jobs` workers (rayon) → their records, then the duplicates'
//! summary     states.jsonl and summary.json (brink_explore::results)
//! ```
//!
//! A time budget or a signal stops the run between chunks (a signal also stops the
//! checks under way, whose states are not recorded): what is done is kept, and resuming
//! continues it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use brink_attrib::CallRow;
use brink_calls::Call;
use brink_check::{CheckEnv, CheckOutcome, Jail, Limits, Verdict, write_marks};
use brink_explore::cache::VerdictCache;
use brink_explore::results::{self, LogicalInfo, OpInfo, PartialLog, overall};
use brink_explore::{
    AnyStateId, CheckerSpec, ImageHash, Level, NoCrash, Progress, RunIdentity, StateRecord, Summary, TimeSummary,
};
use brink_pmodel::{
    Applier, Count, LState, LStateId, LStrategy, LogicalInput, LogicalTrace, Micro, Plan, SampleCoverage, logical_ops,
};
use brink_trace::{TraceMeta, TraceReader};
use rayon::prelude::*;

use crate::base::Base;
use crate::content::{Content, Hash, Hasher, hex};
use crate::materialize::{Node, WorkDir};
use crate::{LogicalConfig, LogicalError};

/// States generated (and their representatives checked) between two looks at the
/// budget; also the unit of parallel work.
const CHUNK: usize = 256;

/// A trace opened for logical exploration: its logical ops and its initial files,
/// extracted once (in a temporary directory removed when this is dropped) and shared by
/// every APM explored.
pub struct Recording {
    pub trace: PathBuf,
    pub meta: TraceMeta,
    pub logical: LogicalTrace,
    pub base: Base,
    /// The calls that change files, make them durable or acknowledge, in words (seq order).
    pub rows: Vec<CallRow>,
    content: Content,
    tmp: tempfile::TempDir,
}

impl Recording {
    pub fn open(trace: &Path) -> Result<Recording, LogicalError> {
        let reader = TraceReader::open(trace)?;
        let meta = reader.meta().clone();
        let no_calls = || LogicalError::NoCalls { trace: trace.to_path_buf() };
        let calls_meta = meta.calls.clone().ok_or_else(no_calls)?;
        let calls: Vec<Call> = reader.calls()?.ok_or_else(no_calls)?.collect::<Result<_, _>>()?;
        let tmp = tempfile::Builder::new()
            .prefix("brink-logical-")
            .tempdir()
            .map_err(|e| LogicalError::io(std::env::temp_dir(), e))?;
        let base = Base::extract(&reader.base_image_path(), &meta.fs, &tmp.path().join("base"))?;
        let place = brink_calls::Place { cwd: calls_meta.cwd.as_bytes(), mark_file: calls_meta.mark_file.as_bytes() };
        let rows = brink_attrib::call_rows(&calls, place);
        let input = LogicalInput {
            started_before: calls_meta.started_before.clone(),
            root: calls_meta.cwd.into(),
            mark_file: calls_meta.mark_file.into(),
            start_dir: None,
            initial: base.initial.clone(),
        };
        let logical = logical_ops(&calls, &input);
        let content = Content::new(&calls, &logical, &base)?;
        Ok(Recording { trace: trace.to_path_buf(), meta, logical, base, rows, content, tmp })
    }

    /// Where the bytes of the recording's files come from.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// `ops.json` under `plan` (see `brink_explore::results::LogicalInfo`).
    pub fn ops_info(&self, plan: &Plan) -> LogicalInfo {
        let row = |seq: u64| self.rows.binary_search_by_key(&seq, |r| r.seq).ok().map(|i| self.rows[i].clone());
        let ops = (self.logical.ops.iter().enumerate())
            .map(|(i, op)| OpInfo { name: op.op.name().into(), parts: plan.of_op(i).len() as u32, call: row(op.seq) })
            .collect();
        let cwd = self.meta.calls.as_ref().map(|c| c.cwd.clone()).unwrap_or_default();
        LogicalInfo { cwd, ops }
    }
}

/// A strategy as `summary.json` and `run.json` name it.
pub fn strategy_name(s: LStrategy) -> String {
    match s {
        LStrategy::Prefix => "prefix".into(),
        LStrategy::OmitOne => "omit-one".into(),
        LStrategy::Partial => "partial".into(),
        LStrategy::Alice => "alice".into(),
        LStrategy::Exhaustive { max_missing: u32::MAX } => "exhaustive".into(),
        LStrategy::Exhaustive { max_missing } => format!("exhaustive-{max_missing}"),
        LStrategy::Sample { samples, seed } => format!("sample-{samples}-seed-{seed}"),
    }
}

/// Each minimized state's id with its minimal state, and the probes checked for them.
type Minimized = (Vec<(String, LStateId)>, Vec<StateRecord>);

/// What dedup keys a state by: its tree's hash and how many marks it is held to.
type Key = (Hash, u64);

/// A checked key: its representative and the checks.
struct Seen {
    rep: String,
    checks: Vec<CheckOutcome>,
}

/// A representative waiting for its check.
struct Pending {
    state: LState,
    nodes: Vec<Node>,
    hash: Hash,
    marks: Vec<String>,
}

/// Microseconds spent per step, summed over workers.
#[derive(Default)]
struct Timings {
    hash_us: AtomicU64,
    build_us: AtomicU64,
    check_us: AtomicU64,
}

fn add_us(counter: &AtomicU64, since: Instant) {
    counter.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
}

struct Run<'a> {
    cfg: &'a LogicalConfig,
    rec: &'a Recording,
    plan: &'a Plan,
    progress: &'a Progress,
    jail: Jail,
    workers: Vec<Mutex<WorkDir>>,
    pool: rayon::ThreadPool,
    reps: HashMap<Key, Seen>,
    timings: Timings,
    cache: Option<VerdictCache>,
    started: Instant,
    stopped_by: Option<String>,
    generated: u64,
    recorded: u64,
    left_behind: AtomicU64,
}

/// Explore `rec` under `cfg.apm`; the summary is also written to `cfg.results`.
pub fn explore(rec: &Recording, cfg: &LogicalConfig, progress: &Progress) -> Result<Summary, LogicalError> {
    if cfg.checkers.is_empty() {
        return Err(LogicalError::NoCheckers);
    }
    if cfg.checkers.iter().any(|c| c.trim() == "fsck") {
        return Err(LogicalError::Fsck);
    }
    let plan = Plan::new(&rec.logical, cfg.apm);
    let total = space(&plan, cfg)?;
    let shards = u64::from(cfg.shard.map_or(1, |s| s.count));
    progress.total.store(u64::try_from(total.0).unwrap_or(u64::MAX).div_ceil(shards), Ordering::Relaxed);
    let identity = RunIdentity {
        trace: results::trace_identity(&cfg.trace),
        trace_base_digest: rec.meta.base_image_digest.clone(),
        trace_events: rec.meta.events,
        model: cfg.apm.name().to_string(),
        strategy: strategy_name(cfg.strategy),
        checkers: cfg.checkers.clone(),
        media_faults: false,
        level: Level::Logical,
        shard: cfg.shard,
    };
    let (mut log, done) = results::open(&cfg.results, &identity, cfg.resume)?;
    let work = tempfile::Builder::new()
        .prefix(&format!("work-{}-", cfg.apm.name()))
        .tempdir_in(rec.tmp.path())
        .map_err(|e| LogicalError::io(rec.tmp.path(), e))?;
    let jobs = cfg.jobs.max(1);
    let workers = (0..jobs)
        .map(|i| WorkDir::new(&work.path().join(format!("w{i}"))).map(Mutex::new))
        .collect::<Result<Vec<_>, _>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("brink-logical-{i}"))
        .build()
        .expect("a thread pool");
    let jail = Jail::new().with_interrupt(cfg.interrupt.clone());
    let cache = match &cfg.cache {
        // The trees are not recovered by anything: the key's "recovery" is the level.
        Some(dir) => {
            let checkers: Vec<CheckerSpec> = cfg.checkers.iter().map(|c| CheckerSpec::parse(c)).collect();
            Some(VerdictCache::open(dir, &checkers, &format!("logical {:?}", cfg.checker_protocol))?)
        }
        None => None,
    };
    let mut run = Run {
        cfg,
        rec,
        plan: &plan,
        progress,
        jail,
        workers,
        pool,
        reps: HashMap::new(),
        timings: Timings::default(),
        cache,
        started: Instant::now(),
        stopped_by: None,
        generated: 0,
        recorded: 0,
        left_behind: AtomicU64::new(0),
    };
    run.go(&mut log, done)?;
    if let Some(c) = &run.cache {
        c.sync()?;
    }
    let recs = results::collect(&cfg.results)?;
    let (minimal, probes) = if run.stopped_by.is_none() { run.minimize(&recs)? } else { Default::default() };
    let summary = run.finish(recs, total, &minimal, probes)?;
    drop(log);
    drop(work);
    Ok(summary)
}

/// The number of states the strategy visits; exhaustive runs over `max_states` refused.
fn space(plan: &Plan, cfg: &LogicalConfig) -> Result<Count, LogicalError> {
    if let LStrategy::Exhaustive { .. } = cfg.strategy {
        let max = usize::try_from(cfg.max_states).unwrap_or(usize::MAX - 1).min(usize::MAX - 1);
        let n = plan.states(cfg.strategy).take(max + 1).count();
        if n > max {
            return Err(LogicalError::TooManyStates {
                apm: cfg.apm.name().into(),
                strategy: strategy_name(cfg.strategy),
                max: cfg.max_states,
            });
        }
        return Ok(Count(n as u128));
    }
    Ok(plan.count(cfg.strategy))
}

/// The chunk of states a generation step yields.
#[derive(Default)]
struct Chunk {
    reps: Vec<Pending>,
    dups: Vec<(LState, Hash)>,
    /// The strategy has no more states.
    last: bool,
}

impl Run<'_> {
    fn go(&mut self, log: &mut PartialLog, done: Vec<StateRecord>) -> Result<(), LogicalError> {
        let done: HashMap<String, StateRecord> = done.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut applier = Applier::new(&self.rec.logical, self.plan);
        let mut hasher = Hasher::default();
        let mut states = self.plan.states(self.cfg.strategy);
        let mut sampled: HashSet<String> = HashSet::new();
        loop {
            if self.should_stop() {
                return Ok(());
            }
            let mut chunk = Chunk { last: true, ..Chunk::default() };
            let mut pending_keys: HashSet<Key> = HashSet::new();
            for s in states.by_ref() {
                let id = s.id.to_string();
                if matches!(self.cfg.strategy, LStrategy::Sample { .. }) && !sampled.insert(id.clone()) {
                    continue;
                }
                if self.cfg.shard.is_some_and(|sh| !sh.owns_state(&id)) {
                    continue;
                }
                self.generated += 1;
                let t = Instant::now();
                let (nodes, hash) = self.tree_of(&mut applier, &mut hasher, &s)?;
                add_us(&self.timings.hash_us, t);
                let key = (hash, s.marks_before);
                if let Some(r) = done.get(&id) {
                    if r.dup_of.is_none() {
                        self.reps.entry(key).or_insert(Seen { rep: id, checks: r.checks.clone() });
                    }
                    self.progress.done.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if self.reps.contains_key(&key) || !pending_keys.insert(key) {
                    chunk.dups.push((s, hash));
                } else {
                    let marks = self.marks_of(&s);
                    chunk.reps.push(Pending { state: s, nodes, hash, marks });
                }
                if chunk.reps.len() >= CHUNK || chunk.dups.len() >= 16 * CHUNK {
                    chunk.last = false;
                    break;
                }
            }
            self.run_chunk(log, chunk.reps, chunk.dups)?;
            if chunk.last {
                return Ok(());
            }
        }
    }

    /// Whether the run must stop now (a signal or the time budget); the reason is kept.
    fn should_stop(&mut self) -> bool {
        if self.stopped_by.is_some() {
            return true;
        }
        let signal = self.cfg.interrupt.load(Ordering::Relaxed);
        self.stopped_by = if signal != 0 {
            Some(format!("signal {signal}"))
        } else {
            self.cfg
                .time_budget
                .filter(|b| self.started.elapsed() > *b)
                .map(|b| format!("time budget of {}s", b.as_secs_f64()))
        };
        self.stopped_by.is_some()
    }

    /// The state's tree as nodes in path order, with its hash.
    fn tree_of(
        &self,
        applier: &mut Applier<'_>,
        hasher: &mut Hasher,
        s: &LState,
    ) -> Result<(Vec<Node>, Hash), LogicalError> {
        let files = applier.tree(s).files();
        let mut nodes = Vec::with_capacity(files.len());
        for (path, view) in files {
            let hash = hasher.file(&self.rec.content, &view)?;
            nodes.push(Node { path, kind: view.kind, ino: view.ino, content: view.content, hash });
        }
        let hash = Hasher::tree(nodes.iter().map(|n| (n.path.as_path(), &n.kind, &n.hash)));
        Ok((nodes, hash))
    }

    /// The acknowledgements that persisted in `s`, in order.
    fn marks_of(&self, s: &LState) -> Vec<String> {
        let Some(end) = s.end else { return Vec::new() };
        (0..=end)
            .filter(|&m| s.holds(m))
            .filter_map(|m| match &self.plan.micro[m as usize].micro {
                Micro::Ack(text) => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Checks the representatives in parallel, then records them and the duplicates
    /// (a duplicate of a representative whose check a signal cut short is not recorded).
    fn run_chunk(
        &mut self,
        log: &mut PartialLog,
        reps: Vec<Pending>,
        dups: Vec<(LState, Hash)>,
    ) -> Result<(), LogicalError> {
        let this = &*self;
        let checked: Vec<Option<Vec<CheckOutcome>>> =
            this.pool.install(|| reps.par_iter().map(|p| this.check(p)).collect::<Result<_, _>>())?;
        for (p, checks) in reps.into_iter().zip(checked) {
            let Some(checks) = checks else { continue };
            let id = p.state.id.to_string();
            self.append(log, &p.state, &p.hash, checks.clone(), None)?;
            self.reps.insert((p.hash, p.state.marks_before), Seen { rep: id, checks });
        }
        for (s, hash) in dups {
            let Some(seen) = self.reps.get(&(hash, s.marks_before)) else { continue };
            let (rep, checks) = (seen.rep.clone(), seen.checks.clone());
            self.append(log, &s, &hash, checks, Some(rep))?;
        }
        Ok(())
    }

    /// The record of state `s`, its tree hashed `hash`.
    fn record_of(&self, s: &LState, hash: &Hash, checks: Vec<CheckOutcome>, dup_of: Option<String>) -> StateRecord {
        StateRecord {
            id: s.id.to_string(),
            position: AnyStateId::Logical(s.id.clone()).position(),
            epoch: 0,
            marks: s.marks_before,
            omitted: s.missing.iter().map(|&m| u64::from(m)).collect(),
            torn: Vec::new(),
            image: hex(hash),
            verdict: overall(&checks),
            checks,
            dup_of,
            fault: None,
            minimal: None,
            tree_dup_of: None,
        }
    }

    fn append(
        &mut self,
        log: &mut PartialLog,
        s: &LState,
        hash: &Hash,
        checks: Vec<CheckOutcome>,
        dup_of: Option<String>,
    ) -> Result<(), LogicalError> {
        let rec = self.record_of(s, hash, checks, dup_of);
        log.append(&rec)?;
        self.recorded += 1;
        let p = self.progress;
        p.done.fetch_add(1, Ordering::Relaxed);
        match rec.verdict {
            Verdict::Violation => p.violations.fetch_add(1, Ordering::Relaxed),
            Verdict::CheckerFailure => p.checker_failures.fetch_add(1, Ordering::Relaxed),
            Verdict::Consistent => 0,
        };
        Ok(())
    }

    /// Builds a representative's tree on this thread's worker and runs the checkers on
    /// it; None when a signal cut a check short.
    fn check(&self, p: &Pending) -> Result<Option<Vec<CheckOutcome>>, LogicalError> {
        let Some(cache) = &self.cache else { return self.check_tree(p) };
        let image: ImageHash = hex(&p.hash).parse().expect("a tree hash is an image hash's width");
        if let Some(checks) = cache.get(&image, &p.marks) {
            return Ok(Some(checks));
        }
        let checks = self.check_tree(p)?;
        if let Some(checks) = &checks {
            cache.put(&image, &p.marks, checks)?;
        }
        Ok(checks)
    }

    /// Builds the tree and runs the checkers (see [`Run::check`]).
    fn check_tree(&self, p: &Pending) -> Result<Option<Vec<CheckOutcome>>, LogicalError> {
        let w = rayon::current_thread_index().unwrap_or(0) % self.workers.len();
        let mut wd = self.workers[w].lock().unwrap_or_else(PoisonError::into_inner);
        let t = Instant::now();
        wd.build(&p.nodes, &self.rec.content)?;
        write_marks(wd.marks(), &p.marks).map_err(|e| LogicalError::io(wd.marks(), e))?;
        add_us(&self.timings.build_us, t);
        let t = Instant::now();
        let id = p.state.id.to_string();
        let env = CheckEnv {
            state_root: wd.root(),
            marks_file: wd.marks(),
            state_id: &id,
            trace: &self.cfg.trace,
            image: Path::new(""),
            protocol: self.cfg.checker_protocol,
            worker: w,
        };
        let limits = Limits { timeout: self.cfg.checker_timeout };
        let mut checks = Vec::with_capacity(self.cfg.checkers.len());
        for c in &self.cfg.checkers {
            let run = self.jail.run_checker(c, c, &env, &limits);
            self.left_behind.fetch_add(run.stopped.left_behind as u64, Ordering::Relaxed);
            if run.interrupted {
                return Ok(None);
            }
            checks.push(run.outcome);
        }
        add_us(&self.timings.check_us, t);
        if !wd.intact() {
            wd.wipe()?;
        }
        Ok(Some(checks))
    }

    /// For a sample: the share of the legal space its states cover (when the space,
    /// counted without building trees, is within `--max-states`), and the crash points
    /// (last persisted micro-ops, and the empty state) it reached.
    fn sample_coverage(&self, recs: &[StateRecord]) -> (Option<f64>, Option<SampleCoverage>) {
        if !matches!(self.cfg.strategy, LStrategy::Sample { .. }) {
            return (None, None);
        }
        let cap = usize::try_from(self.cfg.max_states).unwrap_or(usize::MAX - 1).min(usize::MAX - 1);
        let space = self.plan.states(LStrategy::Exhaustive { max_missing: u32::MAX }).take(cap + 1).count();
        let fraction = (space <= cap && space > 0).then(|| recs.len() as f64 / space as f64);
        let ends: HashSet<Option<(u32, u32)>> =
            recs.iter().filter_map(|r| r.id.parse::<LStateId>().ok()).map(|id| id.end.map(|e| (e.op, e.k))).collect();
        let points = self.plan.micro.len() as u64 + 1;
        (fraction, Some(SampleCoverage { points, points_sampled: ends.len() as u64, points_whole: 0 }))
    }

    /// The minimal state of every violating state that misses several micro-ops
    /// (`minimize.rs`), and the states checked for it that the strategy had not.
    fn minimize(&self, recs: &[StateRecord]) -> Result<Minimized, LogicalError> {
        let by_id: HashMap<&str, &StateRecord> = recs.iter().map(|r| (r.id.as_str(), r)).collect();
        let probes: Mutex<Vec<StateRecord>> = Mutex::new(Vec::new());
        let probe = |s: &LState| -> Result<Vec<CheckOutcome>, LogicalError> {
            let id = s.id.to_string();
            if let Some(r) = by_id.get(id.as_str()) {
                return Ok(r.checks.clone());
            }
            let mut applier = Applier::new(&self.rec.logical, self.plan);
            let (nodes, hash) = self.tree_of(&mut applier, &mut Hasher::default(), s)?;
            let (checks, dup_of) = match self.reps.get(&(hash, s.marks_before)) {
                Some(seen) => (seen.checks.clone(), Some(seen.rep.clone())),
                None => {
                    let p = Pending { state: s.clone(), nodes, hash, marks: self.marks_of(s) };
                    (self.check(&p)?.unwrap_or_default(), None)
                }
            };
            let rec = self.record_of(s, &hash, checks.clone(), dup_of);
            probes.lock().unwrap_or_else(PoisonError::into_inner).push(rec);
            Ok(checks)
        };
        let minimal = self.pool.install(|| crate::minimize::minimal_states(self.plan, recs, &probe))?;
        let mut probes = probes.into_inner().unwrap_or_else(PoisonError::into_inner);
        probes.sort_by(|a, b| a.id.cmp(&b.id));
        probes.dedup_by(|a, b| a.id == b.id);
        Ok((minimal, probes))
    }

    /// Writes `states.jsonl` (`recs`, every record of the run) and `summary.json`; the
    /// summary.
    fn finish(
        &self,
        mut recs: Vec<StateRecord>,
        total: Count,
        minimal: &[(String, LStateId)],
        probes: Vec<StateRecord>,
    ) -> Result<Summary, LogicalError> {
        results::smallest_representatives(&mut recs);
        let minimal: HashMap<&str, String> = minimal.iter().map(|(id, m)| (id.as_str(), m.to_string())).collect();
        for r in &mut recs {
            r.minimal = minimal.get(r.id.as_str()).cloned();
        }
        let wall = self.started.elapsed().as_secs_f64();
        let count = |f: &dyn Fn(&StateRecord) -> bool| recs.iter().filter(|r| f(r)).count() as u64;
        let unique = count(&|r| r.dup_of.is_none());
        let end = self.plan.micro.len().checked_sub(1).map(|e| e as u32);
        let end_id = self.plan.id_of(end, &[]).to_string();
        let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1000.0;
        let checked_now = self.recorded;
        let (fraction_covered, sample) = self.sample_coverage(&recs);
        let summary = Summary {
            trace: self.cfg.trace.display().to_string(),
            fs: self.rec.meta.fs.clone(),
            mount_opts: self.rec.meta.mount_opts.clone(),
            model: self.cfg.apm.name().to_string(),
            strategy: strategy_name(self.cfg.strategy),
            checkers: self.cfg.checkers.clone(),
            states_total: total,
            states_generated: self.generated,
            states_unique: unique,
            states_checked: unique,
            violations: count(&|r| r.verdict == Verdict::Violation),
            checker_failures: count(&|r| r.verdict == Verdict::CheckerFailure),
            consistent: count(&|r| r.verdict == Verdict::Consistent),
            wall_s: wall,
            states_per_s: if wall > 0.0 { checked_now as f64 / wall } else { 0.0 },
            jobs: self.cfg.jobs,
            complete: self.stopped_by.is_none(),
            stopped_by: self.stopped_by.clone(),
            fraction_covered,
            sample,
            tree_dups: 0,
            tree_dedup_off: None,
            time_ms: TimeSummary {
                hash: ms(&self.timings.hash_us),
                overlay: ms(&self.timings.build_us),
                mount: 0.0,
                checkers: ms(&self.timings.check_us),
                unmount: 0.0,
                per_state: if checked_now > 0 {
                    self.cfg.jobs as f64 * wall * 1000.0 / checked_now as f64
                } else {
                    0.0
                },
            },
            no_crash: recs.iter().find(|r| r.id == end_id).map(NoCrash::of),
            media_fault_states: 0,
            minimize_probes: probes.len() as u64,
            cache_hits: self.cache.as_ref().map_or(0, |c| c.hits.load(Ordering::Relaxed)),
            cache_stored: self.cache.as_ref().map_or(0, |c| c.stored.load(Ordering::Relaxed)),
            processes_left_behind: self.left_behind.load(Ordering::Relaxed),
            containment_note: self.jail.fallback_note(),
            level: Level::Logical,
            shard: self.cfg.shard,
            merged: None,
        };
        let ops = self.rec.ops_info(self.plan);
        results::write_states_and_summary(&self.cfg.results, &recs, &probes, Some(&ops), &summary)?;
        Ok(summary)
    }
}
