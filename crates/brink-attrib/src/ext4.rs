//! ext4 attribution: a reader of the metadata the trace itself writes.
//!
//! Two passes over the trace. The first follows every block write in order, in place
//! and through the journal, classifies it by the static layout (superblock, group
//! descriptors, bitmaps, inode tables, journal) and remembers, with the time it appeared,
//! every inode version (and so which blocks it owns) and every directory entry. The
//! second names what the first could not name yet: a data block is owned by the first
//! inode version at or after the write that lists it (in `data=ordered` the data goes
//! first and the inode follows in the journal), else by the last one before it.
//!
//! Two views of inode tables and directory blocks are kept: the journal's (what the
//! latest committed copy says) and the disk's (what the last in-place write said), so a
//! journal copy is diffed against the previous copy and a checkpoint write against the
//! block it overwrites.
//!
//! Limits: `INODES_MAX` base inodes are read (more are left unattributed, with a note),
//! directory paths are resolved `PATH_DEPTH_MAX` levels deep, an extent tree is followed
//! only where each level is one less deep than its parent, and an inode owns at most as
//! many blocks as the file system has.
//!
//! Corrupt input: a superblock that describes an impossible layout (a file system larger
//! than its image, groups larger than their bitmaps, tables outside the file system) is a
//! `LayoutError`, and the trace is then not attributed, with the error as its note. Blocks
//! past the end of the image read as zeros.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use brink_trace::{Event, TraceReader};

use crate::{AttribError, Attribution, Item, Kind, WriteItems, merge};

/// Why the ext4 layout of a base image cannot be read. Attribution then covers none of
/// the trace's writes and says why in its notes (the error and its sources).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("cannot read the base image's size")]
    Size(#[source] std::io::Error),
    #[error("cannot read the superblock")]
    ReadSuperblock(#[source] std::io::Error),
    #[error("the base image holds no ext4 superblock")]
    NoSuperblock,
    #[error("the superblock describes an impossible layout: {0}")]
    Impossible(&'static str),
    #[error(
        "the file system's {blocks} blocks of {block_bytes} bytes do not fit in the base image of {image_bytes} bytes"
    )]
    LargerThanImage { blocks: u64, block_bytes: u64, image_bytes: u64 },
    #[error("cannot read the group descriptors")]
    ReadGroupDescriptors(#[source] std::io::Error),
    #[error("the bitmaps or the inode table of block group {group} lie outside the file system")]
    GroupOutside { group: u64 },
}

const INODES_MAX: u64 = 1 << 20;
const PATH_DEPTH_MAX: usize = 64;
const ROOT_INO: u32 = 2;
const JBD2_MAGIC: u32 = 0xC03B_3998;
const EXT4_MAGIC: u16 = 0xEF53;
const EXTENT_MAGIC: u16 = 0xF30A;
const EXTENTS_FL: u32 = 0x8_0000;
/// The largest group descriptor ext4 defines.
const DESC_BYTES_MAX: u64 = 1024;
/// How deep an extent tree may be (ext4's own limit).
const EXTENT_DEPTH_MAX: usize = 5;

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

/// Where the static metadata lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Static {
    Superblock,
    Gdt,
    BlockBitmap,
    InodeBitmap,
    /// The inode table of a group, starting at `start`.
    InodeTable {
        group: u64,
        start: u64,
    },
}

struct Geo {
    bs: u64,
    blocks: u64,
    inodes: u64,
    ipg: u64,
    isz: u64,
    statics: HashMap<u64, Static>,
    itables: Vec<u64>,
    /// fs block → journal block index, and back.
    journal_of: HashMap<u64, u64>,
    journal_blocks: Vec<u64>,
}

impl Geo {
    fn inode_loc(&self, ino: u32) -> Option<(u64, usize)> {
        let i = u64::from(ino).checked_sub(1)?;
        let (g, idx) = (i / self.ipg, i % self.ipg);
        let start = *self.itables.get(g as usize)?;
        let byte = idx * self.isz;
        Some((start + byte / self.bs, (byte % self.bs) as usize))
    }

    /// The journal's blocks, in journal order, from the extents of its inode.
    fn place_journal(&mut self, img: &File, journal_ino: u32) {
        let bs = self.bs;
        let Some((b, off)) = self.inode_loc(journal_ino) else { return };
        let blk = read_block(img, bs, b);
        let inode = &blk[off..off + 128];
        let mut owned = Vec::new();
        extents(inode, &mut owned, &|b| read_block(img, bs, b), self.blocks);
        for (_, phys, kind) in owned {
            if kind == Own::Data {
                self.journal_of.insert(phys, self.journal_blocks.len() as u64);
                self.journal_blocks.push(phys);
            }
        }
    }
}

