//! Paths as the lint compares and prints them: joined and normalized lexically (no file
//! system is consulted, so a symlinked directory is not resolved), shown relative to the
//! workload's starting directory, and with digit runs folded to `N` so that `log.1` and
//! `log.2` made by one loop count as one mistake.

use std::path::{Component, Path, PathBuf};

/// `path` joined onto `base` (when relative and a base is known), with `.` dropped and
/// `..` applied lexically.
pub(crate) fn join(base: Option<&Path>, path: &Path) -> PathBuf {
    let joined = match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    };
    normalize(&joined)
}

/// `.` dropped and `..` applied lexically (`..` above the root stays at the root).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && path.is_relative() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether a path names something the lint treats as a file whose durability matters:
/// an absolute path outside the kernel's pseudo file systems (`/dev`, `/proc`, `/sys`)
/// and not a `memfd_create` file (`/memfd:NAME`). `pipe:[…]`, `socket:[…]` and
/// `anon_inode:…` are not absolute.
pub(crate) fn is_storage(path: &Path) -> bool {
    path.is_absolute()
        && !["/dev", "/proc", "/sys"].iter().any(|p| path.starts_with(p))
        && !path.as_os_str().as_encoded_bytes().starts_with(b"/memfd:")
}

/// `path` for a person (`brink_calls::show_path`); a directory gets a trailing `/`.
pub(crate) fn show(base: Option<&Path>, path: &Path, dir: bool) -> String {
    let mut text = brink_calls::show_path(base, path);
    if dir && !text.ends_with('/') {
        text.push('/');
    }
    text
}

/// Every run of ASCII digits replaced by `N` (`brink_calls::fold_digits`, shared with the
/// vulnerabilities' grouping).
pub(crate) fn fold_digits(text: &str) -> String {
    brink_calls::fold_digits(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_normalizes_lexically() {
        assert_eq!(join(Some(Path::new("/w")), Path::new("a/./b/../c")), PathBuf::from("/w/a/c"));
        assert_eq!(join(Some(Path::new("/w")), Path::new("/x/../y")), PathBuf::from("/y"));
        assert_eq!(join(None, Path::new("../a")), PathBuf::from("../a"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
    }

    #[test]
    fn shows_relative_to_the_base() {
        let base = Some(Path::new("/w"));
        assert_eq!(show(base, Path::new("/w/a/b"), false), "a/b");
        assert_eq!(show(base, Path::new("/w"), true), "./");
        assert_eq!(show(base, Path::new("/x/y"), true), "/x/y/");
        assert_eq!(show(None, Path::new("/x/y"), false), "/x/y");
    }

    #[test]
    fn folds_digit_runs() {
        assert_eq!(fold_digits("log.12/seg-7.db"), "log.N/seg-N.db");
        assert!(is_storage(Path::new("/tmp/a")) && !is_storage(Path::new("/dev/null")));
        assert!(!is_storage(Path::new("pipe:[12]")) && !is_storage(Path::new("/proc/self/fd/3")));
        assert!(!is_storage(Path::new("/memfd:buffer")));
    }
}
