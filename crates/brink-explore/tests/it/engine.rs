//! The whole engine without root: `explore_in_process` with a fake recovery that reads
//! the state's image file in this process. Deduplication, resume (a stopped run, a
//! partial log cut by a kill), the verdict cache and minimization run as in a real
//! exploration; only the kernel's recovery and the checkers are replaced.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use brink_check::{CheckOutcome, Verdict};
use brink_explore::{
    CheckerSpec, ExploreConfig, ExploreError, InProcessCheck, Progress, Recovery, Results, ResultsError, Summary,
    explore_in_process, results,
};
use brink_pmodel::{Model, Strategy};
use brink_trace::{TraceMeta, TraceWriter, WriteFlags};

const IMAGE: u64 = 64 * 4096;

/// Epoch 0: A@0, B@8 (sectors), mark "m1", C@16; flush. Epoch 1: B again (the same
/// bytes, so dropping it changes nothing), E@24. 7 events.
fn trace(dir: &Path) -> PathBuf {
    let out = dir.join("t");
    let mut w = TraceWriter::create(&out).unwrap();
    File::create(w.base_image_path()).unwrap().set_len(IMAGE).unwrap();
    w.write(0, &[b'A'; 4096], WriteFlags::default()).unwrap(); // 0
    w.write(8 * 512, &[b'B'; 4096], WriteFlags::default()).unwrap(); // 1
    w.mark("m1").unwrap(); // 2
    w.write(16 * 512, &[b'C'; 1024], WriteFlags::default()).unwrap(); // 3
    w.flush().unwrap(); // 4
    w.write(8 * 512, &[b'B'; 4096], WriteFlags::default()).unwrap(); // 5
    w.write(24 * 512, &[b'E'; 512], WriteFlags::default()).unwrap(); // 6
    w.finish(TraceMeta::new("test", "ext4", IMAGE)).unwrap()
}

/// The application's promise: once "m1" is acknowledged, B is on the disk. Counts its
/// calls, and raises `stop_after` calls' worth of interrupt (signal 15) when asked to.
struct Fake {
    calls: AtomicUsize,
    stop_after: Option<(usize, Arc<AtomicUsize>)>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake { calls: AtomicUsize::new(0), stop_after: None })
    }
}

impl InProcessCheck for Fake {
    fn check(&self, image: &Path, _state_id: &str, marks: &[String]) -> Vec<CheckOutcome> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((after, interrupt)) = &self.stop_after {
            if n >= *after {
                interrupt.store(15, Ordering::SeqCst);
            }
        }
        let mut b = vec![0u8; 4096];
        File::open(image).unwrap().read_exact_at(&mut b, 8 * 512).unwrap();
        let lost = marks.iter().any(|m| m == "m1") && b.iter().any(|&x| x != b'B');
        let (verdict, message) = if lost {
            (Verdict::Violation, "acknowledged B lost".to_string())
        } else {
            (Verdict::Consistent, String::new())
        };
        vec![CheckOutcome { checker: "fake".into(), verdict, message, details: None, ms: 0 }]
    }
}

/// Exhaustive, write-back, two jobs, kernel recovery named (the in-process check
/// replaces it), the checker `fake`.
pub(crate) fn config(trace: &Path, results: &Path) -> ExploreConfig {
    ExploreConfig {
        trace: trace.to_path_buf(),
        results: results.to_path_buf(),
        model: Model::WRITEBACK,
        strategy: Strategy::Exhaustive,
        max_states: brink_explore::defaults::STATES_MAX,
        checkers: vec![CheckerSpec::Command("fake".into())],
        jobs: 2,
        checker_timeout: brink_explore::defaults::CHECKER_TIMEOUT,
        time_budget: None,
        resume: false,
        recovery: Recovery::Kernel,
        media_faults: false,
        cache: None,
        interrupt: Arc::new(AtomicUsize::new(0)),
        shard: None,
        tree_dedup: true,
        checker_protocol: brink_check::Protocol::Brink,
        slots: brink_explore::SlotKind::Auto,
    }
}

fn run(cfg: &ExploreConfig, fake: &Arc<Fake>) -> Result<Summary, ExploreError> {
    explore_in_process(cfg, &Progress::default(), fake.clone())
}

fn states(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(results::STATES)).unwrap()
}

