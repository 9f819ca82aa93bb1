//! Running a checker within limits: contained (see `contain`: its own cgroup, or its
//! process group and the processes using the state's mount), stopped with SIGTERM and a
//! grace period at the time limit, on an interrupt and after its exit (so no straggler
//! keeps the mount busy), output read through pipes and kept up to a bound (see
//! `capture`), exit waited for by a helper thread so that a run costs no polling delay.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brink_blockdev::FsKind;
use brink_blockdev::cgroup::{Cgroup, CgroupError};
use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::capture::Reader;
use crate::contain::{Ending, Jail, KILL_WAIT_MAX, STOP_GRACE, STOP_GRACE_INTERRUPTED, Scope, Stopped};
use crate::{CheckOutcome, Verdict};

/// How long the output pipes may stay open after every process of a run was stopped; only
/// a process the fallback did not find can hold them longer, and its later output is lost.
const READ_WAIT_MAX: Duration = Duration::from_secs(1);

/// The crash state a checker looks at, and how the checker is called.
#[derive(Debug, Clone, Copy)]
pub struct CheckEnv<'a> {
    pub state_root: &'a Path,
    pub marks_file: &'a Path,
    pub state_id: &'a str,
    pub trace: &'a Path,
    pub image: &'a Path,
    pub protocol: Protocol,
    /// The worker checking the state (ALICE's `WORKER_ID`).
    pub worker: usize,
}

/// How a checker is called and what its exit means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// brink's: the environment (`BRINK_MARKS`, …), the state as the working directory;
    /// exit 0 consistent, 1 violation, anything else a checker failure.
    #[default]
    Brink,
    /// ALICE's, so its checkers run unchanged: `checker CRASHED_DIR STDOUT_FILE
    /// WORKER_ID`, the acknowledgements so far (the marks, one a line) as the stdout
    /// file; any non-zero exit or a signal (an assertion's abort) is a violation. Only
    /// a timeout or brink's interrupt is not a verdict. brink's environment is set too.
    Alice,
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
    /// An output stream could not be read: what arrived cannot be trusted as a verdict.
    #[error("cannot read the checker's {stream}")]
    Capture { stream: &'static str, source: std::io::Error },
    /// The run's cgroup could not be made or joined.
    #[error("cannot contain the checker")]
    Cgroup(#[source] CgroupError),
    /// The program could not be started.
    #[error("cannot start: {source}")]
    Start { source: std::io::Error },
    /// Its exit could not be waited for.
    #[error("cannot wait: {source}")]
    Wait { source: std::io::Error },
}

/// A finished bounded run.
#[derive(Debug)]
pub struct Finished {
    /// None when the time limit was hit or brink was interrupted.
    pub status: Option<ExitStatus>,
    /// The first `OUTPUT_BYTES_MAX` and last `OUTPUT_TAIL_BYTES_MAX` bytes of each stream;
    /// when more was written, a line `[brink: N bytes omitted]` between them.
    pub stdout: String,
    pub stderr: String,
    /// Bytes written but not kept.
    pub stdout_omitted: u64,
    pub stderr_omitted: u64,
    /// Until the checker's own process exited (or was stopped); stopping is not counted.
    pub ms: u64,
    /// brink's interrupt stopped the run: no verdict, re-check the state later.
    pub interrupted: bool,
    /// What was left running and how it was stopped.
    pub stopped: Stopped,
}

/// One checker's outcome on one state, with how its processes were stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRun {
    pub outcome: CheckOutcome,
    pub stopped: Stopped,
    /// brink's interrupt stopped the run: `outcome` is a checker failure that says so,
    /// not to be recorded; the state is to be checked again on resume.
    pub interrupted: bool,
}

/// Start a thread that waits for `pid` to exit without reaping it (waitid with WNOWAIT)
/// and then sends on the returned channel: the caller waits on the channel with a
/// deadline, which costs no polling delay. The caller stops the run's processes before
/// it reaps, so neither the thread nor a process-group signal of the fallback can name
/// a pid the kernel handed to another process.
fn spawn_exit_waiter(pid: Pid) -> std::io::Result<(JoinHandle<()>, Receiver<()>)> {
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::Builder::new().name("brink-check-wait".into()).spawn(move || {
        while waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) == Err(Errno::EINTR) {}
        let _ = tx.send(());
    })?;
    Ok((waiter, rx))
}

