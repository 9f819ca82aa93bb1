//! Sharding and merging (issue 17) through the in-process engine: the shards of an
//! exploration, merged, are the one-machine run (times aside), at any number of shards,
//! with a shard stopped and resumed on the way; shards of two explorations are refused.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use brink_check::{CheckOutcome, Verdict};
use brink_explore::{
    ExploreConfig, InProcessCheck, MergeError, Progress, Results, ResultsError, Shard, StateRecord, Summary,
    explore_in_process, merge::merge, results,
};
use brink_pmodel::{Model, Strategy, Torn};
use brink_trace::{TraceMeta, TraceWriter, WriteFlags};

use crate::engine::config;

const IMAGE: u64 = 64 * 4096;

/// Four epochs with marks, a rewrite of unchanged data (states of different crash points
/// and epochs with one image), and a changed block, so that dedup crosses shards and
/// minimization has work at several crash points.
fn trace(dir: &Path) -> PathBuf {
    let out = dir.join("t");
    let mut w = TraceWriter::create(&out).unwrap();
    File::create(w.base_image_path()).unwrap().set_len(IMAGE).unwrap();
    let write = |w: &mut TraceWriter, sector: u64, byte: u8, len: usize| {
        w.write(sector * 512, &vec![byte; len], WriteFlags::default()).unwrap();
    };
    write(&mut w, 0, b'A', 4096);
    write(&mut w, 8, b'B', 4096);
    w.mark("m1").unwrap();
    write(&mut w, 16, b'C', 1024);
    write(&mut w, 8, b'B', 4096);
    w.flush().unwrap();
    write(&mut w, 24, b'D', 512);
    w.mark("m2").unwrap();
    write(&mut w, 0, b'A', 4096);
    write(&mut w, 32, b'E', 1024);
    w.flush().unwrap();
    write(&mut w, 8, b'b', 4096);
    w.mark("m3").unwrap();
    write(&mut w, 40, b'F', 512);
    write(&mut w, 16, b'C', 1024);
    w.flush().unwrap();
    write(&mut w, 48, b'G', 512);
    write(&mut w, 56, b'H', 512);
    w.finish(TraceMeta::new("test", "ext4", IMAGE)).unwrap()
}

/// m1: B (either version) is on the disk; m2: D is; m3: the new B is. Sleeps `delay`
/// per check (for time budgets).
struct Promises {
    delay: Duration,
    calls: AtomicUsize,
}

fn promises() -> Arc<Promises> {
    Arc::new(Promises { delay: Duration::ZERO, calls: AtomicUsize::new(0) })
}

impl InProcessCheck for Promises {
    fn check(&self, image: &Path, _state_id: &str, marks: &[String]) -> Vec<CheckOutcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let at = |sector: u64| {
            let mut b = [0u8; 1];
            File::open(image).unwrap().read_exact_at(&mut b, sector * 512).unwrap();
            b[0]
        };
        let has = |m: &str| marks.iter().any(|x| x == m);
        let lost = if has("m3") && at(8) != b'b' {
            Some("new B lost")
        } else if has("m2") && at(24) != b'D' {
            Some("D lost")
        } else if has("m1") && at(8) != b'B' && at(8) != b'b' {
            Some("B lost")
        } else {
            None
        };
        let (verdict, message) = match lost {
            Some(m) => (Verdict::Violation, m.to_string()),
            None => (Verdict::Consistent, String::new()),
        };
        // A time that differs from run to run: the merge must not care.
        let ms = self.calls.load(Ordering::SeqCst) as u64 % 7;
        vec![CheckOutcome { checker: "fake".into(), verdict, message, details: None, ms }]
    }
}

fn explore(cfg: &ExploreConfig, check: &Arc<Promises>) -> Summary {
    explore_in_process(cfg, &Progress::default(), check.clone()).unwrap()
}

