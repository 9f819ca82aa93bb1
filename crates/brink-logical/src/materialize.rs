//! Logical states as directory trees, built incrementally: each worker keeps one tree
//! (its [`WorkDir`]) and turns it into the next state by changing only the paths whose
//! kind or content differ (content compared by hash), so a state costs what changed
//! since the worker's previous state, not the whole tree and not the trace.
//!
//! A checker may modify the state it is given. After every check the worker compares
//! each path's `lstat` with what it left there: the explorer sets every file's and
//! every changed directory's modification time to a fixed past instant, so any write,
//! truncation, creation, removal or rename by the checker shows as a new mtime (whatever
//! the timestamp granularity), and a `chmod` as a new mode. A tree found modified is
//! wiped and the next state is built from scratch.
//!
//! Not materialized: ownership, permissions (files 0666 and directories 0777 less the
//! umask), timestamps, and hard links (each name of a file gets its own copy).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use brink_pmodel::{Extent, Ino, NodeKind};

use crate::LogicalError;
use crate::content::{Content, Hash};

/// The modification time every materialized file and directory gets (module docs).
const SENTINEL: Duration = Duration::new(1_000_000_000, 123_456_789);

/// One path of a state to build.
#[derive(Debug, Clone)]
pub struct Node {
    /// Relative to the state's root.
    pub path: PathBuf,
    pub kind: NodeKind,
    pub ino: Ino,
    pub content: Vec<Extent>,
    pub hash: Hash,
}

/// What `lstat` said of a path when the worker left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sig {
    ino: u64,
    mode: u32,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
}

impl Sig {
    fn of(path: &Path) -> Result<Sig, LogicalError> {
        let m = std::fs::symlink_metadata(path).map_err(|e| LogicalError::io(path, e))?;
        Ok(Sig { ino: m.ino(), mode: m.mode(), size: m.size(), mtime: m.mtime(), mtime_ns: m.mtime_nsec() })
    }
}

struct Have {
    kind: NodeKind,
    hash: Hash,
    sig: Sig,
}

/// A worker's state tree and marks file.
pub struct WorkDir {
    root: PathBuf,
    marks: PathBuf,
    current: BTreeMap<PathBuf, Have>,
    root_sig: Sig,
    buf: Vec<u8>,
    /// Trees found modified by a checker (and rebuilt).
    pub wiped: u64,
}

impl WorkDir {
    /// A worker's area under `dir` (created): `dir/root` and `dir/marks`.
    pub fn new(dir: &Path) -> Result<WorkDir, LogicalError> {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).map_err(|e| LogicalError::io(&root, e))?;
        let root_sig = sentinel_dir(&root)?;
        Ok(WorkDir { root, marks: dir.join("marks"), current: BTreeMap::new(), root_sig, buf: Vec::new(), wiped: 0 })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn marks(&self) -> &Path {
        &self.marks
    }

    /// Turns the tree into `nodes` (sorted by path, parents first).
    pub fn build(&mut self, nodes: &[Node], content: &Content) -> Result<(), LogicalError> {
        let want: BTreeMap<&Path, &Node> = nodes.iter().map(|n| (n.path.as_path(), n)).collect();
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        self.remove_unwanted(&want, &mut touched)?;
        for n in nodes {
            let same = self.current.get(&n.path).is_some_and(|h| h.kind == n.kind && h.hash == n.hash);
            if same {
                continue;
            }
            let full = self.root.join(&n.path);
            let existed = self.current.contains_key(&n.path);
            match &n.kind {
                NodeKind::Dir => {
                    std::fs::create_dir(&full).map_err(|e| LogicalError::io(&full, e))?;
                    touched.insert(n.path.clone());
                }
                NodeKind::File => self.write_file(&full, n, content)?,
                NodeKind::Symlink(target) => {
                    if existed {
                        std::fs::remove_file(&full).map_err(|e| LogicalError::io(&full, e))?;
                    }
                    let target = std::ffi::OsStr::from_bytes(target);
                    std::os::unix::fs::symlink(target, &full).map_err(|e| LogicalError::io(&full, e))?;
                }
            }
            if !existed || matches!(n.kind, NodeKind::Symlink(_)) {
                touched.insert(parent(&n.path));
            }
            let sig = Sig::of(&full)?;
            self.current.insert(n.path.clone(), Have { kind: n.kind.clone(), hash: n.hash, sig });
        }
        for dir in touched {
            let full = self.root.join(&dir);
            let sig = sentinel_dir(&full)?;
            match self.current.get_mut(&dir) {
                Some(h) => h.sig = sig,
                None => self.root_sig = sig,
            }
        }
        Ok(())
    }

    /// Removes what `want` does not hold as it is (children before their parents).
    fn remove_unwanted(
        &mut self,
        want: &BTreeMap<&Path, &Node>,
        touched: &mut BTreeSet<PathBuf>,
    ) -> Result<(), LogicalError> {
        let gone: Vec<PathBuf> = self
            .current
            .iter()
            .rev()
            .filter(|(p, h)| want.get(p.as_path()).is_none_or(|n| n.kind != h.kind))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            let full = self.root.join(&p);
            let r = match self.current[&p].kind {
                NodeKind::Dir => std::fs::remove_dir_all(&full),
                _ => std::fs::remove_file(&full),
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogicalError::io(&full, e)),
            }
            self.current.remove(&p);
            touched.remove(&p);
            touched.insert(parent(&p));
        }
        Ok(())
    }

    fn write_file(&mut self, full: &Path, n: &Node, content: &Content) -> Result<(), LogicalError> {
        content.bytes(n.ino, &n.content, &mut self.buf)?;
        let mut f = std::fs::File::create(full).map_err(|e| LogicalError::io(full, e))?;
        f.write_all(&self.buf).map_err(|e| LogicalError::io(full, e))?;
        f.set_modified(SystemTime::UNIX_EPOCH + SENTINEL).map_err(|e| LogicalError::io(full, e))
    }

    /// Whether the tree is as the worker left it (module docs).
    pub fn intact(&self) -> bool {
        if Sig::of(&self.root).ok() != Some(self.root_sig) {
            return false;
        }
        self.current.iter().all(|(p, h)| Sig::of(&self.root.join(p)).ok() == Some(h.sig))
    }

    /// Empties the tree: the next state is built from scratch.
    pub fn wipe(&mut self) -> Result<(), LogicalError> {
        self.wiped += 1;
        self.current.clear();
        let _ = std::fs::remove_dir_all(&self.root);
        std::fs::create_dir_all(&self.root).map_err(|e| LogicalError::io(&self.root, e))?;
        self.root_sig = sentinel_dir(&self.root)?;
        Ok(())
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Sets a directory's mtime to the sentinel; its signature after.
fn sentinel_dir(dir: &Path) -> Result<Sig, LogicalError> {
    let f = std::fs::File::open(dir).map_err(|e| LogicalError::io(dir, e))?;
    f.set_modified(SystemTime::UNIX_EPOCH + SENTINEL).map_err(|e| LogicalError::io(dir, e))?;
    Sig::of(dir)
}