fn read_block(img: &File, bs: u64, b: u64) -> Vec<u8> {
    let mut buf = vec![0u8; bs as usize];
    // A block past the end of the image reads as zeros (a corrupt pointer, not ours to fail on).
    if let Some(at) = b.checked_mul(bs) {
        let _ = img.read_exact_at(&mut buf, at);
    }
    buf
}

/// The fields of the superblock the reader needs.
struct Superblock {
    bs: u64,
    inodes: u64,
    blocks: u64,
    /// The first data block (1 with 1 KiB blocks, else 0).
    first: u64,
    bpg: u64,
    ipg: u64,
    isz: u64,
    /// Bytes per group descriptor.
    desc: u64,
    meta_bg: bool,
    sparse: bool,
    reserved_gdt: u64,
    journal_ino: u32,
}

impl Superblock {
    fn read(img: &File) -> Result<Superblock, LayoutError> {
        let mut sb = vec![0u8; 1024];
        img.read_exact_at(&mut sb, 1024).map_err(LayoutError::ReadSuperblock)?;
        if le16(&sb, 56) != EXT4_MAGIC {
            return Err(LayoutError::NoSuperblock);
        }
        let is64 = le32(&sb, 96) & 0x80 != 0;
        let sb = Superblock {
            bs: 1024u64 << le32(&sb, 24).min(6),
            inodes: u64::from(le32(&sb, 0)),
            blocks: u64::from(le32(&sb, 4)) | if is64 { u64::from(le32(&sb, 0x150)) << 32 } else { 0 },
            first: u64::from(le32(&sb, 20)),
            bpg: u64::from(le32(&sb, 32)).max(1),
            ipg: u64::from(le32(&sb, 40)).max(1),
            isz: u64::from(le16(&sb, 88)).max(128),
            desc: if is64 { u64::from(le16(&sb, 0xFE)).max(32) } else { 32 },
            meta_bg: le32(&sb, 96) & 0x10 != 0,
            sparse: le32(&sb, 100) & 0x1 != 0,
            reserved_gdt: u64::from(le16(&sb, 0xCE)),
            journal_ino: le32(&sb, 0xE0),
        };
        let image_bytes = img.metadata().map_err(LayoutError::Size)?.len();
        sb.check(image_bytes)?;
        Ok(sb)
    }

    /// What every ext4 file system satisfies, checked so a corrupt superblock is an
    /// error rather than a panic or an allocation of its made-up size.
    fn check(&self, image_bytes: u64) -> Result<(), LayoutError> {
        let impossible = |what| Err(LayoutError::Impossible(what));
        if self.first >= self.blocks {
            return impossible("no block past the first data block");
        }
        if self.blocks.checked_mul(self.bs).is_none_or(|fs| fs > image_bytes) {
            let (blocks, block_bytes) = (self.blocks, self.bs);
            return Err(LayoutError::LargerThanImage { blocks, block_bytes, image_bytes });
        }
        if self.bpg > 8 * self.bs || self.ipg > 8 * self.bs {
            return impossible("a block group larger than its bitmap");
        }
        if !self.isz.is_power_of_two() || self.isz > self.bs {
            return impossible("an inode size that is not a power of two from 128 bytes to the block size");
        }
        if self.desc > DESC_BYTES_MAX {
            return impossible("a group descriptor over 1024 bytes");
        }
        if 1 + self.gdt_blocks() + self.reserved_gdt >= self.bpg {
            return impossible("group descriptors that do not fit in a block group");
        }
        Ok(())
    }

    fn groups(&self) -> u64 {
        (self.blocks - self.first).div_ceil(self.bpg)
    }

    fn gdt_blocks(&self) -> u64 {
        (self.groups() * self.desc).div_ceil(self.bs)
    }

    /// Whether group `g` holds a copy of the superblock and the group descriptors: every
    /// group without `sparse_super`, else groups 0, 1 and the powers of 3, 5 and 7.
    fn has_backup(&self, g: u64) -> bool {
        let pow = |base: u64| {
            let mut x = 1;
            while x < g {
                x *= base;
            }
            x == g
        };
        g == 0 || !self.sparse || g == 1 || pow(3) || pow(5) || pow(7)
    }

