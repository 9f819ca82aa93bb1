//! A worker owns one slot: its loop device, its mount point and a scratch directory.
//! Checking a state: drop the block cache, mount (the kernel recovers the journal),
//! optionally fsck, run the checkers with the state's marks, unmount.
//!
//! What the worker vouches for (issue 13): a verdict comes from the state's own file
//! system, and only from output brink captured whole. After the unmount the loop
//! device must be free again; if the file system outlived the check the state is a
//! checker failure and the slot is stale (`SlotCheck`, retired by the rig). brink's
//! own I/O failing (the state's image, the marks file, a scratch file system too full
//! for a checker's output to be trusted) is an error, never a verdict.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use brink_blockdev::{FsKind, LoopDevice, Mount, MountOptions};
use brink_check::{CheckEnv, CheckOutcome, CheckRun, Jail, Limits, Verdict};

use crate::ExploreError;
use crate::state_image::BuildError;

/// The least room the scratch file system must have after a step for its output to be
/// trusted whole (`ensure_room`): a step that ran out of space may have been cut.
const SCRATCH_ROOM_MIN: u64 = 1 << 20;
/// How long a state's file system may take to leave its loop device after the unmount
/// before the slot counts as stale (`Worker::released`), and how often to look.
const RELEASE_WAIT_MAX: Duration = Duration::from_secs(10);
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// A checker as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckerSpec {
    /// The file system's own checker on the recovered image.
    Fsck,
    /// A command: executed directly when it is a path to a program with plain arguments,
    /// else through `sh -c` (`brink_check::run`).
    Command(String),
}

impl CheckerSpec {
    pub fn parse(s: &str) -> CheckerSpec {
        if s == "fsck" { CheckerSpec::Fsck } else { CheckerSpec::Command(s.to_string()) }
    }
    pub fn name(&self) -> &str {
        match self {
            CheckerSpec::Fsck => "fsck",
            CheckerSpec::Command(c) => c,
        }
    }
}

/// What every check needs besides the state.
pub struct CheckCtx {
    pub fs: FsKind,
    pub mount_opts: MountOptions,
    pub checkers: Vec<CheckerSpec>,
    pub timeout: Duration,
    pub trace: PathBuf,
    /// Where every checker and tool of the run is contained, stopped early by brink's
    /// interrupt (one per run, so its fallback note is said once).
    pub jail: Jail,
    /// brink's interrupt (the signal number, 0 until one comes), as the jail sees it.
    pub interrupt: Arc<AtomicUsize>,
    /// With tree deduplication: the checkers' outcomes per recovered tree (`tree.rs`).
    pub trees: Option<crate::tree::Trees>,
    /// How user checkers are called (brink's protocol or ALICE's).
    pub protocol: brink_check::Protocol,
    /// Processes the runs' checkers left running (escaped daemons, stray children),
    /// each stopped by the jail, summed over the run (runs stopped by the interrupt are
    /// not counted: their children were not left, they were cut short).
    pub left_behind: AtomicU64,
}

impl CheckCtx {
    /// The outcome of a contained run, counting what it left behind; None when brink's
    /// interrupt stopped it: its outcome says nothing about the state, which is left
    /// unchecked (resume checks it again).
    ///
    /// A checker failure that ends after the interrupt is not a verdict either: a second
    /// signal kills every checker at once (the binary's `hurry`), so the run can end
    /// "killed by signal 9" before the jail sees the interrupt.
    fn outcome(&self, run: CheckRun) -> Option<CheckOutcome> {
        if run.interrupted || self.interrupted() && run.outcome.verdict == Verdict::CheckerFailure {
            return None;
        }
        self.left_behind.fetch_add(run.stopped.left_behind as u64, Ordering::Relaxed);
        Some(run.outcome)
    }

    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed) != 0
    }
}

