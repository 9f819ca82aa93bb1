//! Disk image helpers: sparse copies, content hashes, and applying events to an image file.
//! Images are sparse files; copying or hashing them must not turn holes into gigabytes.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::IoContext;
use crate::{Event, TraceError, TraceReader};

/// Copy `src` to a new file `dst`, keeping holes: only data extents are copied, with
/// `copy_file_range` (which reflinks where the file system can). `dst` is fsynced.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<(), TraceError> {
    let input = File::open(src).at(src)?;
    let len = input.metadata().at(src)?.len();
    let output = File::options().write(true).create_new(true).open(dst).at(dst)?;
    output.set_len(len).at(dst)?;
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        // SAFETY: plain lseek on an fd we own.
        let data = unsafe { libc::lseek(input.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after pos
            }
            return Err(TraceError::io(src, e));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(input.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(TraceError::io(src, std::io::Error::last_os_error()));
        }
        copy_range(&input, &output, data as u64, (hole - data) as u64).at(dst)?;
        pos = hole;
    }
    output.sync_all().at(dst)?;
    Ok(())
}

fn copy_range(input: &File, output: &File, mut off: u64, mut len: u64) -> std::io::Result<()> {
    while len > 0 {
        let mut off_in = off as i64;
        let mut off_out = off as i64;
        // SAFETY: both fds are valid; offsets are passed by pointer and updated by the kernel.
        let n = unsafe {
            libc::copy_file_range(
                input.as_raw_fd(),
                &mut off_in,
                output.as_raw_fd(),
                &mut off_out,
                len.min(1 << 30) as usize,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)) {
                return copy_range_slow(input, output, off, len);
            }
            return Err(e);
        }
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

/// blake3 of a whole file, hex encoded.
pub fn hash_file(path: &Path) -> Result<String, TraceError> {
    let mut f = File::open(path).at(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Make `[offset, offset+len)` of `file` read back as zeros, punching a hole where the
/// file system can and writing zeros where it cannot.
pub fn zero_range(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on an fd we own.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as i64,
            len as i64,
        )
    };
    if rc == 0 {
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
            Event::Flush | Event::Mark { .. } => {}
        }
        applied += 1;
    }
    Ok(applied)
}