    /// The superblock and group descriptor blocks (reserved ones included) of every group
    /// that has them.
    fn backup_statics(&self) -> HashMap<u64, Static> {
        let mut statics = HashMap::new();
        for g in (0..self.groups()).filter(|&g| self.has_backup(g)) {
            let start = self.first + g * self.bpg;
            statics.insert(start, Static::Superblock);
            for b in 0..self.gdt_blocks() + self.reserved_gdt {
                statics.insert(start + 1 + b, Static::Gdt);
            }
        }
        statics
    }

    /// Read the group descriptors: each group's bitmaps and inode table go into
    /// `statics`; the inode tables' first blocks are returned, by group.
    fn group_tables(&self, img: &File, statics: &mut HashMap<u64, Static>) -> Result<Vec<u64>, LayoutError> {
        let (bs, desc) = (self.bs, self.desc);
        let mut gdt = vec![0u8; (self.gdt_blocks() * bs) as usize];
        img.read_exact_at(&mut gdt, (self.first + 1) * bs).map_err(LayoutError::ReadGroupDescriptors)?;
        let itable_blocks = (self.ipg * self.isz).div_ceil(bs);
        let mut itables = Vec::new();
        for g in 0..self.groups() {
            let d = &gdt[(g * desc) as usize..((g + 1) * desc) as usize];
            let hi = |o: usize| if desc >= 64 { u64::from(le32(d, o)) << 32 } else { 0 };
            let (bb, ib, it) =
                (u64::from(le32(d, 0)) | hi(0x20), u64::from(le32(d, 4)) | hi(0x24), u64::from(le32(d, 8)) | hi(0x28));
            if bb >= self.blocks || ib >= self.blocks || it.checked_add(itable_blocks).is_none_or(|e| e > self.blocks) {
                return Err(LayoutError::GroupOutside { group: g });
            }
            statics.insert(bb, Static::BlockBitmap);
            statics.insert(ib, Static::InodeBitmap);
            for b in it..it + itable_blocks {
                statics.insert(b, Static::InodeTable { group: g, start: it });
            }
            itables.push(it);
        }
        Ok(itables)
    }
}

fn geometry(img: &File) -> Result<(Geo, Vec<String>), LayoutError> {
    let sb = Superblock::read(img)?;
    let mut notes = Vec::new();
    if sb.meta_bg {
        notes.push("meta_bg layout: group descriptors past the first group are not attributed".into());
    }
    let mut statics = sb.backup_statics();
    let itables = sb.group_tables(img, &mut statics)?;
    let (bs, blocks, inodes, ipg, isz) = (sb.bs, sb.blocks, sb.inodes, sb.ipg, sb.isz);
    let (journal_of, journal_blocks) = (HashMap::new(), Vec::new());
    let mut geo = Geo { bs, blocks, inodes, ipg, isz, statics, itables, journal_of, journal_blocks };
    if sb.journal_ino != 0 {
        geo.place_journal(img, sb.journal_ino);
        if geo.journal_blocks.is_empty() {
            notes.push("the journal inode's blocks could not be read: journal writes are not placed".into());
        }
    }
    Ok((geo, notes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    Data,
    Dir,
    Tree,
}

/// The blocks an inode owns: (logical block, physical block, kind), through its extent
/// tree (`read` fetches index and leaf blocks). Non-extent inodes own nothing here. At
/// most `limit` blocks (the file system's size: a corrupt tree names no more).
fn extents(inode: &[u8], out: &mut Vec<(u64, u64, Own)>, read: &dyn Fn(u64) -> Vec<u8>, limit: u64) {
    let mode = le16(inode, 0);
    let own = match mode & 0xF000 {
        0x4000 => Own::Dir,
        0x8000 | 0xA000 => Own::Data,
        _ => return,
    };
    if le32(inode, 0x20) & EXTENTS_FL == 0 {
        return;
    }
    let mut walk = ExtentWalk { own, out, read, limit: usize::try_from(limit).unwrap_or(usize::MAX) };
    walk.node(&inode[0x28..0x28 + 60], 0);
}

/// A walk of one inode's extent tree.
struct ExtentWalk<'a> {
    own: Own,
    out: &'a mut Vec<(u64, u64, Own)>,
    read: &'a dyn Fn(u64) -> Vec<u8>,
    limit: usize,
}

impl ExtentWalk<'_> {
    fn node(&mut self, node: &[u8], depth_seen: usize) {
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC || depth_seen > EXTENT_DEPTH_MAX {
            return;
        }
        let entries = usize::from(le16(node, 2)).min((node.len() - 12) / 12);
        let depth = le16(node, 6);
        for e in 0..entries {
            let x = &node[12 + e * 12..24 + e * 12];
            if depth == 0 {
                let logical = u64::from(le32(x, 0));
                let len = u64::from(le16(x, 4));
                let len = if len > 32768 { len - 32768 } else { len }; // uninitialized extents
                let start = u64::from(le16(x, 6)) << 32 | u64::from(le32(x, 8));
                for i in 0..len.min(1 << 20) {
                    if self.out.len() >= self.limit {
                        return;
                    }
                    self.out.push((logical + i, start + i, self.own));
                }
            } else {
                let leaf = u64::from(le16(x, 8)) << 32 | u64::from(le32(x, 4));
                if self.out.len() >= self.limit {
                    return;
                }
                self.out.push((0, leaf, Own::Tree));
                let child = (self.read)(leaf);
                // Each level is one less deep than its parent: a corrupt tree that
                // points back up (or anywhere else) is not followed.
                if child.len() >= 12 && le16(&child, 6).checked_add(1) == Some(depth) {
                    self.node(&child, depth_seen + 1);
                }
            }
        }
    }
}

