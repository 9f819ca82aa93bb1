//! Applying a logical state: the file tree it leaves, as data (names → kind, size and
//! content as ranges of trace data, initial data, zeros or garbage), from the initial
//! tree plus the persisted micro-ops in program order. No I/O: the logical explorer
//! materializes the tree as a directory.
//!
//! Speed: an [`Applier`] keeps the tree after every [`CHECKPOINT_EVERY`] micro-ops of
//! the plan (built once, on demand); a state starts from the last checkpoint before its
//! first missing micro-op and applies only the rest, so a state costs a clone of the
//! tree plus the micro-ops after its first omission, not the whole trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::logical::{Ino, LogicalTrace, NodeKind, ROOT};
use crate::lstate::LState;
use crate::micro::{Fill, Micro, Plan};

/// Micro-ops between two checkpoints of an [`Applier`].
pub const CHECKPOINT_EVERY: usize = 64;

/// A run of bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub fill: Fill,
}

/// A file identity's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Inode {
    pub kind: NodeKind,
    pub size: u64,
    /// Sorted, disjoint; bytes below `size` not covered read as zeros.
    pub extents: Vec<Extent>,
}

/// A file system state: identities and directory entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    inodes: BTreeMap<Ino, Inode>,
    entries: BTreeMap<(Ino, Vec<u8>), Ino>,
}

/// A file as a path in the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FileView {
    pub ino: Ino,
    pub kind: NodeKind,
    pub size: u64,
    /// Covers `[0, size)` exactly, holes as [`Fill::Zeros`].
    pub content: Vec<Extent>,
}

/// Deepest directory nesting a view follows (a cycle guard).
const DEPTH_MAX: usize = 4096;

impl Tree {
    /// The tree before the workload ran.
    pub fn initial(trace: &LogicalTrace) -> Tree {
        let mut t = Tree::default();
        t.inodes.insert(ROOT, Inode { kind: NodeKind::Dir, size: 0, extents: Vec::new() });
        let mut by_path: BTreeMap<PathBuf, Ino> = BTreeMap::new();
        for (init, &ino) in trace.initial.iter().zip(&trace.initial_inos) {
            let parent = init.path.parent().and_then(|p| by_path.get(p).copied()).unwrap_or(ROOT);
            let name = init.path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
            let extents = if init.size > 0 {
                vec![Extent { offset: 0, len: init.size, fill: Fill::Initial { ino, at: 0 } }]
            } else {
                Vec::new()
            };
            t.inodes.insert(ino, Inode { kind: init.kind.clone(), size: init.size, extents });
            t.entries.insert((parent, name), ino);
            by_path.insert(init.path.clone(), ino);
        }
        t
    }

    /// Applies one micro-op (`kinds`: what each identity is, for new ones).
    pub fn apply(&mut self, micro: &Micro, kinds: &[NodeKind]) {
        match micro {
            Micro::Entries(changes) => {
                for c in changes {
                    let key = (c.at.parent, c.at.name.clone());
                    match c.to {
                        Some(ino) => {
                            self.inode(ino, kinds);
                            self.entries.insert(key, ino);
                        }
                        None => {
                            if self.entries.get(&key) == Some(&c.was) {
                                self.entries.remove(&key);
                            }
                        }
                    }
                }
            }
            Micro::Write { ino, offset, len, fill } => {
                let node = self.inode(*ino, kinds);
                splice(&mut node.extents, Extent { offset: *offset, len: *len, fill: *fill });
                node.size = node.size.max(offset + len);
            }
            Micro::SetSize { ino, size } => {
                let node = self.inode(*ino, kinds);
                cut(&mut node.extents, *size);
                node.size = *size;
            }
            Micro::Sync | Micro::Ack(_) => {}
        }
    }

    fn inode(&mut self, ino: Ino, kinds: &[NodeKind]) -> &mut Inode {
        self.inodes.entry(ino).or_insert_with(|| Inode {
            kind: kinds.get(ino as usize).cloned().unwrap_or(NodeKind::File),
            size: 0,
            extents: Vec::new(),
        })
    }

    /// Every path under the root (relative, parents first) and what it shows.
    pub fn files(&self) -> BTreeMap<PathBuf, FileView> {
        let mut out = BTreeMap::new();
        self.visit(|path, view| {
            out.insert(path.to_path_buf(), view);
        });
        out
    }

    /// Calls `f` on every path under the root and what it shows, in the order of
    /// [`Tree::files`]'s keys (a directory, then what it holds, names in byte order)
    /// without building the map: the order a path sorts in is that of a walk that
    /// takes each directory's entries in name order.
    pub fn visit(&self, mut f: impl FnMut(&Path, FileView)) {
        let mut stack: Vec<(Ino, PathBuf, usize)> = Vec::new();
        self.push_children(ROOT, Path::new(""), 0, &mut stack);
        while let Some((ino, path, depth)) = stack.pop() {
            let node = &self.inodes[&ino];
            let content = if node.kind == NodeKind::File { content(node) } else { Vec::new() };
            f(&path, FileView { ino, kind: node.kind.clone(), size: node.size, content });
            if node.kind == NodeKind::Dir && depth < DEPTH_MAX {
                self.push_children(ino, &path, depth + 1, &mut stack);
            }
        }
    }

