//! Vulnerabilities in the program's terms end to end (issue 14): a recording with the
//! workload's calls explores to vulnerabilities named by the call and script line that
//! caused them, one per bug however many marks it broke, with the same id in another
//! recording.

use std::path::{Path, PathBuf};

use brink_testkit::{Need, can_run};

use crate::{Scratch, run, stderr};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Record `workloads/NAME` as the suite does (its setup, `sh workload.sh`) and explore it
/// exhaustively with the suite's checker; the results directory.
fn record_and_explore(s: &Scratch, name: &str, out: &str) -> PathBuf {
    let dir = repo().join("workloads").join(name);
    let setup = format!("sh {}", dir.join("setup.sh").display());
    let trace = s.path(&format!("{out}-trace"));
    let o = run(s.record(&["--setup", &setup, "-o"]).arg(&trace).arg("--").arg("sh").arg(dir.join("workload.sh")));
    assert!(o.status.success(), "{}", stderr(&o));
    let results = s.path(out);
    let checker = repo().join("checkers/atomic-replace/check.sh");
    let o = run(crate::brink()
        .arg("explore")
        .arg(&trace)
        .arg("-o")
        .arg(&results)
        .arg("--checker")
        .arg(&checker)
        .args(["--strategy", "exhaustive"]));
    assert_eq!(o.status.code(), Some(1), "violations: {}", stderr(&o));
    results
}

fn application_vulns(results: &Path) -> Vec<serde_json::Value> {
    let o = run(crate::brink().args(["report", "--json"]).arg(results));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["vulnerabilities"].as_array().unwrap().iter().filter(|v| v["owner"] == "application").cloned().collect()
}

#[test]
fn atomic_replace_is_one_vulnerability_named_by_its_mv_line_and_stable_across_recordings() {
    let test = "atomic_replace_is_one_vulnerability_named_by_its_mv_line_and_stable_across_recordings";
    if !can_run(test, &[Need::Root, Need::Fuse, Need::Loop, Need::Program("strace")]) {
        return;
    }
    let s = Scratch::new();
    let one = record_and_explore(&s, "atomic-replace-buggy", "one");
    let v = application_vulns(&one);
    assert_eq!(v.len(), 1, "{v:#?}");
    let script = std::fs::read_to_string(repo().join("workloads/atomic-replace-buggy/workload.sh")).unwrap();
    let mv_line = script.lines().position(|l| l.trim_start().starts_with("mv config.tmp config")).unwrap() + 1;
    let sentence = v[0]["sentence"].as_str().unwrap();
    assert!(sentence.contains(&format!("rename(config.tmp → config) at workload.sh:{mv_line}")), "{sentence}");
    assert!(sentence.contains("before its directory ./ was fsynced"), "{sentence}");
    assert_eq!(v[0]["kind"], "durability");
    assert!(v[0]["marks_broken"].as_array().unwrap().len() > 1, "one vulnerability for several marks: {v:#?}");

    // Another recording (other pids, other timings): the same id, and diff says unchanged.
    let two = record_and_explore(&s, "atomic-replace-buggy", "two");
    let v2 = application_vulns(&two);
    assert_eq!(v2.iter().map(|v| v["id"].clone()).collect::<Vec<_>>(), vec![v[0]["id"].clone()]);
    let o = run(crate::brink().arg("diff").arg(&one).arg(&two));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("0 new, 0 fixed, 1 unchanged"), "{text}");
}
