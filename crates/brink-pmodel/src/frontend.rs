//! The front end: from a trace's system calls, in order, to [`LogicalOp`]s. It follows
//! what ALICE's parser follows: each process's descriptor table (fork copies it, threads
//! share it, `dup` shares a description, `close` drops it), each open file description's
//! position (`open` sets it to 0, a plain `write`, `read` and `lseek` move it, `O_APPEND`
//! writes go to the end), file identities across renames and links, and each file's
//! size, so that a write splits into an overwrite below the end, a hole (a growing
//! `trunc`) and an append. Current directories come from [`brink_calls::Resolver`].
//!
//! Why not brink-lint's model (`state.rs`): it has no sizes, no positions and no
//! directory identities, and it is tied to lint's findings (`CallRef`) and its notion of
//! storage paths; moving it into brink-calls and widening it would have touched every
//! lint rule. The process and descriptor bookkeeping here is the same idea in about a
//! hundred lines, specialised to what an APM needs. Merging the two is future work.

use std::collections::HashMap;
use std::path::PathBuf;

use brink_calls::{Call, CallKind, CallResult, Fd, Flags, Place, Resolver, Target, Untraceable, bytes_path};
use brink_calls::{falloc_flag, map_flag, open_flag, rename_flag, rwf_flag};

use crate::logical::{
    At, Gone, Initial, Ino, LogicalOp, LogicalTrace, NodeKind, Op, ROOT, RangeSync, Warning, WarningKind,
};

/// Where the workload ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalInput {
    /// The recorded file system's root, absolute: only paths under it matter.
    pub root: PathBuf,
    /// The mark file (`$BRINK_MARK`), absolute.
    pub mark_file: PathBuf,
    /// The workload's starting directory, absolute (the root when `None`).
    pub start_dir: Option<PathBuf>,
    /// What existed before the workload ran, relative to the root.
    pub initial: Vec<Initial>,
    /// Calls that started before earlier-seq calls completed (`brink_calls::Parsed::
    /// started_before`: `(seq, rank)`); empty for traces recorded before it was kept.
    pub started_before: Vec<(u64, u64)>,
}

/// Most ancestors followed to find a new thread's parent process.
const SPAWN_DEPTH_MAX: u32 = 64;

struct Node {
    size: u64,
    nlink: u32,
    /// Its latest absolute name.
    path: Option<Vec<u8>>,
}

struct Desc {
    /// `None`: a file outside the root (or not a file).
    ino: Option<Ino>,
    pos: Option<u64>,
    append: bool,
    sync: bool,
}

#[derive(Clone, Default)]
struct Proc {
    fds: HashMap<i32, usize>,
}

struct Map {
    start: u64,
    end: u64,
    ino: Ino,
    offset: u64,
}

struct Front {
    root: Vec<u8>,
    mark: Vec<u8>,
    resolver: Resolver,
    names: HashMap<Vec<u8>, Ino>,
    nodes: Vec<Node>,
    descs: Vec<Desc>,
    procs: Vec<Proc>,
    tids: HashMap<u32, usize>,
    spawns: HashMap<u32, (u32, bool)>,
    maps: Vec<Map>,
    out: LogicalTrace,
}

/// The errors of a failed fsync after which the kernel may have dropped the file's
/// pending writes (writeback failed; the pages are marked clean).
const LOST_WRITES: [&str; 2] = ["EIO", "ENOSPC"];

/// The logical operations of `calls` (a whole trace, in its order).
pub fn logical_ops(calls: &[Call], input: &LogicalInput) -> LogicalTrace {
    let mut front = Front::new(calls, input);
    for call in calls {
        if matches!(call.result, CallResult::Ok(_)) || matches!(call.kind, CallKind::Exit { .. }) {
            front.step(call);
        } else if let (CallKind::Fsync { fd, .. }, CallResult::Err(e)) = (&call.kind, &call.result) {
            if LOST_WRITES.contains(&e.as_str()) {
                front.failed_fsync(call, fd);
            }
        }
        front.resolver.observe(call);
    }
    let mut out = front.out;
    if !input.started_before.is_empty() {
        let tids: HashMap<u64, u32> = calls.iter().map(|c| (c.seq, c.tid)).collect();
        syncs_after_overlapping_acks(&mut out.ops, &tids, &input.started_before);
    }
    out
}

