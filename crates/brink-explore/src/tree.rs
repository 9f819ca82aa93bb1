//! Tree deduplication: what the checkers see of a recovered state, hashed, so that a
//! state whose files equal a state already checked (and held to the same marks) takes
//! its verdict instead of running the checkers again.
//!
//! Different images often recover to the same files: a journal block that did or did
//! not persist, once replayed; a write to a block no file uses any more. A checker that
//! starts a database server costs about a second a state; the walk costs a read of the
//! files. The hash covers what a checker can tell apart through the file system: each
//! entry's path, type, permission bits, owner and group, size, a regular file's bytes
//! and a symlink's target. Not covered: times, extended attributes, hard-link identity,
//! the image's own bytes (`BRINK_IMAGE`), so a checker that reads those must run with
//! `--no-tree-dedup`. The built-in fsck still runs on every distinct image.
//!
//! Hashing must cost less than it saves: a tree holding more than `TREE_BYTES_MAX` of
//! files (found by a walk of sizes before any read), or hashes that cost more on average
//! than they save (the share of hashed states that matched one checked, times a checker
//! run's average time; judged after `COST_SAMPLES` hashes), turn tree dedup off for the
//! rest of the run, and the summary says why (a trivial checker over a 1 GiB file system
//! ran four times slower before these limits).
//!
//! Which state of a set of equal trees runs the checkers depends on scheduling, so
//! `tree_dup_of` in `states.jsonl` is, like a check's `ms`, not deterministic at
//! `--jobs` above one; the verdicts are, for a checker whose verdict depends on the
//! files and marks only.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use brink_check::{CheckOutcome, Verdict};

/// Bytes read at a time from a file being hashed.
const READ_BYTES: usize = 1 << 16;
/// A tree with more file bytes than this is not hashed, and tree dedup is turned off.
pub(crate) const TREE_BYTES_MAX: u64 = 64 << 20;
/// A tree with more entries than this is not hashed either (the walk holds them all).
pub(crate) const TREE_ENTRIES_MAX: usize = 1 << 18;
/// How many regular files the hash opens (and asks the kernel to read) ahead of the one
/// it reads.
const PREFETCH_FILES: usize = 32;
/// How many hashes are timed before their cost is weighed against what they save.
const COST_SAMPLES: u64 = 32;

/// A recovered tree and how many marks its state is held to.
type Key = (blake3::Hash, usize);

/// The checks of the first state of each (tree, marks) whose checkers ran, and what
/// hashing and checking have cost so far.
#[derive(Default)]
pub(crate) struct Trees {
    seen: Mutex<HashMap<Key, (String, Vec<CheckOutcome>)>>,
    /// Why tree dedup was turned off, once it is.
    off: Mutex<Option<String>>,
    hash_us: AtomicU64,
    hashes: AtomicU64,
    /// Hashes that matched a tree checked before.
    hits: AtomicU64,
    check_us: AtomicU64,
    checks: AtomicU64,
}

impl Trees {
    /// Whether states are still hashed (module docs).
    pub(crate) fn on(&self) -> bool {
        self.off.lock().expect("trees").is_none()
    }

    /// Why tree dedup was turned off during the run, if it was.
    pub(crate) fn off_because(&self) -> Option<String> {
        self.off.lock().expect("trees").clone()
    }

