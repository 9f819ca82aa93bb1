//! Attribution: what each write of a trace holds in the file system.
//!
//! A crash state is named by block writes; a person acts on files and operations. This
//! crate maps every write of a trace to *items*: which file or directory (by path) and
//! what part of it (file data, its inode, a directory block, the journal, allocation
//! bitmaps, the superblock). Vulnerabilities are grouped and explained by these items,
//! never by block numbers, so the same bug has the same description when the next
//! version of the application lays its blocks out differently.
//!
//! Coverage (`Attribution::covered`):
//! - **ext4**: a Rust reader of the file system's own metadata *as the trace writes it*
//!   (`ext4.rs`). The base image gives the starting inodes and directories; every write
//!   of an inode table block or a directory block, in place or as a copy in the jbd2
//!   journal (whose descriptor blocks say which block each copy is for), updates them.
//!   So a data block written before the inode that owns it reached the disk is still
//!   attributed to that inode, and a file renamed later is named as it was called when
//!   the write happened (its next name at or after the write).
//! - **XFS, btrfs**: not covered. Their writes carry one `unknown` item that says so;
//!   vulnerabilities on them are grouped by the checker's message only.
//!
//! Not attributed on ext4: `meta_bg` layouts, block-mapped (non-extent) files, inline
//! data, extended attribute blocks (they show as `unowned`).

#![forbid(unsafe_code)]

mod ext4;
mod link;

use std::collections::BTreeMap;

use brink_trace::{TraceError, TraceReader};
use serde::{Deserialize, Serialize};

pub use ext4::LayoutError;
pub use link::{CallLinks, CallRow, LINK_BLOCKS_MAX, WriteCalls, call_rows, link};

/// What part of the file system a piece of a write holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Superblock,
    GroupDescriptors,
    BlockBitmap,
    InodeBitmap,
    /// An inode (size, times, extents) of the item's path.
    Inode,
    /// A block of the directory at the item's path (entries added and removed in `detail`).
    Directory,
    /// File contents.
    Data,
    /// An extent tree block of a file.
    ExtentTree,
    JournalSuperblock,
    JournalDescriptor,
    JournalCommit,
    JournalRevoke,
    /// A journal block that is none of the above (a copy the reader could not place).
    Journal,
    /// A block no inode of the trace ever owns.
    Unowned,
    /// The file system is not covered.
    Unknown,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Superblock => "superblock",
            Kind::GroupDescriptors => "group descriptors",
            Kind::BlockBitmap => "block bitmap",
            Kind::InodeBitmap => "inode bitmap",
            Kind::Inode => "inode",
            Kind::Directory => "directory block",
            Kind::Data => "data",
            Kind::ExtentTree => "extent tree",
            Kind::JournalSuperblock => "journal superblock",
            Kind::JournalDescriptor => "journal descriptor",
            Kind::JournalCommit => "journal commit block",
            Kind::JournalRevoke => "journal revoke block",
            Kind::Journal => "journal block",
            Kind::Unowned => "unowned block",
            Kind::Unknown => "unattributed block",
        }
    }

    /// Bookkeeping of the journal itself rather than a copy of something.
    pub fn is_journal_bookkeeping(self) -> bool {
        matches!(
            self,
            Kind::JournalSuperblock
                | Kind::JournalDescriptor
                | Kind::JournalCommit
                | Kind::JournalRevoke
                | Kind::Journal
        )
    }
}

/// One thing a write holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub kind: Kind,
    /// The file or directory, relative to the root (`config`, `logs/app.log`,
    /// directories end in `/`, the root is `/`); none for global metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A copy in the journal rather than the block in place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub journal: bool,
    /// For directory blocks: the entries this write adds and removes (`+config -config.tmp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Bytes of the write that hold this item.
    pub bytes: u64,
    /// For file data: the byte range of the file the write's blocks hold (`[start, end)`,
    /// whole blocks; the span when the write holds several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(u64, u64)>,
}

impl Item {
    /// The identity of an item in a signature: kind and path. A journal copy has the key
    /// of the block it copies: the journal is only how the block reaches the disk.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.name(), self.path.as_deref().unwrap_or("-"))
    }

    /// In words: "the directory block of / (+config -config.tmp)".
    pub fn describe(&self) -> String {
        let what = match (&self.path, self.kind) {
            (Some(p), Kind::Data) => format!("the data of {p}"),
            (Some(p), Kind::Inode) => format!("the inode of {p}"),
            (Some(p), Kind::Directory) => format!("the directory block of {p}"),
            (Some(p), Kind::ExtentTree) => format!("the extent tree of {p}"),
            (Some(p), k) => format!("the {} of {p}", k.name()),
            (None, Kind::Inode) => "an inode".to_string(),
            (None, k) => format!("the {}", k.name()),
        };
        let what = if self.journal { format!("the journal copy of {what}") } else { what };
        match &self.detail {
            Some(d) if !d.is_empty() => format!("{what} ({d})"),
            _ => what,
        }
    }
}

