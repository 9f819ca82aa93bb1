//! One mode's outcome against its expectation, and the suite's table.
//!
//! The rules, strictest reading first:
//! - a workload that did not exit 0 is a mismatch: its trace is not the workload the
//!   manifest describes (a missing program looks exactly like a clean run);
//! - an incomplete exploration or any checker failure is a mismatch: a checker that
//!   crashed or hung vouches for nothing, in either direction;
//! - `clean` needs zero violations; `violations` needs at least one, and when the
//!   manifest gives a `message`, one whose checker message contains it (so the suite
//!   proves the bug was seen for the right reason, not that something failed);
//! - with `file_system_findings`, `clean` counts only states that an application's
//!   checker failed: a state that does not mount or fails fsck is the file system's
//!   own finding (its metadata torn under `--torn`), shown but not judged.

use std::fmt::Write as _;
use std::path::PathBuf;

use brink_check::Verdict;
use brink_explore::{StateRecord, Summary};
use serde::{Deserialize, Serialize};

use crate::manifest::{Expect, Mode};
use crate::verdict::{NoCrash, RowVerdict};

/// How a mode came out against its expectation (spelled by [`crate::verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Outcome {
    /// As expected.
    Pass,
    /// Not as expected (`why` says how).
    Mismatch,
    /// Nothing was expected (ad-hoc runs such as `brink ext4-modes`).
    Reported,
}

/// A violating state to show: its id and the first violation message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub state: String,
    pub message: String,
}

/// One line of the suite's table (`suite.json` holds a list of them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub mode: String,
    pub fs: String,
    pub mount_opts: String,
    pub strategy: String,
    /// Why the strategy is not the one asked for (a `--full` run over its bound).
    pub note: String,
    pub model: String,
    pub states: u64,
    pub unique: u64,
    pub violations: u64,
    pub checker_failures: u64,
    pub expected: Option<Expect>,
    pub outcome: Outcome,
    /// For a mismatch, why; otherwise empty.
    pub why: String,
    pub example: Option<Example>,
    /// The verdict on the disk as the recording left it, without a crash.
    #[serde(default)]
    pub no_crash: Option<Verdict>,
    /// How the workload ended (`exit 0`, `signal 9`) and the last line it wrote to
    /// standard error.
    #[serde(default)]
    pub exit: String,
    #[serde(default)]
    pub said: String,
    pub record_s: f64,
    pub explore_s: f64,
    pub trace: PathBuf,
    pub results: PathBuf,
}

impl Row {
    pub fn seconds(&self) -> f64 {
        self.record_s + self.explore_s
    }
}

/// What judging needs of an exploration's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Explored {
    pub strategy: String,
    pub model: String,
    /// States generated, and the unique ones among them.
    pub states: u64,
    pub unique: u64,
    pub violations: u64,
    pub checker_failures: u64,
    /// False when the exploration stopped before its end, `stopped_by` saying why.
    pub complete: bool,
    pub stopped_by: Option<String>,
    /// The verdict on the disk as the recording left it, if it was checked.
    pub no_crash: Option<Verdict>,
}

impl From<&Summary> for Explored {
    fn from(s: &Summary) -> Explored {
        Explored {
            strategy: s.strategy.clone(),
            model: s.model.clone(),
            states: s.states_generated,
            unique: s.states_unique,
            violations: s.violations,
            checker_failures: s.checker_failures,
            complete: s.complete,
            stopped_by: s.stopped_by.clone(),
            no_crash: s.no_crash.as_ref().map(|n| n.verdict.clone()),
        }
    }
}

/// What one mode's run produced.
#[derive(Debug)]
pub struct RunFacts<'a> {
    pub workload: &'a str,
    pub mode: &'a Mode,
    /// The workload's exit, as `brink show` prints it, and its exit code (if it exited).
    pub exit: (String, Option<i32>),
    pub workload_stderr: &'a str,
    pub explored: Explored,
    pub records: &'a [StateRecord],
    pub record_s: f64,
    pub explore_s: f64,
    pub trace: PathBuf,
    pub results: PathBuf,
    pub note: String,
}