    /// Pushes `dir`'s entries on `stack`, the first name on top.
    fn push_children(&self, dir: Ino, path: &Path, depth: usize, stack: &mut Vec<(Ino, PathBuf, usize)>) {
        let children = self.entries.range((dir, Vec::new())..).take_while(|((p, _), _)| *p == dir);
        let at = stack.len();
        stack.extend(children.map(|((_, name), &ino)| (ino, path.join(brink_calls::bytes_path(name)), depth)));
        stack[at..].reverse();
    }
}

/// `node`'s extents with holes filled in as zeros, up to its size.
fn content(node: &Inode) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut at = 0;
    for e in &node.extents {
        if e.offset > at {
            out.push(Extent { offset: at, len: e.offset - at, fill: Fill::Zeros });
        }
        out.push(*e);
        at = e.offset + e.len;
    }
    if node.size > at {
        out.push(Extent { offset: at, len: node.size - at, fill: Fill::Zeros });
    }
    out
}

/// Puts `new` over `extents` (sorted, disjoint), cutting what it covers.
fn splice(extents: &mut Vec<Extent>, new: Extent) {
    let end = new.offset + new.len;
    let mut out = Vec::with_capacity(extents.len() + 2);
    for e in extents.drain(..) {
        let e_end = e.offset + e.len;
        if e_end <= new.offset || e.offset >= end {
            out.push(e);
            continue;
        }
        if e.offset < new.offset {
            out.push(Extent { offset: e.offset, len: new.offset - e.offset, fill: e.fill });
        }
        if e_end > end {
            out.push(Extent { offset: end, len: e_end - end, fill: e.fill.skip(end - e.offset) });
        }
    }
    let at = out.partition_point(|e| e.offset < new.offset);
    out.insert(at, new);
    *extents = out;
}

/// Drops the bytes at and past `size`.
fn cut(extents: &mut Vec<Extent>, size: u64) {
    extents.retain(|e| e.offset < size);
    if let Some(last) = extents.last_mut() {
        last.len = last.len.min(size - last.offset);
    }
}

/// Builds the trees of a plan's states, sharing work between them (see the module docs).
pub struct Applier<'a> {
    trace: &'a LogicalTrace,
    plan: &'a Plan,
    /// `checkpoints[c]`: the tree after micro-ops `0..c * CHECKPOINT_EVERY`.
    checkpoints: Vec<Tree>,
}

impl<'a> Applier<'a> {
    pub fn new(trace: &'a LogicalTrace, plan: &'a Plan) -> Applier<'a> {
        Applier { trace, plan, checkpoints: vec![Tree::initial(trace)] }
    }

    /// The tree `state` leaves.
    pub fn tree(&mut self, state: &LState) -> Tree {
        let Some(end) = state.end else { return self.checkpoints[0].clone() };
        let end = end as usize;
        let first_gap = state.missing.first().map_or(end + 1, |&m| m as usize);
        let c = self.checkpoint(first_gap / CHECKPOINT_EVERY);
        let mut tree = self.checkpoints[c].clone();
        let mut gaps = state.missing.iter().peekable();
        for m in c * CHECKPOINT_EVERY..=end {
            if gaps.peek().is_some_and(|&&g| g as usize == m) {
                gaps.next();
                continue;
            }
            tree.apply(&self.plan.micro[m].micro, &self.trace.kinds);
        }
        tree
    }

    /// Makes checkpoints up to `c` (as far as the plan goes); the last one made.
    fn checkpoint(&mut self, c: usize) -> usize {
        while self.checkpoints.len() <= c {
            let from = (self.checkpoints.len() - 1) * CHECKPOINT_EVERY;
            let to = from + CHECKPOINT_EVERY;
            if to > self.plan.micro.len() {
                break;
            }
            let mut t = self.checkpoints.last().cloned().unwrap_or_default();
            for m in &self.plan.micro[from..to] {
                t.apply(&m.micro, &self.trace.kinds);
            }
            self.checkpoints.push(t);
        }
        c.min(self.checkpoints.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `visit` walks in the order paths sort in (what listings are hashed in): a
    /// directory, then what it holds, before a sibling whose name it prefixes.
    #[test]
    fn the_walk_is_in_the_order_of_sorted_paths() {
        let mut t = Tree::default();
        let mut add = |parent: Ino, name: &str, ino: Ino, kind: NodeKind| {
            t.inodes.insert(ino, Inode { kind, size: 0, extents: Vec::new() });
            t.entries.insert((parent, name.as_bytes().to_vec()), ino);
        };
        add(ROOT, "b", 1, NodeKind::Dir);
        add(1, "z", 2, NodeKind::File);
        add(ROOT, "a0", 3, NodeKind::File);
        add(ROOT, "a", 4, NodeKind::Dir);
        add(4, "x", 5, NodeKind::File);
        add(4, "x.d", 6, NodeKind::Dir);
        add(6, "y", 7, NodeKind::File);
        add(ROOT, "b.c", 8, NodeKind::File);
        add(ROOT, "\u{e9}", 9, NodeKind::File);
        t.inodes.insert(ROOT, Inode { kind: NodeKind::Dir, size: 0, extents: Vec::new() });
        let mut walked = Vec::new();
        t.visit(|p, _| walked.push(p.to_path_buf()));
        let mut sorted = walked.clone();
        sorted.sort();
        assert_eq!(walked, sorted);
        assert_eq!(walked.len(), 9);
        assert_eq!(walked[..3], [PathBuf::from("a"), PathBuf::from("a/x"), PathBuf::from("a/x.d")]);
    }
}
