//! The file system and processes as the calls reveal them: a name space of files (paths
//! to file identities, moved by renames, so that a write to `tmp` and an fsync of `data`
//! after `rename(tmp, data)` are one file), open file descriptions (with `O_DIRECT` and
//! `O_SYNC`), and a descriptor table and working directory per process, copied by fork,
//! shared by threads, changed by dup, close and exec.
//!
//! strace's `-y` names the file behind every descriptor argument, so the tables are
//! checked against it at each use: a descriptor whose printed path disagrees with the
//! table (a number reused by a call that is not traced, such as `pipe`, `socket` or
//! `memfd_create`) is replaced by a description of what strace names, marked as not
//! opened in the trace; but when both are files on storage, the kernel's name is taken
//! as the file's (the model resolved a rename lexically, through a symlink, say).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use brink_calls::{AT_FDCWD, Call, Fd, bytes_path};

use crate::finding::CallRef;
use crate::paths;

pub(crate) type FileId = usize;
pub(crate) type DescId = usize;
type ProcId = usize;

/// Most ancestors followed to find a new thread's parent process.
const SPAWN_DEPTH_MAX: u32 = 64;

/// A file (or directory) identity: what an inode is to the kernel.
#[derive(Debug)]
pub(crate) struct File {
    /// Its latest name; `None` once unlinked (or for an `O_TMPFILE` file not yet linked).
    pub path: Option<PathBuf>,
    /// How many names in the name space lead to it.
    pub names: u32,
    pub dir: bool,
    /// Backed by storage (not a pipe, socket, or `/dev`, `/proc`, `/sys` file).
    pub storage: bool,
    /// The mark file: its writes are the acknowledgements, not data.
    pub mark: bool,
    /// The open descriptions of it.
    pub descs: Vec<DescId>,
}

/// An open file description: what `open` makes and `dup` and fork share.
#[derive(Debug)]
pub(crate) struct Desc {
    pub file: FileId,
    pub direct: bool,
    /// Opened `O_SYNC` or `O_DSYNC`: each write is durable when it returns.
    pub sync: bool,
    /// Opened by a traced call; `false` for descriptors inherited from whoever started
    /// the workload (its standard output redirected to a log, say).
    pub own: bool,
    /// The `open` that made it.
    pub opened: Option<CallRef>,
    /// Descriptor table entries that hold it.
    refs: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    desc: DescId,
    cloexec: bool,
}

#[derive(Debug, Default)]
struct Proc {
    fds: HashMap<i32, Slot>,
    cwd: Option<PathBuf>,
}

/// The whole model.
#[derive(Debug)]
pub(crate) struct State {
    names: HashMap<PathBuf, FileId>,
    /// Every path some name was ever under: the directories whose rename or removal
    /// must move or drop names beneath them (the others need no scan of `names`).
    parents: HashSet<PathBuf>,
    pub files: Vec<File>,
    pub descs: Vec<Desc>,
    procs: Vec<Proc>,
    tids: HashMap<u32, ProcId>,
    /// Child thread id → (parent thread id, shares the parent's table), from every
    /// successful spawn in the trace: a child's first calls can complete before the
    /// parent's `clone` returns.
    spawns: HashMap<u32, (u32, bool)>,
    pub base: Option<PathBuf>,
    mark: PathBuf,
    /// Only files under it count (`LintOptions::root`).
    pub root: Option<PathBuf>,
}

impl State {
    pub fn new(calls: &[Call], base: Option<&Path>, mark: &Path) -> State {
        let spawns = brink_calls::spawns(calls);
        State {
            names: HashMap::new(),
            parents: HashSet::new(),
            files: Vec::new(),
            descs: Vec::new(),
            procs: Vec::new(),
            tids: HashMap::new(),
            spawns,
            base: base.map(paths::normalize),
            mark: paths::normalize(mark),
            root: None,
        }
    }

    /// Whether `path` names a file whose durability matters ([`paths::is_storage`]) on
    /// the file system linted (under `root`, when given).
    pub fn is_storage(&self, path: &Path) -> bool {
        paths::is_storage(path) && self.root.as_deref().is_none_or(|r| path.starts_with(r))
    }

    /// The process of thread `tid`, made on first sight: a copy of its parent's (fork),
    /// its parent's own (a thread), or a new one in the starting directory.
    pub fn proc_of(&mut self, tid: u32) -> ProcId {
        self.proc_of_within(tid, SPAWN_DEPTH_MAX)
    }

