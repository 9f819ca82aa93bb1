//! Block writes linked to the calls whose effect they carry (issue 14), so that a
//! vulnerability can be told in the program's terms: not "the journal copy of the
//! directory block of /" but "rename(config.tmp → config) at workload.sh:10".
//!
//! Pure logic over an [`Attribution`] and the trace's calls, ext4 only like the rest of
//! this crate (a write of an uncovered file system holds nothing to link). For each
//! attributed write:
//! - **file data** (`data` items, with the file range the blocks hold): the write-like
//!   calls (`write`, `pwrite`, `writev`, `truncate`, `fallocate`, copies) to that file
//!   (followed through renames) whose range overlaps the block, made since the last
//!   write of that block in the same view (in place, or as a journal copy);
//! - **a file's inode**: the calls that changed its size since the last write of that
//!   inode in the same view (appends, truncates);
//! - **a directory block's entry change** (`+a`, `-a`, `a→b`): the `rename`, `creat`,
//!   `open(O_CREAT)`, `link`, `unlink`, `rmdir`, `mkdir` or `symlink` that made it, the
//!   earliest such call that no earlier write of that directory in the same view held;
//! - **a jbd2 commit block**: the calls of the journal copies it commits;
//! - and the `fsync`, `fdatasync`, `sync` or `syncfs` that made the write durable, if
//!   any: the first one to return after the write's calls, no earlier than the write.
//!
//! # Ordering calls against block events: the marks
//!
//! Calls and block events are two logs; they are ordered against each other only at the
//! marks, which are both a call (a write to the mark file) and an event. A call that
//! completed before mark k's call is taken to have happened before mark k's event, and
//! one that completed after it, after. So a write between marks k and k+1 can carry only
//! calls that completed before mark k+1's call (any call, if no mark follows). This is an
//! approximation: a call that overlapped the mark's write in another thread may be on
//! either side, and between two marks the block writes and the calls are not ordered at
//! all (which is why a change is matched to the *earliest* call not yet carried, and
//! data to the calls since the block's previous write). A trace whose mark calls and mark
//! events do not pair up (a count differs) is joined on the pairs it has.
//!
//! Offsets of plain `write`s are the file position, which strace does not print: the
//! position is followed per file from its `open` (0, or the end for `O_APPEND`), moved
//! by each write; `lseek` is not traced, so a seek makes the range approximate, and a
//! file whose size is unknown (it existed before the trace) matches any block when
//! appended to.

use std::collections::{BTreeSet, HashMap};

use brink_calls::{Call, CallKind, CallResult, Place, Resolver, Site, is_mark, mark_text, open_flag, relative};
use serde::{Deserialize, Serialize};

use crate::{Attribution, Kind};

/// Most blocks of one data item linked block by block (16 MiB of 4 KiB blocks); the
/// rest of a larger item is linked as one.
pub const LINK_BLOCKS_MAX: u64 = 4096;
/// The granularity data is linked at (ext4's usual block).
const LINK_BLOCK_BYTES: u64 = 4096;

/// One call of the table: enough to name it without the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRow {
    pub seq: u64,
    /// The system call's name (`renameat`, `pwrite64`).
    pub name: String,
    /// What it does, in words: `write`, `truncate`, `fallocate`, `copy`, `rename`,
    /// `create`, `link`, `unlink`, `rmdir`, `mkdir`, `symlink`, `fsync`, `fdatasync`,
    /// `sync`, `syncfs`, `acknowledge`.
    pub kind: String,
    /// Its paths, relative to the workload's directory (`.` for the directory itself).
    pub paths: Vec<String>,
    pub site: Site,
    /// The acknowledgement's text, if this is a mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
}

impl CallRow {
    /// `rename(config.tmp → config)`, `write(log)`, `fsync(.)`.
    pub fn text(&self) -> String {
        let sep = if matches!(self.kind.as_str(), "rename" | "link" | "symlink" | "copy") { " → " } else { ", " };
        format!("{}({})", self.kind, self.paths.join(sep))
    }
}

