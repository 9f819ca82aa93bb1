//! `brink record`: the sequence that turns a workload into a trace.
//!
//! ```text
//! FUSE mount (disk.img, mark) → loop device on disk.img → mkfs → mount → setup → unmount
//!   → copy disk.img to the trace's base image → start logging → mount → workload
//!   → stop what it left running (its cgroup) → unmount (logged too) → stop logging → hash the final image
//!   → detach loop → unmount FUSE → finish the trace (crash-safe)
//! ```
//!
//! Every resource is held by a guard declared so that drops run in the reverse order of
//! setup (file system, loop device, FUSE mount, unfinished trace, work directory): an
//! error or an interrupt at any step leaves nothing behind. A watchdog process cleans up
//! if brink is killed outright (`kill -9`): it kills the children's cgroup, unmounts the
//! work area and removes it and the unfinished trace; the next recording into the same
//! directory removes unfinished traces whose recorder is gone.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brink_blockdev::fusectl::{self as watchdog, Watchdog};
use brink_blockdev::{
    FsKind, LoopDevice, Mount, MountOptions, find_on_path, find_program, is_executable, unmount_path,
};
use brink_trace::{ExitInfo, TraceMeta, TraceWriter, WorkloadInfo, WriterStats, image};

use crate::RecordError;
use crate::child::{self, Interrupt};
use crate::contain::Workgroup;
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
    /// Record the workload's system calls too (`calls.rs`), and their stacks.
    pub syscalls: crate::Syscalls,
    /// Which tracer records them.
    pub tracer: crate::CallTracer,
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
    containment_note: Mutex<Option<String>>,
}

impl Progress {
    pub fn events(&self) -> u64 {
        self.counters.events.load(Ordering::Relaxed)
    }
    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }
    /// Why the workload is contained by its process group rather than a cgroup v2 (a
    /// daemon that leaves the group is not stopped), once known; None with a cgroup.
    pub fn containment_note(&self) -> Option<String> {
        self.containment_note.lock().expect("note lock").clone()
    }
    fn set(&self, phase: &'static str) {
        *self.phase.lock().expect("phase lock") = phase;
    }
}

