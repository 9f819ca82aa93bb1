//! The suite's runner without root: a fake [`Driver`] records by writing a small trace
//! itself and explores it in this process (`brink_explore::explore_in_process`, with a
//! fake recovery that reads the state's image), so the runner's own decisions run in
//! `cargo test` anywhere: a row per mode, a failing mode as a mismatch row, a signal
//! stopping the run, the `full` policy and its fallback, the sweep's count, the tables.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brink_check::{CheckOutcome, Verdict};
use brink_explore::{ExploreConfig, ExploreError, InProcessCheck, Progress, Summary, explore_in_process};
use brink_pmodel::{Model, Strategy};
use brink_record::{Interrupt, RecordConfig, RecordError, RecordOutcome};
use brink_suite::sweep::{Sweep, SweepTarget};
use brink_suite::{Driver, Expect, ExploreSpec, Mode, Row, RunError, RunOpts, Step, Workload};
use brink_trace::{ExitInfo, TraceMeta, TraceWriter, WorkloadInfo, WriteFlags, WriterStats};
use expect_test::expect;

const IMAGE: u64 = 64 * 4096;

/// The workload's trace: A and B written, the mark "m1" (B is promised), C, a flush; then
/// B again and E. 7 events, 16 crash states, 4 of them violating.
fn write_trace(out: &Path) -> PathBuf {
    let mut w = TraceWriter::create(out).unwrap();
    File::create(w.base_image_path()).unwrap().set_len(IMAGE).unwrap();
    w.write(0, &[b'A'; 4096], WriteFlags::default()).unwrap();
    w.write(8 * 512, &[b'B'; 4096], WriteFlags::default()).unwrap();
    w.mark("m1").unwrap();
    w.write(16 * 512, &[b'C'; 1024], WriteFlags::default()).unwrap();
    w.flush().unwrap();
    w.write(8 * 512, &[b'B'; 4096], WriteFlags::default()).unwrap();
    w.write(24 * 512, &[b'E'; 512], WriteFlags::default()).unwrap();
    let mut meta = TraceMeta::new("test", "ext4", IMAGE);
    meta.workload = Some(WorkloadInfo {
        argv: vec!["true".into()],
        setup: None,
        exit: ExitInfo { code: Some(0), signal: None },
        stdout: String::new(),
        stderr: "wrote B\nacknowledged m1\n".into(),
        output_truncated: false,
        wall_ms: 1,
    });
    w.finish(meta).unwrap()
}

/// The application's promise: once "m1" is acknowledged, B is on the disk.
struct PromiseOfB;

impl InProcessCheck for PromiseOfB {
    fn check(&self, image: &Path, _state_id: &str, marks: &[String]) -> Vec<CheckOutcome> {
        let mut b = vec![0u8; 4096];
        File::open(image).unwrap().read_exact_at(&mut b, 8 * 512).unwrap();
        let lost = marks.iter().any(|m| m == "m1") && b.iter().any(|&x| x != b'B');
        let (verdict, message) = if lost {
            (Verdict::Violation, "acknowledged B lost".into())
        } else {
            (Verdict::Consistent, String::new())
        };
        vec![CheckOutcome { checker: "promise".into(), verdict, message, details: None, ms: 0 }]
    }
}

/// Records by writing the trace above (a mode named `broken` cannot be recorded), explores
/// in process, and keeps the steps the runner reports.
#[derive(Default)]
struct Fake {
    steps: Mutex<Vec<String>>,
    /// What each watched target counts.
    watched: u64,
    /// Explorations run, with the strategy each used.
    explored: Mutex<Vec<String>>,
}

impl Driver for Fake {
    fn record(&self, cfg: &RecordConfig) -> Result<RecordOutcome, RecordError> {
        if cfg.output.parent().is_some_and(|d| d.ends_with("broken")) {
            return Err(RecordError::Precondition("mkfs.ext4 not found".into()));
        }
        Ok(RecordOutcome {
            trace: write_trace(&cfg.output),
            stats: WriterStats { events: 7, ..WriterStats::default() },
            exit: ExitInfo { code: Some(0), signal: None },
            workload_wall_ms: 1,
            ignored_marks: 0,
            watched: cfg.watch.iter().map(|_| self.watched).collect(),
        })
    }

    fn explore(&self, cfg: &ExploreConfig) -> Result<Summary, ExploreError> {
        self.explored.lock().unwrap().push(format!("{} max {}", cfg.strategy.name(), cfg.max_states));
        explore_in_process(cfg, &Progress::default(), Arc::new(PromiseOfB))
    }

    fn step(&self, step: Step<'_>) {
        let line = match step {
            Step::Recording { label } => format!("{label}: recording"),
            Step::Exploring { label, events } => format!("{label}: exploring {events} events"),
            Step::Failed { label, why } => format!("{label}: {why}"),
            _ => "another step".into(),
        };
        self.steps.lock().unwrap().push(line);
    }
}

fn mode(name: &str, expect: Expect, message: Option<&str>) -> Mode {
    Mode {
        name: name.into(),
        fs: brink_blockdev::FsKind::Ext4,
        size: IMAGE,
        mkfs_opts: String::new(),
        mount_opts: String::new(),
        setup: None,
        command: "true".into(),
        expect: Some(expect),
        message: message.map(String::from),
        strategy: Strategy::Prefix,
        max_states: 100,
        torn: brink_pmodel::Torn::None,
        fs_findings_allowed: false,
        inject: Vec::new(),
        exit_code: Some(0),
        logical: Vec::new(),
    }
}

