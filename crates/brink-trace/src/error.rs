//! Errors of the trace crate: each names the file and, where it applies, the byte offset,
//! so a user can tell a truncated download from a bug.

use std::path::PathBuf;

use crate::event::{EventDecodeError, EventError};

/// What went wrong reading or writing a trace, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a brink trace: {reason}", path.display())]
    NotATrace { path: PathBuf, reason: String },
    #[error("{}: trace format version {found} is newer than this brink reads ({supported}); upgrade brink", path.display())]
    NewerVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{}: offset {offset}: truncated: {what}", path.display())]
    Truncated { path: PathBuf, offset: u64, what: String },
    #[error("{}: offset {offset}: corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, offset: u64, what: String },
    /// Event record `index`, at byte `offset` of `events.log`, passes its checksum but
    /// does not decode.
    #[error("{}: offset {offset}: corrupt: event {index} does not decode: {source}", path.display())]
    Undecodable { path: PathBuf, offset: u64, index: u64, source: EventDecodeError },
    /// Event `index` decodes but cannot be in this trace.
    #[error("{}: offset {offset}: corrupt: event {index}: {source}", path.display())]
    BadEvent { path: PathBuf, offset: u64, index: u64, source: EventError },
    /// `events.log` goes on after the number of events `meta.json` gives.
    #[error("{}: {bytes} trailing bytes after the last event at offset {offset}", path.display())]
    TrailingBytes { path: PathBuf, offset: u64, bytes: u64 },
    #[error("{}: offset {offset}: missing payload: the pack ends at {pack_len}", path.display())]
    MissingPayload { path: PathBuf, offset: u64, pack_len: u64 },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    /// A file of the trace is a FIFO, a device, a directory…: refused before it is read,
    /// since reading it could block or never end.
    #[error("{}: not a regular file but a {kind}", path.display())]
    NotRegularFile { path: PathBuf, kind: &'static str },
    /// A file read whole (`meta.json`) is larger than any brink writes.
    #[error("{}: larger than the limit of {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    /// `base.img` is not the disk the trace was recorded on: replaying onto it would give
    /// states the workload never saw.
    #[error("{}: the base image's digest is {got}, but meta.json records {want}; the trace is damaged", path.display())]
    BaseImageDigest { path: PathBuf, got: String, want: String },
}

impl TraceError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TraceError::Io { path: path.into(), source }
    }
}

/// Longest quotation from the input (a parser's complaint that quotes a value) in an
/// error message, in characters: a message is one line a user reads, whatever the input.
pub const ERROR_DETAIL_CHARS_MAX: usize = 300;

/// `text` cut to [`ERROR_DETAIL_CHARS_MAX`] characters, with "…" where it was cut.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(ERROR_DETAIL_CHARS_MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Attach a path to an I/O result.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, TraceError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, TraceError> {
        self.map_err(|e| TraceError::io(path, e))
    }
}