/// The entries of a directory block, if it parses as one exactly.
fn dir_entries(block: &[u8], inodes: u64) -> Option<Vec<(String, u32)>> {
    let mut pos = 0usize;
    let mut out = Vec::new();
    while pos < block.len() {
        if pos + 8 > block.len() {
            return None;
        }
        let ino = le32(block, pos);
        let rec = usize::from(le16(block, pos + 4));
        let nlen = usize::from(block[pos + 6]);
        if rec < 8 || rec % 4 != 0 || pos + rec > block.len() || 8 + nlen > rec {
            return None;
        }
        if ino != 0 {
            let name = &block[pos + 8..pos + 8 + nlen];
            if nlen == 0 || u64::from(ino) > inodes || name.iter().any(|&c| c == 0 || c == b'/') {
                return None;
            }
            out.push((String::from_utf8_lossy(name).into_owned(), ino));
        }
        pos += rec;
    }
    Some(out)
}

/// A directory block's change in words: `a→b` where a name now holds the inode another
/// name held (a rename; each name is the target of at most one, taken in block order),
/// `+a` for a name new or holding a new inode, `-a` for a name gone.
fn dir_change(old: &[(String, u32)], new: &[(String, u32)]) -> String {
    let skip = |n: &str| n == "." || n == "..";
    let mut words = Vec::new();
    let mut targets: HashSet<&str> = HashSet::new();
    let mut sources: HashSet<&str> = HashSet::new();
    for (name, ino) in new.iter().filter(|e| !skip(&e.0)) {
        if old.contains(&(name.clone(), *ino)) {
            continue;
        }
        match old
            .iter()
            .find(|(o, i)| i == ino && o != name && !targets.contains(o.as_str()) && !sources.contains(o.as_str()))
        {
            Some((o, _)) => {
                words.push(format!("{o}→{name}"));
                sources.insert(o);
                targets.insert(name);
            }
            None => words.push(format!("+{name}")),
        }
    }
    for (name, _) in old.iter().filter(|e| !skip(&e.0)) {
        if !new.iter().any(|(n, _)| n == name) && !sources.contains(name.as_str()) {
            words.push(format!("-{name}"));
        }
    }
    words.join(" ")
}

/// A view of inode tables and directory blocks (the journal's or the disk's).
#[derive(Default)]
struct View {
    blocks: HashMap<u64, Vec<u8>>,
}

impl View {
    fn get<'a>(&'a mut self, img: &File, bs: u64, b: u64) -> &'a mut Vec<u8> {
        self.blocks.entry(b).or_insert_with(|| read_block(img, bs, b))
    }
}

/// What a block write was, before paths are known.
enum Raw {
    Fixed(Kind),
    /// Inode table block: the inodes whose slots changed.
    Inodes(Vec<u32>),
    /// Any other block: its owner is looked up later; `dir` is the change in words if
    /// it parses as a directory block.
    Other {
        block: u64,
        dir: Option<String>,
    },
}

/// One name of an inode: (time, directory block, directory inode if the block names
/// it with '.', name).
type NameAt = (u64, u64, Option<u32>, String);

/// An owner of a block: (time, inode, kind, logical block in the inode).
type Owner = (u64, u32, Own, u64);

/// One write, classified block by block: (event index, offset, length, per block: what
/// it was, bytes, whether a journal copy).
type RawWrite = (u64, u64, u64, Vec<(Raw, u64, bool)>);