/// Records with every check's time zeroed.
fn timeless(recs: &[StateRecord]) -> Vec<StateRecord> {
    let mut recs = recs.to_vec();
    for c in recs.iter_mut().flat_map(|r| r.checks.iter_mut()) {
        c.ms = 0;
    }
    recs
}

/// The counts of a summary, without times and the shard and merge fields.
fn counts(s: &Summary) -> Summary {
    let time_ms =
        results::TimeSummary { hash: 0.0, overlay: 0.0, mount: 0.0, checkers: 0.0, unmount: 0.0, per_state: 0.0 };
    Summary {
        wall_s: 0.0,
        states_per_s: 0.0,
        jobs: 0,
        time_ms,
        minimize_probes: 0,
        shard: None,
        merged: None,
        ..s.clone()
    }
}

/// Explore the shards of `N` into `dir/sN-I`, merge them into `dir/mN`.
fn shards_merged(base: &ExploreConfig, dir: &Path, n: u32) -> PathBuf {
    let mut dirs = Vec::new();
    for i in 0..n {
        let cfg = ExploreConfig {
            results: dir.join(format!("s{n}-{i}")),
            shard: Some(Shard::new(i, n).unwrap()),
            ..base.clone()
        };
        let s = explore(&cfg, &promises());
        assert_eq!(s.shard, cfg.shard);
        dirs.push(cfg.results);
    }
    dirs.reverse(); // the order of the inputs does not matter
    let out = dir.join(format!("m{n}"));
    let s = merge(&dirs, &out).unwrap();
    assert!(s.complete, "{s:?}");
    out
}

/// The merged directory is the one-machine run's: states (times aside), minimal states,
/// trace.json, the summary's counts; and it loads with its invariants.
fn assert_same(one: &Path, merged: &Path) {
    let (a, b) = (Results::load(one).unwrap(), Results::load(merged).unwrap());
    assert_eq!(timeless(&a.states), timeless(&b.states));
    assert_eq!(timeless(&a.minimal), timeless(&b.minimal));
    assert_eq!(a.trace, b.trace);
    assert_eq!(counts(&a.summary), counts(&b.summary));
    let info = b.summary.merged.as_ref().unwrap();
    assert!(info.missing.is_empty() && info.incomplete.is_empty() && info.fraction_covered == 1.0);
    assert_eq!(a.run, b.run, "run.json is the one-machine run's");
}

#[test]
fn merging_1_2_3_and_7_shards_gives_the_one_machine_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let base = config(&t, &tmp.path().join("one"));
    let one = explore(&base, &promises());
    assert!(one.violations > 0 && one.states_unique < one.states_generated, "{one:?}");
    let r = Results::load(&base.results).unwrap();
    assert!(r.states.iter().any(|s| s.minimal.is_some()));
    for n in [1, 2, 3, 7] {
        let merged = shards_merged(&base, tmp.path(), n);
        assert_same(&base.results, &merged);
        // The shards checked some images more than once; the merge keeps one verdict.
        let reps = |dir: &Path| Results::load(dir).unwrap().states.iter().filter(|r| r.dup_of.is_none()).count();
        let shard_reps: usize = (0..n).map(|i| reps(&tmp.path().join(format!("s{n}-{i}")))).sum();
        assert_eq!(n > 1, shard_reps > reps(&merged), "{n} shards");
    }
}

#[test]
fn merged_samples_torn_writes_and_media_faults_are_the_one_machine_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let base = ExploreConfig {
        model: Model { torn: Torn::Sector, ..Model::WRITEBACK },
        strategy: Strategy::Sample { samples: 60, seed: 7 },
        media_faults: true,
        ..config(&t, &tmp.path().join("one"))
    };
    let one = explore(&base, &promises());
    assert!(one.media_fault_states > 0 && one.fraction_covered.is_some());
    let r = Results::load(&base.results).unwrap();
    assert!(!r.minimal.is_empty(), "minimal states outside the sample are merged too");
    for n in [2, 3] {
        let merged = shards_merged(&base, tmp.path(), n);
        assert_same(&base.results, &merged);
    }
}