/// The calls one write carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteCalls {
    /// The write's event index.
    pub index: u64,
    /// Seqs of the calls whose effect it carries, ascending.
    pub calls: Vec<u64>,
    /// The sync call that made it durable, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_by: Option<u64>,
}

/// Every attributed write's calls, and a table of the calls they name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLinks {
    /// The workload's directory (paths in the table are relative to it).
    pub cwd: String,
    /// The calls linked, the marks and the sync calls named, by seq.
    pub calls: Vec<CallRow>,
    /// Writes that carry some call, by event index.
    pub writes: Vec<WriteCalls>,
    /// Seqs of the mark calls, in order (the k-th is the trace's k-th mark event).
    pub marks: Vec<u64>,
}

impl CallLinks {
    /// The calls of the write at event `index`.
    pub fn of_write(&self, index: u64) -> Option<&WriteCalls> {
        self.writes.binary_search_by_key(&index, |w| w.index).ok().map(|i| &self.writes[i])
    }

    /// The call with sequence number `seq`, if in the table.
    pub fn call(&self, seq: u64) -> Option<&CallRow> {
        self.calls.binary_search_by_key(&seq, |c| c.seq).ok().map(|i| &self.calls[i])
    }

    /// The linked calls of the write at `index` in words, for `brink show --files`:
    /// `renameat(config.tmp → config) at workload.sh:10; durable by fsync(config.tmp) at workload.sh:9`.
    pub fn describe_write(&self, index: u64) -> Option<String> {
        let w = self.of_write(index)?;
        let base = brink_calls::bytes_path(self.cwd.as_bytes());
        let name = |seq: u64| {
            self.call(seq)
                .map_or_else(|| format!("call {seq}"), |c| format!("{} at {}", c.text(), c.site.show(Some(base))))
        };
        // A loop's calls say the same: one line each, with how many.
        let mut runs: Vec<(String, usize)> = Vec::new();
        for line in w.calls.iter().map(|&s| name(s)) {
            match runs.last_mut() {
                Some((last, n)) if *last == line => *n += 1,
                _ => runs.push((line, 1)),
            }
        }
        let mut text: Vec<String> =
            runs.into_iter().map(|(line, n)| if n == 1 { line } else { format!("{line} (×{n})") }).collect();
        if let Some(d) = w.durable_by {
            text.push(format!("durable by {}", name(d)));
        }
        Some(text.join("; "))
    }
}

/// What a call did that a block write can carry.
#[derive(Debug, Clone)]
enum Effect {
    /// File data (or size) of file identity `file` in `[start, end)`; `grows` when the
    /// file's size grew.
    Data {
        file: usize,
        start: u64,
        end: u64,
        grows: bool,
    },
    /// Directory entry changes: (directory as attributed, `+a`/`-a`/`a→b`) alternatives.
    Entry {
        words: Vec<(String, String)>,
    },
    Sync,
}

/// A file identity: its names (time-ordered) and what is known of its size and position.
#[derive(Debug, Default)]
struct Ident {
    names: Vec<(u64, String)>,
    size: Option<u64>,
    cursor: u64,
    append: bool,
}

/// The name space as the calls change it (relative paths), with file identities that
/// renames move.
#[derive(Debug, Default)]
struct Names {
    at: HashMap<String, usize>,
    idents: Vec<Ident>,
}

impl Names {
    fn get(&mut self, path: &str, seq: u64) -> usize {
        if let Some(&i) = self.at.get(path) {
            return i;
        }
        self.bind(path, seq, Ident::default())
    }

    fn bind(&mut self, path: &str, seq: u64, mut ident: Ident) -> usize {
        ident.names.push((seq, path.to_string()));
        self.idents.push(ident);
        let i = self.idents.len() - 1;
        self.at.insert(path.to_string(), i);
        i
    }

    /// `old` (and everything under it) now named `new`.
    fn rename(&mut self, old: &str, new: &str, seq: u64) {
        let moved: Vec<(String, usize)> = self
            .at
            .iter()
            .filter(|(p, _)| *p == old || p.strip_prefix(old).is_some_and(|r| r.starts_with('/')))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, i) in moved {
            self.at.remove(&p);
            let to = format!("{new}{}", &p[old.len()..]);
            self.idents[i].names.push((seq, to.clone()));
            self.at.insert(to, i);
        }
    }
}

