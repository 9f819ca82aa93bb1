//! Materializing crash states without copying images: a FUSE file system of *slots*.
//! Each slot file reads as the durable image, then the state's pieces (references into
//! the trace's payloads, later pieces winning), then the private 4 KiB pages that the
//! kernel (journal replay) or a checker wrote. A loop device stays attached to each slot
//! for the whole run; switching states only swaps the overlay. Memory per slot follows
//! what recovery and the checker write, not the size of the state.
//!
//! Which piece covers which bytes, and the latent sector error's range, are kept in
//! `overlay.rs`, apart from FUSE, so that tests check them without root; the tests here
//! read and write a slot through [`Slots`] without mounting it.
//!
//! Slot files are cached by the kernel like any FUSE file, so reads of a slot come in
//! readahead-sized requests (journal replay reads 4 KiB blocks one by one: through
//! FOPEN_DIRECT_IO each was a round trip to the daemon, and mounting a state of a trace
//! with a long journal took 3.4× as long). When a slot's state changes ([`Slots::set`]),
//! the kernel's cached pages are dropped where the old and the new state can read
//! differently: both states' pieces, the pages written in the old one, and where the
//! durable image advanced since ([`Slots::durable_changed`]); everything else reads the
//! same in both and stays cached (a FUSE inode invalidation per range, checked: an error
//! stops the state before it is mounted). The loop device's own block cache is dropped
//! (BLKFLSBUF) by the caller before each mount. The test
//! `what_a_checker_sees_is_the_state_replayed_alone` holds this to account: every
//! checker's view equals its state replayed on a loop device of its own.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use brink_trace::TraceReader;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
};

use crate::footprint::{Piece, Src};
use crate::overlay::{Overlay, PAGE, page_ranges};

/// Above this many ranges to drop from a slot file's cache, the whole file is dropped
/// (each range is one notification to the kernel).
const INVAL_RANGES_MAX: usize = 64;

/// Why a slot cannot serve a read or a write; the FUSE reply is EIO either way.
#[derive(Debug, thiserror::Error)]
enum SlotError {
    #[error("cannot read the durable image")]
    Durable(#[source] std::io::Error),
    #[error("cannot read a write's payload from the trace")]
    Payload(#[source] brink_trace::TraceError),
    #[error("the read touches the state's latent sector error")]
    Latent,
}
const ROOT: INodeNo = INodeNo(1);
const TTL: Duration = Duration::from_secs(60);

/// What the engine and the FUSE daemon share.
pub struct Slots {
    base: File,
    size: u64,
    reader: Arc<TraceReader>,
    overlays: Vec<Mutex<Overlay>>,
    /// Per slot: byte ranges the kernel may have cached otherwise than the slot's next
    /// state reads (the durable image changed there, or an overlay was cleared).
    stale: Vec<Mutex<Vec<(u64, u64)>>>,
    /// Drops the kernel's cached pages of a slot file when its state changes (set once
    /// the slots are mounted; tests that read through [`Slots`] have none).
    notifier: std::sync::OnceLock<fuser::Notifier>,
}

impl Slots {
    pub fn new(base: File, size: u64, reader: Arc<TraceReader>, count: usize) -> Arc<Slots> {
        let overlays = (0..count).map(|_| Mutex::new(Overlay::default())).collect();
        let stale = (0..count).map(|_| Mutex::new(Vec::new())).collect();
        Arc::new(Slots { base, size, reader, overlays, stale, notifier: std::sync::OnceLock::new() })
    }

    pub fn count(&self) -> usize {
        self.overlays.len()
    }

    pub fn file_name(slot: usize) -> String {
        format!("slot{slot}")
    }

    fn page_len(&self, page: u64) -> usize {
        (self.size - page * PAGE).min(PAGE) as usize
    }

    /// The state's bytes at `[offset, offset + buf.len())`, without written pages.
    fn compose(&self, ov: &Overlay, offset: u64, buf: &mut [u8]) -> Result<(), SlotError> {
        self.base.read_exact_at(buf, offset).map_err(SlotError::Durable)?;
        let end = offset + buf.len() as u64;
        for (k, e, src) in ov.meeting(offset, end) {
            let (a, b) = (k.max(offset), e.min(end));
            src.advanced(a - k)
                .read(&self.reader, &mut buf[(a - offset) as usize..(b - offset) as usize])
                .map_err(SlotError::Payload)?;
        }
        Ok(())
    }

    fn page(&self, ov: &Overlay, page: u64) -> Result<Box<[u8]>, SlotError> {
        let mut buf = vec![0u8; self.page_len(page)].into_boxed_slice();
        self.compose(ov, page * PAGE, &mut buf)?;
        Ok(buf)
    }

    fn write_into(&self, ov: &mut Overlay, offset: u64, data: &[u8]) -> Result<(), SlotError> {
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (page, in_page) = (pos / PAGE, (pos % PAGE) as usize);
            let n = (self.page_len(page) - in_page).min(data.len() - done);
            if !ov.pages.contains_key(&page) {
                let p = self.page(ov, page)?;
                ov.pages.insert(page, p);
            }
            let p = ov.pages.get_mut(&page).expect("inserted");
            p[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn read_from(&self, ov: &Overlay, offset: u64, buf: &mut [u8]) -> Result<(), SlotError> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (page, in_page) = (pos / PAGE, (pos % PAGE) as usize);
            let n = (self.page_len(page) - in_page).min(buf.len() - done);
            match ov.pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[in_page..in_page + n]),
                None => self.compose(ov, pos, &mut buf[done..done + n])?,
            }
            done += n;
        }
        Ok(())
    }

