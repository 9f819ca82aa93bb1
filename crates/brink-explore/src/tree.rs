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
//! Which state of a set of equal trees runs the checkers depends on scheduling, so
//! `tree_dup_of` in `states.jsonl` is, like a check's `ms`, not deterministic at
//! `--jobs` above one; the verdicts are, for a checker whose verdict depends on the
//! files and marks only.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use brink_check::{CheckOutcome, Verdict};

/// Bytes read at a time from a file being hashed.
const READ_BYTES: usize = 1 << 16;

/// A recovered tree and how many marks its state is held to.
type Key = (blake3::Hash, usize);

/// The checks of the first state of each (tree, marks) whose checkers ran.
#[derive(Default)]
pub(crate) struct Trees {
    seen: Mutex<HashMap<Key, (String, Vec<CheckOutcome>)>>,
}

impl Trees {
    /// The state that had this tree and as many marks, and its checkers' outcomes.
    pub(crate) fn get(&self, tree: &blake3::Hash, marks: usize) -> Option<(String, Vec<CheckOutcome>)> {
        self.seen.lock().expect("trees").get(&(*tree, marks)).cloned()
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

/// The hash of the tree under `root` (module docs). An error (a file the recovered file
/// system cannot read) means the state is checked, not deduplicated.
pub(crate) fn hash(root: &Path) -> std::io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_BYTES];
    walk(root, Path::new(""), &mut h, &mut buf)?;
    Ok(h.finalize())
}

fn walk(root: &Path, rel: &Path, h: &mut blake3::Hasher, buf: &mut [u8]) -> std::io::Result<()> {
    let mut names: Vec<std::ffi::OsString> =
        std::fs::read_dir(root.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let full = root.join(&path);
        let m = std::fs::symlink_metadata(&full)?;
        let ft = m.file_type();
        let kind: &[u8] = if ft.is_dir() {
            b"d"
        } else if ft.is_file() {
            b"f"
        } else if ft.is_symlink() {
            b"l"
        } else {
            b"o"
        };
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(kind);
        for n in [u64::from(m.mode() & 0o7777), u64::from(m.uid()), u64::from(m.gid()), m.size(), m.rdev()] {
            h.update(&n.to_le_bytes());
        }
        if ft.is_dir() {
            walk(root, &path, h, buf)?;
        } else if ft.is_file() {
            let mut f = std::fs::File::open(&full)?;
            loop {
                let n = f.read(buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if ft.is_symlink() {
            h.update(std::fs::read_link(&full)?.as_os_str().as_encoded_bytes());
        }
        h.update(b"\n");
    }
    Ok(())
}

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

    /// Equal files hash equal whatever their times; any visible difference changes it.
    #[test]
    fn the_hash_sees_names_contents_modes_and_links_not_times() {
        let (a, b) = (tree(), tree());
        assert_eq!(hash(a.path()).unwrap(), hash(b.path()).unwrap());
        let f = std::fs::File::options().write(true).open(b.path().join("b")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(hash(a.path()).unwrap(), hash(b.path()).unwrap(), "times are not seen");
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
            assert_ne!(hash(a.path()).unwrap(), hash(c.path()).unwrap(), "change {i}");
        }
    }
}
