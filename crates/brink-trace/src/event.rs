//! The events of a trace and their encoding. The encoder lives here alone so that it can
//! be swapped (bincode 2.0.1 is the last release of its line) without touching callers.

use serde::{Deserialize, Serialize};

/// One thing that reached the disk, in completion order. Variant order is part of the wire
/// format: add new kinds at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Write(Write),
    Flush,
    Discard {
        offset: u64,
        len: u64,
    },
    WriteZeroes {
        offset: u64,
        len: u64,
    },
    Mark {
        text: String,
    },
    /// A request that brink failed on purpose (fault injection): it reached no media.
    /// The kernel saw EIO; what it did next is in the events that follow.
    Error(Failed),
}

/// The request an injected error failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failed {
    Write { offset: u64, len: u64 },
    Flush,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Byte offset on the disk (a multiple of the sector size for recorded traces).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    pub flags: WriteFlags,
    /// `ceil(len / CHUNK_BYTES)` references into the payload pack.
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WriteFlags(pub u32);

impl WriteFlags {
    pub const FUA: u32 = 1;
    pub const METADATA: u32 = 2;
    pub fn fua(self) -> bool {
        self.0 & Self::FUA != 0
    }
    pub fn metadata(self) -> bool {
        self.0 & Self::METADATA != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub hash: [u8; 32],
    pub pack_offset: u64,
}

impl Event {
    /// Short lowercase name of the kind, as shown in tables and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Write(_) => "write",
            Event::Flush => "flush",
            Event::Discard { .. } => "discard",
            Event::WriteZeroes { .. } => "write-zeroes",
            Event::Mark { .. } => "mark",
            Event::Error(_) => "error",
        }
    }
}

pub(crate) fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding()
}

/// The decoder's configuration: the encoding's, plus a limit on what one decode may
/// claim, so that a length field inside a record (a mark's text, a write's chunk list)
/// that passes the checksum but says "2^64 bytes" is an error before anything is
/// allocated, not a "capacity overflow" panic or an allocation abort. No record is longer
/// than [`crate::EVENT_BYTES_MAX`], so no valid event reaches the limit.
fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ crate::EVENT_BYTES_MAX as usize }>()
}

pub(crate) fn encode(ev: &Event) -> Vec<u8> {
    // Encoding an in-memory value into a Vec cannot fail for these plain types.
    bincode::serde::encode_to_vec(ev, config()).expect("event encodes")
}

/// Why an event record's body is not an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// The encoder's own complaint (an unknown variant index, a short body, …).
    #[error(transparent)]
    Encoding(#[from] bincode::error::DecodeError),
    /// The body holds an event and then more bytes.
    #[error("{0} trailing bytes after the event")]
    TrailingBytes(usize),
}

/// Why a well-formed event cannot be in its trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("range {offset}+{len} lies outside the {image_size}-byte image")]
    OutsideImage { offset: u64, len: u64, image_size: u64 },
    #[error("write length {len} outside 1..={max}", max = crate::WRITE_BYTES_MAX)]
    WriteLength { len: u64 },
    #[error("write of {len} bytes lists {chunks} chunks")]
    ChunkCount { len: u64, chunks: usize },
    #[error("mark of {len} bytes is longer than the limit of {max}", max = crate::MARK_BYTES_MAX)]
    MarkLength { len: usize },
    /// A write, discard or write-zeroes that is not whole sectors: every recorder and
    /// importer gives whole sectors, and the explorer cuts writes at sector boundaries.
    #[error("{kind} of {len} bytes at byte {offset} is not whole {sector}-byte sectors", sector = crate::SECTOR_BYTES)]
    NotWholeSectors { kind: &'static str, offset: u64, len: u64 },
    /// A range of more sectors than the explorer counts (2^32 - 1, 2 TiB).
    #[error("{kind} of {len} bytes is more than {max} sectors", max = u32::MAX)]
    TooManySectors { kind: &'static str, len: u64 },
}

pub(crate) fn decode(body: &[u8]) -> Result<Event, EventDecodeError> {
    let (ev, used): (Event, usize) = bincode::serde::decode_from_slice(body, decode_config())?;
    if used != body.len() {
        return Err(EventDecodeError::TrailingBytes(body.len() - used));
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format in the crate docs, pinned: variant indices and field layout of the
    /// `Error` event, which came later than the others within version 1.
    #[test]
    fn error_events_encode_as_documented() {
        let write = encode(&Event::Error(Failed::Write { offset: 0x1000, len: 0x200 }));
        let mut want = Vec::new();
        want.extend(5u32.to_le_bytes()); // Event::Error
        want.extend(0u32.to_le_bytes()); // Failed::Write
        want.extend(0x1000u64.to_le_bytes());
        want.extend(0x200u64.to_le_bytes());
        assert_eq!(write, want);
        let flush = encode(&Event::Error(Failed::Flush));
        assert_eq!(flush, [5, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(decode(&write).unwrap(), Event::Error(Failed::Write { offset: 0x1000, len: 0x200 }));
        assert_eq!(encode(&Event::Flush), [1, 0, 0, 0], "indices of the older kinds are unchanged");
        assert!(matches!(decode(&[6, 0, 0, 0]), Err(EventDecodeError::Encoding(_))), "no kind 6 yet");
        assert!(matches!(decode(&[1, 0, 0, 0, 0]), Err(EventDecodeError::TrailingBytes(1))));
    }
}
