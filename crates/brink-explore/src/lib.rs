//! The crash-state explorer: for every crash state a persistence model allows (or a
//! bounded or sampled part of them), build the disk, let the real kernel recover it,
//! and ask the checkers.
//!
//! How a run goes:
//! 1. A counting pass over the event kinds gives the exact size of the space (refused
//!    above `max_states` for exhaustive runs).
//! 2. The trace is streamed epoch by epoch. A *durable image* (a private sparse copy of
//!    the base image) holds everything flushed before the current epoch; after the
//!    epoch's states are checked, its writes are applied to it.
//! 3. For each state of the epoch, its content over the epoch's footprint is computed
//!    and hashed additively (`adhash`); states with the same image and the same marks
//!    are checked once. Hashing runs in parallel.
//! 4. Unique states are checked in parallel (rayon), one per *slot*: a FUSE file whose
//!    reads are the durable image plus a private overlay (`slots`), under a loop device
//!    attached once for the whole run. The kernel mounts it (journal replay), checkers
//!    run, it is unmounted (`worker`).
//! 5. After the last epoch, one more state, whatever the strategy: *no crash, page
//!    cache dropped*. The disk as the recording left it (every write that reached it,
//!    none of the failed ones) held to every mark: what another process reads once the
//!    cached pages are gone. Its id is the trace's event count (a crash after the last
//!    event). An application that acknowledged data a failed fsync threw away fails
//!    here without any crash.
//! 6. Verdicts are appended to `states.partial.jsonl` as they finish; the end writes
//!    `states.jsonl` sorted by state id and `summary.json` (`results`).
//!
//! Invariants: the explorer knows no checker by name except the built-in `fsck`; it
//! never copies an image per state; memory follows the epoch being explored (its
//! payloads and footprint) and the number of unique states (one small entry each).

mod adhash;
pub mod cache;
pub mod defaults;
mod footprint;
mod minimize;
mod plan;
pub mod replay;
pub mod results;
mod slots;
mod worker;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brink_blockdev::{FsKind, LoopDevice, MountOptions, unmount_path};
use brink_check::{CheckOutcome, Verdict};
use brink_pmodel::{
    Count, CrashState, MediaFault, Model, Sampler, StateId, StateIter, Strategy, WriteChoice, count_point,
};
use brink_trace::{TraceReader, image};
use rayon::prelude::*;
use serde::Serialize;

pub use adhash::ImageHash;
pub use results::{StateRecord, TornRecord};
pub use worker::{CheckerSpec, Recovery};

pub use footprint::hash_image;
use footprint::{Footprint, Src};
use results::StateRecord as Record;
use slots::{SlotFs, Slots};
use worker::{CheckCtx, Timings, Worker};

#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error(transparent)]
    Trace(#[from] brink_trace::TraceError),
    #[error(transparent)]
    Blockdev(#[from] brink_blockdev::BlockdevError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Corrupt(String),
    #[error(
        "the {strategy} space has {count} states, more than --max-states {max}: raise --max-states, or use --strategy prefix, omit-one or sample"
    )]
    TooManyStates { strategy: String, count: Count, max: u128 },
    #[error("{0}")]
    Setup(String),
}

impl ExploreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ExploreError::Io { path: path.to_path_buf(), source }
    }
}

#[derive(Debug, Clone)]
pub struct ExploreConfig {
    pub trace: PathBuf,
    pub results: PathBuf,
    pub model: Model,
    pub strategy: Strategy,
    /// Exhaustive runs larger than this are refused.
    pub max_states: u128,
    pub checkers: Vec<CheckerSpec>,
    pub jobs: usize,
    pub checker_timeout: Duration,
    pub time_budget: Option<Duration>,
    pub resume: bool,
    pub recovery: Recovery,
    /// Also check the media-fault states (brink-pmodel's docs): one fault per state.
    pub media_faults: bool,
    /// A verdict cache folder shared between runs (`cache.rs`); none: every state is checked.
    pub cache: Option<PathBuf>,
    /// Set to a signal number by the binary's handlers: stop, keep what is done.
    pub interrupt: Arc<AtomicUsize>,
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub violations: AtomicU64,
    pub checker_failures: AtomicU64,
}

