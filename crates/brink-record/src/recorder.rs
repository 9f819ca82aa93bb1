//! `brink record`: the sequence that turns a workload into a trace.
//!
//! ```text
//! FUSE mount (disk.img, mark) → loop device on disk.img → mkfs → mount → setup → unmount
//!   → copy disk.img to the trace's base image → start logging → mount → workload
//!   → kill its process group → unmount (logged too) → stop logging → hash the final image
//!   → detach loop → unmount FUSE → finish the trace (crash-safe)
//! ```
//!
//! Every resource is held by a guard declared so that drops run in the reverse order of
//! setup (file system, loop device, FUSE mount, work directory, unfinished trace): an
//! error or an interrupt at any step leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use brink_blockdev::{
    FsKind, LoopDevice, Mount, MountOptions, find_on_path, find_program, is_executable, unmount_path,
};
use brink_trace::{ExitInfo, TraceMeta, TraceWriter, WorkloadInfo, WriterStats, image};

use crate::RecordError;
use crate::child::{self, Interrupt};
use crate::disk::{Counters, DISK_NAME, DiskFs, Log, MARK_NAME, Phase};
use crate::logger::Logger;

/// Captured workload output kept in the trace, per stream (the tail is kept).
pub const OUTPUT_BYTES_MAX: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub fs: FsKind,
    /// Extra mkfs arguments, shell-quoted, after brink's own (`FsKind::mkfs_args`).
    pub mkfs_opts: String,
    pub mount_opts: MountOptions,
    pub size: u64,
    /// Shell command run in the mounted file system before recording.
    pub setup: Option<String>,
    pub argv: Vec<String>,
    pub output: PathBuf,
    pub interrupt: Interrupt,
    /// Requests to fail with EIO while recording (see `inject`).
    pub inject: Vec<crate::Injection>,
    /// Targets whose matches are only counted (`RecordOutcome::watched`).
    pub watch: Vec<crate::Injection>,
}

#[derive(Debug)]
pub struct RecordOutcome {
    pub trace: PathBuf,
    pub stats: WriterStats,
    pub exit: ExitInfo,
    pub workload_wall_ms: u64,
    /// Marks the setup command wrote; they are not part of the trace.
    pub ignored_marks: u64,
    /// Per `watch` target, the requests it matched while the workload ran (the
    /// injection points the workload offers).
    pub watched: Vec<u64>,
}

/// Live view of a recording for progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub phase: Mutex<&'static str>,
    counters: Arc<Counters>,
}

impl Progress {
    pub fn events(&self) -> u64 {
        self.counters.events.load(Ordering::Relaxed)
    }
    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }
    fn set(&self, phase: &'static str) {
        *self.phase.lock().expect("phase lock") = phase;
    }
}

/// The FUSE session, unmounted on drop.
struct FuseMount {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    _watchdog: Option<brink_blockdev::fusectl::Watchdog>,
}

impl FuseMount {
    fn unmount(mut self) -> Result<(), RecordError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), RecordError> {
        let Some(session) = self.session.take() else { return Ok(()) };
        match unmount_path(&self.mountpoint) {
            Ok(()) => {
                // The session thread ends once the kernel closes the connection.
                let _ = session.join();
                Ok(())
            }
            Err(e) => {
                // Still held (a loop device that has not let go): detach it lazily so that
                // it disappears once released, and do not wait for the session thread.
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                std::mem::forget(session);
                Err(RecordError::io(format!("cannot unmount the FUSE disk at {}", self.mountpoint.display()), e))
            }
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let _ = self.unmount_inner();
    }
}

