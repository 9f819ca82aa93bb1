//! Micro-operations and their ordering: an [`Apm`] applied to a [`LogicalTrace`] gives a
//! [`Plan`], the micro-ops in program order with, for each, the earlier micro-ops it
//! depends on (a legal crash state holds every dependency of each of its members).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::apm::{Apm, BLOCK, Rules};
use crate::logical::{At, Gone, Ino, LogicalTrace, Op, RangeSync};

/// What a range of a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fill {
    /// The bytes of call `seq`'s data from `at` (the materializer reads them from the trace).
    Data {
        seq: u64,
        at: u64,
    },
    /// The bytes the file `ino` (an initial file) held at `at` before the workload ran.
    Initial {
        ino: Ino,
        at: u64,
    },
    Zeros,
    /// Garbage: bytes that were never written there (stale blocks); the materializer
    /// picks them (deterministically).
    Garbage,
}

impl Fill {
    /// The same fill `by` bytes further on.
    pub fn skip(self, by: u64) -> Fill {
        match self {
            Fill::Data { seq, at } => Fill::Data { seq, at: at + by },
            Fill::Initial { ino, at } => Fill::Initial { ino, at: at + by },
            other => other,
        }
    }
}

/// One change of a directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryChange {
    pub at: At,
    /// `Some`: the entry now names it; `None`: the entry names `was` no more.
    pub to: Option<Ino>,
    pub was: Ino,
}

/// A micro-operation: what persists as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Micro {
    /// Entry changes that persist together.
    Entries(Vec<EntryChange>),
    /// `len` bytes at `offset`; the size grows to cover them.
    Write { ino: Ino, offset: u64, len: u64, fill: Fill },
    /// The size becomes `size` (a grown part reads zeros).
    SetSize { ino: Ino, size: u64 },
    /// A barrier that made things durable (its dependencies say what).
    Sync,
    /// An acknowledgement.
    Ack(String),
}

/// A micro-op, the logical op it belongs to and its dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MicroOp {
    /// Index of its logical op in [`LogicalTrace::ops`].
    pub op: u32,
    pub micro: Micro,
    /// Earlier micro-ops (indices in [`Plan::micro`]) that must persist for it to.
    pub deps: Vec<u32>,
}

impl MicroOp {
    /// A barrier: never omitted while anything after it persists.
    pub fn is_barrier(&self) -> bool {
        matches!(self.micro, Micro::Sync | Micro::Ack(_))
    }
}

/// A trace's micro-ops under one APM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub apm: Apm,
    pub micro: Vec<MicroOp>,
    /// `op_start[i]..op_start[i + 1]` are logical op `i`'s micro-ops (`ops + 1` entries).
    pub op_start: Vec<u32>,
}

impl Plan {
    /// `trace` under `apm`.
    pub fn new(trace: &LogicalTrace, apm: Apm) -> Plan {
        let mut b = Builder {
            rules: apm.rules(),
            micro: Vec::new(),
            last_barrier: None,
            last_non_ack: None,
            last_meta: None,
            last_meta_of: HashMap::new(),
            last_append: HashMap::new(),
            last_zeros: HashMap::new(),
            last_page_data: HashMap::new(),
            pending: HashMap::new(),
            unsynced: BTreeSet::new(),
            dropped: HashMap::new(),
        };
        let mut op_start = Vec::with_capacity(trace.ops.len() + 1);
        for (i, op) in trace.ops.iter().enumerate() {
            op_start.push(b.micro.len() as u32);
            b.op(u32::try_from(i).unwrap_or(u32::MAX), op.seq, &op.op);
        }
        op_start.push(b.micro.len() as u32);
        Plan { apm, micro: b.micro, op_start }
    }

    /// Number of logical ops.
    pub fn ops(&self) -> usize {
        self.op_start.len().saturating_sub(1)
    }

    /// Logical op `i`'s micro-ops, as a range of indices.
    pub fn of_op(&self, i: usize) -> std::ops::Range<u32> {
        self.op_start[i]..self.op_start[i + 1]
    }

