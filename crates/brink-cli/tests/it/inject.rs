//! Fault injection in the recorder (issue 5): the injected EIO reaches the workload
//! through the real kernel, the trace logs it and replays exactly (the failed write
//! absent), and an injection that cannot be applied is a clear error before the
//! workload runs.

use crate::{Scratch, assert_no_mounts_or_loops, brink, privileged, run, show_json, stderr};

const SETUP: &str = "head -c 65536 /dev/zero | tr '\\0' o > data && sync";
const WORKLOAD: &str = "head -c 65536 /dev/zero | tr '\\0' n | dd of=data conv=notrunc bs=65536 status=none; sync data; echo first=$?; sync data; echo second=$?";

/// The workload's standard output, as the trace keeps it.
fn stdout_of(trace: &std::path::Path) -> String {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(trace.join("meta.json")).unwrap()).unwrap();
    meta["workload"]["stdout"].as_str().unwrap_or_default().to_string()
}

#[test]
fn injected_write_error_reaches_the_workload_and_replays_exactly() {
    if !privileged("injected_write_error_reaches_the_workload_and_replays_exactly") {
        return;
    }
    let s = Scratch::new();
    let t = s.path("t");
    let o =
        run(s.record(&["--inject", "file:data", "--setup", SETUP, "-o"]).arg(&t).args(["--", "sh", "-c", WORKLOAD]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = show_json(&t);
    assert_eq!(j["errors"], 1, "{j}");
    // Linux reports the failed writeback once; the retried fsync succeeds.
    let out = stdout_of(&t);
    assert!(out.contains("first=1") && out.contains("second=0"), "{out}");
    // The final image lacks the failed write, and replay agrees with it exactly.
    let o = run(brink().arg("verify").arg(&t));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&run(brink().arg("show").arg(&t)).stdout).into_owned();
    assert!(text.contains("injected EIO on a write"), "{text}");
    assert_no_mounts_or_loops(&s);
}

#[test]
fn injected_flush_error_reaches_fsync() {
    if !privileged("injected_flush_error_reaches_fsync") {
        return;
    }
    let s = Scratch::new();
    let t = s.path("t");
    let w = "echo x > f; sync f; echo first=$?";
    let o = run(s.record(&["--inject", "flush:1,permanent", "-o"]).arg(&t).args(["--", "sh", "-c", w]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = show_json(&t);
    assert!(j["errors"].as_u64().unwrap() >= 1, "{j}");
    assert!(stdout_of(&t).contains("first=1"), "{}", stdout_of(&t));
    let o = run(brink().arg("verify").arg(&t));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_mounts_or_loops(&s);
}

#[test]
fn injections_that_cannot_apply_are_refused_before_the_workload_runs() {
    if !privileged("injections_that_cannot_apply_are_refused_before_the_workload_runs") {
        return;
    }
    let s = Scratch::new();
    let ran = s.path("ran");
    let workload = format!("touch {}", ran.display());
    let cases: [(&[&str], &str); 6] = [
        (&["--inject", "file:nosuch"], "nosuch in the base image"),
        (&["--inject", "file:empty", "--setup", "touch empty"], "empty has no data blocks in the base image"),
        (&["--inject", "sectors:0-999999999"], "range ends past"),
        (&["--inject", "flush:0"], "bad injection 'flush:0'"),
        (&["--fs", "xfs", "--size", "300M", "--inject", "file:nosuch"], "nosuch in the base image"),
        (&["--fs", "btrfs", "--size", "300M", "--inject", "file:x"], "copy-on-write"),
    ];
    for (i, (args, expect)) in cases.iter().enumerate() {
        let o = run(s.record(args).arg("-o").arg(s.path(&format!("t{i}"))).args(["--", "sh", "-c", &workload]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect) && err.lines().count() == 1, "{args:?}: {err}");
        assert!(!ran.exists(), "{args:?}: the workload ran");
        assert!(!s.path(&format!("t{i}")).exists());
    }
    assert_no_mounts_or_loops(&s);
}

fn repo_workload(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads").join(name)
}

/// `brink faults sweep`: a run without an injection, then one per write to the file;
/// each row says whether its injection fired, what the application did, and the
/// verdicts. fsync-retry loses its acknowledged data at the point, fsync-abort gives up.
#[test]
fn faults_sweep_runs_every_injection_point() {
    if !privileged("faults_sweep_runs_every_injection_point") {
        return;
    }
    let s = Scratch::new();
    for (workload, exit, lost) in [("fsync-retry", "exit 0", true), ("fsync-abort", "exit 1", false)] {
        let out = s.path(workload);
        let o = run(brink()
            .env("TMPDIR", s.tmpdir())
            .args(["faults", "sweep"])
            .arg(repo_workload(workload))
            .args(["--file", "data", "--json", "-o"])
            .arg(&out));
        assert_eq!(o.status.code(), Some(i32::from(lost)), "{}", stderr(&o));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
        assert!(rows.len() >= 2, "{rows:?}");
        assert_eq!(
            (rows[0]["point"].as_str(), rows[0]["fired"].as_u64(), rows[0]["violations"].as_u64()),
            (Some("none"), Some(0), Some(0))
        );
        let p = &rows[1];
        assert_eq!(
            (p["point"].as_str(), p["fired"].as_u64(), p["exit"].as_str()),
            (Some("file:data,once"), Some(1), Some(exit)),
            "{p}"
        );
        assert!(p["said"].as_str().unwrap().contains("fsync failed"), "{p}");
        assert_eq!(p["violations"].as_u64().unwrap() > 0, lost, "{p}");
        assert_eq!(p["no_crash"], if lost { "violation" } else { "consistent" }, "{p}");
        for f in ["sweep.json", "sweep.md"] {
            assert!(out.join(f).is_file(), "{f}");
        }
    }
    // A mode the manifest lacks is one line and exit 2, before anything runs.
    let o = run(brink()
        .args(["faults", "sweep"])
        .arg(repo_workload("fsync-retry"))
        .args(["--mode", "nope", "-o"])
        .arg(s.path("x")));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no mode 'nope'") && stderr(&o).lines().count() == 1, "{}", stderr(&o));
    assert!(!s.path("x").exists());
    assert_no_mounts_or_loops(&s);
}
