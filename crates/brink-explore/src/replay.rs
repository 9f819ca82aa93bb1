//! One crash state as a real image file, for a person (`brink replay`) or a test: the
//! base image, every write made durable by a flush before the crash point, and the
//! epoch's writes before the point as the state id chooses.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use brink_pmodel::{StateId, WriteChoice};
use brink_trace::{image, Event, TraceReader, SECTOR_BYTES};

use crate::ExploreError;

/// What a materialized state is held to.
#[derive(Debug)]
pub struct Materialized {
    /// Marks acknowledged before the crash point.
    pub marks: Vec<String>,
}

pub fn materialize(trace: &Path, id: &StateId, out: &Path) -> Result<Materialized, ExploreError> {
    let reader = TraceReader::open(trace)?;
    if id.position > reader.meta().events {
        return Err(ExploreError::Usage(format!("state {id}: the trace has only {} events", reader.meta().events)));
    }
    // Pass 1: the last flush before the point starts the epoch.
    let mut epoch_start = 0u64;
    for ev in reader.events()? {
        let ev = ev?;
        if ev.index >= id.position {
            break;
        }
        if ev.event == Event::Flush {
            epoch_start = ev.index + 1;
        }
    }
    image::copy_sparse(&reader.base_image_path(), out)?;
    let img = OpenOptions::new().read(true).write(true).open(out).map_err(|e| ExploreError::io(out, e))?;
    let mut marks = Vec::new();
    let mut buf = Vec::new();
    let mut used = 0usize;
    let not_volatile =
        |i: u64| ExploreError::Usage(format!("state {id} does not fit this trace: event {i} is not a volatile write at crash point {}", id.position));
    for ev in reader.events()? {
        let ev = ev?;
        if ev.index >= id.position {
            break;
        }
        let choice = id.choices.binary_search_by_key(&ev.index, |(i, _)| *i).ok().map(|k| &id.choices[k].1);
        let in_epoch = ev.index >= epoch_start;
        if choice.is_some() {
            used += 1;
            let volatile = in_epoch
                && match &ev.event {
                    Event::Write(w) => !w.flags.fua(),
                    Event::Discard { .. } | Event::WriteZeroes { .. } => matches!(choice, Some(WriteChoice::Omitted)),
                    _ => false,
                };
            if !volatile {
                return Err(not_volatile(ev.index));
            }
        }
        match (&ev.event, choice) {
            (Event::Mark { text }, _) => marks.push(text.clone()),
            (_, Some(WriteChoice::Omitted)) | (Event::Flush | Event::Error(_), _) => {}
            (Event::Write(w), c) => {
                reader.read_payload(w, &mut buf)?;
                for (i, sector) in buf.chunks(SECTOR_BYTES as usize).enumerate() {
                    if c.is_none_or(|c| c.keeps_sector(i as u32)) {
                        img.write_all_at(sector, w.offset + i as u64 * SECTOR_BYTES).map_err(|e| ExploreError::io(out, e))?;
                    }
                }
            }
            (Event::Discard { offset, len } | Event::WriteZeroes { offset, len }, _) => {
                image::zero_range(&img, *offset, *len).map_err(|e| ExploreError::io(out, e))?;
            }
        }
    }
    if used != id.choices.len() {
        let first_unused = id.choices.iter().map(|(i, _)| *i).find(|&i| i >= id.position).unwrap_or(id.position);
        return Err(not_volatile(first_unused));
    }
    img.sync_all().map_err(|e| ExploreError::io(out, e))?;
    Ok(Materialized { marks })
}