/// Time spent per step, summed over all states and workers (microseconds).
#[derive(Debug, Default)]
pub struct Timings {
    /// Computing state contents and hashes.
    pub hash_us: AtomicU64,
    /// Installing a state's overlay in its slot.
    pub overlay_us: AtomicU64,
    /// Dropping caches and mounting (the kernel's recovery included).
    pub mount_us: AtomicU64,
    pub checkers_us: AtomicU64,
    pub unmount_us: AtomicU64,
}

impl Timings {
    pub fn add(counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    pub fn ms(counter: &AtomicU64) -> f64 {
        counter.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// Recovery and checking done inside the explorer's process, on the state's image
/// file: the seam that lets the whole engine (deduplication, resume, the verdict cache,
/// minimization, media faults) run without root, mounts or e2fsprogs. Tests give a fake
/// (`explore_in_process`); brink itself recovers with the kernel or e2fsprogs
/// ([`Recovery`]).
pub trait InProcessCheck: Send + Sync {
    /// The checks of the state whose image, before any recovery, is the file `image`,
    /// held to `marks` (the marks acknowledged before its crash point).
    fn check(&self, image: &Path, state_id: &str, marks: &[String]) -> Vec<CheckOutcome>;
}

/// How a crash state is recovered before the checkers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The kernel mounts the state (journal replay) through a loop device.
    Kernel,
    /// No mount: e2fsck replays the journal of an image file and debugfs extracts the
    /// files into a directory (ext4 only; needs no privileges).
    Userspace,
}

#[derive(Debug)]
pub struct Worker {
    pub slot: usize,
    /// The slot's loop device (kernel recovery only).
    pub dev: Option<LoopDevice>,
    /// Where checkers run: the mount point, or the extracted files.
    pub mnt: PathBuf,
    pub scratch: PathBuf,
}

fn mount_violation(e: impl std::fmt::Display) -> CheckOutcome {
    CheckOutcome {
        checker: "mount".into(),
        verdict: Verdict::Violation,
        message: format!("the recovered image does not mount: {e}"),
        details: None,
        ms: 0,
    }
}

/// What a check left behind besides its outcomes.
#[derive(Debug)]
pub struct SlotCheck {
    pub checks: Vec<CheckOutcome>,
    /// The state's file system outlived the check (a process the checker started keeps
    /// it): it stays on the slot's loop device, and the kernel would hand it out again
    /// for the next mount of that device instead of reading the next state. The slot is
    /// retired (rig.rs) and the state is a checker failure saying so.
    pub stale: bool,
    /// brink's interrupt stopped a checker: the checks are incomplete and not a verdict.
    pub interrupted: bool,
    /// The state whose checkers' outcomes were taken (`tree.rs`), if any.
    pub tree_dup_of: Option<String>,
}

/// Why a state whose file system outlived its check is a checker failure.
const BUSY: &str = "a process the checker started kept the state's file system busy";

impl SlotCheck {
    fn fresh(checks: Vec<CheckOutcome>) -> SlotCheck {
        SlotCheck { checks, stale: false, interrupted: false, tree_dup_of: None }
    }

    /// The unmount failed (EBUSY): the mount was detached lazily and lives on.
    fn busy(e: &brink_blockdev::BlockdevError) -> SlotCheck {
        SlotCheck {
            checks: vec![engine_failure(format!("{BUSY}: {}", brink_check::error_line(e)))],
            stale: true,
            interrupted: false,
            tree_dup_of: None,
        }
    }
}

/// How the user checkers' step ended.
enum Ran {
    /// Outcomes are in; taken from this state's tree duplicate, if named.
    Finished { tree_dup_of: Option<String> },
    /// brink's interrupt stopped a checker: no verdict.
    Interrupted,
}

/// A state's checks, and the state whose checkers' outcomes they repeat (`tree.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub checks: Vec<CheckOutcome>,
    pub tree_dup_of: Option<String>,
}

impl Checked {
    pub(crate) fn ran(checks: Vec<CheckOutcome>) -> Checked {
        Checked { checks, tree_dup_of: None }
    }
}

pub(crate) fn engine_failure(what: String) -> CheckOutcome {
    CheckOutcome { checker: "brink".into(), verdict: Verdict::CheckerFailure, message: what, details: None, ms: 0 }
}

impl Worker {
    fn dev(&self) -> &LoopDevice {
        self.dev.as_ref().expect("kernel recovery has a loop device")
    }

