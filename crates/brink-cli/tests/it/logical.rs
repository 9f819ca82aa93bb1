//! The logical explorer end to end (issue 15): the suite's atomic-replace workloads
//! recorded once, explored under APMs with `--level logical` and the suite's checker:
//! the rename lost after its acknowledgement is a violation under posix and each ext4
//! model when the directory is not fsynced, and nothing is found under the ext4 models
//! and xfs when it is; the same states and verdicts at `--jobs 1` and `--jobs 2`.

use std::path::{Path, PathBuf};

use brink_testkit::{Need, can_run};

use crate::{Scratch, run, stderr};

fn needs(test: &str) -> bool {
    can_run(test, &[Need::Root, Need::Fuse, Need::Loop, Need::Program("strace"), Need::Program("debugfs")])
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The suite's workload `name`, recorded with its calls.
fn record(s: &Scratch, name: &str) -> PathBuf {
    record_on(s, name, "ext4")
}

/// The suite's workload `name`, recorded with its calls on file system `fs`.
fn record_on(s: &Scratch, name: &str, fs: &str) -> PathBuf {
    let dir = repo().join("workloads").join(name);
    let setup = format!("sh {}", dir.join("setup.sh").display());
    let t = s.path(&format!("{name}-{fs}"));
    // XFS needs 300 MiB at least; the others keep the default.
    let size = if fs == "ext4" { "64M" } else { "300M" };
    let o = run(s
        .record(&["--no-stacks", "--fs", fs, "--size", size, "--setup", &setup, "-o"])
        .arg(&t)
        .arg("--")
        .arg("sh")
        .arg(dir.join("workload.sh")));
    assert!(o.status.success(), "{}", stderr(&o));
    t
}

/// `brink explore --level logical` of `trace` under `apms` into `out`; its exit code.
fn explore(trace: &Path, apms: &str, out: &Path, jobs: &str) -> i32 {
    let checker = repo().join("checkers/atomic-replace/check.sh");
    let o = run(crate::brink()
        .args(["explore", "--level", "logical", "--apm", apms, "--jobs", jobs, "--checker"])
        .arg(&checker)
        .arg(trace)
        .arg("-o")
        .arg(out));
    o.status.code().unwrap_or_else(|| panic!("killed: {}", stderr(&o)))
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// `states.jsonl` without the checks' times.
fn states(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("states.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for c in v["checks"].as_array_mut().unwrap() {
                c.as_object_mut().unwrap().remove("ms");
            }
            v
        })
        .collect()
}

#[test]
fn the_rename_lost_after_its_ack_is_found_under_posix_and_ext4_and_not_when_fixed() {
    if !needs("the_rename_lost_after_its_ack_is_found_under_posix_and_ext4_and_not_when_fixed") {
        return;
    }
    let s = Scratch::new();
    let buggy = record(&s, "atomic-replace-buggy");
    let out = s.path("buggy");
    let apms = ["posix", "ext4-ordered", "ext4-writeback", "ext4-journal"];
    assert_eq!(explore(&buggy, &apms.join(","), &out, "2"), 1);
    for apm in apms {
        let sum = summary(&out.join(apm));
        assert_eq!((sum["level"].as_str(), sum["model"].as_str()), (Some("logical"), Some(apm)));
        assert!(sum["violations"].as_u64().unwrap() > 0 && sum["complete"] == true, "{apm}: {sum}");
        let lost = states(&out.join(apm)).into_iter().any(|st| {
            st["marks"].as_u64().unwrap() > 0
                && st["checks"][0]["message"].as_str().unwrap_or("").starts_with("acknowledged 'config v")
        });
        assert!(lost, "{apm}: no acknowledged version lost");
    }
    // The same at one job; report reads the results.
    let one = s.path("buggy-1");
    assert_eq!(explore(&buggy, "posix,ext4-ordered", &one, "1"), 1);
    for apm in ["posix", "ext4-ordered"] {
        assert_eq!(states(&one.join(apm)), states(&out.join(apm)), "{apm}");
    }
    let o = run(crate::brink().arg("report").arg(out.join("ext4-ordered")));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("ext4-ordered (APM, logical level)"), "{text}");
    assert!(text.contains("acknowledged 'config v"), "{text}");
    // One vulnerability in the program's terms and ALICE's form, however many versions
    // it lost.
    assert!(text.contains("vulnerabilities: 1 "), "{text}");
    assert!(text.contains("rename(config.tmp → config) at workload.sh:"), "{text}");
    assert!(text.contains("ALICE: operation ") && text.contains("(rename) must persist before operation "), "{text}");
    model_matrix(&buggy, &out, &apms);
    // Counting: exact under the bound, and said to be past it rather than cut to it.
    let count = |max: &str| {
        let o = run(crate::brink()
            .args(["explore", "--level", "logical", "--apm", "posix", "--count-only", "--max-states", max])
            .arg(&buggy));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let exact = count("1000000");
    assert!(exact.starts_with("posix: ") && exact.contains(" states (alice, "), "{exact}");
    assert!(count("5").starts_with("posix: more than 5 (--max-states) states"), "{}", count("5"));

    let fixed = record(&s, "atomic-replace-fixed");
    let out = s.path("fixed");
    let apms = ["ext4-ordered", "ext4-writeback", "ext4-journal", "xfs"];
    assert_eq!(explore(&fixed, &apms.join(","), &out, "2"), 0);
    for apm in apms {
        let sum = summary(&out.join(apm));
        assert!(sum["violations"] == 0 && sum["consistent"].as_u64().unwrap() > 0, "{apm}: {sum}");
    }
}

