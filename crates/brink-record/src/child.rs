//! Child processes (mkfs, setup, the workload) run in their own process group, so a
//! terminal's Ctrl-C reaches brink alone and brink decides what dies: on an interrupt,
//! or when the workload exits leaving children behind, everything it started is stopped
//! (see `contain`) before the file system is unmounted.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use brink_trace::ExitInfo;

use crate::RecordError;
use crate::contain::Workgroup;

/// Set by the binary's signal handlers (the signal number); polled by long steps.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(pub Arc<AtomicUsize>);

impl Interrupt {
    pub fn check(&self) -> Result<(), RecordError> {
        match self.0.load(Ordering::Relaxed) {
            0 => Ok(()),
            signal => Err(RecordError::Interrupted(signal as i32)),
        }
    }
}

/// How often a running child is polled for exit and for an interrupt.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Run `cmd` to completion in its own process group, contained in `group`; stop every
/// process it left behind afterwards (see `contain`).
pub(crate) fn run(
    cmd: Command,
    what: &str,
    interrupt: &Interrupt,
    group: &Workgroup,
) -> Result<ExitStatus, RecordError> {
    run_until(cmd, what, interrupt, group, &|| false)
}

/// [`run`], but the run also ends once `ended()` says so although `cmd` still runs
/// (strace, which waits for every process it traces, once the workload it started has
/// exited): then everything left is stopped as after an exit, and `cmd`'s status is
/// whatever stopping it gave.
pub(crate) fn run_until(
    mut cmd: Command,
    what: &str,
    interrupt: &Interrupt,
    group: &Workgroup,
    ended: &dyn Fn() -> bool,
) -> Result<ExitStatus, RecordError> {
    interrupt.check()?;
    cmd.stdin(Stdio::null());
    group.prepare(&mut cmd, what)?;
    let mut child = cmd.spawn().map_err(|e| RecordError::Precondition(format!("cannot run {what}: {e}")))?;
    group.started(child.id());
    loop {
        if let Err(e) = interrupt.check() {
            group.stop(&mut child, true);
            let _ = child.wait();
            return Err(e);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                group.stop(&mut child, false);
                return Ok(status);
            }
            Ok(None) if ended() => {
                group.stop(&mut child, false);
                return child.wait().map_err(|e| RecordError::io(format!("waiting for {what}"), e));
            }
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
            Err(e) => {
                group.stop(&mut child, true);
                let _ = child.wait();
                return Err(RecordError::io(format!("waiting for {what}"), e));
            }
        }
    }
}

pub(crate) fn exit_info(status: ExitStatus) -> ExitInfo {
    ExitInfo { code: status.code(), signal: status.signal() }
}

/// The last `max` bytes of a captured output file, and whether anything was cut.
pub(crate) fn tail(path: &Path, max: u64) -> (String, bool) {
    let Ok(mut f) = File::open(path) else { return (String::new(), false) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let cut = len > max;
    if cut {
        let _ = f.seek(SeekFrom::Start(len - max));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    (String::from_utf8_lossy(&buf).into_owned(), cut)
}

/// Longest line of a captured output quoted in an error message, in characters.
const QUOTED_LINE_CHARS_MAX: usize = 300;

/// The last `n` non-empty lines of a captured output, oldest first, for one-line error
/// messages: trimmed, control characters (escape sequences, carriage returns) replaced,
/// each cut at [`QUOTED_LINE_CHARS_MAX`] characters.
pub(crate) fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let (text, _) = tail(path, 16 << 10);
    let mut lines: Vec<String> = text
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .map(|l| {
            let clean: String =
                l.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).take(QUOTED_LINE_CHARS_MAX).collect();
            if l.chars().count() > QUOTED_LINE_CHARS_MAX { format!("{clean}…") } else { clean }
        })
        .collect();
    lines.reverse();
    lines
}
