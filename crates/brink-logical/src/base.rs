//! The files before the workload ran: the trace's base image extracted once into a
//! directory (ext4: `debugfs -R 'rdump / DIR'` and btrfs: `btrfs restore`, without root
//! or a mount; XFS: mounted read-only, as root), and listed as the persistence model's
//! initial tree ([`brink_pmodel::Initial`]).
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
    /// which must not exist yet: ext4 with `debugfs -R 'rdump'` and btrfs with `btrfs
    /// restore`, both reading the image as a file (no root, no mount); XFS has no such
    /// tool in Debian 12 (xfsprogs 6.1), so its image is mounted read-only, without log
    /// recovery, on a read-only loop device and copied, which needs root. The base image
    /// was taken with the file system unmounted, so there is no log to recover.
    pub fn extract(image: &Path, fs: &str, dir: &Path) -> Result<Base, LogicalError> {
        std::fs::create_dir_all(dir).map_err(|e| LogicalError::io(dir, e))?;
        match fs {
            "ext4" => debugfs_rdump(image, dir)?,
            "btrfs" => btrfs_restore(image, dir)?,
            "xfs" => mount_and_copy(image, fs, dir)?,
            other => return Err(LogicalError::UnsupportedFs { fs: other.to_string() }),
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

/// `program args…`, its failure as the extraction's: the line of its standard error
/// that `failed` picks, else its last.
fn run(
    image: &Path,
    program: &Path,
    args: &[&std::ffi::OsStr],
    failed: &dyn Fn(&str) -> bool,
) -> Result<(), LogicalError> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| LogicalError::Extract {
        image: image.to_path_buf(),
        why: format!("{}: {e}", program.display()),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bad = stderr.lines().find(|l| failed(l));
    if !out.status.success() || bad.is_some() {
        let why = bad.or_else(|| stderr.lines().last()).unwrap_or("failed").trim().to_string();
        return Err(LogicalError::Extract { image: image.to_path_buf(), why: format!("{}: {why}", program.display()) });
    }
    Ok(())
}

fn debugfs_rdump(image: &Path, dir: &Path) -> Result<(), LogicalError> {
    let debugfs = brink_blockdev::find_program("debugfs")
        .ok_or(LogicalError::MissingTool { prog: "debugfs", package: "e2fsprogs" })?;
    let mut request = b"rdump / ".to_vec();
    request.extend_from_slice(dir.as_os_str().as_bytes());
    let request = std::ffi::OsStr::from_bytes(&request);
    // debugfs exits 0 after most failures and says what on stderr.
    let failed = |l: &str| l.contains("Bad magic") || l.contains("while trying to open") || l.contains("while opening");
    run(image, &debugfs, &["-R".as_ref(), request, image.as_os_str()], &failed)
}

fn btrfs_restore(image: &Path, dir: &Path) -> Result<(), LogicalError> {
    let btrfs = brink_blockdev::find_program("btrfs")
        .ok_or(LogicalError::MissingTool { prog: "btrfs", package: "btrfs-progs" })?;
    // -S: symbolic links too; -m: owners, modes and times.
    let args = ["restore".as_ref(), "-S".as_ref(), "-m".as_ref(), image.as_os_str(), dir.as_os_str()];
    run(image, &btrfs, &args, &|l: &str| l.starts_with("ERROR") || l.contains("Could not open root"))
}

/// Mount `image` read-only without log recovery in a folder beside `dir`, copy its files
/// into `dir` (`cp -a`), and unmount; the guards undo the mount and the loop device on
/// every path.
fn mount_and_copy(image: &Path, fs: &str, dir: &Path) -> Result<(), LogicalError> {
    use brink_blockdev::{LoopDevice, Mount};
    let fail = |why: String| LogicalError::Extract { image: image.to_path_buf(), why };
    if !nix::unistd::geteuid().is_root() {
        return Err(fail(format!(
            "an {fs} image is read by mounting it, which needs root (ext4 and btrfs images are read without)"
        )));
    }
    let file = std::fs::File::open(image).map_err(|e| LogicalError::io(image, e))?;
    let dev = LoopDevice::attach(&file, image, true).map_err(|e| fail(e.to_string()))?;
    let target = dir.with_extension("mnt");
    std::fs::create_dir_all(&target).map_err(|e| LogicalError::io(&target, e))?;
    let opts = "ro,norecovery".parse().map_err(|e: brink_blockdev::BlockdevError| fail(e.to_string()))?;
    let mounted = Mount::mount(dev.path(), &target, fs, &opts).map_err(|e| fail(e.to_string()))?;
    let mut from = target.clone().into_os_string();
    from.push("/.");
    let copied = run(image, Path::new("cp"), &["-a".as_ref(), &from, dir.as_os_str()], &|_| false);
    mounted.unmount().map_err(|e| fail(e.to_string()))?;
    dev.detach().map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_dir(&target);
    copied
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
