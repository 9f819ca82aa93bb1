//! The workload's system calls, recorded in the same run as its block I/O, by one of two
//! tracers ([`CallTracer`]): brink's own in the kernel (`brink_ebpf`, the default: no
//! stop of the workload per call), or strace (`brink_calls`). Once the workload has
//! ended, the calls are read back, each call's stack symbolized against the binaries that
//! ran (they are all still here), and the calls stored in the trace (`calls.log`). A mark
//! is a write to `$BRINK_MARK`, so marks are ordered exactly among the calls, as they are
//! among the block events.
//!
//! The kernel tracer follows the workload's cgroup from before its first process starts
//! until the last one is stopped. Strace runs inside the workload's cgroup, so everything
//! that stops the workload stops it too; its exit status is the workload's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use brink_calls::{CallsError, Symbolizer, TraceOptions};
use std::str::FromStr as _;

use brink_trace::{CallsMeta, ExitInfo, TraceWriter};

use crate::RecordError;

/// strace's output, in the recorder's work directory.
pub(crate) const STRACE_OUT: &str = "calls.strace";

/// The tracer as preflight found it (`strace 6.1`).
static TRACER: OnceLock<String> = OnceLock::new();

/// The kernel tracer's events file, in the recorder's work directory.
pub(crate) const EVENTS_OUT: &str = "calls.events";

/// Which tracer records the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallTracer {
    /// brink's own, in the kernel (eBPF, x86_64): about a microsecond a call.
    #[default]
    Kernel,
    /// strace: a ptrace stop per call (about 27 µs here) and, for stacks, an unwind
    /// through ptrace (about a millisecond); for machines where the kernel tracer cannot
    /// run.
    Strace,
}

/// What to record of the workload's system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Syscalls {
    /// Block I/O only.
    Off,
    /// The calls, without stacks: no source lines, but a ptrace stop per call only (a
    /// stack costs an unwind through ptrace, about a millisecond a call here:
    /// `results/bench/record-overhead.md`).
    Calls,
    /// The calls and each one's stack, symbolized to source lines.
    #[default]
    CallsAndStacks,
}

/// The strace options for `mode`.
fn options(mode: Syscalls) -> TraceOptions {
    TraceOptions { stacks: mode == Syscalls::CallsAndStacks, ..TraceOptions::default() }
}

/// The tracer can run here: the kernel tracer on x86_64 (whether the kernel accepts it
/// is known when it starts); strace present, recent enough, able to unwind stacks (if
/// asked), and allowed to trace.
pub(crate) fn preflight(mode: Syscalls, tracer: CallTracer) -> Result<(), RecordError> {
    if tracer == CallTracer::Kernel {
        if !cfg!(target_arch = "x86_64") {
            return Err(RecordError::Tracer("brink's kernel tracer knows x86_64's system calls only".into()));
        }
        return Ok(());
    }
    let info = brink_calls::check_strace(&options(mode))?;
    let _ = TRACER.set(format!("strace {}.{}", info.version.0, info.version.1));
    Ok(())
}

/// strace's child, the workload's first process, writes its process id here before it
/// execs the workload (in the recorder's work directory).
pub(crate) const TRACEE_PID: &str = "tracee.pid";

/// The command that runs `workload args…` under strace, writing its output to `out`. A
/// small shell first writes its process id to `pid_file`, then execs the workload: that
/// process is the workload, and strace, which waits for every process it traces (a
/// daemon the workload left), is not ([`Tracee`]).
pub(crate) fn traced(
    workload: &Path,
    args: &[String],
    out: &Path,
    pid_file: &Path,
    mode: Syscalls,
) -> Result<Command, RecordError> {
    let wrapper = ["/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\""].map(OsString::from);
    let argv: Vec<OsString> = wrapper
        .into_iter()
        .chain([pid_file.as_os_str().to_owned(), workload.as_os_str().to_owned()])
        .chain(args.iter().map(OsString::from))
        .collect();
    Ok(brink_calls::strace_command(&argv, out, &options(mode))?)
}

/// The workload's first process under strace, found through its pid file.
pub(crate) struct Tracee {
    pid_file: PathBuf,
    pid: std::cell::OnceCell<u32>,
}

impl Tracee {
    pub(crate) fn new(pid_file: &Path) -> Tracee {
        Tracee { pid_file: pid_file.to_path_buf(), pid: std::cell::OnceCell::new() }
    }

    /// The workload's process id, once it has written it.
    pub(crate) fn pid(&self) -> Option<u32> {
        if let Some(p) = self.pid.get() {
            return Some(*p);
        }
        let pid = std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()?;
        Some(*self.pid.get_or_init(|| pid))
    }

    /// Whether the workload's first process has exited (gone, or a zombie strace has not
    /// reaped yet).
    pub(crate) fn ended(&self) -> bool {
        self.pid().is_some_and(brink_blockdev::cgroup::process_ended)
    }
}

/// Where the workload ran: what `meta.json`'s `calls` says about the calls' paths.
pub(crate) struct Site {
    /// `$BRINK_MARK` as the workload saw it.
    pub(crate) mark_file: PathBuf,
    /// The workload's starting directory (the mounted file system).
    pub(crate) cwd: PathBuf,
}