    /// [`State::proc_of`], following at most `depth` unseen ancestors (thread ids reused
    /// in a long trace could make the spawns a cycle).
    fn proc_of_within(&mut self, tid: u32, depth: u32) -> ProcId {
        if let Some(&p) = self.tids.get(&tid) {
            return p;
        }
        let made = match self.spawns.get(&tid).copied() {
            Some((parent, _)) if parent == tid || depth == 0 => self.new_proc(),
            Some((parent, true)) => self.proc_of_within(parent, depth - 1),
            Some((parent, false)) => {
                let parent = self.proc_of_within(parent, depth - 1);
                let copy = Proc { fds: self.procs[parent].fds.clone(), cwd: self.procs[parent].cwd.clone() };
                for slot in copy.fds.values() {
                    self.descs[slot.desc].refs += 1;
                }
                self.procs.push(copy);
                self.procs.len() - 1
            }
            None => self.new_proc(),
        };
        self.tids.insert(tid, made);
        made
    }

    fn new_proc(&mut self) -> ProcId {
        self.procs.push(Proc { fds: HashMap::new(), cwd: self.base.clone() });
        self.procs.len() - 1
    }

    /// Takes the working directory from an `AT_FDCWD</path>` strace printed.
    pub fn learn_cwd(&mut self, proc: ProcId, fd: Option<&Fd>) {
        if let Some(path) = fd.filter(|f| f.num == AT_FDCWD).and_then(Fd::path) {
            self.procs[proc].cwd = Some(paths::normalize(path));
        }
    }

    pub fn set_cwd(&mut self, proc: ProcId, path: PathBuf) {
        self.procs[proc].cwd = Some(path);
    }

    /// The absolute path of `path` relative to `dir` (the working directory when `None`
    /// or `AT_FDCWD`), lexically normalized; relative if no directory is known.
    pub fn resolve(&mut self, proc: ProcId, dir: Option<&Fd>, path: &[u8]) -> PathBuf {
        self.learn_cwd(proc, dir);
        let base = match dir {
            Some(fd) if fd.num != AT_FDCWD => fd.path().map(Path::to_path_buf).or_else(|| {
                let slot = self.procs[proc].fds.get(&fd.num)?;
                self.files[self.descs[slot.desc].file].path.clone()
            }),
            _ => self.procs[proc].cwd.clone(),
        };
        paths::join(base.as_deref(), bytes_path(path))
    }

    /// The file named `path`, known from now on if it was not.
    pub fn file_at(&mut self, path: &Path) -> FileId {
        if let Some(&id) = self.names.get(path) {
            return id;
        }
        let id = self.new_file(None);
        self.bind(path, id);
        id
    }

    pub fn is_known(&self, path: &Path) -> bool {
        self.names.contains_key(path)
    }

    /// A file identity with no name yet (`path` only decides what kind of file it is).
    pub fn new_file(&mut self, like: Option<&Path>) -> FileId {
        let storage = like.is_none_or(|p| self.is_storage(p));
        self.files.push(File { path: None, names: 0, dir: false, storage, mark: false, descs: Vec::new() });
        self.files.len() - 1
    }

    /// Makes `path` name `id`, unnaming what it named before.
    pub fn bind(&mut self, path: &Path, id: FileId) {
        if let Some(old) = self.names.insert(path.to_path_buf(), id) {
            self.forget_name(old, path);
        }
        if let Some(parent) = path.parent() {
            if !self.parents.contains(parent) {
                self.parents.insert(parent.to_path_buf());
            }
        }
        let storage = self.is_storage(path);
        let file = &mut self.files[id];
        file.names += 1;
        file.path = Some(path.to_path_buf());
        file.storage = storage;
        file.mark = path == self.mark;
    }

    fn forget_name(&mut self, id: FileId, path: &Path) {
        let file = &mut self.files[id];
        file.names = file.names.saturating_sub(1);
        if file.path.as_deref() == Some(path) {
            file.path = None;
        }
    }

    /// Removes the name `path` (and, for a directory, every name under it); the file it
    /// named, if known.
    pub fn unbind(&mut self, path: &Path) -> Option<FileId> {
        for name in self.names_under(path) {
            if let Some(id) = self.names.remove(&name) {
                self.forget_name(id, &name);
            }
        }
        let id = self.names.remove(path)?;
        self.forget_name(id, path);
        Some(id)
    }

    /// `rename(old, new)` in the name space: the file (and a directory's contents) move;
    /// what `new` named loses that name. Returns the moved file.
    pub fn rename(&mut self, old: &Path, new: &Path, exchange: bool) -> FileId {
        let under = self.names_under(old);
        let moved = self.names.get(old).copied().unwrap_or_else(|| self.new_file(Some(old)));
        let displaced = if exchange { self.names.get(new).copied() } else { None };
        self.unbind_one(old);
        for name in under {
            if let Some(id) = self.unbind_one(&name) {
                let rest = name.strip_prefix(old).unwrap_or(&name).to_path_buf();
                self.bind(&new.join(rest), id);
            }
        }
        self.bind(new, moved);
        if let Some(other) = displaced {
            self.bind(old, other);
        }
        moved
    }

