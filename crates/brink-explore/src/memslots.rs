//! Crash states served from memory: a slot is a memory file (`memfd`) under a loop
//! device, holding the whole image of the state being checked. Nothing stands between
//! the loop device and the bytes, where the FUSE slots (`slots.rs`) have the daemon
//! answer every write and every read the kernel's cache misses: on the bench trace a
//! mount and its unmount cost a quarter less.
//!
//! A slot moves from one state to the next by restoring, from the durable image, only
//! where the two can differ: the old state's pieces, where the durable image advanced
//! since (`MemSlots::durable_changed`), and what the kernel wrote while the old state
//! was checked (journal replay, the checker's writes, the unmount). Those writes are
//! read from a tracefs log of the slots' devices (`brink_blockdev::writelog`) after each
//! check; a log that lost events makes every slot restore its whole image. Then the new
//! state's pieces are written. The test `what_a_checker_sees_is_the_state_replayed_alone`
//! holds this to account for both kinds of slot.
//!
//! Memory: each slot holds the image's data (the holes of the durable image stay holes).
//! The rig uses memory slots only where that fits `MEM_SLOTS_BYTES_MAX` over every
//! slot, and never for latent sector errors, which only the FUSE slots can serve (a
//! read that fails).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use brink_blockdev::writelog::{WriteLog, kernel_dev};
use brink_blockdev::{LoopDevice, memory_file};
use brink_trace::{TraceReader, image};

use crate::ExploreError;
use crate::footprint::Piece;
use crate::overlay::{PAGE, merged, page_ranges};
use crate::state_image::{BuildError, write_pieces};

/// The most memory the slots of a run may hold together (their images' data), beyond
/// which the rig serves states from the FUSE slots.
pub(crate) const MEM_SLOTS_BYTES_MAX: u64 = 1 << 30;
/// Bytes restored at a time.
const CHUNK_BYTES: u64 = 1 << 20;
/// Past this many ranges to restore, a slot's ranges are merged.
const DIRTY_RANGES_MAX: usize = 4096;

/// Where a slot may differ from the durable image.
#[derive(Debug)]
enum Dirty {
    Ranges(Vec<(u64, u64)>),
    /// Anywhere (the write log lost events): the whole image is restored.
    Whole,
}

impl Dirty {
    fn add(&mut self, ranges: impl IntoIterator<Item = (u64, u64)>) {
        if let Dirty::Ranges(r) = self {
            r.extend(ranges);
            if r.len() > DIRTY_RANGES_MAX {
                *r = page_ranges(r.drain(..));
            }
        }
    }
}

struct Slot {
    file: Arc<File>,
    dirty: Dirty,
}

struct Inner {
    slots: Vec<Slot>,
    /// Slot by its loop device's number, for the write log's events; the keys are the
    /// devices the log watches.
    by_dev: HashMap<u32, usize>,
    log: WriteLog,
}

/// The memory slots of a run and the log of the writes to their devices.
pub(crate) struct MemSlots {
    size: u64,
    inner: Mutex<Inner>,
}

impl MemSlots {
    /// No slot yet ([`MemSlots::add`] makes them); fails if the write log cannot be set
    /// up (no tracefs), and then the rig uses the FUSE slots.
    pub(crate) fn new(size: u64) -> Result<MemSlots, brink_blockdev::BlockdevError> {
        let log = WriteLog::open()?;
        let inner = Inner { slots: Vec::new(), by_dev: HashMap::new(), log };
        Ok(MemSlots { size, inner: Mutex::new(inner) })
    }

