//! The bytes of a logical state's files: each extent of a [`FileView`] read from where
//! its [`Fill`] says (a call's write data, the extracted base file, zeros, garbage), and
//! the content hashes that deduplicate states.
//!
//! Garbage (bytes that were never written there: stale blocks) is deterministic and
//! depends only on the file's identity and the byte's position in it, not on the state:
//! a stale block reads the same in every state, so two states that differ only in which
//! micro-op exposed it hash alike and are checked once, at any `--jobs`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use brink_calls::{Call, CallKind};
use brink_pmodel::{Extent, FileView, Fill, Ino, LogicalTrace, NodeKind};

use crate::LogicalError;
use crate::base::Base;

/// A content or tree hash (blake3).
pub type Hash = [u8; 32];

/// Where the bytes of every fill come from; shared by the workers.
pub struct Content {
    /// Each write call's data, by its `seq`.
    data: HashMap<u64, Vec<u8>>,
    /// Each initial file, open in the extracted base.
    initial: HashMap<Ino, (PathBuf, File)>,
}

/// Distinct file contents whose hash is remembered before the memory is given back.
const HASH_CACHE_MAX: usize = 1 << 16;

impl Content {
    pub fn new(calls: &[Call], trace: &LogicalTrace, base: &Base) -> Result<Content, LogicalError> {
        let data = calls
            .iter()
            .filter_map(|c| match &c.kind {
                CallKind::Write { data, .. } => Some((c.seq, data.clone())),
                _ => None,
            })
            .collect();
        let mut initial = HashMap::new();
        for (init, &ino) in trace.initial.iter().zip(&trace.initial_inos) {
            if init.kind != NodeKind::File || init.size == 0 {
                continue;
            }
            let path = base.dir.join(&init.path);
            // A file the calls showed but the listing lacked reads as zeros.
            if let Ok(f) = File::open(&path) {
                initial.insert(ino, (path, f));
            }
        }
        Ok(Content { data, initial })
    }

    /// The bytes of `content` (extents covering `[0, size)` of file `ino`), into `out`.
    pub fn bytes(&self, ino: Ino, content: &[Extent], out: &mut Vec<u8>) -> Result<(), LogicalError> {
        out.clear();
        for e in content {
            let start = out.len();
            out.resize(start + e.len as usize, 0);
            let dst = &mut out[start..];
            match e.fill {
                Fill::Zeros => {}
                Fill::Garbage => garbage(ino, e.offset, dst),
                Fill::Data { seq, at } => {
                    let src = self.data.get(&seq).map_or(&[][..], Vec::as_slice);
                    let from = (at as usize).min(src.len());
                    let n = dst.len().min(src.len() - from);
                    dst[..n].copy_from_slice(&src[from..from + n]);
                }
                Fill::Initial { ino: of, at } => {
                    if let Some((path, f)) = self.initial.get(&of) {
                        read_at(f, path, at, dst)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads what `f` holds at `at` into `dst`; past its end stays zeros.
fn read_at(f: &File, path: &Path, at: u64, dst: &mut [u8]) -> Result<(), LogicalError> {
    let mut done = 0;
    while done < dst.len() {
        match f.read_at(&mut dst[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LogicalError::io(path, e)),
        }
    }
    Ok(())
}

/// Garbage bytes for `dst`, at byte `offset` of file `ino` (module docs).
fn garbage(ino: Ino, offset: u64, dst: &mut [u8]) {
    for (i, b) in dst.iter_mut().enumerate() {
        let pos = offset + i as u64;
        let word = mix(0x6272_696e_6b00_0000 ^ (u64::from(ino) << 40) ^ (pos / 8));
        *b = word.to_le_bytes()[(pos % 8) as usize];
    }
}

/// SplitMix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes of file contents and of whole trees, remembering each distinct content's.
#[derive(Default)]
pub struct Hasher {
    cache: HashMap<(Option<Ino>, Vec<Extent>), Hash>,
    buf: Vec<u8>,
}

impl Hasher {
    /// The hash of what `view` shows (a file's bytes, a symlink's target; a directory's
    /// is fixed).
    pub fn file(&mut self, content: &Content, view: &FileView) -> Result<Hash, LogicalError> {
        match &view.kind {
            NodeKind::Dir => Ok([0; 32]),
            NodeKind::Symlink(target) => Ok(*blake3::hash(target).as_bytes()),
            NodeKind::File => {
                let key = content_key(view);
                if let Some(h) = self.cache.get(&key) {
                    return Ok(*h);
                }
                content.bytes(view.ino, &view.content, &mut self.buf)?;
                let h = *blake3::hash(&self.buf).as_bytes();
                if self.cache.len() >= HASH_CACHE_MAX {
                    self.cache.clear();
                }
                self.cache.insert(key, h);
                Ok(h)
            }
        }
    }

    /// The tree's hash over its paths, kinds and content hashes (`files` in path order).
    pub fn tree<'a>(files: impl Iterator<Item = (&'a Path, &'a NodeKind, &'a Hash)>) -> Hash {
        let mut h = blake3::Hasher::new();
        for (path, kind, content) in files {
            let p = path.as_os_str().as_bytes();
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
            h.update(&[match kind {
                NodeKind::File => b'f',
                NodeKind::Dir => b'd',
                NodeKind::Symlink(_) => b'l',
            }]);
            h.update(content);
        }
        *h.finalize().as_bytes()
    }
}

/// What a file's bytes depend on, as a cache key: its extents, and its identity when
/// they hold garbage (garbage depends on the identity; other fills do not).
pub(crate) fn content_key(view: &FileView) -> (Option<Ino>, Vec<Extent>) {
    let garbage = view.content.iter().any(|e| e.fill == Fill::Garbage);
    (garbage.then_some(view.ino), view.content.clone())
}

/// A hash as 64 hex digits (the width of a block image hash).
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
