//! Epochs and crash points, built from a stream of event kinds.

use serde::Serialize;

/// A write (or discard) as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PWrite {
    /// Event index in the trace.
    pub index: u64,
    /// Length in 512-byte sectors (at least 1).
    pub sectors: u32,
    /// Durable on completion.
    pub fua: bool,
    /// May persist in part under a torn model (writes of data, not discards).
    pub tearable: bool,
}

/// A crash point inside an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CrashPoint {
    /// The crash happens just before this event index.
    pub position: u64,
    /// How many of the epoch's writes completed before the point.
    pub writes_before: usize,
    /// How many marks of the whole trace come before the point.
    pub marks_before: u64,
}

/// The writes of one epoch and its crash points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Epoch {
    /// Epoch number, from 0.
    pub number: u64,
    pub writes: Vec<PWrite>,
    pub points: Vec<CrashPoint>,
}

impl Epoch {
    /// The volatile writes at `point`: completed before it and not FUA, in order.
    pub fn volatile(&self, point: &CrashPoint) -> Vec<PWrite> {
        self.writes[..point.writes_before].iter().filter(|w| !w.fua).copied().collect()
    }
}

/// Feed event kinds in trace order; get back each epoch when it ends.
///
/// A point is made just before every mark and at every epoch end, unless nothing (no
/// write, no mark) happened since the previous point: such a point would repeat it.
#[derive(Debug, Default)]
pub struct EpochBuilder {
    number: u64,
    writes: Vec<PWrite>,
    points: Vec<CrashPoint>,
    marks: u64,
    changed: bool,
}

impl EpochBuilder {
    pub fn new() -> EpochBuilder {
        EpochBuilder::default()
    }

    pub fn write(&mut self, w: PWrite) {
        assert!(w.sectors >= 1, "a write covers at least one sector");
        self.writes.push(w);
        self.changed = true;
    }

    pub fn mark(&mut self, index: u64) {
        self.point(index);
        self.marks += 1;
        self.changed = true;
    }

    fn point(&mut self, position: u64) {
        if self.changed {
            self.points.push(CrashPoint { position, writes_before: self.writes.len(), marks_before: self.marks });
            self.changed = false;
        }
    }

    /// End the epoch at a flush (its event index) or at the end of the trace (the event
    /// count). Returns the epoch, which may have no points.
    pub fn end(&mut self, position: u64) -> Epoch {
        self.point(position);
        let e = Epoch {
            number: self.number,
            writes: std::mem::take(&mut self.writes),
            points: std::mem::take(&mut self.points),
        };
        self.number += 1;
        e
    }
}
