//! A call's user stack, unwound after the recording from what the kernel half copied
//! (registers and the top of the stack) and the process's memory map as the tracer read
//! it, through each object's DWARF call-frame information (`.eh_frame`), by `framehop`
//! (the unwinder of the samply profiler). The frames come out as strace's `-k` gives
//! them, object and file offset, for brink-calls' `Symbolizer`.
//!
//! Objects are read from disk when the trace is decoded, as the symbolizer does: a
//! library replaced since the recording unwinds wrong. Only the copied top of the stack
//! can be walked: a deeper stack ends early and is marked truncated.

use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use brink_calls::{Frame, STACK_FRAMES_MAX};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Module, ModuleSectionInfo, Unwinder};
use object::{Object, ObjectSection, ObjectSegment};

use crate::events::Regs;
use crate::images::Mapping;

/// Section bytes shared between the unwinders of every process that maps the object.
#[derive(Clone)]
struct Bytes(Arc<[u8]>);

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// What unwinding needs of one ELF object.
#[derive(Clone)]
struct Elf {
    /// Section name → its address range and (for the unwind sections) its bytes.
    sections: HashMap<Vec<u8>, (Range<u64>, Option<Bytes>)>,
    /// `(file offset, file size, virtual address)` of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

/// The sections whose bytes framehop reads.
const UNWIND_SECTIONS: &[&str] = &[".eh_frame", ".eh_frame_hdr", ".debug_frame"];

impl Elf {
    fn open(path: &Path) -> Option<Elf> {
        let cache = object::ReadCache::new(std::fs::File::open(path).ok()?);
        let file = object::File::parse(&cache).ok()?;
        let mut sections = HashMap::new();
        for s in file.sections() {
            let Ok(name) = s.name() else { continue };
            let range = s.address()..s.address().saturating_add(s.size());
            let data = UNWIND_SECTIONS.contains(&name).then(|| s.data().ok().map(|d| Bytes(d.into()))).flatten();
            sections.insert(name.as_bytes().to_vec(), (range, data));
        }
        let segments = file.segments().map(|s| (s.file_range().0, s.file_range().1, s.address())).collect();
        Some(Elf { sections, segments })
    }
}

impl ModuleSectionInfo<Bytes> for Elf {
    fn base_svma(&self) -> u64 {
        0
    }
    fn section_svma_range(&mut self, name: &[u8]) -> Option<Range<u64>> {
        self.sections.get(name).map(|(r, _)| r.clone())
    }
    fn section_data(&mut self, name: &[u8]) -> Option<Bytes> {
        self.sections.get(name).and_then(|(_, d)| d.clone())
    }
}

fn parse_maps(text: &[u8]) -> Vec<Mapping> {
    let line = |l: &[u8]| -> Option<Mapping> {
        let l = std::str::from_utf8(l).ok()?;
        let mut f = l.splitn(6, ' ');
        let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
        let path = f.nth(2)?.trim_start();
        let (a, b) = range.split_once('-')?;
        let range = u64::from_str_radix(a, 16).ok()?..u64::from_str_radix(b, 16).ok()?;
        let exec = perms.as_bytes().get(2) == Some(&b'x');
        let path = PathBuf::from(path.strip_suffix(" (deleted)").unwrap_or(path));
        Some(Mapping { range, offset: u64::from_str_radix(offset, 16).ok()?, exec, path })
    };
    text.split(|b| *b == b'\n').filter_map(line).filter(|m| m.path.is_absolute()).collect()
}

/// A process's unwinder at one memory map, with the map to name the frames.
struct Space {
    unwinder: UnwinderX86_64<Bytes>,
    maps: Vec<Mapping>,
}

/// The objects unwinding has read, each once.
#[derive(Default)]
struct Objects(HashMap<PathBuf, Option<Elf>>);

/// Unwinds as the calls arrive, in the tracer's thread, while their processes are alive
/// and their memory maps current: the events file then holds a call's frames, not the
/// 8 KiB of its stack.
pub(crate) struct Live {
    on: bool,
    objects: Objects,
    spaces: HashMap<u32, Space>,
    cache: CacheX86_64,
}

impl Live {
    /// Off (`on` false), it unwinds nothing and every stack is kept.
    pub(crate) fn new(on: bool) -> Live {
        Live { on, objects: Objects::default(), spaces: HashMap::new(), cache: CacheX86_64::new() }
    }

    /// The tracer read process `pid`'s memory map (`/proc/PID/maps`, file-backed lines).
    pub(crate) fn maps_read(&mut self, pid: u32, text: &[u8]) {
        if !self.on {
            return;
        }
        let space = self.objects.space(&parse_maps(text));
        self.spaces.insert(pid, space);
    }