    /// A new slot holding the durable image, its number and its loop device (named after
    /// `work`, so that the device says whose it is).
    pub(crate) fn add(&self, work: &Path, durable: &File) -> Result<(usize, LoopDevice), ExploreError> {
        let mut inner = self.inner.lock().expect("memory slots");
        let slot = inner.slots.len();
        let name = MemSlots::name(work, slot);
        let file = memory_file(&name, self.size).map_err(|e| ExploreError::io(&name, e))?;
        fill_whole(&file, durable).map_err(|e| ExploreError::io(&name, e))?;
        let dev = LoopDevice::attach(&file, &name, false)?;
        inner.by_dev.insert(kernel_dev(dev.path())?, slot);
        let devs: Vec<u32> = inner.by_dev.keys().copied().collect();
        inner.log.watch(&devs)?;
        inner.slots.push(Slot { file: Arc::new(file), dirty: Dirty::Ranges(Vec::new()) });
        Ok((slot, dev))
    }

    /// What slot `slot` of a run working in `work` is called (in errors, and as its
    /// memory file's name).
    pub(crate) fn name(work: &Path, slot: usize) -> std::path::PathBuf {
        work.join(format!("memslot{slot}"))
    }

    pub(crate) fn count(&self) -> usize {
        self.inner.lock().expect("memory slots").slots.len()
    }

    /// Make `slot` hold the durable image with `pieces` over it (module docs).
    pub(crate) fn set(
        &self,
        slot: usize,
        durable: &File,
        reader: &TraceReader,
        pieces: &[Piece],
    ) -> Result<(), BuildError> {
        let (file, dirty) = {
            let mut inner = self.inner.lock().expect("memory slots");
            let s = &mut inner.slots[slot];
            let pieces = pieces.iter().map(|p| (p.offset, p.offset + p.len));
            let old = std::mem::replace(&mut s.dirty, Dirty::Ranges(pieces.collect()));
            (s.file.clone(), old)
        };
        match dirty {
            Dirty::Whole => fill_whole(&file, durable)?,
            // Pages the new pieces cover whole are written below anyway.
            Dirty::Ranges(r) => restore(&file, durable, &uncovered(&page_ranges(r), &whole_pages(pieces)))?,
        }
        write_pieces(&file, reader, pieces)
    }

    /// After a check: take the writes the kernel made to every slot since the last call.
    pub(crate) fn checked(&self) -> Result<(), ExploreError> {
        let mut inner = self.inner.lock().expect("memory slots");
        let drained = inner.log.drain()?;
        let Inner { slots, by_dev, .. } = &mut *inner;
        if drained.lost {
            slots.iter_mut().for_each(|s| s.dirty = Dirty::Whole);
            return Ok(());
        }
        for w in drained.writes {
            if let Some(&i) = by_dev.get(&w.dev) {
                slots[i].dirty.add([(w.offset, w.offset + w.len)]);
            }
        }
        Ok(())
    }

    /// The durable image changed at `ranges`: every slot holds the old bytes there.
    pub(crate) fn durable_changed(&self, ranges: &[(u64, u64)]) {
        let mut inner = self.inner.lock().expect("memory slots");
        inner.slots.iter_mut().for_each(|s| s.dirty.add(ranges.iter().copied()));
    }
}

/// Make `slot` hold exactly the durable image: emptied, then its data copied in.
fn fill_whole(slot: &File, durable: &File) -> std::io::Result<()> {
    image::zero_range(slot, 0, slot.metadata()?.len())?;
    image::for_each_data(durable, 4096, |off, bytes| slot.write_all_at(bytes, off))
}

/// The whole pages inside `pieces`, merged and in order.
fn whole_pages(pieces: &[Piece]) -> Vec<(u64, u64)> {
    let inner = pieces.iter().map(|p| (p.offset.div_ceil(PAGE) * PAGE, (p.offset + p.len) / PAGE * PAGE));
    merged(inner.filter(|(a, b)| a < b))
}

/// `ranges` without `cover` (both merged and in order).
fn uncovered(ranges: &[(u64, u64)], cover: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut c = cover.iter().peekable();
    for &(mut a, b) in ranges {
        while let Some(&&(ca, cb)) = c.peek() {
            if cb <= a {
                c.next();
                continue;
            }
            if ca >= b {
                break;
            }
            if ca > a {
                out.push((a, ca));
            }
            a = cb.min(b);
            if cb > b {
                break;
            }
            c.next();
        }
        if a < b {
            out.push((a, b));
        }
    }
    out
}