/// Check what the recorder needs before touching anything; each failure is one line
/// saying what is wrong and what to do.
fn preflight(cfg: &RecordConfig) -> Result<(PathBuf, PathBuf), RecordError> {
    let pre = |s: String| Err(RecordError::Precondition(s));
    if !nix::unistd::geteuid().is_root() {
        return pre(
            "brink record needs root (it attaches loop devices and mounts file systems): run it as root or with sudo"
                .into(),
        );
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return pre(format!(
            "cannot open /dev/fuse ({e}): load the fuse module (modprobe fuse) or give the container the device"
        ));
    }
    if !Path::new("/dev/loop-control").exists() {
        return pre("no /dev/loop-control: load the loop module (modprobe loop)".into());
    }
    let mkfs = match find_program(cfg.fs.mkfs_program()) {
        Some(p) => p,
        None => {
            return pre(format!(
                "{} not found: install {} (apt-get install {})",
                cfg.fs.mkfs_program(),
                cfg.fs.package(),
                cfg.fs.package()
            ));
        }
    };
    if cfg.size < cfg.fs.min_image_bytes() {
        return pre(format!(
            "image size {} MiB is too small for {} (at least {} MiB): raise --size",
            cfg.size >> 20,
            cfg.fs,
            cfg.fs.min_image_bytes() >> 20
        ));
    }
    if cfg.size % 4096 != 0 {
        return pre(format!("image size {} is not a multiple of 4096 bytes", cfg.size));
    }
    if shlex::split(&cfg.mkfs_opts).is_none() {
        return pre(format!("cannot parse --mkfs-opts '{}': unbalanced quotes", cfg.mkfs_opts));
    }
    crate::inject::preflight(cfg.inject.iter().chain(&cfg.watch), cfg.fs, cfg.size)?;
    let Some(prog) = cfg.argv.first() else {
        return pre("no workload command given (brink record … -- CMD ARGS…)".into());
    };
    let workload = resolve_program(prog).ok_or_else(|| {
        RecordError::Precondition(format!(
            "workload command '{prog}' not found (not a path to an executable, not on PATH)"
        ))
    })?;
    Ok((mkfs, workload))
}

/// A workload program as an absolute path: names with a slash are taken relative to
/// brink's own directory (the workload itself runs inside the mount), others from PATH.
fn resolve_program(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return std::path::absolute(prog).ok().filter(|p| is_executable(p));
    }
    find_on_path(prog)
}

fn check_status(status: std::process::ExitStatus, what: &str, stderr: &Path) -> Result<(), RecordError> {
    if status.success() {
        return Ok(());
    }
    let line = child::last_line(stderr);
    let detail = if line.is_empty() { String::new() } else { format!(": {line}") };
    Err(RecordError::Failed(format!("{what} failed ({}){detail}", child::exit_info(status))))
}

fn output_files(work: &Path, name: &str) -> Result<(PathBuf, PathBuf, File, File), RecordError> {
    let out = work.join(format!("{name}.stdout"));
    let err = work.join(format!("{name}.stderr"));
    let o = File::create(&out).map_err(|e| RecordError::io("creating an output capture file", e))?;
    let e2 = File::create(&err).map_err(|e| RecordError::io("creating an output capture file", e))?;
    Ok((out, err, o, e2))
}

