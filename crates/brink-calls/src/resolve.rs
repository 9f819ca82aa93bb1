//! Absolute paths for the calls' path arguments. strace resolves descriptors (`-y`), but
//! a path relative to the current directory (`rename("a", "b")`, `open("f", …)`) is
//! relative to the calling process's current directory at that moment: the resolver
//! follows each process's `chdir`/`fchdir`, processes made by `fork` (which inherit it)
//! and threads (which share it), starting from the workload's directory.

use std::collections::HashMap;

use crate::{Call, CallKind, CallResult, Fd, Target};

/// Follows the current directory of each process of a trace, call by call.
#[derive(Debug, Clone)]
pub struct Resolver {
    start: Vec<u8>,
    /// A thread's process (its thread-group leader), for threads seen spawned.
    process_of: HashMap<u32, u32>,
    /// A process's parent, for processes seen spawned: a child's calls may come before
    /// its parent's `clone` returns, so this is read from the whole trace first.
    parent_of: HashMap<u32, u32>,
    cwd: HashMap<u32, Vec<u8>>,
}

impl Resolver {
    /// A resolver for `calls` (in order) of a workload started in directory `start`.
    pub fn new(calls: &[Call], start: &[u8]) -> Resolver {
        let (mut process_of, mut parent_of) = (HashMap::new(), HashMap::new());
        for (child, (parent, thread)) in spawns(calls) {
            match thread {
                true => process_of.insert(child, parent),
                false => parent_of.insert(child, parent),
            };
        }
        Resolver { start: normalize(start), process_of, parent_of, cwd: HashMap::new() }
    }

    fn process(&self, tid: u32) -> u32 {
        let mut p = tid;
        // Bounded: a thread's thread-group leader, through at most a few hops.
        for _ in 0..64 {
            match self.process_of.get(&p) {
                Some(&q) if q != p => p = q,
                _ => break,
            }
        }
        p
    }

    /// The current directory of `tid`'s process: its own, else its parent's, else the start.
    pub fn cwd(&self, tid: u32) -> &[u8] {
        let mut p = self.process(tid);
        for _ in 0..64 {
            if let Some(d) = self.cwd.get(&p) {
                return d;
            }
            match self.parent_of.get(&p) {
                Some(&q) => p = self.process(q),
                None => break,
            }
        }
        &self.start
    }

    /// Take in `call`'s effect on current directories (after its paths were resolved).
    pub fn observe(&mut self, call: &Call) {
        if !matches!(call.result, CallResult::Ok(_)) {
            return;
        }
        match &call.kind {
            CallKind::Chdir { target } => {
                let dir = self.target(call.tid, target);
                let p = self.process(call.tid);
                self.cwd.insert(p, dir);
            }
            CallKind::Spawn { thread: false } => {
                // The child's directory is its parent's now, whatever the parent does next.
                if let CallResult::Ok(child) = call.result
                    && let Ok(child) = u32::try_from(child)
                {
                    let here = self.cwd(call.tid).to_vec();
                    self.cwd.entry(child).or_insert(here);
                }
            }
            _ => {}
        }
    }

    /// `path` as the call of `tid` named it, relative to `dir` (a descriptor) or to its
    /// current directory, made absolute and normalized (`.` and `..` folded).
    pub fn path(&self, tid: u32, dir: Option<&Fd>, path: &[u8]) -> Vec<u8> {
        if path.starts_with(b"/") {
            return normalize(path);
        }
        let base = match dir.and_then(|d| d.path.as_deref()) {
            Some(d) if d.starts_with(b"/") => d,
            _ => self.cwd(tid),
        };
        let mut joined = base.to_vec();
        joined.push(b'/');
        joined.extend_from_slice(path);
        normalize(&joined)
    }

    /// What a [`Target`] names, absolute.
    pub fn target(&self, tid: u32, target: &Target) -> Vec<u8> {
        match target {
            Target::Path { dir, path } => self.path(tid, dir.as_ref(), path),
            Target::Fd(fd) => fd.path.clone().unwrap_or_default(),
        }
    }
}

/// Every process and thread a trace saw made: child id → (the thread that made it,
/// whether it is a thread of the same process). Read from the whole trace up front: a
/// child's first calls can complete before its parent's `clone` returns.
pub fn spawns(calls: &[Call]) -> HashMap<u32, (u32, bool)> {
    calls
        .iter()
        .filter_map(|c| match (&c.kind, &c.result) {
            (CallKind::Spawn { thread }, CallResult::Ok(child)) => {
                Some((u32::try_from(*child).ok()?, (c.tid, *thread)))
            }
            _ => None,
        })
        .collect()
}

/// `path` with empty and `.` components dropped and `..` folded (lexically: the trace
/// has no symlink information).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_bytes;

    #[test]
    fn paths_are_folded() {
        assert_eq!(normalize(b"/a/./b//c/../d/"), b"/a/b/d");
        assert_eq!(normalize(b"/.."), b"/");
    }

    /// A child inherits its parent's directory at fork; a thread shares its process's;
    /// `chdir` in the child does not move the parent.
    #[test]
    fn current_directories_follow_fork_threads_and_chdir() {
        let text = b"100 1.0 clone(child_stack=NULL, flags=SIGCHLD) = 200\n\
                     200 1.1 chdir(\"sub\") = 0\n\
                     200 1.2 rename(\"a\", \"b\") = 0\n\
                     100 1.3 clone(child_stack=0x1, flags=CLONE_VM|CLONE_THREAD) = 101\n\
                     101 1.4 rename(\"c\", \"d\") = 0\n";
        let calls = parse_bytes(text).unwrap().calls;
        let mut r = Resolver::new(&calls, b"/w");
        let mut seen = Vec::new();
        for c in &calls {
            if let CallKind::Rename { old_dir, old, .. } = &c.kind {
                seen.push(String::from_utf8(r.path(c.tid, old_dir.as_ref(), old)).unwrap());
            }
            r.observe(c);
        }
        assert_eq!(seen, ["/w/sub/a", "/w/c"]);
    }
}
