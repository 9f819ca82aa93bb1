//! Why a logical exploration could not run or finish: one error type for the crate, so
//! the command line can name flags and files.

use std::path::PathBuf;

use brink_explore::ResultsError;
use brink_trace::TraceError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogicalError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// The verdict cache could not be opened or written.
    #[error(transparent)]
    Cache(#[from] brink_explore::ExploreError),
    /// The trace was recorded without the workload's calls (`brink record` without
    /// `--calls`, an import, or an older brink): there is nothing to model.
    #[error("the trace {} holds no system calls: record it with the calls to explore it logically", trace.display())]
    NoCalls { trace: PathBuf },
    /// A file system whose base image the logical explorer cannot read.
    #[error(
        "the trace's file system is '{fs}': the logical explorer reads the initial files of ext4, btrfs and xfs images only"
    )]
    UnsupportedFs { fs: String },
    #[error("{prog} is not installed (neither on the PATH nor in an sbin directory): install {package}")]
    MissingTool { prog: &'static str, package: &'static str },
    /// The base image's files could not be extracted (debugfs, btrfs restore, a mount).
    #[error("cannot extract the files of {}: {why}", image.display())]
    Extract { image: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The built-in fsck checks a disk image: there is none at the logical level.
    #[error("the fsck checker checks a disk image, and a logical state has none: pass --checker CMD")]
    Fsck,
    #[error("no checker given")]
    NoCheckers,
    #[error(
        "the {strategy} space of {apm} has more than {max} states: raise the limit, or use alice, prefix, omit-one or sample"
    )]
    TooManyStates { apm: String, strategy: String, max: u128 },
    /// A signal (its number) stopped the work.
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

impl LogicalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LogicalError {
        LogicalError::Io { path: path.into(), source }
    }
}