/// The items of one write event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteItems {
    /// The event index of the write in its trace.
    pub index: u64,
    pub offset: u64,
    pub len: u64,
    pub items: Vec<Item>,
}

/// What every write of a trace holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub fs: String,
    /// Whether the file system is covered (see the crate docs).
    pub covered: bool,
    /// What the reader could not do, in words (empty when everything was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub writes: Vec<WriteItems>,
}

/// Why a trace cannot be attributed at all. A base image whose layout cannot be read
/// is not an error: its attribution covers nothing and its notes say why
/// ([`LayoutError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttribError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Attribution {
    /// Attribute every write of the trace.
    pub fn of_trace(reader: &TraceReader) -> Result<Attribution, AttribError> {
        let fs = reader.meta().fs.clone();
        if fs == "ext4" {
            return ext4::attribute(reader);
        }
        Attribution::not_covered(reader, format!("attribution covers ext4 only; {fs} writes are not attributed"))
    }

    /// Every write as one `unknown` item, with the reason in the notes.
    fn not_covered(reader: &TraceReader, why: String) -> Result<Attribution, AttribError> {
        let mut writes = Vec::new();
        for ev in reader.events()? {
            let ev = ev?;
            if let brink_trace::Event::Write(w) = &ev.event {
                let item =
                    Item { kind: Kind::Unknown, path: None, journal: false, detail: None, bytes: w.len, range: None };
                writes.push(WriteItems { index: ev.index, offset: w.offset, len: w.len, items: vec![item] });
            }
        }
        Ok(Attribution { fs: reader.meta().fs.clone(), covered: false, notes: vec![why], writes })
    }

    /// The items of the write at event `index`, if it is a write.
    pub fn of_write(&self, index: u64) -> Option<&[Item]> {
        self.writes.binary_search_by_key(&index, |w| w.index).ok().map(|i| self.writes[i].items.as_slice())
    }

    /// Per file or directory (global metadata under its kind's name): the writes that
    /// touch it and their bytes, split by kind. Sorted by path.
    pub fn per_file(&self) -> Vec<FileRow> {
        let mut rows: BTreeMap<String, FileRow> = BTreeMap::new();
        for w in &self.writes {
            let mut seen = std::collections::HashSet::new();
            for it in &w.items {
                let name = it
                    .path
                    .clone()
                    .unwrap_or_else(|| format!("({})", if it.journal { "journal" } else { it.kind.name() }));
                let row = rows.entry(name.clone()).or_insert_with(|| FileRow {
                    path: name.clone(),
                    writes: 0,
                    bytes: 0,
                    kinds: BTreeMap::new(),
                });
                if seen.insert(name) {
                    row.writes += 1;
                }
                row.bytes += it.bytes;
                let k = if it.journal { format!("journal {}", it.kind.name()) } else { it.kind.name().to_string() };
                *row.kinds.entry(k).or_insert(0) += it.bytes;
            }
        }
        rows.into_values().collect()
    }
}

/// One line of `brink show --files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    pub path: String,
    pub writes: u64,
    pub bytes: u64,
    /// Bytes by kind ("data", "inode", "journal directory block", ...).
    pub kinds: BTreeMap<String, u64>,
}

/// Merge items with the same key, summing bytes and joining details.
fn merge(items: Vec<Item>) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for it in items {
        match out.iter_mut().find(|o| merge_key(o) == merge_key(&it)) {
            Some(o) => {
                o.bytes += it.bytes;
                o.range = match (o.range, it.range) {
                    (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                    (a, b) => a.or(b),
                };
                if let Some(d) = it.detail.filter(|d| !d.is_empty()) {
                    o.detail = Some(match o.detail.take() {
                        Some(od) if !od.is_empty() => format!("{od} {d}"),
                        _ => d,
                    });
                }
            }
            None => out.push(it),
        }
    }
    out
}

/// Merge key within one write: a journal copy and the block in place stay apart.
fn merge_key(it: &Item) -> (bool, String) {
    (it.journal, it.key())
}