/// `summary.json`. Fields may be added.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub trace: String,
    pub fs: String,
    pub mount_opts: String,
    pub model: String,
    pub strategy: String,
    pub checkers: Vec<String>,
    /// Size of the space the strategy visits (for `sample`: the legal space sampled).
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
    /// False when a time budget or an interrupt stopped the run; `--resume` continues.
    pub complete: bool,
    pub stopped_by: Option<String>,
    /// For `sample`: the fraction of the legal space the unique samples cover.
    pub fraction_covered: Option<f64>,
    /// Time per step summed over states and workers, in ms (this run only).
    pub time_ms: TimeSummary,
    /// The verdict on the state without a crash (crate docs, step 5); `None` when the
    /// run stopped before it.
    pub no_crash: Option<NoCrash>,
    /// Media-fault states checked (`--media-faults`), included in the counts above.
    pub media_fault_states: u64,
    /// States checked only to minimize failing ones (not counted in `states_checked`).
    #[serde(default)]
    pub minimize_probes: u64,
    /// Unique states whose verdict came from the verdict cache (`--cache`), and verdicts
    /// this run added to it.
    #[serde(default)]
    pub cache_hits: u64,
    #[serde(default)]
    pub cache_stored: u64,
}

/// The verdict on the disk as the recording left it, held to every mark.
#[derive(Debug, Clone, Serialize)]
pub struct NoCrash {
    pub id: String,
    pub verdict: Verdict,
    /// The first violation's (or checker failure's) message.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeSummary {
    pub hash: f64,
    pub overlay: f64,
    pub mount: f64,
    pub checkers: f64,
    pub unmount: f64,
    /// Worker time per checked state: `jobs × wall / checked`.
    pub per_state: f64,
}

/// Counts of the space, without checking anything.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceCount {
    pub model: String,
    pub strategy: String,
    pub epochs: u64,
    pub crash_points: u64,
    pub states_total: Count,
}

/// Count the states `strategy` visits (exact; saturates at 2^128 − 1).
pub fn count(trace: &Path, model: Model, strategy: Strategy) -> Result<SpaceCount, ExploreError> {
    let reader = TraceReader::open(trace)?;
    let mut c = SpaceCount {
        model: model.name(),
        strategy: strategy.name(),
        epochs: 0,
        crash_points: 0,
        states_total: Count::ZERO,
    };
    let mut marks = Vec::new();
    plan::for_each_epoch(&reader, &mut marks, |ed, _| {
        c.epochs += 1;
        for p in &ed.epoch.points {
            c.crash_points += 1;
            c.states_total = c.states_total.add(count_point(model, strategy, &ed.epoch, p));
        }
        Ok(true)
    })?;
    Ok(c)
}

/// The FUSE mount of the slots, unmounted on drop.
struct SlotMount {
    session: Option<fuser::BackgroundSession>,
    dir: PathBuf,
    _watchdog: Option<brink_blockdev::fusectl::Watchdog>,
}

impl Drop for SlotMount {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if unmount_path(&self.dir).is_ok() {
                let _ = s.join();
            } else {
                let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
                std::mem::forget(s);
            }
        }
    }
}