/// The directory of a relative path as attribution names it (`/`, `logs/`) and its last
/// component.
fn split(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n.to_string()),
        None => ("/".to_string(), path.to_string()),
    }
}

/// Link the writes of `attr` to `calls` (in seq order) of a workload run in `place`;
/// `mark_events` are the event indices of the trace's marks, in order.
pub fn link(attr: &Attribution, calls: &[Call], place: Place<'_>, mark_events: &[u64]) -> CallLinks {
    let walk = Walk::over(calls, place);
    let mut links = Linker::new(&walk, mark_events).run(attr);
    let mut wanted: BTreeSet<u64> =
        links.writes.iter().flat_map(|w| w.calls.iter().chain(&w.durable_by)).copied().collect();
    wanted.extend(&walk.marks);
    links.calls = walk.rows.into_iter().filter(|r| wanted.contains(&r.seq)).collect();
    links.cwd = String::from_utf8_lossy(place.cwd).into_owned();
    links
}

/// Every call that changes the file system, makes it durable or acknowledges, in words,
/// in seq order: what the logical level names its operations by.
pub fn call_rows(calls: &[Call], place: Place<'_>) -> Vec<CallRow> {
    Walk::over(calls, place).rows
}

/// Pass 1: each call's effect, in order.
struct Walk<'a> {
    place: Place<'a>,
    resolver: Resolver,
    names: Names,
    effects: Vec<(u64, Effect)>,
    rows: Vec<CallRow>,
    marks: Vec<u64>,
}

impl<'a> Walk<'a> {
    fn new(calls: &[Call], place: Place<'a>) -> Walk<'a> {
        let resolver = Resolver::new(calls, place.cwd);
        Walk { place, resolver, names: Names::default(), effects: Vec::new(), rows: Vec::new(), marks: Vec::new() }
    }

    /// The walk over every call of `calls`.
    fn over(calls: &[Call], place: Place<'a>) -> Walk<'a> {
        let mut walk = Walk::new(calls, place);
        for c in calls {
            walk.call(c);
        }
        walk
    }

    /// A path on the recorded file system, relative; None outside it.
    fn rel(&self, abs: &[u8]) -> Option<String> {
        let r = relative(abs, self.place.cwd);
        (!r.starts_with('/') && abs.starts_with(b"/")).then_some(r)
    }

    fn call(&mut self, c: &Call) {
        let ok = matches!(c.result, CallResult::Ok(_));
        if ok && is_mark(c, self.place) {
            self.marks.push(c.seq);
            self.row(c, "acknowledge", Vec::new(), Some(mark_text(c)));
        } else if ok {
            let paths: Vec<Option<String>> =
                brink_calls::paths_of(c, &self.resolver).iter().map(|p| self.rel(p)).collect();
            if let Some(kind) = self.effect(c, &paths) {
                let shown = paths.into_iter().flatten().collect();
                self.row(c, kind, shown, None);
            }
        } else if let (CallKind::Fsync { .. }, CallResult::Err(_)) = (&c.kind, &c.result) {
            // A failed fsync made nothing durable (no effect), but the logical level
            // names it: the writes it may have dropped.
            let paths = brink_calls::paths_of(c, &self.resolver).iter().filter_map(|p| self.rel(p)).collect();
            self.row(c, kind_word(c), paths, None);
        }
        self.resolver.observe(c);
    }

    fn row(&mut self, c: &Call, kind: &str, paths: Vec<String>, mark: Option<String>) {
        let (name, site) = (c.name.clone(), Site::of(c));
        self.rows.push(CallRow { seq: c.seq, name, kind: kind.into(), paths, site, mark });
    }

    /// Record `c`'s effect (its paths made relative, None outside the file system);
    /// the kind in words if it has one.
    fn effect(&mut self, c: &Call, paths: &[Option<String>]) -> Option<&'static str> {
        let p0 = paths.first().cloned().flatten();
        let seq = c.seq;
        let effect = match &c.kind {
            CallKind::Open { flags, .. } => return self.open(seq, p0?, *flags),
            CallKind::Write { offset, len, .. } => {
                let n = match c.result {
                    CallResult::Ok(n) => u64::try_from(n).unwrap_or(0),
                    _ => *len,
                };
                self.data(seq, &p0?, *offset, n)
            }
            CallKind::Truncate { len, .. } => self.truncate(seq, &p0?, *len),
            CallKind::Fallocate { offset, len, .. } => self.data(seq, &p0?, Some(*offset), *len),
            CallKind::Copy { to_offset, len, .. } => {
                self.data(seq, paths.get(1).cloned().flatten().as_deref()?, *to_offset, *len)
            }
            CallKind::Rename { .. } => self.rename(seq, p0?, paths.get(1).cloned().flatten()?),
            CallKind::Link { .. } => self.link(seq, &p0?, &paths.get(1).cloned().flatten()?),
            CallKind::Unlink { .. } => {
                let p = p0?;
                self.names.at.remove(&p);
                let (d, n) = split(&p);
                Effect::Entry { words: vec![(d, format!("-{n}"))] }
            }
            CallKind::Mkdir { .. } | CallKind::Symlink { .. } => {
                let p = p0?;
                self.names.bind(&p, seq, Ident { size: Some(0), ..Ident::default() });
                let (d, n) = split(&p);
                Effect::Entry { words: vec![(d, format!("+{n}"))] }
            }
            CallKind::Fsync { .. } => {
                p0?;
                Effect::Sync
            }
            CallKind::Sync | CallKind::Syncfs { .. } => Effect::Sync,
            _ => return None,
        };
        self.effects.push((seq, effect));
        Some(kind_word(c))
    }

    fn open(&mut self, seq: u64, p: String, flags: brink_calls::Flags) -> Option<&'static str> {
        let existed = self.names.at.contains_key(&p);
        let file = self.names.get(&p, seq);
        let ident = &mut self.names.idents[file];
        ident.cursor = 0;
        ident.append = flags.contains(open_flag::APPEND);
        if flags.contains(open_flag::TRUNC) || (!existed && flags.contains(open_flag::CREAT)) {
            ident.size = Some(0);
        }
        if !flags.contains(open_flag::CREAT) || existed {
            return None;
        }
        let (d, n) = split(&p);
        self.effects.push((seq, Effect::Entry { words: vec![(d, format!("+{n}"))] }));
        Some("create")
    }

