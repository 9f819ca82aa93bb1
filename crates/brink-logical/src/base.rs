//! The files before the workload ran: the trace's base image extracted once into a
//! directory, without root and without mounting (ext4: `debugfs -R 'rdump / DIR'`), and
//! listed as the persistence model's initial tree ([`brink_pmodel::Initial`]).
//! States read their initial content from these files.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brink_pmodel::{Initial, NodeKind};

use crate::LogicalError;

/// The base image's files, extracted.
#[derive(Debug)]
pub struct Base {
    /// Where the files are (the image's root).
    pub dir: PathBuf,
    /// What is there, parents first (sockets, devices and FIFOs are left out).
    pub initial: Vec<Initial>,
}

impl Base {
    /// Extracts `image` (a file system of kind `fs`, as `meta.json` names it) into `dir`,
    /// which must not exist yet.
    pub fn extract(image: &Path, fs: &str, dir: &Path) -> Result<Base, LogicalError> {
        if fs != "ext4" {
            return Err(LogicalError::UnsupportedFs { fs: fs.to_string() });
        }
        let debugfs = brink_blockdev::find_program("debugfs")
            .ok_or(LogicalError::MissingTool { prog: "debugfs", package: "e2fsprogs" })?;
        std::fs::create_dir_all(dir).map_err(|e| LogicalError::io(dir, e))?;
        let mut request = b"rdump / ".to_vec();
        request.extend_from_slice(dir.as_os_str().as_bytes());
        let out = Command::new(debugfs)
            .arg("-R")
            .arg(std::ffi::OsStr::from_bytes(&request))
            .arg(image)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LogicalError::Extract { image: image.to_path_buf(), why: e.to_string() })?;
        // debugfs exits 0 after most failures and says what on stderr.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed = stderr
            .lines()
            .find(|l| l.contains("Bad magic") || l.contains("while trying to open") || l.contains("while opening"));
        if !out.status.success() || failed.is_some() {
            let why = failed.or_else(|| stderr.lines().last()).unwrap_or("debugfs failed").trim().to_string();
            return Err(LogicalError::Extract { image: image.to_path_buf(), why });
        }
        Base::list(dir)
    }

    /// The files already under `dir`, as a base.
    pub fn list(dir: &Path) -> Result<Base, LogicalError> {
        let mut initial = Vec::new();
        walk(dir, Path::new(""), &mut initial)?;
        Ok(Base { dir: dir.to_path_buf(), initial })
    }
}

/// Lists `root/rel` into `out`, parents first, names sorted.
fn walk(root: &Path, rel: &Path, out: &mut Vec<Initial>) -> Result<(), LogicalError> {
    let here = root.join(rel);
    let rd = std::fs::read_dir(&here).map_err(|e| LogicalError::io(&here, e))?;
    let mut names: Vec<_> =
        rd.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>().map_err(|e| LogicalError::io(&here, e))?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let full = root.join(&path);
        let meta = std::fs::symlink_metadata(&full).map_err(|e| LogicalError::io(&full, e))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&full).map_err(|e| LogicalError::io(&full, e))?;
            NodeKind::Symlink(target.as_os_str().as_bytes().to_vec())
        } else if ft.is_file() {
            NodeKind::File
        } else {
            continue;
        };
        let size = if kind == NodeKind::File { meta.len() } else { 0 };
        let dir = kind == NodeKind::Dir;
        out.push(Initial { path: path.clone(), kind, size });
        if dir {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}
