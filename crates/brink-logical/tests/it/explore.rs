//! Exploring atomic updates logically: the rename lost after its acknowledgement found
//! without a directory fsync and not with it; the same results at 1 and 2 jobs, with a
//! checker that wrecks its state, and across a stop and a resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use brink_explore::{Progress, Results};
use brink_logical::{LogicalConfig, Recording};
use brink_pmodel::{Apm, LStrategy};
use brink_testkit::Need;
use brink_trace::{CallsMeta, TraceMeta, TraceWriter};

/// Checker: once `done` is acknowledged, `file` holds the new contents.
const CHECK: &str = "if grep -q done \"$BRINK_MARKS\" && [ \"$(cat file 2>/dev/null)\" != 'new contents' ]; then echo \"file lost: $(cat file 2>/dev/null)\"; exit 1; fi";

fn can_run(test: &str) -> bool {
    brink_testkit::can_run(test, &[Need::Program("mkfs.ext4"), Need::Program("debugfs")])
}

/// `n` atomic updates of `file` (old contents `old`), with or without the directory
/// fsync, the last one acknowledged, as strace prints them.
fn atomic_updates(n: usize, dir_fsync: bool) -> String {
    let mut text = String::new();
    for i in 0..n {
        let t = i * 10;
        text.push_str(&format!(
            "100 1.{t:03}0 openat(AT_FDCWD</w>, \"file.tmp\", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3</w/file.tmp>\n\
             100 1.{t:03}1 write(3</w/file.tmp>, \"new contents\", 12) = 12\n\
             100 1.{t:03}2 fsync(3</w/file.tmp>) = 0\n\
             100 1.{t:03}3 close(3</w/file.tmp>) = 0\n\
             100 1.{t:03}4 rename(\"file.tmp\", \"file\") = 0\n"
        ));
        if dir_fsync {
            text.push_str(&format!(
                "100 1.{t:03}5 openat(AT_FDCWD</w>, \".\", O_RDONLY|O_DIRECTORY) = 4</w>\n\
                 100 1.{t:03}6 fsync(4</w>) = 0\n"
            ));
        }
    }
    text.push_str("100 2.0 write(5</m/mark>, \"done\\n\", 5) = 5\n");
    text
}

/// A trace of `calls` over an ext4 image holding `file` ("old\n") and `dir/keep`.
fn trace(tmp: &Path, calls: &str) -> PathBuf {
    let fs = tmp.join("fs");
    std::fs::create_dir_all(fs.join("dir")).unwrap();
    std::fs::write(fs.join("file"), "old\n").unwrap();
    std::fs::write(fs.join("dir/keep"), vec![7u8; 5000]).unwrap();
    let img = tmp.join("base.img");
    let size = 8u64 << 20;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let mkfs = std::process::Command::new(brink_blockdev::find_program("mkfs.ext4").unwrap())
        .args(["-q", "-F", "-d"])
        .arg(&fs)
        .arg(&img)
        .status()
        .unwrap();
    assert!(mkfs.success());
    let dir = tmp.join("trace");
    let mut w = TraceWriter::create(&dir).unwrap();
    std::fs::copy(&img, w.base_image_path()).unwrap();
    w.calls(brink_calls::parse_bytes(calls.as_bytes()).unwrap().calls).unwrap();
    let mut meta = TraceMeta::new("test", "ext4", size);
    meta.calls = Some(CallsMeta { mark_file: "/m/mark".into(), cwd: "/w".into(), ..CallsMeta::default() });
    w.finish(meta).unwrap();
    dir
}

fn config(trace: &Path, out: &Path, apm: Apm, checker: &str, jobs: usize) -> LogicalConfig {
    LogicalConfig {
        trace: trace.to_path_buf(),
        results: out.to_path_buf(),
        apm,
        strategy: LStrategy::Alice,
        max_states: 100_000,
        checkers: vec![checker.to_string()],
        jobs,
        checker_timeout: Duration::from_secs(30),
        time_budget: None,
        resume: false,
        shard: None,
        checker_protocol: brink_check::Protocol::Brink,
        interrupt: Arc::new(AtomicUsize::new(0)),
        cache: None,
    }
}

/// The states' ids, verdicts, tree hashes, marks and representatives.
fn table(dir: &Path) -> Vec<(String, String, String, u64, Option<String>)> {
    let r = Results::load(dir).unwrap();
    r.states
        .iter()
        .map(|s| (s.id.clone(), s.verdict.as_str().into(), s.image.clone(), s.marks, s.dup_of.clone()))
        .collect()
}