    /// Hash the tree under `root`, timing it; None (and tree dedup off, for a tree too
    /// large) when it is not hashed.
    pub(crate) fn hash(&self, root: &Path) -> Option<blake3::Hash> {
        let started = std::time::Instant::now();
        let h = hash(root, TREE_BYTES_MAX);
        self.hash_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.hashes.fetch_add(1, Ordering::Relaxed);
        match h {
            Ok(h) => Some(h),
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                self.turn_off(format!(
                    "a recovered tree holds more than {} MiB of files or {TREE_ENTRIES_MAX} entries",
                    TREE_BYTES_MAX >> 20
                ));
                None
            }
            Err(_) => None,
        }
    }

    /// Count one run of the checkers; past `COST_SAMPLES` hashes, turn tree dedup off if
    /// a hash costs more than it saves on average (module docs).
    pub(crate) fn ran(&self, took: Duration) {
        let us = self.check_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed) + took.as_micros() as u64;
        let n = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        let (hash_us, hashes) = (self.hash_us.load(Ordering::Relaxed), self.hashes.load(Ordering::Relaxed));
        if hashes < COST_SAMPLES {
            return;
        }
        let hit = self.hits.load(Ordering::Relaxed) as f64 / hashes as f64;
        let (h, c) = (hash_us as f64 / hashes as f64 / 1000.0, us as f64 / n as f64 / 1000.0);
        if hit * c < h {
            self.turn_off(format!(
                "hashing a recovered tree ({h:.1} ms) saved less than it cost: {:.0}% of the states hashed \
                 matched one checked, at {c:.1} ms a run of the checkers",
                100.0 * hit
            ));
        }
    }

    fn turn_off(&self, why: String) {
        self.off.lock().expect("trees").get_or_insert(why);
    }

    /// The state that had this tree and as many marks, and its checkers' outcomes.
    pub(crate) fn get(&self, tree: &blake3::Hash, marks: usize) -> Option<(String, Vec<CheckOutcome>)> {
        let got = self.seen.lock().expect("trees").get(&(*tree, marks)).cloned();
        self.hits.fetch_add(u64::from(got.is_some()), Ordering::Relaxed);
        got
    }

    /// Remember a state's checkers' outcomes, unless one failed (it may be transient)
    /// or another state's were remembered first.
    pub(crate) fn put(&self, tree: blake3::Hash, marks: usize, state: &str, checks: &[CheckOutcome]) {
        if checks.iter().any(|c| c.verdict == Verdict::CheckerFailure) {
            return;
        }
        self.seen.lock().expect("trees").entry((tree, marks)).or_insert_with(|| (state.to_string(), checks.to_vec()));
    }
}

/// The hash of the tree under `root` (module docs), reading at most `max_bytes` of files
/// or `TREE_ENTRIES_MAX` entries (past them: `FileTooLarge`, found from one walk of the
/// metadata before any file is read). An error (a file the recovered file system cannot
/// read) means the state is checked, not deduplicated.
pub(crate) fn hash(root: &Path, max_bytes: u64) -> std::io::Result<blake3::Hash> {
    let mut budget = max_bytes;
    let mut entries = Vec::new();
    visit(root, Path::new(""), &mut |path, m| {
        if m.is_file() {
            budget = budget.checked_sub(m.len()).ok_or(std::io::ErrorKind::FileTooLarge)?;
        }
        if entries.len() == TREE_ENTRIES_MAX {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        entries.push((path.to_path_buf(), m.clone()));
        Ok(true)
    })?;
    let mut files = Prefetch::new(root, &entries);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_BYTES];
    for (path, m) in &entries {
        let kind: &[u8] = match m.file_type() {
            t if t.is_dir() => b"d",
            t if t.is_file() => b"f",
            t if t.is_symlink() => b"l",
            _ => b"o",
        };
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(kind);
        for n in [u64::from(m.mode() & 0o7777), u64::from(m.uid()), u64::from(m.gid()), m.size(), m.rdev()] {
            h.update(&n.to_le_bytes());
        }
        if m.is_file() {
            let mut f = files.next_file()?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if m.is_symlink() {
            h.update(std::fs::read_link(root.join(path))?.as_os_str().as_encoded_bytes());
        }
        h.update(b"\n");
    }
    Ok(h.finalize())
}

/// The regular files of a walk, opened in order `PREFETCH_FILES` ahead of the one being
/// read, each with the kernel asked to read it now (`POSIX_FADV_WILLNEED`). A small
/// file's read is otherwise a round trip through the loop device on its own; asked
/// ahead, the reads reach the device together (a recovered tree of 18 small files was
/// hashed in half the time).
struct Prefetch<'a> {
    root: &'a Path,
    paths: std::vec::IntoIter<&'a Path>,
    open: std::collections::VecDeque<std::io::Result<std::fs::File>>,
}

impl<'a> Prefetch<'a> {
    fn new(root: &'a Path, entries: &'a [(std::path::PathBuf, std::fs::Metadata)]) -> Prefetch<'a> {
        let paths: Vec<&Path> = entries.iter().filter(|(_, m)| m.is_file()).map(|(p, _)| p.as_path()).collect();
        let mut p = Prefetch { root, paths: paths.into_iter(), open: Default::default() };
        for _ in 0..PREFETCH_FILES {
            p.open_one();
        }
        p
    }

    fn open_one(&mut self) {
        let Some(path) = self.paths.next() else { return };
        let f = std::fs::File::open(self.root.join(path));
        if let Ok(f) = &f {
            // Advice only: a file it fails on is still read below.
            let _ = nix::fcntl::posix_fadvise(f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED);
        }
        self.open.push_back(f);
    }

    /// The next regular file of the walk, opened.
    fn next_file(&mut self) -> std::io::Result<std::fs::File> {
        self.open_one();
        self.open.pop_front().expect("one opened per regular file of the walk")
    }
}

