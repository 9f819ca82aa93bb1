//! The file systems brink records on, and what each needs from its tools.

use std::fmt;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Ext4,
    Xfs,
    Btrfs,
}

impl FsKind {
    pub const ALL: [FsKind; 3] = [FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs];

    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
        }
    }

    pub fn mkfs_program(self) -> &'static str {
        match self {
            FsKind::Ext4 => "mkfs.ext4",
            FsKind::Xfs => "mkfs.xfs",
            FsKind::Btrfs => "mkfs.btrfs",
        }
    }

    /// The Debian package that ships the tools.
    pub fn package(self) -> &'static str {
        match self {
            FsKind::Ext4 => "e2fsprogs",
            FsKind::Xfs => "xfsprogs",
            FsKind::Btrfs => "btrfs-progs",
        }
    }

    /// Arguments brink always passes to mkfs, before the user's (which can override
    /// them). For ext4: 4 KiB blocks, as on production disks (mke2fs would pick 1 KiB
    /// blocks for images under 512 MiB), and inode tables and journal zeroed by mkfs
    /// rather than lazily by a kernel thread after mount, which would otherwise add
    /// background writes to every recording.
    pub fn mkfs_args(self) -> &'static [&'static str] {
        match self {
            FsKind::Ext4 => &["-F", "-q", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
            FsKind::Xfs => &["-f", "-q"],
            FsKind::Btrfs => &["-f", "-q"],
        }
    }

    /// Smallest image mkfs accepts with default options (xfsprogs refuses file systems
    /// under 300 MiB; btrfs needs about 114 MiB for its default profile).
    pub fn min_image_bytes(self) -> u64 {
        match self {
            FsKind::Ext4 => 4 << 20,
            FsKind::Xfs => 300 << 20,
            FsKind::Btrfs => 114 << 20,
        }
    }

    /// Whether a file system of this kind is alive on the block device `dev` (mounted
    /// anywhere, or unmounted but still referenced), read from sysfs without opening the
    /// device: ext4 and XFS list each live superblock as `/sys/fs/<fs>/<dev>`, btrfs as
    /// `/sys/fs/btrfs/<fsid>/devices/<dev>`. None when this kernel does not say (the
    /// file system's sysfs directory is absent): ask the device instead, with an
    /// exclusive open, which claims it for a moment.
    pub fn alive_on(self, dev: &std::path::Path) -> Option<bool> {
        let name = dev.file_name()?;
        let root = std::path::Path::new("/sys/fs").join(self.name());
        if !root.is_dir() {
            return None;
        }
        Some(match self {
            FsKind::Ext4 | FsKind::Xfs => root.join(name).exists(),
            FsKind::Btrfs => {
                std::fs::read_dir(&root).ok()?.flatten().any(|fs| fs.path().join("devices").join(name).exists())
            }
        })
    }

    /// Wait up to `max` for the file system on `dev` to be gone after its unmount, its
    /// last blocks written; false if it is still there then. An unmount frees the file
    /// system only with the last reference to it: a task reading the mount table holds
    /// one for a moment, and a mount namespace created while it was mounted (`unshare
    /// --mount`, a service's private /tmp, a browser's sandbox) holds a copy of the mount
    /// until that namespace ends. The file system leaves sysfs before it writes its last
    /// blocks (the journal's last commit, the superblock) and claims the device until
    /// they are written, so both are waited for: sysfs first (it claims nothing), then
    /// an exclusive open.
    pub fn wait_released(self, dev: &Path, max: Duration) -> bool {
        crate::cgroup::wait_until(max, || self.alive_on(dev) != Some(true) && !claimed(dev))
    }
}

/// Whether `dev` is claimed: an exclusive open fails with EBUSY while a file system
/// (or any exclusive holder) has it.
fn claimed(dev: &Path) -> bool {
    let open = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_EXCL).open(dev);
    open.is_err_and(|e| e.raw_os_error() == Some(nix::libc::EBUSY))
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A file-system name brink does not record on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsKindError {
    #[error("unknown file system '{0}' (expected ext4, xfs or btrfs)")]
    Unknown(String),
}

impl FromStr for FsKind {
    type Err = FsKindError;
    fn from_str(s: &str) -> Result<Self, FsKindError> {
        FsKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| FsKindError::Unknown(s.to_string()))
    }
}
