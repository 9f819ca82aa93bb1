//! Each process's mapped objects, followed from the calls themselves, for the stacks of
//! processes whose memory map the tracer could not read (they ended first, as a short
//! `mv` often does). An exec maps the program and its interpreter: where, the auxiliary
//! vector says (`AT_PHDR`, `AT_BASE`), read from the stack the kernel half copied at the
//! exec's return; the loader then maps each library with `mmap`, and `munmap` unmaps.
//! A fork copies its parent's map. Only file-backed mappings matter here.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile64, ProgramHeader};

/// One file-backed mapping, as a line of `/proc/PID/maps` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) range: Range<u64>,
    pub(crate) offset: u64,
    pub(crate) exec: bool,
    pub(crate) path: PathBuf,
}

const PAGE: u64 = 4096;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
const AT_PHDR: u64 = 3;
const AT_BASE: u64 = 7;
/// Most auxiliary-vector entries read (Linux has about 30).
const AUXV_ENTRIES_MAX: usize = 64;

/// The mappings of every process, as the calls so far made them.
#[derive(Debug, Default)]
pub(crate) struct Images {
    maps: HashMap<u32, Vec<Mapping>>,
    /// Bumped at every change, so that an unwinder built for a map is built once.
    version: u64,
}

impl Images {
    /// `pid`'s mappings and their version, if the calls said any.
    pub(crate) fn of(&self, pid: u32) -> Option<(u64, &[Mapping])> {
        self.maps.get(&pid).map(|m| (self.version, m.as_slice()))
    }

    /// `child` was forked from `parent`: it maps what its parent does.
    pub(crate) fn forked(&mut self, parent: u32, child: u32) {
        if let Some(m) = self.maps.get(&parent).cloned() {
            self.maps.entry(child).or_insert(m);
            self.version += 1;
        }
    }

    /// `pid` exec'd `program` (an absolute path); `stack` is its new stack from the stack
    /// pointer (argc, argv, envp, then the auxiliary vector).
    pub(crate) fn exec(&mut self, pid: u32, program: &Path, stack: &[u8]) {
        self.version += 1;
        let mut maps = Vec::new();
        let aux = auxv(stack);
        let at = |k| aux.iter().find(|(t, _)| *t == k).map(|(_, v)| *v);
        let Some(phdr) = at(AT_PHDR) else {
            self.maps.insert(pid, maps);
            return;
        };
        let program = script_interpreter(program).unwrap_or_else(|| program.to_path_buf());
        let interp = load_image(&program, Bias::Phdr(phdr), &mut maps);
        if let (Some(interp), Some(base)) = (interp, at(AT_BASE).filter(|b| *b != 0)) {
            load_image(&interp, Bias::Base(base), &mut maps);
        }
        self.maps.insert(pid, maps);
    }

    /// `mmap` of `path` at `addr` returned, `len` bytes from file offset `offset`.
    pub(crate) fn mapped(&mut self, pid: u32, addr: u64, len: u64, offset: u64, exec: bool, path: &Path) {
        self.version += 1;
        let range = addr..addr.saturating_add(len.div_ceil(PAGE) * PAGE);
        let maps = self.maps.entry(pid).or_default();
        unmap(maps, &range);
        maps.push(Mapping { range, offset, exec, path: path.to_path_buf() });
    }

    pub(crate) fn unmapped(&mut self, pid: u32, addr: u64, len: u64) {
        if let Some(maps) = self.maps.get_mut(&pid) {
            self.version += 1;
            unmap(maps, &(addr..addr.saturating_add(len.div_ceil(PAGE) * PAGE)));
        }
    }
}

/// Remove `gone` from `maps`, cutting the mappings it overlaps.
fn unmap(maps: &mut Vec<Mapping>, gone: &Range<u64>) {
    let mut out = Vec::with_capacity(maps.len() + 1);
    for m in maps.drain(..) {
        if m.range.end <= gone.start || m.range.start >= gone.end {
            out.push(m);
            continue;
        }
        if m.range.start < gone.start {
            out.push(Mapping { range: m.range.start..gone.start, ..m.clone() });
        }
        if m.range.end > gone.end {
            let offset = m.offset + (gone.end - m.range.start);
            out.push(Mapping { range: gone.end..m.range.end, offset, ..m });
        }
    }
    *maps = out;
}

