//! The footprint of an epoch: what each crash state of the epoch looks like and hashes
//! to, without building its image.
//!
//! The sectors the epoch writes split into *exclusive* ranges (one write covers them)
//! and *shared* ranges (several writes do, e.g. a journal block rewritten). For an
//! exclusive range the image hash changes by a fixed amount when its write persists:
//! each write's `delta` (new terms minus durable terms) is computed once, streaming its
//! payload from the trace. Shared ranges are small in practice and are kept in memory
//! (durable bytes plus each covering write's bytes) and resolved per state, later
//! persisted writes winning. A state's hash is then the durable hash plus the deltas of
//! its persisted writes plus its shared part: memory follows the shared ranges, not the
//! epoch, and time per state follows the number of writes.
//!
//! A state's image is given to the slots as *pieces* that reference the trace's
//! payloads (`Src`), never as copied bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use brink_pmodel::{CrashState, Epoch, WriteChoice};
use brink_trace::{SECTOR_BYTES, TraceReader, Write};

use crate::ExploreError;
use crate::adhash::ImageHash;
use crate::plan::WriteData;

const S: u64 = SECTOR_BYTES;
/// Bytes read at a time when streaming payloads and durable content.
const STREAM_BYTES: u64 = 1 << 20;

/// Where a piece of a state's image comes from.
#[derive(Debug, Clone)]
pub enum Src {
    /// Bytes of a write's payload, from this offset within the write.
    Write(Arc<Write>, u64),
    Zero,
    /// Deterministic pseudo-random bytes (a media fault's garbage), from this offset in
    /// the stream of `seed`.
    Garbage {
        seed: u64,
        offset: u64,
    },
}

impl Src {
    pub fn advanced(&self, by: u64) -> Src {
        match self {
            Src::Write(w, off) => Src::Write(w.clone(), off + by),
            Src::Zero => Src::Zero,
            Src::Garbage { seed, offset } => Src::Garbage { seed: *seed, offset: offset + by },
        }
    }

    /// Fill `out` from this source.
    pub fn read(&self, reader: &TraceReader, out: &mut [u8]) -> Result<(), brink_trace::TraceError> {
        match self {
            Src::Write(w, off) => reader.read_payload_range(w, *off, out),
            Src::Zero => {
                out.fill(0);
                Ok(())
            }
            Src::Garbage { seed, offset } => {
                let mut xof = blake3::Hasher::new_derive_key("brink media fault garbage")
                    .update(&seed.to_le_bytes())
                    .finalize_xof();
                xof.set_position(*offset);
                xof.fill(out);
                Ok(())
            }
        }
    }
}

/// A piece of a state's image: `len` bytes at disk offset `offset`.
#[derive(Debug, Clone)]
pub struct Piece {
    pub offset: u64,
    pub len: u64,
    pub src: Src,
}

/// How a write fares in a state.
#[derive(Clone, Copy)]
enum Persist<'a> {
    Whole,
    Lost,
    Torn(&'a WriteChoice),
}

impl Persist<'_> {
    fn keeps(&self, sector_in_write: u64) -> bool {
        match self {
            Persist::Whole => true,
            Persist::Lost => false,
            Persist::Torn(c) => c.keeps_sector(sector_in_write as u32),
        }
    }
}

#[derive(Debug)]
struct FpWrite {
    offset: u64,
    len: u64,
    src: Src,
    /// Byte ranges only this write covers in the epoch.
    exclusive: Vec<(u64, u64)>,
    delta: ImageHash,
}

#[derive(Debug)]
struct Shared {
    start: u64,
    durable: Vec<u8>,
    durable_terms: ImageHash,
    /// (write number in the epoch, its bytes here), in completion order.
    layers: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug)]
pub struct Footprint {
    writes: Vec<FpWrite>,
    shared: Vec<Shared>,
    durable_hash: ImageHash,
}

fn read_durable(durable: &File, offset: u64, out: &mut [u8]) -> Result<(), ExploreError> {
    durable.read_exact_at(out, offset).map_err(ExploreError::ReadDurable)
}