    /// The names strictly under `dir`.
    fn names_under(&self, dir: &Path) -> Vec<PathBuf> {
        if !self.parents.contains(dir) {
            return Vec::new();
        }
        self.names.keys().filter(|p| p.starts_with(dir) && *p != dir).cloned().collect()
    }

    fn unbind_one(&mut self, path: &Path) -> Option<FileId> {
        let id = self.names.remove(path)?;
        self.forget_name(id, path);
        Some(id)
    }

    /// The description behind descriptor `fd` in `proc`, checked against the path strace
    /// printed for it (see the module's documentation). A description the trace opened
    /// whose file strace names differently, on storage both, is the same file under a
    /// name the model got wrong (a rename resolved through a symlink, say): it takes
    /// the kernel's name.
    pub fn desc_of(&mut self, proc: ProcId, fd: &Fd) -> Option<DescId> {
        let slot = self.procs[proc].fds.get(&fd.num).copied();
        let Some(printed) = fd.path().map(paths::normalize) else { return slot.map(|s| s.desc) };
        if let Some(Slot { desc, .. }) = slot {
            let file = self.descs[desc].file;
            let known = self.files[file].path.clone();
            match known {
                None if fd.deleted => return Some(desc),
                Some(name) if !fd.deleted && name == printed => return Some(desc),
                Some(_) if !fd.deleted && self.descs[desc].own && self.is_storage(&printed) => {
                    self.bind(&printed, file);
                    return Some(desc);
                }
                _ => {}
            }
        }
        let file = if fd.deleted { self.new_file(Some(&printed)) } else { self.file_at(&printed) };
        let desc = self.new_desc(file, false, false, None);
        self.descs[desc].own = false;
        self.install(proc, fd.num, desc, false);
        Some(desc)
    }

    /// A new description of `file` (held by no table yet).
    pub fn new_desc(&mut self, file: FileId, direct: bool, sync: bool, opened: Option<CallRef>) -> DescId {
        self.descs.push(Desc { file, direct, sync, own: true, opened, refs: 0 });
        let id = self.descs.len() - 1;
        self.files[file].descs.push(id);
        id
    }

    /// Puts `desc` at number `num` in `proc`'s table, closing what was there.
    pub fn install(&mut self, proc: ProcId, num: i32, desc: DescId, cloexec: bool) {
        self.descs[desc].refs += 1;
        if let Some(old) = self.procs[proc].fds.insert(num, Slot { desc, cloexec }) {
            self.release(old.desc);
        }
    }

    pub fn close(&mut self, proc: ProcId, num: i32) {
        if let Some(old) = self.procs[proc].fds.remove(&num) {
            self.release(old.desc);
        }
    }

    /// `close_range(first, last)`.
    pub fn close_range(&mut self, proc: ProcId, first: i64, last: i64) {
        let nums: Vec<i32> =
            self.procs[proc].fds.keys().copied().filter(|&n| i64::from(n) >= first && i64::from(n) <= last).collect();
        for num in nums {
            self.close(proc, num);
        }
    }

    fn release(&mut self, desc: DescId) {
        let d = &mut self.descs[desc];
        d.refs = d.refs.saturating_sub(1);
        if d.refs == 0 {
            let file = d.file;
            self.files[file].descs.retain(|&x| x != desc);
        }
    }

    /// `execve` succeeded: close-on-exec descriptors close (those `dup3`/`F_DUPFD_CLOEXEC`
    /// made; strace's flags do not say which `open`s had `O_CLOEXEC`).
    pub fn exec(&mut self, proc: ProcId) {
        let nums: Vec<i32> = self.procs[proc].fds.iter().filter(|(_, s)| s.cloexec).map(|(&n, _)| n).collect();
        for num in nums {
            self.close(proc, num);
        }
    }

    /// The process ended (`exit_group`): its descriptors close and its thread ids are
    /// free for reuse.
    pub fn exit(&mut self, proc: ProcId) {
        let nums: Vec<i32> = self.procs[proc].fds.keys().copied().collect();
        for num in nums {
            self.close(proc, num);
        }
        self.tids.retain(|_, p| *p != proc);
    }

    /// The file's latest name for a person, or `what it was` if unknown.
    pub fn show_file(&self, file: FileId) -> String {
        let f = &self.files[file];
        match &f.path {
            Some(p) => paths::show(self.base.as_deref(), p, f.dir),
            None => "an unlinked file".into(),
        }
    }

    pub fn mark(&self) -> &Path {
        &self.mark
    }

    pub fn show(&self, path: &Path, dir: bool) -> String {
        paths::show(self.base.as_deref(), path, dir)
    }
}