#[test]
fn a_rename_lost_after_its_ack_is_found_without_the_directory_fsync_only() {
    if !can_run("a_rename_lost_after_its_ack_is_found_without_the_directory_fsync_only") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let buggy = Recording::open(&trace(&tmp.path().join("b"), &atomic_updates(1, false))).unwrap();
    let fixed = Recording::open(&trace(&tmp.path().join("f"), &atomic_updates(2, true))).unwrap();
    assert!(buggy.base.initial.iter().any(|i| i.path == Path::new("dir/keep") && i.size == 5000));
    for apm in [Apm::Posix, Apm::Ext4Ordered, Apm::Ext4Writeback, Apm::Ext4Journal] {
        let out = tmp.path().join(format!("b-{apm}"));
        let s =
            brink_logical::explore(&buggy, &config(&buggy.trace, &out, apm, CHECK, 2), &Progress::default()).unwrap();
        assert!(s.violations > 0 && s.complete && s.checker_failures == 0, "{apm}: {s:?}");
        assert!(s.states_unique < s.states_generated, "{apm}: dedup: {s:?}");
        let r = Results::load(&out).unwrap();
        let v = r.states.iter().find(|s| s.verdict == brink_check::Verdict::Violation).unwrap();
        assert_eq!(v.checks[0].message, "file lost: old", "{apm}");
    }
    for apm in [Apm::Ext4Ordered, Apm::Ext4Writeback, Apm::Ext4Journal, Apm::Xfs] {
        let out = tmp.path().join(format!("f-{apm}"));
        let s =
            brink_logical::explore(&fixed, &config(&fixed.trace, &out, apm, CHECK, 2), &Progress::default()).unwrap();
        assert!(s.violations == 0 && s.consistent > 0 && s.complete, "{apm}: {s:?}");
    }
}

/// The same results at 1 and 2 jobs, and with a checker that empties its state after
/// judging it (the next state on that worker must not see the wreck).
#[test]
fn results_do_not_depend_on_jobs_nor_on_checkers_that_modify_their_state() {
    if !can_run("results_do_not_depend_on_jobs_nor_on_checkers_that_modify_their_state") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(3, false))).unwrap();
    let wreck = format!("{CHECK}; r=$?; rm -rf ./* ; echo x > new; exit $r");
    let mut tables = Vec::new();
    for (name, checker, jobs) in [("one", CHECK, 1), ("two", CHECK, 2), ("wreck", wreck.as_str(), 2)] {
        let out = tmp.path().join(name);
        brink_logical::explore(&rec, &config(&rec.trace, &out, Apm::Posix, checker, jobs), &Progress::default())
            .unwrap();
        tables.push(table(&out));
    }
    assert!(tables[0].len() > 10);
    assert_eq!(tables[0], tables[1]);
    assert_eq!(tables[0], tables[2]);
}

#[test]
fn a_stopped_run_resumes_to_the_same_results() {
    if !can_run("a_stopped_run_resumes_to_the_same_results") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(3, false))).unwrap();
    let whole = tmp.path().join("whole");
    brink_logical::explore(&rec, &config(&rec.trace, &whole, Apm::Posix, CHECK, 2), &Progress::default()).unwrap();
    let out = tmp.path().join("out");
    let mut cfg = config(&rec.trace, &out, Apm::Posix, CHECK, 2);
    cfg.time_budget = Some(Duration::ZERO);
    let s = brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
    assert!(!s.complete && s.stopped_by.as_deref().is_some_and(|w| w.starts_with("time budget")), "{s:?}");
    cfg.time_budget = None;
    cfg.resume = true;
    let s = brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
    assert!(s.complete, "{s:?}");
    assert_eq!(table(&whole), table(&out));
    // Resuming a finished run checks nothing again.
    let again = brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
    assert_eq!(again.states_generated, s.states_generated);
    assert_eq!(table(&whole), table(&out));
}

#[test]
fn other_file_systems_and_fsck_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let e = brink_logical::Base::extract(Path::new("/nonexistent"), "zfs", &tmp.path().join("b")).unwrap_err();
    assert!(e.to_string().contains("ext4, btrfs and xfs images only"), "{e}");
}

/// The verdict cache at the logical level: a second run over the same recording checks
/// nothing and gives the same verdicts; another model reuses the verdicts of the trees
/// both models produce.
#[test]
fn the_verdict_cache_serves_a_second_run_and_another_model() {
    if !can_run("the_verdict_cache_serves_a_second_run_and_another_model") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(3, false))).unwrap();
    let cache = tmp.path().join("cache");
    let run = |name: &str, apm: Apm| {
        let out = tmp.path().join(name);
        let mut cfg = config(&rec.trace, &out, apm, CHECK, 2);
        cfg.cache = Some(cache.clone());
        let s = brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
        (s, table(&out))
    };
    let (first, t1) = run("first", Apm::Posix);
    assert_eq!((first.cache_hits, first.cache_stored), (0, first.states_unique));
    let (second, t2) = run("second", Apm::Posix);
    assert_eq!((second.cache_hits, second.cache_stored), (first.states_unique, 0));
    assert_eq!(t1, t2);
    let (other, _) = run("other", Apm::Ext4Ordered);
    assert!(other.cache_hits > 0 && other.cache_hits <= other.states_unique, "{other:?}");
}