/// Terms of `[offset, offset+len)` of `src` minus the durable terms there, only for the
/// sectors `keep` accepts (by sector number relative to `rel0`).
fn delta_of(
    reader: &TraceReader,
    durable: &File,
    src: &Src,
    src_offset_of: impl Fn(u64) -> u64,
    offset: u64,
    len: u64,
    keep: impl Fn(u64) -> bool,
) -> Result<ImageHash, ExploreError> {
    let mut h = ImageHash::default();
    let (mut new, mut old) = (Vec::new(), Vec::new());
    let mut pos = offset;
    while pos < offset + len {
        let n = (offset + len - pos).min(STREAM_BYTES);
        new.resize(n as usize, 0);
        old.resize(n as usize, 0);
        src.advanced(src_offset_of(pos)).read(reader, &mut new)?;
        read_durable(durable, pos, &mut old)?;
        for i in 0..n / S {
            let sector = pos / S + i;
            if keep(sector) {
                let r = (i * S) as usize..((i + 1) * S) as usize;
                h.add(&ImageHash::sector(sector, &new[r.clone()]));
                h.sub(&ImageHash::sector(sector, &old[r]));
            }
        }
        pos += n;
    }
    Ok(h)
}

impl Footprint {
    pub fn new(
        reader: &TraceReader,
        writes: &[WriteData],
        durable: &File,
        durable_hash: ImageHash,
    ) -> Result<Footprint, ExploreError> {
        // Elementary intervals between all write boundaries, with their covering writes.
        let mut bounds: Vec<u64> = writes.iter().flat_map(|w| [w.offset, w.offset + w.len]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut cover: Vec<Vec<usize>> = vec![Vec::new(); bounds.len().saturating_sub(1)];
        for (j, w) in writes.iter().enumerate() {
            let a = bounds.partition_point(|&b| b < w.offset);
            let b = bounds.partition_point(|&b| b < w.offset + w.len);
            for c in &mut cover[a..b] {
                c.push(j);
            }
        }
        let mut fw: Vec<FpWrite> = writes
            .iter()
            .map(|w| FpWrite {
                offset: w.offset,
                len: w.len,
                src: w.src.clone().map_or(Src::Zero, |s| Src::Write(s, 0)),
                exclusive: Vec::new(),
                delta: ImageHash::default(),
            })
            .collect();
        let mut shared: Vec<Shared> = Vec::new();
        for (k, c) in cover.iter().enumerate() {
            let (a, b) = (bounds[k], bounds[k + 1]);
            match c.as_slice() {
                [] => {}
                [j] => match fw[*j].exclusive.last_mut() {
                    Some(last) if last.0 + last.1 == a => last.1 += b - a,
                    _ => fw[*j].exclusive.push((a, b - a)),
                },
                many => {
                    let mut d = vec![0u8; (b - a) as usize];
                    read_durable(durable, a, &mut d)?;
                    let mut terms = ImageHash::default();
                    terms.add_sectors(a / S, &d);
                    let mut layers = Vec::with_capacity(many.len());
                    for &j in many {
                        let mut bytes = vec![0u8; (b - a) as usize];
                        fw[j].src.advanced(a - fw[j].offset).read(reader, &mut bytes)?;
                        layers.push((j, bytes));
                    }
                    shared.push(Shared { start: a, durable: d, durable_terms: terms, layers });
                }
            }
        }
        for w in &mut fw {
            let mut delta = ImageHash::default();
            for &(off, len) in &w.exclusive {
                let base = w.offset;
                delta.add(&delta_of(reader, durable, &w.src, |p| p - base, off, len, |_| true)?);
            }
            w.delta = delta;
        }
        Ok(Footprint { writes: fw, shared, durable_hash })
    }

    /// How each write of the epoch fares in `state` (writes after the point: lost).
    fn persist<'a>(&self, epoch: &Epoch, state: &'a CrashState) -> Vec<Persist<'a>> {
        epoch
            .writes
            .iter()
            .map(|pw| {
                if pw.index >= state.id.position {
                    return Persist::Lost;
                }
                match state.id.choices.binary_search_by_key(&pw.index, |(i, _)| *i) {
                    Err(_) => Persist::Whole,
                    Ok(k) => match &state.id.choices[k].1 {
                        WriteChoice::Omitted => Persist::Lost,
                        c @ WriteChoice::Torn(_) => Persist::Torn(c),
                    },
                }
            })
            .collect()
    }

    fn hash_with(&self, reader: &TraceReader, durable: &File, persist: &[Persist]) -> Result<ImageHash, ExploreError> {
        let mut h = self.durable_hash;
        for (w, p) in self.writes.iter().zip(persist) {
            match p {
                Persist::Whole => h.add(&w.delta),
                Persist::Lost => {}
                Persist::Torn(_) => {
                    let first = w.offset / S;
                    for &(off, len) in &w.exclusive {
                        let base = w.offset;
                        h.add(&delta_of(reader, durable, &w.src, |q| q - base, off, len, |s| p.keeps(s - first))?);
                    }
                }
            }
        }
        let mut buf = Vec::new();
        for sh in &self.shared {
            buf.clear();
            buf.extend_from_slice(&sh.durable);
            for (j, bytes) in &sh.layers {
                let (p, w) = (persist[*j], &self.writes[*j]);
                for i in 0..(buf.len() as u64 / S) {
                    if p.keeps((sh.start - w.offset) / S + i) {
                        let r = (i * S) as usize..((i + 1) * S) as usize;
                        buf[r.clone()].copy_from_slice(&bytes[r]);
                    }
                }
            }
            h.add_sectors(sh.start / S, &buf);
            h.sub(&sh.durable_terms);
        }
        Ok(h)
    }

    /// The additive hash of the state's image (before recovery).
    pub fn hash(
        &self,
        reader: &TraceReader,
        durable: &File,
        epoch: &Epoch,
        state: &CrashState,
    ) -> Result<ImageHash, ExploreError> {
        self.hash_with(reader, durable, &self.persist(epoch, state))
    }

    /// The hash once every write of the epoch persisted (the next durable image).
    pub fn hash_all(&self, reader: &TraceReader, durable: &File) -> Result<ImageHash, ExploreError> {
        self.hash_with(reader, durable, &vec![Persist::Whole; self.writes.len()])
    }

    /// The state's writes as pieces, in completion order (later pieces win).
    pub fn pieces(&self, epoch: &Epoch, state: &CrashState) -> Vec<Piece> {
        let mut out = Vec::new();
        for (w, p) in self.writes.iter().zip(self.persist(epoch, state)) {
            match p {
                Persist::Lost => {}
                Persist::Whole => out.push(Piece { offset: w.offset, len: w.len, src: w.src.clone() }),
                Persist::Torn(_) => {
                    // Runs of kept sectors.
                    let n = w.len / S;
                    let mut i = 0;
                    while i < n {
                        if !p.keeps(i) {
                            i += 1;
                            continue;
                        }
                        let start = i;
                        while i < n && p.keeps(i) {
                            i += 1;
                        }
                        out.push(Piece {
                            offset: w.offset + start * S,
                            len: (i - start) * S,
                            src: w.src.advanced(start * S),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every write of the epoch as a whole piece, in completion order: the epoch made
    /// durable, laid over an image that lags behind it.
    pub fn pieces_all(&self) -> impl Iterator<Item = Piece> + '_ {
        self.writes.iter().map(|w| Piece { offset: w.offset, len: w.len, src: w.src.clone() })
    }

    /// Apply every write of the epoch to the durable image, streaming payloads.
    /// The byte ranges the epoch's writes cover.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.writes.iter().map(|w| (w.offset, w.offset + w.len)).collect()
    }

    pub fn apply_all(&self, reader: &TraceReader, durable: &File) -> Result<(), ExploreError> {
        let mut buf = Vec::new();
        for w in &self.writes {
            let mut pos = 0u64;
            while pos < w.len {
                let n = (w.len - pos).min(STREAM_BYTES);
                buf.resize(n as usize, 0);
                w.src.advanced(pos).read(reader, &mut buf)?;
                durable.write_all_at(&buf, w.offset + pos).map_err(ExploreError::WriteDurable)?;
                pos += n;
            }
        }
        Ok(())
    }
}

/// The additive hash of a whole image file (its non-zero sectors), reading data
/// extents only.
pub fn hash_image(path: &std::path::Path) -> std::io::Result<ImageHash> {
    let mut h = ImageHash::default();
    brink_trace::image::for_each_data(&File::open(path)?, S, |off, bytes| {
        h.add_sectors(off / S, bytes);
        Ok(())
    })?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    //! A footprint on hand-made epochs: the pieces of chosen states (dropped, torn and
    //! overlapping writes, a discard), and, for every state of a torn-sector model, the
    //! additive hash and the image the pieces build agreeing with `replay::materialize`.

    use std::path::{Path, PathBuf};

    use brink_pmodel::{CacheModel, Model, StateId, StateIter, Strategy, Torn};
    use brink_trace::{TraceMeta, TraceWriter, WriteFlags};
    use expect_test::expect;

    use super::*;
    use crate::plan::{self, EpochData};

    const IMAGE: u64 = 64 * S;
    const TORN_SECTOR: Model = Model { cache: CacheModel::Writeback, torn: Torn::Sector };

    /// Over a base image of `x`: epoch 0 writes A over sectors 0..4 (0), B over 2..4 (1),
    /// a mark (2), C over 16 (3), discards 20..22 (4), flushes (5); epoch 1 writes D over
    /// 1..3 (6) and E over 30 (7).
    fn trace(dir: &Path) -> PathBuf {
        let mut w = TraceWriter::create(&dir.join("t")).unwrap();
        std::fs::write(w.base_image_path(), vec![b'x'; IMAGE as usize]).unwrap();
        let plain = WriteFlags::default();
        w.write(0, &[b'A'; 4 * S as usize], plain).unwrap();
        w.write(2 * S, &[b'B'; 2 * S as usize], plain).unwrap();
        w.mark("m").unwrap();
        w.write(16 * S, &[b'C'; S as usize], plain).unwrap();
        w.discard(20 * S, 2 * S).unwrap();
        w.flush().unwrap();
        w.write(S, &[b'D'; 2 * S as usize], plain).unwrap();
        w.write(30 * S, &[b'E'; S as usize], plain).unwrap();
        w.finish(TraceMeta::new("test", "ext4", IMAGE)).unwrap()
    }

    /// Walk the epochs as the explorer does: a footprint over the durable image, then
    /// the epoch's writes applied to it. `each` sees the durable image's path.
    fn for_each_footprint(t: &Path, mut each: impl FnMut(&TraceReader, &EpochData, &Footprint, &Path)) {
        let reader = TraceReader::open(t).unwrap();
        let durable_path = t.with_file_name("durable.img");
        brink_trace::image::copy_sparse(&reader.base_image_path(), &durable_path).unwrap();
        let durable = File::options().read(true).write(true).open(&durable_path).unwrap();
        let mut durable_hash = hash_image(&durable_path).unwrap();
        let mut marks = Vec::new();
        plan::for_each_epoch(&reader, &mut marks, |ed, _| {
            let fp = Footprint::new(&reader, &ed.writes, &durable, durable_hash)?;
            each(&reader, &ed, &fp, &durable_path);
            durable_hash = fp.hash_all(&reader, &durable)?;
            fp.apply_all(&reader, &durable)?;
            assert_eq!(durable_hash, hash_image(&durable_path).unwrap(), "epoch {}", ed.epoch.number);
            Ok(true)
        })
        .unwrap();
    }

    /// Pieces in sectors, each naming its write by event index ("w3+1": write 3, from its
    /// sector 1), then the state's first 32 sectors as their first bytes.
    fn show(ed: &EpochData, reader: &TraceReader, durable: &Path, id: &str, pieces: &[Piece]) -> String {
        let name = |src: &Src| match src {
            Src::Write(w, off) => {
                let j = ed.writes.iter().position(|d| d.src.as_ref().is_some_and(|s| Arc::ptr_eq(s, w))).unwrap();
                format!("w{}+{}", ed.epoch.writes[j].index, off / S)
            }
            Src::Zero => "zero".into(),
            Src::Garbage { .. } => "garbage".into(),
        };
        let runs: Vec<String> =
            pieces.iter().map(|p| format!("[{},{}) {}", p.offset / S, (p.offset + p.len) / S, name(&p.src))).collect();
        let img = durable.with_file_name(format!("{id}.img"));
        crate::state_image::build(durable, reader, pieces, &img).unwrap();
        let bytes = std::fs::read(&img).unwrap();
        std::fs::remove_file(&img).unwrap();
        let sectors: String =
            (0..32).map(|s| bytes[s * S as usize]).map(|b| if b == 0 { '0' } else { b as char }).collect();
        let runs = if runs.is_empty() { "no pieces".into() } else { runs.join(" ") };
        format!("{id:<10} {sectors}  {runs}")
    }

    fn state(id: &str) -> CrashState {
        CrashState { id: id.parse::<StateId>().unwrap(), epoch: 0, marks_before: 0 }
    }

    #[test]
    fn pieces_of_chosen_states() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trace(tmp.path());
        let chosen: [&[&str]; 2] =
            [&["5", "5-1", "5-0", "5-4", "5-0t9", "5-0t6-1t1", "5-1t2", "2", "2-0-1"], &["8", "8-6", "8-6t2", "8-6-7"]];
        let mut lines = Vec::new();
        for_each_footprint(&t, |reader, ed, fp, durable| {
            for id in chosen[ed.epoch.number as usize] {
                lines.push(show(ed, reader, durable, id, &fp.pieces(&ed.epoch, &state(id))));
            }
        });
        expect![[r#"
            5          AABBxxxxxxxxxxxxCxxx00xxxxxxxxxx  [0,4) w0+0 [2,4) w1+0 [16,17) w3+0 [20,22) zero
            5-1        AAAAxxxxxxxxxxxxCxxx00xxxxxxxxxx  [0,4) w0+0 [16,17) w3+0 [20,22) zero
            5-0        xxBBxxxxxxxxxxxxCxxx00xxxxxxxxxx  [2,4) w1+0 [16,17) w3+0 [20,22) zero
            5-4        AABBxxxxxxxxxxxxCxxxxxxxxxxxxxxx  [0,4) w0+0 [2,4) w1+0 [16,17) w3+0
            5-0t9      AxBBxxxxxxxxxxxxCxxx00xxxxxxxxxx  [0,1) w0+0 [3,4) w0+3 [2,4) w1+0 [16,17) w3+0 [20,22) zero
            5-0t6-1t1  xABxxxxxxxxxxxxxCxxx00xxxxxxxxxx  [1,3) w0+1 [2,3) w1+0 [16,17) w3+0 [20,22) zero
            5-1t2      AAABxxxxxxxxxxxxCxxx00xxxxxxxxxx  [0,4) w0+0 [3,4) w1+1 [16,17) w3+0 [20,22) zero
            2          AABBxxxxxxxxxxxxxxxxxxxxxxxxxxxx  [0,4) w0+0 [2,4) w1+0
            2-0-1      xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  no pieces
            8          ADDBxxxxxxxxxxxxCxxx00xxxxxxxxEx  [1,3) w6+0 [30,31) w7+0
            8-6        AABBxxxxxxxxxxxxCxxx00xxxxxxxxEx  [30,31) w7+0
            8-6t2      AADBxxxxxxxxxxxxCxxx00xxxxxxxxEx  [2,3) w6+1 [30,31) w7+0
            8-6-7      AABBxxxxxxxxxxxxCxxx00xxxxxxxxxx  no pieces"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn every_states_hash_and_image_are_those_of_materialize() {
        let tmp = tempfile::tempdir().unwrap();
        let t = trace(tmp.path());
        let img = tmp.path().join("materialized.img");
        let mut checked = Vec::new();
        for_each_footprint(&t, |reader, ed, fp, durable| {
            let durable_file = File::open(durable).unwrap();
            let mut n = 0;
            for p in &ed.epoch.points {
                for s in StateIter::new(TORN_SECTOR, Strategy::Exhaustive, &ed.epoch, p, &[]) {
                    let _ = std::fs::remove_file(&img);
                    crate::replay::materialize(&t, &s.id, &img).unwrap();
                    let hash = fp.hash(reader, &durable_file, &ed.epoch, &s).unwrap();
                    assert_eq!(hash, hash_image(&img).unwrap(), "state {}", s.id);
                    let built = durable.with_file_name("built.img");
                    crate::state_image::build(durable, reader, &fp.pieces(&ed.epoch, &s), &built).unwrap();
                    assert!(std::fs::read(&built).unwrap() == std::fs::read(&img).unwrap(), "state {}", s.id);
                    std::fs::remove_file(&built).unwrap();
                    n += 1;
                }
            }
            checked.push(format!("epoch {}: {n} states", ed.epoch.number));
        });
        expect![[r#"
            epoch 0: 320 states
            epoch 1: 8 states"#]]
        .assert_eq(&checked.join("\n"));
    }
}