/// The `(type, value)` pairs of the auxiliary vector at the top of a new stack.
fn auxv(stack: &[u8]) -> Vec<(u64, u64)> {
    let word = |i: usize| stack.get(i * 8..i * 8 + 8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
    let Some(argc) = word(0).and_then(|n| usize::try_from(n).ok()) else { return Vec::new() };
    let mut i = argc.saturating_add(2); // argc, argv[argc], its NULL
    while word(i).is_some_and(|p| p != 0) {
        i += 1; // envp
    }
    i += 1;
    let mut out = Vec::new();
    while let (Some(t), Some(v)) = (word(i), word(i + 1)) {
        if t == 0 || out.len() == AUXV_ENTRIES_MAX {
            break;
        }
        out.push((t, v));
        i += 2;
    }
    out
}

/// For a `#!` script, the interpreter the kernel ran.
fn script_interpreter(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let word = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    Some(PathBuf::from(word))
}

/// Where an image is: found through its program headers' address (`AT_PHDR`, the
/// program) or its base (`AT_BASE`, the interpreter).
enum Bias {
    Phdr(u64),
    Base(u64),
}

/// Push the loadable segments of the ELF file at `path` as the kernel maps them; its
/// interpreter (`PT_INTERP`), if any.
fn load_image(path: &Path, bias: Bias, maps: &mut Vec<Mapping>) -> Option<PathBuf> {
    let data = std::fs::read(path).ok()?;
    let elf = ElfFile64::<object::Endianness>::parse(data.as_slice()).ok()?;
    let (e, headers) = (elf.endian(), elf.elf_program_headers());
    let bias = match bias {
        Bias::Base(b) => b,
        Bias::Phdr(at) => {
            let phdr = headers.iter().find(|h| h.p_type(e) == PT_PHDR).map(|h| h.p_vaddr(e));
            let first = headers.iter().find(|h| h.p_type(e) == PT_LOAD && h.p_offset(e) == 0).map(|h| h.p_vaddr(e));
            let phoff = elf.elf_header().e_phoff.get(e);
            at.wrapping_sub(phdr.or(first.map(|f| f + phoff))?)
        }
    };
    for h in headers.iter().filter(|h| h.p_type(e) == PT_LOAD) {
        let start = bias.wrapping_add(h.p_vaddr(e));
        let end = start.wrapping_add(h.p_memsz(e));
        let range = start / PAGE * PAGE..end.div_ceil(PAGE) * PAGE;
        let exec = h.p_flags(e) & PF_X != 0;
        maps.push(Mapping { range, offset: h.p_offset(e) / PAGE * PAGE, exec, path: path.to_path_buf() });
    }
    let interp = headers.iter().find(|h| h.p_type(e) == PT_INTERP)?.data(e, data.as_slice()).ok()?;
    let interp = interp.split(|b| *b == 0).next()?;
    Some(PathBuf::from(std::str::from_utf8(interp).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(range: Range<u64>, offset: u64) -> Mapping {
        Mapping { range, offset, exec: false, path: PathBuf::from("/f") }
    }

    #[test]
    fn an_unmap_cuts_the_mappings_it_overlaps() {
        let mut maps = vec![m(0x1000..0x5000, 0)];
        unmap(&mut maps, &(0x2000..0x3000));
        assert_eq!(maps, [m(0x1000..0x2000, 0), m(0x3000..0x5000, 0x2000)]);
    }

    #[test]
    fn the_auxiliary_vector_follows_argv_and_envp() {
        let words: [u64; 10] = [1, 0x10, 0, 0x20, 0x30, 0, 3, 0x4040, 0, 0];
        let stack: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(auxv(&stack), [(3, 0x4040)]);
    }
}
