//! Errors of the calls crate: a missing or unusable strace, and strace output that cannot
//! be read, each naming the line.

use std::path::PathBuf;

/// What went wrong tracing a workload or reading its trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallsError {
    /// strace is not installed (or not at the configured path).
    #[error("cannot run {}: {source}; install strace (Debian: apt-get install strace)", program.display())]
    StraceMissing { program: PathBuf, source: std::io::Error },
    /// strace runs but cannot do what brink needs.
    #[error("{}: {problem}", program.display())]
    StraceUnusable { program: PathBuf, problem: String },
    /// There is no workload to trace.
    #[error("the workload command is empty")]
    EmptyWorkload,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A line of the strace output is longer than [`crate::LINE_BYTES_MAX`].
    #[error("strace output line {line}: longer than the limit of {max} bytes")]
    LineTooLong { line: u64, max: usize },
    /// A line of the strace output is none of the forms strace prints.
    #[error("strace output line {line}: {what}")]
    Malformed { line: u64, what: String },
    /// More calls are in progress at once than [`crate::PENDING_MAX`], or more processes
    /// ended than [`crate::PROCESS_ENDS_MAX`].
    #[error("strace output line {line}: more than {max} {what}")]
    TooMany { line: u64, max: usize, what: &'static str },
}

/// Longest quotation from the input in an error message, in characters.
pub const ERROR_DETAIL_CHARS_MAX: usize = 200;

/// `text` cut to [`ERROR_DETAIL_CHARS_MAX`] characters, with "…" where it was cut.
pub(crate) fn clip(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(ERROR_DETAIL_CHARS_MAX).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}
