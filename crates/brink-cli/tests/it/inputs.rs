//! Hostile inputs to the `brink` binary (issue 13): usage errors, refused flags, and a
//! seeded mutation fuzzer over the files brink reads back (`summary.json`,
//! `states.jsonl`, `meta.json`, `events.log`, `payloads.pack`). Nothing is recorded and
//! nothing mounted: the trace is written with `TraceWriter`, the results by hand, so
//! these run without root.
//!
//! Every run must end (no hang), never panic, and every rejection is exit 2 with exactly
//! one stderr line starting `brink: `. `FUZZ_ITERS=N` sets the mutants per file (default
//! a few dozen, to stay within seconds).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brink_trace::{TraceMeta, TraceWriter, WriteFlags};
use serde_json::{Value, json};

use crate::errors::one_line_error;
use crate::{brink, run, stderr};

/// How long one run of brink on a mutant may take before it counts as a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Mutants per file when `FUZZ_ITERS` is not set.
const MUTANTS_DEFAULT: usize = 40;

const IMAGE: u64 = 16 * 4096;
const H1: &str = "00000000000000000000000000000000000000000000000000000000000000a1";
const H2: &str = "00000000000000000000000000000000000000000000000000000000000000b2";

/// A small trace of an unknown file system (nothing to mount): writes, a mark, flushes.
fn trace(dir: &Path) -> PathBuf {
    let mut w = TraceWriter::create(&dir.join("T")).unwrap();
    File::create(w.base_image_path()).unwrap().set_len(IMAGE).unwrap();
    w.write(0, &[b'A'; 4096], WriteFlags::default()).unwrap();
    w.write(8 * 512, &[b'B'; 4096], WriteFlags::default()).unwrap();
    w.mark("txn 1").unwrap();
    w.flush().unwrap();
    w.write(0, &[b'D'; 512], WriteFlags(WriteFlags::FUA)).unwrap();
    w.write(24 * 512, &[b'E'; 1024], WriteFlags::default()).unwrap();
    w.flush().unwrap();
    w.finish(TraceMeta::new("test", "unknown", IMAGE)).unwrap()
}

fn state(id: &str, position: u64, omitted: &[u64], image: &str, message: Option<&str>, dup_of: Option<&str>) -> Value {
    let verdict = if message.is_some() { "violation" } else { "consistent" };
    let mut check = json!({ "checker": "./check.sh", "verdict": verdict, "ms": 3 });
    if let Some(m) = message {
        check["message"] = m.into();
    }
    json!({
        "id": id, "position": position, "epoch": 0, "marks": 1, "omitted": omitted, "torn": [],
        "image": image, "verdict": verdict, "checks": [check], "dup_of": dup_of,
    })
}

