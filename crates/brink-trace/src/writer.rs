//! Streaming trace writer. Events go straight to a buffered file; payload chunks are
//! hashed and appended to the pack unless an identical chunk is already there. Memory
//! held: the chunk index (about 80 bytes per distinct 4 KiB chunk) and two I/O buffers.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use crate::calls::CALLS_MAGIC;
use crate::durable;
use crate::error::IoContext;
use crate::event::encode;
use crate::{CALL_BYTES_MAX, CallsMeta};
use crate::{
    CHUNK_BYTES, ChunkRef, EVENT_BYTES_MAX, EVENTS_MAGIC, Event, FORMAT_VERSION, Failed, HEADER_BYTES, MARK_BYTES_MAX,
    PACK_MAGIC, TraceError, TraceMeta, Write, WriteFlags, file_header, files, image,
};
use brink_calls::Call;

/// Counts kept while writing; `brink show` recomputes them from the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub events: u64,
    pub writes: u64,
    pub flushes: u64,
    pub discards: u64,
    pub marks: u64,
    /// Requests failed by fault injection.
    pub errors: u64,
    /// Payload bytes of all writes.
    pub bytes_written: u64,
    /// Payload bytes actually stored in the pack (distinct chunks only).
    pub bytes_stored: u64,
}

/// Writes a trace into a temporary sibling directory; [`TraceWriter::finish`] makes it
/// appear under its final name atomically. Dropping an unfinished writer removes it.
pub struct TraceWriter {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    events_path: PathBuf,
    events: BufWriter<File>,
    events_bytes: u64,
    pack_path: PathBuf,
    /// Unbuffered: new chunks are written straight from the caller's buffer, in runs of
    /// adjacent new chunks, with no copy in between.
    pack: File,
    pack_len: u64,
    index: HashMap<[u8; 32], u64>,
    stats: WriterStats,
    /// The calls written (`TraceWriter::calls`): their count and `calls.log`'s length.
    calls: Option<(u64, u64)>,
    finished: bool,
}