struct Pass<'a> {
    img: &'a File,
    geo: &'a Geo,
    disk: View,
    journal: View,
    /// Journal block index → (fs block, escaped) from the last descriptor that named it.
    jmap: HashMap<u64, (u64, bool)>,
    tag_bytes: usize,
    csum_tail: usize,
    /// Per physical block: (time, inode, kind, logical block) from each inode version
    /// that lists it.
    owners: HashMap<u64, Vec<Owner>>,
    /// The latest content of every written block that holds an extent-tree node: an
    /// inode read later walks its tree through these, not through the base image.
    tree_blocks: HashMap<u64, Vec<u8>>,
    /// Per extent-tree block: the inode whose tree it is and what its leaves map, so a
    /// node written after its inode still names the blocks it maps.
    tree_of: HashMap<u64, (u32, Own)>,
    /// Raw directory entries (time, block, '.' inode of the block, name, inode).
    raw_names: Vec<(u64, u64, Option<u32>, String, u32)>,
    /// Blocks that parsed as directory blocks, with their entries, per view.
    dirs_disk: HashMap<u64, Vec<(String, u32)>>,
    dirs_journal: HashMap<u64, Vec<(String, u32)>>,
}

impl Pass<'_> {
    fn register_inode(&mut self, at: u64, ino: u32, inode: &[u8]) {
        if le16(inode, 0) == 0 || le16(inode, 0x1A) == 0 {
            return;
        }
        let mut owned = Vec::new();
        extents(inode, &mut owned, &|b| self.latest(b), self.geo.blocks);
        let file = if le16(inode, 0) & 0xF000 == 0x4000 { Own::Dir } else { Own::Data };
        self.own(at, (ino, file), owned);
    }

    /// Block `b` as the trace has left it so far, for walking extent trees: a written
    /// tree node, a journaled inode-table block, else the base image.
    fn latest(&self, b: u64) -> Vec<u8> {
        let written = self.tree_blocks.get(&b).or_else(|| self.journal.blocks.get(&b));
        written.cloned().unwrap_or_else(|| read_block(self.img, self.geo.bs, b))
    }

    /// Records that inode `ino` (a file of kind `file`) owns `owned` from time `at` on.
    fn own(&mut self, at: u64, (ino, file): (u32, Own), owned: Vec<(u64, u64, Own)>) {
        for (logical, phys, kind) in owned {
            if kind == Own::Tree {
                self.tree_of.insert(phys, (ino, file));
            }
            let list = self.owners.entry(phys).or_default();
            if list.last().is_none_or(|l| l.1 != ino || l.2 != kind || l.3 != logical) {
                list.push((at, ino, kind, logical));
            }
        }
    }

    fn register_dir(&mut self, at: u64, block: u64, entries: &[(String, u32)], old: Option<&Vec<(String, u32)>>) {
        let dot = entries.iter().find(|e| e.0 == ".").map(|e| e.1);
        for (name, ino) in entries {
            if name == "." || name == ".." {
                continue;
            }
            if old.is_some_and(|o| o.iter().any(|(n, i)| n == name && i == ino)) {
                continue;
            }
            self.raw_names.push((at, block, dot, name.clone(), *ino));
        }
    }

    /// Classify one block `b` with content `c` written at time `at`.
    fn block(&mut self, at: u64, b: u64, c: &[u8], via_journal: bool) -> Raw {
        let bs = self.geo.bs;
        if let Some(s) = self.geo.statics.get(&b).copied() {
            return match s {
                Static::Superblock => Raw::Fixed(Kind::Superblock),
                Static::Gdt => Raw::Fixed(Kind::GroupDescriptors),
                Static::BlockBitmap => Raw::Fixed(Kind::BlockBitmap),
                Static::InodeBitmap => Raw::Fixed(Kind::InodeBitmap),
                Static::InodeTable { group, start } => {
                    let view = if via_journal { &mut self.journal } else { &mut self.disk };
                    let old = std::mem::replace(view.get(self.img, bs, b), c.to_vec());
                    if !via_journal {
                        // An in-place write is also the latest copy when nothing newer is journaled.
                        self.journal.blocks.entry(b).or_insert_with(|| c.to_vec());
                    }
                    let isz = self.geo.isz as usize;
                    let mut changed = Vec::new();
                    for s in 0..c.len() / isz {
                        let (o, n) = (&old[s * isz..(s + 1) * isz], &c[s * isz..(s + 1) * isz]);
                        if o != n {
                            let ino = group * self.geo.ipg + (b - start) * (bs / self.geo.isz) + s as u64 + 1;
                            let ino = u32::try_from(ino).unwrap_or(u32::MAX);
                            changed.push(ino);
                            self.register_inode(at, ino, n);
                        }
                    }
                    Raw::Inodes(changed)
                }
            };
        }
        if c.len() >= 12 && le16(c, 0) == EXTENT_MAGIC {
            self.tree_node(at, b, c);
        }
        let dir = dir_entries(c, self.geo.inodes).map(|entries| {
            let (img, inodes) = (self.img, self.geo.inodes);
            let dirs = if via_journal { &mut self.dirs_journal } else { &mut self.dirs_disk };
            let old =
                dirs.remove(&b).unwrap_or_else(|| dir_entries(&read_block(img, bs, b), inodes).unwrap_or_default());
            let change = dir_change(&old, &entries);
            self.register_dir(at, b, &entries, Some(&old));
            let dirs = if via_journal { &mut self.dirs_journal } else { &mut self.dirs_disk };
            dirs.insert(b, entries);
            change
        });
        Raw::Other { block: b, dir }
    }

    /// An extent-tree node written at `at`: kept for inodes read later, and when its
    /// inode is known, the blocks it maps are that inode's from now on.
    fn tree_node(&mut self, at: u64, b: u64, c: &[u8]) {
        self.tree_blocks.insert(b, c.to_vec());
        let Some(&(ino, own)) = self.tree_of.get(&b) else { return };
        let mut owned = Vec::new();
        let limit = usize::try_from(self.geo.blocks).unwrap_or(usize::MAX);
        ExtentWalk { own, out: &mut owned, read: &|b| self.latest(b), limit }.node(c, 1);
        self.own(at, (ino, own), owned);
    }

    /// A block of the journal, written in place: bookkeeping, or a copy of the block
    /// its descriptor named (then the flag is set).
    fn journal_block(&mut self, at: u64, j: u64, c: &[u8]) -> (Raw, bool) {
        if c.len() >= 12 && be32(c, 0) == JBD2_MAGIC {
            let kind = match be32(c, 4) {
                1 => {
                    self.descriptor(j, c);
                    Kind::JournalDescriptor
                }
                2 => Kind::JournalCommit,
                3 | 4 => {
                    self.journal_features(c);
                    Kind::JournalSuperblock
                }
                5 => Kind::JournalRevoke,
                _ => Kind::Journal,
            };
            return (Raw::Fixed(kind), false);
        }
        match self.jmap.get(&j).copied() {
            Some((target, escaped)) => {
                let mut copy = c.to_vec();
                if escaped {
                    copy[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
                }
                (self.block(at, target, &copy, true), true)
            }
            None => (Raw::Fixed(Kind::Journal), false),
        }
    }

    fn journal_features(&mut self, sb: &[u8]) {
        if sb.len() < 0x2C || be32(sb, 4) != 4 {
            self.tag_bytes = 8;
            self.csum_tail = 0;
            return;
        }
        let incompat = be32(sb, 0x28);
        let (is64, csum2, csum3) = (incompat & 0x2 != 0, incompat & 0x8 != 0, incompat & 0x10 != 0);
        self.tag_bytes = if csum3 {
            16
        } else {
            let sz = 12 + if csum2 { 2 } else { 0 };
            if is64 { sz } else { sz - 4 }
        };
        self.csum_tail = if csum2 || csum3 { 4 } else { 0 };
    }

    fn descriptor(&mut self, j: u64, c: &[u8]) {
        let n = self.geo.journal_blocks.len() as u64;
        let mut pos = 12usize;
        let mut next = j;
        let end = c.len().saturating_sub(self.csum_tail);
        while pos + self.tag_bytes <= end {
            let t = &c[pos..pos + self.tag_bytes];
            let (block, flags) = if self.tag_bytes == 16 {
                (u64::from(be32(t, 0)) | u64::from(be32(t, 8)) << 32, be32(t, 4))
            } else {
                let hi = if self.tag_bytes >= 12 { u64::from(be32(t, 8)) << 32 } else { 0 };
                (u64::from(be32(t, 0)) | hi, u32::from(u16::from_be_bytes([t[6], t[7]])))
            };
            next = (next + 1) % n.max(1);
            if next == 0 {
                next = 1; // the journal superblock is not part of the log
            }
            self.jmap.insert(next, (block, flags & 1 != 0));
            pos += self.tag_bytes + if flags & 2 == 0 { 16 } else { 0 };
            if flags & 8 != 0 {
                break;
            }
        }
    }
}