/// Copy `ranges` of the durable image into `slot`.
fn restore(slot: &File, durable: &File, ranges: &[(u64, u64)]) -> std::io::Result<()> {
    let len = slot.metadata()?.len();
    let mut buf = Vec::new();
    for &(a, b) in ranges {
        let (mut pos, end) = (a.min(len), b.min(len));
        while pos < end {
            let n = (end - pos).min(CHUNK_BYTES);
            buf.resize(n as usize, 0);
            durable.read_exact_at(&mut buf, pos)?;
            slot.write_all_at(&buf, pos)?;
            pos += n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(f: &File) -> Vec<u8> {
        let mut out = vec![0u8; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut out, 0).unwrap();
        out
    }

    /// A memory slot filled from a sparse durable image reads as it; scribbled over, it
    /// reads as it again once the scribbled ranges are restored, and not before.
    #[test]
    fn a_slot_is_filled_whole_and_restored_where_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let durable = File::options().read(true).write(true).create_new(true).open(dir.path().join("d.img")).unwrap();
        durable.set_len(4 << 20).unwrap();
        durable.write_all_at(&[1u8; 4096], 0).unwrap();
        durable.write_all_at(&[2u8; 8192], 1 << 20).unwrap();
        let slot = memory_file(&dir.path().join("slot"), 4 << 20).unwrap();
        slot.write_all_at(&[9u8; 4096], 3 << 20).unwrap(); // what a last state left
        fill_whole(&slot, &durable).unwrap();
        assert!(bytes(&slot) == bytes(&durable));
        let scribbled = [(100, 200), ((1 << 20) + 4096, (1 << 20) + 5000), (2 << 20, (2 << 20) + 1)];
        for &(a, b) in &scribbled {
            slot.write_all_at(&vec![7u8; (b - a) as usize], a).unwrap();
        }
        restore(&slot, &durable, &page_ranges(scribbled[..2].iter().copied())).unwrap();
        assert!(bytes(&slot) != bytes(&durable), "one range left");
        restore(&slot, &durable, &page_ranges(scribbled.iter().copied())).unwrap();
        assert!(bytes(&slot) == bytes(&durable));
    }

    #[test]
    fn what_new_pieces_cover_whole_is_not_restored() {
        let p = |offset, len| Piece { offset, len, src: crate::footprint::Src::Zero };
        let pieces = [p(100, 9000), p(8192, 4096), p(20480, 100)];
        assert_eq!(whole_pages(&pieces), [(4096, 12288)]);
        let ranges = [(0, 16384), (16384, 24576), (40960, 45056)];
        assert_eq!(
            uncovered(&ranges, &whole_pages(&pieces)),
            [(0, 4096), (12288, 16384), (16384, 24576), (40960, 45056)]
        );
        assert_eq!(uncovered(&ranges, &[(0, 1 << 20)]), []);
        assert_eq!(uncovered(&ranges, &[]), ranges);
        assert_eq!(uncovered(&[(0, 4096)], &[(4096, 8192)]), [(0, 4096)]);
        assert_eq!(uncovered(&[(8192, 16384)], &[(0, 4096), (12288, 20480)]), [(8192, 12288)]);
    }

    #[test]
    fn dirty_ranges_merge_past_their_limit_and_whole_stays_whole() {
        let mut d = Dirty::Ranges(Vec::new());
        d.add((0..=DIRTY_RANGES_MAX as u64).map(|i| (i * 10, i * 10 + 1)));
        let Dirty::Ranges(r) = &d else { panic!("ranges") };
        assert_eq!(r, &[(0, 11 * 4096)], "merged into whole pages");
        let mut w = Dirty::Whole;
        w.add([(0, 1)]);
        assert!(matches!(w, Dirty::Whole));
    }
}
