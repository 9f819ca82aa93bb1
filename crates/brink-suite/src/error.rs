//! The suite's errors, one enum per concern: a manifest or a folder of workloads that
//! cannot be used ([`ManifestError`]), and a run of workload modes that cannot go on
//! ([`RunError`]). Messages name manifest keys and settings in words, never a flag of the
//! binary: a manifest's user has no flags, and the binary says which flag sets what.

use std::path::PathBuf;

/// A manifest, or a folder of workloads, that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file or folder that cannot be read (why is the source, as in the explorer's
    /// errors: one line reads "PATH: why").
    #[error("{}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A manifest (or folder) that can be read but says something wrong.
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: ManifestProblem },
}

/// What is wrong with a manifest or a folder of workloads. Where another crate rejects a
/// value (a file system, a size, mount options, an injection), its message is kept as
/// text: it is the user's answer, not a cause to walk.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestProblem {
    /// Not TOML, or keys the manifest does not know (its parser's message).
    #[error("{0}")]
    Syntax(String),
    #[error("no [[mode]]: name at least one mode with its expected outcome")]
    NoModes,
    #[error("no checkers: name at least one (\"fsck\" is built in)")]
    NoCheckers,
    #[error("checker_timeout {0} must be between 0 and {max} seconds", max = brink_explore::defaults::CHECKER_TIMEOUT_MAX.as_secs())]
    CheckerTimeout(f64),
    #[error("two modes are named '{0}'")]
    DuplicateMode(String),
    #[error("mode name '{0}' must be non-empty, without '/', not starting with '.'")]
    ModeName(String),
    #[error("{0}")]
    FileSystem(String),
    #[error("{0}")]
    Size(String),
    #[error("mode '{mode}': {message}")]
    MountOptions { mode: String, message: String },
    #[error("mode '{0}': a message is only meaningful with expect = \"violations\"")]
    MessageWhenClean(String),
    #[error("mode '{mode}': {message}")]
    Injection { mode: String, message: String },
    #[error("mode '{mode}': {error}")]
    Strategy { mode: String, error: UnknownStrategy },
    #[error("mode '{mode}': logical: {message}")]
    Apm { mode: String, message: String },
    #[error("no workload named '{name}' in {}", root.display())]
    NoSuchWorkload { name: String, root: PathBuf },
    #[error("no workload folders (with a workload.toml) here")]
    NoWorkloads,
}

/// A strategy name a manifest cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy '{0}': use exhaustive, prefix, omit-one, omit-K, sample-N or sample-N-seed-S")]
pub struct UnknownStrategy(pub String);

/// A run of workload modes that cannot go on. A mode's own failure becomes a mismatch
/// row (see [`crate::run::run_workloads`]); these stop the run, or come before it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Record(#[from] brink_record::RecordError),
    #[error(transparent)]
    Explore(#[from] brink_explore::ExploreError),
    #[error(transparent)]
    Logical(#[from] brink_logical::LogicalError),
    #[error(transparent)]
    Results(#[from] brink_explore::ResultsError),
    #[error(transparent)]
    Trace(#[from] brink_trace::TraceError),
    /// An output folder that exists: a run never mixes its results with another's.
    #[error("{} already exists; choose a new directory", .0.display())]
    Exists(PathBuf),
    #[error("creating {}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("{}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// An exploration that stopped before its end (a time budget, a signal).
    #[error("stopped by {why}; the results so far are in {}", dir.display())]
    Stopped { why: String, dir: PathBuf },
    /// A trace (reused with `--traces`) that holds no workload: not made by `record`.
    #[error("{} holds no recorded workload (was it made by brink record?)", trace.display())]
    NotRecorded { trace: PathBuf },
    /// A mode asked for by name that the workload does not have.
    #[error("{workload} has no mode '{name}' (it has: {})", modes.join(", "))]
    NoSuchMode { workload: String, name: String, modes: Vec<String> },
    /// A fault sweep whose workload issues no request of the kind swept.
    #[error("the workload issued no {what} while it ran: nothing to sweep")]
    NothingToSweep { what: String },
    /// A command line that cannot be written as one shell command.
    #[error(transparent)]
    Quote(#[from] shlex::QuoteError),
}

impl RunError {
    /// The signal that stopped a recording, if that is what this is.
    pub fn interrupted(&self) -> Option<i32> {
        match self {
            RunError::Record(brink_record::RecordError::Interrupted(signal)) => Some(*signal),
            _ => None,
        }
    }
}

/// An error and its causes on one line, as "what: why: …", for a table cell. A cause
/// whose text the message before it already holds is skipped (some libraries spell their
/// cause out in their message, others leave it to `source()`), as the binary's one-line
/// errors do.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.last().is_some_and(|m| m.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ").replace('\n', " ")
}
