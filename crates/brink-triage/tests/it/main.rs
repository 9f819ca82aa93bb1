//! Triage on constructed results directories, without root: the explanation of each kind
//! of vulnerability, in the sentences a person reads, and the vulnerability ids pinned to
//! literal values, so a change of the hash or the signature across versions is caught.
//!
//! A results directory is written here by hand in its wire format (`summary.json`,
//! `states.jsonl`, `minimal.jsonl`, `trace.json`, see brink-explore's `results`), so
//! these tests need no trace, no recording and no checker.

use std::path::Path;

use expect_test::{Expect, expect};
use serde_json::{Value, json};

/// The trace of an atomic replace of `config` on ext4 in `data=ordered`, then an
/// injected I/O error and an append to `logs/app.log` (one letter per event, as in
/// `trace.json`).
const EVENTS: &str = "wwwfmwwfwwfewf";

fn item(kind: &str, path: Option<&str>, journal: bool, detail: Option<&str>) -> Value {
    let mut it = json!({ "kind": kind, "bytes": 4096 });
    if let Some(p) = path {
        it["path"] = p.into();
    }
    if journal {
        it["journal"] = true.into();
    }
    if let Some(d) = detail {
        it["detail"] = d.into();
    }
    it
}

/// What each write of `EVENTS` holds.
fn attribution(covered: bool) -> Value {
    let writes: Vec<(u64, Vec<Value>)> = vec![
        (0, vec![item("data", Some("config.tmp"), false, None)]),
        (
            1,
            vec![
                item("inode", Some("config.tmp"), true, None),
                item("directory", Some("/"), true, Some("+config.tmp")),
            ],
        ),
        (2, vec![item("journal-commit", None, false, None)]),
        (5, vec![item("directory", Some("/"), true, Some("config.tmp→config"))]),
        (6, vec![item("journal-commit", None, false, None)]),
        (8, vec![item("directory", Some("/"), false, Some("config.tmp→config"))]),
        (9, vec![item("inode", Some("config"), false, None)]),
        (12, vec![item("data", Some("logs/app.log"), false, None)]),
    ];
    let writes: Vec<Value> = writes
        .into_iter()
        .map(|(index, items)| {
            let items = if covered { items } else { vec![json!({ "kind": "unknown", "bytes": 4096 })] };
            json!({ "index": index, "offset": 4096 * index, "len": 4096, "items": items })
        })
        .collect();
    let notes: Vec<&str> =
        if covered { vec![] } else { vec!["attribution covers ext4 only; xfs writes are not attributed"] };
    json!({ "fs": if covered { "ext4" } else { "xfs" }, "covered": covered, "notes": notes, "writes": writes })
}

/// A distinct image hash per state (64 hex digits, as `states.jsonl` holds them).
fn image_of(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0>64}")
}

/// A `states.jsonl` record: `marks` acknowledged marks held, one checker's verdict.
fn state(id: &str, marks: u64, message: Option<&str>, minimal: Option<&str>) -> Value {
    let position: u64 = id.split(['-', '~']).next().unwrap().parse().unwrap();
    let verdict = if message.is_some() { "violation" } else { "consistent" };
    let mut check = json!({ "checker": "./check.sh", "verdict": verdict, "ms": 3 });
    if let Some(m) = message {
        check["message"] = m.into();
    }
    let mut r = json!({
        "id": id, "position": position, "epoch": 0, "marks": marks, "omitted": [], "torn": [],
        "image": image_of(id), "verdict": verdict, "checks": [check], "dup_of": null,
    });
    if let Some(m) = minimal {
        r["minimal"] = m.into();
    }
    r
}