/// Reap the checker's process once its run was stopped. None if it never exited (stuck in
/// the kernel even after SIGKILL): it and its waiter thread are left, not waited for.
fn reap(
    mut child: Child,
    waiter: JoinHandle<()>,
    exit: &Receiver<()>,
    ending: Ending,
) -> Result<Option<ExitStatus>, RunError> {
    if ending != Ending::Exited && exit.recv_timeout(KILL_WAIT_MAX).is_err() {
        return Ok(None);
    }
    waiter.join().expect("the exit waiter does not panic");
    let status = child.wait().map_err(|source| RunError::Wait { source })?;
    Ok((ending == Ending::Exited).then_some(status))
}

/// The readers of a child's two output streams.
fn readers(child: &mut Child) -> Result<(Reader, Reader), RunError> {
    let out = child.stdout.take().expect("stdout is piped");
    let err = child.stderr.take().expect("stderr is piped");
    let start = |r: std::io::Result<Reader>, stream| r.map_err(|source| RunError::Capture { stream, source });
    Ok((start(Reader::spawn(out), "stdout")?, start(Reader::spawn(err), "stderr")?))
}

impl Jail {
    /// Run `cmd` contained, stdin empty, output captured; stop it at `timeout`, on an
    /// interrupt, and stop whatever it left running once it exits. `watched`: the
    /// directory whose users belong to the run when cgroups are unavailable (the state's
    /// mount; None when nothing is mounted for it).
    pub fn run_bounded(&self, cmd: Command, watched: Option<&Path>, timeout: Duration) -> Result<Finished, RunError> {
        let cgroup = self.run_cgroup().map_err(RunError::Cgroup)?;
        let result = self.run_in(cmd, cgroup.as_ref(), watched, timeout);
        if let Some(cg) = &cgroup {
            // Empty by now unless survivors are reported; then the directory stays and
            // the jail tries again when dropped.
            let _ = cg.remove();
        }
        result
    }

    fn run_in(
        &self,
        mut cmd: Command,
        cgroup: Option<&Cgroup>,
        watched: Option<&Path>,
        timeout: Duration,
    ) -> Result<Finished, RunError> {
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(cg) = cgroup {
            cg.join_on_exec(&mut cmd).map_err(RunError::Cgroup)?;
        }
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|source| RunError::Start { source })?;
        let scope = Scope { cgroup, main: Pid::from_raw(child.id() as i32), watched };
        let started = readers(&mut child).and_then(|r| {
            let waiter = spawn_exit_waiter(scope.main).map_err(|source| RunError::Wait { source })?;
            Ok((r, waiter))
        });
        let ((out, err), (waiter, exit)) = match started {
            Ok(s) => s,
            Err(e) => {
                scope.stop(true, Duration::ZERO, &|| false);
                let _ = child.wait();
                return Err(e);
            }
        };
        let ending = self.wait_for(&exit, timeout);
        let ms = start.elapsed().as_millis() as u64;
        let grace = if ending == Ending::Interrupted { STOP_GRACE_INTERRUPTED } else { STOP_GRACE };
        let stopped = scope.stop(ending != Ending::Exited, grace, &|| self.interrupted());
        let status = reap(child, waiter, &exit, ending)?;
        let capture =
            |r: Reader, stream| r.finish(READ_WAIT_MAX).map_err(|source| RunError::Capture { stream, source });
        let (out, err) = (capture(out, "stdout")?, capture(err, "stderr")?);
        Ok(Finished {
            status,
            stdout: out.text,
            stderr: err.text,
            stdout_omitted: out.omitted,
            stderr_omitted: err.omitted,
            ms,
            interrupted: ending == Ending::Interrupted,
            stopped,
        })
    }
}