    /// Micro-ops that depend on each micro-op (the reverse of `deps`).
    pub fn dependents(&self) -> Vec<Vec<u32>> {
        let mut r = vec![Vec::new(); self.micro.len()];
        for (i, m) in self.micro.iter().enumerate() {
            for &d in &m.deps {
                r[d as usize].push(i as u32);
            }
        }
        r
    }
}

/// What a write micro-op is, for the ordering rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Data,
    Append,
    Meta,
    Barrier,
}

struct Builder {
    rules: Rules,
    micro: Vec<MicroOp>,
    last_barrier: Option<u32>,
    /// The last micro-op that is not an acknowledgement (an acknowledgement is no write:
    /// it orders what comes after it, not what came before).
    last_non_ack: Option<u32>,
    last_meta: Option<u32>,
    /// Per file: its last metadata micro-op.
    last_meta_of: HashMap<Ino, u32>,
    /// Per file: its last append micro-op.
    last_append: HashMap<Ino, u32>,
    /// Per file: its last zeros stage; per page of a file: its last data stage
    /// (`Rules::page_prefix`).
    last_zeros: HashMap<Ino, u32>,
    last_page_data: HashMap<(Ino, u64), u32>,
    /// Per file (a directory: its entries): micro-ops not yet made durable by a sync,
    /// with the byte range they touch (`u64::MAX` long for size changes and entries).
    pending: HashMap<Ino, Vec<(u32, u64, u64)>>,
    /// Every micro-op not yet made durable by a `sync`.
    unsynced: BTreeSet<u32>,
    /// Micro-ops dropped by a failed fsync, each with what depends on it instead.
    dropped: HashMap<u32, BTreeSet<u32>>,
}

impl Builder {
    fn rules(&self) -> Rules {
        self.rules
    }

    fn push(&mut self, op: u32, micro: Micro, class: Class, extra: &[u32]) -> u32 {
        let r = self.rules();
        let id = self.micro.len() as u32;
        let mut deps: BTreeSet<u32> = extra.iter().copied().collect();
        deps.extend(self.last_barrier);
        let ack = matches!(micro, Micro::Ack(_));
        if r.total_order && !ack {
            deps.extend(self.last_non_ack);
        }
        if class == Class::Meta && r.meta_chain {
            deps.extend(self.last_meta);
        }
        let (inos, range) = touched(&micro);
        if class == Class::Append && r.append_in_order {
            deps.extend(inos.iter().filter_map(|i| self.last_append.get(i).copied()));
        }
        deps.remove(&id);
        if !self.dropped.is_empty() {
            deps = self.bypass(&deps.into_iter().collect::<Vec<_>>());
        }
        self.micro.push(MicroOp { op, micro, deps: deps.into_iter().collect() });
        if !ack {
            self.last_non_ack = Some(id);
        }
        match class {
            Class::Barrier => self.last_barrier = Some(id),
            Class::Meta => self.last_meta = Some(id),
            Class::Data | Class::Append => {}
        }
        for i in inos {
            if class == Class::Meta {
                self.last_meta_of.insert(i, id);
            }
            if class == Class::Append {
                self.last_append.insert(i, id);
            }
            self.pending.entry(i).or_default().push((id, range.0, range.1));
        }
        if class != Class::Barrier {
            self.unsynced.insert(id);
        }
        id
    }