/// Issue 17 at the logical level: the shards of an exploration, merged, are the
/// one-machine run (times aside), for 1, 2, 3 and 7 shards.
#[test]
fn merged_logical_shards_are_the_one_machine_run() {
    if !can_run("merged_logical_shards_are_the_one_machine_run") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(3, false))).unwrap();
    let whole = tmp.path().join("whole");
    brink_logical::explore(&rec, &config(&rec.trace, &whole, Apm::Posix, CHECK, 2), &Progress::default()).unwrap();
    for n in [1u32, 2, 3, 7] {
        let mut dirs = Vec::new();
        for i in 0..n {
            let out = tmp.path().join(format!("s{n}-{i}"));
            let mut cfg = config(&rec.trace, &out, Apm::Posix, CHECK, 1);
            cfg.shard = Some(brink_explore::Shard::new(i, n).unwrap());
            brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
            dirs.push(out);
        }
        let merged = tmp.path().join(format!("m{n}"));
        let s = brink_explore::merge::merge(&dirs, &merged).unwrap();
        assert!(s.complete, "{n} shards: {s:?}");
        assert_eq!(table(&merged), table(&whole), "{n} shards");
    }
}

/// A sample states its coverage: the share of the legal space (counted without trees)
/// and the crash points it reached.
#[test]
fn a_sample_states_its_coverage() {
    if !can_run("a_sample_states_its_coverage") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(3, false))).unwrap();
    let out = tmp.path().join("sample");
    let mut cfg = config(&rec.trace, &out, Apm::Ext4Ordered, CHECK, 2);
    cfg.strategy = LStrategy::Sample { samples: 20, seed: 1 };
    let s = brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
    let c = s.sample.expect("coverage");
    let all = brink_pmodel::Plan::new(&rec.logical, Apm::Ext4Ordered)
        .states(LStrategy::Exhaustive { max_missing: u32::MAX })
        .count();
    assert_eq!(s.fraction_covered, Some(s.states_generated as f64 / all as f64));
    assert!(c.points_sampled > 0 && c.points_sampled <= c.points, "{c:?}");
}

/// Minimization at the logical level: a violating state that misses several micro-ops
/// names a minimal state that misses a subset of them and fails with the same message
/// class (a state the strategy checked, or a probe in `minimal.jsonl`).
#[test]
fn violating_states_name_minimal_states_that_fail_alike() {
    if !can_run("violating_states_name_minimal_states_that_fail_alike") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(2, false))).unwrap();
    let out = tmp.path().join("out");
    let mut cfg = config(&rec.trace, &out, Apm::Posix, CHECK, 2);
    cfg.strategy = LStrategy::Exhaustive { max_missing: u32::MAX };
    let s = brink_logical::explore(&rec, &cfg, &Progress::default()).unwrap();
    let r = Results::load(&out).unwrap();
    assert_eq!(s.minimize_probes, r.minimal.len() as u64);
    let all: std::collections::HashMap<&str, &brink_explore::StateRecord> =
        r.states.iter().chain(&r.minimal).map(|x| (x.id.as_str(), x)).collect();
    let missing = |id: &str| id.parse::<brink_pmodel::LStateId>().unwrap().missing;
    let mut minimized = 0;
    for st in r.states.iter().filter(|x| x.verdict == brink_check::Verdict::Violation) {
        let Some(m) = &st.minimal else { continue };
        minimized += 1;
        let class = |x: &brink_explore::StateRecord| brink_check::violation_class(&x.checks);
        assert_eq!(class(all[m.as_str()]), class(st), "{} → {m}", st.id);
        let (small, big) = (missing(m), missing(&st.id));
        assert!(small.len() < big.len() && small.iter().all(|x| big.contains(x)), "{} → {m}", st.id);
    }
    assert!(minimized > 0, "no state was minimized");
}