/// A finished results directory of the trace above, written by hand.
fn results(dir: &Path, trace: &Path, fs: &str) -> PathBuf {
    let r = dir.join(format!("R-{fs}"));
    std::fs::create_dir_all(&r).unwrap();
    let summary = json!({
        "trace": trace.display().to_string(), "fs": fs, "mount_opts": "", "model": "writeback",
        "strategy": "exhaustive", "checkers": ["./check.sh"], "states_total": 3, "states_generated": 4,
        "states_unique": 3, "states_checked": 3, "violations": 1, "checker_failures": 0, "consistent": 2,
        "wall_s": 1.25, "states_per_s": 2.4, "jobs": 2, "complete": true, "stopped_by": null,
        "fraction_covered": null,
        "time_ms": { "hash": 0, "overlay": 0, "mount": 0, "checkers": 0, "unmount": 0, "per_state": 0.0 },
        "no_crash": { "id": "7", "verdict": "consistent", "message": null }, "media_fault_states": 0
    });
    std::fs::write(r.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    let lines = [
        state("3", 3, &[], H1, None, None),
        state("3-1", 3, &[1], H2, Some("acknowledged 'txn 1' lost: db holds 0"), None),
        state("7", 7, &[], H1, None, Some("3")),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(r.join("states.jsonl"), &body).unwrap();
    std::fs::write(r.join("states.partial.jsonl"), &body).unwrap();
    r
}

/// A deterministic generator (xorshift64*), so a failing mutant can be rebuilt.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break assumptions: wrong types, huge and negative numbers, control
/// characters, empty and odd state ids.
fn hostile_value(rng: &mut Rng) -> Value {
    let pick = [
        json!(null),
        json!(-1),
        json!(0),
        json!(u64::MAX),
        json!(1e300),
        json!(""),
        json!("x"),
        json!("\u{1b}[31m\u{7}garbage\r"),
        json!("99999999999999999999999"),
        json!("3-3-3"),
        json!("0~g0"),
        json!([]),
        json!({}),
        json!([1, 2]),
        json!(true),
        json!("../../etc/passwd"),
    ];
    pick[rng.below(pick.len())].clone()
}

/// Replace one value anywhere in `v` (an object field, an array element, or `v`).
fn mutate_value(v: &mut Value, rng: &mut Rng) {
    let children = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if children == 0 || rng.below(4) == 0 {
        *v = hostile_value(rng);
        return;
    }
    let i = rng.below(children);
    match v {
        Value::Object(m) => {
            if rng.below(6) == 0 {
                let k = m.keys().nth(i).unwrap().clone();
                m.remove(&k);
            } else {
                mutate_value(m.values_mut().nth(i).unwrap(), rng)
            }
        }
        Value::Array(a) => mutate_value(&mut a[i], rng),
        _ => unreachable!(),
    }
}

/// A mutant of `good`: bytes flipped, set, cut, repeated or dropped, or (for JSON and
/// JSON lines) one value replaced by a hostile one.
fn mutant(good: &[u8], rng: &mut Rng, json: bool) -> Vec<u8> {
    let mut b = good.to_vec();
    let n = b.len().max(1);
    match rng.below(if json { 7 } else { 5 }) {
        0 => {
            let i = rng.below(n).min(b.len().saturating_sub(1));
            if !b.is_empty() {
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(n).min(b.len().saturating_sub(1));
                if !b.is_empty() {
                    b[i] = [0, 0xff, 0x7f, 0x80, b'\n', b'"', b'9'][rng.below(7)];
                }
            }
        }
        2 => b.truncate(rng.below(n)),
        3 => {
            let (i, len) = (rng.below(n), 1 + rng.below(64));
            let piece: Vec<u8> = b.iter().skip(i).take(len).copied().collect();
            let at = rng.below(n).min(b.len());
            b.splice(at..at, piece);
        }
        4 => {
            let i = rng.below(n).min(b.len());
            let end = (i + 1 + rng.below(32)).min(b.len());
            b.drain(i..end);
        }
        _ => return mutate_json(good, rng),
    }
    b
}

/// One JSON value (or one line of JSON lines) with one value replaced.
fn mutate_json(good: &[u8], rng: &mut Rng) -> Vec<u8> {
    let text = String::from_utf8_lossy(good);
    if let Ok(mut v) = serde_json::from_str::<Value>(&text) {
        mutate_value(&mut v, rng);
        return v.to_string().into_bytes();
    }
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let i = rng.below(lines.len());
    if let Ok(mut v) = serde_json::from_str::<Value>(&lines[i]) {
        mutate_value(&mut v, rng);
        lines[i] = v.to_string();
    }
    lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes()
}

/// Run brink with a deadline, its output in files (a pipe could fill and stall it).
fn run_bounded(args: &[&Path], scratch: &Path) -> (Option<i32>, String) {
    let (out, err) = (scratch.join("stdout"), scratch.join("stderr"));
    let mut child = brink()
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .expect("run brink");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brink {args:?} hung (over {RUN_TIMEOUT:?})");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code(), String::from_utf8_lossy(&std::fs::read(&err).unwrap_or_default()).into_owned())
}

/// What every run must be: finished, no panic, and a rejection is one `brink: ` line.
fn judge(what: &str, code: Option<i32>, err: &str, failures: &mut Vec<String>) {
    let bad = match code {
        Some(101) => Some("exit 101 (a panic)"),
        _ if err.contains("panicked") => Some("a panic message"),
        None => Some("killed by a signal"),
        Some(0 | 1) => None,
        Some(2) if err.starts_with("brink: ") && err.trim_end().lines().count() == 1 => None,
        Some(2) => Some("a rejection that is not one 'brink: ' line"),
        Some(_) => Some("an unexpected exit code"),
    };
    if let Some(bad) = bad {
        failures.push(format!("{what}: {bad}: exit {code:?}: {err}"));
    }
}

fn mutants_per_file() -> usize {
    std::env::var("FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(MUTANTS_DEFAULT)
}

/// Mutate `file` (in a trace or results directory) `n` times, run `commands` on each
/// mutant, and restore it.
fn fuzz_file(file: &Path, commands: &[Vec<PathBuf>], seed: u64, scratch: &Path, failures: &mut Vec<String>) {
    let good = std::fs::read(file).unwrap();
    let json = file.extension().is_some_and(|e| e == "json" || e == "jsonl");
    let mut rng = Rng(seed);
    for i in 0..mutants_per_file() {
        let m = mutant(&good, &mut rng, json);
        std::fs::write(file, &m).unwrap();
        for c in commands {
            let args: Vec<&Path> = c.iter().map(PathBuf::as_path).collect();
            let (code, err) = run_bounded(&args, scratch);
            let what = format!("{} mutant {i} (seed {seed})", file.display());
            judge(&format!("{what}, brink {args:?}"), code, &err, failures);
        }
    }
    std::fs::write(file, good).unwrap();
}

/// Issue 13: no mutant of the files brink reads back makes it panic or hang, and every
/// rejection is exit 2 with one `brink: ` line.
#[test]
fn mutated_inputs_never_panic_hang_or_say_more_than_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let r = results(tmp.path(), &t, "unknown");
    let p = |s: &str| PathBuf::from(s);
    let on_trace =
        vec![vec![p("show"), t.clone()], vec![p("show"), p("--json"), t.clone()], vec![p("verify"), t.clone()]];
    let on_results = vec![
        vec![p("report"), r.clone()],
        vec![p("report"), p("--json"), r.clone()],
        vec![p("diff"), r.clone(), r.clone()],
    ];
    // The good inputs are accepted as they are.
    let mut failures = Vec::new();
    for c in on_trace.iter().chain(&on_results) {
        let args: Vec<&Path> = c.iter().map(PathBuf::as_path).collect();
        let (code, err) = run_bounded(&args, tmp.path());
        assert!(matches!(code, Some(0 | 1)), "brink {args:?} on good input: {code:?} {err}");
    }
    let jobs: [(PathBuf, &Vec<Vec<PathBuf>>); 5] = [
        (t.join("meta.json"), &on_trace),
        (t.join("events.log"), &on_trace),
        (t.join("payloads.pack"), &on_trace),
        (r.join("summary.json"), &on_results),
        (r.join("states.jsonl"), &on_results),
    ];
    for (seed, (file, commands)) in jobs.iter().enumerate() {
        fuzz_file(file, commands, 0x9e37_79b9 + seed as u64, tmp.path(), &mut failures);
    }
    let first: Vec<&String> = failures.iter().take(10).collect();
    assert!(failures.is_empty(), "{} failing runs; the first:\n{first:#?}", failures.len());
}

/// Issue 13: the argument parser's errors are one `brink: ` line and exit 2; help and
/// the version still print to stdout and exit 0.
#[test]
fn usage_errors_are_one_line_and_help_still_prints() {
    one_line_error(&run(brink().arg("--bogus")), "unexpected argument '--bogus'");
    one_line_error(&run(brink().arg("show")), "<TRACE>");
    one_line_error(&run(&mut brink()), "a command is required");
    one_line_error(&run(brink().arg("shwo")), "tip: a similar subcommand exists: 'show'");
    one_line_error(&run(brink().args(["explore", "t", "-o", "r", "--strategy", "nope"])), "'nope'");
    for args in [&["--help"][..], &["--version"], &["explore", "--help"]] {
        let o = run(brink().args(args));
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(!o.stdout.is_empty() && o.stderr.is_empty(), "{args:?}");
    }
}

/// Issue 13: an empty or blank `--checker` would pass every state: refused.
#[test]
fn an_empty_checker_is_refused() {
    for c in ["", "  ", "\t"] {
        one_line_error(&run(brink().args(["explore", "t", "-o", "r", "--checker", c])), "a checker is a command");
    }
}

/// Issue 13: a diff of two workloads (another file system or other checkers) would call
/// every vulnerability fixed and new: refused, exit 2.
#[test]
fn diff_of_two_workloads_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let (a, b) = (results(tmp.path(), &t, "ext4"), results(tmp.path(), &t, "xfs"));
    one_line_error(&run(brink().arg("diff").arg(&a).arg(&b)), "different workloads (file system ext4 and xfs)");
    let s = b.join("summary.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&s).unwrap()).unwrap();
    v["fs"] = "ext4".into();
    v["checkers"] = json!(["./other-check.sh"]);
    std::fs::write(&s, v.to_string()).unwrap();
    one_line_error(&run(brink().arg("diff").arg(&a).arg(&b)), "different workloads (checkers");
    let o = run(brink().arg("diff").arg(&a).arg(&a));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Issue 13: checker messages reach the terminal report with their control characters
/// escaped.
#[test]
fn report_escapes_control_characters_in_checker_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let r = results(tmp.path(), &t, "unknown");
    let lines = [
        state("3", 3, &[], H1, None, None),
        state("3-1", 3, &[1], H2, Some("\u{1b}[2J\u{7}lost\rtxn 1"), None),
        state("7", 7, &[], H1, None, Some("3")),
    ];
    std::fs::write(r.join("states.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let o = run(brink().arg("report").arg(&r));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("\\x1b[2J\\x07lost\\rtxn 1"), "{out}");
}

/// Issue 13: `replay` onto a directory it cannot write names the path.
#[test]
fn replay_onto_a_read_only_directory_names_it() {
    if !crate::privileged("replay_onto_a_read_only_directory_names_it") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1M", "tmpfs"]).arg(&ro).status().unwrap();
    assert!(mounted.success());
    let out = ro.join("state");
    let o = run(brink().arg("replay").arg(&t).arg("3").arg("-o").arg(&out).arg("--no-mount"));
    let _ = Command::new("umount").arg(&ro).status();
    one_line_error(&o, &out.display().to_string());
}

/// Issue 13: a FIFO in place of any file brink reads (a trace's or a results
/// directory's) is refused at once, exit 2 with one line, never waited on; so is a
/// character device (`/dev/zero` would never end).
#[test]
fn a_fifo_or_device_in_place_of_any_input_file_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let r = results(tmp.path(), &t, "unknown");
    std::fs::write(r.join("minimal.jsonl"), "").unwrap();
    std::fs::write(r.join("trace.json"), "{}").unwrap();
    let p = |s: &str| PathBuf::from(s);
    let on_trace = vec![vec![p("show"), t.clone()], vec![p("verify"), t.clone()]];
    let on_results = vec![vec![p("report"), r.clone()], vec![p("diff"), r.clone(), r.clone()]];
    let mut failures = Vec::new();
    let files = [
        (t.join("meta.json"), &on_trace),
        (t.join("events.log"), &on_trace),
        (t.join("payloads.pack"), &on_trace),
        (r.join("summary.json"), &on_results),
        (r.join("states.jsonl"), &on_results),
        (r.join("minimal.jsonl"), &on_results),
        (r.join("trace.json"), &on_results),
    ];
    for (file, commands) in files {
        let good = std::fs::read(&file).unwrap();
        for kind in ["FIFO", "device"] {
            std::fs::remove_file(&file).unwrap();
            match kind {
                "FIFO" => nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap(),
                _ => std::os::unix::fs::symlink("/dev/zero", &file).unwrap(),
            }
            for c in commands {
                let args: Vec<&Path> = c.iter().map(PathBuf::as_path).collect();
                let (code, err) = run_bounded(&args, tmp.path());
                let what = format!("{} as a {kind}, brink {args:?}", file.display());
                if code != Some(2) {
                    failures.push(format!("{what}: exit {code:?}, not 2: {err}"));
                }
                judge(&what, code, &err, &mut failures);
            }
            std::fs::remove_file(&file).unwrap();
            std::fs::write(&file, &good).unwrap();
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Mutants of `states.partial.jsonl` resumed in a default test run (`FUZZ_ITERS` sets
/// more): each resume mounts states, so they cost about a second.
const RESUME_MUTANTS_DEFAULT: usize = 30;

/// The states whose verdicts in `resumed` differ from `whole`'s, apart from those the
/// partial log `partial` held a record for (resume keeps a record as it finds it) and
/// their duplicates.
fn verdicts_differ_beyond(partial: &[u8], whole: &Path, resumed: &Path) -> Vec<String> {
    use brink_explore::StateRecord;
    let read = |p: &Path| -> Vec<StateRecord> {
        let text = std::fs::read_to_string(p).unwrap();
        crate::explore::without_times(text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    };
    let held: std::collections::HashSet<String> = String::from_utf8_lossy(partial)
        .lines()
        .filter_map(|l| serde_json::from_str::<StateRecord>(l).ok())
        .map(|r| r.id)
        .collect();
    let whole = read(whole);
    let resumed = read(resumed);
    if whole.iter().map(|r| &r.id).ne(resumed.iter().map(|r| &r.id)) {
        let ids = |v: &[StateRecord]| v.iter().map(|r| r.id.clone()).collect::<std::collections::BTreeSet<_>>();
        let (w, r) = (ids(&whole), ids(&resumed));
        let only_whole: Vec<_> = w.difference(&r).collect();
        let only_resumed: Vec<_> = r.difference(&w).collect();
        return vec![format!(
            "other states than the whole run's: only in the whole run {only_whole:?}, only in the resumed one {only_resumed:?}; the mutant log:\n{}",
            String::from_utf8_lossy(partial)
        )];
    }
    let touched = |r: &StateRecord| held.contains(&r.id) || r.dup_of.as_ref().is_some_and(|d| held.contains(d));
    whole
        .iter()
        .zip(&resumed)
        .filter(|(w, r)| !touched(r) && w != r)
        .map(|(w, r)| format!("state {}: {:?}, not {:?}", r.id, r.verdict, w.verdict))
        .collect()
}

/// Issue 13: `explore --resume` over a mutated partial log (a real ext4 trace, a real
/// kernel) never panics or hangs; a rejected log is exit 2 with one line naming it; an
/// accepted one finishes the run with the uninterrupted run's verdicts for every state
/// it did not hold a (mutated but well-formed) verdict for.
#[test]
fn resume_over_a_mutated_partial_log_never_panics_hangs_or_says_more_than_one_line() {
    if !crate::privileged("resume_over_a_mutated_partial_log_never_panics_hangs_or_says_more_than_one_line") {
        return;
    }
    let s = crate::Scratch::new();
    let t = s.path("t");
    let script = r#"for i in 1 2 3; do echo $i > f$i; sync f$i; echo $i > "$BRINK_MARK"; done"#;
    let o = run(s.record(&["-o"]).arg(&t).args(["--", "sh", "-c", script]));
    assert!(o.status.success(), "{}", stderr(&o));
    let explore = |out: &Path, resume: bool| {
        let mut args: Vec<PathBuf> = ["explore", "--jobs", "1", "--checker", "cat f1 >/dev/null 2>&1 || true", "-o"]
            .iter()
            .map(PathBuf::from)
            .collect();
        args.push(out.to_path_buf());
        args.push(t.clone());
        if resume {
            args.push("--resume".into());
        }
        args
    };
    let whole = s.path("whole");
    let args = explore(&whole, false);
    let (code, err) = run_bounded(&args.iter().map(PathBuf::as_path).collect::<Vec<_>>(), s.dir.path());
    assert_eq!(code, Some(0), "{err}");
    let good = std::fs::read(whole.join("states.jsonl")).unwrap();
    let runs = std::env::var("FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(RESUME_MUTANTS_DEFAULT);
    let mut rng = Rng(0x5eed_0013);
    let mut failures = Vec::new();
    for i in 0..runs {
        let r = s.path(&format!("r{i}"));
        std::fs::create_dir(&r).unwrap();
        std::fs::copy(whole.join("run.json"), r.join("run.json")).unwrap();
        let m = mutant(&good, &mut rng, true);
        std::fs::write(r.join("states.partial.jsonl"), &m).unwrap();
        let args = explore(&r, true);
        let (code, err) = run_bounded(&args.iter().map(PathBuf::as_path).collect::<Vec<_>>(), s.dir.path());
        judge(&format!("partial-log mutant {i}"), code, &err, &mut failures);
        if matches!(code, Some(0 | 1)) {
            let differ = verdicts_differ_beyond(&m, &whole.join("states.jsonl"), &r.join("states.jsonl"));
            failures.extend(differ.into_iter().map(|d| format!("partial-log mutant {i}: {d}")));
        }
        std::fs::remove_dir_all(&r).unwrap();
    }
    crate::assert_no_mounts_or_loops(&s);
    assert!(failures.is_empty(), "{failures:#?}");
}
