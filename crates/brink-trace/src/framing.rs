//! The record framing both logs of a trace share (`events.log`, `calls.log`): a 32-byte
//! file header, then records `body_len: u32 | crc32(body): u32 | body`. One reader checks
//! every record the same way: its length bounded before a buffer is made, never past the
//! end `meta.json` gives, its checksum, and nothing after the last record.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{HEADER_BYTES, TraceError, open_regular};

/// The frame of one record with `body`: its header, to write before the body.
pub(crate) fn frame_header(body: &[u8]) -> [u8; 8] {
    let mut frame = [0u8; 8];
    frame[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    frame[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    frame
}

/// Reads the records of one log, one at a time.
pub(crate) struct Frames {
    pub(crate) path: PathBuf,
    reader: BufReader<File>,
    /// Where the current record starts.
    pub(crate) offset: u64,
    /// The current record's index.
    pub(crate) index: u64,
    total: u64,
    /// Where the last record must end.
    end: u64,
    max_len: u32,
    /// What a record holds, for messages: `event`, `call`.
    noun: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Frames {
    /// The log at `path` (its header already checked), which holds `total` records
    /// ending at byte `end`, none with a body over `max_len` bytes.
    pub(crate) fn open(
        path: &Path,
        total: u64,
        end: u64,
        max_len: u32,
        noun: &'static str,
    ) -> Result<Frames, TraceError> {
        let file = open_regular(path)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        std::io::copy(&mut (&mut reader).take(HEADER_BYTES), &mut std::io::sink()).at(path)?;
        Ok(Frames {
            path: path.into(),
            reader,
            offset: HEADER_BYTES,
            index: 0,
            total,
            end,
            max_len,
            noun,
            body: Vec::new(),
        })
    }

    pub(crate) fn corrupt(&self, what: String) -> TraceError {
        TraceError::Corrupt { path: self.path.clone(), offset: self.offset, what }
    }

    fn read_full(&mut self, n: usize, what: &str) -> Result<(), TraceError> {
        self.body.resize(n, 0);
        let mut got = 0;
        while got < n {
            let r = self.reader.read(&mut self.body[got..]).at(&self.path)?;
            if r == 0 {
                return Err(TraceError::Truncated {
                    path: self.path.clone(),
                    offset: self.offset + got as u64,
                    what: format!("{what} of {} {} (of {})", self.noun, self.index, self.total),
                });
            }
            got += r;
        }
        Ok(())
    }

    /// The next record's body in `self.body` (at `self.offset`, index `self.index`), or
    /// None after the last one. The caller decodes it, then calls [`Frames::advance`].
    pub(crate) fn next_body(&mut self) -> Option<Result<(), TraceError>> {
        if self.index == self.total {
            if self.offset != self.end {
                let bytes = self.end.saturating_sub(self.offset);
                return Some(Err(TraceError::TrailingBytes { path: self.path.clone(), offset: self.offset, bytes }));
            }
            return None;
        }
        Some(self.read_body())
    }

    fn read_body(&mut self) -> Result<(), TraceError> {
        self.read_full(8, "record header")?;
        let len = u32::from_le_bytes(self.body[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(self.body[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > self.max_len {
            return Err(self.corrupt(format!("{} {} has impossible length {len}", self.noun, self.index)));
        }
        // A length that runs past the log's end is refused before its buffer is made.
        if self.offset + 8 + u64::from(len) > self.end {
            return Err(TraceError::Truncated {
                path: self.path.clone(),
                offset: self.end,
                what: format!("record body of {} {} (of {})", self.noun, self.index, self.total),
            });
        }
        let start = self.offset;
        self.offset += 8;
        self.read_full(len as usize, "record body")?;
        self.offset = start;
        if crc32fast::hash(&self.body) != crc {
            return Err(self.corrupt(format!("{} {} fails its checksum", self.noun, self.index)));
        }
        Ok(())
    }

    /// Past the record just read.
    pub(crate) fn advance(&mut self) {
        self.offset += 8 + self.body.len() as u64;
        self.index += 1;
    }
}
