//! The engine: one exploration as a sequence of steps, each a method of [`Explorer`].
//!
//! ```text
//! open            preflight, the size of the space, the results directory (resume: the
//!                 verdicts already recorded, and the (image, marks) keys they checked)
//! set up the rig  work area, durable image, workers (rig.rs)
//! each epoch      stage it: generate its states → hash them over the head image →
//!                 dedup by (image, marks) → advance the head image
//! each batch      check the staged epochs' representatives together; then, epoch by
//!                 epoch over the durable image: record the duplicates → minimize the
//!                 violations → media faults → advance the durable image
//! no crash        the disk as the recording left it, held to every mark
//! tear down       release the rig before writing anything final
//! summary         states.jsonl, minimal.jsonl, trace.json, summary.json (results.rs)
//! ```
//!
//! Why batches: a program that fsyncs every transaction makes many epochs of one or two
//! states each; checked epoch by epoch, all but one core would wait at every epoch's
//! end. A batch holds epochs until it has `BATCH_STATES_PER_JOB` representatives per
//! job (or `BATCH_WRITES_MAX` writes), and a state of a later epoch of the batch is
//! served as the durable image, which lags at the batch's start, plus the whole writes
//! of the batch's earlier epochs, plus its own pieces. The head image (`rig.rs`) is
//! what hashing reads: it is always at the epoch being staged.
//!
//! Parallel steps (hashing, checking, minimizing, media faults) run on a rayon pool of
//! `jobs` threads, each check on a worker of the rig; the sequential steps between them
//! own the explorer. A time budget or a signal stops the run between states (`Stop`):
//! what is done is kept and `resume` continues it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brink_blockdev::FsKind;
use brink_check::{CheckOutcome, Verdict};
use brink_pmodel::{Count, CrashState, Draw, Sampler, StateId, StateIter, Strategy, count_point};
use brink_trace::{TraceMeta, TraceReader};
use rayon::prelude::*;

use crate::cache::VerdictCache;
use crate::footprint::{Footprint, Piece, hash_image};
use crate::media::{self, FaultState};
use crate::plan::{self, EpochData};
use crate::results::{self, PartialLog, StateRecord as Record};
use crate::rig::{Job, Rig};
use crate::settings;
use crate::shard::Partition;
use crate::worker::{Checked, InProcessCheck, Recovery, Timings};
use crate::{
    ExploreConfig, ExploreError, ImageHash, NoCrash, Progress, ResultsError, SpaceCount, Summary, TimeSummary,
    count_points, minimize,
};

/// What deduplication keys a state by: its image's hash and how many marks it is held to.
type Key = (ImageHash, u64);

/// A batch is checked once it holds this many representatives per job (module docs)...
const BATCH_STATES_PER_JOB: usize = 8;
/// ...or this many writes, which every state of its last epoch is served with (its
/// pieces: 4,096 cost 2.4 ms a state on a sampled trace of 7,827 writes, 512 1.4 ms).
const BATCH_WRITES_MAX: usize = 512;

/// A checked key: the state that represents it and its checks.
struct Seen {
    rep: String,
    checks: Vec<CheckOutcome>,
}

/// Whether the run should stop, and why: a time budget ran out or a signal came.
struct Stop<'a> {
    stopped: AtomicBool,
    why: Mutex<Option<String>>,
    interrupt: &'a AtomicUsize,
    budget: Option<Duration>,
    started: Instant,
}

impl Stop<'_> {
    /// True once the run must stop; the first reason found is kept for the summary.
    fn now(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return true;
        }
        let why = match self.interrupt.load(Ordering::Relaxed) {
            0 => {
                self.budget.filter(|b| self.started.elapsed() > *b).map(|b| format!("time budget of {}s", b.as_secs()))
            }
            s => Some(format!("signal {s}")),
        };
        if let Some(why) = why {
            self.stopped.store(true, Ordering::Relaxed);
            self.why.lock().expect("lock").get_or_insert(why);
            return true;
        }
        false
    }
}

/// An epoch staged in the batch: hashed and deduplicated, its checks not yet run.
struct Staged {
    ed: EpochData,
    fp: Footprint,
    states: Vec<CrashState>,
    hashes: Vec<ImageHash>,
    /// Indices of the states to check, and of those that repeat a key checked (or to be
    /// checked) before them.
    reps: Vec<usize>,
    dups: Vec<usize>,
}