impl<'a> Pass<'a> {
    fn new(img: &'a File, geo: &'a Geo) -> Pass<'a> {
        let mut p = Pass {
            img,
            geo,
            disk: View::default(),
            journal: View::default(),
            jmap: HashMap::new(),
            tag_bytes: 16,
            csum_tail: 4,
            owners: HashMap::new(),
            tree_blocks: HashMap::new(),
            tree_of: HashMap::new(),
            raw_names: Vec::new(),
            dirs_disk: HashMap::new(),
            dirs_journal: HashMap::new(),
        };
        if let Some(&j0) = geo.journal_blocks.first() {
            p.journal_features(&read_block(img, geo.bs, j0));
        }
        p
    }

    /// The base image: every inode in use, and the entries of every directory.
    fn read_base(&mut self, notes: &mut Vec<String>) {
        let geo = self.geo;
        if geo.inodes > INODES_MAX {
            notes.push(format!("{} inodes: only the first {INODES_MAX} of the base image are read", geo.inodes));
        }
        for (g, &start) in geo.itables.iter().enumerate() {
            self.read_base_inode_table(g as u64, start);
        }
        let dir_blocks: Vec<u64> = self
            .owners
            .iter()
            .filter(|(_, l)| l.iter().any(|o| o.2 == Own::Dir))
            .map(|(b, _)| *b)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for b in dir_blocks {
            if let Some(entries) = dir_entries(&read_block(self.img, geo.bs, b), geo.inodes) {
                self.register_dir(0, b, &entries, None);
            }
        }
    }

    /// The inodes in use of group `g`'s inode table, which starts at block `start`.
    fn read_base_inode_table(&mut self, g: u64, start: u64) {
        let geo = self.geo;
        let per_block = geo.bs / geo.isz;
        for k in 0..(geo.ipg * geo.isz).div_ceil(geo.bs) {
            let first_ino = g * geo.ipg + k * per_block + 1;
            if first_ino > geo.inodes.min(INODES_MAX) {
                break;
            }
            let blk = read_block(self.img, geo.bs, start + k);
            if blk.iter().all(|&x| x == 0) {
                continue;
            }
            for s in 0..per_block as usize {
                let inode = &blk[s * geo.isz as usize..(s + 1) * geo.isz as usize];
                let ino = u32::try_from(first_ino + s as u64).unwrap_or(u32::MAX);
                if u64::from(ino) > geo.inodes {
                    break;
                }
                self.register_inode(0, ino, inode);
            }
        }
    }

    /// Pass 1: every write, block by block.
    fn classify_writes(&mut self, reader: &TraceReader) -> Result<Vec<RawWrite>, AttribError> {
        let mut raws: Vec<RawWrite> = Vec::new();
        let mut buf = Vec::new();
        for ev in reader.events()? {
            let ev = ev?;
            let Event::Write(w) = &ev.event else { continue };
            reader.read_payload(w, &mut buf)?;
            let parts = self.classify_write(ev.index + 1, w.offset, &buf);
            raws.push((ev.index, w.offset, w.len, parts));
        }
        Ok(raws)
    }

    /// The blocks of one write of `data` at byte `offset`, written at time `at`.
    fn classify_write(&mut self, at: u64, offset: u64, data: &[u8]) -> Vec<(Raw, u64, bool)> {
        let bs = self.geo.bs;
        let end = offset + data.len() as u64;
        let mut parts = Vec::new();
        for b in offset / bs..end.div_ceil(bs) {
            let (lo, hi) = ((b * bs).max(offset), ((b + 1) * bs).min(end));
            let mut content =
                if lo == b * bs && hi == (b + 1) * bs { Vec::new() } else { self.disk.get(self.img, bs, b).clone() };
            let part = &data[(lo - offset) as usize..(hi - offset) as usize];
            if content.is_empty() {
                content.extend_from_slice(part);
            } else {
                content[(lo - b * bs) as usize..(hi - b * bs) as usize].copy_from_slice(part);
            }
            let (raw, journal) = match self.geo.journal_of.get(&b) {
                Some(&j) => self.journal_block(at, j, &content),
                None => (self.block(at, b, &content, false), false),
            };
            parts.push((raw, hi - lo, journal));
        }
        parts
    }
}

