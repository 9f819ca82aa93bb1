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
//! Runs are bounded: the checker's process group is killed at the time limit, and at
//! most `OUTPUT_BYTES_MAX` of each output stream is read.

#![forbid(unsafe_code)]

mod fsck;
mod run;

pub use fsck::{fsck, fsck_command};
pub use run::{CheckEnv, Finished, Limits, RunError, failure, run_bounded, run_checker, write_marks};

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
/// process group is killed and the run is a checker failure.
pub const TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes of each output stream read from a checker.
pub const OUTPUT_BYTES_MAX: u64 = 64 << 10;

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