impl Staged {
    /// The epoch as served over an image `prefix` short of its durable image.
    fn run<'e>(&'e self, marks: &'e [String], prefix: &'e [Piece]) -> EpochRun<'e> {
        EpochRun { ed: &self.ed, fp: &self.fp, marks, states: &self.states, hashes: &self.hashes, prefix }
    }
}

/// One epoch being explored: its writes, footprint, states and their hashes.
struct EpochRun<'e> {
    ed: &'e EpochData,
    fp: &'e Footprint,
    marks: &'e [String],
    states: &'e [CrashState],
    hashes: &'e [ImageHash],
    /// What the image the states are served over lacks of the epoch's durable image:
    /// the whole writes of the batch's earlier epochs (empty once it caught up).
    prefix: &'e [Piece],
}

impl EpochRun<'_> {
    fn key(&self, i: usize) -> Key {
        (self.hashes[i], self.states[i].marks_before)
    }

    fn marks_of(&self, s: &CrashState) -> &[String] {
        &self.marks[..s.marks_before as usize]
    }

    /// The pieces that make the served image the state's.
    fn pieces(&self, s: &CrashState) -> Vec<Piece> {
        let mut pieces = self.prefix.to_vec();
        pieces.extend(self.fp.pieces(&self.ed.epoch, s));
        pieces
    }
}

/// One exploration (module docs).
pub(crate) struct Explorer<'a> {
    cfg: &'a ExploreConfig,
    progress: &'a Progress,
    stop: Stop<'a>,
    reader: Arc<TraceReader>,
    meta: TraceMeta,
    fs: FsKind,
    space: SpaceCount,
    log: Mutex<PartialLog>,
    /// Verdicts an earlier run of the same exploration recorded, by state id.
    done: HashMap<String, Record>,
    /// The ids of `done` not generated (yet) by this run (`no_foreign_records`).
    unconfirmed: HashSet<String>,
    seen: HashMap<Key, Seen>,
    pool: rayon::ThreadPool,
    cache: Option<VerdictCache>,
    sampler: Option<Sampler>,
    /// With a shard: which crash points and media-fault states are this run's (shard.rs).
    partition: Option<Partition>,
    /// None before `set_up_rig` and after `tear_down`.
    rig: Option<Rig>,
    /// Recover and check in process instead of as `cfg.recovery` says (tests).
    in_process: Option<Arc<dyn InProcessCheck>>,
    timings: Timings,
    checked: AtomicU64,
    generated: u64,
    media_states: u64,
    /// Each violating state's minimal state (minimize.rs).
    minimal_of: HashMap<String, StateId>,
    /// States checked only to minimize others.
    probes: Mutex<HashMap<Key, Record>>,
    /// The epochs staged since the last batch was checked, and the keys of their
    /// representatives.
    staged: Vec<Staged>,
    staged_keys: HashSet<Key>,
    /// The head image's hash (rig.rs).
    head_hash: ImageHash,
    /// The strategy generated the no-crash state's id (a crash point at the trace's end).
    end_generated: bool,
    last_epoch: u64,
    marks: Vec<String>,
    /// Read from the rig at `tear_down`: processes the checkers left behind, and why
    /// checkers were contained without cgroup v2.
    processes_left_behind: u64,
    containment_note: Option<String>,
    tree_dedup_off: Option<String>,
}

/// The record of a state that was checked (not a duplicate of another image).
fn checked_record(s: &CrashState, image: ImageHash, c: &Checked) -> Record {
    Record { tree_dup_of: c.tree_dup_of.clone(), ..Record::new(s, image.to_string(), c.checks.clone(), None) }
}

/// A test hook (brink-cli's `tests/it/signals.rs`): with this variable set to
/// `explore-check`, checking a state panics, on a worker thread, with the rig set up and
/// the progress display running. It shows that a panic ends brink with cleanup.
const PANIC_AT: &str = "BRINK_PANIC_AT";