fn workload(modes: Vec<Mode>) -> Workload {
    Workload {
        name: "promise".into(),
        dir: "/nonexistent".into(),
        description: "B is promised at m1".into(),
        checkers: vec!["promise".into()],
        explore: ExploreSpec { model: Model::WRITEBACK, checker_timeout: Duration::from_secs(30) },
        modes,
    }
}

fn opts() -> RunOpts {
    RunOpts::new(2, Interrupt::default())
}

/// Run `modes` under `root`; the table with times zeroed and `root` written ROOT.
fn run(root: &Path, modes: Vec<Mode>, opts: &RunOpts, fake: &Fake) -> Result<(Vec<Row>, String), RunError> {
    let w = workload(modes);
    let selection = [(w.clone(), w.modes.clone())];
    let mut rows = brink_suite::run_workloads(&selection, &|_, m| root.join(&m.name), opts, fake)?;
    for r in &mut rows {
        (r.record_s, r.explore_s) = (0.0, 0.0);
    }
    let table = brink_suite::render_text(&rows).replace(&root.display().to_string(), "ROOT");
    Ok((rows, table))
}

#[test]
fn each_mode_is_a_row_and_a_failing_mode_a_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let modes = vec![
        mode("caught", Expect::Violations, Some("acknowledged B")),
        mode("claimed-clean", Expect::Clean, None),
        mode("broken", Expect::Clean, None),
    ];
    let (rows, table) = run(tmp.path(), modes, &opts(), &fake).unwrap();
    expect![[r#"
        workload  mode            states  unique violations  no-crash   expected    verdict  seconds
        promise   caught              10       8          2  ok         violations  ok           0.0
        promise   claimed-clean       10       8          2  ok         clean       MISMATCH     0.0
        promise   broken               0       0          0  -          clean       MISMATCH     0.0

          promise caught: acknowledged B lost
            replay: brink replay ROOT/caught/trace 4-0-1-3 -o DIR
          MISMATCH promise claimed-clean: expected clean, found 2 violations: acknowledged B lost
          MISMATCH promise broken: error: mkfs.ext4 not found
    "#]]
    .assert_eq(&table);
    expect![[r#"
        [1/3] promise caught: recording
        [1/3] promise caught: exploring 7 events
        [2/3] promise claimed-clean: recording
        [2/3] promise claimed-clean: exploring 7 events
        [3/3] promise broken: recording
        [3/3] promise broken: mkfs.ext4 not found"#]]
    .assert_eq(&fake.steps.lock().unwrap().join("\n"));
    assert_eq!(rows[0].said, "acknowledged m1");
    assert_eq!(rows[0].no_crash, Some(Verdict::Consistent));
    // The tables written, and suite.json read back as the rows.
    brink_suite::write_tables(tmp.path(), &rows, "a test", "0").unwrap();
    let back: Vec<Row> = serde_json::from_slice(&std::fs::read(tmp.path().join("suite.json")).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&rows).unwrap());
    let md = std::fs::read_to_string(tmp.path().join("suite.md")).unwrap();
    assert!(md.starts_with("# a test\n\n## Machine\n\n- brink 0\n"), "{md}");
}

/// A signal stops the run with the failing mode's error instead of a row.
#[test]
fn a_signal_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts();
    opts.interrupt.0.store(15, Ordering::SeqCst);
    let e = run(tmp.path(), vec![mode("broken", Expect::Clean, None)], &opts, &Fake::default()).unwrap_err();
    expect!["mkfs.ext4 not found"].assert_eq(&brink_suite::one_line(&e));
}

/// A full run explores exhaustively, unless the space is over its bound: then the mode
/// keeps its own strategy and the row says why.
#[test]
fn the_full_policy_falls_back_over_its_bound() {
    let mut got = Vec::new();
    for bound in [100, 10] {
        let tmp = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        let opts = RunOpts { full: true, full_max_states: bound, ..opts() };
        let (rows, _) = run(tmp.path(), vec![mode("caught", Expect::Violations, None)], &opts, &fake).unwrap();
        let explored = fake.explored.lock().unwrap().join(", ");
        got.push(format!("bound {bound}: explored {explored}; row {} '{}'", rows[0].strategy, rows[0].note));
    }
    expect![[r#"
        bound 100: explored exhaustive max 100; row exhaustive ''
        bound 10: explored prefix max 100; row prefix 'exhaustive space 16 states > bound 10'"#]]
    .assert_eq(&got.join("\n"));
}

/// A sweep counts its points with one watched recording; none is an error.
#[test]
fn a_sweep_counts_its_points() {
    let w = workload(vec![mode("caught", Expect::Violations, None)]);
    let sweep = Sweep { target: SweepTarget::Flushes, permanent: false, max_points: 64 };
    for (watched, want) in [(3, "3"), (0, "the workload issued no flushes while it ran: nothing to sweep")] {
        let tmp = tempfile::tempdir().unwrap();
        let fake = Fake { watched, ..Fake::default() };
        let got = match sweep.count(&w, &w.modes[0], tmp.path(), &opts(), &fake) {
            Ok(n) => n.to_string(),
            Err(e) => brink_suite::one_line(&e),
        };
        assert_eq!(got, want);
    }
}

#[test]
fn an_output_folder_must_be_new() {
    let tmp = tempfile::tempdir().unwrap();
    let e = brink_suite::fresh_dir(tmp.path()).unwrap_err();
    assert_eq!(e.to_string(), format!("{} already exists; choose a new directory", tmp.path().display()));
    brink_suite::fresh_dir(&tmp.path().join("a/b")).unwrap();
}
