//! Counts over a whole trace, computed by streaming its events once.

use serde::Serialize;

use crate::{Event, TraceError, TraceReader};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TraceSummary {
    pub events: u64,
    pub writes: u64,
    pub bytes_written: u64,
    /// Payload bytes stored in the pack (each distinct chunk once).
    pub bytes_stored: u64,
    pub flushes: u64,
    /// Writes flagged FUA (durable on completion).
    pub fua: u64,
    /// Discards and write-zeroes.
    pub discards: u64,
    pub marks: u64,
    /// Requests failed by fault injection.
    pub errors: u64,
    /// Runs of writes and discards between flushes (each run holds at least one).
    pub epochs: u64,
}

impl TraceSummary {
    pub fn compute(reader: &TraceReader) -> Result<TraceSummary, TraceError> {
        let mut s = TraceSummary { bytes_stored: reader.bytes_stored(), ..Default::default() };
        let mut in_epoch = false;
        for ev in reader.events()? {
            s.events += 1;
            match ev?.event {
                Event::Write(w) => {
                    s.writes += 1;
                    s.bytes_written += w.len;
                    s.fua += u64::from(w.flags.fua());
                    in_epoch = true;
                }
                Event::Discard { .. } | Event::WriteZeroes { .. } => {
                    s.discards += 1;
                    in_epoch = true;
                }
                Event::Flush => {
                    s.flushes += 1;
                    s.epochs += u64::from(in_epoch);
                    in_epoch = false;
                }
                Event::Mark { .. } => s.marks += 1,
                Event::Error(_) => s.errors += 1,
            }
        }
        s.epochs += u64::from(in_epoch);
        Ok(s)
    }
}
