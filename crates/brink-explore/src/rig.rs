//! The rig: what a run sets up on the machine to check states, and takes down before
//! it writes its results.
//!
//! Everything lives in a work area, `RESULTS/.work`: the *durable image* (a private
//! sparse copy of the trace's base image, advanced epoch by epoch once the epoch's
//! checks are done: states are served over it), the *head image* (another copy, advanced
//! as soon as an epoch's states are hashed, so that later epochs can be hashed and
//! checked while the durable image lags behind: `engine.rs`), and one worker per job
//! with a scratch directory. With kernel recovery the rig also makes the slots that
//! serve states to the kernel and attaches one loop device per slot, once for the whole
//! run, with a mount point per worker: memory slots (`memslots.rs`) where they can serve
//! the run (`mem_slots` says when), else the FUSE slots (`slots.rs`) mounted on
//! `.work/slots`; with userspace recovery each worker builds its state as an image file
//! instead (`state_image.rs`).
//!
//! A slot is never reused once its state's file system outlived the check (a process
//! the checker started holds it, `SlotCheck::stale`): the kernel would hand that file
//! system out again for the next mount of the loop device, and every later state of
//! the slot would be judged from it. The worker moves to a spare slot under a new loop
//! device (`Rig::retire`); after `SLOTS_RETIRED_MAX` of them the run stops with an
//! error. A check that fails with an error (brink's own I/O) loses its worker and
//! breaks the rig: no later check starts, and the error stops the run.
//!
//! Teardown order matters: loop devices first (they hold the slot files open), then
//! the slot mount, then the slots and the durable image, then the work area itself.
//! Dropping a `Rig` releases everything in that order too, so an error mid-run leaves
//! no mount behind. A run killed outright (`kill -9`) is cleaned up by its watchdog
//! (`brink_blockdev::fusectl`), started before anything is mounted: it aborts the slots'
//! FUSE connection, kills the checkers' cgroup, waits for the killed process's threads
//! (one may be inside mount(2)), unmounts until nothing under the work area is mounted,
//! and removes it. It holds the results directory's lock meanwhile, so a resumed run
//! waits for it. Whatever a watchdog could not clean (power loss), the next run on the
//! same results directory removes first (`cleanup_stale`).

use std::fs::{File, OpenOptions};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use brink_blockdev::fusectl::{self, Cleanup, Watchdog};
use brink_blockdev::{FsKind, LoopDevice, unmount_path};
use brink_check::CheckOutcome;
use brink_trace::{TraceReader, image};

use crate::footprint::Piece;
use crate::memslots::{MEM_SLOTS_BYTES_MAX, MemSlots};
use crate::slots::{SlotFs, Slots};
use crate::tree::Trees;
use crate::worker::{CheckCtx, Checked, InProcessCheck, Recovery, Timings, Worker, build_error};
use crate::{ExploreConfig, ExploreError, SlotKind, state_image, state_mount_options};

/// Slots a run may retire (`Rig::retire`) before it stops: each one is a file system a
/// checker's process kept alive, holding a loop device until that process ends.
pub(crate) const SLOTS_RETIRED_MAX: usize = 8;

