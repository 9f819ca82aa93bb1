//! The brink trace format: what a recording of block I/O looks like on disk.
//!
//! A trace is everything later stages need to rebuild any disk state a power cut could
//! leave behind: the disk before the workload ran (the *base image*), the ordered log of
//! what reached the disk afterwards (the *event log*), the written bytes (the *payload
//! pack*, each distinct 4 KiB chunk stored once by its blake3 hash) and a metadata file.
//! Readers and writers stream: a trace of gigabytes is never held in memory whole.
//!
//! # Wire format, version 1
//!
//! A trace is a directory. Fields may be added in later versions; a reader refuses a
//! trace whose `format_version` (or file header version) is newer than it knows.
//!
//! ```text
//! TRACE/
//!   meta.json       TraceMeta as JSON; written last, so its presence marks a finished trace
//!   base.img        the disk before the first event (a sparse file of image_size bytes)
//!   events.log      header + event records
//!   payloads.pack   header + raw chunks
//!   calls.log       header + the workload's system calls (optional: `calls.rs`)
//! ```
//!
//! All integers are little-endian.
//!
//! **`events.log`** starts with a 32-byte header: magic `BRINKEVT` (8 bytes), `version: u32`,
//! `flags: u32` (0), 16 reserved zero bytes. Then records, back to back:
//!
//! ```text
//! body_len: u32 | crc32(body): u32 (IEEE) | body: body_len bytes
//! ```
//!
//! `body` is one [`Event`] encoded with bincode 2 (serde, little-endian, fixed-width
//! integers): a `u32` variant index followed by the variant's fields in declaration order
//! (`Vec` and `String` are a `u64` length then the elements). Variant indices are stable:
//! 0 `Write`, 1 `Flush`, 2 `Discard`, 3 `WriteZeroes`, 4 `Mark`, 5 `Error`; new kinds get
//! new indices at the end. `Error`'s one field, the failed request ([`Failed`]), is itself
//! a `u32` variant index and fields: 0 `Write {offset: u64, len: u64}`, 1 `Flush`.
//! `body_len` is at most [`EVENT_BYTES_MAX`]. The number of records and the
//! byte length of the file are repeated in `meta.json` (`events`, `events_log_bytes`), so a
//! log cut at a record boundary is still detected.
//!
//! **`payloads.pack`** starts with a 32-byte header: magic `BRINKPAK`, `version: u32`, then
//! zeros. Then raw chunks with no framing. A `Write` of `len` bytes at byte `offset` of
//! the disk lists `ceil(len / 4096)` chunk references `{hash: [u8; 32], pack_offset: u64}`;
//! chunk `i` covers bytes `[i*4096, min(len, (i+1)*4096))` of the write and is stored at
//! `pack_offset` in the pack. `hash` is the blake3 of the chunk's bytes; the reader
//! verifies it on every read. A chunk whose bytes were seen before is not stored again.
//!
//! **Event semantics.** Events are in the order the disk completed them.
//! - `Write {offset, len, flags, chunks}`: bytes `[offset, offset+len)` now hold the
//!   payload. `flags` bit 0 = FUA (durable when complete), bit 1 = metadata hint.
//! - `Flush`: every write completed before it is durable.
//! - `Discard {offset, len}` / `WriteZeroes {offset, len}`: the range reads back as zeros
//!   (the recorder's disk punches a hole; an importer maps discards the same way).
//! - `Mark {text}`: the workload acknowledged something; ordered exactly against the I/O.
//! - `Error(Write {offset, len})` / `Error(Flush)`: brink failed this request on purpose
//!   (fault injection; `meta.json`'s `injections` lists the rules). The kernel saw EIO and
//!   nothing reached the media: a failed write leaves `[offset, offset+len)` as it was, a
//!   failed flush makes nothing durable. What the kernel did next is in the events that
//!   follow. Replay skips it.
//!
//! **Compatibility of `Error`.** The `Error` event (index 5) came after version 1 was
//! first written, and the version was not bumped for it: it is a new kind at the end, as
//! the rule above allows, and a trace recorded without fault injection holds none, so it
//! is byte for byte what an earlier brink wrote. Every reader of version 1 that knows
//! `Error` (this one and later) reads both. A brink that predates fault injection reads a
//! trace holding an `Error` event up to that event, then reports it as corrupt (an unknown
//! variant index) instead of asking for an upgrade; the next new event kind should bump
//! the version, so that such a reader gives the clearer message.
//!
//! Replaying every event in order onto `base.img` gives the disk as it stood when
//! recording ended; `meta.json` holds its content digest (`final_image_digest`, see
//! [`image::digest_file`]) where known, and [`verify`] checks the one against the other.
//! `base_image_digest` is the same digest of `base.img`; [`check_base_image`] checks it.
//!
//! **Limits.** A trace is input from anywhere, so every length in it is bounded before
//! anything is allocated: a record by [`EVENT_BYTES_MAX`], a write by [`WRITE_BYTES_MAX`],
//! a mark by [`MARK_BYTES_MAX`], `meta.json` by [`META_BYTES_MAX`]; every file must be a
//! regular file ([`open_regular`]). Writes, discards and write-zeroes are whole
//! [`SECTOR_BYTES`] sectors, and `events.log` ends where its last event does.