/// The kernel's exploration of the same recording beside the models' (`out/kernel`):
/// `brink report out` lines them up, and the lost rename has one id in every column.
fn model_matrix(trace: &Path, out: &Path, apms: &[&str]) {
    let checker = repo().join("checkers/atomic-replace/check.sh");
    let o =
        run(crate::brink().arg("explore").arg(trace).arg("--checker").arg(&checker).arg("-o").arg(out.join("kernel")));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = run(crate::brink().args(["report", "--json"]).arg(out));
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let columns: Vec<&str> = m["columns"].as_array().unwrap().iter().map(|c| c["model"].as_str().unwrap()).collect();
    let mut want = apms.to_vec();
    want.push("kernel");
    assert_eq!(columns, want);
    let everywhere =
        m["rows"].as_array().unwrap().iter().find(|r| {
            r["kind"] == "durability" && r["states"].as_array().unwrap().iter().all(|n| n.as_u64().unwrap() > 0)
        });
    let row = everywhere.unwrap_or_else(|| panic!("no durability vulnerability in every column: {m:#}"));
    assert!(row["exposure"].as_str().unwrap().contains("seen by the kernel"), "{row}");
    let o = run(crate::brink().arg("report").arg(out));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("model matrix: ") && text.contains(row["id"].as_str().unwrap()), "{text}");
}

/// XFS and btrfs recordings explore at the logical level too: btrfs's initial files
/// read with `btrfs restore`, XFS's through a read-only mount that leaves nothing
/// behind; under each file system's own model the lost rename is found.
#[test]
fn xfs_and_btrfs_recordings_explore_under_their_models() {
    if !needs("xfs_and_btrfs_recordings_explore_under_their_models") {
        return;
    }
    let s = Scratch::new();
    for fs in ["xfs", "btrfs"] {
        let t = record_on(&s, "atomic-replace-buggy", fs);
        let out = s.path(&format!("out-{fs}"));
        assert_eq!(explore(&t, fs, &out, "2"), 1, "{fs}");
        let sum = summary(&out.join(fs));
        assert!(sum["violations"].as_u64().unwrap() > 0 && sum["complete"] == true, "{fs}: {sum}");
        let lost = states(&out.join(fs))
            .into_iter()
            .any(|st| st["checks"][0]["message"].as_str().unwrap_or("").starts_with("acknowledged 'config v"));
        assert!(lost, "{fs}: no acknowledged version lost");
    }
    crate::assert_no_mounts_or_loops(&s);
}

#[test]
fn logical_flags_are_checked() {
    let s = Scratch::new();
    let t = s.path("missing");
    let o =
        run(crate::brink().args(["explore", "--level", "logical", "--checker", "true", "-o"]).arg(s.path("o")).arg(&t));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--apm"), "{}", stderr(&o));
    let o = run(crate::brink()
        .args(["explore", "--level", "logical", "--apm", "zfs", "--checker", "true", "-o"])
        .arg(s.path("o"))
        .arg(&t));
    assert!(stderr(&o).contains("unknown APM 'zfs'"), "{}", stderr(&o));
}

/// `brink check-model`: the ext4-ordered model explains every state the kernel
/// recovered from the suite's atomic-replace workloads (ext4 data=ordered), and
/// say how many of their own states the kernel never produced; posix, its space over
/// the bound, explains them through witnesses translated from ext4-ordered's states
/// (reading the same block exploration); a model of another file system is refused.
#[test]
fn check_model_explains_every_recovered_state_of_atomic_replace() {
    if !needs("check_model_explains_every_recovered_state_of_atomic_replace") {
        return;
    }
    let s = Scratch::new();
    // posix's whole space of these workloads is over the bound (100,000 states).
    for name in ["atomic-replace-buggy", "atomic-replace-fixed"] {
        let t = record(&s, name);
        let apm = "ext4-ordered";
        let out = s.path(&format!("{name}-{apm}"));
        let o = run(crate::brink().args(["check-model", "--apm", apm, "--json", "-o"]).arg(&out).arg(&t));
        assert_eq!(o.status.code(), Some(0), "{name} {apm}: {}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["unexplained"].as_array().map(Vec::len), Some(0), "{name} {apm}: {j}");
        assert!(j["kernel_states"].as_u64().unwrap() > 0 && j["model_states"].as_u64().unwrap() > 0, "{j}");
        assert!(j["model_only"].as_u64().unwrap() <= j["model_states"].as_u64().unwrap(), "{j}");
        let o = run(crate::brink()
            .args(["check-model", "--apm", "posix", "--max-states", "100000", "--json", "--results"])
            .arg(out.join("block"))
            .arg(&t));
        assert_eq!(o.status.code(), Some(0), "{name} posix: {}", stderr(&o));
        let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(p["witnesses_from"].as_array().is_some_and(|w| !w.is_empty()), "{p}");
        assert_eq!(
            (p["unexplained"].as_array().map(Vec::len), p["undecided"].as_array().map(Vec::len)),
            (Some(0), Some(0)),
            "{p}"
        );
        assert_eq!(p["kernel_states"], j["kernel_states"], "{p}");
        let o = run(crate::brink().args(["check-model", "--apm", "xfs", "-o"]).arg(s.path("x")).arg(&t));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("xfs describes another file system"), "{}", stderr(&o));
    }
}