/// check-model's in-process listing of a state (`Lister`) is the listing of the state
/// materialized as a directory, for every state of posix's space (zeros, garbage,
/// renames cut in parts), with the garbage blocks named.
#[test]
fn a_listing_made_in_process_equals_the_listing_of_the_materialized_state() {
    if !can_run("a_listing_made_in_process_equals_the_listing_of_the_materialized_state") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(2, false))).unwrap();
    let plan = brink_pmodel::Plan::new(&rec.logical, Apm::Posix);
    let mut lister = brink_logical::Lister::new(&rec, &plan);
    let mut applier = brink_pmodel::Applier::new(&rec.logical, &plan);
    let (mut hasher, mut work) =
        (brink_logical::Hasher::default(), brink_logical::WorkDir::new(&tmp.path().join("w")).unwrap());
    let (mut n, mut garbage) = (0, 0);
    for s in plan.states(LStrategy::Exhaustive { max_missing: u32::MAX }) {
        let mut nodes = Vec::new();
        for (path, view) in applier.tree(&s).files() {
            let hash = hasher.file(rec.content(), &view).unwrap();
            nodes.push(brink_logical::Node { path, kind: view.kind, ino: view.ino, content: view.content, hash });
        }
        work.build(&nodes, rec.content()).unwrap();
        let on_disk = brink_explore::tree::content_listing(work.root()).unwrap();
        let made = lister.listing(&s).unwrap();
        assert_eq!(made.listing, on_disk, "{}", s.id);
        garbage += usize::from(!made.garbage.is_empty());
        n += 1;
    }
    assert!(n > 100 && garbage > 0, "{n} states, {garbage} with garbage");
}

/// A state that no stronger model has (an append's size committed before its data: the
/// file reads as zeros) is found near a state with the data (`Lister::near`), and the
/// state it finds lists as the target.
#[test]
fn a_state_with_an_appended_page_cut_back_is_found_near_one_with_the_data() {
    if !can_run("a_state_with_an_appended_page_cut_back_is_found_near_one_with_the_data") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(1, true))).unwrap();
    let plan = brink_pmodel::Plan::new(&rec.logical, Apm::Ext4Ordered);
    let mut lister = brink_logical::Lister::new(&rec, &plan);
    let states: Vec<_> = plan.states(LStrategy::Exhaustive { max_missing: u32::MAX }).collect();
    let zeros = |m: &brink_pmodel::MicroOp| {
        matches!(m.micro, brink_pmodel::Micro::Write { fill: brink_pmodel::Fill::Zeros, .. })
    };
    // The crash right after the append's zeros stage: the size grew, the data did not.
    let zeros_only = states.iter().find(|s| s.end.is_some_and(|e| zeros(&plan.micro[e as usize])));
    let zeros_only = zeros_only.expect("a state with an append's zeros and not its data");
    let target = lister.listing(zeros_only).unwrap().listing;
    // The crash right after its data stage.
    let after = zeros_only.end.map(|e| e + 1);
    let full = states.iter().find(|s| s.end == after && s.missing.is_empty()).expect("the data persisted");
    assert_ne!(lister.listing(full).unwrap().listing, target);
    let near = lister.near(full, &target).unwrap().expect("found near the full state");
    assert_eq!(lister.listing(&near).unwrap().listing.digest(), target.digest());
}

/// The membership search (`Lister::find`) finds every distinct content of every shipped
/// model's space of three atomic updates (zeros, garbage, renames cut in parts),
/// given only its listing and marks: a state held to the same marks whose listing is the
/// target's, but where the found state holds garbage.
#[test]
fn the_search_finds_a_state_for_every_listing_a_model_allows() {
    if !can_run("the_search_finds_a_state_for_every_listing_a_model_allows") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = Recording::open(&trace(tmp.path(), &atomic_updates(3, false))).unwrap();
    for apm in Apm::ALL {
        let plan = brink_pmodel::Plan::new(&rec.logical, apm);
        let mut lister = brink_logical::Lister::new(&rec, &plan);
        let mut targets = std::collections::BTreeMap::new();
        for s in plan.states(LStrategy::Exhaustive { max_missing: u32::MAX }) {
            let l = lister.listing(&s).unwrap().listing;
            targets.entry((l.digest(), s.marks_before)).or_insert(l);
        }
        for ((_, marks), target) in &targets {
            let found = lister.find(target, *marks).unwrap();
            let found = found.unwrap_or_else(|| panic!("{apm}: nothing found for {:?} at {marks}", target.entries));
            assert_eq!(found.marks_before, *marks);
            let made = lister.listing(&found).unwrap();
            let same_but_garbage = made.listing.entries.len() == target.entries.len()
                && made.listing.entries.iter().zip(&target.entries).all(|(a, b)| {
                    a == b || {
                        let path = a.split(' ').nth(1).unwrap();
                        let wild = &made.garbage[path];
                        let (x, y) = (&made.listing.blocks[path], &target.blocks[path]);
                        x.len() == y.len() && (0..x.len()).all(|i| wild.contains(&(i as u64)) || x[i] == y[i])
                    }
                });
            assert!(same_but_garbage, "{apm}: {} lists {:?}, not {:?}", found.id, made.listing.entries, target.entries);
        }
        assert!(targets.len() > 5, "{apm}: {} distinct contents", targets.len());
    }
}
