//! Loading the kernel half, attaching it to one cgroup, and draining its ring buffer
//! into the events file on a thread of its own until the workload has ended.

use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBufferBuilder};

use crate::events::{maps_record, stack_view, unwound_record, wants_maps, write_framed};
use crate::stacks::Live;
use crate::syscalls::SYSCALLS;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/calls.skel.rs"));
}

/// How long the drain thread waits for records before it looks at its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("brink's system-call tracer (eBPF) could not start: {0}")]
    Load(String),
    #[error("the system-call tracer's events file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the system-call tracer's thread ended abnormally")]
    Thread,
}

/// What to record.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Copy the top of each call's user stack (for source lines).
    pub stacks: bool,
    /// Unwind each stack as it arrives, against its process's memory map as read then,
    /// keeping its frames rather than its 8 KiB copy (the default). Off, every stack is
    /// kept and unwound after the recording (tests use it).
    pub unwind_live: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { stacks: true, unwind_live: true }
    }
}

/// What the tracer saw, for the recording's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub bytes: u64,
    /// Records the kernel half dropped because the ring buffer was full.
    pub dropped: u64,
    /// User memory reads that failed (strings, data or stacks not resident).
    pub unreadable: u64,
    /// Memory maps not read because the process had already ended: its calls' stacks
    /// cannot be unwound.
    pub maps_missed: u64,
    /// Unix time minus the kernel's boot-time clock (which timestamps the calls), in
    /// nanoseconds, as the tracer finished (the two clocks move together but for
    /// adjustments of the wall clock).
    pub boot_offset_ns: i64,
}

/// Unix time minus boot time, now.
fn boot_offset_ns() -> i64 {
    use nix::time::{ClockId, clock_gettime};
    let ns = |c| clock_gettime(c).map_or(0, |t| t.tv_sec() * 1_000_000_000 + t.tv_nsec());
    ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_BOOTTIME)
}

/// The file-backed lines of `/proc/PID/maps` (what unwinding needs), if the process is
/// still there.
fn read_maps(pid: u32) -> Option<Vec<u8>> {
    let text = std::fs::read(format!("/proc/{pid}/maps")).ok()?;
    let kept: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| l.windows(2).any(|w| w == b" /")).collect();
    Some(kept.join(&b'\n'))
}

/// A running tracer; [`Tracer::finish`] stops it.
pub struct Tracer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Stats, EbpfError>>,
}

/// A tracer loading (the kernel verifies the program: tens of milliseconds), not yet
/// attached: a recording starts it early, beside its other preparations, and attaches
/// it just before the workload starts. Dropped, it ends without attaching.
pub struct Loading {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Stats, EbpfError>>,
    ready: Receiver<Result<(), String>>,
    go: SyncSender<()>,
}

impl Tracer {
    /// Trace the processes of the cgroup (v2) at `cgroup` into the events file `out`;
    /// returns once the tracer is attached, so that a process started after it is
    /// traced from its first call.
    pub fn start(cgroup: &Path, out: &Path, opts: Options) -> Result<Tracer, EbpfError> {
        Tracer::load(cgroup, out, opts)?.attach()
    }

    /// Start loading a tracer for the cgroup (v2) at `cgroup` (which must exist), to
    /// write into the events file `out`; [`Loading::attach`] starts it tracing.
    pub fn load(cgroup: &Path, out: &Path, opts: Options) -> Result<Loading, EbpfError> {
        let cgroup_id = std::fs::metadata(cgroup)
            .map_err(|e| EbpfError::Load(format!("cannot read the cgroup {}: {e}", cgroup.display())))?
            .ino();
        let file = std::fs::File::create(out).map_err(|e| EbpfError::Io { path: out.to_path_buf(), source: e })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = sync_channel(1);
        let (go, go_rx) = sync_channel(1);
        let (flag, path) = (stop.clone(), out.to_path_buf());
        let out = BufWriter::with_capacity(1 << 20, file);
        let thread = std::thread::Builder::new()
            .name("brink-ebpf".into())
            .spawn(move || run(cgroup_id, opts, out, &path, &flag, (ready_tx, go_rx)))
            .map_err(|e| EbpfError::Load(e.to_string()))?;
        Ok(Loading { stop, thread, ready, go })
    }

    /// Drain what is left, detach, and close the events file.
    pub fn finish(self) -> Result<Stats, EbpfError> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| EbpfError::Thread)?
    }
}

