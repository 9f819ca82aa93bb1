//! Nothing is left behind: after success, a failing workload, a missing workload, and
//! SIGINT or SIGTERM in the middle of a workload, no mount, loop device, FUSE mount,
//! work directory or half-written trace remains.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Scratch, assert_no_mounts_or_loops, privileged, run, show_json, stderr};

fn assert_clean(s: &Scratch) {
    assert_no_mounts_or_loops(s);
    let left: Vec<_> = std::fs::read_dir(s.tmpdir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "work files left in TMPDIR: {left:?}");
    let partial: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(partial.is_empty(), "half-written traces left: {partial:?}");
}

#[test]
fn success_leaves_nothing() {
    if !privileged("success_leaves_nothing") {
        return;
    }
    let s = Scratch::new();
    let o = run(s.record(&["-o"]).arg(s.path("t")).args(["--", "sh", "-c", "echo hi > f"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(&s);
}

/// A mount namespace made while the workload runs (`unshare --mount`, as a service's
/// private /tmp or a browser's sandbox would) holds a copy of the recorded file system's
/// mount past brink's unmount: brink waits for it, still recording, so the file
/// system's last writes are in the trace (they used to arrive after the recording ended,
/// and the recording failed).
#[test]
fn a_mount_namespace_holding_the_file_system_is_waited_for() {
    if !privileged("a_mount_namespace_holding_the_file_system_is_waited_for") {
        return;
    }
    let s = Scratch::new();
    let started = s.path("started");
    let script = format!("echo hi > f; sync f; touch {}; sleep 1; echo more >> f", started.display());
    let mut rec =
        s.record(&["--no-syscalls", "-o"]).arg(s.path("t")).args(["--", "sh", "-c", &script]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started.exists(), "the workload did not start");
    let ns = run(std::process::Command::new("unshare").args(["--mount", "--propagation", "private", "sleep", "2"]));
    assert!(ns.status.success(), "{}", stderr(&ns));
    let status = rec.wait().unwrap();
    assert!(status.success(), "the recording failed");
    let j = show_json(&s.path("t"));
    assert_eq!(j["workload_exit"], 0);
    assert_clean(&s);
}

#[test]
fn failing_workload_is_recorded_and_leaves_nothing() {
    if !privileged("failing_workload_is_recorded_and_leaves_nothing") {
        return;
    }
    let s = Scratch::new();
    let o = run(s.record(&["-o"]).arg(s.path("t")).args(["--", "sh", "-c", "echo oops >&2; exit 3"]));
    assert!(o.status.success(), "a failed workload still gives a trace: {}", stderr(&o));
    assert!(stderr(&o).contains("warning: the workload failed (exit 3)"), "{}", stderr(&o));
    let j = show_json(&s.path("t"));
    assert_eq!(j["workload_exit"], 3);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(s.path("t/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["workload"]["stderr"], "oops\n");
    assert_clean(&s);
}

#[test]
fn missing_workload_is_an_error_and_leaves_nothing() {
    if !privileged("missing_workload_is_an_error_and_leaves_nothing") {
        return;
    }
    let s = Scratch::new();
    let o = run(s.record(&["-o"]).arg(s.path("t")).args(["--", "no-such-program-brink"]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("brink: ") && err.contains("not found") && err.trim().lines().count() == 1, "{err}");
    assert!(!s.path("t").exists());
    assert_clean(&s);
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupted(signal: nix::sys::signal::Signal, code: i32) {
    let s = Scratch::new();
    let started = s.path("started");
    let script = format!("echo $$ > {0}.pid; touch {0}; sleep 60 & wait", started.display());
    let mut child = s.record(&["-o"]).arg(s.path("t")).args(["--", "sh", "-c", &script]).spawn().unwrap();
    wait_for(&started, Duration::from_secs(60));
    let workload_pid: i32 = std::fs::read_to_string(s.path("started.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "exit code after {signal:?}");
    assert!(!s.path("t").exists(), "no trace after an interrupt");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!Path::new(&format!("/proc/{workload_pid}")).exists(), "the workload survived");
    assert_clean(&s);
}

#[test]
fn sigint_leaves_nothing() {
    if !privileged("sigint_leaves_nothing") {
        return;
    }
    interrupted(nix::sys::signal::Signal::SIGINT, 130);
}

#[test]
fn sigterm_leaves_nothing() {
    if !privileged("sigterm_leaves_nothing") {
        return;
    }
    interrupted(nix::sys::signal::Signal::SIGTERM, 143);
}
