//! A worker owns one slot: its loop device, its mount point and a scratch directory.
//! Checking a state: drop the block cache, mount (the kernel recovers the journal),
//! optionally fsck, run the checkers with the state's marks, unmount.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brink_blockdev::{FsKind, LoopDevice, Mount, MountOptions};
use brink_check::{fsck, run_checker, CheckEnv, CheckOutcome, Limits, Verdict};

/// A checker as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckerSpec {
    /// The file system's own checker on the recovered image.
    Fsck,
    /// A command run through `sh -c`.
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
#[derive(Debug)]
pub struct CheckCtx {
    pub fs: FsKind,
    pub mount_opts: MountOptions,
    pub checkers: Vec<CheckerSpec>,
    pub timeout: Duration,
    pub trace: PathBuf,
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

#[derive(Debug)]
pub struct Worker {
    pub slot: usize,
    pub dev: LoopDevice,
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

fn engine_failure(what: String) -> CheckOutcome {
    CheckOutcome { checker: "brink".into(), verdict: Verdict::CheckerFailure, message: what, details: None, ms: 0 }
}

impl Worker {
    fn mount(&self, ctx: &CheckCtx) -> Result<Mount, CheckOutcome> {
        self.dev.drop_caches().map_err(|e| engine_failure(e.to_string()))?;
        Mount::mount(self.dev.path(), &self.mnt, ctx.fs.name(), &ctx.mount_opts).map_err(|e| {
            let brink_blockdev::BlockdevError::Sys { source, .. } = &e else { return mount_violation(&e) };
            mount_violation(source)
        })
    }

    /// Recover and check the state currently in this worker's slot.
    pub fn check(&self, ctx: &CheckCtx, state_id: &str, marks: &[String], t: &Timings) -> Vec<CheckOutcome> {
        let mut out = Vec::new();
        let started = Instant::now();
        let mount = self.mount(ctx);
        Timings::add(&t.mount_us, started);
        let mut m = match mount {
            Ok(m) => m,
            Err(o) => return vec![o],
        };
        if ctx.checkers.contains(&CheckerSpec::Fsck) {
            if let Err(e) = m.unmount() {
                return vec![engine_failure(e.to_string())];
            }
            out.push(fsck(ctx.fs, self.dev.path(), &self.scratch, ctx.timeout));
            m = match self.mount(ctx) {
                Ok(m) => m,
                Err(o) => {
                    out.push(o);
                    return out;
                }
            };
        }
        let marks_file = self.scratch.join("marks");
        let mut text = marks.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if let Err(e) = std::fs::write(&marks_file, text) {
            out.push(engine_failure(format!("cannot write the marks file: {e}")));
            return out;
        }
        for spec in &ctx.checkers {
            let CheckerSpec::Command(cmd) = spec else { continue };
            let env = CheckEnv {
                state_root: &self.mnt,
                marks_file: &marks_file,
                state_id,
                trace: &ctx.trace,
                image: self.dev.path(),
                scratch: &self.scratch,
            };
            let started = Instant::now();
            out.push(run_checker(cmd, cmd, &env, &Limits { timeout: ctx.timeout }));
            Timings::add(&t.checkers_us, started);
        }
        let started = Instant::now();
        if let Err(e) = m.unmount() {
            out.push(engine_failure(e.to_string()));
        }
        Timings::add(&t.unmount_us, started);
        out
    }
}
