//! Reading a results directory back (`Results::load`): a good one gives typed data, and
//! each kind of corruption of `states.jsonl` is an error naming the file and line, never
//! a panic.

use std::path::Path;

use brink_explore::{Results, ResultsError, results};

const H1: &str = "00000000000000000000000000000000000000000000000000000000000000a1";
const H2: &str = "00000000000000000000000000000000000000000000000000000000000000b2";
const H3: &str = "00000000000000000000000000000000000000000000000000000000000000c3";

const SUMMARY: &str = r#"{"trace":"/t","fs":"ext4","mount_opts":"","model":"writeback","strategy":"exhaustive",
"checkers":["c"],"states_total":4,"states_generated":5,"states_unique":3,"states_checked":3,"violations":1,
"checker_failures":0,"consistent":3,"wall_s":1.0,"states_per_s":3.0,"jobs":1,"complete":true,"stopped_by":null,
"fraction_covered":null,"time_ms":{"hash":0.0,"overlay":0.0,"mount":0.0,"checkers":0.0,"unmount":0.0,
"per_state":0.0},"no_crash":{"id":"7","verdict":"consistent","message":null},"media_fault_states":0}"#;

fn consistent(id: &str, position: u64, omitted: &str, image: &str, dup_of: &str) -> String {
    format!(
        r#"{{"id":"{id}","position":{position},"epoch":0,"marks":0,"omitted":[{omitted}],"torn":[],"image":"{image}","verdict":"consistent","checks":[{{"checker":"c","verdict":"consistent","ms":1}}],"dup_of":{dup_of}}}"#
    )
}

/// Five states: 1 and 4 represent their images, 4-2 repeats 1, 4-3 fails, 7 (no crash)
/// repeats 4.
fn good_lines() -> Vec<String> {
    vec![
        consistent("1", 1, "", H1, "null"),
        consistent("4", 4, "", H2, "null"),
        consistent("4-2", 4, "2", H1, "\"1\""),
        format!(
            r#"{{"id":"4-3","position":4,"epoch":0,"marks":0,"omitted":[3],"torn":[],"image":"{H3}","verdict":"violation","checks":[{{"checker":"c","verdict":"violation","message":"lost","ms":1}}],"dup_of":null,"minimal":"4-3"}}"#
        ),
        consistent("7", 7, "", H2, "\"4\""),
    ]
}

fn write_dir(dir: &Path, lines: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(results::SUMMARY), SUMMARY).unwrap();
    std::fs::write(dir.join(results::STATES), lines.join("\n") + "\n").unwrap();
}

fn load_err(lines: &[String]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    write_dir(tmp.path(), lines);
    let e = Results::load(tmp.path()).expect_err("corrupt states.jsonl loads");
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

#[test]
fn a_good_directory_loads_typed() {
    let tmp = tempfile::tempdir().unwrap();
    write_dir(tmp.path(), &good_lines());
    let r = Results::load(tmp.path()).unwrap();
    assert_eq!(r.summary.states_total.0, 4);
    assert_eq!(r.summary.no_crash.as_ref().unwrap().id, "7");
    assert_eq!(r.summary.minimize_probes, 0, "fields added later default");
    let ids: Vec<&str> = r.states.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["1", "4", "4-2", "4-3", "7"]);
    assert_eq!(r.states[3].minimal.as_deref(), Some("4-3"));
    assert!(r.run.is_none() && r.trace.is_none() && r.minimal.is_empty());
    assert_eq!(r.summary.violations, 1);
}

#[test]
fn a_saturated_count_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    write_dir(tmp.path(), &good_lines());
    let big = SUMMARY.replace(r#""states_total":4"#, &format!(r#""states_total":"more than {}""#, u128::MAX));
    std::fs::write(tmp.path().join(results::SUMMARY), big).unwrap();
    assert!(Results::load(tmp.path()).unwrap().summary.states_total.saturated());
}

#[test]
fn unsorted_ids_are_an_error() {
    let mut lines = good_lines();
    lines.swap(0, 1);
    let e = load_err(&lines);
    assert!(e.contains("states.jsonl: line 2: state 1 is out of order"), "{e}");
}

#[test]
fn a_repeated_id_is_an_error() {
    let mut lines = good_lines();
    lines.insert(1, lines[0].clone());
    assert!(load_err(&lines).contains("line 2: state 1 is out of order"));
}

#[test]
fn two_representatives_of_one_image_are_an_error() {
    let mut lines = good_lines();
    lines[2] = consistent("4-2", 4, "2", H1, "null");
    let e = load_err(&lines);
    assert!(e.contains("line 3: states 1 and 4-2 both represent one image and marks"), "{e}");
}

#[test]
fn a_duplicate_naming_another_image_is_an_error() {
    let mut lines = good_lines();
    lines[2] = consistent("4-2", 4, "2", H1, "\"4\"");
    assert!(load_err(&lines).contains("line 3: state 4-2 names 4 as its representative"));
    lines[2] = consistent("4-2", 4, "2", H1, "\"9\"");
    assert!(load_err(&lines).contains("line 3: state 4-2 names 9 as its representative"));
}