/// How long the FUSE disk may stay busy after the loop device over it was detached.
const FUSE_UNMOUNT_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The FUSE session, unmounted on drop.
struct FuseMount {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl FuseMount {
    fn unmount(mut self) -> Result<(), RecordError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), RecordError> {
        let Some(session) = self.session.take() else { return Ok(()) };
        // A detached loop device lets go of its backing file asynchronously; on a loaded
        // machine that has taken longer than one round of `unmount_path`'s retries, and
        // the recording is lost if the unmount gives up.
        let started = std::time::Instant::now();
        let mut unmounted = unmount_path(&self.mountpoint);
        while unmounted.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
            && started.elapsed() < FUSE_UNMOUNT_WAIT_MAX
        {
            unmounted = unmount_path(&self.mountpoint);
        }
        match unmounted {
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
        return Err(RecordError::ImageTooSmall { size: cfg.size, fs: cfg.fs, min: cfg.fs.min_image_bytes() });
    }
    if cfg.size % 4096 != 0 {
        return pre(format!("image size {} is not a multiple of 4096 bytes", cfg.size));
    }
    if shlex::split(&cfg.mkfs_opts).is_none() {
        return Err(RecordError::MkfsOptions(cfg.mkfs_opts.clone()));
    }
    crate::inject::preflight(cfg.inject.iter().chain(&cfg.watch), cfg.fs, cfg.size)?;
    let Some(prog) = cfg.argv.first() else {
        return pre("no workload command given".into());
    };
    let workload = resolve_program(prog).ok_or_else(|| {
        RecordError::Precondition(format!(
            "workload command '{prog}' not found (not a path to an executable, not on PATH)"
        ))
    })?;
    if cfg.syscalls != crate::Syscalls::Off {
        crate::calls::preflight(cfg.syscalls, cfg.tracer)?;
    }
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

/// Lines of a failed step's output quoted in its error.
const FAILURE_LINES: usize = 3;

/// `Ok` if the step succeeded; else an error quoting the last lines the step wrote to
/// stderr (or to stdout, if stderr is empty), since they usually say why.
fn check_status(status: std::process::ExitStatus, what: &str, stdout: &Path, stderr: &Path) -> Result<(), RecordError> {
    if status.success() {
        return Ok(());
    }
    let mut lines = child::last_lines(stderr, FAILURE_LINES);
    if lines.is_empty() {
        lines = child::last_lines(stdout, FAILURE_LINES);
    }
    let detail = if lines.is_empty() { String::new() } else { format!(": {}", lines.join(" | ")) };
    Err(RecordError::Failed(format!("{what} failed ({}){detail}", child::exit_info(status))))
}

/// Create the capture files of a step's stdout and stderr, readable by root alone (the
/// work directory can be entered by anyone, for `$BRINK_MARK`).
fn output_files(work: &Path, name: &str) -> Result<(PathBuf, PathBuf, File, File), RecordError> {
    let out = work.join(format!("{name}.stdout"));
    let err = work.join(format!("{name}.stderr"));
    let create = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(p)
            .map_err(|e| RecordError::io("creating an output capture file", e))
    };
    let (o, e2) = (create(&out)?, create(&err)?);
    Ok((out, err, o, e2))
}

/// Where things live in the recorder's work directory.
struct WorkPaths {
    /// The work directory itself, which also holds the captured output.
    root: PathBuf,
    /// The FUSE mount point serving `disk.img` and `mark`.
    fuse_dir: PathBuf,
    /// Where the file system is mounted for the setup command and the workload.
    mnt: PathBuf,
    /// The file behind the FUSE disk: the image as it stands.
    backing: PathBuf,
}

/// The work directory's mode: others may enter it (to reach `$BRINK_MARK`), not list it.
const WORK_DIR_MODE: u32 = 0o711;

/// Create the work directory, its layout, and the empty backing image of `size` bytes.
fn work_area(size: u64) -> Result<(tempfile::TempDir, WorkPaths, File), RecordError> {
    let work = tempfile::Builder::new()
        .prefix("brink-rec-")
        .tempdir()
        .map_err(|e| RecordError::io("creating a work directory", e))?;
    let paths = WorkPaths {
        root: work.path().to_path_buf(),
        fuse_dir: work.path().join("fuse"),
        mnt: work.path().join("mnt"),
        backing: work.path().join(DISK_NAME),
    };
    // Enterable by anyone (not listable), so that a workload that runs the application
    // as another user can reach `$BRINK_MARK` and the mount; what is inside is root's.
    std::fs::set_permissions(&paths.root, std::fs::Permissions::from_mode(WORK_DIR_MODE))
        .map_err(|e| RecordError::io(format!("opening up {}", paths.root.display()), e))?;
    for d in [&paths.fuse_dir, &paths.mnt] {
        std::fs::create_dir(d).map_err(|e| RecordError::io(format!("creating {}", d.display()), e))?;
    }
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&paths.backing)
        .map_err(|e| RecordError::io("creating the disk image", e))?;
    backing.set_len(size).map_err(|e| RecordError::io("sizing the disk image", e))?;
    Ok((work, paths, backing))
}

/// Serve the backing image as `disk.img` in a FUSE mount on `paths.fuse_dir`.
fn start_disk(paths: &WorkPaths, disk: DiskFs, progress: &Progress) -> Result<FuseMount, RecordError> {
    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = vec![
        fuser::MountOption::FSName("brink".into()),
        fuser::MountOption::Subtype("brink".into()),
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
        // The kernel checks the files' modes: `mark` is writable by anyone, `disk.img`
        // by root alone. Without this, allow_other would let anyone write the disk.
        fuser::MountOption::DefaultPermissions,
    ];
    // allow_other: a workload may run the application as another user (PostgreSQL
    // refuses to run as root), which must still be able to write marks.
    fuse_cfg.acl = fuser::SessionACL::All;
    fuse_cfg.n_threads = Some(1);
    progress.set("starting the FUSE disk");
    let session = fuser::spawn_mount(disk, &paths.fuse_dir, &fuse_cfg)
        .map_err(|e| RecordError::Failed(format!("cannot mount the FUSE disk on {}: {e}", paths.fuse_dir.display())))?;
    Ok(FuseMount { session: Some(session), mountpoint: paths.fuse_dir.clone() })
}

