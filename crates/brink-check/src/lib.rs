//! The checker protocol, and running checkers within limits.
//!
//! # Protocol (wire format; variables may be added)
//! A checker is any executable, run once per crash state through `sh -c CMD` with:
//! - working directory and `BRINK_STATE_ROOT`: the recovered file system, mounted;
//! - `BRINK_MARKS`: a file with the marks acknowledged before the crash, one per line;
//! - `BRINK_STATE_ID`, `BRINK_TRACE` (the trace directory), `BRINK_IMAGE` (the block
//!   device holding the recovered image).
//!
//! Exit 0: consistent. Exit 1: violation, and the first line of stdout says what is
//! wrong. Any other exit, a signal, or running past the time limit: a *checker failure*,
//! reported apart from violations. The last stdout line may be one JSON object with
//! details. A checker may modify the state: each state is private to its run.
//!
//! Runs are contained and bounded. Every process a checker starts, daemons that leave its
//! process group included, is stopped when the checker exits, at the time limit, or when
//! brink is interrupted: SIGTERM, up to `STOP_GRACE` to exit, then SIGKILL. A checker
//! that must leave a server running cannot: stop it before exiting, or let brink stop
//! it. Of each output stream the first `OUTPUT_BYTES_MAX` and the last
//! `OUTPUT_TAIL_BYTES_MAX` bytes are kept, in memory only.
//!
//! # Use
//! Hold one [`Jail`] for a whole exploration (`Jail::new().with_interrupt(flag)`), print
//! its [`Jail::fallback_note`] once if it has one, and run every checker through
//! [`Jail::run_checker`] and [`Jail::fsck`]. Each returns a [`CheckRun`]: the outcome,
//! whether an interrupt cut it short (then it is no verdict), and [`Stopped`]: how many
//! processes the checker left behind and whether any survived being killed (then the
//! state's mount may still be busy).

#![forbid(unsafe_code)]

mod capture;
mod contain;
mod fsck;
mod run;

pub use contain::{CgroupUnavailable, Jail, KILL_WAIT_MAX, STOP_GRACE, STOP_GRACE_INTERRUPTED, Stopped};
pub use fsck::fsck_command;
pub use run::{CheckEnv, CheckRun, Finished, Limits, Protocol, RunError, error_line, failure, write_marks};

use serde::{Deserialize, Serialize};

/// What one checker said about one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Consistent,
    Violation,
    /// The checker itself failed (crashed, hung, missing): not a verdict on the state.
    CheckerFailure,
}

impl Verdict {
    /// As the wire formats spell it (`states.jsonl`, `summary.json`): `checker-failure`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Consistent => "consistent",
            Verdict::Violation => "violation",
            Verdict::CheckerFailure => "checker-failure",
        }
    }

    /// As a sentence spells it: `checker failure`.
    pub fn in_words(&self) -> &'static str {
        match self {
            Verdict::CheckerFailure => "checker failure",
            v => v.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The checker's name as given by the user (`fsck` for the built-in).
    pub checker: String,
    pub verdict: Verdict,
    /// First stdout line for a violation; what went wrong for a checker failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The JSON object on the checker's last stdout line, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    pub ms: u64,
}

/// How long a checker may run on one state when no limit is given; past it the checker's
/// processes are stopped and the run is a checker failure.
pub const TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes kept from the start of each output stream of a checker (a violation's message
/// is its first stdout line).
pub const OUTPUT_BYTES_MAX: u64 = 64 << 10;

/// Bytes kept from the end of each output stream past the first `OUTPUT_BYTES_MAX` (the
/// details object is the last stdout line, a failure's reason the last stderr line).
pub const OUTPUT_TAIL_BYTES_MAX: u64 = 16 << 10;

/// The class of a checker message: the message with every run of digits replaced by
/// `#`, so "acknowledged 'txn 17' lost: db holds txns up to 16" and the same failure of
/// txn 3 fall in one class. Vulnerabilities are grouped by it.
pub fn message_class(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The class of the first violation among a state's checks, if any: its message class,
/// prefixed `fsck: ` for the built-in checker. Not the checker's command: it names a path
/// that differs between checkouts, and a class must not.
pub fn violation_class(checks: &[CheckOutcome]) -> Option<String> {
    checks.iter().find(|c| c.verdict == Verdict::Violation).map(|c| {
        let class = message_class(&c.message);
        if c.checker == "fsck" { format!("fsck: {class}") } else { class }
    })
}

#[cfg(test)]
mod class_tests {
    #[test]
    fn digits_collapse() {
        assert_eq!(
            super::message_class("acknowledged 'txn 17' lost: holds 0..16"),
            "acknowledged 'txn #' lost: holds #..#"
        );
    }
}
