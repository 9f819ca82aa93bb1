//! Panics and signals (issue 13): a panic ends brink with one `brink: internal error`
//! line, cleanup and exit 101, never a hang; SIGINT stops an exploration within about
//! two seconds, checkers in flight included, and their states are checked again on
//! resume; a second SIGINT skips the checkers' grace period, not the cleanup; a partial
//! record with a bad state id is an input error, not a panic.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::explore::{records, summary, without_times};
use crate::{Scratch, assert_no_mounts_or_loops, brink, privileged, run, stderr};

/// How long a stopped brink may take to exit here: the promise is two seconds; the
/// bound is generous for a loaded machine (a behaviour bound, not a benchmark).
const STOP_BOUND: Duration = Duration::from_secs(5);

/// How long any command of these tests may run before it counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(120);

const WORKLOAD: &str = "printf new > file.tmp && sync file.tmp && mv file.tmp file && echo done > \"$BRINK_MARK\"";

/// A checker that sleeps 30 s on each state while `hold` exists (after touching
/// `started` with its shell's pid), and otherwise judges the state at once: the same
/// command for the interrupted run, its resume and the uninterrupted run.
fn checker(s: &Scratch, hold: &Path, ignore_term: bool) -> String {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    format!(
        "if [ -e {hold} ]; then {trap}echo $$ > {started}; sleep 30; fi; \
         c=$(cat file 2>/dev/null); if grep -qx done \"$BRINK_MARKS\" && [ \"$c\" != new ]; then echo lost; exit 1; fi",
        hold = hold.display(),
        started = s.path("started").display(),
    )
}

fn record(s: &Scratch) -> PathBuf {
    let trace = s.path("t");
    let o = run(s
        .record(&["--mount-opts", "data=ordered", "--setup", "printf old > file", "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c", WORKLOAD]));
    assert!(o.status.success(), "{}", stderr(&o));
    trace
}

fn explore(s: &Scratch, trace: &Path, out: &str, extra: &[&str]) -> std::process::Command {
    let mut c = brink();
    c.env("TMPDIR", s.tmpdir()).arg("explore").arg(trace).arg("-o").arg(s.path(out)).args(extra);
    c
}

/// The child's exit status, or None if it did not exit within `limit` (it is killed).
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < HANG_BOUND, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Start `cmd` with its stderr kept, then wait for it ([`HANG_BOUND`] at most): its exit
/// code (None if it hung and was killed) and its stderr.
fn spawn_and_wait(cmd: &mut std::process::Command, before_wait: impl FnOnce(&Child)) -> (Option<i32>, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    before_wait(&child);
    let status = wait_at_most(&mut child, HANG_BOUND);
    (status.and_then(|s| s.code()), stderr_of(child))
}

/// Every checker of the run was still sleeping when it was stopped: no state has a
/// verdict (not even "killed by signal 9" or "interrupted"), so resume checks them all.
fn assert_no_verdict(s: &Scratch, out: &str) {
    let partial = std::fs::read_to_string(s.path(out).join("states.partial.jsonl")).unwrap();
    assert_eq!(partial, "", "a state stopped by the interrupt got a verdict");
}

fn sigint(child: &Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
}

#[test]
fn a_panic_prints_one_line_cleans_up_and_exits_101() {
    if !privileged("a_panic_prints_one_line_cleans_up_and_exits_101") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s);
    let mut cmd = explore(&s, &t, "r", &["--checker", "true", "--jobs", "2"]);
    let (code, err) = spawn_and_wait(cmd.env("BRINK_PANIC_AT", "explore-check"), |_| {});
    assert_eq!(code, Some(101), "a panic exits 101, never hangs: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].starts_with("brink: internal error: BRINK_PANIC_AT=explore-check: a panic while checking state ")
            && lines[0].contains(" (at crates/brink-explore/src/engine.rs:"),
        "{err}"
    );
    assert_no_mounts_or_loops(&s);
    assert!(!s.path("r/.work").exists(), "the work area is removed");
}

