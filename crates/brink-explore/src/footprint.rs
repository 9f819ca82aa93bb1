//! The footprint of an epoch: every sector any of its writes touches, with the durable
//! content there. A crash state of the epoch differs from the durable image only inside
//! the footprint, so its content and hash are computed over the footprint alone.

use std::fs::File;
use std::os::unix::fs::FileExt;

use brink_pmodel::{CrashState, Epoch, WriteChoice};
use brink_trace::SECTOR_BYTES;

use crate::adhash::ImageHash;
use crate::plan::WriteData;

const S: u64 = SECTOR_BYTES;

#[derive(Debug)]
pub struct Footprint {
    /// Disjoint, sorted: (first sector, sectors, offset into the content buffers).
    ranges: Vec<(u64, u64, usize)>,
    /// The durable content of the footprint.
    pub durable: Vec<u8>,
    /// The durable image's hash minus the footprint's durable terms.
    outside: ImageHash,
}

impl Footprint {
    pub fn new(writes: &[WriteData], durable_image: &File, durable_hash: ImageHash) -> std::io::Result<Footprint> {
        let mut spans: Vec<(u64, u64)> = writes.iter().map(|w| (w.offset / S, (w.offset + w.len) / S)).collect();
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let mut ranges = Vec::with_capacity(merged.len());
        let mut off = 0usize;
        for (a, b) in merged {
            ranges.push((a, b - a, off));
            off += ((b - a) * S) as usize;
        }
        let mut durable = vec![0u8; off];
        let mut outside = durable_hash;
        for &(first, n, at) in &ranges {
            let buf = &mut durable[at..at + (n * S) as usize];
            durable_image.read_exact_at(buf, first * S)?;
            outside.sub_sectors(first, buf);
        }
        Ok(Footprint { ranges, durable, outside })
    }

    fn locate(&self, sector: u64) -> usize {
        let i = self.ranges.partition_point(|&(first, n, _)| first + n <= sector);
        let (first, n, at) = self.ranges[i];
        assert!(sector >= first && sector < first + n, "sector {sector} outside the footprint");
        at + ((sector - first) * S) as usize
    }

    /// Apply a write's sectors kept by `keep` (by sector number within the write).
    fn apply(&self, buf: &mut [u8], w: &WriteData, keep: impl Fn(u32) -> bool) {
        let first = w.offset / S;
        for i in 0..(w.len / S) {
            if !keep(i as u32) {
                continue;
            }
            let at = self.locate(first + i);
            let dst = &mut buf[at..at + S as usize];
            if w.bytes.is_empty() {
                dst.fill(0);
            } else {
                dst.copy_from_slice(&w.bytes[(i * S) as usize..((i + 1) * S) as usize]);
            }
        }
    }

    /// The footprint content of `state`: durable bytes, then, in completion order,
    /// every write before the crash point that persisted (whole or in part).
    pub fn content(&self, epoch: &Epoch, writes: &[WriteData], state: &CrashState) -> Vec<u8> {
        let mut buf = self.durable.clone();
        for (pw, wd) in epoch.writes.iter().zip(writes) {
            if pw.index >= state.id.position {
                break;
            }
            let choice = state.id.choices.binary_search_by_key(&pw.index, |(i, _)| *i).ok().map(|k| &state.id.choices[k].1);
            match choice {
                None => self.apply(&mut buf, wd, |_| true),
                Some(WriteChoice::Omitted) => {}
                Some(c @ WriteChoice::Torn(_)) => self.apply(&mut buf, wd, |i| c.keeps_sector(i)),
            }
        }
        buf
    }

    /// The content after every write of the epoch (what the next epoch starts from).
    pub fn all_applied(&self, writes: &[WriteData]) -> Vec<u8> {
        let mut buf = self.durable.clone();
        for w in writes {
            self.apply(&mut buf, w, |_| true);
        }
        buf
    }

    /// The whole image's hash for a footprint content.
    pub fn hash(&self, content: &[u8]) -> ImageHash {
        let mut h = self.outside;
        for &(first, n, at) in &self.ranges {
            h.add_sectors(first, &content[at..at + (n * S) as usize]);
        }
        h
    }

    /// Write a footprint content into an image file.
    pub fn write_to(&self, image: &File, content: &[u8]) -> std::io::Result<()> {
        for &(first, n, at) in &self.ranges {
            image.write_all_at(&content[at..at + (n * S) as usize], first * S)?;
        }
        Ok(())
    }

    /// Byte ranges of a content, for an overlay.
    pub fn pieces<'a>(&'a self, content: &'a [u8]) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        self.ranges.iter().map(move |&(first, n, at)| (first * S, &content[at..at + (n * S) as usize]))
    }
}

/// The additive hash of a whole image file (its non-zero sectors), reading data
/// extents only.
pub fn hash_image(path: &std::path::Path) -> std::io::Result<ImageHash> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = ImageHash::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let Some((data, hole)) = brink_trace::image::next_extent(&f, pos)? else { break };
        // Extents are file-system-block aligned, so sector aligned.
        let (mut off, end) = (data / S * S, hole.min(len));
        while off < end {
            let n = (end - off).min(buf.len() as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)?;
            h.add_sectors(off / S, &buf[..n]);
            off += n as u64;
        }
        pos = end;
    }
    Ok(h)
}
