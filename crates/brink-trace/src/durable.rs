//! Crash-safe file helpers: brink's own files must survive the power cuts it studies.
//! The recipe is always the same: write a temporary file, fsync it, rename it over the
//! target, fsync the directory.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// fsync a directory so that renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replace `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = parent_of(path).join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fsync_dir(&parent_of(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Rename `from` to `to` (file or directory) and make the rename durable.
pub fn rename_durable(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)?;
    fsync_dir(&parent_of(to))?;
    let from_parent = parent_of(from);
    if from_parent != parent_of(to) {
        fsync_dir(&from_parent)?;
    }
    Ok(())
}