    fn data(&mut self, seq: u64, p: &str, offset: Option<u64>, n: u64) -> Effect {
        let file = self.names.get(p, seq);
        let ident = &mut self.names.idents[file];
        let start = match (offset, ident.append, ident.size) {
            (Some(o), _, _) => Some(o),
            (None, true, size) => size,
            (None, false, _) => Some(ident.cursor),
        };
        let Some(start) = start else {
            return Effect::Data { file, start: 0, end: u64::MAX, grows: true };
        };
        let end = start.saturating_add(n);
        if offset.is_none() {
            ident.cursor = end;
        }
        let grows = ident.size.is_none_or(|s| end > s);
        ident.size = ident.size.map(|s| s.max(end));
        Effect::Data { file, start, end, grows }
    }

    fn truncate(&mut self, seq: u64, p: &str, len: u64) -> Effect {
        let file = self.names.get(p, seq);
        let ident = &mut self.names.idents[file];
        let old = ident.size.replace(len);
        let (start, end) = match old {
            Some(o) => (o.min(len), o.max(len)),
            None => (len, u64::MAX),
        };
        Effect::Data { file, start, end, grows: true }
    }

    fn rename(&mut self, seq: u64, old: String, new: String) -> Effect {
        self.names.at.remove(&new);
        self.names.rename(&old, &new, seq);
        let ((od, on), (nd, nn)) = (split(&old), split(&new));
        let mut words = vec![(nd.clone(), format!("+{nn}")), (od.clone(), format!("-{on}"))];
        if od == nd {
            words.insert(0, (nd, format!("{on}→{nn}")));
        }
        Effect::Entry { words }
    }