/// Start loading the kernel tracer for the workload's cgroup, to write to `out`: the
/// kernel verifies it while the recording prepares (mkfs, setup); it is attached just
/// before the workload starts.
pub(crate) fn load_kernel(
    cgroup: Option<&Path>,
    out: &Path,
    mode: Syscalls,
) -> Result<brink_ebpf::Loading, RecordError> {
    let cgroup = cgroup.ok_or_else(|| {
        RecordError::Tracer("brink's kernel tracer follows the workload's cgroup, and cgroup v2 is unavailable".into())
    })?;
    let opts = brink_ebpf::Options { stacks: mode == Syscalls::CallsAndStacks, ..Default::default() };
    brink_ebpf::Tracer::load(cgroup, out, opts).map_err(|e| RecordError::Tracer(e.to_string()))
}

/// Read the kernel tracer's events at `events`, decode and symbolize the calls, ready
/// for the trace.
pub(crate) fn prepare_kernel(events: &Path, stats: brink_ebpf::Stats, site: &Site) -> Result<Prepared, RecordError> {
    let bytes = std::fs::read(events).map_err(|e| RecordError::io(format!("reading {}", events.display()), e))?;
    let (records, unknown) = brink_ebpf::events::read_framed(&bytes);
    drop(bytes);
    let cwd = site.cwd.as_os_str().as_encoded_bytes();
    let decoded = brink_ebpf::decode(records, cwd, Some(stats.boot_offset_ns));
    let mut notes = decoded.notes;
    if stats.dropped > 0 {
        notes.push(format!("the kernel tracer's buffer overflowed: {} records were dropped", stats.dropped));
    }
    if unknown > 0 {
        notes.push(format!("{unknown} records of the kernel tracer could not be read"));
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let tracer = format!("brink-ebpf (Linux {})", release.trim());
    Ok(prepare(decoded.parsed, notes, tracer, site))
}

/// Parse strace's output at `strace_out`, symbolize the calls' stacks, and write them
/// into the trace; the `calls` part of `meta.json` to go with them, and how the workload's
/// first process (`tracee`) ended, if strace saw it end.
pub(crate) fn store(
    strace_out: &Path,
    site: &Site,
    tracee: Option<u32>,
    writer: &mut TraceWriter,
) -> Result<(CallsMeta, Option<ExitInfo>), RecordError> {
    let parsed = brink_calls::parse_file(strace_out)?;
    let exit = parsed.ends.iter().find(|e| Some(e.tid) == tracee).and_then(|e| exit_info(&e.how));
    let mut notes = Vec::new();
    if parsed.last_line_cut {
        notes.push(
            "strace was stopped while writing its last line (the workload's processes were killed at the end of the recording): that call is not recorded".into(),
        );
    }
    let tracer = TRACER.get().cloned().unwrap_or_else(|| "strace".into());
    Ok((write(prepare(parsed, notes, tracer, site), writer)?, exit))
}

/// The calls read back and made ready for the trace: stacks symbolized, scripts' lines
/// named, what cannot be traced collected.
pub(crate) struct Prepared {
    calls: Vec<brink_calls::Call>,
    meta: CallsMeta,
}

/// Symbolize the calls' stacks, name the scripts' lines, collect what cannot be traced
/// (with `notes`, what the tracer missed). Pure work: it may run beside the recording's
/// last steps.
fn prepare(parsed: brink_calls::Parsed, notes: Vec<String>, tracer: String, site: &Site) -> Prepared {
    let mut calls = parsed.calls;
    let mut symbolizer = Symbolizer::new();
    let mut untraceable: Vec<String> = Vec::new();
    for call in &mut calls {
        symbolizer.symbolize_call(call);
        if let Some(u) = call.untraceable() {
            let what = u.what();
            if !untraceable.contains(&what) {
                untraceable.push(what);
            }
        }
    }
    untraceable.extend(notes);
    brink_calls::attribute_scripts(&mut calls, site.mark_file.as_os_str().as_encoded_bytes());
    let meta = CallsMeta {
        tracer,
        mark_file: site.mark_file.to_string_lossy().into_owned(),
        cwd: site.cwd.to_string_lossy().into_owned(),
        untraceable,
        started_before: parsed.started_before,
        ..CallsMeta::default()
    };
    Prepared { calls, meta }
}

/// Write prepared calls into the trace; the `calls` part of `meta.json` to go with them.
pub(crate) fn write(prepared: Prepared, writer: &mut TraceWriter) -> Result<CallsMeta, RecordError> {
    writer.calls(prepared.calls)?;
    Ok(prepared.meta)
}

/// `err`, with strace's output at `strace_out` kept beside the trace `output` when it
/// could not be read back (a form of strace's output brink does not know is a bug to
/// report, with that file).
pub(crate) fn keep_unreadable(err: RecordError, strace_out: &Path, output: &Path) -> RecordError {
    let RecordError::Calls { source, .. } = err else { return err };
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".calls.strace");
    let kept_at = output.with_file_name(name);
    let kept = match std::fs::copy(strace_out, &kept_at) {
        Ok(_) => format!("; strace's output is kept at {}", kept_at.display()),
        Err(_) => String::new(),
    };
    RecordError::Calls { source, kept }
}

/// A process end as the trace's exit information.
fn exit_info(how: &brink_calls::EndKind) -> Option<ExitInfo> {
    match how {
        brink_calls::EndKind::Exited(code) => Some(ExitInfo { code: i32::try_from(*code).ok(), signal: None }),
        brink_calls::EndKind::Killed { signal, .. } => {
            let signal = nix::sys::signal::Signal::from_str(signal).ok().map(|s| s as i32);
            Some(ExitInfo { code: None, signal })
        }
        _ => None,
    }
}

/// A `CallsError` as a recording error.
impl From<CallsError> for RecordError {
    fn from(source: CallsError) -> RecordError {
        RecordError::Calls { source, kept: String::new() }
    }
}