/// The file system's own checks: recovery, mount and fsck.
const FILE_SYSTEM_CHECKERS: [&str; 3] = ["recovery", "mount", "fsck"];

/// Whether a check is one of the application's checkers (not the file system's own).
fn by_application(c: &brink_check::CheckOutcome) -> bool {
    !FILE_SYSTEM_CHECKERS.contains(&c.checker.as_str())
}

/// Violating states that some application checker failed (not only the file system's).
fn application_violations(records: &[StateRecord]) -> u64 {
    let failed = |c: &brink_check::CheckOutcome| c.verdict == Verdict::Violation && by_application(c);
    records.iter().filter(|r| r.verdict == Verdict::Violation && r.checks.iter().any(failed)).count() as u64
}

/// Compare a run with the mode's expectation.
pub fn judge(f: &RunFacts) -> Row {
    let s = &f.explored;
    let violating = f.records.iter().filter(|r| r.verdict == Verdict::Violation);
    let messages = || {
        violating.clone().flat_map(|r| r.checks.iter().filter(|c| c.verdict == Verdict::Violation).map(move |c| (r, c)))
    };
    let wanted = f.mode.message.as_deref();
    // Prefer an example whose message is the one the manifest asks for, then one of the
    // application's checkers.
    let example = messages()
        .find(|(_, c)| wanted.is_none_or(|w| c.message.contains(w)) && by_application(c))
        .or_else(|| messages().find(|(_, c)| wanted.is_none_or(|w| c.message.contains(w))))
        .or_else(|| messages().next())
        .map(|(r, c)| Example { state: r.id.clone(), message: c.message.clone() });
    let said = f.workload_stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    let why = if let Some(code) = f.mode.exit_code.filter(|c| f.exit.1 != Some(*c)) {
        format!("the workload ended with {}, expected exit {code}: {said}", f.exit.0)
    } else if !s.complete {
        format!("exploration incomplete: stopped by {}", s.stopped_by.as_deref().unwrap_or("?"))
    } else if s.checker_failures > 0 {
        let m = f.records.iter().flat_map(|r| &r.checks).find(|c| c.verdict == Verdict::CheckerFailure);
        format!("{} checker failures: {}", s.checker_failures, m.map_or("", |c| c.message.as_str()))
    } else {
        let judged = if f.mode.fs_findings_allowed { application_violations(f.records) } else { s.violations };
        match f.mode.expect {
            None => String::new(),
            Some(Expect::Clean) if judged > 0 => format!(
                "expected clean, found {} violations: {}",
                judged,
                example.as_ref().map_or("", |e| e.message.as_str())
            ),
            Some(Expect::Violations) if s.violations == 0 => "expected violations, found none".into(),
            Some(Expect::Violations) if wanted.is_some_and(|w| messages().all(|(_, c)| !c.message.contains(w))) => {
                format!("no violation message contains '{}'", wanted.unwrap_or_default())
            }
            Some(_) => String::new(),
        }
    };
    let outcome = match (f.mode.expect, why.is_empty()) {
        (_, false) => Outcome::Mismatch,
        (None, true) => Outcome::Reported,
        (Some(_), true) => Outcome::Pass,
    };
    Row {
        workload: f.workload.to_string(),
        mode: f.mode.name.clone(),
        fs: f.mode.fs.name().to_string(),
        mount_opts: f.mode.mount_opts.clone(),
        strategy: s.strategy.clone(),
        note: f.note.clone(),
        model: s.model.clone(),
        states: s.states,
        unique: s.unique,
        violations: s.violations,
        checker_failures: s.checker_failures,
        expected: f.mode.expect,
        outcome,
        why,
        example,
        no_crash: s.no_crash.clone(),
        exit: f.exit.0.clone(),
        said,
        record_s: f.record_s,
        explore_s: f.explore_s,
        trace: f.trace.clone(),
        results: f.results.clone(),
    }
}