    fn link(&mut self, seq: u64, old: &str, new: &str) -> Effect {
        let file = self.names.get(old, seq);
        self.names.idents[file].names.push((seq, new.to_string()));
        self.names.at.insert(new.to_string(), file);
        let (d, n) = split(new);
        Effect::Entry { words: vec![(d, format!("+{n}"))] }
    }
}

/// A call's kind in words (see [`CallRow::kind`]).
fn kind_word(c: &Call) -> &'static str {
    match &c.kind {
        CallKind::Open { .. } => "create",
        CallKind::Write { .. } => "write",
        CallKind::Truncate { .. } => "truncate",
        CallKind::Fallocate { .. } => "fallocate",
        CallKind::Copy { .. } => "copy",
        CallKind::Rename { .. } => "rename",
        CallKind::Link { .. } => "link",
        CallKind::Unlink { removes_dir: true, .. } => "rmdir",
        CallKind::Unlink { .. } => "unlink",
        CallKind::Mkdir { .. } => "mkdir",
        CallKind::Symlink { .. } => "symlink",
        CallKind::Fsync { data_only: true, .. } => "fdatasync",
        CallKind::Fsync { .. } => "fsync",
        CallKind::Sync => "sync",
        CallKind::Syncfs { .. } => "syncfs",
        _ => "other",
    }
}

/// Pass 2: each write's items matched to the effects.
struct Linker<'a> {
    walk: &'a Walk<'a>,
    /// Per write: the seq bound of its window (calls before it may be carried).
    mark_events: &'a [u64],
    /// (journal view, path, block) → the last seq a write of that block carried.
    data_last: HashMap<(bool, String, u64), u64>,
    /// (journal view, path) → the last seq an inode write carried.
    inode_last: HashMap<(bool, String), u64>,
    /// (journal view, directory, seq): entry changes already carried.
    entries_done: BTreeSet<(bool, String, u64)>,
}