    /// The call's frames, if its process's map was read.
    pub(crate) fn unwind(&mut self, pid: u32, regs: Regs, stack: &[u8]) -> Option<(Vec<Frame>, bool)> {
        let space = self.spaces.get(&pid)?;
        Some(walk(space, &mut self.cache, regs, stack))
    }
}

/// Walk one stack: its frames, innermost first, and whether it went on past what was
/// copied (or past [`STACK_FRAMES_MAX`]).
fn walk(space: &Space, cache: &mut CacheX86_64, regs: Regs, stack: &[u8]) -> (Vec<Frame>, bool) {
    let mut read = |addr: u64| -> Result<u64, ()> {
        let at = usize::try_from(addr.checked_sub(regs.sp).ok_or(())?).map_err(|_| ())?;
        stack.get(at..at + 8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))).ok_or(())
    };
    let start = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
    let mut it = space.unwinder.iter_frames(regs.ip, start, cache, &mut read);
    let mut frames = Vec::new();
    loop {
        match it.next() {
            Ok(Some(_)) if frames.len() == STACK_FRAMES_MAX => return (frames, true),
            Ok(Some(addr)) => frames.push(frame(&space.maps, addr)),
            Ok(None) => return (frames, false),
            Err(_) => return (frames, true),
        }
    }
}

/// Unwinds the calls of one trace: objects loaded once, a [`Space`] per memory map read.
pub(crate) struct Stacks {
    objects: Objects,
    /// Per process, its memory maps in the order read: `(from call seq, text)`.
    maps: HashMap<u32, Vec<(u64, Vec<u8>)>>,
    spaces: HashMap<(u32, u64), Space>,
    cache: CacheX86_64,
}

impl Stacks {
    pub(crate) fn new(maps: HashMap<u32, Vec<(u64, Vec<u8>)>>) -> Stacks {
        Stacks { objects: Objects::default(), maps, spaces: HashMap::new(), cache: CacheX86_64::new() }
    }

    /// The frames of call `seq` of process `pid`, innermost first, and whether the stack
    /// went on past what was copied; `None` when nothing says where its objects are
    /// mapped. The memory map the tracer read is preferred; else `derived`, the map the
    /// calls made (`images.rs`), with its version.
    pub(crate) fn unwind(
        &mut self,
        (pid, seq): (u32, u64),
        regs: Regs,
        stack: &[u8],
        derived: Option<(u64, &[Mapping])>,
    ) -> Option<(Vec<Frame>, bool)> {
        let key = match (self.maps.get(&pid), derived) {
            (Some(snaps), _) => (pid, snaps.iter().rposition(|(from, _)| *from <= seq).unwrap_or(0) as u64),
            (None, Some((version, _))) => (pid, u64::MAX - version),
            (None, None) => return None,
        };
        if !self.spaces.contains_key(&key) {
            let maps = match self.maps.get(&pid) {
                Some(snaps) => parse_maps(&snaps[key.1 as usize].1),
                None => derived.map(|(_, m)| m.to_vec()).unwrap_or_default(),
            };
            let space = self.objects.space(&maps);
            self.spaces.insert(key, space);
        }
        Some(walk(&self.spaces[&key], &mut self.cache, regs, stack))
    }
}

impl Objects {
    /// An unwinder over the executable objects of `maps`.
    fn space(&mut self, maps: &[Mapping]) -> Space {
        let mut unwinder = UnwinderX86_64::new();
        for m in maps.iter().filter(|m| m.exec) {
            let elf = self.0.entry(m.path.clone()).or_insert_with_key(|p| Elf::open(p));
            let Some(elf) = elf.clone() else { continue };
            // The image spans every mapping of the file; its base is where virtual
            // address 0 would be, through the segment holding this mapping's offset.
            let image = maps.iter().filter(|o| o.path == m.path);
            let start = image.clone().map(|o| o.range.start).min().unwrap_or(m.range.start);
            let end = image.map(|o| o.range.end).max().unwrap_or(m.range.end);
            let seg = elf.segments.iter().find(|&&(off, size, _)| (off..off + size.max(1)).contains(&m.offset));
            let Some(&(off, _, vaddr)) = seg else { continue };
            let base = (m.range.start + off).wrapping_sub(m.offset).wrapping_sub(vaddr);
            unwinder.add_module(Module::new(m.path.display().to_string(), start..end, base, elf));
        }
        Space { unwinder, maps: maps.to_vec() }
    }
}

/// A frame as strace names it: the object and the address's offset in its file.
fn frame(maps: &[Mapping], addr: FrameAddress) -> Frame {
    let a = addr.address();
    match maps.iter().find(|m| m.range.contains(&a)) {
        Some(m) => Frame { object: m.path.clone(), function: None, offset: a - m.range.start + m.offset, source: None },
        None => Frame { object: PathBuf::from("?"), function: None, offset: a, source: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_with_spaces_and_deleted_files() {
        let text = b"55d0-55d2 r-xp 00001000 08:01 12 /usr/bin/a b\n7f00-7f10 rw-p 00000000 00:00 0 \n7f10-7f20 r-xp 00000000 08:01 13 /lib/x.so (deleted)";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 2);
        assert_eq!((maps[0].range.clone(), maps[0].offset, maps[0].exec), (0x55d0..0x55d2, 0x1000, true));
        assert_eq!(maps[0].path, Path::new("/usr/bin/a b"));
        assert_eq!(maps[1].path, Path::new("/lib/x.so"));
    }
}
