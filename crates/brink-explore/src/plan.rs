//! Streaming a trace epoch by epoch. Only the current epoch's writes (with their
//! payloads) are in memory; marks are kept as text for the whole run (they are what
//! checkers get).

use brink_pmodel::{Epoch, EpochBuilder, PWrite};
use brink_trace::{Event, TraceReader, SECTOR_BYTES};

use crate::ExploreError;

/// What one write of an epoch puts on the disk.
#[derive(Debug, Clone)]
pub struct WriteData {
    pub offset: u64,
    pub len: u64,
    /// The bytes; empty for a discard (zeros) and in a counting pass.
    pub bytes: Vec<u8>,
}

/// One epoch with its payloads, parallel to `epoch.writes`.
#[derive(Debug)]
pub struct EpochData {
    pub epoch: Epoch,
    pub writes: Vec<WriteData>,
}

/// Walk the events of `reader`, calling `on_epoch` for each epoch in order. With
/// `payloads = false` the write bytes are left empty (a counting pass).
pub fn for_each_epoch(
    reader: &TraceReader,
    payloads: bool,
    marks: &mut Vec<String>,
    mut on_epoch: impl FnMut(EpochData, &[String]) -> Result<bool, ExploreError>,
) -> Result<(), ExploreError> {
    let mut builder = EpochBuilder::new();
    let mut writes = Vec::new();
    let mut events = 0u64;
    for ev in reader.events()? {
        let ev = ev?;
        events = ev.index + 1;
        let sectors = |len: u64| len.div_ceil(SECTOR_BYTES) as u32;
        match ev.event {
            Event::Write(w) => {
                if w.offset % SECTOR_BYTES != 0 || w.len % SECTOR_BYTES != 0 {
                    return Err(ExploreError::Unsupported(format!(
                        "event {}: write at byte {} of {} bytes is not sector-aligned",
                        ev.index, w.offset, w.len
                    )));
                }
                builder.write(PWrite { index: ev.index, sectors: sectors(w.len), fua: w.flags.fua(), tearable: true });
                let mut bytes = Vec::new();
                if payloads {
                    reader.read_payload(&w, &mut bytes)?;
                }
                writes.push(WriteData { offset: w.offset, len: w.len, bytes });
            }
            Event::Discard { offset, len } | Event::WriteZeroes { offset, len } => {
                builder.write(PWrite { index: ev.index, sectors: sectors(len), fua: false, tearable: false });
                writes.push(WriteData { offset, len, bytes: Vec::new() });
            }
            Event::Mark { text } => {
                builder.mark(ev.index);
                marks.push(text);
            }
            Event::Flush => {
                let epoch = builder.end(ev.index);
                if !on_epoch(EpochData { epoch, writes: std::mem::take(&mut writes) }, marks)? {
                    return Ok(());
                }
            }
        }
    }
    let epoch = builder.end(events);
    on_epoch(EpochData { epoch, writes }, marks)?;
    Ok(())
}