fn jsonl(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// A results directory with these states (and minimal states the strategy did not
/// generate); `trace_json` as `trace.json`, or none as an older brink left it.
fn results(dir: &Path, states: &[Value], minimal: &[Value], trace_json: Option<Value>) {
    std::fs::create_dir_all(dir).unwrap();
    let summary = json!({
        "trace": "/traces/atomic replace", "fs": "ext4", "mount_opts": "data=ordered", "model": "writeback",
        "strategy": "exhaustive", "checkers": ["check.sh"], "states_total": states.len(),
        "states_generated": states.len(), "states_unique": states.len(), "states_checked": states.len(),
        "violations": 0, "checker_failures": 0, "consistent": 0, "wall_s": 1.25, "states_per_s": 8.0, "jobs": 2,
        "complete": true, "stopped_by": null, "fraction_covered": null,
        "time_ms": { "hash": 0, "overlay": 0, "mount": 0, "checkers": 0, "unmount": 0, "per_state": 0.0 },
        "no_crash": null, "media_fault_states": 0
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    // Sorted by state id, as the explorer writes them (the loader checks it).
    let mut states = states.to_vec();
    states.sort_by_key(|r| r["id"].as_str().unwrap().parse::<brink_pmodel::StateId>().unwrap());
    std::fs::write(dir.join("states.jsonl"), jsonl(&states)).unwrap();
    if !minimal.is_empty() {
        std::fs::write(dir.join("minimal.jsonl"), jsonl(minimal)).unwrap();
    }
    if let Some(t) = trace_json {
        std::fs::write(dir.join("trace.json"), t.to_string()).unwrap();
    }
}

fn trace_json(covered: bool) -> Value {
    json!({
        "trace": "/traces/atomic replace",
        "events": EVENTS,
        "marks": [{ "index": 4, "text": "config v1" }],
        "attribution": attribution(covered),
    })
}

const LOST_V1: &str = "acknowledged 'config v1' lost: config holds version 0";

/// One state of each kind of vulnerability, on the trace above.
fn every_kind() -> (Vec<Value>, Vec<Value>) {
    let states = vec![
        state("3", 0, None, None),
        // Durability: acknowledged at event 4, its directory entry still in the journal.
        state("5", 1, Some(LOST_V1), None),
        state("6", 1, Some(LOST_V1), None),
        // Atomicity: nothing acknowledged is lost, the rename is seen half done.
        state("8", 1, Some("config is missing"), None),
        // Ordering: the rename's checkpoint dropped while the inode after it persisted.
        state("10-8", 1, Some("config holds version 0"), None),
        state("10-5-8", 1, Some("config holds version 0"), Some("10-8")),
        // Ordering, minimal state only in minimal.jsonl: the new data dropped.
        state("10-0-5", 1, Some("config is empty"), Some("10-0")),
        // Atomicity: the inode write torn.
        state("10-9t1", 1, Some("config is torn at byte 512"), None),
        // Media: a garbage tear of the inode write.
        state("10~g9", 1, Some("config holds garbage"), None),
        // After the injected error at event 11.
        state("13", 1, Some("acknowledged 'config v1' lost: config holds version 7"), None),
        // Lost without a crash: the no-crash state (event 14) fails the same way.
        state("13-12", 1, Some("logs/app.log holds 0 records"), None),
        state("14", 1, Some("logs/app.log holds 0 records"), None),
    ];
    (states, vec![state("10-0", 1, Some("config is empty"), None)])
}

fn analyze(states: &[Value], minimal: &[Value], trace_json: Option<Value>) -> brink_triage::Analysis {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results");
    results(&dir, states, minimal, trace_json);
    brink_triage::analyze(&dir).expect("analyze")
}

/// What `brink report` prints (it names no path of the results directory).
fn check_text(a: &brink_triage::Analysis, expect: Expect) {
    expect.assert_eq(&brink_triage::text(a));
}

#[test]
fn every_kind_is_explained_in_the_files_terms() {
    let (states, minimal) = every_kind();
    let a = analyze(&states, &minimal, Some(trace_json(true)));
    assert!(a.attributed);
    check_text(
        &a,
        expect![[r#"
            vulnerabilities: 8 (from 11 violating states)

              V3911041a  ordering    2 states
                config holds version 0: the directory block of / (config.tmp→config) did not persist while the inode of config, written after it, did
                minimal state 10-8: crash before event 10; dropped write 8 (the directory block of / (config.tmp→config))
                reproduce: brink replay '/traces/atomic replace' 10-8 -o DIR

              V55f5e770  durability  2 states
                logs/app.log holds 0 records: the disk as the run left it (no crash, page cache dropped) fails the same way, so the data never reached the disk (an injected I/O error at event 11 threw it away and the application went on)
                minimal state 14: a crash before event 14, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 14 -o DIR

              Vdc4ef2e8  durability  2 states
                acknowledged 'config v1' lost: config holds version 0: it was acknowledged before the journal copy of the directory block of / (config.tmp→config) reached the disk, so a power cut in between loses it
                minimal state 5: a crash before event 5, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 5 -o DIR

              V09de3f97  media       1 state
                config holds garbage: write 9 torn, its second half read back as garbage, on the inode of config
                minimal state 10~g9: a crash before event 10, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 10~g9 -o DIR

              V14c591de  atomicity   1 state
                config is missing: the operation is seen half done: the writes before the crash persisted and the directory block of / (config.tmp→config) had not reached the disk yet
                minimal state 8: a crash before event 8, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 8 -o DIR

              V5af8b8f1  durability  1 state
                acknowledged 'config v1' lost: config holds version 7: a crash after the injected I/O error at event 11 loses data acknowledged after it: the application's handling of the failed write or fsync did not make it durable
                minimal state 13: a crash before event 13, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 13 -o DIR

              Vb4d9feb3  ordering    1 state
                config is empty: the data of config.tmp did not persist while the directory block of / (config.tmp→config), written after it, did
                minimal state 10-0: crash before event 10; dropped write 0 (the data of config.tmp)
                reproduce: brink replay '/traces/atomic replace' 10-0 -o DIR

              Vc6dbc305  atomicity   1 state
                config is torn at byte 512: the inode of config persisted only in part (a torn write)
                minimal state 10-9t1: crash before event 10; torn write 9 (the inode of config)
                reproduce: brink replay '/traces/atomic replace' 10-9t1 -o DIR
        "#]],
    );
}

/// Vdc4ef2e8 and, unattributed, V50ac0e69 are also the ids of atomic-replace-buggy in
/// `results/vulnerabilities.md`: the same bug keeps its id from a real run to these.
#[test]
fn signatures_name_files_and_kinds_never_blocks() {
    let (states, minimal) = every_kind();
    let a = analyze(&states, &minimal, Some(trace_json(true)));
    let sigs: Vec<String> = a
        .vulnerabilities
        .iter()
        .map(|v| format!("{} {} [{}] {}", v.id, v.kind.name(), v.signature.join("; "), v.class))
        .collect();
    expect![[r#"
        V3911041a ordering [directory:/] config holds version #
        V55f5e770 durability [lost without a crash] logs/app.log holds # records
        Vdc4ef2e8 durability [directory:/] acknowledged 'config v#' lost: config holds version #
        V09de3f97 media [garbage tear; file:config] config holds garbage
        V14c591de atomicity [directory:/] config is missing
        V5af8b8f1 durability [after an injected I/O error] acknowledged 'config v#' lost: config holds version #
        Vb4d9feb3 ordering [file:config.tmp] config is empty
        Vc6dbc305 atomicity [file:config] config is torn at byte #"#]]
    .assert_eq(&sigs.join("\n"));
}

#[test]
fn unattributed_file_systems_group_by_kind_and_message() {
    let (states, minimal) = every_kind();
    let a = analyze(&states, &minimal, Some(trace_json(false)));
    assert!(!a.attributed);
    check_text(
        &a,
        expect![[r#"
            vulnerabilities: 8 (from 11 violating states)

              V50ac0e69  durability  2 states
                acknowledged 'config v1' lost: config holds version 0: it was acknowledged before its writes reached the disk, so a power cut in between loses it (writes not attributed on this file system)
                minimal state 5: a crash before event 5, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 5 -o DIR

              V55f5e770  durability  2 states
                logs/app.log holds 0 records: the disk as the run left it (no crash, page cache dropped) fails the same way, so the data never reached the disk (an injected I/O error at event 11 threw it away and the application went on)
                minimal state 14: a crash before event 14, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 14 -o DIR

              V76a7ca79  ordering    2 states
                config holds version 0: an earlier write did not persist while a later write, written after it, did (writes not attributed on this file system)
                minimal state 10-8: crash before event 10; dropped write 8 (the unattributed block)
                reproduce: brink replay '/traces/atomic replace' 10-8 -o DIR

              V44706460  atomicity   1 state
                config is torn at byte 512: a write persisted only in part (a torn write) (writes not attributed on this file system)
                minimal state 10-9t1: crash before event 10; torn write 9 (the unattributed block)
                reproduce: brink replay '/traces/atomic replace' 10-9t1 -o DIR

              V5af8b8f1  durability  1 state
                acknowledged 'config v1' lost: config holds version 7: a crash after the injected I/O error at event 11 loses data acknowledged after it: the application's handling of the failed write or fsync did not make it durable
                minimal state 13: a crash before event 13, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 13 -o DIR

              V6ca662dc  atomicity   1 state
                config is missing: the operation is seen half done: the writes before the crash persisted and the next writes had not reached the disk yet (writes not attributed on this file system)
                minimal state 8: a crash before event 8, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 8 -o DIR

              V9a707fe1  ordering    1 state
                config is empty: an earlier write did not persist while a later write, written after it, did (writes not attributed on this file system)
                minimal state 10-0: crash before event 10; dropped write 0 (the unattributed block)
                reproduce: brink replay '/traces/atomic replace' 10-0 -o DIR

              Vcdb366c3  media       1 state
                config holds garbage: write 9 torn, its second half read back as garbage
                minimal state 10~g9: a crash before event 10, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 10~g9 -o DIR
              note: attribution covers ext4 only; xfs writes are not attributed
        "#]],
    );
}

#[test]
fn results_of_an_older_brink_group_by_message_only() {
    let (states, minimal) = every_kind();
    let a = analyze(&states, &minimal, None);
    check_text(
        &a,
        expect![[r#"
            vulnerabilities: 7 (from 11 violating states)

              Ve59bf113  atomicity   3 states
                acknowledged 'config v1' lost: config holds version 0: the operation is seen half done: the writes before the crash persisted and the next writes had not reached the disk yet (writes not attributed on this file system)
                minimal state 5: a crash before event 5, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 5 -o DIR

              Va21d6fa8  atomicity   2 states
                config holds version 0: the operation is seen half done: the writes before the crash persisted and the next writes had not reached the disk yet (writes not attributed on this file system)
                minimal state 10-8: crash before event 10; dropped write 8
                reproduce: brink replay '/traces/atomic replace' 10-8 -o DIR

              Vc9f24def  atomicity   2 states
                logs/app.log holds 0 records: the operation is seen half done: the writes before the crash persisted and the next writes had not reached the disk yet (writes not attributed on this file system)
                minimal state 14: a crash before event 14, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 14 -o DIR

              V44706460  atomicity   1 state
                config is torn at byte 512: a write persisted only in part (a torn write) (writes not attributed on this file system)
                minimal state 10-9t1: crash before event 10; torn write 9
                reproduce: brink replay '/traces/atomic replace' 10-9t1 -o DIR

              V6ca662dc  atomicity   1 state
                config is missing: the operation is seen half done: the writes before the crash persisted and the next writes had not reached the disk yet (writes not attributed on this file system)
                minimal state 8: a crash before event 8, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 8 -o DIR

              Vcdb366c3  media       1 state
                config holds garbage: write 9 torn, its second half read back as garbage
                minimal state 10~g9: a crash before event 10, every earlier write persisted
                reproduce: brink replay '/traces/atomic replace' 10~g9 -o DIR

              Ve4d12afe  atomicity   1 state
                config is empty: the operation is seen half done: the writes before the crash persisted and the next writes had not reached the disk yet (writes not attributed on this file system)
                minimal state 10-0: crash before event 10; dropped write 0
                reproduce: brink replay '/traces/atomic replace' 10-0 -o DIR
              note: this results directory has no trace.json (an older brink): vulnerabilities are grouped by message only
        "#]],
    );
}

#[test]
fn junit_has_one_failing_case_per_vulnerability() {
    let a = analyze(&[state("5", 1, Some(LOST_V1), None)], &[], Some(trace_json(true)));
    expect![[r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites name="brink" tests="1" failures="1">
          <testsuite name="brink RESULTS" tests="1" failures="1">
            <testcase classname="brink.durability" name="Vdc4ef2e8 acknowledged &#39;config v#&#39; lost: config holds version #">
              <failure message="acknowledged &#39;config v1&#39; lost: config holds version 0: it was acknowledged before the journal copy of the directory block of / (config.tmp→config) reached the disk, so a power cut in between loses it" type="durability">1 states; minimal state 5: a crash before event 5, every earlier write persisted
        reproduce: brink replay &#39;/traces/atomic replace&#39; 5 -o DIR</failure>
            </testcase>
          </testsuite>
        </testsuites>
    "#]].assert_eq(&brink_triage::junit(&a).replace(&a.results, "RESULTS"));
    let clean = analyze(&[state("5", 1, None, None)], &[], Some(trace_json(true)));
    expect![[r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites name="brink" tests="1" failures="0">
          <testsuite name="brink RESULTS" tests="1" failures="0">
            <testcase classname="brink" name="no vulnerabilities"/>
          </testsuite>
        </testsuites>
    "#]]
    .assert_eq(&brink_triage::junit(&clean).replace(&clean.results, "RESULTS"));
}

#[test]
fn diff_sorts_vulnerabilities_into_new_fixed_and_unchanged() {
    let (states, minimal) = every_kind();
    let old = analyze(&states[..6], &minimal, Some(trace_json(true)));
    let new = analyze(&states[3..], &minimal, Some(trace_json(true)));
    let d = brink_triage::diff(&old, &new);
    let text = brink_triage::diff_text(&d).replace(&old.results, "OLD").replace(&new.results, "NEW");
    expect![[r#"
        old OLD
        new NEW

        status     id         kind         states  vulnerability
        new        V55f5e770  durability        2  logs/app.log holds 0 records: the disk as the run left it (no crash, page cache dropped) fails the same way, so the data never reached the disk (an injected I/O error at event 11 threw it away and the application went on)
        new        V09de3f97  media             1  config holds garbage: write 9 torn, its second half read back as garbage, on the inode of config
        new        V5af8b8f1  durability        1  acknowledged 'config v1' lost: config holds version 7: a crash after the injected I/O error at event 11 loses data acknowledged after it: the application's handling of the failed write or fsync did not make it durable
        new        Vb4d9feb3  ordering          1  config is empty: the data of config.tmp did not persist while the directory block of / (config.tmp→config), written after it, did
        new        Vc6dbc305  atomicity         1  config is torn at byte 512: the inode of config persisted only in part (a torn write)
        fixed      Vdc4ef2e8  durability        2  acknowledged 'config v1' lost: config holds version 0: it was acknowledged before the journal copy of the directory block of / (config.tmp→config) reached the disk, so a power cut in between loses it
        unchanged  V3911041a  ordering          2  config holds version 0: the directory block of / (config.tmp→config) did not persist while the inode of config, written after it, did
        unchanged  V14c591de  atomicity         1  config is missing: the operation is seen half done: the writes before the crash persisted and the directory block of / (config.tmp→config) had not reached the disk yet

        5 new, 1 fixed, 2 unchanged
    "#]].assert_eq(&text);
}

#[test]
fn html_is_one_page_with_every_vulnerability() {
    let (states, minimal) = every_kind();
    let a = analyze(&states, &minimal, Some(trace_json(true)));
    let h = brink_triage::html(&a).replace(&a.results, "RESULTS");
    assert!(h.starts_with("<!DOCTYPE html>") && h.ends_with("</body></html>\n"));
    assert!(!h.contains("<script"), "no scripts");
    for v in &a.vulnerabilities {
        assert!(h.contains(&format!("id=\"{}\"", v.id)), "{} on the page", v.id);
    }
    // The page is long; its hash catches any change (refresh with UPDATE_EXPECT=1).
    expect!["9cab86ad5d469c62"].assert_eq(&blake3::hash(h.as_bytes()).to_hex()[..16]);
}

/// Issue 13: a checker printing control characters (colours, bells, carriage returns,
/// garbage) neither reaches the terminal, HTML or JUnit raw nor turns each garbage
/// variant into its own vulnerability.
#[test]
fn control_characters_in_checker_messages_are_escaped_and_grouped() {
    let states = vec![
        state("3", 0, None, None),
        state("5", 1, Some("\x1b[31mconfig holds version 0\x1b[0m"), None),
        state("6", 1, Some("garbage \x07\x01qz\rx"), None),
        state("8", 1, Some("garbage \x02\x1bk\x7fa"), None),
        state("9", 1, Some("garbage \x05w\x08"), None),
    ];
    let a = analyze(&states, &[], None);
    let ids: std::collections::BTreeSet<&str> = a.vulnerabilities.iter().map(|v| v.class.as_str()).collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["config holds version #", "garbage …"]);
    let (text, html, junit) = (brink_triage::text(&a), brink_triage::html(&a), brink_triage::junit(&a));
    for out in [&text, &html, &junit] {
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "a raw control character in {out:?}");
    }
    assert!(text.contains("\\x1b[31mconfig holds version 0\\x1b[0m"), "{text}");
    for r in &a.states {
        assert!(!r.checks.iter().any(|c| c.message.chars().any(char::is_control)), "{r:?}");
    }
}
