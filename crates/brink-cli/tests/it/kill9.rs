//! `kill -9` of `brink record` at random moments (issue 13): each kill must leave, within
//! a bounded time, nothing mounted or attached under the test's directory, no process of
//! the workload (a daemon that left its session included, where cgroup v2 contains it),
//! no cgroup of the killed recorder, and no unfinished trace directory. Every path holds
//! a space, which the kernel escapes as `\040` in the mount table.
//!
//! The moments are seeded (`KILL_SEED`); `KILL_ITERS` sets the number of kills (the
//! default keeps `cargo test` short; the overnight run uses 40 or more).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brink_blockdev::cgroup::cgroup2_mount;

use crate::{Scratch, brink, privileged, stderr};

/// Kills in a default test run.
const KILLS_DEFAULT: u64 = 5;

/// The seed of the kill moments when `KILL_SEED` is not set.
const SEED_DEFAULT: u64 = 13;

/// How long the watchdog may take to clean up after a kill.
const CLEAN_WAIT_MAX: Duration = Duration::from_secs(20);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small seeded generator (xorshift64*): the kill moments repeat for a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Loop devices whose backing file is under `dir`.
fn loops_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    brink_blockdev::attached_loop_devices().into_iter().filter(|(_, b)| b.starts_with(dir)).collect()
}

/// Unfinished trace directories (`.NAME.tmp-PID`) in `dir`.
fn unfinished_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// What a killed recording may have left, as one line per kind; empty when clean.
fn leftovers(s: &Scratch, outdir: &Path, marker: &str, pid: u32) -> Vec<String> {
    let mut left = Vec::new();
    let mounts = brink_blockdev::mount_points_under(s.dir.path());
    if !mounts.is_empty() {
        left.push(format!("mounts {mounts:?}"));
    }
    let loops = loops_under(s.dir.path());
    if !loops.is_empty() {
        left.push(format!("loop devices {loops:?}"));
    }
    let procs = brink_testkit::processes_with(marker);
    if !procs.is_empty() {
        left.push(format!("workload processes {procs:?}"));
    }
    let tmp = unfinished_in(outdir);
    if !tmp.is_empty() {
        left.push(format!("unfinished traces {tmp:?}"));
    }
    if let Ok(root) = cgroup2_mount() {
        // `brink-record-<pid>.<n>`: the n-th recording of that process.
        let cg = root.join(format!("brink-record-{pid}.0"));
        if cg.exists() {
            left.push(format!("cgroup {}", cg.display()));
        }
    }
    left
}