    /// Mount the state in this worker's slot. The kernel refusing it is a verdict on the
    /// state (a violation), except EBUSY: that says the slot's device is claimed (a
    /// moment's lag of brink's own machinery, or a process the last checker left), not
    /// that the image is bad. It is retried for a moment; if it lasts, the slot is stale and
    /// the state a checker failure, never a violation.
    ///
    /// The known moment's lag: [`Worker::released`]'s exclusive open of the device, where
    /// sysfs cannot answer instead, is inherited, until it execs, by a checker another
    /// worker forks at that instant (the cgroup join in `pre_exec` makes it a fork), so
    /// the claim outlives the close by a few milliseconds. Measured with the open as the
    /// only probe: 4 such EBUSYs in 8 runs of two suites side by side, each gone at a
    /// retry within 17 ms; none with the probe switched off.
    fn mount(&self, ctx: &CheckCtx) -> Result<Mount, SlotCheck> {
        use brink_blockdev::BlockdevError;
        let failure = |what: String| SlotCheck::fresh(vec![engine_failure(what)]);
        self.dev().drop_caches().map_err(|e| failure(e.to_string()))?;
        let started = Instant::now();
        loop {
            match Mount::mount(self.dev().path(), &self.mnt, ctx.fs.name(), &ctx.mount_opts) {
                Ok(m) => return Ok(m),
                Err(BlockdevError::Sys { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                    if started.elapsed() >= RELEASE_WAIT_MAX {
                        let dev = self.dev().path().display();
                        let what = format!("the slot's device {dev} stayed claimed (busy): the state was not mounted");
                        return Err(SlotCheck {
                            checks: vec![engine_failure(what)],
                            stale: true,
                            interrupted: false,
                            tree_dup_of: None,
                        });
                    }
                    std::thread::sleep(RELEASE_POLL);
                }
                Err(BlockdevError::Sys { source, .. }) => return Err(SlotCheck::fresh(vec![mount_violation(source)])),
                Err(e) => return Err(SlotCheck::fresh(vec![mount_violation(e)])),
            }
        }
    }

    /// Recover and check the state currently in this worker's slot. A slot left stale
    /// (`SlotCheck::stale`) must not check another state.
    ///
    /// An error is brink's own I/O failing (its scratch files, the room for a checker's
    /// output): the state is not judged and the run stops.
    pub fn check(
        &self,
        ctx: &CheckCtx,
        state_id: &str,
        marks: &[String],
        t: &Timings,
    ) -> Result<SlotCheck, ExploreError> {
        let mut out = Vec::new();
        let started = Instant::now();
        let mount = self.mount(ctx);
        Timings::add(&t.mount_us, started);
        let mut m = match mount {
            Ok(m) => m,
            Err(failed) => return Ok(failed),
        };
        if ctx.checkers.contains(&CheckerSpec::Fsck) {
            if let Err(e) = m.unmount() {
                return Ok(SlotCheck::busy(&e));
            }
            // fsck reads the device, not what the mount left in its cache: a latent
            // sector error fails its reads every time, not only when evicted.
            if let Err(e) = self.dev().drop_caches() {
                return Ok(SlotCheck::fresh(vec![engine_failure(e.to_string())]));
            }
            let Some(o) = ctx.outcome(ctx.jail.fsck(ctx.fs, self.dev().path(), ctx.timeout)) else {
                return Ok(SlotCheck { checks: out, stale: false, interrupted: true, tree_dup_of: None });
            };
            out.push(o);
            ensure_room(&self.scratch)?;
            m = match self.mount(ctx) {
                Ok(m) => m,
                Err(failed) if failed.stale => {
                    out.extend(failed.checks);
                    return Ok(SlotCheck { checks: out, stale: true, interrupted: false, tree_dup_of: None });
                }
                Err(failed) => {
                    out.extend(failed.checks);
                    return Ok(self.released(ctx.fs, out));
                }
            };
        }
        // On an error the mount's guard unmounts it (lazily if it stays busy).
        let ran = self.run_checkers(ctx, state_id, marks, self.dev().path(), t, &mut out)?;
        let started = Instant::now();
        let unmounted = m.unmount();
        Timings::add(&t.unmount_us, started);
        let mut c = match unmounted {
            Ok(()) => self.released(ctx.fs, out),
            Err(e) => SlotCheck::busy(&e),
        };
        match ran {
            Ran::Interrupted => c.interrupted = true,
            Ran::Finished { tree_dup_of } => c.tree_dup_of = tree_dup_of,
        }
        Ok(c)
    }

    /// `checks` if the file system is gone from the loop device after its unmount. A
    /// process in another mount namespace can keep it alive with nothing mounted here;
    /// the next mount of the device would then be that file system again, not the next
    /// state, and its last writes would land in the next state's overlay. Sysfs says
    /// whether it is alive (`FsKind::alive_on`), and an exclusive open whether it has let
    /// go of the device, its last blocks written (`FsKind::wait_released`). The sysfs
    /// probe comes first because the open claims the device: a checker another worker
    /// forks at that moment inherits the descriptor until it execs, and a mount of this
    /// device in the meantime fails with EBUSY (the mount retries: `Worker::mount`).
    ///
    /// The release can also lag the unmount for a moment: when another task holds a
    /// passing reference to the mount (one reading the mount table), that task drops the
    /// last one and frees the file system, not the unmount. Hence the wait.
    fn released(&self, fs: FsKind, checks: Vec<CheckOutcome>) -> SlotCheck {
        let path = self.dev().path();
        if fs.wait_released(path, RELEASE_WAIT_MAX) {
            return SlotCheck::fresh(checks);
        }
        SlotCheck {
            checks: vec![engine_failure(format!(
                "{BUSY}: it stayed in use after its unmount ({} is still claimed)",
                path.display()
            ))],
            stale: true,
            interrupted: false,
            tree_dup_of: None,
        }
    }

    /// Run the user checkers on the recovered state, or take the outcomes of a state
    /// with the same files and marks (`tree.rs`).
    fn run_checkers(
        &self,
        ctx: &CheckCtx,
        state_id: &str,
        marks: &[String],
        image: &Path,
        t: &Timings,
        out: &mut Vec<CheckOutcome>,
    ) -> Result<Ran, ExploreError> {
        let user = ctx.checkers.iter().any(|c| matches!(c, CheckerSpec::Command(_)));
        let tree = match &ctx.trees {
            Some(trees) if user && trees.on() => trees.hash(&self.mnt).map(|h| (trees, h)),
            _ => None,
        };
        if let Some((rep, checks)) = tree.and_then(|(trees, h)| trees.get(&h, marks.len())) {
            out.extend(checks);
            return Ok(Ran::Finished { tree_dup_of: Some(rep) });
        }
        let first = out.len();
        let started = Instant::now();
        if !self.run_user_checkers(ctx, state_id, marks, image, t, out)? {
            return Ok(Ran::Interrupted);
        }
        if let Some((trees, h)) = tree {
            trees.ran(started.elapsed());
            trees.put(h, marks.len(), state_id, &out[first..]);
        }
        Ok(Ran::Finished { tree_dup_of: None })
    }

    /// Run the user checkers; false when brink's interrupt stopped one (the rest are
    /// not run).
    fn run_user_checkers(
        &self,
        ctx: &CheckCtx,
        state_id: &str,
        marks: &[String],
        image: &Path,
        t: &Timings,
        out: &mut Vec<CheckOutcome>,
    ) -> Result<bool, ExploreError> {
        let marks_file = self.scratch.join("marks");
        brink_check::write_marks(&marks_file, marks)
            .map_err(|source| ExploreError::Scratch { path: marks_file.clone(), source })?;
        ensure_room(&self.scratch)?;
        for spec in &ctx.checkers {
            let CheckerSpec::Command(cmd) = spec else { continue };
            let env = CheckEnv {
                state_root: &self.mnt,
                marks_file: &marks_file,
                state_id,
                trace: &ctx.trace,
                image,
                protocol: ctx.protocol,
                worker: self.slot,
            };
            let started = Instant::now();
            let run = ctx.jail.run_checker(cmd, cmd, &env, &Limits { timeout: ctx.timeout });
            Timings::add(&t.checkers_us, started);
            // Its output is held in memory, but what it wrote beside brink's scratch
            // files (temporary files, a server's log) may have been cut if that file
            // system filled up, and the verdict with it.
            ensure_room(&self.scratch)?;
            let Some(outcome) = ctx.outcome(run) else { return Ok(false) };
            out.push(outcome);
        }
        Ok(true)
    }

    /// Userspace recovery: build the state as an image file, replay its journal with
    /// e2fsck, extract its files with debugfs, and check those. Errors as for `check`;
    /// None when brink's interrupt stopped a tool or a checker (no verdict).
    pub fn check_userspace(
        &self,
        ctx: &CheckCtx,
        build: impl FnOnce(&Path) -> Result<(), BuildError>,
        state_id: &str,
        marks: &[String],
        t: &Timings,
    ) -> Result<Option<Checked>, ExploreError> {
        let mut out = Vec::new();
        let started = Instant::now();
        let image = self.scratch.join("state.img");
        let _ = std::fs::remove_file(&image);
        let _ = std::fs::remove_dir_all(&self.mnt);
        build(&image).map_err(|e| build_error(&image, e))?;
        std::fs::create_dir(&self.mnt).map_err(|source| ExploreError::Scratch { path: self.mnt.clone(), source })?;
        let tool = |prog: &'static str, args: &[&OsStr]| self.run_tool(ctx, prog, args);
        let replay = tool("e2fsck", &["-y".as_ref(), "-E".as_ref(), "journal_only".as_ref(), image.as_os_str()])?;
        Timings::add(&t.mount_us, started);
        if let ToolRun::Interrupted = replay {
            return Ok(None);
        }
        if let ToolRun::Failed { why: e } = replay {
            return Ok(Some(Checked::ran(vec![CheckOutcome {
                checker: "recovery".into(),
                verdict: Verdict::Violation,
                message: format!("userspace journal replay failed: {e}"),
                details: None,
                ms: 0,
            }])));
        }
        if ctx.checkers.contains(&CheckerSpec::Fsck) {
            let Some(o) = ctx.outcome(ctx.jail.fsck(ctx.fs, &image, ctx.timeout)) else { return Ok(None) };
            out.push(o);
            ensure_room(&self.scratch)?;
        }
        let rdump = format!("rdump / {}", self.mnt.display());
        // debugfs reports a file it could not write on stderr and still exits 0, so
        // `run_tool` checks the room left: files cut by a full disk would be the
        // application's fault in the checker's eyes.
        match tool("debugfs", &["-R".as_ref(), rdump.as_ref(), image.as_os_str()])? {
            ToolRun::Interrupted => return Ok(None),
            ToolRun::Succeeded { stderr }
                if stderr.contains("Bad magic") || stderr.contains("while trying to open") =>
            {
                out.push(CheckOutcome {
                    checker: "recovery".into(),
                    verdict: Verdict::Violation,
                    message: format!(
                        "the recovered image cannot be read: {}",
                        stderr.lines().last().unwrap_or("").trim()
                    ),
                    details: None,
                    ms: 0,
                });
                return Ok(Some(Checked::ran(out)));
            }
            ToolRun::Succeeded { .. } => {}
            ToolRun::Failed { why: e } => {
                out.push(engine_failure(format!("debugfs failed: {e}")));
                return Ok(Some(Checked::ran(out)));
            }
        }
        let ran = self.run_checkers(ctx, state_id, marks, &image, t, &mut out)?;
        let _ = std::fs::remove_file(&image);
        Ok(match ran {
            Ran::Interrupted => None,
            Ran::Finished { tree_dup_of } => Some(Checked { checks: out, tree_dup_of }),
        })
    }

    /// Run an e2fsprogs tool on the state's image. An error is brink's (the tool is
    /// gone, cannot start, its output cannot be captured or may be cut); how the tool
    /// itself ended is the [`ToolRun`].
    fn run_tool(&self, ctx: &CheckCtx, prog: &'static str, args: &[&OsStr]) -> Result<ToolRun, ExploreError> {
        let path = brink_blockdev::find_program(prog).ok_or(ExploreError::ToolGone { prog })?;
        let mut cmd = std::process::Command::new(path);
        cmd.args(args);
        let f = ctx.jail.run_bounded(cmd, None, ctx.timeout).map_err(|source| ExploreError::Tool { prog, source })?;
        ensure_room(&self.scratch)?;
        // As for a checker (`CheckCtx::outcome`): after the interrupt, a failure is not
        // the state's.
        let failed = !matches!(f.status.and_then(|s| s.code()), Some(0 | 1));
        if f.interrupted || ctx.interrupted() && failed {
            return Ok(ToolRun::Interrupted);
        }
        ctx.left_behind.fetch_add(f.stopped.left_behind as u64, Ordering::Relaxed);
        // e2fsck: 0 nothing done, 1 the journal was replayed; debugfs always exits 0.
        Ok(match f.status.and_then(|s| s.code()) {
            Some(0 | 1) => ToolRun::Succeeded { stderr: f.stderr },
            _ => ToolRun::Failed { why: brink_check::failure(&f, ctx.timeout).unwrap_or_default() },
        })
    }
}

/// How an e2fsprogs tool run on a state's image ended.
enum ToolRun {
    /// It did its work; its stderr (debugfs reports unreadable images there and exits 0).
    Succeeded { stderr: String },
    /// It failed, in brink-check's words.
    Failed { why: String },
    /// brink's interrupt stopped it: the state is not judged.
    Interrupted,
}

/// The error of building a state's image at `image`: reading the trace, or writing the
/// image (brink's scratch).
pub(crate) fn build_error(image: &Path, e: BuildError) -> ExploreError {
    match e {
        // Copying the durable image into place: writing `image` failed.
        BuildError::Trace(brink_trace::TraceError::Io { path, source }) if path == image => {
            ExploreError::Scratch { path, source }
        }
        BuildError::Trace(e) => ExploreError::Trace(e),
        BuildError::Io(source) => ExploreError::Scratch { path: image.to_path_buf(), source },
    }
}

/// Refuse to judge a state when the file system of `scratch` is (nearly) full: what
/// brink and the checkers wrote there (the marks file, extracted files, a checker's own
/// temporary files) may be cut.
pub(crate) fn ensure_room(scratch: &Path) -> Result<(), ExploreError> {
    let st = nix::sys::statvfs::statvfs(scratch)
        .map_err(|e| ExploreError::Scratch { path: scratch.to_path_buf(), source: e.into() })?;
    let avail = st.blocks_available().saturating_mul(st.fragment_size());
    if avail < SCRATCH_ROOM_MIN {
        return Err(ExploreError::ScratchFull { path: scratch.to_path_buf(), avail, min: SCRATCH_ROOM_MIN });
    }
    // Out of inodes, no file can be created there (file systems without an inode count
    // report none in total).
    if st.files() > 0 && st.files_available() == 0 {
        return Err(ExploreError::NoInodes { path: scratch.to_path_buf() });
    }
    Ok(())
}