    /// Zero a range without materializing it: whole pages in it are dropped and a zero
    /// piece laid under; pages it only touches get zeros written.
    fn zero_range(&self, ov: &mut Overlay, offset: u64, len: u64) -> Result<(), SlotError> {
        let end = offset + len;
        let whole: Vec<u64> =
            ov.pages.keys().copied().filter(|&p| p * PAGE >= offset && p * PAGE + PAGE <= end).collect();
        for p in whole {
            ov.pages.remove(&p);
        }
        for p in [offset / PAGE, (end - 1) / PAGE] {
            let (a, b) = ((p * PAGE).max(offset), (p * PAGE + self.page_len(p) as u64).min(end));
            if ov.pages.contains_key(&p) && a < b {
                self.write_into(ov, a, &vec![0u8; (b - a) as usize])?;
            }
        }
        ov.insert(offset, end, Src::Zero);
        Ok(())
    }

    /// The kernel's channel to the mounted slots, for [`Slots::set`]'s invalidation.
    pub fn set_notifier(&self, n: fuser::Notifier) {
        let _ = self.notifier.set(n);
    }

    /// Make `slot` read as the durable image with `pieces` laid on in order, and drop
    /// whatever of its previous state the kernel cached (an error: the state must not
    /// be mounted, it could read stale pages). Only the ranges where the two states can
    /// differ are dropped: the old state's pieces and written pages, the new state's
    /// pieces, and where the durable image changed since ([`Slots::durable_changed`]).
    /// The rest (most of the journal, the inode tables) stays cached, so a mount reads it
    /// without a round trip to this daemon.
    pub fn set(&self, slot: usize, pieces: Vec<Piece>, bad: Option<(u64, u64)>) -> std::io::Result<()> {
        let ranges = {
            let mut ov = self.overlays[slot].lock().expect("overlay lock");
            let mut ranges = std::mem::take(&mut *self.stale[slot].lock().expect("stale lock"));
            ranges.extend(ov.footprint());
            ov.reset(bad);
            for p in pieces {
                ov.insert(p.offset, p.offset + p.len, p.src);
            }
            ranges.extend(ov.footprint());
            page_ranges(ranges)
        };
        let Some(n) = self.notifier.get() else { return Ok(()) };
        let ino = INodeNo(slot as u64 + 2);
        let whole = [(0, 0)];
        let ranges: &[(u64, u64)] = if ranges.len() > INVAL_RANGES_MAX { &whole } else { &ranges };
        for &(a, b) in ranges {
            let (offset, len) = (i64::try_from(a).unwrap_or(i64::MAX), i64::try_from(b - a).unwrap_or(i64::MAX));
            match n.inval_inode(ino, offset, len) {
                // The kernel has not looked the file up yet: nothing is cached.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                r => r?,
            }
        }
        Ok(())
    }

    /// The durable image changed at `ranges`: every slot's cached pages there are stale.
    /// A slot left unused (a spare) keeps at most a few ranges: past
    /// `INVAL_RANGES_MAX` merged ranges, its whole file is stale.
    pub fn durable_changed(&self, ranges: &[(u64, u64)]) {
        for stale in &self.stale {
            let mut stale = stale.lock().expect("stale lock");
            if stale.first() == Some(&(0, self.size)) {
                continue; // the whole file is stale already
            }
            stale.extend_from_slice(ranges);
            if stale.len() > 4 * INVAL_RANGES_MAX {
                let merged = page_ranges(stale.drain(..));
                *stale = if merged.len() > INVAL_RANGES_MAX { vec![(0, self.size)] } else { merged };
            }
        }
    }

