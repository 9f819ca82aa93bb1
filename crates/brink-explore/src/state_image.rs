//! A crash state as an image file: the durable image copied (sparsely), the state's
//! pieces written over it. Recoveries that need a file rather than a FUSE slot (the
//! userspace recovery with e2fsprogs, the in-process recovery of tests) build one per
//! state in their worker's scratch directory; the kernel recovery never copies an image.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use brink_trace::{TraceReader, image};

use crate::footprint::Piece;

/// Bytes copied at a time from a piece's source, so a large write is never held whole.
const CHUNK_BYTES: u64 = 1 << 20;

/// Why a state's image file cannot be built. Its text becomes part of a check's
/// message (`cannot build the state's image: …`), so each variant shows its cause.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error(transparent)]
    Trace(#[from] brink_trace::TraceError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Write the durable image with `pieces` written over it (in order, later ones winning)
/// to `out`.
pub(crate) fn build(durable: &Path, reader: &TraceReader, pieces: &[Piece], out: &Path) -> Result<(), BuildError> {
    image::copy_sparse(durable, out)?;
    let f = OpenOptions::new().write(true).open(out)?;
    write_pieces(&f, reader, pieces)
}

/// Write `pieces` into `f` in order (later ones winning).
pub(crate) fn write_pieces(f: &std::fs::File, reader: &TraceReader, pieces: &[Piece]) -> Result<(), BuildError> {
    let mut buf = Vec::new();
    for p in pieces {
        let mut pos = 0;
        while pos < p.len {
            let n = (p.len - pos).min(CHUNK_BYTES);
            buf.resize(n as usize, 0);
            p.src.advanced(pos).read(reader, &mut buf)?;
            f.write_all_at(&buf, p.offset + pos)?;
            pos += n;
        }
    }
    Ok(())
}
