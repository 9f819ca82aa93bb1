//! What strace's `-y` printed, followed from the calls instead: each process's
//! descriptors and current directory, so a call's descriptors carry absolute paths.
//!
//! A path is the one the descriptor was opened by, updated by later renames of it or of
//! a directory above it, and marked deleted when that name is unlinked or replaced.
//! Not followed: a second hard link (an unlink of one name marks the file deleted
//! although another name remains), descriptors passed over a socket, and a descriptor
//! table shared between processes (`CLONE_FILES` without `CLONE_THREAD`).

use std::collections::HashMap;

use brink_calls::{AT_FDCWD, Fd, normalize};

#[derive(Debug, Clone)]
struct Entry {
    path: Vec<u8>,
    deleted: bool,
    cloexec: bool,
}

#[derive(Debug, Clone, Default)]
struct Proc {
    fds: HashMap<i32, Entry>,
    cwd: Vec<u8>,
}

/// The path given to a descriptor no traced call made (a pipe, a socket, one inherited
/// from brink): strace's `-y` names those `pipe:[N]`, `socket:[N]`, never a file path,
/// and readers take a named descriptor for what its name says. Without a name they would
/// keep what the number meant before (a file the descriptor was `dup2`ed over).
pub const UNTRACED_FD: &[u8] = b"anon_inode:[opened untraced]";

/// The descriptor tables and directories of a trace's processes, by process id.
#[derive(Debug)]
pub(crate) struct Fds {
    procs: HashMap<u32, Proc>,
    /// A process's parent, for processes the trace saw made (read from the whole trace
    /// first: a child can make calls before its parent's `fork` returns).
    parent: HashMap<u32, u32>,
    start: Vec<u8>,
}

impl Fds {
    /// Tables for a workload started in directory `start`; `parent` maps each forked
    /// process to the process that made it.
    pub(crate) fn new(start: &[u8], parent: HashMap<u32, u32>) -> Fds {
        Fds { procs: HashMap::new(), parent, start: normalize(start) }
    }

    /// `pid`'s table: its own, else a copy of its parent's as it is now (the fork).
    fn proc(&mut self, pid: u32) -> &mut Proc {
        if !self.procs.contains_key(&pid) {
            let inherited = match self.parent.get(&pid) {
                Some(&pp) if pp != pid && self.procs.contains_key(&pp) => self.procs[&pp].clone(),
                _ => Proc { fds: HashMap::new(), cwd: self.start.clone() },
            };
            self.procs.insert(pid, inherited);
        }
        self.procs.get_mut(&pid).expect("inserted above")
    }

    /// Descriptor `num` of `pid`, with its path where known (`AT_FDCWD`: the directory).
    pub(crate) fn fd(&mut self, pid: u32, num: i32) -> Fd {
        let p = self.proc(pid);
        if num == AT_FDCWD {
            return Fd { num, path: Some(p.cwd.clone()), deleted: false };
        }
        match p.fds.get(&num) {
            Some(e) => Fd { num, path: Some(e.path.clone()), deleted: e.deleted },
            None if num < 0 => Fd { num, path: None, deleted: false },
            None => Fd { num, path: Some(UNTRACED_FD.to_vec()), deleted: false },
        }
    }

    /// `path` made absolute: relative to descriptor `dir` of `pid` (its directory for
    /// `AT_FDCWD`); `None` when `dir` is not known.
    pub(crate) fn absolute(&mut self, pid: u32, dir: i32, path: &[u8]) -> Option<Vec<u8>> {
        if path.starts_with(b"/") {
            return Some(normalize(path));
        }
        let p = self.proc(pid);
        let base = if dir == AT_FDCWD { p.cwd.clone() } else { p.fds.get(&dir)?.path.clone() };
        let mut joined = base;
        joined.push(b'/');
        joined.extend_from_slice(path);
        Some(normalize(&joined))
    }

    pub(crate) fn opened(&mut self, pid: u32, num: i32, path: Vec<u8>, deleted: bool, cloexec: bool) {
        self.proc(pid).fds.insert(num, Entry { path, deleted, cloexec });
    }

    pub(crate) fn closed(&mut self, pid: u32, num: i32) {
        self.proc(pid).fds.remove(&num);
    }