#[test]
fn each_image_and_marks_is_checked_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&trace(tmp.path()), &tmp.path().join("r"));
    let fake = Fake::new();
    let s = run(&cfg, &fake).unwrap();
    // Points: before the mark (2 volatile: 4 states), end of epoch 0 (3: 8), end of
    // epoch 1 (2: 4). Rewriting B changes nothing, so 7-5 is 7, and 7-6 and 7-5-6 are
    // 4 (A, B, C and the same mark). The no-crash state is state 7.
    assert_eq!((s.states_total.0, s.states_generated, s.states_unique), (16, 16, 13));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 13);
    assert_eq!((s.violations, s.consistent, s.minimize_probes), (4, 12, 0));
    assert!(s.complete && s.stopped_by.is_none());
    let no_crash = s.no_crash.as_ref().unwrap();
    assert_eq!((no_crash.id.as_str(), &no_crash.verdict), ("7", &Verdict::Consistent));
    let r = Results::load(&cfg.results).unwrap();
    // summary.json reads back as written (floats to within their last digit).
    let floats = Summary { wall_s: 0.0, states_per_s: 0.0, time_ms: r.summary.time_ms.clone(), ..s.clone() };
    assert_eq!(Summary { wall_s: 0.0, states_per_s: 0.0, ..r.summary.clone() }, floats);
    let dup = |id: &str| r.states.iter().find(|x| x.id == id).unwrap().dup_of.clone();
    assert_eq!(dup("7"), None);
    assert_eq!((dup("7-5"), dup("7-6"), dup("7-5-6")), (Some("7".into()), Some("4".into()), Some("4".into())));
    // Every state that loses B after "m1" is explained by the one that drops only B.
    let failing: Vec<(&str, Option<&str>)> = r
        .states
        .iter()
        .filter(|x| x.verdict == Verdict::Violation)
        .map(|x| (x.id.as_str(), x.minimal.as_deref()))
        .collect();
    assert_eq!(
        failing,
        [("4-0-1", Some("4-1")), ("4-0-1-3", Some("4-1")), ("4-1", Some("4-1")), ("4-1-3", Some("4-1"))]
    );
    assert!(!cfg.results.join(".work").exists(), "the rig is torn down");
}

#[test]
fn the_same_run_gives_the_same_states_at_any_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let one = ExploreConfig { jobs: 1, ..config(&t, &tmp.path().join("one")) };
    let four = ExploreConfig { jobs: 4, ..config(&t, &tmp.path().join("four")) };
    run(&one, &Fake::new()).unwrap();
    run(&four, &Fake::new()).unwrap();
    assert_eq!(states(&one.results), states(&four.results));
}

#[test]
fn minimal_states_outside_the_strategy_are_probed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&trace(tmp.path()), &tmp.path().join("r"));
    // `prefix` drops a suffix of the volatile writes: 4-1-3 fails, and its minimal
    // state 4-1 (drop only B) is not a prefix state, so it is checked as a probe.
    cfg.strategy = Strategy::Prefix;
    let s = run(&cfg, &Fake::new()).unwrap();
    assert!(s.minimize_probes >= 1, "{s:?}");
    let r = Results::load(&cfg.results).unwrap();
    let failing = r.states.iter().find(|x| x.id == "4-1-3").unwrap();
    assert_eq!(failing.minimal.as_deref(), Some("4-1"));
    assert!(r.states.iter().all(|x| x.id != "4-1"));
    assert_eq!(r.minimal.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["4-1"]);
    assert_eq!(r.minimal[0].verdict, Verdict::Violation);
}

#[test]
fn the_verdict_cache_answers_a_second_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let mut first = config(&t, &tmp.path().join("first"));
    first.cache = Some(tmp.path().join("cache"));
    let s = run(&first, &Fake::new()).unwrap();
    assert_eq!((s.cache_hits, s.cache_stored), (0, 13));
    let second = ExploreConfig { results: tmp.path().join("second"), ..first.clone() };
    let fake = Fake::new();
    let s = run(&second, &fake).unwrap();
    assert_eq!((s.cache_hits, s.cache_stored), (13, 0));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0, "nothing checked again");
    assert_eq!(states(&first.results), states(&second.results));
    // Other checkers: other verdicts, nothing reused.
    let third = ExploreConfig {
        results: tmp.path().join("third"),
        checkers: vec![CheckerSpec::Command("another".into())],
        ..first.clone()
    };
    let fake = Fake::new();
    assert_eq!(run(&third, &fake).unwrap().cache_hits, 0);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 13);
}