/// Each sync (fsync, fdatasync, sync_file_range, msync, a sync write, sync) of another
/// thread that completed while an acknowledgement's call was in progress is moved to
/// just after that acknowledgement. Completion order would put it first, making the
/// acknowledgement wait for it; but the mark may have reached the disk before the
/// sync's flush (a LevelDB background thread's MANIFEST fsync and the main thread's
/// mark: the kernel persisted the mark first, which the completion order forbids). A
/// later sync only adds states (it forces nothing before it sooner), so this errs on
/// the side of the kernel.
fn syncs_after_overlapping_acks(ops: &mut Vec<LogicalOp>, tids: &HashMap<u64, u32>, started: &[(u64, u64)]) {
    let rank: HashMap<u64, u64> = started.iter().copied().collect();
    let is_sync = |o: &LogicalOp| matches!(o.op, Op::Fsync { .. } | Op::SyncRange { .. } | Op::Sync);
    let mut a = 0;
    while a < ops.len() {
        let (seq, is_ack) = (ops[a].seq, matches!(ops[a].op, Op::Ack { .. }));
        let Some(&r) = rank.get(&seq).filter(|_| is_ack) else {
            a += 1;
            continue;
        };
        let tid = tids.get(&seq);
        let moved: Vec<usize> = (0..a)
            .filter(|&i| is_sync(&ops[i]) && ops[i].seq >= r && ops[i].seq < seq && tids.get(&ops[i].seq) != tid)
            .collect();
        let mut taken: Vec<LogicalOp> = moved.iter().rev().map(|&i| ops.remove(i)).collect();
        taken.reverse();
        let at = a - moved.len();
        for (n, op) in taken.into_iter().enumerate() {
            ops.insert(at + 1 + n, op);
        }
        a = at + 1;
    }
}

fn bytes(p: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    brink_calls::normalize(p.as_os_str().as_bytes())
}

