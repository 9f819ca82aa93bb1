//! From stack frames (object + file offset, as strace `-k` prints them) to function and
//! `file:line`, through the object's DWARF (the `addr2line` crate). strace's `[0x…]` is
//! the offset of the return address in the object's file; the program headers map it to
//! the virtual address DWARF speaks in (equal for most PIE code, 0x400000 apart in a
//! non-PIE executable). A return address points after the `call` (or `syscall`), so the
//! line looked up is that of the byte before it. Objects without debug info, or no
//! longer on disk, leave their frames as object + offset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment};

use crate::model::{Call, Frame, SourceLine};

/// Most objects whose debug info a [`Symbolizer`] keeps loaded; past it the cache starts over.
pub const OBJECTS_CACHED_MAX: usize = 256;

/// One loaded object: its DWARF and its loadable segments.
struct Loaded {
    dwarf: addr2line::Loader,
    /// `(file offset, file size, virtual address)` of each `PT_LOAD` segment.
    segments: Vec<(u64, u64, u64)>,
}

impl Loaded {
    fn open(path: &Path) -> Option<Loaded> {
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        let file = std::fs::File::open(path).ok()?;
        let cache = object::ReadCache::new(file);
        let parsed = object::File::parse(&cache).ok()?;
        let segments = parsed
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        let dwarf = addr2line::Loader::new(path).ok()?;
        Some(Loaded { dwarf, segments })
    }

    /// The virtual address of a file offset, through the segment that holds it.
    fn address_of(&self, offset: u64) -> Option<u64> {
        self.segments.iter().find_map(|&(start, size, vaddr)| {
            let delta = offset.checked_sub(start)?;
            (delta < size).then(|| vaddr.checked_add(delta)).flatten()
        })
    }
}

/// Symbolizes frames, loading each object's debug info once.
#[derive(Default)]
pub struct Symbolizer {
    cache: HashMap<PathBuf, Option<Loaded>>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer").field("objects", &self.cache.len()).finish()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Symbolizer::default()
    }

    /// Fills in `function` and `source` of every frame of `call` that debug info covers.
    pub fn symbolize_call(&mut self, call: &mut Call) {
        for frame in &mut call.stack {
            self.symbolize(frame);
        }
    }

    /// Fills in the frame's `function` (from DWARF, the innermost inlined function) and
    /// `source`, where the object has debug info for its address; else leaves it as it is.
    pub fn symbolize(&mut self, frame: &mut Frame) {
        if !frame.object.is_absolute() || frame.offset == 0 {
            return;
        }
        if self.cache.len() >= OBJECTS_CACHED_MAX && !self.cache.contains_key(&frame.object) {
            self.cache.clear();
        }
        let loaded = self.cache.entry(frame.object.clone()).or_insert_with_key(|path| Loaded::open(path));
        let Some(loaded) = loaded else { return };
        let Some(probe) = loaded.address_of(frame.offset - 1) else { return };
        let Ok(mut frames) = loaded.dwarf.find_frames(probe) else { return };
        let Ok(Some(innermost)) = frames.next() else { return };
        if let Some(name) = innermost.function.as_ref().and_then(|f| f.demangle().ok()) {
            frame.function = Some(name.into_owned());
        }
        if let Some(location) = innermost.location {
            if let (Some(file), Some(line)) = (location.file, location.line) {
                frame.source = Some(SourceLine { file: PathBuf::from(file), line });
            }
        }
    }
}