/// The work area under RESULTS/.work, removed on drop (after the guards inside it).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A run killed outright (SIGKILL, power loss) leaves its mounts in the work area:
/// unmount them (deepest first, lazily if the FUSE daemon is gone) and remove the area.
/// The loop devices were attached with AUTOCLEAR and detach once unmounted.
fn cleanup_stale(work: &Path) {
    let prefix = work.display().to_string();
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        let mut targets: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|t| t.replace("\\040", " "))
            .filter(|t| t.starts_with(&prefix))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        // A FUSE server that died leaves requests that can never be answered: fail them.
        for t in &targets {
            brink_blockdev::fusectl::abort(Path::new(t));
        }
        for t in targets {
            if unmount_path(Path::new(&t)).is_err() {
                let _ = nix::mount::umount2(Path::new(&t), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(work);
}

fn fs_of(meta_fs: &str) -> Result<FsKind, ExploreError> {
    meta_fs.parse().map_err(|_| {
        ExploreError::Unsupported(format!(
            "the trace's file system is '{meta_fs}': brink explores ext4, xfs and btrfs (for an import, pass --fs)"
        ))
    })
}

/// Mount options for recovering states of a trace: the recorded ones, plus `nouuid`
/// for XFS (several slots hold file systems with the same UUID at once).
pub fn state_mount_options(fs: FsKind, recorded: &str) -> Result<MountOptions, ExploreError> {
    let mut text = recorded.to_string();
    if fs == FsKind::Xfs && !text.split(',').any(|o| o == "nouuid") {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str("nouuid");
    }
    text.parse()
        .map_err(|e: brink_blockdev::BlockdevError| ExploreError::Usage(format!("bad mount options in the trace: {e}")))
}

struct Seen {
    rep: String,
    checks: Vec<CheckOutcome>,
}

/// Explore `cfg.trace`. See the crate docs for the sequence.
pub fn explore(cfg: &ExploreConfig, progress: &Progress) -> Result<Summary, ExploreError> {
    let started = Instant::now();
    if cfg.recovery == Recovery::Kernel && !nix::unistd::geteuid().is_root() {
        return Err(ExploreError::Usage(
            "kernel recovery needs root (it mounts every crash state): run as root, or use --recovery userspace (ext4)"
                .into(),
        ));
    }
    assert!(cfg.jobs >= 1);
    let reader = Arc::new(TraceReader::open(&cfg.trace)?);
    let meta = reader.meta().clone();
    let fs = fs_of(&meta.fs)?;
    if cfg.recovery == Recovery::Userspace && fs != FsKind::Ext4 {
        return Err(ExploreError::Unsupported(format!(
            "userspace recovery uses e2fsprogs and covers ext4 only, not {fs}"
        )));
    }
    let space = count(&cfg.trace, cfg.model, cfg.strategy)?;
    if cfg.strategy == Strategy::Exhaustive && space.states_total.0 > cfg.max_states {
        return Err(ExploreError::TooManyStates {
            strategy: cfg.strategy.name(),
            count: space.states_total,
            max: cfg.max_states,
        });
    }
    let target = match cfg.strategy {
        Strategy::Sample { samples, .. } => samples.min(u64::try_from(space.states_total.0).unwrap_or(u64::MAX)),
        _ => u64::try_from(space.states_total.0).unwrap_or(u64::MAX),
    };
    progress.total.store(target.saturating_add(1), Ordering::Relaxed); // + the no-crash state

    let checker_names: Vec<String> = cfg.checkers.iter().map(|c| c.name().to_string()).collect();
    let run = serde_json::json!({
        "trace": cfg.trace.display().to_string(),
        "trace_base_digest": meta.base_image_digest,
        "trace_events": meta.events,
        "model": cfg.model.name(),
        "strategy": cfg.strategy.name(),
        "checkers": checker_names,
        "media_faults": cfg.media_faults,
    });
    let (mut log, done) = results::open(&cfg.results, &run, cfg.resume)?;
    let done_ids: HashMap<String, Record> = done.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut seen: HashMap<(ImageHash, u64), Seen> = HashMap::new();
    for r in done_ids.values().filter(|r| r.dup_of.is_none()) {
        seen.insert((parse_hash(&r.image)?, r.marks), Seen { rep: r.id.clone(), checks: r.checks.clone() });
    }

    // The work area: durable image, slot mount, mount points, scratch directories.
    // Absolute: checkers run with the mount as their working directory.
    let results_abs = std::path::absolute(&cfg.results).map_err(|e| ExploreError::io(&cfg.results, e))?;
    let work = WorkDir(results_abs.join(".work"));
    cleanup_stale(&work.0);
    std::fs::create_dir_all(&work.0).map_err(|e| ExploreError::io(&work.0, e))?;
    let durable_path = work.0.join("durable.img");
    image::copy_sparse(&reader.base_image_path(), &durable_path)?;
    let durable = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&durable_path)
        .map_err(|e| ExploreError::io(&durable_path, e))?;
    let mut durable_hash = hash_image(&durable_path).map_err(|e| ExploreError::io(&durable_path, e))?;
    let mut workers = Vec::new();
    let (slots, slot_mount) = if cfg.recovery == Recovery::Kernel {
        let slots = Slots::new(
            File::open(&durable_path).map_err(|e| ExploreError::io(&durable_path, e))?,
            meta.image_size,
            reader.clone(),
            cfg.jobs,
        );
        let slot_dir = work.0.join("slots");
        std::fs::create_dir(&slot_dir).map_err(|e| ExploreError::io(&slot_dir, e))?;
        let mut fuse_cfg = fuser::Config::default();
        fuse_cfg.mount_options = vec![fuser::MountOption::FSName("brink-slots".into()), fuser::MountOption::NoExec];
        fuse_cfg.n_threads = Some(cfg.jobs);
        let session = fuser::spawn_mount(SlotFs(slots.clone()), &slot_dir, &fuse_cfg).map_err(|e| {
            ExploreError::Setup(format!("cannot mount the state slots (FUSE) on {}: {e}", slot_dir.display()))
        })?;
        let slot_mount = SlotMount {
            session: Some(session),
            _watchdog: brink_blockdev::fusectl::watchdog(&slot_dir, &work.0, false),
            dir: slot_dir.clone(),
        };
        for i in 0..cfg.jobs {
            let path = slot_dir.join(Slots::file_name(i));
            let f = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| ExploreError::io(&path, e))?;
            let dev = LoopDevice::attach(&f, &path, false)?;
            let (mnt, scratch) = (work.0.join(format!("mnt{i}")), work.0.join(format!("scratch{i}")));
            for d in [&mnt, &scratch] {
                std::fs::create_dir(d).map_err(|e| ExploreError::io(d, e))?;
            }
            workers.push(Worker { slot: i, dev: Some(dev), mnt, scratch });
        }
        (Some(slots), Some(slot_mount))
    } else {
        for i in 0..cfg.jobs {
            let scratch = work.0.join(format!("scratch{i}"));
            std::fs::create_dir(&scratch).map_err(|e| ExploreError::io(&scratch, e))?;
            workers.push(Worker { slot: i, dev: None, mnt: scratch.join("root"), scratch });
        }
        (None, None)
    };
    let pool_workers = Mutex::new(workers);
    let ctx = CheckCtx {
        fs,
        mount_opts: state_mount_options(fs, &meta.mount_opts)?,
        checkers: cfg.checkers.clone(),
        timeout: cfg.checker_timeout,
        trace: std::path::absolute(&cfg.trace).unwrap_or_else(|_| cfg.trace.clone()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.jobs)
        .build()
        .map_err(|e| ExploreError::Setup(e.to_string()))?;
    let stop = AtomicBool::new(false);
    let stopped_by: Mutex<Option<String>> = Mutex::new(None);
    let should_stop = || {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let why = match cfg.interrupt.load(Ordering::Relaxed) {
            0 => cfg.time_budget.filter(|b| started.elapsed() > *b).map(|b| format!("time budget of {}s", b.as_secs())),
            s => Some(format!("signal {s}")),
        };
        if let Some(why) = why {
            stop.store(true, Ordering::Relaxed);
            stopped_by.lock().expect("lock").get_or_insert(why);
            return true;
        }
        false
    };

    let mut sampler = match cfg.strategy {
        Strategy::Sample { samples, seed } => Some(Sampler::new(space.states_total, samples, seed)),
        _ => None,
    };
    let mut generated = 0u64;
    let checked = AtomicU64::new(0);
    let timings = Timings::default();
    let log_lock = Mutex::new(&mut log);
    let record = |rec: &Record| -> Result<(), ExploreError> {
        match rec.verdict {
            Verdict::Violation => progress.violations.fetch_add(1, Ordering::Relaxed),
            Verdict::CheckerFailure => progress.checker_failures.fetch_add(1, Ordering::Relaxed),
            Verdict::Consistent => 0,
        };
        progress.done.fetch_add(1, Ordering::Relaxed);
        log_lock.lock().expect("log lock").append(rec)
    };
    // Check one state, the durable image with `pieces` over it, on a free worker.
    let check_state =
        |pieces: Vec<footprint::Piece>, bad: Option<(u64, u64)>, overlay_start: Instant, id: &str, marks: &[String]| {
            let w = pool_workers.lock().expect("workers").pop().expect("a free worker per thread");
            let checks = match &slots {
                Some(slots) => {
                    slots.set(w.slot, pieces, bad);
                    Timings::add(&timings.overlay_us, overlay_start);
                    let checks = w.check(&ctx, id, marks, &timings);
                    slots.clear(w.slot);
                    checks
                }
                None => {
                    assert!(bad.is_none(), "latent sector errors need the slots");
                    let build = |img: &Path| build_image(&durable_path, &reader, &pieces, img);
                    w.check_userspace(&ctx, build, id, marks, &timings)
                }
            };
            pool_workers.lock().expect("workers").push(w);
            checked.fetch_add(1, Ordering::Relaxed);
            checks
        };
    let cache = match &cfg.cache {
        Some(dir) => Some(cache::VerdictCache::open(
            dir,
            &cfg.checkers,
            &format!("{:?} {fs} {}", cfg.recovery, meta.mount_opts),
        )?),
        None => None,
    };
    // A unique state's checks: from the cache, or checked (and then cached).
    let check_unique = |hash: ImageHash,
                        marks: &[String],
                        id: &str,
                        pieces: &dyn Fn() -> Vec<footprint::Piece>|
     -> Result<Vec<CheckOutcome>, ExploreError> {
        if let Some(c) = cache.as_ref().and_then(|c| c.get(&hash, marks)) {
            return Ok(c);
        }
        let start = Instant::now();
        let checks = check_state(pieces(), None, start, id, marks);
        if let Some(c) = &cache {
            c.put(&hash, marks, &checks)?;
        }
        Ok(checks)
    };
    let mut media_states = 0u64;
    // Minimization (minimize.rs): each violating state's minimal state, and the states
    // checked only to find them.
    let mut minimal_of: HashMap<String, StateId> = HashMap::new();
    let probes: Mutex<HashMap<(ImageHash, u64), Record>> = Mutex::new(HashMap::new());
    let mut marks = Vec::new();
    let mut last_epoch = 0;
    plan::for_each_epoch(&reader, &mut marks, |ed, marks| {
        last_epoch = ed.epoch.number;
        if should_stop() {
            return Ok(false);
        }
        let fp = Footprint::new(&reader, &ed.writes, &durable, durable_hash)?;
        let mut states: Vec<CrashState> = Vec::new();
        for p in &ed.epoch.points {
            let seeds = match &mut sampler {
                Some(s) => s.take(count_point(cfg.model, cfg.strategy, &ed.epoch, p)),
                None => Vec::new(),
            };
            states.extend(StateIter::new(cfg.model, cfg.strategy, &ed.epoch, p, &seeds));
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        states.dedup_by(|a, b| a.id == b.id); // repeated samples
        generated += states.len() as u64;
        let hash_start = Instant::now();
        let hashes: Vec<ImageHash> = pool.install(|| {
            states.par_iter().map(|s| fp.hash(&reader, &durable, &ed.epoch, s)).collect::<Result<Vec<_>, _>>()
        })?;
        Timings::add(&timings.hash_us, hash_start);

        // Representatives (first of each key, in id order) and duplicates. A state an
        // earlier run already checked has its key in `seen`, so it lands among the
        // duplicates and is skipped there.
        let mut reps: Vec<usize> = Vec::new();
        let mut dups: Vec<(usize, (ImageHash, u64))> = Vec::new();
        let mut epoch_keys: HashSet<(ImageHash, u64)> = HashSet::new();
        for (i, s) in states.iter().enumerate() {
            let key = (hashes[i], s.marks_before);
            if seen.contains_key(&key) || !epoch_keys.insert(key) {
                dups.push((i, key));
            } else {
                reps.push(i);
            }
        }
        let results: Vec<Option<(usize, Vec<CheckOutcome>)>> = pool.install(|| {
            reps.par_iter()
                .map(|&i| -> Result<Option<(usize, Vec<CheckOutcome>)>, ExploreError> {
                    let s = &states[i];
                    let id = s.id.to_string();
                    if should_stop() {
                        return Ok(None);
                    }
                    let checks =
                        check_unique(hashes[i], &marks[..s.marks_before as usize], &id, &|| fp.pieces(&ed.epoch, s))?;
                    let rec = Record::new(s, hashes[i].to_string(), checks.clone(), None);
                    record(&rec)?;
                    Ok(Some((i, checks)))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        for (i, checks) in results.into_iter().flatten() {
            seen.insert((hashes[i], states[i].marks_before), Seen { rep: states[i].id.to_string(), checks });
        }
        for (i, key) in dups {
            let s = &states[i];
            let id = s.id.to_string();
            if done_ids.contains_key(&id) {
                progress.done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The representative may be unchecked if the run is stopping.
            if let Some(rep) = seen.get(&key) {
                record(&Record::new(s, hashes[i].to_string(), rep.checks.clone(), Some(rep.rep.clone())))?;
            }
        }
        let checks: Vec<Option<Vec<CheckOutcome>>> = states
            .iter()
            .zip(&hashes)
            .map(|(s, h)| seen.get(&(*h, s.marks_before)).map(|x| x.checks.clone()))
            .collect();
        let probe = |cs: &CrashState| -> Result<Vec<CheckOutcome>, ExploreError> {
            let h = fp.hash(&reader, &durable, &ed.epoch, cs)?;
            let key = (h, cs.marks_before);
            if let Some(x) = seen.get(&key) {
                return Ok(x.checks.clone());
            }
            if let Some(r) = probes.lock().expect("probes").get(&key) {
                return Ok(r.checks.clone());
            }
            if should_stop() {
                return Ok(Vec::new());
            }
            let id = cs.id.to_string();
            let c = check_unique(h, &marks[..cs.marks_before as usize], &id, &|| fp.pieces(&ed.epoch, cs))?;
            probes.lock().expect("probes").insert(key, Record::new(cs, h.to_string(), c.clone(), None));
            Ok(c)
        };
        minimal_of.extend(pool.install(|| minimize::epoch(&states, &checks, &probe))?);
        if cfg.media_faults {
            let faulty = media_fault_states(&ed, meta.image_size, slots.is_some());
            progress.total.fetch_add(faulty.len() as u64, Ordering::Relaxed);
            generated += faulty.len() as u64;
            media_states += faulty.len() as u64;
            pool.install(|| {
                faulty.par_iter().try_for_each(|f| -> Result<(), ExploreError> {
                    let id = f.state.id.to_string();
                    if should_stop() || done_ids.contains_key(&id) {
                        return Ok(());
                    }
                    let overlay_start = Instant::now();
                    let mut pieces = fp.pieces(&ed.epoch, &f.base);
                    pieces.extend(f.extra.iter().cloned());
                    let checks =
                        check_state(pieces, f.bad, overlay_start, &id, &marks[..f.state.marks_before as usize]);
                    // Not deduplicated: the key is the id's hash, not the image's.
                    let key = ImageHash::sector(u64::MAX, id.as_bytes());
                    record(&Record::new(&f.state, key.to_string(), checks, None))
                })
            })?;
        }
        if should_stop() {
            return Ok(false);
        }
        // Everything the epoch wrote is durable from the next epoch on.
        durable_hash = fp.hash_all(&reader, &durable)?;
        fp.apply_all(&reader, &durable)?;
        Ok(true)
    })?;
    // No crash, page cache dropped: the durable image now holds every write.
    let end = StateId { position: meta.events, choices: Vec::new(), fault: None };
    let end_id = end.to_string();
    if !should_stop() {
        let s = CrashState { id: end, epoch: last_epoch, marks_before: marks.len() as u64 };
        let key = (durable_hash, s.marks_before);
        let rec = match (done_ids.get(&end_id), seen.get(&key)) {
            (Some(_), _) => None,
            (None, Some(rep)) if rep.rep != end_id => {
                Some(Record::new(&s, key.0.to_string(), rep.checks.clone(), Some(rep.rep.clone())))
            }
            (None, Some(_)) => None, // the last epoch already checked it
            (None, None) => {
                Some(Record::new(&s, key.0.to_string(), check_unique(key.0, &marks, &end_id, &Vec::new)?, None))
            }
        };
        if let Some(rec) = rec {
            generated += 1;
            record(&rec)?;
        }
    }
    drop(log_lock);
    if let Some(c) = &cache {
        c.sync()?;
    }

    // Release the kernel resources before writing the results.
    drop(pool_workers);
    drop(slot_mount);
    drop(slots);
    drop(durable);
    drop(work);

    let stopped_by = stopped_by.into_inner().expect("lock");
    let wall = started.elapsed().as_secs_f64();
    let checked = checked.load(Ordering::Relaxed);
    // Verdict counts come from the records, so a resumed run counts what earlier runs
    // found; each unique (image, marks) has exactly one record without `dup_of`.
    let mut recs = results::collect(&cfg.results)?;
    for r in &mut recs {
        r.minimal = minimal_of.get(&r.id).map(|m| m.to_string());
    }
    let known: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    let wanted: HashSet<String> = minimal_of.values().map(|m| m.to_string()).collect();
    let probes: HashMap<_, Record> = probes.into_inner().expect("probes");
    let minimize_probes = probes.len() as u64;
    let mut probes: Vec<Record> =
        probes.into_values().filter(|p| wanted.contains(&p.id) && !known.contains(p.id.as_str())).collect();
    probes.sort_by(|a, b| a.id.cmp(&b.id));
    probes.dedup_by(|a, b| a.id == b.id);
    let count = |f: &dyn Fn(&Record) -> bool| recs.iter().filter(|r| f(r)).count() as u64;
    let checked_all = count(&|r| r.dup_of.is_none());
    let summary = Summary {
        trace: cfg.trace.display().to_string(),
        fs: meta.fs.clone(),
        mount_opts: meta.mount_opts.clone(),
        model: cfg.model.name(),
        strategy: cfg.strategy.name(),
        checkers: cfg.checkers.iter().map(|c| c.name().to_string()).collect(),
        states_total: space.states_total,
        states_generated: generated,
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
            .then(|| generated as f64 / space.states_total.as_f64().max(1.0)),
        time_ms: TimeSummary {
            hash: Timings::ms(&timings.hash_us),
            overlay: Timings::ms(&timings.overlay_us),
            mount: Timings::ms(&timings.mount_us),
            checkers: Timings::ms(&timings.checkers_us),
            unmount: Timings::ms(&timings.unmount_us),
            per_state: if checked > 0 { cfg.jobs as f64 * wall * 1000.0 / checked as f64 } else { 0.0 },
        },
        media_fault_states: media_states,
        minimize_probes,
        cache_hits: cache.as_ref().map_or(0, |c| c.hits.load(Ordering::Relaxed)),
        cache_stored: cache.as_ref().map_or(0, |c| c.stored.load(Ordering::Relaxed)),
        no_crash: recs.iter().find(|r| r.id == end_id).map(|r| NoCrash {
            id: r.id.clone(),
            verdict: r.verdict.clone(),
            message: r
                .checks
                .iter()
                .find(|c| c.verdict == r.verdict && r.verdict != Verdict::Consistent)
                .map(|c| c.message.clone()),
        }),
    };
    let info = results::TraceInfo::of_trace(&reader)?;
    results::write_final(&cfg.results, &recs, &probes, &info, &summary)?;
    Ok(summary)
}

/// A media-fault state: its base state (what the pieces come from), the pieces laid
/// over them, and the byte range that fails to read.
struct FaultState {
    state: CrashState,
    base: CrashState,
    extra: Vec<footprint::Piece>,
    bad: Option<(u64, u64)>,
}

/// At each crash point of the epoch, the state with every volatile write persisted,
/// once per fault kind per volatile write that carries data (brink-pmodel's docs).
/// Latent sector errors need the FUSE slots (`with_latent`).
fn media_fault_states(ed: &plan::EpochData, image_size: u64, with_latent: bool) -> Vec<FaultState> {
    const S: u64 = brink_trace::SECTOR_BYTES;
    let mut out = Vec::new();
    for p in &ed.epoch.points {
        let at = |fault: MediaFault, choices: Vec<(u64, WriteChoice)>| {
            let state = CrashState {
                id: StateId { position: p.position, choices: Vec::new(), fault: Some(fault) },
                epoch: ed.epoch.number,
                marks_before: p.marks_before,
            };
            let base = CrashState { id: StateId { position: p.position, choices, fault: None }, ..state.clone() };
            (state, base)
        };
        for (k, w) in ed.epoch.writes[..p.writes_before].iter().enumerate().filter(|(_, w)| !w.fua) {
            let data = &ed.writes[k];
            let Some(src) = &data.src else { continue }; // a discard carries no data
            let sectors = u64::from(w.sectors);
            if sectors >= 2 {
                let fault = MediaFault::Garbage(w.index);
                let half = u64::from(MediaFault::garbage_from(w.sectors));
                let (state, base) = at(fault, vec![(w.index, fault.own_sectors(w.sectors).expect("a tear"))]);
                let garbage = footprint::Piece {
                    offset: data.offset + half * S,
                    len: (sectors - half) * S,
                    src: Src::Garbage { seed: w.index, offset: 0 },
                };
                out.push(FaultState { state, base, extra: vec![garbage], bad: None });
            }
            if with_latent {
                let (state, base) = at(MediaFault::Latent(w.index), Vec::new());
                out.push(FaultState { state, base, extra: Vec::new(), bad: Some((data.offset, data.offset + S)) });
            }
            if let Some(target) = MediaFault::misdirected_to(data.offset, data.len, image_size) {
                let (state, base) = at(MediaFault::Misdirected(w.index), vec![(w.index, WriteChoice::Omitted)]);
                let moved = footprint::Piece { offset: target, len: data.len, src: Src::Write(src.clone(), 0) };
                out.push(FaultState { state, base, extra: vec![moved], bad: None });
            }
        }
    }
    out
}

/// A state's image as a file: the durable image with its pieces written over it.
fn build_image(durable: &Path, reader: &TraceReader, pieces: &[footprint::Piece], out: &Path) -> Result<(), String> {
    image::copy_sparse(durable, out).map_err(|e| e.to_string())?;
    let f = OpenOptions::new().write(true).open(out).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for p in pieces {
        let mut pos = 0;
        while pos < p.len {
            let n = (p.len - pos).min(1 << 20);
            buf.resize(n as usize, 0);
            p.src.advanced(pos).read(reader, &mut buf).map_err(|e| e.to_string())?;
            std::os::unix::fs::FileExt::write_all_at(&f, &buf, p.offset + pos).map_err(|e| e.to_string())?;
            pos += n;
        }
    }
    Ok(())
}

fn parse_hash(hex: &str) -> Result<ImageHash, ExploreError> {
    let bad = || ExploreError::Corrupt(format!("bad image hash '{hex}' in the partial results"));
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut words = [0u64; 4];
    for (i, w) in words.iter_mut().enumerate() {
        let at = (3 - i) * 16;
        *w = u64::from_str_radix(&hex[at..at + 16], 16).map_err(|_| bad())?;
    }
    Ok(ImageHash(words))
}