/// Record `cfg.argv` on a fresh file system. See the module docs for the sequence.
pub fn record(cfg: &RecordConfig, progress: &Progress) -> Result<RecordOutcome, RecordError> {
    let (mkfs, workload) = preflight(cfg)?;
    let interrupt = &cfg.interrupt;

    // Declaration order = reverse drop order: see the module docs.
    let writer = TraceWriter::create(&cfg.output)?;
    let work = tempfile::Builder::new()
        .prefix("brink-rec-")
        .tempdir()
        .map_err(|e| RecordError::io("creating a work directory", e))?;
    let fuse_dir = work.path().join("fuse");
    let mnt = work.path().join("mnt");
    let backing_path = work.path().join(DISK_NAME);
    for d in [&fuse_dir, &mnt] {
        std::fs::create_dir(d).map_err(|e| RecordError::io(format!("creating {}", d.display()), e))?;
    }
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&backing_path)
        .map_err(|e| RecordError::io("creating the disk image", e))?;
    backing.set_len(cfg.size).map_err(|e| RecordError::io("sizing the disk image", e))?;

    let log = Arc::new(Mutex::new(Log {
        phase: Phase::Prepare,
        queue: None,
        unrecorded: 0,
        ignored_marks: 0,
        faults: Default::default(),
    }));
    let disk = DiskFs {
        backing: backing.try_clone().map_err(|e| RecordError::io("duplicating the image handle", e))?,
        size: cfg.size,
        log: log.clone(),
        counters: progress.counters.clone(),
    };
    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = vec![
        fuser::MountOption::FSName("brink".into()),
        fuser::MountOption::Subtype("brink".into()),
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
    ];
    fuse_cfg.n_threads = Some(1);
    progress.set("starting the FUSE disk");
    let session = fuser::spawn_mount(disk, &fuse_dir, &fuse_cfg)
        .map_err(|e| RecordError::Failed(format!("cannot mount the FUSE disk on {}: {e}", fuse_dir.display())))?;
    let fuse = FuseMount {
        session: Some(session),
        _watchdog: brink_blockdev::fusectl::watchdog(&fuse_dir, work.path(), true),
        mountpoint: fuse_dir.clone(),
    };

    let disk_path = fuse_dir.join(DISK_NAME);
    let loop_dev = {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disk_path)
            .map_err(|e| RecordError::io(format!("opening {}", disk_path.display()), e))?;
        LoopDevice::attach(&f, &disk_path, false)?
    };
    let dev = loop_dev.path().to_path_buf();

    progress.set("mkfs");
    let (_, mkfs_err, o, e) = output_files(work.path(), "mkfs")?;
    let mut cmd = Command::new(&mkfs);
    cmd.args(cfg.fs.mkfs_args())
        .args(shlex::split(&cfg.mkfs_opts).expect("checked in preflight"))
        .arg(&dev)
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e));
    check_status(child::run(cmd, cfg.fs.mkfs_program(), interrupt)?, cfg.fs.mkfs_program(), &mkfs_err)?;

    let fstype = cfg.fs.name();
    let mount_err = |e: brink_blockdev::BlockdevError| {
        RecordError::Precondition(format!("{e} (check --mount-opts; the kernel log, dmesg, says more)"))
    };
    if let Some(setup) = &cfg.setup {
        progress.set("setup");
        let m = Mount::mount(&dev, &mnt, fstype, &cfg.mount_opts).map_err(mount_err)?;
        let (_, setup_err, o, e) = output_files(work.path(), "setup")?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(setup).current_dir(&mnt).env("BRINK_MARK", fuse_dir.join(MARK_NAME));
        cmd.stdout(Stdio::from(o)).stderr(Stdio::from(e));
        check_status(child::run(cmd, "the setup command", interrupt)?, "the setup command", &setup_err)?;
        m.unmount()?;
    }
    interrupt.check()?;

    // The clean, unmounted disk is the base image: every later state grows from it.
    progress.set("saving the base image");
    image::copy_sparse(&backing_path, &writer.base_image_path())?;
    let faults = crate::inject::arm(&cfg.inject, &cfg.watch, cfg.fs, &writer.base_image_path())?;
    let logger = Logger::start(writer, &log);

    progress.set("recording");
    let m = Mount::mount(&dev, &mnt, fstype, &cfg.mount_opts).map_err(mount_err)?;
    // Injections count from here: the mount's own requests are never failed.
    log.lock().expect("log lock").faults = faults;
    let (out_path, err_path, o, e) = output_files(work.path(), "workload")?;
    let mut cmd = Command::new(&workload);
    cmd.args(&cfg.argv[1..])
        .current_dir(&mnt)
        .env("BRINK_MARK", fuse_dir.join(MARK_NAME))
        .env("BRINK_FS", fstype)
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e));
    let started = Instant::now();
    let status = child::run(cmd, &format!("workload '{}'", cfg.argv[0]), interrupt)?;
    let wall_ms = started.elapsed().as_millis() as u64;
    let watched = log.lock().expect("log lock").faults.watched();
    progress.set("unmounting");
    m.unmount()?;

    let writer = logger.stop()?;
    let ignored_marks = log.lock().expect("log lock").ignored_marks;
    progress.set("hashing the final image");
    let final_digest = image::digest_file(&backing_path)?;
    loop_dev.detach()?;
    fuse.unmount()?;
    let unrecorded = log.lock().expect("log lock").unrecorded;
    if unrecorded > 0 {
        return Err(RecordError::Failed(format!("{unrecorded} block requests arrived after the final unmount")));
    }

    progress.set("finishing the trace");
    let (stdout, out_cut) = child::tail(&out_path, OUTPUT_BYTES_MAX);
    let (stderr, err_cut) = child::tail(&err_path, OUTPUT_BYTES_MAX);
    let exit = child::exit_info(status);
    let stats = writer.stats();
    let mut meta = TraceMeta::new("fuse-loop", fstype, cfg.size);
    meta.mkfs_opts = cfg.mkfs_opts.clone();
    meta.mount_opts = cfg.mount_opts.text.clone();
    meta.final_image_digest = Some(final_digest);
    meta.injections = cfg.inject.iter().map(|i| i.to_string()).collect();
    meta.workload = Some(WorkloadInfo {
        argv: cfg.argv.clone(),
        setup: cfg.setup.clone(),
        exit,
        stdout,
        stderr,
        output_truncated: out_cut || err_cut,
        wall_ms,
    });
    let trace = writer.finish(meta)?;
    drop(work);
    Ok(RecordOutcome { trace, stats, exit, workload_wall_ms: wall_ms, ignored_marks, watched })
}