impl Loading {
    /// Attach the loaded tracer; returns once it traces.
    pub fn attach(self) -> Result<Tracer, EbpfError> {
        let Loading { stop, thread, ready, go } = self;
        let _ = go.send(());
        match ready.recv() {
            Ok(Ok(())) => Ok(Tracer { stop, thread }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(EbpfError::Load(e))
            }
            Err(_) => Err(thread.join().map_err(|_| EbpfError::Thread)?.err().unwrap_or(EbpfError::Thread)),
        }
    }
}

/// The drain thread: load, attach, say ready, copy records until stopped.
fn run(
    cgroup_id: u64,
    opts: Options,
    mut out: BufWriter<std::fs::File>,
    path: &Path,
    stop: &AtomicBool,
    (ready, go): (SyncSender<Result<(), String>>, Receiver<()>),
) -> Result<Stats, EbpfError> {
    let mut storage = std::mem::MaybeUninit::uninit();
    let mut skel = match load(&mut storage, cgroup_id, opts) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(Stats::default());
        }
    };
    // Told to attach, or dropped unattached (the recording failed before its workload).
    if go.recv().is_err() {
        return Ok(Stats::default());
    }
    if let Err(e) = skel.attach() {
        let _ = ready.send(Err(format!("attaching to the system-call tracepoints: {e}")));
        return Ok(Stats::default());
    }
    let mut stats = Stats::default();
    let mut io_error = None;
    {
        let mut builder = RingBufferBuilder::new();
        let (st, err, w) = (&mut stats, &mut io_error, &mut out);
        let mut known = std::collections::HashSet::new();
        let mut live = Live::new(opts.unwind_live);
        let added = builder.add(&skel.maps.events, move |rec: &[u8]| {
            st.records += 1;
            st.bytes += rec.len() as u64;
            if err.is_none() {
                *err = drain(rec, w, &mut known, &mut live, st).err();
            }
            0
        });
        let ring = match added.map(|_| ()).and_then(|()| builder.build()) {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return Ok(Stats::default());
            }
        };
        let _ = ready.send(Ok(()));
        while !stop.load(Ordering::Acquire) {
            let _ = ring.poll(POLL_INTERVAL);
        }
        let _ = ring.consume();
    }
    let counts = |k: u32| {
        skel.maps
            .counts
            .lookup(&k.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten()
            .map_or(0, |v| u64::from_ne_bytes(v.get(..8).and_then(|b| b.try_into().ok()).unwrap_or_default()))
    };
    stats.boot_offset_ns = boot_offset_ns();
    stats.dropped = counts(0);
    stats.unreadable = counts(1);
    let flushed = io_error.map_or_else(|| out.flush(), Err);
    flushed.map_err(|e| EbpfError::Io { path: path.to_path_buf(), source: e })?;
    Ok(stats)
}

/// Write one record of the kernel half to the events file: first the memory map of its
/// process if it is new or may have changed (read now, while it is alive), then the
/// record, its stack unwound if that map was read.
fn drain(
    rec: &[u8],
    w: &mut BufWriter<std::fs::File>,
    known: &mut std::collections::HashSet<u32>,
    live: &mut Live,
    st: &mut Stats,
) -> std::io::Result<()> {
    if let Some((pid, seq)) = wants_maps(rec, known) {
        match read_maps(pid) {
            Some(text) => {
                write_framed(w, &maps_record(pid, seq, &text))?;
                live.maps_read(pid, &text);
            }
            None => st.maps_missed += 1,
        }
    }
    if let Some((tgid, regs, stack)) = stack_view(rec) {
        if let Some((frames, cut)) = live.unwind(tgid, regs, stack) {
            if let Some(compact) = unwound_record(rec, &frames, cut) {
                return write_framed(w, &compact);
            }
        }
    }
    write_framed(w, rec)
}

/// Open, configure and load the kernel half, and fill its table of calls.
fn load(
    storage: &mut std::mem::MaybeUninit<libbpf_rs::OpenObject>,
    cgroup_id: u64,
    opts: Options,
) -> Result<skel::CallsSkel<'_>, String> {
    let mut open = skel::CallsSkelBuilder::default().open(storage).map_err(|e| e.to_string())?;
    let rodata = open.maps.rodata_data.as_deref_mut().ok_or("the program has no read-only data")?;
    rodata.target_cgroup = cgroup_id;
    rodata.want_stacks = u8::from(opts.stacks);
    let skel = open.load().map_err(|e| format!("the kernel refused the program: {e}"))?;
    for (nr, _, spec) in SYSCALLS {
        skel.maps.specs.update(&nr.to_ne_bytes(), &spec.bytes(), MapFlags::ANY).map_err(|e| e.to_string())?;
    }
    Ok(skel)
}