/// Pass 2: names blocks and inodes by path, as of a time.
struct Namer<'a> {
    owners: &'a HashMap<u64, Vec<Owner>>,
    /// Every name of every inode, in time order.
    names: HashMap<u32, Vec<NameAt>>,
    /// The block size.
    bs: u64,
}

impl<'a> Namer<'a> {
    /// Keep the entries of blocks that some inode owns as a directory, or that name
    /// themselves with '.'.
    fn new(p: &'a Pass) -> Namer<'a> {
        let is_dir_block = |b: u64| p.owners.get(&b).is_some_and(|l| l.iter().any(|o| o.2 == Own::Dir));
        let mut names: HashMap<u32, Vec<NameAt>> = HashMap::new();
        for (at, block, dot, name, ino) in &p.raw_names {
            if dot.is_some() || is_dir_block(*block) {
                names.entry(*ino).or_default().push((*at, *block, *dot, name.clone()));
            }
        }
        Namer { owners: &p.owners, names, bs: p.geo.bs }
    }

    /// The inode that owns block `b` at time `at`: the first owner at or after it, else
    /// the last one before it.
    fn owner_at(&self, b: u64, at: u64) -> Option<(u32, Own, u64)> {
        let l = self.owners.get(&b)?;
        l.iter().find(|o| o.0 >= at).or(l.last()).map(|o| (o.1, o.2, o.3))
    }

    /// The path of inode `ino` at time `at`, by its names at or after it.
    fn path(&self, ino: u32, at: u64) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        for _ in 0..PATH_DEPTH_MAX {
            if cur == ROOT_INO {
                parts.reverse();
                let p = parts.join("/");
                return Some(if p.is_empty() { "/".into() } else { p });
            }
            let l = self.names.get(&cur)?;
            let (_, block, dot, name) = l.iter().find(|e| e.0 >= at).or(l.last())?;
            parts.push(name.clone());
            cur = dot.or_else(|| self.owner_at(*block, at).map(|o| o.0))?;
        }
        None
    }