fn under(path: &[u8], root: &[u8]) -> bool {
    path == root || root == b"/" || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

impl Front {
    fn new(calls: &[Call], input: &LogicalInput) -> Front {
        let root = bytes(&input.root);
        let start = input.start_dir.as_deref().map_or_else(|| root.clone(), bytes);
        let spawns = brink_calls::spawns(calls);
        let mut initial = input.initial.clone();
        initial.sort_by_key(|a| bytes(&a.path));
        let mut front = Front {
            mark: bytes(&input.mark_file),
            resolver: Resolver::new(calls, &start),
            names: HashMap::from([(root.clone(), ROOT)]),
            nodes: vec![Node { size: 0, nlink: 1, path: Some(root.clone()) }],
            root,
            descs: Vec::new(),
            procs: Vec::new(),
            tids: HashMap::new(),
            spawns,
            maps: Vec::new(),
            out: LogicalTrace {
                initial: Vec::new(),
                initial_inos: Vec::new(),
                kinds: vec![NodeKind::Dir],
                ops: Vec::new(),
                warnings: Vec::new(),
                unseen_stores: Default::default(),
            },
        };
        for i in initial {
            let mut abs = front.root.clone();
            abs.extend_from_slice(b"/");
            abs.extend_from_slice(&bytes(&i.path)[1..]);
            front.add_initial(&brink_calls::normalize(&abs), i.kind, i.size, None);
        }
        front
    }

    /// Adds an existing file or directory at `abs` (and any missing parent directory).
    fn add_initial(&mut self, abs: &[u8], kind: NodeKind, size: u64, seq: Option<u64>) -> Ino {
        if let Some(&ino) = self.names.get(abs) {
            return ino;
        }
        let (parent, _) = split_last(abs);
        if !self.names.contains_key(parent) && under(parent, &self.root) {
            self.add_initial(parent, NodeKind::Dir, 0, seq);
        }
        let rel = abs.get(self.root.len() + 1..).unwrap_or_default();
        if let Some(seq) = seq {
            let what = format!("{} was not in the initial listing: taken as existing", bytes_path(rel).display());
            self.warn(seq, WarningKind::NotListed, what);
        }
        let size = if kind == NodeKind::File { size } else { 0 };
        self.out.initial.push(Initial { path: bytes_path(rel).to_path_buf(), kind: kind.clone(), size });
        let ino = self.new_node(abs, kind, size);
        self.out.initial_inos.push(ino);
        ino
    }

    fn new_node(&mut self, abs: &[u8], kind: NodeKind, size: u64) -> Ino {
        let ino = Ino::try_from(self.nodes.len()).unwrap_or(Ino::MAX);
        self.nodes.push(Node { size, nlink: 1, path: Some(abs.to_vec()) });
        self.out.kinds.push(kind);
        self.names.insert(abs.to_vec(), ino);
        ino
    }

    fn warn(&mut self, seq: u64, kind: WarningKind, what: String) {
        self.out.warnings.push(Warning { seq, kind, what });
    }

    fn push(&mut self, seq: u64, path: &[u8], op: Op) {
        let rel = if path.len() > self.root.len() { &path[self.root.len() + 1..] } else { b"" as &[u8] };
        self.out.ops.push(LogicalOp { seq, path: bytes_path(rel).to_path_buf(), op });
    }

    fn path_of(&self, ino: Ino) -> Vec<u8> {
        self.nodes[ino as usize].path.clone().unwrap_or_default()
    }

    /// The entry `abs` names (its parent directory known, made if missing), if under the root.
    fn at(&mut self, seq: u64, abs: &[u8]) -> Option<At> {
        if abs == self.root.as_slice() || !under(abs, &self.root) {
            return None;
        }
        let (parent, name) = split_last(abs);
        let parent = match self.names.get(parent) {
            Some(&p) => p,
            None => self.add_initial(parent, NodeKind::Dir, 0, Some(seq)),
        };
        Some(At { parent, name: name.to_vec() })
    }

    /// The existing file `abs` names, if under the root (taken as existing when unknown).
    fn existing(&mut self, seq: u64, abs: &[u8], kind: NodeKind) -> Option<Ino> {
        if !under(abs, &self.root) {
            return None;
        }
        Some(match self.names.get(abs) {
            Some(&ino) => ino,
            None => self.add_initial(abs, kind, 0, Some(seq)),
        })
    }

    fn path(&self, call: &Call, dir: Option<&Fd>, path: &[u8]) -> Vec<u8> {
        self.resolver.path(call.tid, dir, path)
    }

    fn step(&mut self, call: &Call) {
        let proc = self.proc_of(call.tid);
        let ok = match call.result {
            CallResult::Ok(v) => v,
            _ => 0,
        };
        match &call.kind {
            CallKind::Open { dir, path, flags, fd, .. } => self.open(call, proc, (dir.as_ref(), path), *flags, fd, ok),
            CallKind::Close { fd } => {
                self.procs[proc].fds.remove(&fd.num);
            }
            CallKind::Dup { old, .. } => self.dup(proc, old, ok),
            CallKind::Fcntl { fd, cmd, flags: Some(flags) } if cmd == "F_SETFL" => {
                if let Some(d) = self.desc(call.seq, proc, fd) {
                    self.descs[d].append = flags.contains(open_flag::APPEND);
                }
            }
            CallKind::Write { fd, offset, len, truncated, flags, .. } => {
                self.write(call, proc, fd, (*offset, *len, *truncated), *flags, ok);
            }
            CallKind::Read { fd } => {
                if let Some(&d) = self.procs[proc].fds.get(&fd.num) {
                    self.descs[d].pos = self.descs[d].pos.and_then(|p| p.checked_add(ok.unsigned_abs()));
                }
            }
            CallKind::Seek { fd } => {
                if let Some(d) = self.desc(call.seq, proc, fd) {
                    self.descs[d].pos = u64::try_from(ok).ok();
                }
            }
            CallKind::Truncate { target, len } => self.truncate(call, proc, target, *len),
            CallKind::Fallocate { fd, mode, offset, len } => self.fallocate(call, proc, fd, *mode, offset + len),
            CallKind::Exit { group: true, .. } => self.procs[proc].fds.clear(),
            _ => self.names_step(call, proc),
        }
    }

    /// Calls that change names, sync or map.
    fn names_step(&mut self, call: &Call, proc: usize) {
        let seq = call.seq;
        match &call.kind {
            CallKind::Rename { old_dir, old, new_dir, new, flags } => {
                let (from, to) = (self.path(call, old_dir.as_ref(), old), self.path(call, new_dir.as_ref(), new));
                self.rename(seq, &from, &to, *flags);
            }
            CallKind::Link { old_dir, old, new_dir, new } => {
                let (from, to) = (self.path(call, old_dir.as_ref(), old), self.path(call, new_dir.as_ref(), new));
                self.link(seq, &from, &to);
            }
            CallKind::Unlink { dir, path, removes_dir } => {
                let abs = self.path(call, dir.as_ref(), path);
                self.unlink(seq, &abs, *removes_dir);
            }
            CallKind::Mkdir { dir, path, .. } => {
                let abs = self.path(call, dir.as_ref(), path);
                self.create(seq, &abs, NodeKind::Dir);
            }
            CallKind::Symlink { target, dir, path } => {
                let abs = self.path(call, dir.as_ref(), path);
                self.create(seq, &abs, NodeKind::Symlink(target.clone()));
            }
            _ => self.sync_step(call, proc),
        }
    }

    /// An fsync that failed: the file's pending writes may be lost for good.
    fn failed_fsync(&mut self, call: &Call, fd: &Fd) {
        let proc = self.proc_of(call.tid);
        if let Some(ino) = self.file_of(call.seq, proc, fd) {
            self.push(call.seq, &self.path_of(ino), Op::FsyncFailed { ino });
        }
    }

    fn sync_step(&mut self, call: &Call, proc: usize) {
        let seq = call.seq;
        match &call.kind {
            CallKind::Fsync { fd, data_only } => {
                if let Some(ino) = self.file_of(seq, proc, fd) {
                    self.push(seq, &self.path_of(ino), Op::Fsync { ino, data_only: *data_only });
                }
            }
            CallKind::SyncFileRange { fd, offset, len, .. } => {
                if let Some(ino) = self.file_of(seq, proc, fd) {
                    let len = if *len == 0 { u64::MAX } else { *len };
                    let op = Op::SyncRange { ino, offset: *offset, len, why: RangeSync::FileRange };
                    self.push(seq, &self.path_of(ino), op);
                }
            }
            CallKind::Sync => self.push(seq, b"", Op::Sync),
            CallKind::Syncfs { fd } if self.file_of(seq, proc, fd).is_some() => self.push(seq, b"", Op::Sync),
            CallKind::Msync { addr, len, flags } if flags.contains(map_flag::MS_SYNC) => self.msync(seq, *addr, *len),
            CallKind::Mmap(m) => self.map(call, proc, m),
            CallKind::Untraceable { what } => {
                if let Untraceable::SharedWritableMapping(m) = what {
                    self.map(call, proc, m);
                    let ino = m.fd.as_ref().and_then(|fd| self.file_of(seq, proc, fd));
                    self.out.unseen_stores.extend(ino);
                }
                self.warn(seq, WarningKind::NotModelled, what.what());
            }
            CallKind::Copy { to, .. } if self.file_of(seq, proc, to).is_some() => {
                let what = format!("{}: data copied inside the kernel is not modelled", call.name);
                self.warn(seq, WarningKind::NotModelled, what);
            }
            _ => {}
        }
    }

    /// The process of thread `tid`, made on first sight: a copy of its parent's table
    /// (fork), its parent's own (a thread), or a new empty one.
    fn proc_of(&mut self, tid: u32) -> usize {
        self.proc_within(tid, SPAWN_DEPTH_MAX)
    }

    fn proc_within(&mut self, tid: u32, depth: u32) -> usize {
        if let Some(&p) = self.tids.get(&tid) {
            return p;
        }
        let made = match self.spawns.get(&tid).copied() {
            Some((parent, thread)) if parent != tid && depth > 0 => {
                let p = self.proc_within(parent, depth - 1);
                if thread {
                    p
                } else {
                    self.procs.push(self.procs[p].clone());
                    self.procs.len() - 1
                }
            }
            _ => {
                self.procs.push(Proc::default());
                self.procs.len() - 1
            }
        };
        self.tids.insert(tid, made);
        made
    }

    /// The description behind `fd` in `proc`, checked against the path strace printed
    /// (a number the table does not know, or knows as another file, is a description
    /// the trace did not open: its position is unknown).
    fn desc(&mut self, seq: u64, proc: usize, fd: &Fd) -> Option<usize> {
        let slot = self.procs[proc].fds.get(&fd.num).copied();
        let Some(printed) = fd.path.as_deref().map(brink_calls::normalize) else { return slot };
        if let Some(d) = slot {
            let matches = match self.descs[d].ino {
                Some(ino) => fd.deleted || self.nodes[ino as usize].path.as_deref() == Some(printed.as_slice()),
                None => !under(&printed, &self.root),
            };
            if matches {
                return Some(d);
            }
        }
        let ino = if fd.deleted { None } else { self.existing(seq, &printed, NodeKind::File) };
        self.descs.push(Desc { ino, pos: None, append: false, sync: false });
        self.procs[proc].fds.insert(fd.num, self.descs.len() - 1);
        Some(self.descs.len() - 1)
    }

    fn file_of(&mut self, seq: u64, proc: usize, fd: &Fd) -> Option<Ino> {
        let d = self.desc(seq, proc, fd)?;
        self.descs[d].ino
    }

    fn dup(&mut self, proc: usize, old: &Fd, new: i64) {
        let (Some(&d), Ok(new)) = (self.procs[proc].fds.get(&old.num), i32::try_from(new)) else { return };
        self.procs[proc].fds.insert(new, d);
    }

    fn open(
        &mut self,
        call: &Call,
        proc: usize,
        (dir, path): (Option<&Fd>, &[u8]),
        flags: Flags,
        fd: &Option<Fd>,
        n: i64,
    ) {
        let Ok(num) = i32::try_from(n) else { return };
        let printed = fd.as_ref().filter(|f| !f.deleted).and_then(|f| f.path.as_deref()).map(brink_calls::normalize);
        let abs = printed.unwrap_or_else(|| self.path(call, dir, path));
        let seq = call.seq;
        let ino = if flags.contains(open_flag::TMPFILE) {
            if under(&abs, &self.root) {
                self.warn(seq, WarningKind::NotModelled, "an O_TMPFILE file is not modelled".into());
            }
            None
        } else if flags.contains(open_flag::CREAT) && !self.names.contains_key(&abs) && under(&abs, &self.root) {
            self.create(seq, &abs, NodeKind::File)
        } else {
            let kind = if flags.contains(open_flag::DIRECTORY) { NodeKind::Dir } else { NodeKind::File };
            self.existing(seq, &abs, kind)
        };
        if let Some(ino) = ino.filter(|_| flags.contains(open_flag::TRUNC)) {
            self.resize(seq, ino, 0);
        }
        let sync = flags.contains(open_flag::SYNC) || flags.contains(open_flag::DSYNC);
        self.descs.push(Desc { ino, pos: Some(0), append: flags.contains(open_flag::APPEND), sync });
        self.procs[proc].fds.insert(num, self.descs.len() - 1);
    }

    /// A new file, directory or symlink at `abs`.
    fn create(&mut self, seq: u64, abs: &[u8], kind: NodeKind) -> Option<Ino> {
        let at = self.at(seq, abs)?;
        let ino = self.new_node(abs, kind.clone(), 0);
        let op = match kind {
            NodeKind::File => Op::Creat { at, ino },
            NodeKind::Dir => Op::Mkdir { at, ino },
            NodeKind::Symlink(_) => Op::Symlink { at, ino },
        };
        self.push(seq, abs, op);
        Some(ino)
    }

    /// The size of `ino` becomes `to` (a `trunc` op if it changes).
    fn resize(&mut self, seq: u64, ino: Ino, to: u64) {
        let from = self.nodes[ino as usize].size;
        if from != to && self.out.kinds[ino as usize] == NodeKind::File {
            self.nodes[ino as usize].size = to;
            self.push(seq, &self.path_of(ino), Op::Trunc { ino, from, to });
        }
    }

    fn truncate(&mut self, call: &Call, proc: usize, target: &Target, len: u64) {
        let ino = match target {
            Target::Fd(fd) => self.file_of(call.seq, proc, fd),
            Target::Path { dir, path } => {
                let abs = self.path(call, dir.as_ref(), path);
                self.existing(call.seq, &abs, NodeKind::File)
            }
        };
        if let Some(ino) = ino {
            self.resize(call.seq, ino, len);
        }
    }

    fn fallocate(&mut self, call: &Call, proc: usize, fd: &Fd, mode: Flags, end: u64) {
        let Some(ino) = self.file_of(call.seq, proc, fd) else { return };
        if mode.0 == 0 {
            if end > self.nodes[ino as usize].size {
                self.resize(call.seq, ino, end);
            }
        } else if mode.0 != falloc_flag::KEEP_SIZE {
            self.warn(call.seq, WarningKind::NotModelled, "fallocate with this mode is not modelled".into());
        }
    }

    /// A write of `n` bytes (the result): an acknowledgement, or overwrite, hole and append.
    fn write(
        &mut self,
        call: &Call,
        proc: usize,
        fd: &Fd,
        (offset, len, cut): (Option<u64>, u64, bool),
        f: Flags,
        n: i64,
    ) {
        let seq = call.seq;
        let place = Place { cwd: &self.root, mark_file: &self.mark };
        if brink_calls::is_mark(call, place) {
            self.push(seq, b"", Op::Ack { mark: brink_calls::mark_text(call) });
            return;
        }
        let Some(d) = self.desc(seq, proc, fd) else { return };
        let n = n.unsigned_abs().min(len);
        let Some(ino) = self.descs[d].ino.filter(|&i| self.out.kinds[i as usize] == NodeKind::File && n > 0) else {
            return;
        };
        let size = self.nodes[ino as usize].size;
        let desc = &self.descs[d];
        let (at, known) = match offset {
            _ if desc.append || f.contains(rwf_flag::APPEND) => (size, true),
            Some(o) => (o, true),
            None => desc.pos.map_or((size, false), |p| (p, true)),
        };
        if offset.is_none() {
            self.descs[d].pos = Some(at + n);
        }
        if !known {
            let what =
                format!("{} to {}: file position unknown, taken as the end of the file", call.name, self.show(ino));
            self.warn(seq, WarningKind::OffsetUnknown, what);
        }
        if cut {
            let what = format!("{} to {}: strace printed only part of the data", call.name, self.show(ino));
            self.warn(seq, WarningKind::DataTruncated, what);
        }
        self.data_ops(seq, ino, (at, n), known);
        if self.descs[d].sync || f.contains(rwf_flag::SYNC) || f.contains(rwf_flag::DSYNC) {
            let op = Op::SyncRange { ino, offset: at, len: n, why: RangeSync::SyncWrite };
            self.push(seq, &self.path_of(ino), op);
        }
    }

    fn show(&self, ino: Ino) -> String {
        bytes_path(&self.path_of(ino)).display().to_string()
    }

    /// `n` bytes at `at`: an overwrite below the end, a hole, an append past it.
    fn data_ops(&mut self, seq: u64, ino: Ino, (at, n): (u64, u64), offset_known: bool) {
        let size = self.nodes[ino as usize].size;
        let path = self.path_of(ino);
        if at > size {
            self.push(seq, &path, Op::Trunc { ino, from: size, to: at });
        }
        if at < size {
            let len = n.min(size - at);
            self.push(seq, &path, Op::Overwrite { ino, offset: at, len, data_at: 0, offset_known });
        }
        let end = at + n;
        if end > size {
            let start = at.max(size);
            let op = Op::Append { ino, offset: start, len: end - start, data_at: start - at, offset_known };
            self.push(seq, &path, op);
        }
        self.nodes[ino as usize].size = size.max(end);
    }

    fn rename(&mut self, seq: u64, from: &[u8], to: &[u8], flags: Flags) {
        let (Some(from_at), Some(to_at)) = (self.at(seq, from), self.at(seq, to)) else {
            if under(from, &self.root) || under(to, &self.root) {
                self.warn(seq, WarningKind::NotModelled, "a rename across the root is not modelled".into());
            }
            return;
        };
        if flags.contains(rename_flag::EXCHANGE) || flags.contains(rename_flag::WHITEOUT) {
            self.warn(seq, WarningKind::NotModelled, "RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled".into());
            return;
        }
        let Some(ino) = self.existing(seq, from, NodeKind::File) else { return };
        let replaced = self.names.get(to).copied().filter(|&r| r != ino).map(|r| self.gone(r));
        if let Some(gone) = replaced {
            self.nodes[gone.ino as usize].path = None;
        }
        self.move_names(from, to);
        self.push(seq, to, Op::Rename { from: from_at, to: to_at, ino, replaced });
    }

    /// The file `ino` loses a name.
    fn gone(&mut self, ino: Ino) -> Gone {
        let node = &mut self.nodes[ino as usize];
        node.nlink = node.nlink.saturating_sub(1);
        Gone { ino, last: node.nlink == 0, size: node.size }
    }

    /// Every name at or under `from` moves under `to`.
    fn move_names(&mut self, from: &[u8], to: &[u8]) {
        let moved: Vec<Vec<u8>> = self.names.keys().filter(|k| under(k, from)).cloned().collect();
        for old in moved {
            let ino = self.names.remove(&old).unwrap_or(ROOT);
            let mut new = to.to_vec();
            new.extend_from_slice(&old[from.len()..]);
            if self.nodes[ino as usize].path.as_deref() == Some(old.as_slice()) {
                self.nodes[ino as usize].path = Some(new.clone());
            }
            self.names.insert(new, ino);
        }
    }

    fn link(&mut self, seq: u64, from: &[u8], to: &[u8]) {
        let (Some(ino), Some(at)) = (self.existing(seq, from, NodeKind::File), self.at(seq, to)) else { return };
        self.nodes[ino as usize].nlink += 1;
        self.names.insert(to.to_vec(), ino);
        self.push(seq, to, Op::Link { at, ino });
    }

    fn unlink(&mut self, seq: u64, abs: &[u8], dir: bool) {
        let kind = if dir { NodeKind::Dir } else { NodeKind::File };
        let (Some(ino), Some(at)) = (self.existing(seq, abs, kind), self.at(seq, abs)) else { return };
        let gone = self.gone(ino);
        self.names.remove(abs);
        if self.nodes[ino as usize].path.as_deref() == Some(abs) {
            self.nodes[ino as usize].path = None;
        }
        let op = if dir { Op::Rmdir { at, ino } } else { Op::Unlink { at, gone } };
        self.push(seq, abs, op);
    }

    fn map(&mut self, call: &Call, proc: usize, m: &brink_calls::Mmap) {
        let (Some(fd), CallResult::Ok(start)) = (&m.fd, &call.result) else { return };
        if let Some(ino) = self.file_of(call.seq, proc, fd) {
            let start = start.unsigned_abs();
            self.maps.push(Map { start, end: start.saturating_add(m.len), ino, offset: m.offset });
        }
    }

    fn msync(&mut self, seq: u64, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        let hits: Vec<(Ino, u64, u64)> = self
            .maps
            .iter()
            .filter(|m| m.start < end && addr < m.end)
            .map(|m| (m.ino, m.offset + addr.max(m.start) - m.start, end.min(m.end) - addr.max(m.start)))
            .collect();
        for (ino, offset, len) in hits {
            self.push(seq, &self.path_of(ino), Op::SyncRange { ino, offset, len, why: RangeSync::Msync });
        }
    }
}

/// The calls' [`Call::seq`] → index, for callers that hold ops and want their calls.
pub fn call_index(calls: &[Call]) -> HashMap<u64, usize> {
    calls.iter().enumerate().map(|(i, c)| (c.seq, i)).collect()
}
