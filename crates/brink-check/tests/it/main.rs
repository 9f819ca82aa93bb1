//! Integration tests of checker containment (issue 13, "Trust"): a checker's daemons,
//! escaped from its process group and session, are found and stopped, SIGTERM first; a
//! timed-out or interrupted checker gets SIGTERM before SIGKILL; a flooding checker's
//! output stays bounded. The cgroup tests need root and a writable cgroup2 mount; they
//! fail without them, or skip loudly with BRINK_SKIP_PRIVILEGED=1 (the convention of
//! brink-cli's and brink-blockdev's tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use brink_check::{
    CheckEnv, CheckRun, Jail, Limits, OUTPUT_BYTES_MAX, OUTPUT_TAIL_BYTES_MAX, STOP_GRACE, Stopped, Verdict,
};

/// A jail on cgroup v2, or None (after saying so) when the test is skipped.
fn cgroup_jail(test: &str) -> Option<Jail> {
    let root = nix::unistd::geteuid().is_root();
    let jail = Jail::new();
    let note = jail.fallback_note();
    if root && note.is_none() {
        return Some(jail);
    }
    brink_testkit::skip_or_fail(
        test,
        &format!("it needs root and a writable cgroup2 mount (root={root}, cgroup: {note:?})"),
    );
    None
}

/// A state directory, a marks file and a place for files the checkers write.
struct State {
    dir: tempfile::TempDir,
    root: PathBuf,
    marks: PathBuf,
}