#[test]
fn resume_continues_a_stopped_run_to_the_same_states() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let whole = config(&t, &tmp.path().join("whole"));
    run(&whole, &Fake::new()).unwrap();

    let mut cfg = config(&t, &tmp.path().join("r"));
    cfg.jobs = 1;
    let stopper = Arc::new(Fake { calls: AtomicUsize::new(0), stop_after: Some((5, cfg.interrupt.clone())) });
    let s = run(&cfg, &stopper).unwrap();
    assert!(!s.complete);
    assert_eq!(s.stopped_by.as_deref(), Some("signal 15"));
    assert!(s.no_crash.is_none());
    // A kill in the middle of a line leaves it cut: resuming drops it.
    let partial = cfg.results.join(results::PARTIAL);
    let mut log = std::fs::read(&partial).unwrap();
    let kept = log.iter().filter(|&&b| b == b'\n').count();
    log.extend_from_slice(b"{\"id\":\"4-0\",\"posi");
    std::fs::write(&partial, log).unwrap();

    cfg.interrupt.store(0, Ordering::SeqCst);
    cfg.resume = true;
    let fake = Fake::new();
    let s = run(&cfg, &fake).unwrap();
    assert!(s.complete);
    assert_eq!(s.states_unique, 13, "counts include the earlier run's");
    assert!(fake.calls.load(Ordering::SeqCst) <= 13 - kept.min(5), "done states are not checked again");
    assert_eq!(states(&cfg.results), states(&whole.results));
    // Resuming a finished run checks nothing and counts as the run did (the no-crash
    // state once went uncounted).
    let counts = |s: &Summary| (s.states_generated, s.states_unique, s.violations, s.consistent, s.complete);
    let first = Results::load(&cfg.results).unwrap().summary;
    let again = run(&cfg, &Fake::new()).unwrap();
    assert_eq!(counts(&again), counts(&first));
    assert_eq!(states(&cfg.results), states(&whole.results));
}

#[test]
fn resume_needs_the_same_exploration() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let cfg = config(&t, &tmp.path().join("r"));
    run(&cfg, &Fake::new()).unwrap();
    let words = |e: ExploreError| {
        let text = e.to_string();
        assert!(!text.contains("--"), "no flags in library messages: {text}");
        (e, text)
    };
    let (e, text) = words(run(&cfg, &Fake::new()).unwrap_err());
    assert!(matches!(e, ExploreError::Results(ResultsError::Exists { .. })), "{text}");
    let other = ExploreConfig { strategy: Strategy::Prefix, resume: true, ..cfg.clone() };
    let (e, text) = words(run(&other, &Fake::new()).unwrap_err());
    assert!(matches!(e, ExploreError::Results(ResultsError::OtherSettings { .. })), "{text}");
    let missing = ExploreConfig { results: tmp.path().join("nope"), resume: true, ..cfg.clone() };
    let (e, text) = words(run(&missing, &Fake::new()).unwrap_err());
    assert!(matches!(e, ExploreError::Results(ResultsError::NothingToResume { .. })), "{text}");
    let small = ExploreConfig { results: tmp.path().join("small"), max_states: 10, ..cfg.clone() };
    let (e, text) = words(run(&small, &Fake::new()).unwrap_err());
    assert!(matches!(e, ExploreError::TooManyStates { .. }), "{text}");
    assert!(text.contains("the maximum number of states (10)"), "{text}");
    assert!(!small.results.exists(), "refused before anything is written");
    // Every strategy but sampling is bounded so (a torn omit-k space once ran out of memory).
    for strategy in [Strategy::OmitK(2), Strategy::Prefix] {
        let cfg = ExploreConfig { results: tmp.path().join("small-k"), max_states: 1, strategy, ..cfg.clone() };
        let (e, text) = words(run(&cfg, &Fake::new()).unwrap_err());
        assert!(matches!(e, ExploreError::TooManyStates { .. }), "{strategy:?}: {text}");
    }
    let sampled = Strategy::Sample { samples: 2, seed: 1 };
    let cfg = ExploreConfig { results: tmp.path().join("sampled"), max_states: 1, strategy: sampled, ..cfg.clone() };
    assert!(run(&cfg, &Fake::new()).is_ok(), "a sample is bounded by its size");
}

#[test]
fn a_time_budget_stops_the_run_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&trace(tmp.path()), &tmp.path().join("r"));
    cfg.time_budget = Some(Duration::ZERO);
    let s = run(&cfg, &Fake::new()).unwrap();
    assert!(!s.complete);
    assert_eq!(s.stopped_by.as_deref(), Some("time budget of 0s"));
    assert_eq!(s.states_checked, 0);
    Results::load(&cfg.results).unwrap();
}

