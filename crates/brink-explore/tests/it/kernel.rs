//! The engine with the kernel's recovery (root, loop devices, FUSE, e2fsprogs): what only
//! the kernel can show. A checker that leaves a process behind in a state's file system
//! (issue 13) must not make that file system the next state its slot checks.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use brink_check::Verdict;
use brink_explore::{CheckerSpec, ExploreConfig, ExploreError, Progress, Results, explore};
use brink_trace::{TraceMeta, TraceWriter, WriteFlags};

const IMAGE: u64 = 16 << 20;

/// Held by each test here: a process another test leaves in its own mount namespace
/// holds a copy of every mount of the moment, this test's states included, and would
/// make them outlive their checks too.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const FILES: [&str; 4] = ["f1", "f2", "f3", "f4"];

/// Whether the kernel's recovery can run here (`brink_testkit`'s rule otherwise).
fn privileged(test: &str) -> bool {
    use brink_testkit::Need;
    brink_testkit::can_run(
        test,
        &[Need::Root, Need::Fuse, Need::Loop, Need::Program("mkfs.ext4"), Need::Program("debugfs")],
    )
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ext4 image holding `FILES`, each one 4 KiB block of 'O'; then a trace that
/// rewrites each file's block with 'N' (volatile writes) and flushes. Every subset of
/// the rewrites is a state with its own content, so a state checked on another state's
/// file system gets another verdict.
fn ext4_trace(dir: &Path) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir(&files).unwrap();
    for f in FILES {
        std::fs::write(files.join(f), [b'O'; 4096]).unwrap();
    }
    let img = dir.join("base.img");
    File::create(&img).unwrap().set_len(IMAGE).unwrap();
    run(Command::new(brink_blockdev::find_program("mkfs.ext4").unwrap())
        .args(["-F", "-q", "-b", "4096", "-d"])
        .arg(&files)
        .arg(&img));
    let mut w = TraceWriter::create(&dir.join("t")).unwrap();
    std::fs::copy(&img, w.base_image_path()).unwrap();
    for f in FILES {
        let out = run(Command::new(brink_blockdev::find_program("debugfs").unwrap())
            .args(["-R", &format!("bmap /{f} 0")])
            .arg(&img));
        let block: u64 = out.trim().parse().unwrap_or_else(|_| panic!("debugfs bmap: {out}"));
        w.write(block * 4096, &[b'N'; 4096], WriteFlags::default()).unwrap();
    }
    w.flush().unwrap();
    w.finish(TraceMeta::new("test", "ext4", IMAGE)).unwrap()
}

/// Violation naming the files still old; on state `escape`, it also leaves a process in
/// its own session with its working directory in the state (as `pg_ctl` leaves a
/// server), and writes that process's id to `pids`.
fn checker(escape: &str, pids: &Path) -> String {
    checker_leaving(escape, "setsid sleep 20", pids)
}

/// As `checker`, the process left behind being `command`.
fn checker_leaving(escape: &str, command: &str, pids: &Path) -> String {
    format!(
        "if [ \"$BRINK_STATE_ID\" = {escape} ]; then {command} </dev/null >/dev/null 2>&1 & echo $! >> {}; fi; \
         old=; for f in {}; do grep -q N $f || old=\"$old $f\"; done; \
         if [ -n \"$old\" ]; then echo \"old:$old\"; exit 1; fi",
        pids.display(),
        FILES.join(" ")
    )
}

/// The engine tests' settings, with `checker` and one job (one slot: every state after
/// the escape is mounted from the same loop device).
fn config(trace: &Path, results: &Path, checker: String) -> ExploreConfig {
    ExploreConfig { checkers: vec![CheckerSpec::Command(checker)], jobs: 1, ..crate::engine::config(trace, results) }
}