impl Row {
    /// A mode that could not be recorded or explored: a mismatch saying why.
    pub fn failed(workload: &str, mode: &Mode, why: String, trace: PathBuf, results: PathBuf) -> Row {
        Row {
            workload: workload.to_string(),
            mode: mode.name.clone(),
            fs: mode.fs.name().to_string(),
            mount_opts: mode.mount_opts.clone(),
            strategy: mode.strategy.name(),
            note: String::new(),
            model: String::new(),
            states: 0,
            unique: 0,
            violations: 0,
            checker_failures: 0,
            expected: mode.expect,
            outcome: Outcome::Mismatch,
            why,
            example: None,
            no_crash: None,
            exit: String::new(),
            said: String::new(),
            record_s: 0.0,
            explore_s: 0.0,
            trace,
            results,
        }
    }
}

fn expected(e: Option<Expect>) -> &'static str {
    e.map_or("-", Expect::as_str)
}

impl Row {
    /// The no-crash column: does the disk the workload left behind already break it?
    pub fn no_crash_cell(&self) -> &'static str {
        NoCrash::from(self.no_crash.as_ref()).as_str()
    }

    /// The table's verdict on this row.
    pub fn verdict(&self) -> RowVerdict {
        RowVerdict::of(self.outcome, self.violations)
    }

    /// What a reader needs to know about the row: a mismatch's reason, or an example
    /// violation and its state.
    pub fn what(&self) -> String {
        if self.outcome == Outcome::Mismatch {
            self.why.clone()
        } else {
            self.example.as_ref().map_or(String::new(), |e| format!("`{}`: {}", e.state, e.message))
        }
    }
}

/// The table for a terminal, then one line per row that needs words: a mismatch's
/// reason, or what a violating mode lost and the command that replays it.
pub fn render_text(rows: &[Row]) -> String {
    let ww = rows.iter().map(|r| r.workload.len()).max().unwrap_or(0).max(8);
    let mw = rows.iter().map(|r| r.mode.len()).max().unwrap_or(0).max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<ww$}  {:<mw$}  {:>7} {:>7} {:>10}  {:<9}  {:<10}  {:<8} {:>7}",
        "workload", "mode", "states", "unique", "violations", "no-crash", "expected", "verdict", "seconds"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<ww$}  {:<mw$}  {:>7} {:>7} {:>10}  {:<9}  {:<10}  {:<8} {:>7.1}",
            r.workload,
            r.mode,
            r.states,
            r.unique,
            r.violations,
            r.no_crash_cell(),
            expected(r.expected),
            r.verdict(),
            r.seconds()
        );
    }
    let mut notes = String::new();
    for r in rows {
        if r.outcome == Outcome::Mismatch {
            let _ = writeln!(notes, "  MISMATCH {} {}: {}", r.workload, r.mode, r.why);
        } else if let Some(e) = &r.example {
            let _ = writeln!(notes, "  {} {}: {}", r.workload, r.mode, e.message);
            if e.state.starts_with('L') {
                // A logical state is a tree, not an image: its report explains it.
                let _ = writeln!(notes, "    report: brink report {}", r.results.display());
            } else {
                let _ = writeln!(notes, "    replay: brink replay {} {} -o DIR", r.trace.display(), e.state);
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

/// The same table in Markdown, with the strategy and an example message per row.
pub fn render_markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | mode | strategy | states | unique | violations | no crash | expected | verdict | seconds | example violation |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|---|---|---:|---|");
    for r in rows {
        let what = r.what();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            r.workload,
            r.mode,
            if r.note.is_empty() { r.strategy.clone() } else { format!("{} ({})", r.strategy, r.note) },
            r.states,
            r.unique,
            r.violations,
            r.no_crash_cell(),
            expected(r.expected),
            r.verdict(),
            r.seconds(),
            what.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests;