#[test]
fn media_fault_states_are_checked_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&trace(tmp.path()), &tmp.path().join("r"));
    cfg.media_faults = true;
    let s = run(&cfg, &Fake::new()).unwrap();
    assert!(s.media_fault_states > 0);
    let r = Results::load(&cfg.results).unwrap();
    let faults: Vec<&str> = r.states.iter().filter_map(|x| x.fault.as_deref()).collect();
    assert_eq!(faults.len() as u64, s.media_fault_states);
    assert!(faults.iter().all(|f| !f.contains("latent")), "{faults:?}");
}

/// A checker that judges nothing: every state a checker failure (a missing checker).
struct Missing;

impl InProcessCheck for Missing {
    fn check(&self, _image: &Path, _state_id: &str, _marks: &[String]) -> Vec<CheckOutcome> {
        let message = "exit 127: sh: 1: ./check: not found".to_string();
        vec![CheckOutcome {
            checker: "./check".into(),
            verdict: Verdict::CheckerFailure,
            message,
            details: None,
            ms: 0,
        }]
    }
}

#[test]
fn unjudged_states_are_never_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let cfg = config(&t, &tmp.path().join("r"));
    let s = explore_in_process(&cfg, &Progress::default(), Arc::new(Missing)).unwrap();
    assert_eq!((s.violations, s.consistent), (0, 0));
    assert_eq!(s.unjudged(), s.states_generated, "every state is unjudged");
    assert!(!s.passed(), "0 violations with every state unjudged is not a pass");
    let judged = run(&config(&t, &tmp.path().join("judged")), &Fake::new()).unwrap();
    assert_eq!(judged.unjudged(), 0);
    assert!(!judged.passed(), "it found violations");
}

/// Holds its first check until told to go on, saying when it got there.
struct Gate {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    first: AtomicUsize,
    inner: Arc<Fake>,
}

impl InProcessCheck for Gate {
    fn check(&self, image: &Path, state_id: &str, marks: &[String]) -> Vec<CheckOutcome> {
        if self.first.fetch_add(1, Ordering::SeqCst) == 0 {
            self.entered.lock().unwrap().send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
        }
        self.inner.check(image, state_id, marks)
    }
}

#[test]
fn one_run_per_results_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let whole = config(&t, &tmp.path().join("whole"));
    run(&whole, &Fake::new()).unwrap();
    let cfg = config(&t, &tmp.path().join("r"));
    let (entered, entered_rx) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let gate = Arc::new(Gate {
        entered: std::sync::Mutex::new(entered),
        go: std::sync::Mutex::new(go_rx),
        first: AtomicUsize::new(0),
        inner: Fake::new(),
    });
    let first = {
        let cfg = cfg.clone();
        std::thread::spawn(move || explore_in_process(&cfg, &Progress::default(), gate))
    };
    entered_rx.recv().unwrap();
    // A second resume while the first run checks its first state: refused, naming the
    // holder, before it touches anything of the first run's.
    let second = ExploreConfig { resume: true, ..cfg.clone() };
    let e = run(&second, &Fake::new()).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExploreError::Results(ResultsError::Busy { .. })), "{text}");
    assert!(text.contains(&format!("pid {}, started ", std::process::id())), "{text}");
    assert!(text.contains(" UTC"), "{text}");
    go.send(()).unwrap();
    let s = first.join().unwrap().unwrap();
    assert!(s.complete);
    assert_eq!(states(&cfg.results), states(&whole.results), "the first run was left alone");
    // Released at the end: resuming the finished run is allowed.
    assert!(run(&second, &Fake::new()).unwrap().complete);
}

#[test]
fn settings_out_of_range_are_refused_before_any_state() {
    use brink_explore::{Setting, SettingError, seconds};
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    // What a flag or a manifest gives in seconds: an error, never a panic.
    for secs in [f64::INFINITY, 1e300, -1.0] {
        assert!(seconds(Setting::TimeBudget, secs).is_err(), "{secs}");
        assert!(seconds(Setting::CheckerTimeout, secs).is_err(), "{secs}");
    }
    let bad = [
        ExploreConfig { checker_timeout: Duration::ZERO, ..config(&t, &tmp.path().join("a")) },
        ExploreConfig { checker_timeout: Duration::MAX, ..config(&t, &tmp.path().join("b")) },
        ExploreConfig { time_budget: Some(Duration::MAX), ..config(&t, &tmp.path().join("c")) },
        ExploreConfig { jobs: 0, ..config(&t, &tmp.path().join("d")) },
    ];
    for cfg in bad {
        let fake = Fake::new();
        let e = run(&cfg, &fake).unwrap_err();
        assert!(
            matches!(e, ExploreError::Setting(SettingError::NotPositive { .. } | SettingError::TooLarge { .. })),
            "{e}"
        );
        assert!(!cfg.results.exists(), "refused before anything is written: {e}");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    }
}