    /// `close_range(first, last)`, or with `cloexec_only` its `CLOSE_RANGE_CLOEXEC` form.
    pub(crate) fn closed_range(&mut self, pid: u32, first: u32, last: u32, cloexec_only: bool) {
        let fds = &mut self.proc(pid).fds;
        let in_range = |n: &i32| u32::try_from(*n).is_ok_and(|n| (first..=last).contains(&n));
        if cloexec_only {
            fds.iter_mut().filter(|(n, _)| in_range(n)).for_each(|(_, e)| e.cloexec = true);
        } else {
            fds.retain(|n, _| !in_range(n));
        }
    }

    /// `new` (of `pid`) now refers to what `old` does.
    pub(crate) fn duplicated(&mut self, pid: u32, old: i32, new: i32, cloexec: bool) {
        let p = self.proc(pid);
        match p.fds.get(&old).cloned() {
            Some(e) => p.fds.insert(new, Entry { cloexec, ..e }),
            None => p.fds.remove(&new),
        };
    }

    pub(crate) fn set_cloexec(&mut self, pid: u32, num: i32, on: bool) {
        if let Some(e) = self.proc(pid).fds.get_mut(&num) {
            e.cloexec = on;
        }
    }

    pub(crate) fn chdir(&mut self, pid: u32, dir: Vec<u8>) {
        self.proc(pid).cwd = dir;
    }

    /// After an `execve`: the close-on-exec descriptors are gone.
    pub(crate) fn exec(&mut self, pid: u32) {
        self.proc(pid).fds.retain(|_, e| !e.cloexec);
    }

    /// `old` was renamed to `new` (absolute paths): what was open at `new` is deleted;
    /// paths at or under `old` move.
    pub(crate) fn renamed(&mut self, old: &[u8], new: &[u8]) {
        self.unlinked(new);
        for p in self.procs.values_mut() {
            for e in p.fds.values_mut().filter(|e| !e.deleted) {
                if let Some(moved) = moved(&e.path, old, new) {
                    e.path = moved;
                }
            }
            if let Some(moved) = moved(&p.cwd, old, new) {
                p.cwd = moved;
            }
        }
    }

    /// The name `path` was removed: descriptors opened by it are of a deleted file.
    pub(crate) fn unlinked(&mut self, path: &[u8]) {
        for p in self.procs.values_mut() {
            p.fds.values_mut().filter(|e| e.path == path).for_each(|e| e.deleted = true);
        }
    }
}

/// `path` with its prefix `old` replaced by `new`, if it is `old` or under it.
fn moved(path: &[u8], old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let rest = path.strip_prefix(old)?;
    if !rest.is_empty() && !rest.starts_with(b"/") {
        return None;
    }
    Some([new, rest].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_follow_renames_unlinks_forks_and_exec() {
        let mut fds = Fds::new(b"/m", HashMap::from([(20, 10)]));
        let p = fds.absolute(10, AT_FDCWD, b"d/../a").unwrap();
        assert_eq!(p, b"/m/a");
        fds.opened(10, 3, p, false, false);
        fds.opened(10, 4, b"/m/b".to_vec(), false, true);
        fds.renamed(b"/m/a", b"/m/b");
        let (three, four) = (fds.fd(10, 3), fds.fd(10, 4));
        assert_eq!((three.path.unwrap(), three.deleted), (b"/m/b".to_vec(), false));
        assert!(four.deleted, "the file replaced by the rename");
        // The child copies its parent's table when it first appears.
        fds.exec(20);
        assert_eq!(fds.fd(20, 3).path.unwrap(), b"/m/b");
        assert_eq!(fds.fd(20, 4).path.unwrap(), UNTRACED_FD, "close-on-exec");
        assert_eq!(fds.absolute(20, 4, b"x"), None);
        fds.unlinked(b"/m/b");
        assert!(fds.fd(10, 3).deleted && fds.fd(20, 3).deleted);
        fds.duplicated(10, 3, 7, false);
        assert_eq!(fds.fd(10, 7).path.unwrap(), b"/m/b");
    }

    #[test]
    fn a_directory_rename_moves_what_is_open_under_it() {
        let mut fds = Fds::new(b"/m", HashMap::new());
        fds.opened(1, 3, b"/m/d/f".to_vec(), false, false);
        fds.opened(1, 4, b"/m/dd/f".to_vec(), false, false);
        fds.renamed(b"/m/d", b"/m/e");
        assert_eq!(fds.fd(1, 3).path.unwrap(), b"/m/e/f");
        assert_eq!(fds.fd(1, 4).path.unwrap(), b"/m/dd/f");
    }
}
