//! The judgement as data: runs (how the workload exited, what the exploration counted,
//! the violating states' messages) and the rows and tables they must give, pinned as
//! snapshots. No recording, no kernel: `cargo test` runs them anywhere. Refresh a
//! snapshot after an intended change with `UPDATE_EXPECT=1 cargo test -p brink-suite`.

use std::path::PathBuf;

use brink_check::Verdict;
use brink_explore::StateRecord;
use brink_pmodel::Strategy;
use expect_test::{Expect as Snapshot, expect};

use super::*;

/// A mode of the workload under test, as a manifest would resolve it.
fn mode(name: &str, expect: Option<Expect>, message: Option<&str>, exit_code: Option<i32>) -> Mode {
    Mode {
        name: name.into(),
        fs: brink_blockdev::FsKind::Ext4,
        size: 64 << 20,
        mkfs_opts: String::new(),
        mount_opts: "data=ordered".into(),
        setup: None,
        command: "sh workload.sh".into(),
        expect,
        message: message.map(String::from),
        strategy: Strategy::Exhaustive,
        max_states: 100_000,
        torn: brink_pmodel::Torn::None,
        fs_findings_allowed: false,
        inject: Vec::new(),
        exit_code,
        logical: Vec::new(),
    }
}

/// An exploration that completed with these counts.
fn explored(violations: u64, checker_failures: u64) -> Explored {
    Explored {
        strategy: "exhaustive".into(),
        model: "writeback".into(),
        states: 40,
        unique: 30,
        violations,
        checker_failures,
        complete: true,
        stopped_by: None,
        no_crash: Some(Verdict::Consistent),
    }
}

/// A state's record as `states.jsonl` holds it: its checks as (checker, verdict,
/// message), its verdict the worst of them.
fn state(id: &str, checks: &[(&str, &str, &str)]) -> StateRecord {
    let checks: Vec<_> = checks
        .iter()
        .map(|(checker, verdict, message)| serde_json::json!({"checker": checker, "verdict": verdict, "message": message, "ms": 4}))
        .collect();
    let verdict = ["violation", "checker-failure"]
        .into_iter()
        .find(|v| checks.iter().any(|c| c["verdict"] == *v))
        .unwrap_or("consistent");
    let line = serde_json::json!({"id": id, "position": 7, "epoch": 2, "marks": 3, "omitted": [5], "torn": [],
        "image": "00ff", "verdict": verdict, "checks": checks, "dup_of": null});
    serde_json::from_value(line).expect("a states.jsonl line")
}

