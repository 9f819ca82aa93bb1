//! Streaming trace reader. Opening a trace checks its headers and sizes against
//! `meta.json`; events are decoded one at a time and validated against the image size;
//! payloads are read on demand by position and checked against their hash.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::event::{EventError, decode};
use crate::framing::Frames;
use crate::{
    CHUNK_BYTES, EVENT_BYTES_MAX, EVENTS_MAGIC, Event, FORMAT_VERSION, Failed, HEADER_BYTES, MARK_BYTES_MAX,
    META_BYTES_MAX, PACK_MAGIC, SECTOR_BYTES, TraceError, TraceMeta, WRITE_BYTES_MAX, Write, files, open_regular,
    read_capped,
};

/// An open trace. `Sync`: payload reads are positional, so threads may share it.
pub struct TraceReader {
    dir: PathBuf,
    meta: TraceMeta,
    pack_path: PathBuf,
    pack: File,
    pack_len: u64,
}

/// An event with where it sits: its index in the log and its byte offset in `events.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionedEvent {
    pub index: u64,
    pub offset: u64,
    pub event: Event,
}

pub(crate) fn check_header(path: &Path, file: &mut File, magic: &[u8; 8]) -> Result<(), TraceError> {
    let mut h = [0u8; HEADER_BYTES as usize];
    let mut got = 0;
    while got < h.len() {
        let n = file.read(&mut h[got..]).at(path)?;
        if n == 0 {
            return Err(TraceError::Truncated { path: path.into(), offset: got as u64, what: "file header".into() });
        }
        got += n;
    }
    if &h[..8] != magic {
        return Err(TraceError::Corrupt { path: path.into(), offset: 0, what: "bad magic".into() });
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version > FORMAT_VERSION {
        return Err(TraceError::NewerVersion { path: path.into(), found: version, supported: FORMAT_VERSION });
    }
    if version == 0 {
        return Err(TraceError::Corrupt { path: path.into(), offset: 8, what: "version 0".into() });
    }
    Ok(())
}

pub(crate) fn check_len(path: &Path, file: &File, expected: u64) -> Result<(), TraceError> {
    let len = file.metadata().at(path)?.len();
    if len < expected {
        return Err(TraceError::Truncated {
            path: path.into(),
            offset: len,
            what: format!("file is {len} bytes, meta.json says {expected}"),
        });
    }
    if len > expected {
        return Err(TraceError::Corrupt {
            path: path.into(),
            offset: expected,
            what: format!("{} bytes past the end meta.json gives", len - expected),
        });
    }
    Ok(())
}

/// Read and parse `meta.json`, refusing a newer format version.
fn read_meta(dir: &Path) -> Result<TraceMeta, TraceError> {
    let meta_path = dir.join(files::META);
    let json = match read_capped(&meta_path, META_BYTES_MAX) {
        Ok(j) => j,
        Err(TraceError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(TraceError::NotATrace {
                path: dir.into(),
                reason: format!("no {} (an unfinished recording or another directory)", files::META),
            });
        }
        Err(e) => return Err(e),
    };
    // The parser quotes the offending value, which may be megabytes long.
    let meta: TraceMeta = serde_json::from_slice(&json).map_err(|e| TraceError::Corrupt {
        path: meta_path.clone(),
        offset: 0,
        what: format!("invalid metadata: {}", crate::error::clip(&e.to_string())),
    })?;
    if meta.format_version > FORMAT_VERSION {
        return Err(TraceError::NewerVersion {
            path: meta_path,
            found: meta.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(meta)
}

impl TraceReader {
    /// Open the trace in `dir`: read `meta.json` (at most [`META_BYTES_MAX`] bytes) and
    /// check the other files' headers and sizes against it. Every file must be a regular
    /// file ([`open_regular`]). The base image's content is not read here; see
    /// [`TraceReader::check_base_image`].
    pub fn open(dir: &Path) -> Result<TraceReader, TraceError> {
        if !dir.is_dir() {
            return Err(TraceError::NotATrace { path: dir.into(), reason: "no such directory".into() });
        }
        let meta = read_meta(dir)?;
        let events_path = dir.join(files::EVENTS);
        let mut events = open_regular(&events_path)?;
        check_header(&events_path, &mut events, EVENTS_MAGIC)?;
        check_len(&events_path, &events, meta.events_log_bytes)?;
        let pack_path = dir.join(files::PACK);
        let mut pack = open_regular(&pack_path)?;
        check_header(&pack_path, &mut pack, PACK_MAGIC)?;
        let pack_len = pack.metadata().at(&pack_path)?.len();
        if pack_len > meta.pack_bytes {
            check_len(&pack_path, &pack, meta.pack_bytes)?;
        }
        let base = dir.join(files::BASE_IMAGE);
        let base_len = open_regular(&base)?.metadata().at(&base)?.len();
        if base_len != meta.image_size {
            return Err(TraceError::Invalid {
                path: base,
                what: format!("base image is {base_len} bytes, meta.json says {}", meta.image_size),
            });
        }
        // A pack shorter than meta.json says is reported when a payload in the missing
        // part is read, with the offset that is missing.
        Ok(TraceReader { dir: dir.into(), meta, pack_path, pack, pack_len })
    }

    /// Check `base.img` against the digest `meta.json` records for it (reading all its
    /// data): a damaged base image gives wrong crash states even where every event
    /// replays, and [`crate::verify`] alone misses damage in blocks the workload rewrote.
    pub fn check_base_image(&self) -> Result<(), TraceError> {
        let path = self.base_image_path();
        let want = &self.meta.base_image_digest;
        if want.is_empty() {
            let meta_path = self.dir.join(files::META);
            return Err(TraceError::Invalid { path: meta_path, what: "no base image digest recorded".into() });
        }
        let got = crate::image::digest_file(&path)?;
        if got != *want {
            return Err(TraceError::BaseImageDigest { path, got, want: want.clone() });
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    pub fn base_image_path(&self) -> PathBuf {
        self.dir.join(files::BASE_IMAGE)
    }

    /// Bytes of payload actually stored (distinct chunks).
    pub fn bytes_stored(&self) -> u64 {
        self.meta.pack_bytes.saturating_sub(HEADER_BYTES)
    }

    /// Stream the events from the start. Each call opens its own file handle.
    pub fn events(&self) -> Result<EventIter, TraceError> {
        let path = self.dir.join(files::EVENTS);
        let (total, end) = (self.meta.events, self.meta.events_log_bytes);
        let frames = Frames::open(&path, total, end, EVENT_BYTES_MAX, "event")?;
        Ok(EventIter { frames, image_size: self.meta.image_size, done: false })
    }

    /// Read the payload of `w` into `buf` (resized to `w.len`), verifying every chunk.
    pub fn read_payload(&self, w: &Write, buf: &mut Vec<u8>) -> Result<(), TraceError> {
        buf.resize(w.len as usize, 0);
        self.read_payload_range(w, 0, buf)
    }

    /// Read bytes `[start, start + out.len())` of the payload of `w`, reading and
    /// verifying only the chunks that overlap.
    pub fn read_payload_range(&self, w: &Write, start: u64, out: &mut [u8]) -> Result<(), TraceError> {
        assert!(start + out.len() as u64 <= w.len, "range outside the write");
        let chunk = CHUNK_BYTES as u64;
        let mut scratch = [0u8; CHUNK_BYTES];
        let mut done = 0usize;
        while done < out.len() {
            let pos = start + done as u64;
            let i = (pos / chunk) as usize;
            let clen = (w.len - i as u64 * chunk).min(chunk) as usize;
            let c = &w.chunks[i];
            let end = c.pack_offset.checked_add(clen as u64);
            if c.pack_offset < HEADER_BYTES || end.is_none_or(|e| e > self.pack_len) {
                return Err(TraceError::MissingPayload {
                    path: self.pack_path.clone(),
                    offset: c.pack_offset,
                    pack_len: self.pack_len,
                });
            }
            let buf = &mut scratch[..clen];
            self.pack.read_exact_at(buf, c.pack_offset).at(&self.pack_path)?;
            if blake3::hash(buf).as_bytes() != &c.hash {
                return Err(TraceError::Corrupt {
                    path: self.pack_path.clone(),
                    offset: c.pack_offset,
                    what: format!("payload chunk {i} of the write at disk offset {} does not match its hash", w.offset),
                });
            }
            let in_chunk = (pos - i as u64 * chunk) as usize;
            let n = (clen - in_chunk).min(out.len() - done);
            out[done..done + n].copy_from_slice(&buf[in_chunk..in_chunk + n]);
            done += n;
        }
        Ok(())
    }
}

/// Iterator over the events of a trace; yields at most one error, then ends.
pub struct EventIter {
    frames: Frames,
    image_size: u64,
    done: bool,
}

impl EventIter {
    fn next_event(&mut self) -> Option<Result<PositionedEvent, TraceError>> {
        if let Err(e) = self.frames.next_body()? {
            return Some(Err(e));
        }
        let f = &self.frames;
        let (path, offset, index) = (f.path.clone(), f.offset, f.index);
        let event = match decode(&f.body) {
            Ok(event) => event,
            Err(source) => return Some(Err(TraceError::Undecodable { path, offset, index, source })),
        };
        if let Err(source) = self.validate(&event) {
            return Some(Err(TraceError::BadEvent { path, offset, index, source }));
        }
        self.frames.advance();
        Some(Ok(PositionedEvent { index, offset, event }))
    }

    fn validate(&self, event: &Event) -> Result<(), EventError> {
        let image_size = self.image_size;
        let in_image = |offset: u64, len: u64| match offset.checked_add(len) {
            Some(end) if end <= image_size => Ok(()),
            _ => Err(EventError::OutsideImage { offset, len, image_size }),
        };
        // Whole sectors, as the explorer needs them: refused here too, so that every
        // command (show, verify, explore) takes or refuses the same traces.
        let sectors = |offset: u64, len: u64| {
            if offset % SECTOR_BYTES != 0 || len % SECTOR_BYTES != 0 || len == 0 {
                return Err(EventError::NotWholeSectors { kind: event.kind(), offset, len });
            }
            if len / SECTOR_BYTES > u64::from(u32::MAX) {
                return Err(EventError::TooManySectors { kind: event.kind(), len });
            }
            in_image(offset, len)
        };
        match event {
            Event::Write(w) => {
                if w.len == 0 || w.len > WRITE_BYTES_MAX {
                    return Err(EventError::WriteLength { len: w.len });
                }
                if w.chunks.len() as u64 != w.len.div_ceil(CHUNK_BYTES as u64) {
                    return Err(EventError::ChunkCount { len: w.len, chunks: w.chunks.len() });
                }
                sectors(w.offset, w.len)
            }
            Event::Discard { offset, len } | Event::WriteZeroes { offset, len } => sectors(*offset, *len),
            Event::Mark { text } if text.len() > MARK_BYTES_MAX => Err(EventError::MarkLength { len: text.len() }),
            Event::Error(Failed::Write { offset, len }) => in_image(*offset, *len),
            Event::Mark { .. } | Event::Flush | Event::Error(Failed::Flush) => Ok(()),
        }
    }
}

impl Iterator for EventIter {
    type Item = Result<PositionedEvent, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_event();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}