    fn op(&mut self, i: u32, seq: u64, op: &Op) {
        let r = self.rules();
        match op {
            Op::Creat { at, ino } | Op::Mkdir { at, ino } | Op::Symlink { at, ino } | Op::Link { at, ino } => {
                self.entries(i, vec![EntryChange { at: at.clone(), to: Some(*ino), was: *ino }], &[]);
            }
            Op::Unlink { at, gone } => self.unlink(i, at, *gone),
            Op::Rmdir { at, ino } => self.entries(i, vec![EntryChange { at: at.clone(), to: None, was: *ino }], &[]),
            Op::Rename { from, to, ino, replaced } => self.rename(i, (from, to), *ino, *replaced),
            Op::Overwrite { ino, offset, len, data_at, .. } => {
                for (o, l) in blocks(*offset, *len) {
                    let fill = Fill::Data { seq, at: data_at + (o - offset) };
                    self.push(i, Micro::Write { ino: *ino, offset: o, len: l, fill }, Class::Data, &[]);
                }
            }
            Op::Append { ino, offset, len, data_at, .. } => {
                for (o, l) in blocks(*offset, *len) {
                    let data = Fill::Data { seq, at: data_at + (o - offset) };
                    if r.page_prefix {
                        self.page_append(i, *ino, (o, l), data);
                        continue;
                    }
                    let stages = [(r.zeros_stage, Fill::Zeros), (r.garbage_stage, Fill::Garbage), (true, data)];
                    for (_, fill) in stages.into_iter().filter(|s| s.0) {
                        self.push(i, Micro::Write { ino: *ino, offset: o, len: l, fill }, Class::Append, &[]);
                    }
                }
            }
            Op::Trunc { ino, from, to } => self.trunc(i, *ino, *from, *to),
            _ => self.barrier(i, op),
        }
    }

    /// One block of an append under `Rules::page_prefix`: a zeros stage after the file's
    /// last one, then the data after that stage and after the page's last data stage.
    fn page_append(&mut self, i: u32, ino: Ino, (o, l): (u64, u64), data: Fill) {
        let prev: Vec<u32> = self.last_zeros.get(&ino).copied().into_iter().collect();
        let zeros = self.push(i, Micro::Write { ino, offset: o, len: l, fill: Fill::Zeros }, Class::Append, &prev);
        self.last_zeros.insert(ino, zeros);
        let page = (ino, o / BLOCK);
        let mut after = vec![zeros];
        after.extend(self.last_page_data.get(&page).copied());
        let d = self.push(i, Micro::Write { ino, offset: o, len: l, fill: data }, Class::Append, &after);
        self.last_page_data.insert(page, d);
    }

    fn barrier(&mut self, i: u32, op: &Op) {
        let r = self.rules();
        let deps: Vec<u32> = match op {
            Op::Fsync { ino, data_only } => {
                let mut deps = self.take_pending(*ino, 0, u64::MAX);
                if r.fsync_commits {
                    deps.extend(if *data_only { self.last_meta_of.get(ino).copied() } else { self.last_meta });
                }
                deps
            }
            Op::SyncRange { why: RangeSync::FileRange, .. } => return self.push_sync(i, Micro::Sync, &[]),
            Op::SyncRange { ino, offset, len, .. } => self.take_pending(*ino, *offset, offset.saturating_add(*len)),
            Op::Sync => {
                self.pending.clear();
                std::mem::take(&mut self.unsynced).into_iter().collect()
            }
            Op::Ack { mark } => return self.push_sync(i, Micro::Ack(mark.clone()), &[]),
            Op::FsyncFailed { ino } => return self.drop_pending(*ino),
            _ => Vec::new(),
        };
        self.push_sync(i, Micro::Sync, &deps);
    }

    /// A failed fsync of `ino`: its pending micro-ops may never persist. No micro-op;
    /// they leave the pending lists, and every micro-op that depends on one of them,
    /// now or later (through the chains of the rules), depends on its dependencies
    /// instead: nothing after the failure holds them in.
    fn drop_pending(&mut self, ino: Ino) {
        let gone = self.take_pending(ino, 0, u64::MAX);
        for g in gone {
            let instead = self.bypass(&self.micro[g as usize].deps);
            self.dropped.insert(g, instead);
        }
        let first = self.dropped.keys().min().copied().unwrap_or(u32::MAX);
        for m in first as usize..self.micro.len() {
            if !self.dropped.contains_key(&(m as u32)) {
                self.micro[m].deps = self.bypass(&self.micro[m].deps).into_iter().collect();
            }
        }
    }

