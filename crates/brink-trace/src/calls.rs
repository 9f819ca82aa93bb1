//! `calls.log`: the workload's system calls (`brink_calls::Call`), recorded in the same
//! run as the block events, so that both levels (the kernel's writes and the program's
//! calls) come from one recording. Optional: a trace recorded without calls (or by an
//! older brink, or imported) has no `calls.log` and no `calls` in `meta.json`.
//!
//! Framed like `events.log` (`framing.rs`): header magic `BRINKCAL`, then one record a
//! call, in the order the calls completed. A record's body is a [`CallRecord`] in bincode
//! (the events' configuration): the call with its write data taken out, and the data's
//! chunks, stored in `payloads.pack` and deduplicated with the block payloads (a page
//! the program wrote is usually the page the kernel wrote).

use std::path::PathBuf;

use brink_calls::{Call, CallKind};
use serde::{Deserialize, Serialize};

use crate::framing::Frames;
use crate::{ChunkRef, TraceError, TraceReader, WRITE_BYTES_MAX, Write, WriteFlags, files};

/// The longest call record brink reads: a call with its stack (at most
/// `brink_calls::STACK_FRAMES_MAX` frames) and its data's chunk list.
pub const CALL_BYTES_MAX: u32 = 4 << 20;

pub(crate) const CALLS_MAGIC: &[u8; 8] = b"BRINKCAL";

/// `meta.json`'s `calls`: how the calls were recorded, and what could not be.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallsMeta {
    /// Records in `calls.log`, and its length in bytes (to detect truncation).
    pub count: u64,
    pub log_bytes: u64,
    /// The tracer and its version (`strace 6.1`).
    pub tracer: String,
    /// The mark file as the workload saw it (`$BRINK_MARK`): a write to it is an
    /// acknowledgement, so marks are ordered exactly among the calls.
    pub mark_file: String,
    /// The workload's starting directory (paths are shown relative to it).
    pub cwd: String,
    /// What the calls cannot show exactly (stores through a shared writable mapping,
    /// io_uring), one sentence each: said in `show` and in every report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untraceable: Vec<String>,
    /// Calls that started before earlier-seq calls completed, `(seq, rank)`
    /// (`brink_calls::Parsed::started_before`): how calls of different threads
    /// overlapped, which completion order alone does not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started_before: Vec<(u64, u64)>,
}

/// One record of `calls.log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CallRecord {
    /// The call, its write data (if any) empty.
    call: Call,
    data_len: u64,
    data: Vec<ChunkRef>,
}

/// A write call's data, taken out of the call (left empty).
pub(crate) fn take_data(call: &mut Call) -> Vec<u8> {
    match &mut call.kind {
        CallKind::Write { data, .. } => std::mem::take(data),
        _ => Vec::new(),
    }
}

/// The encoded body of `call` whose data was stored as `data` (`data_len` bytes).
pub(crate) fn encode(call: Call, data_len: u64, data: Vec<ChunkRef>) -> Vec<u8> {
    let rec = CallRecord { call, data_len, data };
    bincode::serde::encode_to_vec(&rec, crate::event::config()).expect("call encodes")
}

/// Iterator over the calls of a trace, their data read back from the pack (each chunk
/// checked against its hash); yields at most one error, then ends.
pub struct CallIter<'a> {
    frames: Frames,
    reader: &'a TraceReader,
    done: bool,
    /// Writes of more bytes than this are yielded without their data.
    data_max: u64,
}

impl TraceReader {
    /// The trace's calls, or None if it was recorded without them.
    pub fn calls(&self) -> Result<Option<CallIter<'_>>, TraceError> {
        let Some(meta) = &self.meta().calls else { return Ok(None) };
        let path = self.dir().join(files::CALLS);
        let mut file = crate::open_regular(&path)?;
        crate::reader::check_header(&path, &mut file, CALLS_MAGIC)?;
        crate::reader::check_len(&path, &file, meta.log_bytes)?;
        let frames = Frames::open(&path, meta.count, meta.log_bytes, CALL_BYTES_MAX, "call")?;
        Ok(Some(CallIter { frames, reader: self, done: false, data_max: WRITE_BYTES_MAX }))
    }
}

impl CallIter<'_> {
    /// Leave out the data of writes longer than `max` bytes (their `len` still says how
    /// many bytes they wrote): for readers that need where calls wrote, and the text of
    /// short writes such as marks, but not every byte a workload wrote (a trace holding
    /// gigabytes of written data would be read into memory whole).
    pub fn data_up_to(mut self, max: u64) -> Self {
        self.data_max = max;
        self
    }
}

impl CallIter<'_> {
    fn next_call(&mut self) -> Option<Result<Call, TraceError>> {
        if let Err(e) = self.frames.next_body()? {
            return Some(Err(e));
        }
        let decoded = bincode::serde::decode_from_slice::<CallRecord, _>(&self.frames.body, decode_config());
        let rec = match decoded {
            Ok((rec, used)) if used == self.frames.body.len() => rec,
            Ok((_, used)) => {
                return Some(Err(self
                    .frames
                    .corrupt(format!("{} trailing bytes after the call", self.frames.body.len() - used))));
            }
            Err(e) => {
                return Some(Err(self.frames.corrupt(format!("call {} does not decode: {e}", self.frames.index))));
            }
        };
        let call = match self.with_data(rec) {
            Ok(call) => call,
            Err(e) => return Some(Err(e)),
        };
        self.frames.advance();
        Some(Ok(call))
    }

    /// The record's call with its data put back.
    fn with_data(&self, rec: CallRecord) -> Result<Call, TraceError> {
        let CallRecord { mut call, data_len, data } = rec;
        let chunks_ok = data.len() as u64 == data_len.div_ceil(crate::CHUNK_BYTES as u64);
        let is_write = matches!(&call.kind, CallKind::Write { data, .. } if data.is_empty());
        if data_len > WRITE_BYTES_MAX || !chunks_ok || (data_len > 0 && !is_write) {
            let what = format!("call {} has {} data chunks for {data_len} bytes", self.frames.index, data.len());
            return Err(self.frames.corrupt(what));
        }
        if data_len > 0 && data_len <= self.data_max {
            let w = Write { offset: 0, len: data_len, flags: WriteFlags::default(), chunks: data };
            let mut buf = Vec::new();
            self.reader.read_payload(&w, &mut buf)?;
            if let CallKind::Write { data, .. } = &mut call.kind {
                *data = buf;
            }
        }
        Ok(call)
    }
}

impl Iterator for CallIter<'_> {
    type Item = Result<Call, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_call();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// The events' decoder configuration, with the calls' record limit.
fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ CALL_BYTES_MAX as usize }>()
}

/// Where a trace's calls live, for messages.
pub fn calls_path(trace: &std::path::Path) -> PathBuf {
    trace.join(files::CALLS)
}