#[test]
fn a_verdict_that_is_not_its_checks_is_an_error() {
    let mut lines = good_lines();
    lines[0] = lines[0].replacen(r#""verdict":"consistent""#, r#""verdict":"violation""#, 1);
    assert!(load_err(&lines).contains("line 1: state 1's verdict is not the overall verdict"));
}

#[test]
fn bad_ids_positions_and_hashes_are_errors() {
    let mut lines = good_lines();
    lines[0] = consistent("x-1", 1, "", H1, "null");
    assert!(load_err(&lines).contains("line 1: bad state id 'x-1'"));
    let mut lines = good_lines();
    lines[0] = consistent("1", 2, "", H1, "null");
    assert!(load_err(&lines).contains("state 1 has position 2"));
    let mut lines = good_lines();
    lines[0] = consistent("1", 1, "", "abc", "null");
    assert!(load_err(&lines).contains("bad image hash 'abc'"));
}

#[test]
fn a_cut_line_is_an_error_with_its_number() {
    let mut lines = good_lines();
    lines[4].truncate(30);
    let e = load_err(&lines);
    assert!(e.contains("states.jsonl: line 5: "), "{e}");
}

#[test]
fn a_missing_or_corrupt_summary_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_dir(tmp.path(), &good_lines());
    std::fs::write(tmp.path().join(results::SUMMARY), "{\"trace\":").unwrap();
    let e = Results::load(tmp.path()).unwrap_err();
    assert!(matches!(e, ResultsError::Json { line: None, .. }), "{e:?}");
    std::fs::remove_file(tmp.path().join(results::SUMMARY)).unwrap();
    let e = Results::load(tmp.path()).unwrap_err();
    assert!(matches!(e, ResultsError::Io { .. }), "{e:?}");
}

fn run_of(trace: &Path) -> results::RunIdentity {
    results::RunIdentity {
        trace: trace.display().to_string(),
        trace_base_digest: "d".into(),
        trace_events: 7,
        model: "writeback".into(),
        strategy: "exhaustive".into(),
        checkers: vec!["c".into()],
        media_faults: false,
        level: results::Level::Block,
        shard: None,
    }
}

/// Issue 13: `T`, `./T`, `T/` and the absolute path are one trace to `--resume`.
#[test]
fn resume_compares_trace_paths_canonicalized() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    std::fs::create_dir_all(tmp.path().join("sub")).unwrap();
    std::fs::create_dir(&trace).unwrap();
    let dir = tmp.path().join("r");
    drop(results::open(&dir, &run_of(&trace), false).unwrap());
    let t = trace.display().to_string();
    for alias in
        [format!("{t}/"), format!("{}/./trace", tmp.path().display()), format!("{}/sub/../trace", tmp.path().display())]
    {
        let reopened = results::open(&dir, &run_of(Path::new(&alias)), true);
        assert!(reopened.is_ok(), "{alias}: {:?}", reopened.err().map(|e| e.to_string()));
    }
    let other = tmp.path().join("sub");
    let e = results::open(&dir, &run_of(&other), true).err().expect("another trace resumes");
    assert!(matches!(e, ResultsError::OtherSettings { .. }), "{e}");
}

/// Issue 13: a partial log's line that is not a state of this trace (a bad id, an id
/// past the trace or with writes after its crash, JSON that is not a record) is an error
/// naming the line, never kept and never a panic; only a cut last line is dropped.
#[test]
fn resume_refuses_partial_lines_outside_the_state_space() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    std::fs::create_dir(&trace).unwrap();
    let good = consistent("1", 1, "", H1, "null");
    let cases = [
        (consistent("x-1", 1, "", H1, "null"), "line 2: bad state id 'x-1'"),
        (consistent("9", 9, "", H1, "null"), "line 2: state 9 is outside this trace's state space"),
        (consistent("3-5", 3, "5", H1, "null"), "line 2: state 3-5 is outside"),
        (consistent("3~g4", 3, "", H1, "null"), "line 2: state 3~g4 is outside"),
        (consistent("3", 2, "", H1, "null"), "line 2: state 3 is outside"),
        (consistent("03", 3, "", H1, "null"), "line 2: bad state id '03'"),
        (consistent("3", 3, "", "zz", "null"), "line 2: state 3 is outside"),
        ("[1,2]".to_string(), "line 2"),
    ];
    for (n, (bad, want)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("r{n}"));
        drop(results::open(&dir, &run_of(&trace), false).unwrap());
        let body = format!("{good}\n{bad}\n{good}\n");
        std::fs::write(dir.join(results::PARTIAL), body).unwrap();
        let e = results::open(&dir, &run_of(&trace), true).err().expect("a bad partial line resumes");
        assert!(e.to_string().contains(want), "{bad}: {e}");
        assert!(e.to_string().contains(results::PARTIAL), "{e}");
    }
    // A cut last line is what a kill leaves: dropped, the rest kept.
    let dir = tmp.path().join("cut");
    drop(results::open(&dir, &run_of(&trace), false).unwrap());
    std::fs::write(dir.join(results::PARTIAL), format!("{good}\n{{\"id\":\"4-0\",\"posi")).unwrap();
    let (_, done) = results::open(&dir, &run_of(&trace), true).unwrap();
    assert_eq!(done.len(), 1);
}