/// Put a loop device on the FUSE disk.
fn attach_disk(paths: &WorkPaths) -> Result<LoopDevice, RecordError> {
    let disk_path = paths.fuse_dir.join(DISK_NAME);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk_path)
        .map_err(|e| RecordError::io(format!("opening {}", disk_path.display()), e))?;
    Ok(LoopDevice::attach(&f, &disk_path, false)?)
}

fn mount_err(source: brink_blockdev::BlockdevError) -> RecordError {
    RecordError::Mount { source }
}

/// Where the recorder's children run: the work area, the loop device holding the file
/// system, and the cgroup that contains them.
struct Site<'a> {
    paths: &'a WorkPaths,
    dev: &'a Path,
    group: &'a Workgroup,
}

/// Make the file system on `dev` and run the setup command in it (not logged: this
/// builds the base image). Leaves the file system unmounted.
fn make_fs(cfg: &RecordConfig, mkfs: &Path, site: &Site, progress: &Progress) -> Result<(), RecordError> {
    let Site { paths, dev, group } = *site;
    progress.set("mkfs");
    let (mkfs_out, mkfs_err, o, e) = output_files(&paths.root, "mkfs")?;
    let mut cmd = Command::new(mkfs);
    cmd.args(cfg.fs.mkfs_args())
        .args(shlex::split(&cfg.mkfs_opts).expect("checked in preflight"))
        .arg(dev)
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e));
    let status = child::run(cmd, cfg.fs.mkfs_program(), &cfg.interrupt, group)?;
    check_status(status, cfg.fs.mkfs_program(), &mkfs_out, &mkfs_err)?;
    if let Some(setup) = &cfg.setup {
        progress.set("setup");
        let m = Mount::mount(dev, &paths.mnt, cfg.fs.name(), &cfg.mount_opts).map_err(mount_err)?;
        let (setup_out, setup_err, o, e) = output_files(&paths.root, "setup")?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(setup).current_dir(&paths.mnt).env("BRINK_MARK", paths.fuse_dir.join(MARK_NAME));
        cmd.stdout(Stdio::from(o)).stderr(Stdio::from(e));
        let status = child::run(cmd, "the setup command", &cfg.interrupt, group)?;
        check_status(status, "the setup command", &setup_out, &setup_err)?;
        m.unmount()?;
        // The base image is copied next: it must hold the file system's last writes.
        released(cfg, dev, progress)?;
    }
    Ok(())
}

/// What came of the workload run.
struct WorkloadRun {
    status: std::process::ExitStatus,
    wall_ms: u64,
    watched: Vec<u64>,
    out_path: PathBuf,
    err_path: PathBuf,
    /// The workload's first process, when it ran under strace.
    tracee: Option<u32>,
    /// What the kernel tracer saw, when it recorded the calls.
    kernel_calls: Option<brink_ebpf::Stats>,
}