impl TraceWriter {
    /// Start a trace that will be named `final_dir`, which must not exist yet.
    pub fn create(final_dir: &Path) -> Result<TraceWriter, TraceError> {
        if final_dir.exists() {
            return Err(TraceError::Invalid {
                path: final_dir.to_path_buf(),
                what: "already exists; choose another output path or remove it".into(),
            });
        }
        let name = final_dir.file_name().ok_or_else(|| TraceError::Invalid {
            path: final_dir.to_path_buf(),
            what: "output path has no file name".into(),
        })?;
        let parent = match final_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(TraceError::Invalid { path: parent, what: "output directory does not exist".into() });
        }
        let tmp_dir = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).at(&tmp_dir)?;
        }
        fs::create_dir(&tmp_dir).at(&tmp_dir)?;
        let events_path = tmp_dir.join(files::EVENTS);
        let pack_path = tmp_dir.join(files::PACK);
        let mut w = TraceWriter {
            final_dir: final_dir.to_path_buf(),
            events: BufWriter::with_capacity(1 << 20, File::create(&events_path).at(&events_path)?),
            events_path,
            events_bytes: HEADER_BYTES,
            pack: File::create(&pack_path).at(&pack_path)?,
            pack_path,
            pack_len: HEADER_BYTES,
            tmp_dir,
            index: HashMap::new(),
            stats: WriterStats::default(),
            calls: None,
            finished: false,
        };
        w.events.write_all(&file_header(EVENTS_MAGIC)).at(&w.events_path)?;
        w.pack.write_all(&file_header(PACK_MAGIC)).at(&w.pack_path)?;
        Ok(w)
    }

    /// Where the caller must place the base image before [`TraceWriter::finish`].
    pub fn base_image_path(&self) -> PathBuf {
        self.tmp_dir.join(files::BASE_IMAGE)
    }

    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Log a write of `data` at byte `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8], flags: WriteFlags) -> Result<(), TraceError> {
        assert!(!data.is_empty(), "empty writes are not events");
        let chunks = self.store_chunks(data)?;
        self.stats.writes += 1;
        self.stats.bytes_written += data.len() as u64;
        self.append(&Event::Write(Write { offset, len: data.len() as u64, flags, chunks }))
    }

    /// Store `data` in the pack, each distinct 4 KiB chunk once, and return its chunks.
    fn store_chunks(&mut self, data: &[u8]) -> Result<Vec<ChunkRef>, TraceError> {
        let mut chunks = Vec::with_capacity(data.len().div_ceil(CHUNK_BYTES));
        // The run of new chunks not yet written: data[run_start..run_end].
        let (mut run_start, mut run_end) = (0usize, 0usize);
        for (i, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
            let hash = *blake3::hash(chunk).as_bytes();
            let pack_offset = match self.index.get(&hash) {
                Some(&off) => off,
                None => {
                    let start = i * CHUNK_BYTES;
                    if start != run_end {
                        self.write_pack(&data[run_start..run_end])?;
                        run_start = start;
                    }
                    run_end = start + chunk.len();
                    let off = self.pack_len + (run_end - run_start - chunk.len()) as u64;
                    self.index.insert(hash, off);
                    off
                }
            };
            chunks.push(ChunkRef { hash, pack_offset });
        }
        self.write_pack(&data[run_start..run_end])?;
        Ok(chunks)
    }

    /// Write the workload's system calls (`calls.rs`), in the order they completed, their
    /// data into the pack. At most once a trace; `finish` records their count in
    /// `meta.json`'s `calls` (which the caller fills in).
    pub fn calls(&mut self, calls: impl IntoIterator<Item = Call>) -> Result<(), TraceError> {
        assert!(self.calls.is_none(), "a trace's calls are written once");
        let path = self.tmp_dir.join(files::CALLS);
        let mut out = BufWriter::new(File::create(&path).at(&path)?);
        out.write_all(&file_header(CALLS_MAGIC)).at(&path)?;
        let (mut count, mut bytes) = (0u64, HEADER_BYTES);
        for mut call in calls {
            let data = crate::calls::take_data(&mut call);
            let chunks = self.store_chunks(&data)?;
            let body = crate::calls::encode(call, data.len() as u64, chunks);
            if body.len() > CALL_BYTES_MAX as usize {
                let what = format!("call {count} takes {} bytes, over the limit of {CALL_BYTES_MAX}", body.len());
                return Err(TraceError::Invalid { path, what });
            }
            out.write_all(&crate::framing::frame_header(&body)).at(&path)?;
            out.write_all(&body).at(&path)?;
            (count, bytes) = (count + 1, bytes + 8 + body.len() as u64);
        }
        let file = out.into_inner().map_err(|e| e.into_error()).at(&path)?;
        file.sync_all().at(&path)?;
        self.calls = Some((count, bytes));
        Ok(())
    }

    fn write_pack(&mut self, bytes: &[u8]) -> Result<(), TraceError> {
        if !bytes.is_empty() {
            self.pack.write_all(bytes).at(&self.pack_path)?;
            self.pack_len += bytes.len() as u64;
            self.stats.bytes_stored += bytes.len() as u64;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), TraceError> {
        self.stats.flushes += 1;
        self.append(&Event::Flush)
    }

    pub fn discard(&mut self, offset: u64, len: u64) -> Result<(), TraceError> {
        self.stats.discards += 1;
        self.append(&Event::Discard { offset, len })
    }

    pub fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), TraceError> {
        self.stats.discards += 1;
        self.append(&Event::WriteZeroes { offset, len })
    }

    /// Log a mark. Longer texts than [`MARK_BYTES_MAX`] are refused, not cut.
    pub fn mark(&mut self, text: &str) -> Result<(), TraceError> {
        if text.len() > MARK_BYTES_MAX {
            return Err(TraceError::Invalid {
                path: self.events_path.clone(),
                what: format!("mark of {} bytes is longer than the limit of {MARK_BYTES_MAX}", text.len()),
            });
        }
        self.stats.marks += 1;
        self.append(&Event::Mark { text: text.to_string() })
    }

    /// Log a request that fault injection failed.
    pub fn error(&mut self, failed: Failed) -> Result<(), TraceError> {
        self.stats.errors += 1;
        self.append(&Event::Error(failed))
    }

    fn append(&mut self, ev: &Event) -> Result<(), TraceError> {
        let body = encode(ev);
        assert!(body.len() <= EVENT_BYTES_MAX as usize, "event record of {} bytes exceeds the limit", body.len());
        self.events.write_all(&crate::framing::frame_header(&body)).at(&self.events_path)?;
        self.events.write_all(&body).at(&self.events_path)?;
        self.events_bytes += 8 + body.len() as u64;
        self.stats.events += 1;
        Ok(())
    }

    /// Make the trace durable and give it its final name. `meta`'s counts, sizes and
    /// hashes of the base image are filled in here; the caller fills in the rest.
    pub fn finish(mut self, mut meta: TraceMeta) -> Result<PathBuf, TraceError> {
        self.events.flush().at(&self.events_path)?;
        self.events.get_ref().sync_all().at(&self.events_path)?;
        self.pack.sync_all().at(&self.pack_path)?;
        let base = self.base_image_path();
        let base_len = fs::metadata(&base).at(&base)?.len();
        if base_len != meta.image_size {
            return Err(TraceError::Invalid {
                path: base,
                what: format!("base image is {base_len} bytes but the trace says {}", meta.image_size),
            });
        }
        File::open(&base).and_then(|f| f.sync_all()).at(&base)?;
        meta.format_version = FORMAT_VERSION;
        meta.events = self.stats.events;
        meta.events_log_bytes = self.events_bytes;
        meta.pack_bytes = self.pack_len;
        match (self.calls, &mut meta.calls) {
            (Some((count, log_bytes)), Some(c)) => (c.count, c.log_bytes) = (count, log_bytes),
            (Some((count, log_bytes)), None) => {
                meta.calls = Some(CallsMeta { count, log_bytes, ..CallsMeta::default() })
            }
            (None, calls) => *calls = None,
        }
        meta.base_image_digest = image::digest_file(&base)?;
        let meta_path = self.tmp_dir.join(files::META);
        let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
        durable::write_atomic(&meta_path, &json).at(&meta_path)?;
        durable::rename_durable(&self.tmp_dir, &self.final_dir).at(&self.final_dir)?;
        self.finished = true;
        Ok(self.final_dir.clone())
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.tmp_dir);
        }
    }
}
