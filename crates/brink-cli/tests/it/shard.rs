//! `brink explore --shard I/N` and `brink merge` end to end (issue 17): a real recording
//! of the rename bug explored on one machine and as three shards; the merge is the
//! one-machine run (check times aside), and `brink report` finds the same
//! vulnerabilities in both.

use std::path::Path;

use crate::errors::one_line_error;
use crate::explore::{BUGGY, checker, record, records, summary, without_times};
use crate::{Scratch, assert_no_mounts_or_loops, brink, privileged, run, stderr};

/// `brink report --json`'s vulnerabilities, by id and sentence.
fn vulnerabilities(results: &Path) -> Vec<(String, String)> {
    let o = run(brink().args(["report", "--json"]).arg(results));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["vulnerabilities"].as_array().unwrap().iter().map(|v| (v["id"].to_string(), v["sentence"].to_string())).collect()
}

#[test]
fn three_shards_merged_are_the_one_machine_run() {
    if !privileged("three_shards_merged_are_the_one_machine_run") {
        return;
    }
    let s = Scratch::new();
    let t = record(&s, "bug", BUGGY);
    let c = checker(&s);
    let explore = |out: &str, extra: &[&str]| {
        let o = run(brink()
            .env("TMPDIR", s.tmpdir())
            .arg("explore")
            .arg(&t)
            .arg("-o")
            .arg(s.path(out))
            .args(["--checker", &c, "--torn", "prefix", "--strategy", "omit-one"])
            .args(extra));
        assert!(matches!(o.status.code(), Some(0 | 1)), "{out}: {:?} {}", o.status, stderr(&o));
    };
    explore("one", &[]);
    for i in 0..3 {
        explore(&format!("s{i}"), &["--shard", &format!("{i}/3")]);
        assert_eq!(summary(&s, &format!("s{i}"))["shard"], format!("{i}/3"));
    }
    let shards: Vec<_> = [2, 0, 1].iter().map(|i| s.path(&format!("s{i}"))).collect();
    let o = run(brink().arg("merge").args(&shards).arg("-o").arg(s.path("m")));
    assert_eq!(o.status.code(), Some(1), "violations exit 1: {}", stderr(&o));
    assert!(stderr(&o).contains("merged 3 of 3 shards"), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("reproduce one: brink replay"));
    assert_eq!(without_times(records(&s, "one")), without_times(records(&s, "m")));
    let minimal = |dir: &str| std::fs::read_to_string(s.path(dir).join("minimal.jsonl")).unwrap();
    assert_eq!(minimal("one").lines().count(), minimal("m").lines().count());
    let (a, b) = (summary(&s, "one"), summary(&s, "m"));
    for key in [
        "states_total",
        "states_generated",
        "states_unique",
        "states_checked",
        "violations",
        "checker_failures",
        "consistent",
        "complete",
        "no_crash",
    ] {
        assert_eq!(a[key], b[key], "{key}: {a} {b}");
    }
    assert!(a["violations"].as_u64().unwrap() > 0);
    let v = vulnerabilities(&s.path("one"));
    assert!(!v.is_empty());
    assert_eq!(v, vulnerabilities(&s.path("m")));
    // Resuming a shard as another one is refused; the merged directory is not a shard.
    let o = run(brink().arg("explore").arg(&t).arg("-o").arg(s.path("s1")).args(["--checker", &c, "--resume"]));
    one_line_error(&o, "resume needs the same shard");
    let o = run(brink().arg("merge").arg(s.path("m")).arg("-o").arg(s.path("m2")));
    one_line_error(&o, "is not a shard");
    assert_no_mounts_or_loops(&s);
}

#[test]
fn bad_shards_are_one_line_errors() {
    let s = Scratch::new();
    for (bad, says) in [("0/0", "at least one shard"), ("3/2", "does not exist"), ("two", "written I/N")] {
        let o = run(brink()
            .arg("explore")
            .arg(s.path("t"))
            .args(["--checker", "true", "-o"])
            .arg(s.path("r"))
            .args(["--shard", bad]));
        one_line_error(&o, says);
    }
    let o = run(brink().arg("merge").arg(s.path("nope")).arg("-o").arg(s.path("m")));
    one_line_error(&o, "no finished run");
}