/// Mount, arm the injections, run the workload, unmount (the unmount is logged too).
fn run_workload(
    cfg: &RecordConfig,
    workload: &Path,
    site: &Site,
    log: &Mutex<Log>,
    faults: crate::inject::Armed,
    (kernel, progress): (Option<brink_ebpf::Loading>, &Progress),
) -> Result<WorkloadRun, RecordError> {
    let Site { paths, dev, group } = *site;
    progress.set("recording");
    let fstype = cfg.fs.name();
    let m = Mount::mount(dev, &paths.mnt, fstype, &cfg.mount_opts).map_err(mount_err)?;
    // Injections count from here: the mount's own requests are never failed.
    log.lock().expect("log lock").faults = faults;
    let (out_path, err_path, o, e) = output_files(&paths.root, "workload")?;
    let (mut cmd, tracee) = workload_command(cfg, workload, paths)?;
    cmd.current_dir(&paths.mnt)
        .env("BRINK_MARK", paths.fuse_dir.join(MARK_NAME))
        .env("BRINK_FS", fstype)
        .stdout(Stdio::from(o))
        .stderr(Stdio::from(e));
    let kernel = kernel.map(|k| k.attach().map_err(|e| RecordError::Tracer(e.to_string()))).transpose()?;
    let started = Instant::now();
    let ended = || tracee.as_ref().is_some_and(crate::calls::Tracee::ended);
    let status = child::run_until(cmd, &format!("workload '{}'", cfg.argv[0]), &cfg.interrupt, group, &ended)?;
    let wall_ms = started.elapsed().as_millis() as u64;
    // Every process of the workload is stopped: the tracer has seen its last call.
    let kernel_calls = kernel.map(|k| k.finish().map_err(|e| RecordError::Tracer(e.to_string()))).transpose()?;
    let watched = log.lock().expect("log lock").faults.watched();
    progress.set("unmounting");
    m.unmount()?;
    released(cfg, dev, progress)?;
    let tracee = tracee.and_then(|t| t.pid());
    Ok(WorkloadRun { status, wall_ms, watched, out_path, err_path, tracee, kernel_calls })
}

/// Start loading the kernel tracer for the workload's cgroup, when it records the calls.
fn kernel_tracer(
    cfg: &RecordConfig,
    group: &Workgroup,
    paths: &WorkPaths,
) -> Result<Option<brink_ebpf::Loading>, RecordError> {
    if cfg.syscalls == crate::Syscalls::Off || cfg.tracer != crate::CallTracer::Kernel {
        return Ok(None);
    }
    let out = paths.root.join(crate::calls::EVENTS_OUT);
    crate::calls::load_kernel(group.cgroup_path(), &out, cfg.syscalls).map(Some)
}

/// How long the recorded file system may outlive its unmount before the recording fails.
const RELEASE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Wait, still recording, until the file system has left `dev`: it writes its last
/// blocks when the last reference to it goes, and a mount namespace made while it was
/// mounted holds one until it ends (`FsKind::wait_released`). Those writes belong to
/// the trace; a file system still held after `RELEASE_WAIT_MAX` fails the recording.
fn released(cfg: &RecordConfig, dev: &Path, progress: &Progress) -> Result<(), RecordError> {
    let started = Instant::now();
    while !cfg.fs.wait_released(dev, Duration::from_secs(1)) {
        cfg.interrupt.check()?;
        progress.set("waiting for another mount namespace to let go of the file system");
        if started.elapsed() >= RELEASE_WAIT_MAX {
            let who = brink_blockdev::holders_of(dev, 3);
            let who = if who.is_empty() { "a process brink cannot name".into() } else { who.join(", ") };
            return Err(RecordError::Failed(format!(
                "the recorded file system was still alive {} s after its unmount: a mount namespace made while it \
                 was mounted holds it ({who}), so its last writes cannot be recorded; end that process and record again",
                RELEASE_WAIT_MAX.as_secs()
            )));
        }
    }
    Ok(())
}

/// The workload's command: the program itself, or (recording its system calls) strace
/// running it, with what tells when the workload itself has ended.
fn workload_command(
    cfg: &RecordConfig,
    workload: &Path,
    paths: &WorkPaths,
) -> Result<(Command, Option<crate::calls::Tracee>), RecordError> {
    if cfg.syscalls == crate::Syscalls::Off || cfg.tracer == crate::CallTracer::Kernel {
        let mut cmd = Command::new(workload);
        cmd.args(&cfg.argv[1..]);
        return Ok((cmd, None));
    }
    let pid_file = paths.root.join(crate::calls::TRACEE_PID);
    let out = paths.root.join(crate::calls::STRACE_OUT);
    let cmd = crate::calls::traced(workload, &cfg.argv[1..], &out, &pid_file, cfg.syscalls)?;
    Ok((cmd, Some(crate::calls::Tracee::new(&pid_file))))
}