impl<'a> Linker<'a> {
    fn new(walk: &'a Walk<'a>, mark_events: &'a [u64]) -> Linker<'a> {
        Linker {
            walk,
            mark_events,
            data_last: HashMap::new(),
            inode_last: HashMap::new(),
            entries_done: BTreeSet::new(),
        }
    }

    /// Calls that completed before this seq may be carried by the write at `index`.
    fn bound(&self, index: u64) -> u64 {
        let k = self.mark_events.partition_point(|&e| e < index);
        self.walk.marks.get(k).copied().unwrap_or(u64::MAX)
    }

    /// Calls that completed after this seq came after the write at `index`'s window began.
    fn floor(&self, index: u64) -> u64 {
        let k = self.mark_events.partition_point(|&e| e < index);
        k.checked_sub(1).and_then(|k| self.walk.marks.get(k)).copied().unwrap_or(0)
    }

    fn run(mut self, attr: &Attribution) -> CallLinks {
        let mut writes = Vec::new();
        let mut txn: BTreeSet<u64> = BTreeSet::new();
        for w in &attr.writes {
            let bound = self.bound(w.index);
            let mut calls: BTreeSet<u64> = BTreeSet::new();
            for it in &w.items {
                let Some(path) = it.path.as_deref() else { continue };
                let got = match it.kind {
                    Kind::Data => self.data(it.journal, path, it.range, bound),
                    Kind::Inode => self.inode(it.journal, path, bound),
                    Kind::Directory => self.entries(it.journal, path, it.detail.as_deref().unwrap_or(""), bound),
                    _ => Vec::new(),
                };
                if it.journal {
                    txn.extend(&got);
                }
                calls.extend(got);
            }
            if w.items.iter().any(|it| it.kind == Kind::JournalCommit) {
                calls.extend(std::mem::take(&mut txn));
            }
            if !calls.is_empty() {
                let durable_by = self.durable_by(&calls, self.floor(w.index));
                writes.push(WriteCalls { index: w.index, calls: calls.into_iter().collect(), durable_by });
            }
        }
        CallLinks { writes, marks: self.walk.marks.clone(), ..CallLinks::default() }
    }

    /// The identities that bore `path` before `bound`.
    fn files_named(&self, path: &str, bound: u64) -> BTreeSet<usize> {
        let idents = &self.walk.names.idents;
        (0..idents.len()).filter(|&i| idents[i].names.iter().any(|(s, n)| *s < bound && n == path)).collect()
    }

    fn data(&mut self, journal: bool, path: &str, range: Option<(u64, u64)>, bound: u64) -> Vec<u64> {
        let files = self.files_named(path, bound);
        let (start, end) = range.unwrap_or((0, u64::MAX));
        let step = match range {
            Some((a, b)) => ((b - a) / LINK_BLOCKS_MAX).max(LINK_BLOCK_BYTES),
            None => u64::MAX,
        };
        let mut out = Vec::new();
        let mut lo = start;
        while lo < end {
            let hi = lo.saturating_add(step).min(end);
            let key = (journal, path.to_string(), lo);
            let last = self.data_last.get(&key).copied();
            let got: Vec<u64> = self
                .walk
                .effects
                .iter()
                .filter(|(s, _)| *s < bound && last.is_none_or(|l| *s > l))
                .filter(|(_, e)| matches!(e, Effect::Data { file, start: a, end: b, .. } if files.contains(file) && *a < hi && lo < *b))
                .map(|(s, _)| *s)
                .collect();
            if let Some(&m) = got.iter().max() {
                self.data_last.insert(key, m);
            }
            out.extend(got);
            lo = hi;
        }
        out
    }

    fn inode(&mut self, journal: bool, path: &str, bound: u64) -> Vec<u64> {
        let files = self.files_named(path, bound);
        let key = (journal, path.to_string());
        let last = self.inode_last.get(&key).copied();
        let got: Vec<u64> = self
            .walk
            .effects
            .iter()
            .filter(|(s, _)| *s < bound && last.is_none_or(|l| *s > l))
            .filter(|(_, e)| matches!(e, Effect::Data { file, grows: true, .. } if files.contains(file)))
            .map(|(s, _)| *s)
            .collect();
        if let Some(&m) = got.iter().max() {
            self.inode_last.insert(key, m);
        }
        got
    }

    /// Each word of a directory block's change, matched to the earliest call that made
    /// such a change there and that no earlier write of this view carried.
    fn entries(&mut self, journal: bool, dir: &str, detail: &str, bound: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for word in detail.split(' ').filter(|w| !w.is_empty()) {
            let found = self.walk.effects.iter().find(|(s, e)| {
                *s < bound
                    && !self.entries_done.contains(&(journal, dir.to_string(), *s))
                    && matches!(e, Effect::Entry { words } if words.iter().any(|(d, w)| d == dir && w == word))
            });
            if let Some(&(s, _)) = found {
                self.entries_done.insert((journal, dir.to_string(), s));
                out.push(s);
            }
        }
        out
    }

    /// The first sync call after the write's calls, no earlier than its window.
    fn durable_by(&self, calls: &BTreeSet<u64>, floor: u64) -> Option<u64> {
        let after = calls.last().copied().unwrap_or(0).max(floor);
        self.walk.effects.iter().find(|(s, e)| *s > after && matches!(e, Effect::Sync)).map(|(s, _)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Item, WriteItems};

    /// A workload in `/w` (strace's text, `-y` paths): write `a.tmp`, fsync it, rename
    /// it over `a`, acknowledge; twice. Seqs are line numbers from 0.
    const CALLS: &[u8] = b"100 1.0 openat(AT_FDCWD</w>, \"a.tmp\", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3</w/a.tmp>\n\
        100 1.1 write(3</w/a.tmp>, \"x\", 4096) = 4096\n\
        100 1.2 fsync(3</w/a.tmp>) = 0\n\
        100 1.3 rename(\"a.tmp\", \"a\") = 0\n\
        100 1.4 write(4</m>, \"v1\\n\", 3) = 3\n\
        100 1.5 openat(AT_FDCWD</w>, \"a.tmp\", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3</w/a.tmp>\n\
        100 1.6 write(3</w/a.tmp>, \"y\", 4096) = 4096\n\
        100 1.7 write(3</w/a.tmp>, \"y\", 4096) = 4096\n\
        100 1.8 fsync(3</w/a.tmp>) = 0\n\
        100 1.9 rename(\"a.tmp\", \"a\") = 0\n\
        100 2.0 write(4</m>, \"v2\\n\", 3) = 3\n";

    fn item(kind: Kind, path: &str, journal: bool, detail: &str, range: Option<(u64, u64)>) -> Item {
        let detail = (!detail.is_empty()).then(|| detail.to_string());
        Item { kind, path: Some(path.into()), journal, detail, bytes: 4096, range }
    }

    fn write(index: u64, items: Vec<Item>) -> WriteItems {
        WriteItems { index, offset: 0, len: 4096, items }
    }

    fn commit(index: u64) -> WriteItems {
        let it = Item { kind: Kind::JournalCommit, path: None, journal: false, detail: None, bytes: 4096, range: None };
        write(index, vec![it])
    }

    /// Events: 0 data of a.tmp, 1 journal (+a.tmp, inode), 2 commit, 3 mark v1,
    /// 4 data of a.tmp (second version, block 1 only), 5 journal (a.tmp→a +a.tmp),
    /// 6 commit, 7 mark v2, 8 journal (a.tmp→a), 9 commit, 10 in place (+a).
    #[test]
    fn writes_carry_the_calls_they_hold_joined_at_marks() {
        let calls = brink_calls::parse_bytes(CALLS).unwrap().calls;
        let data = |r| item(Kind::Data, "a.tmp", false, "", Some(r));
        let attr = Attribution {
            fs: "ext4".into(),
            covered: true,
            notes: Vec::new(),
            writes: vec![
                write(0, vec![data((0, 4096))]),
                write(
                    1,
                    vec![item(Kind::Directory, "/", true, "+a.tmp", None), item(Kind::Inode, "a.tmp", true, "", None)],
                ),
                commit(2),
                write(4, vec![data((4096, 8192))]),
                write(5, vec![item(Kind::Directory, "/", true, "a.tmp→a +a.tmp", None)]),
                commit(6),
                write(8, vec![item(Kind::Directory, "/", true, "a.tmp→a", None)]),
                commit(9),
                write(10, vec![item(Kind::Directory, "/", false, "+a", None)]),
            ],
        };
        let place = Place { cwd: b"/w", mark_file: b"/m" };
        let links = link(&attr, &calls, place, &[3, 7]);
        let got: Vec<String> =
            links.writes.iter().map(|w| format!("{}: {:?} durable by {:?}", w.index, w.calls, w.durable_by)).collect();
        // The second rename (9) completed before mark v2 too, but the first change
        // `a.tmp→a` no write carried yet is the first rename's (3); the data write of the
        // second version's block 1 carries only the write at 4096 (7).
        expect_test::expect![[r#"
            0: [1] durable by Some(2)
            1: [0, 1] durable by Some(2)
            2: [0, 1] durable by Some(2)
            4: [7] durable by Some(8)
            5: [3, 5] durable by Some(8)
            6: [3, 5] durable by Some(8)
            8: [9] durable by None
            9: [9] durable by None
            10: [3] durable by None"#]]
        .assert_eq(&got.join("\n"));
        assert_eq!(links.marks, [4, 10]);
        let rename = links.call(3).unwrap();
        assert_eq!((rename.kind.as_str(), rename.text()), ("rename", "rename(a.tmp → a)".into()));
        assert_eq!(links.call(4).unwrap().mark.as_deref(), Some("v1"));
    }

    /// A write no call explains (global metadata, an uncovered file system) carries none.
    #[test]
    fn metadata_and_unknown_writes_carry_no_call() {
        let calls = brink_calls::parse_bytes(CALLS).unwrap().calls;
        let sb = Item { kind: Kind::Superblock, path: None, journal: false, detail: None, bytes: 4096, range: None };
        let attr =
            Attribution { fs: "ext4".into(), covered: true, notes: Vec::new(), writes: vec![write(0, vec![sb])] };
        let links = link(&attr, &calls, Place { cwd: b"/w", mark_file: b"/m" }, &[3, 7]);
        assert!(links.writes.is_empty());
        assert_eq!(links.calls.len(), 2, "the marks only: {:?}", links.calls);
    }
}
