//! `brink explore`, `replay`, `report` end to end on ext4 (issue 3): the rename bug is
//! caught and its fix is clean, hashes agree with independently materialized states,
//! checker failures are apart from violations, runs resume after a kill to the same
//! result, and nothing is left behind.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use brink_explore::StateRecord;

use crate::{Scratch, assert_no_mounts_or_loops, brink, privileged, run, stderr};

/// Verifies: after "done" is acknowledged, `file` holds "new"; before, "old" or "new".
/// Not verified: anything about file.tmp.
const CHECKER: &str = r#"#!/bin/sh
c=$(cat file 2>/dev/null || echo MISSING)
if grep -qx done "$BRINK_MARKS"; then
  [ "$c" = new ] || { echo "acknowledged 'done' lost: file holds '$c'"; exit 1; }
else
  [ "$c" = old ] || [ "$c" = new ] || { echo "file is neither old nor new: '$c'"; exit 1; }
fi
"#;

pub(crate) const BUGGY: &str =
    "printf new > file.tmp && sync file.tmp && mv file.tmp file && echo done > \"$BRINK_MARK\"";
const FIXED: &str =
    "printf new > file.tmp && sync file.tmp && mv file.tmp file && sync . && echo done > \"$BRINK_MARK\"";

pub(crate) fn record(s: &Scratch, name: &str, script: &str) -> PathBuf {
    let trace = s.path(name);
    let o = run(s
        // commit=300: no periodic journal commit between the rename and the
        // acknowledgement, however loaded the machine (it would make the rename durable
        // and the bug invisible in that recording).
        .record(&["--mount-opts", "data=ordered,commit=300", "--setup", "printf old > file", "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c", script]));
    assert!(o.status.success(), "{}", stderr(&o));
    trace
}

pub(crate) fn checker(s: &Scratch) -> String {
    let p = s.path("check.sh");
    std::fs::write(&p, CHECKER).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn explore(s: &Scratch, trace: &Path, out: &str, extra: &[&str]) -> Output {
    run(brink().env("TMPDIR", s.tmpdir()).arg("explore").arg(trace).arg("-o").arg(s.path(out)).args(extra))
}

pub(crate) fn summary(s: &Scratch, out: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(s.path(out).join("summary.json")).unwrap()).unwrap()
}