impl State {
    fn new() -> State {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let marks = dir.path().join("marks");
        std::fs::write(&marks, "").unwrap();
        State { dir, root, marks }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn check(&self, jail: &Jail, cmd: &str, timeout: Duration) -> CheckRun {
        let env = CheckEnv {
            state_root: &self.root,
            marks_file: &self.marks,
            state_id: "1-2",
            trace: Path::new("/trace"),
            image: Path::new("/dev/null"),
            protocol: brink_check::Protocol::Brink,
            worker: 0,
        };
        jail.run_checker("c", cmd, &env, &Limits { timeout })
    }
}

/// Whether `pid` (read from `file`) is a live process; a zombie is not.
fn alive(file: &Path) -> bool {
    let pid = std::fs::read_to_string(file).unwrap();
    !brink_blockdev::cgroup::process_ended(pid.trim().parse().unwrap())
}

fn escaped_sleep_is_stopped(jail: &Jail, s: &State) {
    let pidfile = s.file("pid");
    let start = Instant::now();
    let run =
        s.check(jail, &format!("setsid sleep 30 & echo $! > {}; exit 0", pidfile.display()), Duration::from_secs(20));
    assert!(start.elapsed() < STOP_GRACE + Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_eq!(run.outcome.verdict, Verdict::Consistent, "{run:?}");
    assert_eq!(run.stopped, Stopped { left_behind: 1, killed: 0, survivors: 0 }, "{run:?}");
    assert!(!run.interrupted);
    assert!(!alive(&pidfile), "the escaped sleep survived");
}

/// Issue 13: a `setsid` child with its cwd in the state's mount kept the mount busy, the
/// unmount failed and every later state of the slot was judged on a stale file system.
#[test]
fn an_escaped_daemon_is_stopped_and_the_state_unmounts() {
    let Some(jail) = cgroup_jail("an_escaped_daemon_is_stopped_and_the_state_unmounts") else { return };
    let s = State::new();
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    mount(Some("tmpfs"), &s.root, Some("tmpfs"), MsFlags::empty(), None::<&str>).unwrap();
    escaped_sleep_is_stopped(&jail, &s);
    umount2(&s.root, MntFlags::empty()).expect("the state's mount is not busy");
}

/// The fallback (no cgroup v2) finds the escaped daemon by its working directory.
#[test]
fn without_cgroups_an_escaped_daemon_using_the_state_is_stopped() {
    escaped_sleep_is_stopped(&Jail::without_cgroup(), &State::new());
}

/// A daemon gets SIGTERM and the grace period to exit cleanly (a database closing its
/// files); only one that ignores SIGTERM is killed, after the grace period.
#[test]
fn a_daemon_gets_sigterm_before_it_is_killed() {
    let Some(jail) = cgroup_jail("a_daemon_gets_sigterm_before_it_is_killed") else { return };
    let s = State::new();
    let (bye, pid, ready) = (s.file("bye"), s.file("pid"), s.file("ready"));
    // The checker waits until the daemon's handler is set, as a daemon's starter would.
    let polite = format!(
        "setsid sh -c 'trap \"echo bye > {bye}; exit 0\" TERM; touch {ready}; while :; do sleep 0.1; done' \
         >/dev/null 2>&1 & echo $! > {pid}; while [ ! -e {ready} ]; do sleep 0.01; done; exit 0",
        bye = bye.display(),
        ready = ready.display(),
        pid = pid.display()
    );
    let run = s.check(&jail, &polite, Duration::from_secs(20));
    assert_eq!(run.outcome.verdict, Verdict::Consistent, "{run:?}");
    // The daemon, and its `sleep 0.1` when caught in one.
    assert!((1..=2).contains(&run.stopped.left_behind), "{run:?}");
    assert_eq!((run.stopped.killed, run.stopped.survivors), (0, 0), "{run:?}");
    assert_eq!(std::fs::read_to_string(&bye).unwrap(), "bye\n", "the daemon's SIGTERM handler did not run");
    assert!(!alive(&pid));

    std::fs::remove_file(&ready).unwrap();
    let stubborn = format!(
        "setsid sh -c 'trap \"\" TERM; touch {ready}; while :; do sleep 0.1; done' & echo $! > {pid}; \
         while [ ! -e {ready} ]; do sleep 0.01; done",
        ready = ready.display(),
        pid = pid.display()
    );
    let start = Instant::now();
    let run = s.check(&jail, &stubborn, Duration::from_secs(20));
    assert!(start.elapsed() >= STOP_GRACE, "killed before the grace period ended");
    assert_eq!(run.outcome.verdict, Verdict::Consistent, "{run:?}");
    assert!((1..=2).contains(&run.stopped.left_behind), "{run:?}");
    assert_eq!(run.stopped.survivors, 0, "{run:?}");
    assert!(run.stopped.killed >= 1, "{run:?}");
    assert!(!alive(&pid), "the daemon that ignores SIGTERM survived");
}

/// At the time limit the checker gets SIGTERM (its cleanup runs), then its children go.
#[test]
fn a_timed_out_checker_gets_sigterm_and_its_children_are_stopped() {
    let Some(jail) = cgroup_jail("a_timed_out_checker_gets_sigterm_and_its_children_are_stopped") else { return };
    let s = State::new();
    let (term, pid) = (s.file("term"), s.file("pid"));
    let cmd =
        format!("trap 'echo term > {}; exit 0' TERM; sleep 600 & echo $! > {}; wait", term.display(), pid.display());
    let start = Instant::now();
    let run = s.check(&jail, &cmd, Duration::from_millis(500));
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert_eq!(run.outcome.verdict, Verdict::CheckerFailure);
    assert!(run.outcome.message.starts_with("timed out after 0.5s"), "{run:?}");
    assert_eq!(run.stopped, Stopped { left_behind: 1, killed: 0, survivors: 0 }, "{run:?}");
    assert_eq!(std::fs::read_to_string(&term).unwrap(), "term\n", "the checker's SIGTERM handler did not run");
    assert!(!alive(&pid));
}

/// brink's interrupt stops a checker well within two seconds; the run is no verdict.
#[test]
fn an_interrupt_stops_a_checker_promptly() {
    let Some(jail) = cgroup_jail("an_interrupt_stops_a_checker_promptly") else { return };
    let flag = Arc::new(AtomicUsize::new(0));
    let jail = jail.with_interrupt(Arc::clone(&flag));
    let s = State::new();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        flag.store(2, Ordering::Relaxed);
    });
    let start = Instant::now();
    let run = s.check(&jail, "sleep 30", Duration::from_secs(60));
    setter.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(run.interrupted, "{run:?}");
    assert_eq!(run.outcome.verdict, Verdict::CheckerFailure);
    assert!(run.outcome.message.starts_with("interrupted"), "{run:?}");
}

/// Issue 13: a flooding checker wrote 5 GB in 15 s to its capture file. Now nothing is
/// written to disk and memory holds the first and last bytes only.
#[test]
fn a_flooding_checker_keeps_only_the_cap() {
    let Some(jail) = cgroup_jail("a_flooding_checker_keeps_only_the_cap") else { return };
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg("yes").current_dir(scratch.path());
    let f = jail.run_bounded(cmd, None, Duration::from_secs(1)).unwrap();
    assert!(f.status.is_none(), "yes ends only at the time limit");
    let kept = (OUTPUT_BYTES_MAX + OUTPUT_TAIL_BYTES_MAX) as usize + 64;
    assert!(f.stdout.len() <= kept, "{} bytes kept", f.stdout.len());
    assert!(f.stdout_omitted > 1 << 20, "only {} bytes omitted", f.stdout_omitted);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0, "output went to disk");

    // A violation after a flood: the message (first line) and details (last) survive.
    let s = State::new();
    let run =
        s.check(&jail, "echo 'lost txn 7'; yes | head -c 20000000; echo '{\"n\": 7}'; exit 1", Duration::from_secs(20));
    assert_eq!((&run.outcome.verdict, run.outcome.message.as_str()), (&Verdict::Violation, "lost txn 7"), "{run:?}");
    assert_eq!(run.outcome.details.unwrap()["n"], 7);
}
