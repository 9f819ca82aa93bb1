//! The recorder end to end (root, /dev/fuse and loop devices needed, as for `brink
//! record`): marks from a workload that runs as another user, and a failing setup
//! command's own words in the error (issue 13).

use std::path::Path;

use brink_record::{IMAGE_BYTES_DEFAULT, Progress, RecordConfig, RecordError, record};
use brink_trace::{Event, TraceReader};

fn privileged(test: &str) -> bool {
    brink_testkit::can_run(test, &brink_testkit::Need::KERNEL)
}

fn config(output: &Path, setup: Option<&str>, script: &str) -> RecordConfig {
    RecordConfig {
        fs: "ext4".parse().unwrap(),
        mkfs_opts: String::new(),
        mount_opts: "".parse().unwrap(),
        size: IMAGE_BYTES_DEFAULT,
        setup: setup.map(str::to_string),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        output: output.to_path_buf(),
        interrupt: Default::default(),
        inject: Vec::new(),
        watch: Vec::new(),
        syscalls: brink_record::Syscalls::CallsAndStacks,
        tracer: brink_record::CallTracer::default(),
    }
}

/// Run as `nobody` (uid and gid 65534, no supplementary groups).
const AS_NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups";

#[test]
fn mark_is_writable_by_any_user_of_the_workload() {
    if !privileged("mark_is_writable_by_any_user_of_the_workload") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let script = format!(
        "{AS_NOBODY} sh -c 'echo acked by nobody > \"$BRINK_MARK\"' || exit 10
         if {AS_NOBODY} sh -c 'echo x > \"$(dirname \"$BRINK_MARK\")/disk.img\"' 2>/dev/null; then exit 11; fi
         echo done"
    );
    let outcome = record(&config(&out, None, &script), &Progress::default()).unwrap();
    let r = TraceReader::open(&out).unwrap();
    let stdout = &r.meta().workload.as_ref().unwrap().stdout;
    assert!(outcome.exit.success(), "workload {}: {stdout}", outcome.exit);
    let marks: Vec<String> = r
        .events()
        .unwrap()
        .filter_map(|e| match e.unwrap().event {
            Event::Mark { text } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(marks, ["acked by nobody"]);
}

#[test]
fn failing_setup_shows_its_own_stderr() {
    if !privileged("failing_setup_shows_its_own_stderr") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let setup =
        "echo starting; echo 'first complaint' >&2; printf 'the \\033[31mreal\\033[0m reason\\n\\n' >&2; exit 3";
    let e = record(&config(&out, Some(setup), "true"), &Progress::default()).unwrap_err();
    assert!(matches!(e, RecordError::Failed(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "the setup command failed (exit 3): first complaint | the \u{fffd}[31mreal\u{fffd}[0m reason"
    );
    assert!(!out.exists());
    // Nothing on stderr: stdout says why.
    let e = record(&config(&out, Some("echo 'only on stdout'; exit 1"), "true"), &Progress::default()).unwrap_err();
    assert_eq!(e.to_string(), "the setup command failed (exit 1): only on stdout");
}

/// Issue 13: a workload's daemon that leaves its process group and session (`setsid`,
/// as `pg_ctl` starts postgres) and keeps its working directory in the mount made the
/// unmount fail. It is contained (a cgroup, where there is one) and stopped, the
/// recording succeeds, and nothing of it is left running.
#[test]
fn a_workload_daemon_that_leaves_its_session_is_stopped() {
    if !privileged("a_workload_daemon_that_leaves_its_session_is_stopped") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let marker = format!("brink-escaped-daemon-{}", std::process::id());
    let script = format!(
        "setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done; : {marker}' </dev/null >/dev/null 2>&1 &
         echo data > f; sync; sleep 0.2"
    );
    let progress = Progress::default();
    let outcome = record(&config(&out, None, &script), &progress).unwrap();
    assert!(outcome.exit.success());
    if progress.containment_note().is_none() {
        // Only a cgroup finds a daemon that left the process group.
        assert!(brink_testkit::processes_with(&marker).is_empty(), "the daemon is still running");
    }
    assert!(TraceReader::open(&out).is_ok());
}
