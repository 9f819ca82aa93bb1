//! Recorders: everything that turns block I/O into a brink trace.
//!
//! - [`record`]: the default recorder. brink is the disk: it serves the image as one file
//!   in its own FUSE mount, puts a loop device on that file, makes and mounts the file
//!   system there, runs the workload, and logs every write, flush and discard the FUSE
//!   daemon completes, with marks from the workload interleaved in exact order.
//! - [`import`]: readers of other block-write logs (dm-log-writes, QEMU `blklogwrites`).
//!
//! Of the recorders, only [`record`] touches `/dev/fuse`. (The explorer serves crash
//! states through a FUSE mount of its own, its `slots`.)

mod calls;
mod child;
mod contain;
mod disk;
pub mod import;
mod inject;
mod logger;
mod recorder;

pub use calls::{CallTracer, Syscalls};
pub use child::Interrupt;
pub use inject::{FileTargetError, Injection, InjectionSpecError, MetadataError, Target};
pub use recorder::{Progress, RecordConfig, RecordOutcome, record};

use brink_blockdev::{BlockdevError, FsKind};

/// The image size a recording gets when none is given: large enough for ext4 with a
/// journal, small enough that exploring its crash states stays cheap.
pub const IMAGE_BYTES_DEFAULT: u64 = 64 << 20;
use brink_trace::TraceError;

/// Why a recording or an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The image is smaller than mkfs accepts for the file system.
    #[error("image size {} MiB is too small for {fs} (at least {} MiB): raise the image size", size >> 20, min >> 20)]
    ImageTooSmall { size: u64, fs: FsKind, min: u64 },
    /// The extra mkfs arguments do not split as a shell would split them.
    #[error("cannot parse the mkfs options '{0}': unbalanced quotes")]
    MkfsOptions(String),
    /// The file system did not mount with the mount options given.
    #[error("{source} (check the mount options; the kernel log, dmesg, says more)")]
    Mount { source: BlockdevError },
    /// A `file:PATH` injection cannot be aimed at the base image.
    #[error("injection {injection}: {source}")]
    Injection { injection: String, source: inject::FileTargetError },
    /// The workload's system calls cannot be recorded (no usable strace) or read back.
    #[error(
        "recording the workload's system calls: {source}{kept} (install strace, or turn the system-call recording off)"
    )]
    Calls {
        source: brink_calls::CallsError,
        /// Where strace's output was kept for a bug report, in words (`""` if not kept).
        kept: String,
    },
    /// The kernel tracer of the system calls did not start or could not be read back.
    #[error(
        "recording the workload's system calls: {0} (record them with strace instead, or turn the system-call recording off)"
    )]
    Tracer(String),
}

/// A recording setting that an error asks the user to change. Messages name it in words
/// ([`Setting::words`]); a front end that sets it another way (a command-line flag, a
/// manifest key) can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    ImageSize,
    MkfsOptions,
    MountOptions,
    SetupCommand,
    /// Recording the workload's system calls (on by default).
    Syscalls,
}

impl Setting {
    /// How messages name the setting.
    pub fn words(self) -> &'static str {
        match self {
            Setting::ImageSize => "the image size",
            Setting::MkfsOptions => "the mkfs options",
            Setting::MountOptions => "the mount options",
            Setting::SetupCommand => "the setup command",
            Setting::Syscalls => "turn the system-call recording off",
        }
    }
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
    /// The setting this error asks the user to change, if it names one.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            RecordError::ImageTooSmall { .. } => Some(Setting::ImageSize),
            RecordError::MkfsOptions(_) => Some(Setting::MkfsOptions),
            RecordError::Mount { .. } => Some(Setting::MountOptions),
            RecordError::Injection { source: inject::FileTargetError::NoDataBlocks { .. }, .. } => {
                Some(Setting::SetupCommand)
            }
            RecordError::Calls { .. } | RecordError::Tracer(_) => Some(Setting::Syscalls),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RecordError::Io { what: what.into(), source }
    }
}
