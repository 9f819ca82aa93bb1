//! Trace verification: replaying every event of a trace onto its base image must give
//! the disk as it stood when recording ended. This checks the recorder (no request lost,
//! none out of order) and the trace (every payload there and intact) end to end, against
//! the final image digest the recorder stored in `meta.json`. The system calls, if the
//! trace holds them, are read back in full too.

use std::fs::OpenOptions;
use std::path::Path;

use crate::error::IoContext;
use crate::{TraceError, TraceReader, image};

/// What replaying a whole trace gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Events replayed (all of them).
    pub events: u64,
    /// Content digest (`image::digest_file`) of the replayed image.
    pub digest: String,
    /// True if the trace holds a final image digest, which `digest` then equals; false
    /// if it holds none (an import whose source did not know it), so nothing was compared.
    pub compared: bool,
    /// System calls read back (each record and its data's chunks checked), if the trace
    /// holds them.
    pub calls: Option<u64>,
}

/// Why a trace does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The trace cannot be read, or the replay's scratch image cannot be written.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// No scratch directory for the replayed image.
    #[error("cannot create a scratch directory for the replayed image: {source}")]
    Scratch { source: std::io::Error },
    /// The replay gives another disk than the one recorded.
    #[error("replaying {events} events gives digest {got}, but the recorded final image has {want}")]
    Mismatch { events: u64, got: String, want: String },
}

/// Check the base image of the trace in `dir` against the digest its `meta.json`
/// records ([`TraceReader::check_base_image`]), for callers that hold no reader.
pub fn check_base_image(dir: &Path) -> Result<(), TraceError> {
    TraceReader::open(dir)?.check_base_image()
}

/// Check the base image of the trace in `dir` against its recorded digest, then replay
/// every event onto a sparse copy of it (in a temporary directory, removed afterwards)
/// and compare the result's digest with the recorded final image digest.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let reader = TraceReader::open(dir)?;
    reader.check_base_image()?;
    let tmp =
        tempfile::Builder::new().prefix("brink-verify-").tempdir().map_err(|source| VerifyError::Scratch { source })?;
    let img_path = tmp.path().join("image");
    image::copy_sparse(&reader.base_image_path(), &img_path)?;
    let img = OpenOptions::new().read(true).write(true).open(&img_path).at(&img_path)?;
    let events = image::replay(&reader, &img, &img_path, None)?;
    drop(img);
    let digest = image::digest_file(&img_path)?;
    let compared = match &reader.meta().final_image_digest {
        Some(want) if *want != digest => return Err(VerifyError::Mismatch { events, got: digest, want: want.clone() }),
        Some(_) => true,
        None => false,
    };
    let calls = match reader.calls()? {
        Some(mut calls) => Some(calls.try_fold(0u64, |n, c| c.map(|_| n + 1))?),
        None => None,
    };
    Ok(VerifyReport { events, digest, compared, calls })
}
