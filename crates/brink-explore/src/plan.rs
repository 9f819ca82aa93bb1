//! Streaming a trace epoch by epoch. An epoch holds its writes as references into the
//! trace (payloads are read when needed, never held whole); marks are kept as text for
//! the whole run (they are what checkers get).

use std::sync::Arc;

use brink_pmodel::{Epoch, EpochBuilder, PWrite};
use brink_trace::{Event, SECTOR_BYTES, TraceReader, Write};

use crate::ExploreError;

/// What one write of an epoch puts on the disk.
#[derive(Debug, Clone)]
pub struct WriteData {
    pub offset: u64,
    pub len: u64,
    /// The payload in the trace; `None` for a discard or write-zeroes (zeros).
    pub src: Option<Arc<Write>>,
}

/// One epoch, its writes parallel to `epoch.writes`.
#[derive(Debug)]
pub struct EpochData {
    pub epoch: Epoch,
    pub writes: Vec<WriteData>,
}

/// Walk the events of `reader`, calling `on_epoch` for each epoch in order; stop early
/// when it returns false.
pub fn for_each_epoch(
    reader: &TraceReader,
    marks: &mut Vec<String>,
    mut on_epoch: impl FnMut(EpochData, &[String]) -> Result<bool, ExploreError>,
) -> Result<(), ExploreError> {
    let mut builder = EpochBuilder::new();
    let mut writes = Vec::new();
    let mut events = 0u64;
    for ev in reader.events()? {
        let ev = ev?;
        events = ev.index + 1;
        let aligned = |offset: u64, len: u64| -> Result<u32, ExploreError> {
            if offset % SECTOR_BYTES != 0 || len % SECTOR_BYTES != 0 || len == 0 {
                return Err(ExploreError::Unaligned { event: ev.index, offset, len });
            }
            u32::try_from(len / SECTOR_BYTES).map_err(|_| ExploreError::WriteTooLarge { event: ev.index, len })
        };
        match ev.event {
            Event::Write(w) => {
                let sectors = aligned(w.offset, w.len)?;
                builder.write(PWrite { index: ev.index, sectors, fua: w.flags.fua(), tearable: true });
                writes.push(WriteData { offset: w.offset, len: w.len, src: Some(Arc::new(w)) });
            }
            Event::Discard { offset, len } | Event::WriteZeroes { offset, len } => {
                let sectors = aligned(offset, len)?;
                builder.write(PWrite { index: ev.index, sectors, fua: false, tearable: false });
                writes.push(WriteData { offset, len, src: None });
            }
            // A failed request reached no media and made nothing durable.
            Event::Error(_) => {}
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