fn last_line(text: &str) -> &str {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

/// Why a run is not a verdict (timeout, interrupt, signal, exit other than 0 or 1), or None.
pub fn failure(f: &Finished, timeout: Duration) -> Option<String> {
    let Some(status) = f.status else {
        if f.interrupted {
            return Some("interrupted: brink was stopped (its processes were stopped)".into());
        }
        return Some(format!("timed out after {:.1}s (its processes were stopped)", timeout.as_secs_f64()));
    };
    if let Some(sig) = status.signal() {
        return Some(format!("killed by signal {sig}"));
    }
    match status.code() {
        Some(0 | 1) => None,
        Some(c) => {
            // The checker's own words: its last error line, else its first output line
            // (where the protocol has a checker say what is wrong).
            let first_out = f.stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
            let why = Some(last_line(&f.stderr)).filter(|l| !l.is_empty()).unwrap_or(first_out);
            Some(if why.is_empty() { format!("exit {c}") } else { format!("exit {c}: {why}") })
        }
        None => Some("no exit status".into()),
    }
}

/// The outcome a finished user checker run means.
fn judge(name: &str, f: &Finished, timeout: Duration) -> CheckOutcome {
    let outcome =
        |verdict, message: String, details| CheckOutcome { checker: name.into(), verdict, message, details, ms: f.ms };
    if let Some(why) = failure(f, timeout) {
        return outcome(Verdict::CheckerFailure, why, None);
    }
    let details = serde_json::from_str::<serde_json::Value>(last_line(&f.stdout)).ok().filter(|v| v.is_object());
    if f.status.and_then(|s| s.code()) == Some(0) {
        return outcome(Verdict::Consistent, String::new(), details);
    }
    let first = f.stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let message =
        if first.is_empty() || details.is_some() && f.stdout.lines().filter(|l| !l.trim().is_empty()).count() == 1 {
            "(the checker printed no message)".to_string()
        } else {
            first.to_string()
        };
    outcome(Verdict::Violation, message, details)
}

/// Characters that make a command need the shell (operators, expansions, globs,
/// assignments, comments).
const SHELL_SYNTAX: &[char] =
    &['|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', ']', '{', '}', '~', '#', '=', '!', '\n', '\\'];

/// The process that runs `command`. A command that is an absolute path to an executable
/// program (a `#!` script or an ELF file) followed by plain words is executed directly:
/// a shell per state costs a fork and an exec, which is most of a cheap checker's time.
/// Anything else (shell syntax, a name looked up in `PATH`, a file `sh` would have to
/// interpret) runs through `sh -c` exactly as written, so both ways mean the same.
fn command_of(command: &str) -> Command {
    match direct_argv(command) {
        Some(argv) => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
        None => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(command);
            cmd
        }
    }
}

/// `command CRASHED_DIR STDOUT_FILE WORKER_ID` (ALICE's call), through `command_of`: the
/// three arguments appended as words.
fn alice_command(command: &str, env: &CheckEnv) -> Command {
    let args = [env.state_root.as_os_str(), env.marks_file.as_os_str(), std::ffi::OsStr::new(&env.worker.to_string())]
        .map(|a| a.to_string_lossy().into_owned());
    let quoted: Vec<String> = args.iter().map(|a| shlex::try_quote(a).map_or(a.clone(), |q| q.into_owned())).collect();
    command_of(&format!("{command} {}", quoted.join(" ")))
}

/// ALICE's reading of a finished run: any non-zero exit or signal is a violation, said
/// by the checker's first output line, else its last error line, else how it ended.
fn judge_alice(name: &str, f: &Finished, timeout: Duration) -> CheckOutcome {
    let outcome =
        |verdict, message: String| CheckOutcome { checker: name.into(), verdict, message, details: None, ms: f.ms };
    let Some(status) = f.status else {
        return outcome(Verdict::CheckerFailure, failure(f, timeout).unwrap_or_default());
    };
    if status.code() == Some(0) {
        return outcome(Verdict::Consistent, String::new());
    }
    let how = match status.signal() {
        Some(sig) => format!("killed by signal {sig}"),
        None => format!("exit {}", status.code().unwrap_or(-1)),
    };
    let said = f.stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_else(|| last_line(&f.stderr));
    outcome(Verdict::Violation, if said.is_empty() { how } else { format!("{said} ({how})") })
}

/// The words of `command` when it can be executed without a shell (`command_of`).
fn direct_argv(command: &str) -> Option<Vec<String>> {
    if command.contains(SHELL_SYNTAX) {
        return None;
    }
    let argv = shlex::split(command)?;
    let program = Path::new(argv.first()?);
    let executable = std::fs::metadata(program).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !program.is_absolute() || !executable {
        return None;
    }
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(program).and_then(|mut f| f.read(&mut magic)).ok()?;
    (magic[..n].starts_with(b"#!") || magic[..n] == *b"\x7fELF").then_some(argv)
}

impl Jail {
    /// Run one user checker on one state, contained; processes using the state's mount
    /// belong to the run in fallback mode.
    pub fn run_checker(&self, name: &str, command: &str, env: &CheckEnv, limits: &Limits) -> CheckRun {
        let mut cmd = match env.protocol {
            Protocol::Brink => command_of(command),
            Protocol::Alice => alice_command(command, env),
        };
        cmd.current_dir(env.state_root)
            .env("BRINK_STATE_ROOT", env.state_root)
            .env("BRINK_MARKS", env.marks_file)
            .env("BRINK_STATE_ID", env.state_id)
            .env("BRINK_TRACE", env.trace)
            .env("BRINK_IMAGE", env.image);
        match self.run_bounded(cmd, Some(env.state_root), limits.timeout) {
            Ok(f) => CheckRun {
                outcome: match env.protocol {
                    Protocol::Brink => judge(name, &f, limits.timeout),
                    Protocol::Alice => judge_alice(name, &f, limits.timeout),
                },
                stopped: f.stopped,
                interrupted: f.interrupted,
            },
            Err(e) => CheckRun {
                outcome: CheckOutcome {
                    checker: name.into(),
                    verdict: Verdict::CheckerFailure,
                    message: error_line(&e),
                    details: None,
                    ms: 0,
                },
                stopped: Stopped::default(),
                interrupted: false,
            },
        }
    }