/// Kill the processes the checker left (by the ids it wrote), then wait until no loop
/// device is backed by a slot of `dir` any more.
fn kill_escaped(pids: &Path, dir: &Path) {
    for pid in std::fs::read_to_string(pids).unwrap_or_default().split_whitespace() {
        let pid = nix::unistd::Pid::from_raw(pid.parse().unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let started = Instant::now();
    let dir = dir.display().to_string();
    while brink_blockdev::attached_loop_devices().iter().any(|(_, b)| b.display().to_string().starts_with(&dir)) {
        assert!(started.elapsed() < Duration::from_secs(10), "a slot's loop device stays attached");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `command`, run by a shell that first leaves the checker's cgroup for the root of the
/// cgroup v2 tree: a process brink's containment cannot find, so that the stale-slot
/// defence behind it is what the test sees.
fn out_of_the_cgroup(command: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let root = mounts.lines().map(|l| l.split(' ').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[2] == "cgroup2");
    let root = root.expect("a cgroup2 mount (brink contains checkers in cgroup v2)")[1];
    format!("sh -c 'echo $$ > {root}/cgroup.procs; exec {command}'")
}

#[test]
fn a_stale_slot_never_judges_a_state() {
    if !privileged("a_stale_slot_never_judges_a_state") {
        return;
    }
    // The unmount fails (EBUSY): the process's working directory is in the state.
    let leaves = out_of_the_cgroup("setsid sleep 20");
    same_verdicts_but_one(&leaves, "a process the checker started kept the state's file system busy");
}

#[test]
fn a_file_system_kept_in_another_mount_namespace_is_not_reused() {
    if !privileged("a_file_system_kept_in_another_mount_namespace_is_not_reused") {
        return;
    }
    // The unmount succeeds, but a copy of the mount in another namespace keeps the file
    // system alive on the slot's loop device.
    let leaves = out_of_the_cgroup("setsid unshare -m --propagation private sleep 20");
    same_verdicts_but_one(&leaves, "stayed in use after its unmount");
}

/// Issue 13's escaped daemon (`pg_ctl` starts its server in a session of its own): the
/// checker's cgroup holds it, so brink stops it, the unmount succeeds, and every state
/// gets the clean run's verdict.
#[test]
fn an_escaped_daemon_is_stopped_and_changes_no_verdict() {
    if !privileged("an_escaped_daemon_is_stopped_and_changes_no_verdict") {
        return;
    }
    let run = clean_and_escaped("setsid sleep 20");
    let (pids, outcome) = (&run.pids, run.outcome);
    let pid = std::fs::read_to_string(pids).unwrap();
    // A zombie is dead: it waits only for its new parent (here pid 1) to reap it.
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.trim()).join("status")).unwrap_or_default();
    let alive = !status.is_empty() && !status.contains("State:\tZ");
    kill_escaped(pids, run.tmp.path());
    assert_eq!(outcome.unwrap().checker_failures, 0);
    assert!(!alive, "the escaped process {} outlived its checker", pid.trim());
    assert_eq!(verdicts(&run.escaped.results), verdicts(&run.clean.results));
}

/// One trace explored twice: by the clean checker, and by one that leaves `command`
/// running on state 4-0 (the state without the first rewrite, checked early; states
/// after it differ). The left process is not killed yet (`kill_escaped`).
struct CleanAndEscaped {
    _one: std::sync::MutexGuard<'static, ()>,
    tmp: tempfile::TempDir,
    pids: PathBuf,
    clean: ExploreConfig,
    escaped: ExploreConfig,
    outcome: Result<brink_explore::Summary, ExploreError>,
}

fn clean_and_escaped(command: &str) -> CleanAndEscaped {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let t = ext4_trace(tmp.path());
    let pids = tmp.path().join("pids");
    let clean = config(&t, &tmp.path().join("clean"), checker("none", &pids));
    explore(&clean, &Progress::default()).unwrap();
    let escaped = config(&t, &tmp.path().join("escaped"), checker_leaving("4-0", command, &pids));
    let outcome = explore(&escaped, &Progress::default());
    CleanAndEscaped { _one: one, tmp, pids, clean, escaped, outcome }
}

/// A checker that leaves `command` running on state 4-0 gives the clean checker's
/// verdicts on every other state; 4-0 is a checker failure saying `why`.
fn same_verdicts_but_one(command: &str, why: &str) {
    let run = clean_and_escaped(command);
    kill_escaped(&run.pids, run.tmp.path());
    let s = run.outcome.unwrap();
    assert_eq!(std::fs::read_to_string(&run.pids).unwrap().lines().count(), 1, "one state escaped");
    let (clean, escaped) = (Results::load(&run.clean.results).unwrap(), Results::load(&run.escaped.results).unwrap());
    assert_eq!(s.checker_failures, 1, "{s:?}");
    assert_eq!(clean.states.len(), escaped.states.len());
    assert!(clean.states.iter().any(|r| r.verdict == Verdict::Violation));
    for (c, e) in clean.states.iter().zip(&escaped.states) {
        assert_eq!(c.id, e.id);
        if e.id == "4-0" {
            assert_eq!(e.verdict, Verdict::CheckerFailure);
            let message = &e.checks[0].message;
            assert!(message.contains(why), "{message}");
        } else {
            let msgs = |r: &brink_explore::StateRecord| r.checks.iter().map(|c| c.message.clone()).collect::<Vec<_>>();
            assert_eq!((&c.verdict, msgs(c)), (&e.verdict, msgs(e)), "state {}", e.id);
        }
    }
}

/// A tmpfs mounted for one test, unmounted (lazily if need be) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let size = format!("size={bytes}");
        nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(size.as_str()))
            .unwrap();
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn verdicts(dir: &Path) -> Vec<(String, Verdict, Vec<String>)> {
    let r = Results::load(dir).unwrap();
    r.states.into_iter().map(|s| (s.id, s.verdict, s.checks.into_iter().map(|c| c.message).collect())).collect()
}

/// Explore `t` on a small tmpfs whose free space the checker of state `id` fills once,
/// either beside its marks (brink's scratch area) or beside the results directory.
fn explore_on_a_disk_that_fills(
    t: &Path,
    tmp: &Path,
    id: &str,
    beside_results: bool,
) -> (ExploreError, ExploreConfig, Tmpfs) {
    use std::os::unix::fs::MetadataExt;
    let pids = tmp.join("pids");
    // Room for the durable and head images (their allocated blocks) and a little more.
    let used = std::fs::metadata(t.join("base.img")).unwrap().blocks() * 512;
    let small = tmp.join("small");
    let tmpfs = Tmpfs::mount(&small, 2 * used + (3 << 20));
    let flag = tmp.join("flooded");
    let target = if beside_results { small.join("fill") } else { "$(dirname \"$BRINK_MARKS\")/flood".into() };
    let flood = format!(
        "if [ \"$BRINK_STATE_ID\" = {id} ] && [ ! -e {0} ]; then touch {0}; \
         head -c 64M /dev/zero > \"{1}\" 2>/dev/null; fi; {2}",
        flag.display(),
        target.display(),
        checker("none", &pids)
    );
    let cfg = config(t, &small.join("r"), flood);
    let e = explore(&cfg, &Progress::default()).unwrap_err();
    // Room again, as a user would make it before resuming.
    let _ = std::fs::remove_file(small.join("fill"));
    (e, cfg, tmpfs)
}

/// A small ext4 trace under `tmp` and its clean exploration (a checker that starts
/// nothing), whose verdicts the full-disk runs must reproduce.
fn trace_and_clean_run(tmp: &Path) -> (PathBuf, ExploreConfig) {
    let t = ext4_trace(tmp);
    let clean = config(&t, &tmp.join("clean"), checker("none", &tmp.join("pids")));
    explore(&clean, &Progress::default()).unwrap();
    (t, clean)
}

#[test]
fn a_full_results_disk_never_changes_a_verdict() {
    if !privileged("a_full_results_disk_never_changes_a_verdict") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let (t, clean) = trace_and_clean_run(tmp.path());
    // On state 4-0 the checker fills the disk once, beside its marks file (in brink's
    // scratch area): whatever brink writes next for that state could fail, so it must not
    // judge it. (A checker's own output is held in memory, capped: it cannot fill the disk.)
    let (e, mut cfg, _small) = explore_on_a_disk_that_fills(&t, tmp.path(), "4-0", false);
    let text = e.to_string();
    assert!(matches!(e, ExploreError::ScratchFull { .. }), "{text}");
    assert!(text.contains("the state is not judged"), "{text}");
    let recorded = brink_explore::results::collect(&cfg.results).unwrap();
    assert!(recorded.iter().all(|r| r.id != "4-0"), "no verdict from the state whose output was cut");
    // Resuming (the work area, flood included, is removed first) finishes the run with
    // the clean run's verdicts.
    cfg.resume = true;
    assert!(explore(&cfg, &Progress::default()).unwrap().complete);
    assert_eq!(verdicts(&cfg.results), verdicts(&clean.results));
}

/// The disk fills as the last state is checked (beside the results, not in brink's
/// scratch area): that state is not judged, the run stops with an error and writes no
/// summary, and resuming once there is room again gives the clean run's verdicts.
#[test]
fn a_results_disk_filled_by_the_last_check_stops_the_run_without_a_summary() {
    if !privileged("a_results_disk_filled_by_the_last_check_stops_the_run_without_a_summary") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let (t, clean) = trace_and_clean_run(tmp.path());
    // The last state checked: of those checked (not duplicates), the last of the last epoch.
    let checked = Results::load(&clean.results).unwrap().states.into_iter().filter(|r| r.dup_of.is_none());
    let last = checked.max_by_key(|r| (r.position, r.id.clone())).map(|r| r.id);
    let (e, mut cfg, _small) = explore_on_a_disk_that_fills(&t, tmp.path(), &last.unwrap(), true);
    assert!(matches!(e, ExploreError::ScratchFull { .. }), "{}", brink_check::error_line(&e));
    assert!(!cfg.results.join("summary.json").exists(), "a summary written on a full disk");
    cfg.resume = true;
    assert!(explore(&cfg, &Progress::default()).unwrap().complete);
    assert_eq!(verdicts(&cfg.results), verdicts(&clean.results));
}

/// The final files written onto a full disk: an error, and none of them half written
/// (each is written whole or not at all); once there is room, the same files load.
#[test]
fn final_results_written_onto_a_full_disk_are_an_error_and_never_half_written() {
    if !privileged("final_results_written_onto_a_full_disk_are_an_error_and_never_half_written") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let (_, clean) = trace_and_clean_run(tmp.path());
    let r = Results::load(&clean.results).unwrap();
    let small = tmp.path().join("small");
    let _tmpfs = Tmpfs::mount(&small, 1 << 20);
    let dir = small.join("r");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(clean.results.join("run.json"), dir.join("run.json")).unwrap();
    let fill = small.join("fill");
    let _ =
        Command::new("sh").arg("-c").arg(format!("head -c 2M /dev/zero > '{}' 2>/dev/null", fill.display())).status();
    let info = r.trace.clone().unwrap();
    let e = brink_explore::results::write_final(&dir, &r.states, &r.minimal, &info, &r.summary).unwrap_err();
    assert!(brink_check::error_line(&e).contains("No space left"), "{}", brink_check::error_line(&e));
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["run.json"], "nothing but what was there before");
    std::fs::remove_file(&fill).unwrap();
    brink_explore::results::write_final(&dir, &r.states, &r.minimal, &info, &r.summary).unwrap();
    assert_eq!(Results::load(&dir).unwrap(), r);
}