/// One run to judge: the workload (`name`) and its mode, how it exited, what it said
/// last, what the exploration found.
struct Case {
    name: &'static str,
    mode: Mode,
    exit: (&'static str, Option<i32>),
    stderr: &'static str,
    explored: Explored,
    records: Vec<StateRecord>,
}

fn case(name: &'static str, mode: Mode, explored: Explored, records: Vec<StateRecord>) -> Case {
    Case { name, mode, exit: ("exit 0", Some(0)), stderr: "", explored, records }
}

fn judged(c: &Case) -> Row {
    judge(&RunFacts {
        workload: c.name,
        mode: &c.mode,
        exit: (c.exit.0.to_string(), c.exit.1),
        workload_stderr: c.stderr,
        explored: c.explored.clone(),
        records: &c.records,
        record_s: 0.5,
        explore_s: 2.0,
        trace: PathBuf::from(format!("/r/{}/{}/trace", c.name, c.mode.name)),
        results: PathBuf::from(format!("/r/{}/{}/results", c.name, c.mode.name)),
        note: String::new(),
    })
}

fn torn_fs(id: &str) -> StateRecord {
    state(id, &[("mount", "violation", "the recovered image does not mount: Bad message (os error 74)")])
}

fn lost(id: &str) -> StateRecord {
    state(id, &[("check.sh", "violation", "acknowledged v3 lost: file holds v2"), ("fsck", "consistent", "")])
}

/// The expected outcomes, each met.
fn passing() -> Vec<Case> {
    let violations = Some(Expect::Violations);
    vec![
        case("buggy", mode("ordered", violations, None, Some(0)), explored(2, 0), vec![lost("12-1"), lost("14-2")]),
        // The example is one whose message is the one the manifest asks for.
        case(
            "buggy",
            mode("named", violations, Some("lost"), Some(0)),
            explored(2, 0),
            vec![state("9", &[("check.sh", "violation", "half there")]), lost("12-1")],
        ),
        case("fixed", mode("ordered", Some(Expect::Clean), None, Some(0)), explored(0, 0), vec![]),
        // Torn ext4 metadata: the file system's finding, not the application's.
        case(
            "torn",
            Mode { fs_findings_allowed: true, ..mode("sector", Some(Expect::Clean), None, Some(0)) },
            explored(2, 0),
            vec![
                torn_fs("5t1"),
                state("6t3", &[("fsck", "violation", "bad checksum"), ("check.sh", "consistent", "")]),
            ],
        ),
        Case {
            exit: ("exit 1", Some(1)),
            stderr: "giving up\n",
            ..case("gives-up", mode("eio", Some(Expect::Clean), None, Some(1)), explored(0, 0), vec![])
        },
    ]
}

/// Runs that must not pass, each for its own reason.
fn mismatches() -> Vec<Case> {
    let (clean, violations) = (Some(Expect::Clean), Some(Expect::Violations));
    let stopped = Explored { complete: false, stopped_by: Some("time budget".into()), ..explored(0, 0) };
    let failing = vec![state("3", &[("check.sh", "checker-failure", "timed out after 30s")])];
    vec![
        case("false-positive", mode("ordered", clean, None, Some(0)), explored(1, 0), vec![lost("12-1")]),
        // Only with `file_system_findings` are they set apart, and never the application's.
        case("fs-finding", mode("sector", clean, None, Some(0)), explored(1, 0), vec![torn_fs("5t1")]),
        case(
            "torn-and-lost",
            Mode { fs_findings_allowed: true, ..mode("sector", clean, None, Some(0)) },
            explored(2, 0),
            vec![torn_fs("5t1"), lost("12-1")],
        ),
        case("blind", mode("ordered", violations, None, Some(0)), explored(0, 0), vec![]),
        case(
            "wrong-reason",
            mode("ordered", violations, Some("acknowledged v9"), Some(0)),
            explored(1, 0),
            vec![lost("12-1")],
        ),
        Case {
            exit: ("exit 127", Some(127)),
            stderr: "sh: 1: no-such-program: not found\n\n",
            ..case("missing", mode("ordered", clean, None, Some(0)), explored(0, 0), vec![])
        },
        case("stopped", mode("ordered", clean, None, Some(0)), stopped, vec![]),
        case("hung", mode("ordered", clean, None, Some(0)), explored(0, 1), failing),
    ]
}

/// Nothing expected (ext4-modes, a fault sweep): reported, not judged, any exit taken.
fn reported() -> Vec<Case> {
    let with_no_crash = Explored { no_crash: Some(Verdict::Violation), ..explored(1, 0) };
    vec![
        case("adhoc", mode("writeback", None, None, Some(0)), explored(1, 0), vec![lost("12-1")]),
        case("adhoc", mode("journal", None, None, Some(0)), explored(0, 0), vec![]),
        Case {
            exit: ("exit 1", Some(1)),
            stderr: "fsync failed: EIO\n",
            ..case("sweep", mode("flush:3,once", None, None, None), with_no_crash, vec![lost("20")])
        },
        case("unchecked", mode("none", None, None, None), Explored { no_crash: None, ..explored(0, 0) }, vec![]),
    ]
}

fn check(cases: &[Case], text: Snapshot, markdown: Snapshot) {
    let rows: Vec<Row> = cases.iter().map(judged).collect();
    text.assert_eq(&render_text(&rows));
    markdown.assert_eq(&render_markdown(&rows));
}

#[test]
fn expectations_met_pass() {
    let cases = passing();
    assert!(cases.iter().map(judged).all(|r| r.outcome == Outcome::Pass && r.why.is_empty()));
    check(
        &cases,
        expect![[r#"
            workload  mode      states  unique violations  no-crash   expected    verdict  seconds
            buggy     ordered       40      30          2  ok         violations  ok           2.5
            buggy     named         40      30          2  ok         violations  ok           2.5
            fixed     ordered       40      30          0  ok         clean       ok           2.5
            torn      sector        40      30          2  ok         clean       ok           2.5
            gives-up  eio           40      30          0  ok         clean       ok           2.5

              buggy ordered: acknowledged v3 lost: file holds v2
                replay: brink replay /r/buggy/ordered/trace 12-1 -o DIR
              buggy named: acknowledged v3 lost: file holds v2
                replay: brink replay /r/buggy/named/trace 12-1 -o DIR
              torn sector: the recovered image does not mount: Bad message (os error 74)
                replay: brink replay /r/torn/sector/trace 5t1 -o DIR
        "#]],
        expect![[r#"
            | workload | mode | strategy | states | unique | violations | no crash | expected | verdict | seconds | example violation |
            |---|---|---|---:|---:|---:|---|---|---|---:|---|
            | buggy | ordered | exhaustive | 40 | 30 | 2 | ok | violations | ok | 2.5 | `12-1`: acknowledged v3 lost: file holds v2 |
            | buggy | named | exhaustive | 40 | 30 | 2 | ok | violations | ok | 2.5 | `12-1`: acknowledged v3 lost: file holds v2 |
            | fixed | ordered | exhaustive | 40 | 30 | 0 | ok | clean | ok | 2.5 |  |
            | torn | sector | exhaustive | 40 | 30 | 2 | ok | clean | ok | 2.5 | `5t1`: the recovered image does not mount: Bad message (os error 74) |
            | gives-up | eio | exhaustive | 40 | 30 | 0 | ok | clean | ok | 2.5 |  |
        "#]],
    );
}

#[test]
fn expectations_missed_are_mismatches_saying_why() {
    let cases = mismatches();
    assert!(cases.iter().map(judged).all(|r| r.outcome == Outcome::Mismatch && !r.why.is_empty()));
    check(
        &cases,
        expect![[r#"
            workload        mode      states  unique violations  no-crash   expected    verdict  seconds
            false-positive  ordered       40      30          1  ok         clean       MISMATCH     2.5
            fs-finding      sector        40      30          1  ok         clean       MISMATCH     2.5
            torn-and-lost   sector        40      30          2  ok         clean       MISMATCH     2.5
            blind           ordered       40      30          0  ok         violations  MISMATCH     2.5
            wrong-reason    ordered       40      30          1  ok         violations  MISMATCH     2.5
            missing         ordered       40      30          0  ok         clean       MISMATCH     2.5
            stopped         ordered       40      30          0  ok         clean       MISMATCH     2.5
            hung            ordered       40      30          0  ok         clean       MISMATCH     2.5

              MISMATCH false-positive ordered: expected clean, found 1 violations: acknowledged v3 lost: file holds v2
              MISMATCH fs-finding sector: expected clean, found 1 violations: the recovered image does not mount: Bad message (os error 74)
              MISMATCH torn-and-lost sector: expected clean, found 1 violations: acknowledged v3 lost: file holds v2
              MISMATCH blind ordered: expected violations, found none
              MISMATCH wrong-reason ordered: no violation message contains 'acknowledged v9'
              MISMATCH missing ordered: the workload ended with exit 127, expected exit 0: sh: 1: no-such-program: not found
              MISMATCH stopped ordered: exploration incomplete: stopped by time budget
              MISMATCH hung ordered: 1 checker failures: timed out after 30s
        "#]],
        expect![[r#"
            | workload | mode | strategy | states | unique | violations | no crash | expected | verdict | seconds | example violation |
            |---|---|---|---:|---:|---:|---|---|---|---:|---|
            | false-positive | ordered | exhaustive | 40 | 30 | 1 | ok | clean | MISMATCH | 2.5 | expected clean, found 1 violations: acknowledged v3 lost: file holds v2 |
            | fs-finding | sector | exhaustive | 40 | 30 | 1 | ok | clean | MISMATCH | 2.5 | expected clean, found 1 violations: the recovered image does not mount: Bad message (os error 74) |
            | torn-and-lost | sector | exhaustive | 40 | 30 | 2 | ok | clean | MISMATCH | 2.5 | expected clean, found 1 violations: acknowledged v3 lost: file holds v2 |
            | blind | ordered | exhaustive | 40 | 30 | 0 | ok | violations | MISMATCH | 2.5 | expected violations, found none |
            | wrong-reason | ordered | exhaustive | 40 | 30 | 1 | ok | violations | MISMATCH | 2.5 | no violation message contains 'acknowledged v9' |
            | missing | ordered | exhaustive | 40 | 30 | 0 | ok | clean | MISMATCH | 2.5 | the workload ended with exit 127, expected exit 0: sh: 1: no-such-program: not found |
            | stopped | ordered | exhaustive | 40 | 30 | 0 | ok | clean | MISMATCH | 2.5 | exploration incomplete: stopped by time budget |
            | hung | ordered | exhaustive | 40 | 30 | 0 | ok | clean | MISMATCH | 2.5 | 1 checker failures: timed out after 30s |
        "#]],
    );
}

#[test]
fn runs_without_expectations_are_reported() {
    let cases = reported();
    assert!(cases.iter().map(judged).all(|r| r.outcome == Outcome::Reported));
    check(
        &cases,
        expect![[r#"
            workload   mode           states  unique violations  no-crash   expected    verdict  seconds
            adhoc      writeback          40      30          1  ok         -           VIOLATIONS     2.5
            adhoc      journal            40      30          0  ok         -           clean        2.5
            sweep      flush:3,once       40      30          1  VIOLATION  -           VIOLATIONS     2.5
            unchecked  none               40      30          0  -          -           clean        2.5

              adhoc writeback: acknowledged v3 lost: file holds v2
                replay: brink replay /r/adhoc/writeback/trace 12-1 -o DIR
              sweep flush:3,once: acknowledged v3 lost: file holds v2
                replay: brink replay /r/sweep/flush:3,once/trace 20 -o DIR
        "#]],
        expect![[r#"
        | workload | mode | strategy | states | unique | violations | no crash | expected | verdict | seconds | example violation |
        |---|---|---|---:|---:|---:|---|---|---|---:|---|
        | adhoc | writeback | exhaustive | 40 | 30 | 1 | ok | - | VIOLATIONS | 2.5 | `12-1`: acknowledged v3 lost: file holds v2 |
        | adhoc | journal | exhaustive | 40 | 30 | 0 | ok | - | clean | 2.5 |  |
        | sweep | flush:3,once | exhaustive | 40 | 30 | 1 | VIOLATION | - | VIOLATIONS | 2.5 | `20`: acknowledged v3 lost: file holds v2 |
        | unchecked | none | exhaustive | 40 | 30 | 0 | - | - | clean | 2.5 |  |
    "#]],
    );
}

/// A mode that could not run is a mismatch whatever it expected, and its row keeps the
/// mode's settings.
#[test]
fn a_mode_that_could_not_run_is_a_mismatch() {
    let m = mode("ordered", Some(Expect::Violations), None, Some(0));
    let row = Row::failed("buggy", &m, "error: mkfs.ext4 not found".into(), "/r/t".into(), "/r/r".into());
    let json = serde_json::to_string_pretty(&row).unwrap();
    expect![[r#"
        {
          "workload": "buggy",
          "mode": "ordered",
          "fs": "ext4",
          "mount_opts": "data=ordered",
          "strategy": "exhaustive",
          "note": "",
          "model": "",
          "states": 0,
          "unique": 0,
          "violations": 0,
          "checker_failures": 0,
          "expected": "violations",
          "outcome": "mismatch",
          "why": "error: mkfs.ext4 not found",
          "example": null,
          "no_crash": null,
          "exit": "",
          "said": "",
          "record_s": 0.0,
          "explore_s": 0.0,
          "trace": "/r/t",
          "results": "/r/r"
        }"#]]
    .assert_eq(&json);
    expect![[r#"
        workload  mode      states  unique violations  no-crash   expected    verdict  seconds
        buggy     ordered        0       0          0  -          violations  MISMATCH     0.0

          MISMATCH buggy ordered: error: mkfs.ext4 not found
    "#]]
    .assert_eq(&render_text(&[row]));
}