pub(crate) fn records(s: &Scratch, out: &str) -> Vec<StateRecord> {
    std::fs::read_to_string(s.path(out).join("states.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn rename_without_directory_fsync_is_caught() {
    if !privileged("rename_without_directory_fsync_is_caught") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = checker(&s);
    let o = explore(&s, &t, "r", &["--checker", &c]);
    assert_eq!(o.status.code(), Some(1), "violations exit 1: {}", stderr(&o));
    let sum = summary(&s, "r");
    assert!(sum["violations"].as_u64().unwrap() >= 1, "{sum}");
    assert_eq!(sum["checker_failures"], 0, "{sum}");
    assert_eq!(sum["complete"], true);
    for key in [
        "states_total",
        "states_generated",
        "states_unique",
        "states_checked",
        "wall_s",
        "states_per_s",
        "model",
        "strategy",
    ] {
        assert!(!sum[key].is_null(), "summary lacks {key}: {sum}");
    }
    let recs = records(&s, "r");
    let bad: Vec<&StateRecord> = recs.iter().filter(|r| r.verdict == brink_check::Verdict::Violation).collect();
    assert!(bad.iter().all(|r| r.marks == 1), "only states held to 'done' can fail");
    assert!(bad.iter().all(|r| r.checks.iter().any(|c| c.message.contains("acknowledged 'done' lost"))));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("reproduce one: brink replay"), "{out}");
    // Sorted by state id, one line per generated state.
    let ids: Vec<brink_pmodel::StateId> = recs.iter().map(|r| r.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(recs.len() as u64, sum["states_generated"].as_u64().unwrap());
    assert_no_mounts_or_loops(&s);

    // The failing state, replayed for a person: mounted, recovered, and still wrong.
    let dir = s.path("replay");
    let o = run(brink().arg("replay").arg(&t).arg(&bad[0].id).arg("-o").arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("clean up with: umount"));
    assert_eq!(std::fs::read_to_string(dir.join("mnt/file")).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(dir.join("marks")).unwrap(), "done\n");
    brink_blockdev::unmount_path(&dir.join("mnt")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_no_mounts_or_loops(&s);
}

#[test]
fn rename_with_directory_fsync_is_clean_and_fsck_agrees() {
    if !privileged("rename_with_directory_fsync_is_clean_and_fsck_agrees") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "fix", FIXED);
    let c = checker(&s);
    let o = explore(&s, &t, "r", &["--checker", &c, "--checker", "fsck"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let sum = summary(&s, "r");
    assert_eq!((sum["violations"].as_u64(), sum["checker_failures"].as_u64()), (Some(0), Some(0)), "{sum}");
    let recs = records(&s, "r");
    assert!(recs.iter().all(|r| r.checks.iter().any(|c| c.checker == "fsck")), "fsck ran on every state");
    assert_no_mounts_or_loops(&s);
}

/// The hash the engine computes from overlays equals the hash of the state materialized
/// independently from the trace; duplicates are exactly the states with equal hashes.
#[test]
fn hashes_match_materialized_states_and_dedup_is_exact() {
    if !privileged("hashes_match_materialized_states_and_dedup_is_exact") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    // Torn states may not mount (a violation, exit 1); either way every state has a record.
    let o = explore(&s, &t, "r", &["--checker", "true", "--torn", "prefix", "--strategy", "omit-one"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let recs = records(&s, "r");
    assert!(recs.len() > 20, "{}", recs.len());
    for r in &recs {
        let img = s.path(&format!("m-{}.img", r.id));
        brink_explore::replay::materialize(&t, &r.id.parse().unwrap(), &img).unwrap();
        assert_eq!(brink_explore::hash_image(&img).unwrap().to_string(), r.image, "state {}", r.id);
        std::fs::remove_file(&img).unwrap();
    }
    let by_id: std::collections::HashMap<&str, &StateRecord> = recs.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut reps = std::collections::HashMap::new();
    for r in &recs {
        match &r.dup_of {
            Some(rep) => {
                let rep = by_id[rep.as_str()];
                assert_eq!((&rep.image, rep.marks), (&r.image, r.marks), "{} is not equal to its representative", r.id);
            }
            None => assert!(
                reps.insert((r.image.clone(), r.marks), &r.id).is_none(),
                "two checked states with one image: {}",
                r.id
            ),
        }
    }
}

/// A checker that prints a digest of the tree it sees (names, kinds, sizes, contents)
/// and fails, so that the digest is kept as its message.
const DIGEST: &str = "#!/bin/sh\ncd \"${1:-.}\" || exit 3\n\
    d=$( (find . -xdev ! -path './lost+found*' -printf '%p %y %s\\n' | sort; \
    find . -xdev -type f ! -path './lost+found*' -print0 | sort -z | xargs -0 -r cat) | md5sum | cut -c1-32)\n\
    echo \"tree $d\"; exit 1\n";

/// The FUSE slots keep what the kernel cached of a state where the next state reads the
/// same (`slots.rs`), and the memory slots restore only where a state changed, from the
/// kernel's logged writes (`memslots.rs`): with either, what each checker saw must equal
/// that state replayed alone, on a loop device of its own. Torn and omitted writes,
/// tree dedup off, two jobs.
#[test]
fn what_a_checker_sees_is_the_state_replayed_alone() {
    if !privileged("what_a_checker_sees_is_the_state_replayed_alone") {
        return;
    }
    let s = Scratch::new();
    // Many epochs (a file appended and fsynced, then acknowledged, each round) and a
    // rename left to the journal: the durable image advances under the slots.
    let rounds =
        "for i in 1 2 3 4 5 6 7 8; do echo \"line $i\" >> log; sync log; echo \"line $i\" > \"$BRINK_MARK\"; done; ";
    let t = record(&s, "bug", &format!("{rounds}{BUGGY}"));
    let c = s.path("digest.sh");
    std::fs::write(&c, DIGEST).unwrap();
    std::fs::set_permissions(&c, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let c = c.display().to_string();
    let mut alone = std::collections::HashMap::new();
    for slots in ["memory", "fuse"] {
        let args = ["--checker", &c, "--torn", "prefix", "--strategy", "omit-one", "--no-tree-dedup", "--jobs", "2"];
        let o = explore(&s, &t, slots, &[&args[..], &["--slots", slots]].concat());
        assert_eq!(o.status.code(), Some(1), "{slots}: {}", stderr(&o));
        let recs: Vec<StateRecord> = records(&s, slots).into_iter().filter(|r| r.dup_of.is_none()).collect();
        assert!(recs.len() > 20, "{}", recs.len());
        for r in &recs {
            let Some(seen) = r.checks.iter().find(|k| k.checker == c) else { continue };
            let replayed = alone.entry(r.id.clone()).or_insert_with(|| {
                let dir = s.path(&format!("replay-{}", r.id));
                let o = run(brink().arg("replay").arg(&t).arg(&r.id).arg("-o").arg(&dir));
                assert!(o.status.success(), "{}", stderr(&o));
                let alone = run(std::process::Command::new(&c).arg(dir.join("mnt")));
                brink_blockdev::unmount_path(&dir.join("mnt")).unwrap();
                String::from_utf8_lossy(&alone.stdout).trim().to_string()
            });
            assert_eq!(&seen.message, replayed, "{slots} slots: state {}", r.id);
        }
    }
    let distinct: std::collections::HashSet<_> = alone.values().collect();
    assert!(distinct.len() >= 3, "the states differ: {distinct:?}");
    std::thread::sleep(Duration::from_millis(50));
    assert_no_mounts_or_loops(&s);
}

#[test]
fn hanging_and_crashing_checkers_are_failures_not_violations() {
    if !privileged("hanging_and_crashing_checkers_are_failures_not_violations") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "fix", FIXED);
    let start = Instant::now();
    let o = explore(&s, &t, "hang", &["--checker", "sleep 30", "--checker-timeout", "0.2", "--strategy", "prefix"]);
    // Failures are not violations, and not a pass either (issue 13).
    assert_eq!(o.status.code(), Some(2), "unjudged states: {}", stderr(&o));
    assert!(stderr(&o).contains("states unjudged"), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(60));
    let sum = summary(&s, "hang");
    assert_eq!(sum["violations"], 0);
    assert_eq!(sum["checker_failures"], sum["states_generated"], "{sum}");
    assert!(records(&s, "hang").iter().all(|r| r.checks[0].message.starts_with("timed out")));
    let o = explore(&s, &t, "crash", &["--checker", "kill -SEGV $$", "--strategy", "prefix"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(records(&s, "crash").iter().all(|r| r.checks[0].message.contains("signal 11")));
    let o = explore(&s, &t, "missing", &["--checker", "/no/such/checker", "--strategy", "prefix"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(records(&s, "missing").iter().all(|r| r.checks[0].message.starts_with("exit 127")));
    assert_no_mounts_or_loops(&s);
}

/// The records with every check's time set to 0: what two runs of one exploration share.
/// Records without what depends on scheduling: each check's `ms`, and which state of
/// equal trees ran the checkers (`tree_dup_of`).
pub(crate) fn without_times(recs: Vec<StateRecord>) -> Vec<StateRecord> {
    recs.into_iter()
        .map(|mut r| {
            r.checks.iter_mut().for_each(|c| c.ms = 0);
            r.tree_dup_of = None;
            r
        })
        .collect()
}

fn wait_for_lines(path: &Path, n: usize) {
    let start = Instant::now();
    loop {
        let lines = std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{} never reached {n} lines", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A run killed outright (SIGKILL: no cleanup at all) and resumed gives the same
/// states.jsonl as an uninterrupted run, apart from checker times.
#[test]
fn resume_after_sigkill_gives_the_same_result() {
    if !privileged("resume_after_sigkill_gives_the_same_result") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = format!("sleep 0.05; {}", checker(&s));
    let o = explore(&s, &t, "whole", &["--checker", &c, "--jobs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let table = crate::MOUNT_TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = brink()
        .env("TMPDIR", s.tmpdir())
        .arg("explore")
        .arg(&t)
        .args(["--checker", &c, "--jobs", "1", "-o"])
        .arg(s.path("killed"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lines(&s.path("killed/states.partial.jsonl"), 8);
    child.kill().unwrap();
    child.wait().unwrap();
    // The watchdog aborts the FUSE connection and unmounts everything under the work
    // area: even a kill -9 leaves no mount behind for long.
    let start = Instant::now();
    while std::fs::read_to_string("/proc/mounts").unwrap().contains(&s.dir.path().display().to_string()) {
        assert!(start.elapsed() < Duration::from_secs(10), "mounts of the killed run remain");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(table);
    let o = explore(&s, &t, "killed", &["--checker", &c, "--jobs", "1", "--resume"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(without_times(records(&s, "killed")), without_times(records(&s, "whole")));
    assert_eq!(summary(&s, "killed")["violations"], summary(&s, "whole")["violations"]);
    assert_no_mounts_or_loops(&s);
}

#[test]
fn sigint_stops_cleanly_and_resume_finishes() {
    if !privileged("sigint_stops_cleanly_and_resume_finishes") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "fix", FIXED);
    let child = brink()
        .env("TMPDIR", s.tmpdir())
        .arg("explore")
        .arg(&t)
        .args(["--checker", "sleep 0.05", "--jobs", "2", "-o"])
        .arg(s.path("r"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&s.path("r/states.partial.jsonl"), 4);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(summary(&s, "r")["complete"], false);
    assert_no_mounts_or_loops(&s);
    assert!(!s.path("r/.work").exists(), "the work area is removed");
    let o = explore(&s, &t, "r", &["--checker", "sleep 0.05", "--jobs", "2", "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sum = summary(&s, "r");
    assert_eq!(sum["complete"], true);
    assert_eq!(sum["states_generated"].as_u64().unwrap(), records(&s, "r").len() as u64);
}

#[test]
fn limits_and_usage_errors() {
    if !privileged("limits_and_usage_errors") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let o = explore(&s, &t, "r", &["--checker", "true", "--max-states", "3"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("states, more than --max-states 3") && e.trim().lines().count() == 1, "{e}");
    assert!(!s.path("r").exists(), "a refused run writes nothing");
    let o = explore(&s, &t, "r", &["--time-budget", "0", "--checker", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(summary(&s, "r")["complete"], false);
    // The report says how far a run stopped by its time budget got.
    let report = run(brink().arg("report").arg(s.path("r")));
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("INCOMPLETE   stopped by time budget of 0s: 0 of the "), "{text}");
    let o = explore(&s, &t, "r", &["--checker", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pass --resume"), "{}", stderr(&o));
    let o = run(brink().arg("explore").arg(&t).args(["--count-only", "--strategy", "omit-one", "--json"]));
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["states_total"].as_u64().unwrap() > 0);
    // Sizing a run: every strategy's states, and with a checker the time each would take
    // at the rate of a short calibration run.
    let o = run(brink().env("TMPDIR", s.tmpdir()).arg("explore").arg(&t).args(["--count-only", "--checker", "true"]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for row in ["exhaustive", "prefix", "omit-one"] {
        assert!(text.contains(row), "{row}: {text}");
    }
    assert!(text.contains("states/s, measured by checking "), "{text}");
    assert_no_mounts_or_loops(&s);
}

/// The three ext4 data modes side by side: the rename bug shows in every mode.
#[test]
fn ext4_modes_side_by_side() {
    if !privileged("ext4_modes_side_by_side") {
        return;
    }
    let s = Scratch::new();
    let c = checker(&s);
    let o = run(brink()
        .env("TMPDIR", s.tmpdir())
        .args(["ext4-modes", "--checker", &c, "--setup", "printf old > file", "-o"])
        .arg(s.path("m"))
        .args(["--", "sh", "-c", BUGGY]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for mode in ["ordered", "writeback", "journal"] {
        let row = out
            .lines()
            .find(|l| l.starts_with("sh -c ") && l.split_whitespace().nth(2) == Some(mode))
            .unwrap_or_else(|| panic!("no {mode} row: {out}"));
        assert!(row.contains("VIOLATIONS"), "{row}");
        assert!(s.path(&format!("m/{mode}/results/summary.json")).exists());
    }
    assert_no_mounts_or_loops(&s);
}

/// Sampling reports how much of the space it covered, with stable ids for a seed.
#[test]
fn sampling_reports_coverage_and_is_seeded() {
    if !privileged("sampling_reports_coverage_and_is_seeded") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let args = ["--checker", "true", "--strategy", "sample", "--samples", "10", "--seed", "42"];
    assert!(matches!(explore(&s, &t, "a", &args).status.code(), Some(0 | 1)));
    assert!(matches!(explore(&s, &t, "b", &args).status.code(), Some(0 | 1)));
    let ids = |out| records(&s, out).into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids("a"), ids("b"));
    let sum = summary(&s, "a");
    let covered = sum["fraction_covered"].as_f64().unwrap();
    let total = sum["states_total"].as_f64().unwrap();
    assert!((covered - ids("a").len() as f64 / total).abs() < 1e-9, "{sum}");
    // Stratified: with more samples than crash points, every point gets at least one,
    // whatever the jobs.
    let points = sum["sample"]["points"].as_u64().unwrap();
    let many = (points * 3).to_string();
    let args = ["--checker", "true", "--strategy", "sample", "--samples", &many, "--seed", "1", "--jobs", "1"];
    assert!(matches!(explore(&s, &t, "c", &args).status.code(), Some(0 | 1)));
    let c = summary(&s, "c");
    assert_eq!(c["sample"]["points_sampled"].as_u64(), Some(points), "{c}");
    let positions: std::collections::HashSet<u64> = records(&s, "c").iter().map(|r| r.position).collect();
    assert!(positions.len() as u64 > points, "every crash point and the no-crash state: {positions:?}");
    let mut args4 = args.to_vec();
    *args4.last_mut().unwrap() = "4";
    assert!(matches!(explore(&s, &t, "d", &args4).status.code(), Some(0 | 1)));
    assert_eq!(ids("c"), ids("d"), "the same sample at any --jobs");
}

/// Without privileges, states are recovered in userspace (e2fsck replays the journal,
/// debugfs extracts the files), and the verdicts are those of kernel recovery.
#[test]
fn userspace_recovery_without_privileges_agrees_with_the_kernel() {
    if !privileged("userspace_recovery_without_privileges_agrees_with_the_kernel") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = checker(&s);
    assert_eq!(explore(&s, &t, "kernel", &["--checker", &c, "--recovery", "kernel"]).status.code(), Some(1));
    let open = |p: &Path| std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    open(s.dir.path());
    open(&s.tmpdir());
    let o = run(brink()
        .env("TMPDIR", s.tmpdir())
        .arg("explore")
        .arg(&t)
        .args(["--checker", &c, "-o"])
        .arg(s.path("user"))
        .uid(65534)
        .gid(65534));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("recovering states in userspace"), "{}", stderr(&o));
    let verdicts = |out| records(&s, out).into_iter().map(|r| (r.id, r.verdict)).collect::<Vec<_>>();
    assert_eq!(verdicts("user"), verdicts("kernel"));
}

/// The same trace, model and strategy give the same states.jsonl at any --jobs.
#[test]
fn results_do_not_depend_on_jobs() {
    if !privileged("results_do_not_depend_on_jobs") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = checker(&s);
    for (out, jobs) in [("j1", "1"), ("j3", "3")] {
        assert_eq!(
            explore(&s, &t, out, &["--checker", &c, "--torn", "prefix", "--strategy", "omit-k", "--jobs", jobs])
                .status
                .code(),
            Some(1)
        );
    }
    assert_eq!(without_times(records(&s, "j1")), without_times(records(&s, "j3")));
}

/// `--media-faults` (off by default) adds, per crash point, one state per fault kind
/// per volatile write; each is checked through the kernel (a latent sector error is a
/// read failing during recovery), and `replay` builds the same image: the misdirected
/// write's data next to its own sectors, the garbage tear's second half overwritten.
#[test]
fn media_faults_are_one_per_state_and_replay_faithfully() {
    if !privileged("media_faults_are_one_per_state_and_replay_faithfully") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "fix", FIXED);
    let c = checker(&s);
    let o = explore(&s, &t, "plain", &["--checker", &c]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(summary(&s, "plain")["media_fault_states"], 0);
    assert!(records(&s, "plain").iter().all(|r| !r.id.contains('~') && r.fault.is_none()));

    let o = explore(&s, &t, "media", &["--checker", &c, "--media-faults"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let sum = summary(&s, "media");
    let recs = records(&s, "media");
    let faulty: Vec<&StateRecord> = recs.iter().filter(|r| r.id.contains('~')).collect();
    assert_eq!(sum["media_fault_states"].as_u64(), Some(faulty.len() as u64), "{sum}");
    for kind in ["~g", "~l", "~m"] {
        assert!(faulty.iter().any(|r| r.id.contains(kind)), "no {kind} state");
    }
    for r in &faulty {
        assert!(r.fault.is_some() && r.omitted.is_empty() && r.torn.is_empty(), "one fault and nothing else: {r:?}");
    }
    // A latent sector error under the file system's metadata fails its recovery.
    assert!(faulty.iter().any(|r| r.id.contains("~l") && r.verdict != brink_check::Verdict::Consistent));

    let img = |id: &str| {
        let p = s.path(&format!("{id}.img"));
        brink_explore::replay::materialize(&t, &id.parse().unwrap(), &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        bytes
    };
    let differing = |a: &[u8], b: &[u8]| -> Vec<usize> { (0..a.len()).filter(|&i| a[i] != b[i]).collect() };
    let m = faulty.iter().find(|r| r.id.contains("~m")).unwrap();
    let (pos, w) = m.id.split_once("~m").unwrap();
    let (whole, missed, moved) = (img(pos), img(&format!("{pos}-{w}")), img(&m.id));
    let index: u64 = w.parse().unwrap();
    let reader = brink_trace::TraceReader::open(&t).unwrap();
    let (own, len) = reader
        .events()
        .unwrap()
        .map(|e| e.unwrap())
        .find_map(|e| match e.event {
            brink_trace::Event::Write(wr) if e.index == index => Some((wr.offset as usize, wr.len as usize)),
            _ => None,
        })
        .unwrap();
    // The data that belonged at its own sectors lands next to them; its own keep the
    // old data; nothing else changes.
    let to = if own + 2 * len <= whole.len() { own + len } else { own - len };
    assert_eq!(&moved[to..to + len], &whole[own..own + len]);
    assert_eq!(&moved[own..own + len], &missed[own..own + len]);
    assert!(differing(&missed, &moved).iter().all(|&i| (to..to + len).contains(&i)));
    let g = faulty.iter().find(|r| r.id.contains("~g")).unwrap();
    let garbage = img(&g.id);
    let base = img(g.id.split_once('~').unwrap().0);
    assert!(!differing(&base, &garbage).is_empty(), "the garbage tear changes the image");
    assert_no_mounts_or_loops(&s);
}

/// Issue 16: a state whose recovered files and marks equal a checked state's takes its
/// verdict without running the checkers (`tree_dup_of`); the verdicts are those of a run
/// that checks every image, at one job and at four.
#[test]
fn tree_dedup_runs_fewer_checkers_and_keeps_every_verdict() {
    if !privileged("tree_dedup_runs_fewer_checkers_and_keeps_every_verdict") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = checker(&s);
    // One checker command for the three runs (it is part of each record), counting its
    // runs in a file read after each run.
    let counter = s.path("runs");
    let check = format!("echo x >> {}; {c}", counter.display());
    let mut runs = std::collections::HashMap::new();
    for (name, jobs, flags) in [("all", "4", &["--no-tree-dedup"][..]), ("one", "1", &[]), ("four", "4", &[])] {
        let mut args = vec!["--checker", "fsck", "--jobs", jobs, "--checker", &check];
        args.extend(flags);
        assert_eq!(explore(&s, &t, name, &args).status.code(), Some(1), "{name}");
        runs.insert(name, std::fs::read_to_string(&counter).map_or(0, |t| t.lines().count() as u64));
        let _ = std::fs::remove_file(&counter);
    }
    let all = without_times(records(&s, "all"));
    for name in ["one", "four"] {
        assert_eq!(without_times(records(&s, name)), all, "{name}: the verdicts of checking every image");
        let sum = summary(&s, name);
        let dups = sum["tree_dups"].as_u64().unwrap();
        assert!(dups > 0, "{name}: different images recover to the same files here: {sum}");
        assert_eq!(runs[name] + dups, runs["all"], "{name}: each tree duplicate saved a run");
        let recs = records(&s, name);
        let ids: std::collections::HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        for r in recs.iter().filter(|r| r.tree_dup_of.is_some()) {
            let rep = r.tree_dup_of.as_deref().unwrap();
            assert!(ids.contains(rep) && r.dup_of.is_none(), "{name}: {} names {rep}", r.id);
            assert_eq!(r.checks[0].checker, "fsck", "{name}: fsck still ran on {}", r.id);
        }
    }
    assert_no_mounts_or_loops(&s);
}

/// A run started with a relative trace path resumes from another directory with the
/// path relative to that one (`run.json` keeps it absolute), and resuming a finished
/// run leaves its counts as they were.
#[test]
fn resume_from_another_directory_and_of_a_finished_run() {
    if !privileged("resume_from_another_directory_and_of_a_finished_run") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let sub = s.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let go = |cwd: &Path, trace: &str, resume: bool| {
        let mut cmd = brink();
        cmd.env("TMPDIR", s.tmpdir()).current_dir(cwd).args(["explore", trace, "--checker", "true", "-o"]);
        cmd.arg(s.path("r"));
        if resume {
            cmd.arg("--resume");
        }
        run(&mut cmd)
    };
    assert_eq!(go(s.dir.path(), "bug", false).status.code(), Some(0));
    let first = summary(&s, "r");
    assert!(t.ends_with("bug"));
    let o = go(&sub, "../bug", true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again = summary(&s, "r");
    for k in ["states_generated", "states_unique", "states_checked", "consistent", "complete"] {
        assert_eq!(first[k], again[k], "{k}");
    }
    assert_no_mounts_or_loops(&s);
}

/// Issue 15: an ALICE checker runs unchanged with `--checker-protocol alice`: called
/// with the state's directory, the acknowledgements file and a worker id, its exit 2
/// is a violation (brink's protocol would call it a checker failure).
#[test]
fn alice_checkers_run_unchanged() {
    if !privileged("alice_checkers_run_unchanged") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = s.path("alice-check.sh");
    let script = "#!/bin/sh\ncd \"$1\" || exit 3\n[ -n \"$3\" ] || exit 3\n\
        if grep -qx done \"$2\" && [ \"$(cat file)\" != new ]; then echo 'config not updated'; exit 2; fi\n";
    std::fs::write(&c, script).unwrap();
    std::fs::set_permissions(&c, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let c = c.display().to_string();
    let o = explore(&s, &t, "alice", &["--checker", &c, "--checker-protocol", "alice"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let recs = records(&s, "alice");
    let v = recs.iter().find(|r| r.verdict == brink_check::Verdict::Violation).expect("a violation");
    assert_eq!(v.checks[0].message, "config not updated (exit 2)");
    assert!(recs.iter().all(|r| r.verdict != brink_check::Verdict::CheckerFailure));
    // The same checker under brink's protocol: exit 2 is not a verdict.
    let o = explore(&s, &t, "brink", &["--checker", &c]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(summary(&s, "brink")["checker_failures"].as_u64().unwrap() > 0);
    assert_no_mounts_or_loops(&s);
}
