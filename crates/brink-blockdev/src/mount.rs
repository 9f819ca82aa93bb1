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

/// The mount points at or under `dir` in a `/proc/self/mounts` or `/proc/self/mountinfo`
/// text (`mountinfo` says which), unescaped (the kernel writes a space in a path as
/// `\040`; comparing raw text finds nothing under a path with a space), deepest first:
/// the order to unmount them in.
pub fn mount_points_under_in(text: &str, mountinfo: bool, dir: &Path) -> Vec<PathBuf> {
    let field = if mountinfo { 4 } else { 1 };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(field))
        .map(crate::cgroup::unescape_mount_path)
        .filter(|m| m.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// The mount points at or under `dir` in this process's mount namespace, deepest first
/// (see [`mount_points_under_in`]). Empty if the mount table cannot be read.
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| mount_points_under_in(&t, true, dir)).unwrap_or_default()
}

/// Processes whose mount namespace (not this process's) still has a mount of the block
/// device `dev`, one per namespace, as `PID (COMMAND)`: who keeps a file system alive
/// after it was unmounted here. At most `max`.
pub fn holders_of(dev: &Path, max: usize) -> Vec<String> {
    let own = std::fs::read_link("/proc/self/ns/mnt").ok();
    let dev = dev.to_string_lossy();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if out.len() >= max || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let ns = std::fs::read_link(p.path().join("ns/mnt")).ok();
        if ns.is_none() || ns == own || seen.contains(&ns) {
            continue;
        }
        let info = std::fs::read_to_string(p.path().join("mountinfo")).unwrap_or_default();
        // The mount source is the second field after the " - " separator.
        let mounted = info.lines().any(|l| l.split(" - ").nth(1).and_then(|t| t.split(' ').nth(1)) == Some(&*dev));
        if mounted {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("{pid} ({})", comm.trim()));
            seen.insert(ns);
        }
    }
    out
}

#[cfg(test)]
mod under_tests {
    use super::*;

    /// Issue 13: explore's cleanup and the watchdog compared escaped text with raw paths
    /// and so missed every mount of a run whose results path held a space.
    #[test]
    fn mount_points_with_spaces_tabs_newlines_and_backslashes_are_found() {
        let info = "36 35 98:0 / /mnt1 rw - ext3 /dev/root rw\n\
                    37 36 7:1 / /r\\040s/.work/slot\\0111 rw shared:1 - fuse.brink brink rw\n\
                    38 37 7:2 / /r\\040s/.work/slot\\0111/a\\012b\\134c rw - ext4 /dev/loop2 rw\n\
                    39 35 7:3 / /r\\040sx rw - ext4 /dev/loop3 rw\n";
        let dir = Path::new("/r s/.work");
        assert_eq!(
            mount_points_under_in(info, true, dir),
            [PathBuf::from("/r s/.work/slot\t1/a\nb\\c"), PathBuf::from("/r s/.work/slot\t1")]
        );
        let mounts = "tmpfs /r\\040s tmpfs rw 0 0\ntmpfs /r\\040sx tmpfs rw 0 0\n";
        assert_eq!(mount_points_under_in(mounts, false, Path::new("/r s")), [PathBuf::from("/r s")]);
    }
}