/// Judges as `Fake`, but on its third call makes every scratch directory of the run
/// unwritable (a file where the directory was), as a full or failing disk would.
struct Sabotage(Arc<Fake>);

impl InProcessCheck for Sabotage {
    fn check(&self, image: &Path, state_id: &str, marks: &[String]) -> Vec<CheckOutcome> {
        let checks = self.0.check(image, state_id, marks);
        if self.0.calls.load(Ordering::SeqCst) == 3 {
            let work = image.parent().unwrap().parent().unwrap();
            for e in std::fs::read_dir(work).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap().to_string_lossy().starts_with("scratch") {
                    std::fs::remove_dir_all(&p).unwrap();
                    std::fs::write(&p, b"not a directory").unwrap();
                }
            }
        }
        checks
    }
}

#[test]
fn brinks_own_io_errors_are_brinks() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let whole = config(&t, &tmp.path().join("whole"));
    run(&whole, &Fake::new()).unwrap();
    // One job: the sabotage must not pull another check's image from under it.
    let mut cfg = ExploreConfig { jobs: 1, ..config(&t, &tmp.path().join("r")) };
    let e = explore_in_process(&cfg, &Progress::default(), Arc::new(Sabotage(Fake::new()))).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ExploreError::Scratch { .. }), "the run stops: {text}");
    assert!(text.contains("cannot write brink's scratch file") && text.contains("scratch"), "{text}");
    assert!(!cfg.results.join(results::SUMMARY).exists(), "no summary from a failed run");
    // What was recorded is what the whole run found: nothing from the broken states.
    let recorded = results::collect(&cfg.results).unwrap();
    let expected = Results::load(&whole.results).unwrap().states;
    assert!(!recorded.is_empty() && recorded.len() < expected.len(), "{} recorded", recorded.len());
    for r in &recorded {
        let w = expected.iter().find(|x| x.id == r.id).unwrap();
        assert_eq!((&r.verdict, &r.checks), (&w.verdict, &w.checks), "state {}", r.id);
    }
    // Resuming checks the rest, to the same states as the whole run.
    cfg.resume = true;
    assert!(run(&cfg, &Fake::new()).unwrap().complete);
    assert_eq!(states(&cfg.results), states(&whole.results));
}

/// A partial log whose lines pass every check of their own can still hold a state the
/// exploration never generates (one write index changed: an index below the crash
/// position that is no volatile write there). Resuming over it is an error naming the
/// state, not results that report a state nobody checked (found by the partial-log fuzz).
#[test]
fn resume_refuses_a_record_of_a_state_the_exploration_does_not_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let whole = config(&t, &tmp.path().join("whole"));
    run(&whole, &Fake::new()).unwrap();
    let recs = Results::load(&whole.results).unwrap().states;
    let ids: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    // A state "P" and an index J < P such that "P-J" is not generated.
    let (rec, foreign) = recs
        .iter()
        .filter(|r| r.omitted.is_empty() && r.torn.is_empty() && r.position > 0)
        .find_map(|r| {
            (0..r.position)
                .map(|j| format!("{}-{j}", r.position))
                .find(|id| !ids.contains(id.as_str()))
                .map(|id| (r, id))
        })
        .expect("a crash point with a non-volatile event before it");
    let mut line = serde_json::to_value(rec).unwrap();
    let j: u64 = foreign.rsplit('-').next().unwrap().parse().unwrap();
    line["id"] = foreign.clone().into();
    line["omitted"] = serde_json::json!([j]);
    line["dup_of"] = serde_json::Value::Null;
    let cfg = ExploreConfig { resume: true, ..config(&t, &tmp.path().join("r")) };
    std::fs::create_dir_all(&cfg.results).unwrap();
    std::fs::copy(whole.results.join("run.json"), cfg.results.join("run.json")).unwrap();
    std::fs::write(cfg.results.join(results::PARTIAL), format!("{line}\n")).unwrap();
    let e = run(&cfg, &Fake::new()).unwrap_err();
    assert!(matches!(e, ExploreError::Results(ResultsError::Foreign { ref id, .. }) if *id == foreign), "{e}");
}
