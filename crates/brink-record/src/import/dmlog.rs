//! dm-log-writes logs (Linux `dm-log-writes` target, and QEMU's `blklogwrites` driver,
//! which writes the same format) into brink traces.
//!
//! Format (all little-endian; `ss` = the log's sector size from the superblock):
//! block 0 is the superblock `{magic: u64 = 0x6a736677736872, version: u64 = 1,
//! nr_entries: u64, sectorsize: u32}`; then for each entry a header block
//! `{sector: u64, nr_sectors: u64, flags: u64, data_len: u64, text…}` followed, unless it
//! is a discard, by `nr_sectors * ss` bytes of data. Flags: 1 FLUSH, 2 FUA, 4 DISCARD,
//! 8 MARK, 16 METADATA. Sectors count `ss` units.
//!
//! Like xfstests' replay-log, only `nr_entries` entries are read (the kernel updates the
//! count lazily, after FUA and MARK entries), and entries that replay-log calls
//! malformed are refused. Mapping: data → Write (FUA and METADATA kept as flags);
//! FLUSH without data → Flush; FLUSH with data (a kernel fallback) → Flush then Write;
//! DISCARD → Discard; MARK → Mark. QEMU logs never hold FUA or marks, and QEMU logs a
//! request when it completes, so a flush there covers the writes logged before it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use brink_trace::{MARK_BYTES_MAX, TraceError, TraceMeta, TraceWriter, WRITE_BYTES_MAX, WriteFlags, image};

use crate::RecordError;

const MAGIC: u64 = 0x6a_7366_7773_6872;
const FLUSH: u64 = 1;
const FUA: u64 = 2;
const DISCARD: u64 = 4;
const MARK: u64 = 8;
const METADATA: u64 = 16;
const KNOWN_FLAGS: u64 = FLUSH | FUA | DISCARD | MARK | METADATA;
/// Bytes of an entry header before its mark text: sector, nr_sectors, flags, data_len.
const ENTRY_HEADER_BYTES: u64 = 32;
/// Smallest log sector size: the kernel target uses the log device's logical block size
/// and QEMU refuses less than 512, so a smaller one is damage. It also keeps every write
/// whole 512-byte trace sectors, and every header large enough for its fields.
const LOG_SECTOR_BYTES_MIN: u32 = 512;
/// Largest log sector size (QEMU's limit).
const LOG_SECTOR_BYTES_MAX: u32 = 8 << 20;

#[derive(Debug, Clone)]
pub struct DmLogImport {
    pub log: PathBuf,
    pub base: PathBuf,
    pub output: PathBuf,
    /// File system on the base image, if the user knows it (`unknown` otherwise).
    pub fs: String,
    pub mount_opts: String,
    /// Polled between entries; an interrupted import leaves no partial trace.
    pub interrupt: crate::Interrupt,
}

#[derive(Debug)]
pub struct DmLogSummary {
    pub trace: PathBuf,
    pub entries: u64,
    pub sector_size: u32,
    pub stats: brink_trace::WriterStats,
}

struct Log {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Log {
    fn bad(&self, offset: u64, what: impl Into<String>) -> RecordError {
        RecordError::BadInput { path: self.path.clone(), offset, what: what.into() }
    }

