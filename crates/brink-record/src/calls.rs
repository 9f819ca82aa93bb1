//! The workload's system calls, recorded in the same run as its block I/O: the workload
//! runs under strace (`brink_calls`), and once it has ended, strace's output is parsed,
//! each call's stack symbolized against the binaries that ran (they are all still here),
//! and the calls stored in the trace (`calls.log`). A mark is a write to `$BRINK_MARK`,
//! so marks are ordered exactly among the calls, as they are among the block events.
//!
//! Strace runs inside the workload's cgroup, so everything that stops the workload stops
//! it too; its exit status is the workload's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use brink_calls::{CallsError, Symbolizer, TraceOptions};
use brink_trace::{CallsMeta, TraceWriter};

use crate::RecordError;

/// strace's output, in the recorder's work directory.
pub(crate) const STRACE_OUT: &str = "calls.strace";

/// The tracer as preflight found it (`strace 6.1`).
static TRACER: OnceLock<String> = OnceLock::new();

/// Strace is here, recent enough, can unwind stacks, and may trace (ptrace is allowed).
pub(crate) fn preflight() -> Result<(), RecordError> {
    let info = brink_calls::check_strace(&TraceOptions::default())?;
    let _ = TRACER.set(format!("strace {}.{}", info.version.0, info.version.1));
    Ok(())
}

/// The command that runs `workload args…` under strace, writing its output to `out`.
pub(crate) fn traced(workload: &Path, args: &[String], out: &Path) -> Result<Command, RecordError> {
    let argv: Vec<OsString> =
        std::iter::once(workload.as_os_str().to_owned()).chain(args.iter().map(OsString::from)).collect();
    Ok(brink_calls::strace_command(&argv, out, &TraceOptions::default())?)
}

/// Where the workload ran: what `meta.json`'s `calls` says about the calls' paths.
pub(crate) struct Site {
    /// `$BRINK_MARK` as the workload saw it.
    pub(crate) mark_file: PathBuf,
    /// The workload's starting directory (the mounted file system).
    pub(crate) cwd: PathBuf,
}

/// Parse strace's output at `strace_out`, symbolize the calls' stacks, and write them
/// into the trace; the `calls` part of `meta.json` to go with them.
pub(crate) fn store(strace_out: &Path, site: &Site, writer: &mut TraceWriter) -> Result<CallsMeta, RecordError> {
    let parsed = brink_calls::parse_file(strace_out)?;
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
    brink_calls::attribute_scripts(&mut calls, site.mark_file.as_os_str().as_encoded_bytes());
    writer.calls(calls)?;
    Ok(CallsMeta {
        tracer: TRACER.get().cloned().unwrap_or_else(|| "strace".into()),
        mark_file: site.mark_file.to_string_lossy().into_owned(),
        cwd: site.cwd.to_string_lossy().into_owned(),
        untraceable,
        ..CallsMeta::default()
    })
}

/// A `CallsError` as a recording error.
impl From<CallsError> for RecordError {
    fn from(source: CallsError) -> RecordError {
        RecordError::Calls { source }
    }
}