/// Call `f` on every entry under `root.join(rel)` (its path relative to `root`, its own
/// metadata: links not followed), names sorted within each directory, a directory
/// before what it holds; `f` returns whether to go into a directory.
fn visit(
    root: &Path,
    rel: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> std::io::Result<bool>,
) -> std::io::Result<()> {
    let mut names: Vec<std::ffi::OsString> =
        std::fs::read_dir(root.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let m = std::fs::symlink_metadata(root.join(&path))?;
        if f(&path, &m)? && m.is_dir() {
            visit(root, &path, f)?;
        }
    }
    Ok(())
}

/// A path as the listings show it: spaces escaped, so an entry splits on spaces.
pub fn shown(path: &Path) -> String {
    path.to_string_lossy().replace(' ', "\\x20")
}

/// Files up to this size also get a hash per 4 KiB block ([`Listing::blocks`]).
pub const BLOCK_HASHED_MAX: u64 = 64 << 20;
/// The block size of [`Listing::blocks`].
pub const LISTED_BLOCK: u64 = 4096;

/// What a state holds in ALICE's and an APM's terms (`brink check-model`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// One line per entry under the root, in `visit` order: `d PATH`, `f PATH SIZE
    /// DIGEST` (16 hex digits of the content's blake3), `l PATH TARGET`; no modes,
    /// owners or times, and no `lost+found` (the file system's, not the program's).
    pub entries: Vec<String>,
    /// A hash (16 hex digits) per 4 KiB block of each regular file up to
    /// [`BLOCK_HASHED_MAX`] bytes, by its path as `entries` shows it: what lets
    /// check-model compare a recovered file with a model's state block by block,
    /// leaving out the blocks where the model's state holds garbage.
    pub blocks: BTreeMap<String, Vec<String>>,
}

impl Listing {
    /// Adds a directory.
    pub fn dir(&mut self, path: &Path) {
        self.entries.push(format!("d {}", shown(path)));
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &Path, target: &Path) {
        self.entries.push(format!("l {} {}", shown(path), target.to_string_lossy()));
    }

    /// Adds a regular file from its bytes.
    pub fn file(&mut self, path: &Path, bytes: &[u8]) {
        self.file_digest(path, &FileDigest::of(bytes));
    }

    /// Adds a regular file from its digest.
    pub fn file_digest(&mut self, path: &Path, d: &FileDigest) {
        let shown = shown(path);
        self.entries.push(format!("f {shown} {} {}", d.size, d.whole));
        if let Some(blocks) = &d.blocks {
            self.blocks.insert(shown, blocks.clone());
        }
    }

    /// The listing's content key: one hash of its entries.
    pub fn digest(&self) -> String {
        blake3::hash(self.entries.join("\n").as_bytes()).to_hex().to_string()
    }
}

/// What a [`Listing`] says of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// 16 hex digits of its content's blake3.
    pub whole: String,
    /// One digest per 4 KiB block, for files of 1 byte to [`BLOCK_HASHED_MAX`].
    pub blocks: Option<Vec<String>>,
}

impl FileDigest {
    pub fn of(bytes: &[u8]) -> FileDigest {
        let size = bytes.len() as u64;
        let small = size > 0 && size <= BLOCK_HASHED_MAX;
        let blocks = small.then(|| bytes.chunks(LISTED_BLOCK as usize).map(digest).collect());
        FileDigest { size, whole: digest(bytes), blocks }
    }

    /// A file too large for block hashes, hashed whole.
    pub fn whole(size: u64, hash: blake3::Hash) -> FileDigest {
        FileDigest { size, whole: hash.to_hex()[..16].to_string(), blocks: None }
    }
}

/// 16 hex digits of the blake3 of `bytes`.
fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..16].to_string()
}

