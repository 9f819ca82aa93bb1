//! Running a checker within limits: its own process group (killed on timeout and after
//! exit, so no straggler keeps the mount busy), output captured to files and read up to
//! a bound, exit waited for by a helper thread so that a run costs no polling delay.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::{CheckOutcome, OUTPUT_BYTES_MAX, Verdict};

/// The crash state a checker looks at.
#[derive(Debug, Clone, Copy)]
pub struct CheckEnv<'a> {
    pub state_root: &'a Path,
    pub marks_file: &'a Path,
    pub state_id: &'a str,
    pub trace: &'a Path,
    pub image: &'a Path,
    /// A private directory for captured output.
    pub scratch: &'a Path,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: crate::TIMEOUT_DEFAULT }
    }
}

/// Write the `BRINK_MARKS` file: one mark a line, each line ending in a newline.
pub fn write_marks(path: &Path, marks: &[String]) -> std::io::Result<()> {
    let mut text = String::with_capacity(marks.iter().map(|m| m.len() + 1).sum());
    for m in marks {
        text.push_str(m);
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Why a bounded run could not be made (what the checker itself did is in [`Finished`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The file that captures an output stream could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Capture { path: PathBuf, source: std::io::Error },
    /// The program could not be started.
    #[error("cannot start: {source}")]
    Start { source: std::io::Error },
    /// Its exit could not be waited for.
    #[error("cannot wait: {source}")]
    Wait { source: std::io::Error },
}

/// A finished bounded run.
pub struct Finished {
    /// None when the time limit was hit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub ms: u64,
}

fn read_bounded(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(OUTPUT_BYTES_MAX).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// SIGKILL the process group `pgid`; ESRCH (the group is gone already) is what we want.
fn kill_group(pgid: Pid) {
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// Start a thread that waits for `pid` to exit without reaping it (waitid with WNOWAIT)
/// and then sends on the returned channel: the caller waits on the channel with a
/// deadline, which costs no polling delay. The thread ends once the process exits; the
/// caller kills the process group and joins the thread before reaping, so the thread
/// never waits on a pid the kernel could have handed to another process.
fn spawn_exit_waiter(pid: Pid) -> std::io::Result<(JoinHandle<()>, Receiver<()>)> {
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::Builder::new().name("brink-check-wait".into()).spawn(move || {
        while waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) == Err(Errno::EINTR) {}
        let _ = tx.send(());
    })?;
    Ok((waiter, rx))
}

/// Run `cmd` (stdout and stderr to files in `scratch`) in its own process group, killing
/// the group at `timeout`; read at most `OUTPUT_BYTES_MAX` of each stream.
pub fn run_bounded(mut cmd: Command, scratch: &Path, timeout: Duration) -> Result<Finished, RunError> {
    let (out_path, err_path) = (scratch.join("checker.stdout"), scratch.join("checker.stderr"));
    let capture = |path: &Path| File::create(path).map_err(|source| RunError::Capture { path: path.into(), source });
    let (out, err) = (capture(&out_path)?, capture(&err_path)?);
    cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| RunError::Start { source })?;
    let pgid = Pid::from_raw(child.id() as i32);
    let exited = match spawn_exit_waiter(pgid) {
        Ok((thread, exit)) => {
            let exited = exit.recv_timeout(timeout).is_ok();
            kill_group(pgid);
            // The kill ended the child if it was still running, so the thread returns.
            thread.join().expect("the exit waiter does not panic");
            exited
        }
        Err(source) => {
            kill_group(pgid);
            let _ = child.wait();
            return Err(RunError::Wait { source });
        }
    };
    let status = child.wait().map_err(|source| RunError::Wait { source })?;
    Ok(Finished {
        status: exited.then_some(status),
        stdout: read_bounded(&out_path),
        stderr: read_bounded(&err_path),
        ms: start.elapsed().as_millis() as u64,
    })
}

fn last_line(text: &str) -> &str {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

/// Why a run is not a verdict (timeout, signal, exit other than 0 or 1), or None.
pub fn failure(f: &Finished, timeout: Duration) -> Option<String> {
    let Some(status) = f.status else {
        return Some(format!("timed out after {:.1}s (process group killed)", timeout.as_secs_f64()));
    };
    if let Some(sig) = status.signal() {
        return Some(format!("killed by signal {sig}"));
    }
    match status.code() {
        Some(0 | 1) => None,
        Some(c) => {
            let why = last_line(&f.stderr);
            Some(if why.is_empty() { format!("exit {c}") } else { format!("exit {c}: {why}") })
        }
        None => Some("no exit status".into()),
    }
}

/// Run one user checker on one state.
pub fn run_checker(name: &str, command: &str, env: &CheckEnv, limits: &Limits) -> CheckOutcome {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(env.state_root)
        .env("BRINK_STATE_ROOT", env.state_root)
        .env("BRINK_MARKS", env.marks_file)
        .env("BRINK_STATE_ID", env.state_id)
        .env("BRINK_TRACE", env.trace)
        .env("BRINK_IMAGE", env.image);
    let outcome =
        |verdict, message: String, details, ms| CheckOutcome { checker: name.into(), verdict, message, details, ms };
    let f = match run_bounded(cmd, env.scratch, limits.timeout) {
        Ok(f) => f,
        Err(e) => return outcome(Verdict::CheckerFailure, e.to_string(), None, 0),
    };
    if let Some(why) = failure(&f, limits.timeout) {
        return outcome(Verdict::CheckerFailure, why, None, f.ms);
    }
    let details = serde_json::from_str::<serde_json::Value>(last_line(&f.stdout)).ok().filter(|v| v.is_object());
    if f.status.and_then(|s| s.code()) == Some(0) {
        return outcome(Verdict::Consistent, String::new(), details, f.ms);
    }
    let first = f.stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let message =
        if first.is_empty() || details.is_some() && f.stdout.lines().filter(|l| !l.trim().is_empty()).count() == 1 {
            "(the checker printed no message)".to_string()
        } else {
            first.to_string()
        };
    outcome(Verdict::Violation, message, details, f.ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cmd: &str, timeout_ms: u64) -> CheckOutcome {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("marks");
        std::fs::write(&marks, "a\nb\n").unwrap();
        let env = CheckEnv {
            state_root: dir.path(),
            marks_file: &marks,
            state_id: "12-3",
            trace: Path::new("/trace"),
            image: Path::new("/dev/null"),
            scratch: dir.path(),
        };
        run_checker("c", cmd, &env, &Limits { timeout: Duration::from_millis(timeout_ms) })
    }

    #[test]
    fn verdicts_and_failures() {
        let ok = check("test \"$BRINK_STATE_ID\" = 12-3 && test $(wc -l < \"$BRINK_MARKS\") = 2", 5000);
        assert_eq!(ok.verdict, Verdict::Consistent, "{ok:?}");
        let v = check("echo 'lost txn 17'; echo more; exit 1", 5000);
        assert_eq!((v.verdict, v.message.as_str()), (Verdict::Violation, "lost txn 17"));
        let j = check("echo 'bad'; echo '{\"lost\": [17]}'; exit 1", 5000);
        assert_eq!(j.details.unwrap()["lost"][0], 17);
        let crash = check("echo boom >&2; exit 3", 5000);
        assert_eq!((crash.verdict, crash.message.as_str()), (Verdict::CheckerFailure, "exit 3: boom"));
        let sig = check("kill -SEGV $$", 5000);
        assert_eq!(sig.verdict, Verdict::CheckerFailure);
        assert!(sig.message.contains("signal 11"), "{sig:?}");
        let missing = check("no-such-checker-brink", 5000);
        assert_eq!(missing.verdict, Verdict::CheckerFailure);
        assert!(missing.message.starts_with("exit 127"), "{missing:?}");
    }

    #[test]
    fn a_hanging_checker_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let start = Instant::now();
        let h = check(&format!("sleep 600 & echo $! > {}; wait", pidfile.display()), 300);
        assert_eq!(h.verdict, Verdict::CheckerFailure);
        assert!(h.message.starts_with("timed out after 0.3s"), "{h:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        std::thread::sleep(Duration::from_millis(50));
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"));
        assert!(!alive, "the checker's background child survived");
    }

    #[test]
    fn output_is_bounded() {
        let o = check("head -c 10000000 /dev/zero | tr '\\0' x; echo; exit 1", 10000);
        assert_eq!(o.verdict, Verdict::Violation);
        assert!(o.message.len() as u64 <= OUTPUT_BYTES_MAX);
    }
}