    fn dir_path(&self, ino: u32, at: u64) -> Option<String> {
        self.path(ino, at).map(|p| if p == "/" { p } else { format!("{p}/") })
    }

    /// The items of one classified write.
    fn write_items(&self, (index, offset, len, parts): RawWrite) -> WriteItems {
        let at = index + 1;
        let mut items = Vec::new();
        for (raw, bytes, journal) in parts {
            let item = |kind, path: Option<String>, detail: Option<String>| Item {
                kind,
                path,
                journal,
                detail,
                bytes,
                range: None,
            };
            match raw {
                Raw::Fixed(k) => items.push(item(k, None, None)),
                Raw::Inodes(changed) if changed.is_empty() => {
                    items.push(item(Kind::Inode, None, Some("unchanged".into())))
                }
                Raw::Inodes(changed) => {
                    let share = bytes / changed.len() as u64;
                    for ino in changed {
                        let p = self.path(ino, at).or(Some(format!("inode {ino}")));
                        items.push(Item { bytes: share, ..item(Kind::Inode, p, None) });
                    }
                }
                Raw::Other { block, dir } => match self.owner_at(block, at) {
                    Some((ino, Own::Dir, _)) => {
                        items.push(item(Kind::Directory, self.dir_path(ino, at), dir));
                    }
                    Some((ino, own, logical)) => {
                        let kind = if own == Own::Tree { Kind::ExtentTree } else { Kind::Data };
                        let path = self.path(ino, at).or(Some(format!("inode {ino}")));
                        let range = (kind == Kind::Data).then(|| (logical * self.bs, (logical + 1) * self.bs));
                        items.push(Item { range, ..item(kind, path, None) });
                    }
                    None => items.push(item(Kind::Unowned, None, None)),
                },
            }
        }
        WriteItems { index, offset, len, items: merge(items) }
    }
}

pub(crate) fn attribute(reader: &TraceReader) -> Result<Attribution, AttribError> {
    let base = reader.base_image_path();
    let img = File::open(&base).map_err(|e| AttribError::Io { path: base.display().to_string(), source: e })?;
    let (geo, mut notes) = match geometry(&img) {
        Ok(g) => g,
        Err(e) => return Attribution::not_covered(reader, with_sources(&e)),
    };
    let mut p = Pass::new(&img, &geo);
    p.read_base(&mut notes);
    let raws = p.classify_writes(reader)?;
    let namer = Namer::new(&p);
    let writes = raws.into_iter().map(|r| namer.write_items(r)).collect();
    notes.sort();
    notes.dedup();
    Ok(Attribution { fs: "ext4".into(), covered: true, notes, writes })
}

/// An error and its sources, `: `-separated, for a note.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out += &format!(": {s}");
        cur = s.source();
    }
    out
}