    /// Drop a slot's overlay (and its memory).
    pub fn clear(&self, slot: usize) {
        let old = std::mem::take(&mut *self.overlays[slot].lock().expect("overlay lock"));
        self.stale[slot].lock().expect("stale lock").extend(old.footprint());
    }

    /// What a read of up to `size` bytes at `offset` of `slot` returns: short at the end
    /// of the image, an error where it touches the latent sector error.
    fn read(&self, slot: usize, offset: u64, size: u32) -> Result<Vec<u8>, SlotError> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; u64::from(size).min(self.size - offset) as usize];
        let ov = self.overlays[slot].lock().expect("overlay lock");
        if ov.touches_bad(offset, buf.len() as u64) {
            return Err(SlotError::Latent);
        }
        self.read_from(&ov, offset, &mut buf)?;
        Ok(buf)
    }
}

/// The FUSE face of [`Slots`].
pub struct SlotFs(pub Arc<Slots>);

impl SlotFs {
    fn slot_of(&self, ino: INodeNo) -> Option<usize> {
        (ino.0 >= 2).then(|| (ino.0 - 2) as usize).filter(|&s| s < self.0.count())
    }

    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, size) = if ino == ROOT {
            (FileType::Directory, 0o755, 0)
        } else {
            self.slot_of(ino)?;
            (FileType::RegularFile, 0o600, self.0.size)
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl Filesystem for SlotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let slot = name.to_str().and_then(|n| n.strip_prefix("slot")).and_then(|n| n.parse::<usize>().ok());
        match (parent, slot) {
            (ROOT, Some(s)) if s < self.0.count() => {
                reply.entry(&TTL, &self.attr(INodeNo(s as u64 + 2)).expect("slot"), Generation(0))
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.slot_of(ino) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::EISDIR),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(slot) = self.slot_of(ino) else { return reply.error(Errno::EISDIR) };
        match self.0.read(slot, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(slot) = self.slot_of(ino) else { return reply.error(Errno::EISDIR) };
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > self.0.size) {
            return reply.error(Errno::ENOSPC);
        }
        let mut ov = self.0.overlays[slot].lock().expect("overlay lock");
        match self.0.write_into(&mut ov, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    /// A write is in the overlay before its reply, so a flush has nothing to do. ENOSYS
    /// says so to the kernel once for all (it then answers every later fsync itself):
    /// the loop device flushes a slot about 14 times a state (each journal commit, the
    /// unmount), and those round trips to this daemon cost 10% of the bench's states/s.
    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(slot) = self.slot_of(ino) else { return reply.error(Errno::EOPNOTSUPP) };
        if offset.checked_add(length).is_none_or(|end| end > self.0.size) {
            return reply.error(Errno::EINVAL);
        }
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        match mode {
            0 | libc::FALLOC_FL_KEEP_SIZE => reply.ok(),
            PUNCH | ZERO => {
                let mut ov = self.0.overlays[slot].lock().expect("overlay lock");
                match self.0.zero_range(&mut ov, offset, length) {
                    Ok(()) => reply.ok(),
                    Err(_) => reply.error(Errno::EIO),
                }
            }
            _ => reply.error(Errno::EOPNOTSUPP),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        for i in offset as usize..self.0.count() {
            if reply.add(INodeNo(i as u64 + 2), i as u64 + 1, FileType::RegularFile, Slots::file_name(i)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(self.0.size / 4096, 0, 0, self.0.count() as u64, 0, 4096, 255, 4096);
    }
}

#[cfg(test)]
mod tests {
    //! A slot's reads and writes without FUSE: the durable image is a file of `.`, the
    //! pieces come from a tiny trace, and each image is shown as runs of one byte
    //! ("[start,end) byte"), `0` for zeros and `~` for a media fault's garbage.

    use std::path::Path;

    use brink_trace::{Event, TraceMeta, TraceWriter, WriteFlags};
    use expect_test::expect;

    use super::*;

    /// Three pages and a quarter: the last page is short.
    const SIZE: u64 = 3 * PAGE + 1024;

    /// Slots over a durable image of `.`, and the trace's writes: 2048 `A`, 1024 `B`.
    fn rig(dir: &Path) -> (Arc<Slots>, Vec<Arc<brink_trace::Write>>) {
        let mut w = TraceWriter::create(&dir.join("t")).unwrap();
        std::fs::write(w.base_image_path(), vec![b'.'; SIZE as usize]).unwrap();
        w.write(0, &[b'A'; 2048], WriteFlags::default()).unwrap();
        w.write(0, &[b'B'; 1024], WriteFlags::default()).unwrap();
        let reader = TraceReader::open(&w.finish(TraceMeta::new("test", "ext4", SIZE)).unwrap()).unwrap();
        let writes = reader
            .events()
            .unwrap()
            .filter_map(|e| match e.unwrap().event {
                Event::Write(w) => Some(Arc::new(w)),
                _ => None,
            })
            .collect();
        let base = File::open(reader.base_image_path()).unwrap();
        (Slots::new(base, SIZE, Arc::new(reader), 1), writes)
    }

    fn piece(offset: u64, len: u64, src: Src) -> Piece {
        Piece { offset, len, src }
    }

    fn runs(bytes: &[u8], at: u64) -> String {
        let show = |b: u8| match b {
            b'.' | b'A'..=b'Z' => b as char,
            0 => '0',
            _ => '~',
        };
        let mut out: Vec<String> = Vec::new();
        let mut start = 0;
        for i in 1..=bytes.len() {
            if i == bytes.len() || show(bytes[i]) != show(bytes[start]) {
                out.push(format!("[{},{}) {}", at + start as u64, at + i as u64, show(bytes[start])));
                start = i;
            }
        }
        out.join("\n")
    }

    /// The whole slot as read through `Slots::read`, in reads of at most 4 KiB, and
    /// checked against unaligned reads of its parts.
    fn image(slots: &Slots) -> String {
        let mut all = Vec::new();
        while (all.len() as u64) < SIZE {
            all.extend(slots.read(0, all.len() as u64, PAGE as u32).unwrap());
        }
        for (offset, len) in [(1, 10), (1000, 5000), (4095, 2), (SIZE - 7, 100), (0, SIZE as u32)] {
            let got = slots.read(0, offset, len).unwrap();
            assert_eq!(got, all[offset as usize..(offset + len as u64).min(SIZE) as usize], "{offset}+{len}");
        }
        runs(&all, 0)
    }

    fn pages(slots: &Slots) -> Vec<(u64, usize)> {
        let ov = slots.overlays[0].lock().unwrap();
        let mut pages: Vec<(u64, usize)> = ov.pages.iter().map(|(&p, b)| (p, b.len())).collect();
        pages.sort_unstable();
        pages
    }

    #[test]
    fn pieces_are_read_over_the_durable_image_later_ones_winning() {
        let tmp = tempfile::tempdir().unwrap();
        let (slots, w) = rig(tmp.path());
        let (a, b) = (Src::Write(w[0].clone(), 0), Src::Write(w[1].clone(), 0));
        let pieces = vec![
            piece(1024, 2048, a.clone()),
            piece(2560, 1024, b),
            // Across the boundary of pages 0 and 1.
            piece(3584, 1024, Src::Zero),
            piece(2 * PAGE + 100, 8, Src::Garbage { seed: 7, offset: 0 }),
            // A piece from the middle of a write, as a torn write gives.
            piece(12000, 512, a.advanced(1024)),
            // To the end of the short last page.
            piece(SIZE - 124, 124, Src::Zero),
        ];
        slots.set(0, pieces, None).unwrap();
        expect![[r#"
            [0,1024) .
            [1024,2560) A
            [2560,3584) B
            [3584,4608) 0
            [4608,8292) .
            [8292,8300) ~
            [8300,12000) .
            [12000,12512) A
            [12512,13188) .
            [13188,13312) 0"#]]
        .assert_eq(&image(&slots));
        assert!(pages(&slots).is_empty(), "reads materialize no page");
        slots.set(0, vec![], None).unwrap();
        expect!["[0,13312) ."].assert_eq(&image(&slots));
    }

    #[test]
    fn writes_copy_whole_pages_into_the_overlay() {
        let tmp = tempfile::tempdir().unwrap();
        let (slots, w) = rig(tmp.path());
        slots.set(0, vec![piece(1024, 2048, Src::Write(w[0].clone(), 0))], None).unwrap();
        {
            let mut ov = slots.overlays[0].lock().unwrap();
            // Across pages 0 and 1, then the last bytes of the short last page.
            slots.write_into(&mut ov, PAGE - 6, &[b'W'; 10]).unwrap();
            slots.write_into(&mut ov, SIZE - 4, &[b'W'; 4]).unwrap();
        }
        expect!["[(0, 4096), (1, 4096), (3, 1024)]"].assert_eq(&format!("{:?}", pages(&slots)));
        expect![[r#"
            [0,1024) .
            [1024,3072) A
            [3072,4090) .
            [4090,4100) W
            [4100,13308) .
            [13308,13312) W"#]]
        .assert_eq(&image(&slots));
        // A new state forgets the pages.
        slots.set(0, vec![], None).unwrap();
        assert!(pages(&slots).is_empty());
        expect!["[0,13312) ."].assert_eq(&image(&slots));
    }

    #[test]
    fn zero_range_drops_whole_pages_and_zeroes_the_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let (slots, w) = rig(tmp.path());
        slots.set(0, vec![piece(1024, 2048, Src::Write(w[0].clone(), 0))], None).unwrap();
        let mut ov = slots.overlays[0].lock().unwrap();
        for at in [100, PAGE + 10, 2 * PAGE + 4000] {
            slots.write_into(&mut ov, at, &[b'W'; 10]).unwrap();
        }
        // [2048, 11240): page 1 whole, pages 0 and 2 in part.
        slots.zero_range(&mut ov, 2048, 2 * PAGE + 1000).unwrap();
        drop(ov);
        expect!["[(0, 4096), (2, 4096)]"].assert_eq(&format!("{:?}", pages(&slots)));
        expect![[r#"
            [0,100) .
            [100,110) W
            [110,1024) .
            [1024,2048) A
            [2048,11240) 0
            [11240,12192) .
            [12192,12202) W
            [12202,13312) ."#]]
        .assert_eq(&image(&slots));
        // Inside one written page.
        slots.zero_range(&mut slots.overlays[0].lock().unwrap(), 105, 100).unwrap();
        expect![[r#"
            [0,100) .
            [100,105) W
            [105,205) 0
            [205,1024) .
            [1024,2048) A
            [2048,11240) 0
            [11240,12192) .
            [12192,12202) W
            [12202,13312) ."#]]
        .assert_eq(&image(&slots));
    }

    /// A slot that is never set (a spare) does not pile up the durable image's changes:
    /// past a few ranges they merge, and past `INVAL_RANGES_MAX` the whole file is stale.
    #[test]
    fn stale_ranges_stay_bounded_and_a_set_takes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (slots, _) = rig(tmp.path());
        let stale = |slots: &Slots| slots.stale[0].lock().unwrap().clone();
        slots.durable_changed(&[(0, 10), (8192, 8200)]);
        assert_eq!(stale(&slots), [(0, 10), (8192, 8200)]);
        for i in 0..1000u64 {
            slots.durable_changed(&[(i * 2 * PAGE, i * 2 * PAGE + 1)]);
            assert!(stale(&slots).len() <= 4 * INVAL_RANGES_MAX + 1);
        }
        assert_eq!(stale(&slots), [(0, SIZE)]);
        slots.set(0, vec![], None).unwrap();
        assert!(stale(&slots).is_empty());
    }

    #[test]
    fn reads_touching_a_latent_sector_error_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let (slots, _) = rig(tmp.path());
        slots.set(0, vec![], Some((PAGE, PAGE + 512))).unwrap();
        let reads = [(0, 4096), (4096, 512), (4000, 200), (4607, 1), (4608, 512), (SIZE, 10), (SIZE - 10, 4096)];
        let show = |slots: &Slots| {
            let got = reads.map(|(offset, size)| match slots.read(0, offset, size) {
                Ok(buf) => format!("{offset}+{size}: {} bytes", buf.len()),
                Err(e) => format!("{offset}+{size}: {e}"),
            });
            got.join("\n")
        };
        expect![[r#"
            0+4096: 4096 bytes
            4096+512: the read touches the state's latent sector error
            4000+200: the read touches the state's latent sector error
            4607+1: the read touches the state's latent sector error
            4608+512: 512 bytes
            13312+10: 0 bytes
            13302+4096: 10 bytes"#]]
        .assert_eq(&show(&slots));
        // The error belongs to the state: clearing the slot lifts it.
        slots.clear(0);
        assert!(show(&slots).lines().all(|l| l.ends_with(" bytes")));
    }
}