#![forbid(unsafe_code)]

mod calls;
pub mod durable;
mod error;
mod event;
mod framing;
pub mod image;
mod meta;
mod open;
mod reader;
mod summary;
mod verify;
mod writer;

pub use calls::{CALL_BYTES_MAX, CallIter, CallsMeta, calls_path};
pub use error::{ERROR_DETAIL_CHARS_MAX, TraceError};
pub use event::{ChunkRef, Event, EventDecodeError, EventError, Failed, Write, WriteFlags};
pub use meta::{ExitInfo, TraceMeta, WorkloadInfo};
pub use open::{open_regular, read_capped};
pub use reader::{EventIter, PositionedEvent, TraceReader};
pub use summary::TraceSummary;
pub use verify::{VerifyError, VerifyReport, check_base_image, verify};
pub use writer::{TraceWriter, WriterStats};

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Payloads are split into chunks of this many bytes, each stored once by content hash.
pub const CHUNK_BYTES: usize = 4096;
/// The sector size of every trace: offsets and lengths of block events are multiples of it.
pub const SECTOR_BYTES: u64 = 512;
/// Largest encoded event record; bounds what a reader allocates for a corrupt length.
pub const EVENT_BYTES_MAX: u32 = 16 << 20;
/// Largest single write a trace holds (bounded so a corrupt length cannot make a reader
/// allocate without limit). Real disks send at most a few MiB per request.
pub const WRITE_BYTES_MAX: u64 = 256 << 20;
/// Longest mark text, in bytes.
pub const MARK_BYTES_MAX: usize = 4096;
/// Largest `meta.json` a reader accepts. What brink writes there is bounded (the
/// workload's output is capped at 64 KiB a stream, which JSON escaping can grow sixfold);
/// the cap keeps a `meta.json` linked to an endless file from filling memory.
pub const META_BYTES_MAX: u64 = 16 << 20;

/// File names inside a trace directory.
pub mod files {
    pub const META: &str = "meta.json";
    pub const BASE_IMAGE: &str = "base.img";
    pub const EVENTS: &str = "events.log";
    pub const PACK: &str = "payloads.pack";
    pub const CALLS: &str = "calls.log";
}

pub(crate) const EVENTS_MAGIC: &[u8; 8] = b"BRINKEVT";
pub(crate) const PACK_MAGIC: &[u8; 8] = b"BRINKPAK";
pub(crate) const HEADER_BYTES: u64 = 32;

pub(crate) fn file_header(magic: &[u8; 8]) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}