/// The [`Listing`] of `root`, every file read once.
pub fn content_listing(root: &Path) -> std::io::Result<Listing> {
    let mut out = Listing::default();
    visit(root, Path::new(""), &mut |path, m| {
        if path == Path::new(LOST_FOUND) {
            return Ok(false);
        }
        if m.is_dir() {
            out.dir(path);
        } else if m.is_symlink() {
            out.symlink(path, &std::fs::read_link(root.join(path))?);
        } else if m.is_file() && m.len() <= BLOCK_HASHED_MAX {
            out.file(path, &std::fs::read(root.join(path))?);
        } else if m.is_file() {
            let mut h = blake3::Hasher::new();
            h.update_reader(std::fs::File::open(root.join(path))?)?;
            out.file_digest(path, &FileDigest::whole(m.len(), h.finalize()));
        }
        Ok(true)
    })?;
    Ok(out)
}

/// The file system's own directory at the root, left out of listings.
pub const LOST_FOUND: &str = "lost+found";

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::fs::write(d.path().join("dir/a"), b"alpha").unwrap();
        std::fs::write(d.path().join("b"), b"beta").unwrap();
        std::os::unix::fs::symlink("dir/a", d.path().join("link")).unwrap();
        d
    }

    /// One read of each file gives its entry and, up to the limit, its block hashes.
    #[test]
    fn the_listing_names_entries_and_hashes_small_files_by_block() {
        let d = tree();
        std::fs::write(d.path().join("big"), vec![7u8; 5000]).unwrap();
        let l = content_listing(d.path()).unwrap();
        let digest = |b: &[u8]| blake3::hash(b).to_hex()[..16].to_string();
        assert!(l.entries.contains(&format!("f big 5000 {}", digest(&[7u8; 5000]))), "{:?}", l.entries);
        assert!(l.entries.contains(&"d dir".to_string()) && l.entries.contains(&"l link dir/a".to_string()));
        assert_eq!(l.blocks["big"], vec![digest(&[7u8; 4096]), digest(&[7u8; 904])]);
        assert_eq!(l.blocks["dir/a"], vec![digest(b"alpha")]);
    }

    /// Equal files hash equal whatever their times; any visible difference changes it.
    #[test]
    fn the_hash_sees_names_contents_modes_and_links_not_times() {
        let (a, b) = (tree(), tree());
        assert_eq!(hash(a.path(), 1 << 20).unwrap(), hash(b.path(), 1 << 20).unwrap());
        let f = std::fs::File::options().write(true).open(b.path().join("b")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(hash(a.path(), 1 << 20).unwrap(), hash(b.path(), 1 << 20).unwrap(), "times are not seen");
        let changes: [&dyn Fn(&Path); 4] = [
            &|p| std::fs::write(p.join("dir/a"), b"alphA").unwrap(),
            &|p| std::fs::rename(p.join("b"), p.join("c")).unwrap(),
            &|p| std::fs::set_permissions(p.join("b"), std::fs::Permissions::from_mode(0o600)).unwrap(),
            &|p| {
                std::fs::remove_file(p.join("link")).unwrap();
                std::os::unix::fs::symlink("b", p.join("link")).unwrap();
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let c = tree();
            change(c.path());
            assert_ne!(hash(a.path(), 1 << 20).unwrap(), hash(c.path(), 1 << 20).unwrap(), "change {i}");
        }
    }

    /// A tree larger than the budget is not hashed; hashes dearer than checker runs turn
    /// tree dedup off, with the reason.
    #[test]
    fn tree_dedup_turns_itself_off_when_it_does_not_pay() {
        let a = tree();
        assert_eq!(hash(a.path(), 8).unwrap_err().kind(), std::io::ErrorKind::FileTooLarge);
        // Every hash after the first matches, and a run of the checkers costs a second:
        // worth it. Nothing ever matches: not worth any hash.
        let t = Trees::default();
        let h = t.hash(a.path()).unwrap();
        t.put(h, 0, "1", &[]);
        for _ in 0..COST_SAMPLES {
            assert!(t.hash(a.path()).is_some() && t.get(&h, 0).is_some());
            t.ran(Duration::from_secs(1));
        }
        assert!(t.on(), "{:?}", t.off_because());
        let never = Trees::default();
        for i in 0..COST_SAMPLES {
            let h = never.hash(a.path()).unwrap();
            assert!(never.get(&h, i as usize).is_none());
            never.ran(Duration::from_secs(1));
        }
        assert!(
            never.off_because().is_some_and(|w| w.contains(" 0% of the states hashed")),
            "{:?}",
            never.off_because()
        );
    }
}