#[test]
fn a_shard_stopped_and_resumed_then_merged_gives_the_one_machine_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let base = ExploreConfig { jobs: 1, ..config(&t, &tmp.path().join("one")) };
    explore(&base, &promises());
    let shard = |i| ExploreConfig {
        results: tmp.path().join(format!("s{i}")),
        shard: Some(Shard::new(i, 3).unwrap()),
        ..base.clone()
    };
    explore(&shard(0), &promises());
    explore(&shard(2), &promises());
    // Shard 1 stops on its time budget, then is merged: the merge says so.
    let slow = Arc::new(Promises { delay: Duration::from_millis(40), calls: AtomicUsize::new(0) });
    let stopped = explore(&ExploreConfig { time_budget: Some(Duration::from_millis(60)), ..shard(1) }, &slow);
    assert!(!stopped.complete, "{stopped:?}");
    let dirs: Vec<PathBuf> = (0..3).map(|i| shard(i).results).collect();
    let partial = merge(&dirs, &tmp.path().join("partial")).unwrap();
    let info = partial.merged.as_ref().unwrap();
    assert!(!partial.complete && info.incomplete == [1] && info.missing.is_empty(), "{partial:?}");
    assert!((info.fraction_covered - 2.0 / 3.0).abs() < 1e-9);
    assert!(partial.stopped_by.as_deref().unwrap().contains("1/3"), "{partial:?}");
    // Missing shards are named too.
    let two = merge(&dirs[..2], &tmp.path().join("two")).unwrap();
    assert_eq!(two.merged.as_ref().unwrap().missing, [2]);
    // Resumed (as the same shard: another one is refused), then merged: the whole.
    let other = ExploreConfig { resume: true, ..shard(2) };
    let other = ExploreConfig { results: shard(1).results, ..other };
    let e = explore_in_process(&other, &Progress::default(), promises()).unwrap_err();
    assert!(matches!(e, brink_explore::ExploreError::Results(ResultsError::OtherShard { .. })), "{e}");
    assert!(explore(&ExploreConfig { resume: true, ..shard(1) }, &promises()).complete);
    let merged = merge(&dirs, &tmp.path().join("m")).unwrap();
    assert!(merged.complete);
    assert_same(&base.results, &tmp.path().join("m"));
}

#[test]
fn shards_of_other_explorations_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let base = config(&t, &tmp.path().join("one"));
    let run = |name: &str, shard: &str, cfg: ExploreConfig| {
        let cfg = ExploreConfig { results: tmp.path().join(name), shard: Some(shard.parse().unwrap()), ..cfg };
        explore(&cfg, &promises());
        cfg.results
    };
    let a = run("a", "0/2", base.clone());
    let b = run("b", "1/2", ExploreConfig { strategy: Strategy::Prefix, ..base.clone() });
    let c = run("c", "1/3", base.clone());
    let d = run("d", "0/2", base.clone());
    let whole = {
        explore(&base, &promises());
        base.results.clone()
    };
    let out = tmp.path().join("m");
    let refused = |dirs: &[PathBuf]| merge(dirs, &out).unwrap_err();
    let e = refused(&[a.clone(), b]);
    assert!(matches!(e, MergeError::OtherExploration { .. }) && e.to_string().contains("strategy"), "{e}");
    assert!(matches!(refused(&[a.clone(), c]), MergeError::OtherSplit { .. }));
    assert!(matches!(refused(&[a.clone(), d]), MergeError::SameShard { .. }));
    assert!(matches!(refused(&[a.clone(), whole]), MergeError::NotSharded { .. }));
    assert!(matches!(refused(&[]), MergeError::NoInputs));
    std::fs::remove_file(a.join(results::SUMMARY)).unwrap();
    assert!(matches!(refused(&[a]), MergeError::Unfinished { .. }));
    assert!(!out.exists(), "a refused merge writes nothing");
}