    /// `deps` with each dropped micro-op replaced by what it depends on.
    fn bypass(&self, deps: &[u32]) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for d in deps {
            match self.dropped.get(d) {
                Some(instead) => out.extend(instead.iter().copied()),
                None => {
                    out.insert(*d);
                }
            }
        }
        out
    }

    fn push_sync(&mut self, i: u32, micro: Micro, deps: &[u32]) {
        self.push(i, micro, Class::Barrier, deps);
    }

    /// The pending micro-ops of `ino` touching `[start, end)`, now durable.
    fn take_pending(&mut self, ino: Ino, start: u64, end: u64) -> Vec<u32> {
        let Some(list) = self.pending.get_mut(&ino) else { return Vec::new() };
        let (hit, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|&(_, s, e)| s < end && start < e);
        *list = keep;
        let whole = start == 0 && end == u64::MAX;
        hit.into_iter()
            .map(|(id, s, e)| {
                if whole || (start <= s && e <= end) {
                    self.unsynced.remove(&id);
                }
                id
            })
            .collect()
    }

    fn entries(&mut self, i: u32, changes: Vec<EntryChange>, extra: &[u32]) {
        self.push(i, Micro::Entries(changes), Class::Meta, extra);
    }

    fn unlink(&mut self, i: u32, at: &At, gone: Gone) {
        if gone.last {
            self.cut(i, gone.ino, gone.size, 0);
        }
        self.entries(i, vec![EntryChange { at: at.clone(), to: None, was: gone.ino }], &[]);
    }

    /// Cuts `ino` from `from` bytes to `to`: block by block where the APM says so.
    fn cut(&mut self, i: u32, ino: Ino, from: u64, to: u64) {
        if !self.rules().size_by_block {
            return;
        }
        let mut size = from;
        while size > to {
            size = (size - 1) / BLOCK * BLOCK;
            size = size.max(to);
            self.push(i, Micro::SetSize { ino, size }, Class::Meta, &[]);
        }
    }

    fn trunc(&mut self, i: u32, ino: Ino, from: u64, to: u64) {
        if to < from && self.rules().size_by_block {
            return self.cut(i, ino, from, to);
        }
        if to > from && self.rules().size_by_block {
            for (o, l) in blocks(from, to - from) {
                for fill in [Fill::Garbage, Fill::Zeros] {
                    self.push(i, Micro::Write { ino, offset: o, len: l, fill }, Class::Meta, &[]);
                }
            }
            return;
        }
        self.push(i, Micro::SetSize { ino, size: to }, Class::Meta, &[]);
    }

    fn rename(&mut self, i: u32, (from, to): (&At, &At), ino: Ino, replaced: Option<Gone>) {
        let r = self.rules();
        let flush: Vec<u32> = match replaced {
            Some(_) if r.replace_flushes => self.pending.get(&ino).into_iter().flatten().map(|p| p.0).collect(),
            _ => Vec::new(),
        };
        let remove = EntryChange { at: from.clone(), to: None, was: ino };
        let add = EntryChange { at: to.clone(), to: Some(ino), was: replaced.map_or(ino, |g| g.ino) };
        if r.rename_atomic {
            return self.entries(i, vec![remove, add], &flush);
        }
        if let Some(gone) = replaced {
            if gone.last {
                self.cut(i, gone.ino, gone.size, 0);
            }
            self.entries(i, vec![EntryChange { at: to.clone(), to: None, was: gone.ino }], &flush);
        }
        self.entries(i, vec![remove], &flush);
        self.entries(i, vec![add], &flush);
    }
}

/// The file a micro-op changes (a directory for entries) and the byte range.
fn touched(m: &Micro) -> (Vec<Ino>, (u64, u64)) {
    match m {
        Micro::Write { ino, offset, len, .. } => (vec![*ino], (*offset, offset + len)),
        Micro::SetSize { ino, .. } => (vec![*ino], (0, u64::MAX)),
        Micro::Entries(changes) => {
            let mut dirs: Vec<Ino> = changes.iter().map(|c| c.at.parent).collect();
            dirs.dedup();
            (dirs, (0, u64::MAX))
        }
        Micro::Sync | Micro::Ack(_) => (Vec::new(), (0, 0)),
    }
}

/// `[offset, offset + len)` cut at block boundaries.
fn blocks(offset: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut at, end) = (offset, offset + len);
    while at < end {
        let next = ((at / BLOCK) + 1) * BLOCK;
        let stop = next.min(end);
        out.push((at, stop - at));
        at = stop;
    }
    out
}
