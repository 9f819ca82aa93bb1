//! Opening the files of a trace without trusting them. A trace comes from anywhere (a
//! download, a colleague, a fuzzer), and its files are named by the directory alone:
//! `events.log` may be a FIFO, `meta.json` a link to `/dev/zero`. A plain `open()` of a
//! FIFO blocks until a writer comes, with signals ignored, and reading a device never
//! ends. So every file of a trace is opened without blocking, checked to be a regular
//! file before a byte is read, and small files are read with a size cap.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::TraceError;
use crate::error::IoContext;

/// Open `path` for reading if it is a regular file (symbolic links are followed), and
/// refuse anything else with [`TraceError::NotRegularFile`], without blocking: the open
/// uses `O_NONBLOCK` (so a FIFO with no writer opens at once), the type is checked on the
/// open descriptor (no race with a rename), then `O_NONBLOCK` is cleared again.
pub fn open_regular(path: &Path) -> Result<File, TraceError> {
    let file =
        OpenOptions::new().read(true).custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits()).open(path).at(path)?;
    let kind = file.metadata().at(path)?.file_type();
    if !kind.is_file() {
        return Err(TraceError::NotRegularFile { path: path.into(), kind: kind_name(kind) });
    }
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(std::io::Error::from).at(path)?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from).at(path)?;
    Ok(file)
}

/// What a file that is not regular is, in words.
fn kind_name(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Read the whole regular file `path`, refusing one of more than `max` bytes (checked on
/// the bytes read, not only the size `stat` gives, since a file may grow while read).
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, TraceError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).at(path)?;
    if bytes.len() as u64 > max {
        return Err(TraceError::TooLarge { path: path.into(), max });
    }
    Ok(bytes)
}
