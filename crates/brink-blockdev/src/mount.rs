//! mount(2) and umount2(2) with a guard. Option strings are split the way mount(8) does:
//! generic words (`ro`, `noatime`, `sync`, …) become flags, the rest is passed to the
//! file system as its data string.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::BlockdevError;

/// How long an unmount retries a busy file system before giving up.
const UNMOUNT_BUSY_RETRIES_MAX: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub data: String,
    /// The option string as the user gave it.
    pub text: String,
}

impl FromStr for MountOptions {
    type Err = BlockdevError;
    fn from_str(s: &str) -> Result<Self, BlockdevError> {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let f = match word {
                "ro" => MsFlags::MS_RDONLY,
                "rw" | "defaults" | "async" | "atime" | "exec" | "suid" | "dev" => MsFlags::empty(),
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                "strictatime" => MsFlags::MS_STRICTATIME,
                "lazytime" => MsFlags::MS_LAZYTIME,
                "sync" => MsFlags::MS_SYNCHRONOUS,
                "dirsync" => MsFlags::MS_DIRSYNC,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                _ if word.contains(char::is_whitespace) => {
                    return Err(BlockdevError::MountOptionWhitespace(word.to_string()));
                }
                _ => {
                    data.push(word);
                    continue;
                }
            };
            flags |= f;
        }
        Ok(MountOptions { flags, data: data.join(","), text: s.to_string() })
    }
}

/// A mounted file system; unmounted on drop (lazily if it stays busy).
#[derive(Debug)]
pub struct Mount {
    target: Option<PathBuf>,
}

impl Mount {
    /// Mount `source` on `target`; the guard unmounts it on drop.
    #[expect(
        clippy::self_named_constructors,
        reason = "`Mount::mount` reads as the system call it makes; callers in other crates use the name"
    )]
    pub fn mount(source: &Path, target: &Path, fstype: &str, opts: &MountOptions) -> Result<Mount, BlockdevError> {
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        nix::mount::mount(Some(source), target, Some(fstype), opts.flags, data).map_err(|e| {
            BlockdevError::sys(
                format!(
                    "mounting {} ({fstype}, options '{}') on {} failed",
                    source.display(),
                    opts.text,
                    target.display()
                ),
                e,
            )
        })?;
        Ok(Mount { target: Some(target.to_path_buf()) })
    }

    pub fn target(&self) -> &Path {
        self.target.as_deref().expect("mounted")
    }

    /// Leave the file system mounted after this process ends (for a person to inspect).
    pub fn leak(mut self) -> PathBuf {
        self.target.take().expect("mounted")
    }

    /// Unmount, retrying while the file system is busy. On failure the guard is kept, so
    /// that its drop still detaches the mount lazily.
    pub fn unmount(mut self) -> Result<(), BlockdevError> {
        let target = self.target.clone().expect("mounted");
        match unmount_path(&target) {
            Ok(()) => {
                self.target = None;
                Ok(())
            }
            Err(e) => Err(BlockdevError::sys(format!("cannot unmount {}", target.display()), e)),
        }
    }
}

/// Unmount `target`, retrying while it is busy (a process that just exited may still be
/// closing files).
pub fn unmount_path(target: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if tries < UNMOUNT_BUSY_RETRIES_MAX => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            if unmount_path(&t).is_err() {
                let _ = nix::mount::umount2(&t, MntFlags::MNT_DETACH);
            }
        }
    }
}
