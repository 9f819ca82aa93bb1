//! Disk image helpers: sparse copies, content hashes, and applying events to an image file.
//! Images are sparse files; copying or hashing them must not turn holes into gigabytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, copy_file_range, fallocate};
use nix::unistd::{Whence, lseek};

use crate::error::IoContext;
use crate::{Event, TraceError, TraceReader};

/// Copy `src` to a new file `dst`, keeping holes: only data extents are copied, with
/// `copy_file_range` (which reflinks where the file system can). `dst` is fsynced.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<(), TraceError> {
    let input = crate::open_regular(src)?;
    let len = input.metadata().at(src)?.len();
    let output = File::options().write(true).create_new(true).open(dst).at(dst)?;
    output.set_len(len).at(dst)?;
    let mut pos = 0u64;
    while pos < len {
        let Some((data, hole)) = next_extent(&input, pos).at(src)? else { break };
        copy_range(&input, &output, data, hole.min(len) - data).at(dst)?;
        pos = hole;
    }
    output.sync_all().at(dst)?;
    Ok(())
}

fn copy_range(input: &File, output: &File, mut off: u64, mut len: u64) -> std::io::Result<()> {
    while len > 0 {
        let mut off_in = off as i64;
        let mut off_out = off as i64;
        let chunk = len.min(1 << 30) as usize;
        let n = match copy_file_range(input, Some(&mut off_in), output, Some(&mut off_out), chunk) {
            Ok(n) => n,
            // Not across these file systems, or not at all: copy through memory.
            Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return copy_range_slow(input, output, off, len);
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "source shrank while copying"));
        }
        off += n as u64;
        len -= n as u64;
    }
    Ok(())
}

fn copy_range_slow(input: &File, output: &File, mut off: u64, mut len: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while len > 0 {
        let n = len.min(buf.len() as u64) as usize;
        input.read_exact_at(&mut buf[..n], off)?;
        output.write_all_at(&buf[..n], off)?;
        off += n as u64;
        len -= n as u64;
    }
    Ok(())
}

/// Block size of the image digest.
pub const DIGEST_BLOCK_BYTES: u64 = 4096;

/// The content digest of a disk image, hex encoded: blake3 over a domain tag, the image
/// length (u64 LE), then for every 4 KiB block that is not all zeros, in order, its
/// index (u64 LE) and its bytes. Two images with the same bytes have the same digest
/// however their holes are laid out, and the cost follows the data, not the image size
/// (holes are skipped with SEEK_DATA).
pub fn digest_file(path: &Path) -> Result<String, TraceError> {
    let f = crate::open_regular(path)?;
    let len = f.metadata().at(path)?.len();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"brink image digest v1");
    hasher.update(&len.to_le_bytes());
    for_each_data(&f, DIGEST_BLOCK_BYTES, |off, bytes| {
        for (i, block) in bytes.chunks(DIGEST_BLOCK_BYTES as usize).enumerate() {
            if block.iter().any(|&b| b != 0) {
                hasher.update(&(off / DIGEST_BLOCK_BYTES + i as u64).to_le_bytes());
                hasher.update(block);
            }
        }
        Ok(())
    })
    .at(path)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Visit the data of `f` in file order, skipping holes, in pieces of at most 1 MiB that
/// start on an `align`-byte boundary and are whole `align` units (but for the file's
/// end). Extents are widened to `align`; no byte is visited twice.
pub fn for_each_data(
    f: &File,
    align: u64,
    mut visit: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    assert!(align > 0 && (1 << 20) % align == 0, "align divides the buffer");
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let (mut next, mut pos) = (0u64, 0u64); // first byte not yet visited; where to seek
    while pos < len {
        let Some((data, hole)) = next_extent(f, pos)? else { break };
        let mut off = (data / align * align).max(next);
        let end = hole.div_ceil(align).saturating_mul(align).min(len);
        while off < end {
            let n = (end - off).min(buf.len() as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)?;
            visit(off, &buf[..n])?;
            off += n as u64;
        }
        next = next.max(off);
        pos = next.max(hole);
    }
    Ok(())
}

/// The next data extent at or after `pos` as `(start, end)`, or `None` past the last.
pub fn next_extent(f: &File, pos: u64) -> std::io::Result<Option<(u64, u64)>> {
    let data = match lseek(f, pos as i64, Whence::SeekData) {
        Ok(data) => data,
        Err(Errno::ENXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let hole = lseek(f, data, Whence::SeekHole)?;
    Ok(Some((data as u64, hole as u64)))
}

/// Make `[offset, offset+len)` of `file` read back as zeros, punching a hole where the
/// file system can and writing zeros where it cannot.
pub fn zero_range(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    if fallocate(file, punch, offset as i64, len as i64).is_ok() {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let (mut off, end) = (offset, offset + len);
    while off < end {
        let n = (end - off).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Apply the first `limit` events of `reader` (all if `None`) to `image`, in order.
/// Returns the number of events applied.
pub fn replay(reader: &TraceReader, image: &File, image_path: &Path, limit: Option<u64>) -> Result<u64, TraceError> {
    let mut buf = Vec::new();
    let mut applied = 0u64;
    for item in reader.events()? {
        if limit.is_some_and(|l| applied >= l) {
            break;
        }
        let item = item?;
        match &item.event {
            Event::Write(w) => {
                reader.read_payload(w, &mut buf)?;
                image.write_all_at(&buf, w.offset).at(image_path)?;
            }
            Event::Discard { offset, len } | Event::WriteZeroes { offset, len } => {
                zero_range(image, *offset, *len).at(image_path)?;
            }
            Event::Flush | Event::Mark { .. } | Event::Error(_) => {}
        }
        applied += 1;
    }
    Ok(applied)
}