/// Refuse what cannot run before touching anything: a numeric setting out of range,
/// kernel recovery without root, a file system brink does not explore, userspace
/// recovery of anything but ext4, a program the recovery or a checker runs missing.
fn preflight(cfg: &ExploreConfig, meta: &TraceMeta, in_process: bool) -> Result<FsKind, ExploreError> {
    settings::validate(cfg)?;
    if !in_process && cfg.recovery == Recovery::Kernel && !nix::unistd::geteuid().is_root() {
        return Err(ExploreError::NeedsRoot);
    }
    let fs = crate::fs_of(&meta.fs)?;
    if !in_process && cfg.recovery == Recovery::Userspace && fs != FsKind::Ext4 {
        return Err(ExploreError::UserspaceNotExt4 { fs });
    }
    if !in_process {
        if let Some(m) = settings::missing_tool(cfg.recovery, &cfg.checkers, fs, &brink_blockdev::find_program) {
            return Err(m.into());
        }
    }
    Ok(fs)
}

/// How many states the run will generate (for the progress display; a shard's share
/// is about 1/N of them).
fn target(strategy: Strategy, total: Count, shards: u32) -> u64 {
    let all = match strategy {
        Strategy::Sample { samples, .. } => samples.min(u64::try_from(total.0).unwrap_or(u64::MAX)),
        _ => u64::try_from(total.0).unwrap_or(u64::MAX),
    };
    all.div_ceil(u64::from(shards))
}

/// The keys an earlier run checked: every record that is not a duplicate.
fn seen_of(dir: &Path, done: &HashMap<String, Record>) -> Result<HashMap<Key, Seen>, ExploreError> {
    let mut seen = HashMap::new();
    for r in done.values().filter(|r| r.dup_of.is_none()) {
        let hash = r
            .image
            .parse()
            .map_err(|_| ResultsError::BadImageHash { path: dir.join(results::PARTIAL), hex: r.image.clone() })?;
        seen.insert((hash, r.marks), Seen { rep: r.id.clone(), checks: r.checks.clone() });
    }
    Ok(seen)
}

