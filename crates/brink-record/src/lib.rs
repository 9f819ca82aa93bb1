//! Recorders: everything that turns block I/O into a brink trace.
//!
//! - [`record`]: the default recorder. brink is the disk: it serves the image as one file
//!   in its own FUSE mount, puts a loop device on that file, makes and mounts the file
//!   system there, runs the workload, and logs every write, flush and discard the FUSE
//!   daemon completes, with marks from the workload interleaved in exact order.
//! - [`import`]: readers of other block-write logs (dm-log-writes, QEMU `blklogwrites`).
//!
//! Nothing else in brink touches `/dev/fuse`.

mod child;
mod disk;
pub mod import;
mod inject;
mod logger;
mod recorder;

pub use child::Interrupt;
pub use inject::{Injection, Target};
pub use recorder::{Progress, RecordConfig, RecordOutcome, record};

use brink_blockdev::BlockdevError;
use brink_trace::TraceError;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Something about the machine or the request that the user must change.
    #[error("{0}")]
    Precondition(String),
    /// A step of the recording failed (mkfs, setup, mount, the FUSE daemon).
    #[error("{0}")]
    Failed(String),
    /// Bad input file (a corrupt or truncated log), with where.
    #[error("{}: offset {offset}: {what}", path.display())]
    BadInput { path: std::path::PathBuf, offset: u64, what: String },
    #[error("interrupted by {}", signal_name(*.0))]
    Interrupted(i32),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Blockdev(#[from] BlockdevError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

impl RecordError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RecordError::Io { what: what.into(), source }
    }
}