    /// The built-in fsck checker, contained.
    pub fn fsck(&self, fs: FsKind, device: &Path, timeout: Duration) -> CheckRun {
        crate::fsck::fsck_in(self, fs, device, timeout)
    }
}

/// An error with its causes, as one line "what: why: …". Errors in this workspace often
/// spell out their cause in their own message too, so a cause already said anywhere
/// before it is skipped.
pub fn error_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OUTPUT_BYTES_MAX;

    fn check(cmd: &str, timeout_ms: u64) -> CheckOutcome {
        check_as(Protocol::Brink, cmd, timeout_ms)
    }

    fn check_as(protocol: Protocol, cmd: &str, timeout_ms: u64) -> CheckOutcome {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("marks");
        std::fs::write(&marks, "a\nb\n").unwrap();
        let env = CheckEnv {
            state_root: dir.path(),
            marks_file: &marks,
            state_id: "12-3",
            trace: Path::new("/trace"),
            image: Path::new("/dev/null"),
            protocol,
            worker: 3,
        };
        Jail::new().run_checker("c", cmd, &env, &Limits { timeout: Duration::from_millis(timeout_ms) }).outcome
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
        let said = check("echo 'no server binary'; exit 2", 5000);
        assert_eq!(said.message, "exit 2: no server binary", "stdout's first line when stderr is silent");
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

    /// ALICE's checkers run unchanged: called with the state's directory, the stdout file
    /// (the acknowledgements, one a line) and the worker's id; any non-zero exit or signal
    /// (an assertion's abort) is a violation, a timeout is not a verdict.
    #[test]
    fn alice_checkers_get_three_arguments_and_every_failure_is_a_violation() {
        let args = r#"grep -qx a "$2" && grep -qx b "$2" && [ -d "$1" ] && [ "$3" = 3 ] && [ "$PWD" = "$1" ]"#;
        assert_eq!(check_as(Protocol::Alice, &format!("sh -c '{args}' alice"), 5000).verdict, Verdict::Consistent);
        let two = check_as(Protocol::Alice, "echo 'durability violated'; exit 2", 5000);
        assert_eq!((two.verdict, two.message.as_str()), (Verdict::Violation, "durability violated (exit 2)"));
        let abort = check_as(Protocol::Alice, "kill -ABRT $$; :", 5000);
        assert_eq!((abort.verdict, abort.message.as_str()), (Verdict::Violation, "killed by signal 6"));
        let slow = check_as(Protocol::Alice, "sleep 5; :", 200);
        assert_eq!(slow.verdict, Verdict::CheckerFailure, "{slow:?}");
        assert_eq!(check("exit 2", 5000).verdict, Verdict::CheckerFailure, "brink's protocol is unchanged");
    }

    /// A path to an executable script with plain arguments runs without a shell; shell
    /// syntax, names found in PATH and files sh would have to interpret go through `sh -c`.
    #[test]
    fn only_a_plain_executable_path_runs_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("my check.sh");
        std::fs::write(&script, "#!/bin/sh\necho \"$# $1 $(basename \"$0\")\"; exit 1\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let quoted = shlex::try_quote(script.to_str().unwrap()).unwrap().into_owned();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "echo hi\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
        let words = |c: &str| direct_argv(c).map(|a| a.len());
        assert_eq!(words(&format!("{quoted} 'a b' c")), Some(3));
        assert_eq!(words(&format!("{quoted} > out")), None);
        assert_eq!(words(&format!("X=1 {quoted}")), None);
        assert_eq!(words("true"), None, "a PATH lookup");
        assert_eq!(words(plain.to_str().unwrap()), None, "no #!: sh interprets it");
        assert_eq!(words("./check.sh"), None, "relative");
        // Run directly, it gets its arguments as the shell would have split them.
        let o = check(&format!("{quoted} 'a b' c"), 5000);
        assert_eq!(o.message, "2 a b my check.sh");
    }
}