#[test]
fn sigint_stops_in_flight_checkers_within_two_seconds_and_resume_rechecks_them() {
    if !privileged("sigint_stops_in_flight_checkers_within_two_seconds_and_resume_rechecks_them") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s);
    let hold = s.path("hold");
    let c = checker(&s, &hold, false);
    let o = run(&mut explore(&s, &t, "whole", &["--checker", &c, "--jobs", "2"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    std::fs::write(&hold, "").unwrap();
    let mut signalled = Instant::now();
    let (code, err) = spawn_and_wait(&mut explore(&s, &t, "r", &["--checker", &c, "--jobs", "2"]), |child| {
        wait_for(&s.path("started"));
        sigint(child);
        signalled = Instant::now();
    });
    let took = signalled.elapsed();
    assert_eq!(code, Some(130), "{err}");
    assert!(took < STOP_BOUND, "SIGINT took {took:?} to stop brink with checkers in flight: {err}");
    assert_eq!(summary(&s, "r")["complete"], false);
    assert_no_mounts_or_loops(&s);
    assert!(!s.path("r/.work").exists(), "the work area is removed");
    assert_no_verdict(&s, "r");
    std::fs::remove_file(&hold).unwrap();
    let o = run(&mut explore(&s, &t, "r", &["--checker", &c, "--jobs", "2", "--resume"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(summary(&s, "r")["complete"], true);
    assert_eq!(without_times(records(&s, "r")), without_times(records(&s, "whole")));
    assert_no_mounts_or_loops(&s);
}

#[test]
fn a_second_sigint_skips_the_grace_period_but_not_the_cleanup() {
    if !privileged("a_second_sigint_skips_the_grace_period_but_not_the_cleanup") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s);
    let hold = s.path("hold");
    std::fs::write(&hold, "").unwrap();
    let c = checker(&s, &hold, true);
    let (mut signalled, mut checker_pid) = (Instant::now(), 0);
    let (code, err) = spawn_and_wait(&mut explore(&s, &t, "r", &["--checker", &c, "--jobs", "1"]), |child| {
        wait_for(&s.path("started"));
        // Written before the sleep starts; wait until the line is whole.
        std::thread::sleep(Duration::from_millis(100));
        checker_pid = std::fs::read_to_string(s.path("started")).unwrap().trim().parse().unwrap();
        sigint(child);
        std::thread::sleep(Duration::from_millis(50));
        sigint(child);
        signalled = Instant::now();
    });
    let took = signalled.elapsed();
    assert_eq!(code, Some(130), "{err}");
    assert!(took < STOP_BOUND, "two SIGINTs took {took:?} to stop brink: {err}");
    assert!(!Path::new(&format!("/proc/{checker_pid}")).exists(), "the checker ignoring SIGTERM survived");
    assert_eq!(summary(&s, "r")["complete"], false);
    assert_no_verdict(&s, "r");
    assert_no_mounts_or_loops(&s);
    assert!(!s.path("r/.work").exists(), "the work area is removed");
}

#[test]
fn resume_over_a_bad_state_id_is_one_line_exit_2() {
    if !privileged("resume_over_a_bad_state_id_is_one_line_exit_2") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s);
    let o = run(&mut explore(&s, &t, "r", &["--checker", "true", "--jobs", "2"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = std::fs::read_to_string(s.path("r/states.jsonl")).unwrap().lines().next().unwrap().to_string();
    let mut rec: serde_json::Value = serde_json::from_str(&first).unwrap();
    rec["id"] = "not-a-state".into();
    std::fs::write(s.path("r/states.partial.jsonl"), format!("{rec}\n")).unwrap();
    let (code, err) =
        spawn_and_wait(&mut explore(&s, &t, "r", &["--checker", "true", "--jobs", "2", "--resume"]), |_| {});
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("brink: ") && err.contains("not-a-state"), "{err}");
    assert_no_mounts_or_loops(&s);
}

/// A checker that leaves a daemon behind (its own session, its working directory in the
/// state's mount) changes no verdict, and the processes brink stopped are said once, at
/// the end, and counted in summary.json.
#[test]
fn processes_left_behind_are_reported_once() {
    if !privileged("processes_left_behind_are_reported_once") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s);
    let o = run(&mut explore(&s, &t, "r", &["--checker", "setsid sleep 20 & true", "--jobs", "1"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("processes running")).collect();
    assert_eq!(said.len(), 1, "{err}");
    let n = summary(&s, "r")["processes_left_behind"].as_u64().unwrap();
    assert!(n >= 1, "{}", summary(&s, "r"));
    assert!(said[0].starts_with(&format!("brink: checkers left {n} processes running")), "{err}");
    assert_no_mounts_or_loops(&s);
}