/// The trace's metadata for a finished recording.
fn trace_meta(cfg: &RecordConfig, run: &WorkloadRun, final_digest: String) -> TraceMeta {
    let (stdout, out_cut) = child::tail(&run.out_path, OUTPUT_BYTES_MAX);
    let (stderr, err_cut) = child::tail(&run.err_path, OUTPUT_BYTES_MAX);
    let mut meta = TraceMeta::new("fuse-loop", cfg.fs.name(), cfg.size);
    meta.mkfs_opts = cfg.mkfs_opts.clone();
    meta.mount_opts = cfg.mount_opts.text.clone();
    meta.final_image_digest = Some(final_digest);
    meta.injections = cfg.inject.iter().map(|i| i.to_string()).collect();
    meta.workload = Some(WorkloadInfo {
        argv: cfg.argv.clone(),
        setup: cfg.setup.clone(),
        exit: child::exit_info(run.status),
        stdout,
        stderr,
        output_truncated: out_cut || err_cut,
        wall_ms: run.wall_ms,
    });
    meta
}

/// The work directory's file holding the running child's process group id, for the
/// watchdog when there is no cgroup.
const PGID_FILE: &str = "child.pgid";

/// The directory a trace is written into (as `TraceWriter::create` finds it).
fn output_parent(output: &Path) -> &Path {
    match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Start the watchdog that cleans up if brink is killed outright (`kill -9`): it kills
/// the children's cgroup (or process group: whichever exists), so that none pins the
/// file system, unmounts everything in the work area and removes it and the unfinished
/// trace. Started before the cgroup and the trace directory exist.
fn watchdog(paths: &WorkPaths, unfinished: Option<&Path>, cgroup: Option<PathBuf>) -> Option<Watchdog> {
    watchdog::start(&watchdog::Cleanup {
        work: paths.root.clone(),
        cgroup,
        pgid_file: Some(paths.root.join(PGID_FILE)),
        remove: unfinished.map(Path::to_path_buf).into_iter().collect(),
    })
}

/// The unfinished trace directory `TraceWriter::create` makes for `output`
/// (`.NAME.tmp-PID` beside it), named before it exists so that the watchdog, started
/// first, knows what to remove.
fn unfinished_trace_dir(output: &Path) -> Option<PathBuf> {
    let name = output.file_name()?.to_string_lossy();
    let parent = std::path::absolute(output_parent(output)).ok()?;
    Some(parent.join(format!(".{name}.tmp-{}", std::process::id())))
}

/// Where the workload ran, as the calls' readers need it: the mark file and the mount.
fn calls_site(paths: &WorkPaths) -> crate::calls::Site {
    crate::calls::Site { mark_file: paths.fuse_dir.join(MARK_NAME), cwd: paths.mnt.clone() }
}

/// The kernel tracer's calls, being read back on a thread of their own while the
/// recording finishes (hashing the final image, unmounting).
type KernelCalls = std::thread::JoinHandle<Result<crate::calls::Prepared, RecordError>>;

/// Start reading the kernel tracer's calls back, if it recorded them.
fn read_kernel_calls(run: &WorkloadRun, paths: &WorkPaths) -> Option<KernelCalls> {
    let stats = run.kernel_calls?;
    let events = paths.root.join(crate::calls::EVENTS_OUT);
    let site = calls_site(paths);
    Some(std::thread::spawn(move || crate::calls::prepare_kernel(&events, stats, &site)))
}

/// Read the workload's system calls back from their tracer and store them in the trace.
fn store_calls(
    cfg: &RecordConfig,
    (run, kernel_calls): (&WorkloadRun, Option<KernelCalls>),
    paths: &WorkPaths,
    writer: &mut TraceWriter,
    meta: &mut TraceMeta,
    progress: &Progress,
) -> Result<(), RecordError> {
    if cfg.syscalls == crate::Syscalls::Off {
        return Ok(());
    }
    progress.set("reading the system calls");
    let site = calls_site(paths);
    if let Some(prepared) = kernel_calls {
        let prepared = prepared.join().map_err(|_| RecordError::Tracer("reading the calls back failed".into()))??;
        meta.calls = Some(crate::calls::write(prepared, writer)?);
        return Ok(());
    }
    let out = paths.root.join(crate::calls::STRACE_OUT);
    let (calls, exit) = crate::calls::store(&out, &site, run.tracee, writer)
        .map_err(|e| crate::calls::keep_unreadable(e, &out, &cfg.output))?;
    meta.calls = Some(calls);
    // The workload's own exit, not strace's (which may have been stopped).
    if let (Some(exit), Some(w)) = (exit, meta.workload.as_mut()) {
        w.exit = exit;
    }
    Ok(())
}

/// Record `cfg.argv` on a fresh file system. See the module docs for the sequence.
pub fn record(cfg: &RecordConfig, progress: &Progress) -> Result<RecordOutcome, RecordError> {
    let (mkfs, workload) = preflight(cfg)?;

    // Declaration order = reverse drop order: see the module docs.
    // The watchdog starts before anything it cleans up exists, so that a `kill -9` at
    // any later moment leaves nothing behind.
    crate::contain::remove_stale_trace_dirs(output_parent(&cfg.output));
    let (work, paths, backing) = work_area(cfg.size)?;
    let unfinished = unfinished_trace_dir(&cfg.output);
    let cgroup = crate::contain::planned_cgroup();
    let _watchdog = watchdog(&paths, unfinished.as_deref(), cgroup.clone());
    let group = Workgroup::new(paths.root.join(PGID_FILE), cgroup.as_deref());
    let kernel = kernel_tracer(cfg, &group, &paths)?;
    progress.containment_note.lock().expect("note lock").clone_from(&group.note().map(str::to_string));
    let writer = TraceWriter::create(&cfg.output)?;
    assert_eq!(
        writer.base_image_path().parent().map(std::path::absolute).and_then(Result::ok),
        unfinished,
        "the watchdog removes the trace's unfinished directory"
    );
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
    let fuse = start_disk(&paths, disk, progress)?;
    let loop_dev = attach_disk(&paths)?;
    let dev = loop_dev.path().to_path_buf();
    let site = Site { paths: &paths, dev: &dev, group: &group };
    make_fs(cfg, &mkfs, &site, progress)?;
    cfg.interrupt.check()?;

    // The clean, unmounted disk is the base image: every later state grows from it.
    progress.set("saving the base image");
    image::copy_sparse(&paths.backing, &writer.base_image_path())?;
    let faults = crate::inject::arm(&cfg.inject, &cfg.watch, cfg.fs, &writer.base_image_path())?;
    let logger = Logger::start(writer, &log);
    let run = run_workload(cfg, &workload, &site, &log, faults, (kernel, progress))?;
    let kernel_calls = read_kernel_calls(&run, &paths);

    let writer = logger.stop()?;
    let ignored_marks = log.lock().expect("log lock").ignored_marks;
    progress.set("hashing the final image");
    let final_digest = image::digest_file(&paths.backing)?;
    loop_dev.detach()?;
    fuse.unmount()?;
    let unrecorded = log.lock().expect("log lock").unrecorded;
    if unrecorded > 0 {
        return Err(RecordError::Failed(format!("{unrecorded} block requests arrived after the final unmount")));
    }

    let mut writer = writer;
    let mut meta = trace_meta(cfg, &run, final_digest);
    store_calls(cfg, (&run, kernel_calls), &paths, &mut writer, &mut meta, progress)?;
    progress.set("finishing the trace");
    let stats = writer.stats();
    let exit = meta.workload.as_ref().map_or_else(|| child::exit_info(run.status), |w| w.exit);
    let trace = writer.finish(meta)?;
    drop(backing);
    drop(work);
    Ok(RecordOutcome { trace, stats, exit, workload_wall_ms: run.wall_ms, ignored_marks, watched: run.watched })
}