/// The FUSE mount of the slots, unmounted on drop.
struct SlotMount {
    session: Option<fuser::BackgroundSession>,
    dir: PathBuf,
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
    // Unescaped (a space in a path is `\040` in the mount table) and deepest first.
    let targets = brink_blockdev::mount_points_under(work);
    // A FUSE server that died leaves requests that can never be answered: fail them.
    for t in &targets {
        brink_blockdev::fusectl::abort(t);
    }
    for t in targets {
        if unmount_path(&t).is_err() {
            let _ = nix::mount::umount2(&t, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(work);
}

/// How states reach recovery: served by the FUSE or memory slots (kernel), built as image files
/// for e2fsprogs (userspace), or built as image files for an in-process check (tests).
enum Backend {
    /// Field order is drop order: the mount before the slots it serves.
    Slots {
        _mount: SlotMount,
        slots: Arc<Slots>,
        /// The next slot never used yet, to replace a retired one (`Rig::retire`).
        spare: Mutex<usize>,
    },
    /// Kernel recovery over memory slots (`memslots.rs`).
    Mem(MemSlots),
    Files,
    InProcess(Arc<dyn InProcessCheck>),
}

/// One state to check: the durable image with `pieces` over it, reads of `bad` failing
/// (a latent sector error), held to `marks`; `overlay_start` is when building its
/// overlay began (for the timings).
pub(crate) struct Job<'a> {
    pub pieces: Vec<Piece>,
    pub bad: Option<(u64, u64)>,
    pub overlay_start: Instant,
    pub id: &'a str,
    pub marks: &'a [String],
}

/// The machine side of a run. Field order is drop order (module docs).
pub(crate) struct Rig {
    workers: Mutex<Vec<Worker>>,
    backend: Backend,
    durable: File,
    durable_path: PathBuf,
    head: File,
    work: WorkDir,
    reader: Arc<TraceReader>,
    ctx: CheckCtx,
    /// A check failed with an error (brink's, not the state's): its worker is gone and
    /// the run is stopping, so no other check starts (`check`).
    broken: AtomicBool,
    /// Workers the run started with.
    workers_total: usize,
    /// Cleans up if the process is killed (module docs); stopped last.
    _watchdog: Option<Watchdog>,
}

impl Rig {
    /// Create the work area and the durable image, then the workers (and, for kernel
    /// recovery, the slots and their loop devices).
    pub(crate) fn set_up(
        cfg: &ExploreConfig,
        reader: &Arc<TraceReader>,
        fs: FsKind,
        in_process: Option<Arc<dyn InProcessCheck>>,
        lock: BorrowedFd<'_>,
    ) -> Result<Rig, ExploreError> {
        // Absolute: checkers run with the mount as their working directory.
        let results_abs = std::path::absolute(&cfg.results).map_err(|e| ExploreError::io(&cfg.results, e))?;
        let work = WorkDir(results_abs.join(".work"));
        cleanup_stale(&work.0);
        std::fs::create_dir_all(&work.0).map_err(|e| ExploreError::io(&work.0, e))?;
        // Before any child starts or the checkers' cgroup exists: the watchdog inherits
        // the lock (module docs).
        let watchdog = match in_process {
            Some(_) => None,
            None => {
                // The memory slots' write log, if the run makes one (`writelog.rs`).
                let remove = vec![brink_blockdev::writelog::WriteLog::planned_path()];
                let cgroup = brink_check::Jail::planned_cgroup();
                let cleanup = Cleanup { work: work.0.clone(), cgroup, remove, ..Cleanup::default() };
                fusectl::start_holding(&cleanup, lock)
            }
        };
        let jail = brink_check::Jail::new().with_interrupt(cfg.interrupt.clone());
        let durable_path = work.0.join("durable.img");
        let durable = private_copy(&reader.base_image_path(), &durable_path)?;
        let head = private_copy(&reader.base_image_path(), &work.0.join("head.img"))?;
        let (backend, workers) = match (in_process, cfg.recovery) {
            (Some(check), _) => (Backend::InProcess(check), file_workers(&work.0, cfg.jobs)?),
            (None, Recovery::Kernel) => match mem_slots(cfg, reader)? {
                Some(slots) => mem_workers(slots, &work.0, &durable, cfg.jobs)?,
                None => slot_workers(&work.0, &durable_path, reader, cfg.jobs)?,
            },
            (None, Recovery::Userspace) => (Backend::Files, file_workers(&work.0, cfg.jobs)?),
        };
        let meta = reader.meta();
        let ctx = CheckCtx {
            fs,
            mount_opts: state_mount_options(fs, &meta.mount_opts).map_err(ExploreError::MountOptions)?,
            checkers: cfg.checkers.clone(),
            timeout: cfg.checker_timeout,
            trace: std::path::absolute(&cfg.trace).unwrap_or_else(|_| cfg.trace.clone()),
            jail,
            interrupt: cfg.interrupt.clone(),
            left_behind: AtomicU64::new(0),
            trees: cfg.tree_dedup.then(Trees::default),
            protocol: cfg.checker_protocol,
        };
        Ok(Rig {
            workers: Mutex::new(workers),
            backend,
            durable,
            durable_path,
            head,
            work,
            reader: reader.clone(),
            ctx,
            broken: AtomicBool::new(false),
            workers_total: cfg.jobs,
            _watchdog: watchdog,
        })
    }

    /// Why checker runs are contained without cgroup v2 (to say once), or None.
    pub(crate) fn containment_note(&self) -> Option<String> {
        self.ctx.jail.fallback_note()
    }

    /// Why tree dedup was turned off during the run, if it was.
    pub(crate) fn tree_dedup_off(&self) -> Option<String> {
        self.ctx.trees.as_ref().and_then(Trees::off_because)
    }

    /// Processes the checkers left running so far, each stopped.
    pub(crate) fn processes_left_behind(&self) -> u64 {
        self.ctx.left_behind.load(Ordering::Relaxed)
    }

    /// The image of everything flushed before the current epoch.
    pub(crate) fn durable(&self) -> &File {
        &self.durable
    }

    /// Lay the epoch `fp` onto the durable image, and tell the slots where it changed.
    pub(crate) fn advance_durable(&self, fp: &crate::footprint::Footprint) -> Result<(), ExploreError> {
        fp.apply_all(&self.reader, &self.durable)?;
        match &self.backend {
            Backend::Slots { slots, .. } => slots.durable_changed(&fp.ranges()),
            Backend::Mem(slots) => slots.durable_changed(&fp.ranges()),
            Backend::Files | Backend::InProcess(_) => {}
        }
        Ok(())
    }

    pub(crate) fn durable_path(&self) -> &Path {
        &self.durable_path
    }

    /// The image of everything flushed before the epoch being hashed (module docs).
    pub(crate) fn head(&self) -> &File {
        &self.head
    }

    /// Whether a state can fail reads (a latent sector error): only slots serve reads.
    pub(crate) fn serves_latent_errors(&self) -> bool {
        matches!(self.backend, Backend::Slots { .. })
    }

    /// Check one state (`job`) on a free worker. None: not checked, because an error
    /// (returned by another check) is stopping the run and its worker is gone, or because
    /// brink's interrupt stopped a checker (the state is checked again on resume).
    pub(crate) fn check(&self, job: Job<'_>, timings: &Timings) -> Result<Option<Checked>, ExploreError> {
        let popped = self.workers.lock().expect("workers").pop();
        let w = match popped {
            Some(w) if !self.broken.load(Ordering::SeqCst) => w,
            Some(w) => {
                self.workers.lock().expect("workers").push(w);
                return Ok(None);
            }
            None => {
                // Only an error loses a worker, and it marks the rig broken first.
                assert!(self.broken.load(Ordering::SeqCst), "a free worker per thread");
                return Ok(None);
            }
        };
        match self.check_on(w, job, timings) {
            Ok((w, checks)) => {
                self.workers.lock().expect("workers").push(w);
                Ok(checks)
            }
            Err(e) => {
                // The worker may be unusable (its slot stale, its scratch unwritable):
                // it is dropped, and no later check starts.
                self.broken.store(true, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// `check` on worker `w`; the worker to use next (`w`, or its replacement), and the
    /// checks (None when interrupted).
    fn check_on(
        &self,
        mut w: Worker,
        job: Job<'_>,
        timings: &Timings,
    ) -> Result<(Worker, Option<Checked>), ExploreError> {
        let Job { pieces, bad, overlay_start, id, marks } = job;
        let checks = match &self.backend {
            Backend::Slots { slots, spare, .. } => {
                let slot_file = || self.work.0.join("slots").join(Slots::file_name(w.slot));
                slots.set(w.slot, pieces, bad).map_err(|e| ExploreError::io(&slot_file(), e))?;
                Timings::add(&timings.overlay_us, overlay_start);
                let c = w.check(&self.ctx, id, marks, timings)?;
                if c.stale {
                    w = self.retire(w, slots, spare)?;
                } else {
                    slots.clear(w.slot);
                }
                (!c.interrupted).then_some(Checked { checks: c.checks, tree_dup_of: c.tree_dup_of })
            }
            Backend::Mem(slots) => {
                assert!(bad.is_none(), "latent sector errors need the FUSE slots");
                let name = MemSlots::name(&self.work.0, w.slot);
                slots.set(w.slot, &self.durable, &self.reader, &pieces).map_err(|e| build_error(&name, e))?;
                Timings::add(&timings.overlay_us, overlay_start);
                let c = w.check(&self.ctx, id, marks, timings)?;
                let started = Instant::now();
                slots.checked()?;
                Timings::add(&timings.overlay_us, started);
                if c.stale {
                    w = self.retire_mem(w, slots)?;
                }
                (!c.interrupted).then_some(Checked { checks: c.checks, tree_dup_of: c.tree_dup_of })
            }
            Backend::Files => {
                assert!(bad.is_none(), "latent sector errors need the slots");
                let build = |img: &Path| state_image::build(&self.durable_path, &self.reader, &pieces, img);
                w.check_userspace(&self.ctx, build, id, marks, timings)?
            }
            Backend::InProcess(check) => {
                assert!(bad.is_none(), "latent sector errors need the slots");
                Some(Checked::ran(self.check_in_process(check.as_ref(), &w, &pieces, id, marks, timings)?))
            }
        };
        Ok((w, checks))
    }

    /// Replace a worker whose slot is stale (`SlotCheck::stale`) with one on a slot never
    /// used, under a new loop device. The old slot keeps its overlay (the file system
    /// that outlived its check may still read and write it) and is never used again;
    /// its loop device detaches itself once that file system is gone (AUTOCLEAR).
    fn retire(&self, w: Worker, slots: &Slots, spare: &Mutex<usize>) -> Result<Worker, ExploreError> {
        let Worker { slot: _, dev, mnt, scratch } = w;
        drop(dev);
        let slot = {
            let mut next = spare.lock().expect("spare slots");
            if *next >= slots.count() {
                return Err(ExploreError::SlotsExhausted { retired: SLOTS_RETIRED_MAX });
            }
            *next += 1;
            *next - 1
        };
        let dev = attach_slot(&self.work.0.join("slots"), slot)?;
        Ok(Worker { slot, dev: Some(dev), mnt, scratch })
    }

    /// [`Rig::retire`] for memory slots: a new memory file under a new loop device.
    fn retire_mem(&self, w: Worker, slots: &MemSlots) -> Result<Worker, ExploreError> {
        let Worker { slot: _, dev, mnt, scratch } = w;
        drop(dev);
        if slots.count() >= self.workers_total + SLOTS_RETIRED_MAX {
            return Err(ExploreError::SlotsExhausted { retired: SLOTS_RETIRED_MAX });
        }
        let (slot, dev) = slots.add(&self.work.0, &self.durable)?;
        Ok(Worker { slot, dev: Some(dev), mnt, scratch })
    }

    /// Build the state's image in the worker's scratch directory and hand it over.
    fn check_in_process(
        &self,
        check: &dyn InProcessCheck,
        w: &Worker,
        pieces: &[Piece],
        id: &str,
        marks: &[String],
        timings: &Timings,
    ) -> Result<Vec<CheckOutcome>, ExploreError> {
        let image = w.scratch.join("state.img");
        let _ = std::fs::remove_file(&image);
        state_image::build(&self.durable_path, &self.reader, pieces, &image).map_err(|e| build_error(&image, e))?;
        let started = Instant::now();
        let checks = check.check(&image, id, marks);
        Timings::add(&timings.checkers_us, started);
        let _ = std::fs::remove_file(&image);
        Ok(checks)
    }

    /// Release the machine's resources, in order (module docs).
    pub(crate) fn tear_down(self) {
        let Rig {
            workers,
            backend,
            durable,
            durable_path: _,
            head,
            work,
            reader: _,
            ctx,
            broken: _,
            workers_total: _,
            _watchdog,
        } = self;
        drop(workers.into_inner().expect("workers"));
        drop(backend);
        drop(durable);
        drop(head);
        drop(work);
        drop(ctx);
        drop(_watchdog);
    }
}

/// A sparse copy of `image` at `path`, open for reading and writing.
fn private_copy(image: &Path, path: &Path) -> Result<File, ExploreError> {
    image::copy_sparse(image, path)?;
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| ExploreError::io(path, e))
}

/// Kernel recovery: the slots mounted on `work/slots`, a loop device on each slot file
/// and a mount point and scratch directory per worker.
fn slot_workers(
    work: &Path,
    durable_path: &Path,
    reader: &Arc<TraceReader>,
    jobs: usize,
) -> Result<(Backend, Vec<Worker>), ExploreError> {
    let slots = Slots::new(
        File::open(durable_path).map_err(|e| ExploreError::io(durable_path, e))?,
        reader.meta().image_size,
        reader.clone(),
        jobs + SLOTS_RETIRED_MAX,
    );
    let slot_dir = work.join("slots");
    std::fs::create_dir(&slot_dir).map_err(|e| ExploreError::io(&slot_dir, e))?;
    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = vec![fuser::MountOption::FSName("brink-slots".into()), fuser::MountOption::NoExec];
    fuse_cfg.n_threads = Some(jobs);
    let session = fuser::spawn_mount(SlotFs(slots.clone()), &slot_dir, &fuse_cfg)
        .map_err(|source| ExploreError::SlotMount { path: slot_dir.clone(), source })?;
    slots.set_notifier(session.notifier());
    let mount = SlotMount { session: Some(session), dir: slot_dir.clone() };
    let mut workers = Vec::new();
    for i in 0..jobs {
        let dev = attach_slot(&slot_dir, i)?;
        let (mnt, scratch) = kernel_worker_dirs(work, i)?;
        workers.push(Worker { slot: i, dev: Some(dev), mnt, scratch });
    }
    Ok((Backend::Slots { _mount: mount, slots, spare: Mutex::new(jobs) }, workers))
}

/// The memory slots for a run with kernel recovery, or None for the FUSE slots: those
/// serve latent sector errors, hold nothing of the image in memory (the memory slots
/// hold its data once per slot, up to `MEM_SLOTS_BYTES_MAX` together), and need no
/// tracefs (the memory slots' write log does). `SlotKind::Auto` takes the memory slots
/// where they can serve the run.
fn mem_slots(cfg: &ExploreConfig, reader: &TraceReader) -> Result<Option<MemSlots>, ExploreError> {
    let refuse = |why: String| match cfg.slots {
        SlotKind::Memory => Err(ExploreError::MemorySlots(why)),
        _ => Ok(None),
    };
    if cfg.slots == SlotKind::Fuse {
        return Ok(None);
    }
    if cfg.media_faults {
        return refuse("latent sector errors need the FUSE slots".into());
    }
    let base = std::fs::metadata(reader.base_image_path()).map(|m| m.blocks() * 512).unwrap_or(u64::MAX);
    let data = base.saturating_add(reader.meta().pack_bytes).min(reader.meta().image_size);
    let slots_max = (cfg.jobs + SLOTS_RETIRED_MAX) as u64;
    if data.saturating_mul(slots_max) > MEM_SLOTS_BYTES_MAX {
        let mib = |b: u64| b >> 20;
        return refuse(format!(
            "{slots_max} slots of up to {} MiB of data each exceed {} MiB",
            mib(data),
            mib(MEM_SLOTS_BYTES_MAX)
        ));
    }
    match MemSlots::new(reader.meta().image_size) {
        Ok(s) => Ok(Some(s)),
        Err(e) => refuse(format!("the write log cannot be set up: {e}")),
    }
}

/// Kernel recovery over memory slots: a slot and its loop device per worker, and a
/// mount point and scratch directory.
fn mem_workers(
    slots: MemSlots,
    work: &Path,
    durable: &File,
    jobs: usize,
) -> Result<(Backend, Vec<Worker>), ExploreError> {
    let mut workers = Vec::new();
    for i in 0..jobs {
        let (slot, dev) = slots.add(work, durable)?;
        let (mnt, scratch) = kernel_worker_dirs(work, i)?;
        workers.push(Worker { slot, dev: Some(dev), mnt, scratch });
    }
    Ok((Backend::Mem(slots), workers))
}

/// Kernel recovery's worker `i`: its mount point and scratch directory, made.
fn kernel_worker_dirs(work: &Path, i: usize) -> Result<(PathBuf, PathBuf), ExploreError> {
    let (mnt, scratch) = (work.join(format!("mnt{i}")), work.join(format!("scratch{i}")));
    for d in [&mnt, &scratch] {
        std::fs::create_dir(d).map_err(|e| ExploreError::io(d, e))?;
    }
    Ok((mnt, scratch))
}

/// A loop device over slot `slot`'s file in the mounted slots at `slot_dir`.
fn attach_slot(slot_dir: &Path, slot: usize) -> Result<LoopDevice, ExploreError> {
    let path = slot_dir.join(Slots::file_name(slot));
    let f = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| ExploreError::io(&path, e))?;
    Ok(LoopDevice::attach(&f, &path, false)?)
}

/// Recovery on image files: a scratch directory per worker, the state's files
/// extracted under it.
fn file_workers(work: &Path, jobs: usize) -> Result<Vec<Worker>, ExploreError> {
    let mut workers = Vec::new();
    for i in 0..jobs {
        let scratch = work.join(format!("scratch{i}"));
        std::fs::create_dir(&scratch).map_err(|e| ExploreError::io(&scratch, e))?;
        workers.push(Worker { slot: i, dev: None, mnt: scratch.join("root"), scratch });
    }
    Ok(workers)
}