    fn read(&self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, RecordError> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(self.bad(offset, format!("truncated: {what} needs {len} bytes, the log ends at {}", self.len)));
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| RecordError::io(format!("reading {}", self.path.display()), e))?;
        Ok(buf)
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The superblock's entry count and sector size, checked.
fn superblock(log: &Log) -> Result<(u64, u64), RecordError> {
    let sb = log.read(0, 28, "the superblock")?;
    if le64(&sb, 0) != MAGIC {
        return Err(log.bad(0, "not a dm-log-writes log (bad magic)"));
    }
    let version = le64(&sb, 8);
    if version != 1 {
        return Err(log.bad(8, format!("unsupported log version {version} (only 1 exists)")));
    }
    let nr_entries = le64(&sb, 16);
    let ss = u32::from_le_bytes(sb[24..28].try_into().expect("4 bytes"));
    if !ss.is_power_of_two() || !(LOG_SECTOR_BYTES_MIN..=LOG_SECTOR_BYTES_MAX).contains(&ss) {
        return Err(log.bad(
            24,
            format!(
                "impossible sector size {ss} (a power of two from {LOG_SECTOR_BYTES_MIN} to {LOG_SECTOR_BYTES_MAX})"
            ),
        ));
    }
    Ok((nr_entries, u64::from(ss)))
}

/// Open an input file (`what` names it in the message) if it is a regular file, without
/// blocking on a FIFO ([`brink_trace::open_regular`]).
fn open_input(path: &Path, what: &str) -> Result<File, RecordError> {
    brink_trace::open_regular(path).map_err(|e| match e {
        TraceError::Io { source, .. } => {
            RecordError::Precondition(format!("cannot open {what}{}: {source}", path.display()))
        }
        e => RecordError::Precondition(format!("cannot open {what}{e}")),
    })
}

pub fn import_dm_log_writes(req: &DmLogImport) -> Result<DmLogSummary, RecordError> {
    let file = open_input(&req.log, "")?;
    let len = file.metadata().map_err(|e| RecordError::io("reading the log's size", e))?.len();
    let log = Log { path: req.log.clone(), file, len };
    let base_len = open_input(&req.base, "base image ")?
        .metadata()
        .map_err(|e| RecordError::io("reading the base image's size", e))?
        .len();
    let (nr_entries, ss) = superblock(&log)?;

    let mut writer = TraceWriter::create(&req.output)?;
    image::copy_sparse(&req.base, &writer.base_image_path())?;
    let mut pos = ss;
    for i in 0..nr_entries {
        req.interrupt.check()?;
        pos = import_entry(&log, &mut writer, Entry { index: i, pos, ss, base_len })?;
    }
    let stats = writer.stats();
    let mut meta = TraceMeta::new("dm-log-writes", &req.fs, base_len);
    meta.mount_opts = req.mount_opts.clone();
    let trace = writer.finish(meta)?;
    Ok(DmLogSummary { trace, entries: nr_entries, sector_size: ss as u32, stats })
}

/// Where one entry sits: its index, the byte offset of its header, the log's sector
/// size and the base image's length (every range must lie inside it).
#[derive(Clone, Copy)]
struct Entry {
    index: u64,
    pos: u64,
    ss: u64,
    base_len: u64,
}

/// Check entry `e` and append what it maps to; returns the offset of the next entry.
fn import_entry(log: &Log, writer: &mut TraceWriter, e: Entry) -> Result<u64, RecordError> {
    let Entry { index: i, mut pos, ss, base_len } = e;
    let h = log.read(pos, ss, &format!("the header of entry {i}"))?;
    let (sector, nr_sectors, flags, data_len) = (le64(&h, 0), le64(&h, 8), le64(&h, 16), le64(&h, 24));
    let header_at = pos;
    let entry = |what: String| log.bad(header_at, format!("entry {i}: {what}"));
    if flags & !KNOWN_FLAGS != 0 {
        return Err(entry(format!("unknown flags {flags:#x}")));
    }
    if flags == 0 && nr_sectors == 0 {
        return Err(entry("malformed: no flags and no sectors".into()));
    }
    if flags != MARK && h[ENTRY_HEADER_BYTES as usize] != 0 {
        return Err(entry("malformed: header is not zero-padded".into()));
    }
    let range = sector
        .checked_mul(ss)
        .zip(nr_sectors.checked_mul(ss))
        .filter(|&(off, n)| off.checked_add(n).is_some_and(|end| end <= base_len));
    let Some((offset, bytes)) = range else {
        return Err(entry(format!(
            "sectors {sector}+{nr_sectors} (of {ss} bytes) lie outside the {base_len}-byte base image"
        )));
    };
    pos += ss;
    if flags & MARK != 0 {
        if data_len > ss - ENTRY_HEADER_BYTES || data_len as usize > MARK_BYTES_MAX {
            return Err(entry(format!("mark text of {data_len} bytes does not fit its header")));
        }
        let start = ENTRY_HEADER_BYTES as usize;
        let text = String::from_utf8_lossy(&h[start..start + data_len as usize]).into_owned();
        writer.mark(&text)?;
        return Ok(pos);
    }
    if flags & DISCARD != 0 {
        // Nothing to discard: the explorer refuses such an event, so the import does.
        if nr_sectors == 0 {
            return Err(entry("malformed: a discard of 0 sectors".into()));
        }
        writer.discard(offset, bytes)?;
        return Ok(pos);
    }
    if flags & FLUSH != 0 {
        writer.flush()?;
    }
    if nr_sectors > 0 {
        if bytes > WRITE_BYTES_MAX {
            return Err(entry(format!("write of {bytes} bytes is larger than the limit of {WRITE_BYTES_MAX}")));
        }
        let data = log.read(pos, bytes, &format!("the data of entry {i}"))?;
        let mut wf = 0;
        if flags & FUA != 0 {
            wf |= WriteFlags::FUA;
        }
        if flags & METADATA != 0 {
            wf |= WriteFlags::METADATA;
        }
        writer.write(offset, &data, WriteFlags(wf))?;
        pos += bytes;
    }
    Ok(pos)
}