/// `brink record` of a short workload that syncs often and starts a background child,
/// and, where cgroup v2 can contain it, a daemon that leaves its session. `marker` is in
/// the command line of each of them.
fn record_cmd(s: &Scratch, tmpdir: &Path, out: &Path, marker: &str) -> Command {
    let daemon = if cgroup2_mount().is_ok() {
        format!("setsid sh -c 'sleep 1000; : {marker}' </dev/null >/dev/null 2>&1 &")
    } else {
        String::new()
    };
    let script = format!(
        "sh -c 'sleep 1000; : {marker}' & {daemon}
         for i in $(seq 50); do echo $i > f$i; sync -f .; done; : {marker}"
    );
    let mut c = brink();
    c.env("TMPDIR", tmpdir).arg("record").arg("-o").arg(out).args(["--", "sh", "-c", &script]);
    c.current_dir(s.dir.path()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// A scratch directory with a TMPDIR and an output folder, each with a space in its name.
fn spaced_scratch() -> (Scratch, PathBuf, PathBuf) {
    let s = Scratch::new();
    let (tmpdir, outdir) = (s.path("tmp dir"), s.path("out put"));
    std::fs::create_dir_all(&tmpdir).unwrap();
    std::fs::create_dir_all(&outdir).unwrap();
    (s, tmpdir, outdir)
}

#[test]
fn repeated_kill_9_of_record_leaves_nothing_behind() {
    if !privileged("repeated_kill_9_of_record_leaves_nothing_behind") {
        return;
    }
    let _table = crate::MOUNT_TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let (s, tmpdir, outdir) = spaced_scratch();
    let marker = format!("brink-kill9-{}", std::process::id());

    // One whole run: it must succeed, and tells how long a recording takes.
    let started = Instant::now();
    let o = record_cmd(&s, &tmpdir, &outdir.join("whole"), &marker).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = started.elapsed();
    assert!(leftovers(&s, &outdir, &marker, 0).is_empty(), "{:?}", leftovers(&s, &outdir, &marker, 0));

    eprintln!("a whole recording took {whole:?}");
    kill_repeatedly(
        whole,
        |i| record_cmd(&s, &tmpdir, &outdir.join(format!("t {i}")), &marker),
        |pid| leftovers(&s, &outdir, &marker, pid),
    );
}

/// `KILL_ITERS` times: start `cmd(i)`, SIGKILL it at a seeded random moment within
/// `whole`, and wait (at most [`CLEAN_WAIT_MAX`]) until `left(pid)` finds nothing left.
fn kill_repeatedly(whole: Duration, mut cmd: impl FnMut(u64) -> Command, left: impl Fn(u32) -> Vec<String>) {
    let mut rng = Rng(env_u64("KILL_SEED", SEED_DEFAULT).max(1));
    for i in 0..env_u64("KILL_ITERS", KILLS_DEFAULT) {
        let at = Duration::from_millis(rng.below(whole.as_millis() as u64));
        let mut child = cmd(i).spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(at);
        child.kill().unwrap();
        let killed = Instant::now();
        eprintln!("kill {i} at {at:?}: {}", stderr(&child.wait_with_output().unwrap()).trim());
        loop {
            let left = left(pid);
            if left.is_empty() {
                break;
            }
            assert!(killed.elapsed() < CLEAN_WAIT_MAX, "kill {i} at {at:?}: left behind: {}", left.join("; "));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Checks each acknowledged file; its command line holds the marker (its path), and so
/// does a background child that outlives it: the checkers' cgroup must take it along.
const EXPLORE_CHECKER: &str = r#"#!/bin/sh
sh -c "sleep 1; : $0" </dev/null >/dev/null 2>&1 &
for i in $(cat "$BRINK_MARKS"); do [ "$(cat f$i 2>/dev/null)" = $i ] || { echo "lost f$i"; exit 1; }; done
sleep 0.02
"#;

/// `brink explore` of `trace` into `out` (resumed if a killed run left its run.json),
/// with a checker whose path holds `marker`.
fn explore_cmd(s: &Scratch, tmpdir: &Path, trace: &Path, out: &Path, checker: &Path) -> Command {
    let mut c = brink();
    c.env("TMPDIR", tmpdir).arg("explore").arg(trace).arg("-o").arg(out).args(["--jobs", "2", "--checker"]);
    // A shell command: the path quoted.
    c.arg(format!("'{}'", checker.display()));
    if out.join("run.json").exists() {
        c.arg("--resume");
    } else if out.exists() {
        // Killed before it wrote what it explores: nothing to resume.
        std::fs::remove_dir_all(out).unwrap();
    }
    c.current_dir(s.dir.path()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// What a killed exploration may have left, as one line per kind; empty when clean.
fn explore_leftovers(s: &Scratch, out: &Path, marker: &str, pid: u32) -> Vec<String> {
    let mut left = leftovers(s, out.parent().unwrap(), marker, pid);
    if out.join(".work").exists() {
        left.push("the work area".into());
    }
    if let Ok(root) = cgroup2_mount() {
        let cg = root.join(format!("brink-{pid}"));
        if cg.exists() {
            left.push(format!("cgroup {}", cg.display()));
        }
    }
    // The memory slots' write log (a tracefs instance `brink-PID.N`).
    let instances = std::fs::read_dir("/sys/kernel/tracing/instances").into_iter().flatten().flatten();
    let prefix = format!("brink-{pid}.");
    left.extend(
        instances
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| format!("tracefs instance {}", e.path().display())),
    );
    left
}

/// `kill -9` of `brink explore` at random moments, each run resuming the last: nothing
/// is left mounted, attached, running or in a cgroup after each kill, and the final
/// resumed run's states equal an uninterrupted run's.
#[test]
fn repeated_kill_9_of_explore_leaves_nothing_behind_and_resumes_to_the_same_result() {
    if !privileged("repeated_kill_9_of_explore_leaves_nothing_behind_and_resumes_to_the_same_result") {
        return;
    }
    let _table = crate::MOUNT_TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let (s, tmpdir, outdir) = spaced_scratch();
    let marker = format!("brink-kill9-explore-{}", std::process::id());
    let checker = s.path(&format!("check {marker}.sh"));
    std::fs::write(&checker, EXPLORE_CHECKER).unwrap();
    std::fs::set_permissions(&checker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let trace = outdir.join("tr ace");
    let script = r#"for i in $(seq 12); do echo $i > f$i; sync f$i; echo $i > "$BRINK_MARK"; done"#;
    let o = s.record(&["-o"]).arg(&trace).args(["--", "sh", "-c", script]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let started = Instant::now();
    let whole = outdir.join("who le");
    let o = explore_cmd(&s, &tmpdir, &trace, &whole, &checker).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let took = started.elapsed();
    eprintln!("a whole exploration took {took:?}");
    let killed = outdir.join("kil led");
    kill_repeatedly(
        took,
        |_| explore_cmd(&s, &tmpdir, &trace, &killed, &checker),
        |pid| explore_leftovers(&s, &killed, &marker, pid),
    );
    let o = explore_cmd(&s, &tmpdir, &trace, &killed, &checker).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let states = |dir: &Path| {
        let recs = std::fs::read_to_string(dir.join("states.jsonl")).unwrap();
        crate::explore::without_times(recs.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    };
    assert_eq!(states(&killed), states(&whole));
}