impl<'a> Explorer<'a> {
    /// Preflight, count the space, open (or reopen, to resume) the results directory.
    pub(crate) fn open(
        cfg: &'a ExploreConfig,
        progress: &'a Progress,
        in_process: Option<Arc<dyn InProcessCheck>>,
    ) -> Result<Explorer<'a>, ExploreError> {
        let started = Instant::now();
        let reader = Arc::new(TraceReader::open(&cfg.trace)?);
        // Every state starts from base.img: a damaged one would be blamed on the application.
        reader.check_base_image()?;
        let meta = reader.meta().clone();
        let fs = preflight(cfg, &meta, in_process.is_some())?;
        let sampled = matches!(cfg.strategy, Strategy::Sample { .. });
        let mut point_counts = Vec::new();
        let space = count_points(&reader, cfg.model, cfg.strategy, sampled.then_some(&mut point_counts))?;
        // Every strategy but sampling visits its whole space (a torn omit-k space of a
        // small trace once grew past 24 GB): refused up front past the maximum.
        if !sampled && space.states_total.0 > cfg.max_states {
            return Err(ExploreError::TooManyStates {
                strategy: cfg.strategy.name(),
                count: space.states_total,
                max: cfg.max_states,
            });
        }
        // + 1: the no-crash state.
        let shards = cfg.shard.map_or(1, |s| s.count);
        progress.total.store(target(cfg.strategy, space.states_total, shards).saturating_add(1), Ordering::Relaxed);
        let (log, done) = results::open(&cfg.results, &results::RunIdentity::of(cfg, &meta), cfg.resume)?;
        let done: HashMap<String, Record> = done.into_iter().map(|r| (r.id.clone(), r)).collect();
        let seen = seen_of(&cfg.results, &done)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.jobs)
            .build()
            .map_err(|source| ExploreError::Pool { jobs: cfg.jobs, source })?;
        let sampler = match cfg.strategy {
            Strategy::Sample { samples, seed } => Some(Sampler::new(&point_counts, samples, seed)),
            _ => None,
        };
        Ok(Explorer {
            cfg,
            progress,
            stop: Stop {
                stopped: AtomicBool::new(false),
                why: Mutex::new(None),
                interrupt: &cfg.interrupt,
                budget: cfg.time_budget,
                started,
            },
            reader,
            meta,
            fs,
            space,
            log: Mutex::new(log),
            unconfirmed: done.keys().cloned().collect(),
            done,
            seen,
            pool,
            cache: None,
            sampler,
            partition: cfg.shard.map(Partition::new),
            rig: None,
            in_process,
            timings: Timings::default(),
            checked: AtomicU64::new(0),
            generated: 0,
            media_states: 0,
            minimal_of: HashMap::new(),
            probes: Mutex::new(HashMap::new()),
            staged: Vec::new(),
            staged_keys: HashSet::new(),
            head_hash: ImageHash::default(),
            end_generated: false,
            last_epoch: 0,
            marks: Vec::new(),
            processes_left_behind: 0,
            containment_note: None,
            tree_dedup_off: None,
        })
    }

    /// The whole run, in order (module docs).
    pub(crate) fn run(mut self) -> Result<Summary, ExploreError> {
        self.set_up_rig()?;
        self.explore_epochs()?;
        self.check_no_crash()?;
        self.tear_down()?;
        self.no_foreign_records()?;
        self.summary()
    }

    /// After a whole run, every record an earlier run left must be of a state this one
    /// generated: a partial log that passed its line checks can still name a state the
    /// strategy never visits (an omitted write that is no volatile write there), and
    /// carrying it into the results would report a state nobody checked.
    fn no_foreign_records(&self) -> Result<(), ExploreError> {
        if self.stop.now() {
            return Ok(());
        }
        let mut foreign: Vec<&String> = self.unconfirmed.iter().collect();
        foreign.sort();
        match foreign.first() {
            None => Ok(()),
            Some(id) => {
                Err(ResultsError::Foreign { path: self.cfg.results.join(results::PARTIAL), id: (*id).clone() }.into())
            }
        }
    }

    /// `id` was generated: a record an earlier run left of it is this run's.
    fn confirm(&mut self, id: &StateId) {
        if !self.unconfirmed.is_empty() {
            self.unconfirmed.remove(&id.to_string());
        }
    }

    fn rig(&self) -> &Rig {
        self.rig.as_ref().expect("the rig is set up")
    }

    /// The rig, the head image's hash, and the verdict cache.
    fn set_up_rig(&mut self) -> Result<(), ExploreError> {
        let log = self.log.lock().expect("log lock");
        let rig = Rig::set_up(self.cfg, &self.reader, self.fs, self.in_process.clone(), log.lock().fd())?;
        drop(log);
        self.head_hash = hash_image(rig.durable_path()).map_err(|e| ExploreError::io(rig.durable_path(), e))?;
        self.rig = Some(rig);
        self.cache = match &self.cfg.cache {
            Some(dir) => Some(VerdictCache::open(
                dir,
                &self.cfg.checkers,
                &format!(
                    "{:?} {} {} {:?}",
                    self.cfg.recovery, self.fs, self.meta.mount_opts, self.cfg.checker_protocol
                ),
            )?),
            None => None,
        };
        Ok(())
    }

    fn explore_epochs(&mut self) -> Result<(), ExploreError> {
        let reader = self.reader.clone();
        let mut marks = Vec::new();
        plan::for_each_epoch(&reader, &mut marks, |ed, marks| self.stage(ed, marks))?;
        self.flush(&marks)?;
        self.marks = marks;
        Ok(())
    }

    /// Stage one epoch (module docs), and check the batch once it is full; false once
    /// the run stops.
    fn stage(&mut self, ed: EpochData, marks: &[String]) -> Result<bool, ExploreError> {
        self.last_epoch = ed.epoch.number;
        if self.stop.now() {
            return Ok(false);
        }
        let fp = Footprint::new(&self.reader, &ed.writes, self.rig().head(), self.head_hash)?;
        let states = self.generate(&ed);
        let hashes = self.hash(&fp, &ed, &states)?;
        let (reps, dups) = self.dedup(&states, &hashes);
        self.head_hash = fp.hash_all(&self.reader, self.rig().head())?;
        fp.apply_all(&self.reader, self.rig().head())?;
        self.staged.push(Staged { ed, fp, states, hashes, reps, dups });
        let reps: usize = self.staged.iter().map(|st| st.reps.len()).sum();
        let writes: usize = self.staged.iter().map(|st| st.ed.writes.len()).sum();
        if reps >= BATCH_STATES_PER_JOB * self.cfg.jobs || writes >= BATCH_WRITES_MAX {
            return self.flush(marks);
        }
        Ok(true)
    }

    /// Check the staged epochs' representatives together, then finish each epoch in
    /// order over the durable image (module docs); false once the run stops.
    fn flush(&mut self, marks: &[String]) -> Result<bool, ExploreError> {
        let staged = std::mem::take(&mut self.staged);
        self.staged_keys.clear();
        let mut prefix: Vec<Piece> = Vec::new();
        let mut starts = Vec::with_capacity(staged.len());
        for st in &staged {
            starts.push(prefix.len());
            prefix.extend(st.fp.pieces_all());
        }
        let runs: Vec<EpochRun> = staged.iter().zip(starts).map(|(st, n)| st.run(marks, &prefix[..n])).collect();
        self.check_representatives(&runs, &staged)?;
        for (st, run) in staged.iter().zip(runs) {
            // The durable image is at this epoch now: its states need no prefix.
            let ep = EpochRun { prefix: &[], ..run };
            self.record_duplicates(&ep, &st.dups)?;
            self.minimize(&ep)?;
            if self.cfg.media_faults {
                self.check_media_faults(&ep)?;
            }
            if self.stop.now() {
                return Ok(false);
            }
            self.rig().advance_durable(&st.fp)?;
        }
        Ok(true)
    }

    /// The epoch's states the strategy visits (with a shard, those of its crash points:
    /// the sample is drawn at every point all the same), in id order, each once.
    fn generate(&mut self, ed: &EpochData) -> Vec<CrashState> {
        let mut states: Vec<CrashState> = Vec::new();
        for p in &ed.epoch.points {
            let (strategy, seeds) = match &mut self.sampler {
                Some(s) => match s.take(count_point(self.cfg.model, self.cfg.strategy, &ed.epoch, p)) {
                    Draw::All => (Strategy::Exhaustive, Vec::new()),
                    Draw::Seeds(seeds) => (self.cfg.strategy, seeds),
                },
                None => (self.cfg.strategy, Vec::new()),
            };
            let mut at_point: Vec<CrashState> =
                StateIter::new(self.cfg.model, strategy, &ed.epoch, p, &seeds).collect();
            at_point.sort_by(|a, b| a.id.cmp(&b.id));
            at_point.dedup_by(|a, b| a.id == b.id); // repeated samples
            if self.partition.as_mut().is_none_or(|part| part.take_point(p.position, at_point.len() as u64)) {
                states.extend(at_point);
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        self.generated += states.len() as u64;
        for s in &states {
            self.confirm(&s.id);
        }
        let end = self.no_crash_id();
        self.end_generated |= states.iter().any(|s| s.id == end);
        states
    }

    /// Each state's image hash over the head image, in parallel.
    fn hash(&self, fp: &Footprint, ed: &EpochData, states: &[CrashState]) -> Result<Vec<ImageHash>, ExploreError> {
        let started = Instant::now();
        let durable = self.rig().head();
        let hashes = self.pool.install(|| {
            states.par_iter().map(|s| fp.hash(&self.reader, durable, &ed.epoch, s)).collect::<Result<Vec<_>, _>>()
        })?;
        Timings::add(&self.timings.hash_us, started);
        Ok(hashes)
    }

    /// Representatives (first of each key in the batch, in id order) and duplicates. A
    /// state an earlier run already checked has its key in `seen`, so it lands among the
    /// duplicates and is skipped there.
    fn dedup(&mut self, states: &[CrashState], hashes: &[ImageHash]) -> (Vec<usize>, Vec<usize>) {
        let mut reps = Vec::new();
        let mut dups = Vec::new();
        for (i, s) in states.iter().enumerate() {
            let key = (hashes[i], s.marks_before);
            if self.seen.contains_key(&key) || !self.staged_keys.insert(key) {
                dups.push(i);
            } else {
                reps.push(i);
            }
        }
        (reps, dups)
    }

    /// Check the batch's representatives in parallel, across its epochs, and remember
    /// their checks.
    fn check_representatives(&mut self, runs: &[EpochRun], staged: &[Staged]) -> Result<(), ExploreError> {
        let work: Vec<(usize, usize)> =
            staged.iter().enumerate().flat_map(|(k, st)| st.reps.iter().map(move |&i| (k, i))).collect();
        let this = &*self;
        let results: Vec<Option<(usize, usize, Vec<CheckOutcome>)>> = self.pool.install(|| {
            work.par_iter()
                .map(|&(k, i)| Ok(this.check_representative(&runs[k], i)?.map(|checks| (k, i, checks))))
                .collect::<Result<Vec<_>, ExploreError>>()
        })?;
        for (k, i, checks) in results.into_iter().flatten() {
            self.seen.insert(runs[k].key(i), Seen { rep: runs[k].states[i].id.to_string(), checks });
        }
        Ok(())
    }

    /// None when the run is stopping.
    fn check_representative(&self, ep: &EpochRun, i: usize) -> Result<Option<Vec<CheckOutcome>>, ExploreError> {
        let s = &ep.states[i];
        let id = s.id.to_string();
        if self.stop.now() {
            return Ok(None);
        }
        if std::env::var_os(PANIC_AT).is_some_and(|v| v == "explore-check") {
            panic!("{PANIC_AT}=explore-check: a panic while checking state {id}");
        }
        let Some(c) = self.check_unique(ep.hashes[i], ep.marks_of(s), &id, &|| ep.pieces(s))? else {
            return Ok(None);
        };
        self.record(&checked_record(s, ep.hashes[i], &c))?;
        Ok(Some(c.checks))
    }

    /// A duplicate repeats its representative's checks and names it.
    fn record_duplicates(&self, ep: &EpochRun, dups: &[usize]) -> Result<(), ExploreError> {
        for &i in dups {
            let s = &ep.states[i];
            let id = s.id.to_string();
            if self.done.contains_key(&id) {
                self.progress.done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The representative may be unchecked if the run is stopping.
            if let Some(rep) = self.seen.get(&ep.key(i)) {
                self.record(&Record::new(s, ep.hashes[i].to_string(), rep.checks.clone(), Some(rep.rep.clone())))?;
            }
        }
        Ok(())
    }

    /// The minimal state of each violating state of the epoch (minimize.rs).
    fn minimize(&mut self, ep: &EpochRun) -> Result<(), ExploreError> {
        let checks: Vec<Option<Vec<CheckOutcome>>> =
            (0..ep.states.len()).map(|i| self.seen.get(&ep.key(i)).map(|x| x.checks.clone())).collect();
        let this = &*self;
        let found = self.pool.install(|| minimize::epoch(ep.states, &checks, &|cs| this.probe(ep, cs)))?;
        self.minimal_of.extend(found);
        Ok(())
    }

    /// The checks of any state of the epoch, for minimization: known ones looked up,
    /// others checked and kept apart as probes. None (no checks) once the run stops.
    fn probe(&self, ep: &EpochRun, cs: &CrashState) -> Result<Vec<CheckOutcome>, ExploreError> {
        let h = ep.fp.hash(&self.reader, self.rig().durable(), &ep.ed.epoch, cs)?;
        let key = (h, cs.marks_before);
        if let Some(x) = self.seen.get(&key) {
            return Ok(x.checks.clone());
        }
        if let Some(r) = self.probes.lock().expect("probes").get(&key) {
            return Ok(r.checks.clone());
        }
        if self.stop.now() {
            return Ok(Vec::new());
        }
        let id = cs.id.to_string();
        let Some(c) = self.check_unique(h, ep.marks_of(cs), &id, &|| ep.pieces(cs))? else {
            return Ok(Vec::new());
        };
        self.probes.lock().expect("probes").insert(key, checked_record(cs, h, &c));
        Ok(c.checks)
    }

    /// The epoch's media-fault states (media.rs), each checked: none is deduplicated.
    fn check_media_faults(&mut self, ep: &EpochRun) -> Result<(), ExploreError> {
        let mut faulty = media::fault_states(ep.ed, self.meta.image_size, self.rig().serves_latent_errors());
        if let Some(part) = &mut self.partition {
            faulty.retain(|_| part.take(1));
        }
        for f in &faulty {
            self.confirm(&f.state.id);
        }
        self.progress.total.fetch_add(faulty.len() as u64, Ordering::Relaxed);
        self.generated += faulty.len() as u64;
        self.media_states += faulty.len() as u64;
        let this = &*self;
        self.pool.install(|| faulty.par_iter().try_for_each(|f| this.check_media_fault(ep, f)))
    }

    fn check_media_fault(&self, ep: &EpochRun, f: &FaultState) -> Result<(), ExploreError> {
        let id = f.state.id.to_string();
        if self.stop.now() || self.done.contains_key(&id) {
            return Ok(());
        }
        let overlay_start = Instant::now();
        let mut pieces = ep.pieces(&f.base);
        pieces.extend(f.extra.iter().cloned());
        let job = Job { pieces, bad: f.bad, overlay_start, id: &id, marks: ep.marks_of(&f.state) };
        let Some(c) = self.check_state(job)? else { return Ok(()) };
        // Not deduplicated: the key is the id's hash, not the image's.
        self.record(&checked_record(&f.state, ImageHash::sector(u64::MAX, id.as_bytes()), &c))
    }

    /// Check one state on a free worker of the rig; None when the run is stopping on
    /// another check's error (`Rig::check`).
    fn check_state(&self, job: Job<'_>) -> Result<Option<Checked>, ExploreError> {
        let checks = self.rig().check(job, &self.timings)?;
        if checks.is_some() {
            self.checked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(checks)
    }

    /// A unique state's checks: from the cache, or checked (and then cached). None as
    /// for `check_state`.
    fn check_unique(
        &self,
        hash: ImageHash,
        marks: &[String],
        id: &str,
        pieces: &dyn Fn() -> Vec<Piece>,
    ) -> Result<Option<Checked>, ExploreError> {
        if let Some(c) = self.cache.as_ref().and_then(|c| c.get(&hash, marks)) {
            return Ok(Some(Checked::ran(c)));
        }
        let overlay_start = Instant::now(); // building the pieces counts as overlay time
        let job = Job { pieces: pieces(), bad: None, overlay_start, id, marks };
        let Some(checked) = self.check_state(job)? else { return Ok(None) };
        if let Some(c) = &self.cache {
            c.put(&hash, marks, &checked.checks)?;
        }
        Ok(Some(checked))
    }

    /// Count a finished verdict and append it to the partial log.
    fn record(&self, rec: &Record) -> Result<(), ExploreError> {
        match rec.verdict {
            Verdict::Violation => self.progress.violations.fetch_add(1, Ordering::Relaxed),
            Verdict::CheckerFailure => self.progress.checker_failures.fetch_add(1, Ordering::Relaxed),
            Verdict::Consistent => 0,
        };
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        Ok(self.log.lock().expect("log lock").append(rec)?)
    }

    /// The no-crash state's id: a crash after the trace's last event.
    fn no_crash_id(&self) -> StateId {
        StateId { position: self.meta.events, choices: Vec::new(), fault: None }
    }

    /// No crash, page cache dropped (crate docs, step 5): the durable image now holds
    /// every write. Its id is the trace's event count.
    fn check_no_crash(&mut self) -> Result<(), ExploreError> {
        if self.stop.now() || self.partition.as_ref().is_some_and(|p| !p.has_no_crash(self.meta.events)) {
            return Ok(());
        }
        let end = self.no_crash_id();
        self.confirm(&end);
        let end_id = end.to_string();
        let s = CrashState { id: end, epoch: self.last_epoch, marks_before: self.marks.len() as u64 };
        let key = (self.head_hash, s.marks_before);
        let rec = match (self.done.get(&end_id), self.seen.get(&key)) {
            // An earlier run recorded it: generated all the same (as `generate` counts
            // the states an earlier run recorded), unless the last epoch generated it.
            (Some(_), _) => {
                self.generated += u64::from(!self.end_generated);
                None
            }
            (None, Some(rep)) if rep.rep != end_id => {
                Some(Record::new(&s, key.0.to_string(), rep.checks.clone(), Some(rep.rep.clone())))
            }
            (None, Some(_)) => None, // the last epoch already checked it
            (None, None) => match self.check_unique(key.0, &self.marks, &end_id, &Vec::new)? {
                Some(c) => Some(checked_record(&s, key.0, &c)),
                // brink's interrupt stopped a checker: the run stops (the summary says
                // why) and resume checks the state again.
                None => {
                    assert!(self.stop.now(), "only an interrupt leaves the state unchecked here");
                    None
                }
            },
        };
        if let Some(rec) = rec {
            self.generated += 1;
            self.record(&rec)?;
        }
        Ok(())
    }

    /// Make the cache durable and release the rig before writing the results.
    fn tear_down(&mut self) -> Result<(), ExploreError> {
        if let Some(c) = &self.cache {
            c.sync()?;
        }
        if let Some(rig) = self.rig.take() {
            self.processes_left_behind = rig.processes_left_behind();
            self.containment_note = rig.containment_note();
            self.tree_dedup_off = rig.tree_dedup_off();
            rig.tear_down();
        }
        Ok(())
    }

    /// Every record, sorted, with its minimal state; the probes that are some state's
    /// minimal state and not among the records; how many probes were checked.
    fn final_records(&self) -> Result<(Vec<Record>, Vec<Record>, u64), ExploreError> {
        let mut recs = results::collect(&self.cfg.results)?;
        for r in &mut recs {
            r.minimal = self.minimal_of.get(&r.id).map(|m| m.to_string());
        }
        let known: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        let wanted: HashSet<String> = self.minimal_of.values().map(|m| m.to_string()).collect();
        let probes = std::mem::take(&mut *self.probes.lock().expect("probes"));
        let minimize_probes = probes.len() as u64;
        let mut probes: Vec<Record> =
            probes.into_values().filter(|p| wanted.contains(&p.id) && !known.contains(p.id.as_str())).collect();
        probes.sort_by(|a, b| a.id.cmp(&b.id));
        probes.dedup_by(|a, b| a.id == b.id);
        Ok((recs, probes, minimize_probes))
    }

    /// Write the final results (results.rs) and return the summary.
    fn summary(self) -> Result<Summary, ExploreError> {
        let wall = self.stop.started.elapsed().as_secs_f64();
        // Verdict counts come from the records, so a resumed run counts what earlier runs
        // found; each unique (image, marks) has exactly one record without `dup_of`.
        let (recs, probes, minimize_probes) = self.final_records()?;
        let summary = self.summary_of(&recs, wall, minimize_probes);
        let info = results::TraceInfo::of_trace(&self.reader)?;
        results::write_final(&self.cfg.results, &recs, &probes, &info, &summary)?;
        Ok(summary)
    }

    fn summary_of(&self, recs: &[Record], wall: f64, minimize_probes: u64) -> Summary {
        let cfg = self.cfg;
        let checked = self.checked.load(Ordering::Relaxed);
        let count = |f: &dyn Fn(&Record) -> bool| recs.iter().filter(|r| f(r)).count() as u64;
        let checked_all = count(&|r| r.dup_of.is_none());
        let stopped_by = self.stop.why.lock().expect("lock").clone();
        let end_id = self.no_crash_id().to_string();
        Summary {
            trace: cfg.trace.display().to_string(),
            fs: self.meta.fs.clone(),
            mount_opts: self.meta.mount_opts.clone(),
            model: cfg.model.name(),
            strategy: cfg.strategy.name(),
            checkers: cfg.checkers.iter().map(|c| c.name().to_string()).collect(),
            states_total: self.space.states_total,
            states_generated: self.generated,
            states_unique: checked_all,
            states_checked: checked_all,
            violations: count(&|r| r.verdict == Verdict::Violation),
            checker_failures: count(&|r| r.verdict == Verdict::CheckerFailure),
            consistent: count(&|r| r.verdict == Verdict::Consistent),
            wall_s: wall,
            states_per_s: if wall > 0.0 { checked as f64 / wall } else { 0.0 },
            jobs: cfg.jobs,
            complete: stopped_by.is_none(),
            stopped_by,
            fraction_covered: matches!(cfg.strategy, Strategy::Sample { .. })
                .then(|| self.generated as f64 / self.space.states_total.as_f64().max(1.0)),
            sample: self.sampler.as_ref().map(Sampler::coverage),
            tree_dups: count(&|r| r.tree_dup_of.is_some()),
            time_ms: self.time_summary(wall, checked),
            media_fault_states: self.media_states,
            minimize_probes,
            cache_hits: self.cache.as_ref().map_or(0, |c| c.hits.load(Ordering::Relaxed)),
            cache_stored: self.cache.as_ref().map_or(0, |c| c.stored.load(Ordering::Relaxed)),
            no_crash: recs.iter().find(|r| r.id == end_id).map(NoCrash::of),
            processes_left_behind: self.processes_left_behind,
            containment_note: self.containment_note.clone(),
            tree_dedup_off: self.tree_dedup_off.clone(),
            level: results::Level::Block,
            shard: cfg.shard,
            merged: None,
        }
    }

    fn time_summary(&self, wall: f64, checked: u64) -> TimeSummary {
        let t = &self.timings;
        TimeSummary {
            hash: Timings::ms(&t.hash_us),
            overlay: Timings::ms(&t.overlay_us),
            mount: Timings::ms(&t.mount_us),
            checkers: Timings::ms(&t.checkers_us),
            unmount: Timings::ms(&t.unmount_us),
            per_state: if checked > 0 { self.cfg.jobs as f64 * wall * 1000.0 / checked as f64 } else { 0.0 },
        }
    }
}
