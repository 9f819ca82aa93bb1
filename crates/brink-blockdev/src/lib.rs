//! Kernel block devices, talked to directly: loop devices through their ioctls and
//! mounts through mount(2)/umount2(2). The `losetup` and `mount` programs cost 10–13 ms
//! a call against about 2 ms for the system calls, and crash exploration does this per
//! state. Every resource is a guard that releases itself on drop, so no error path
//! leaves a mount or a loop device behind.

pub mod cgroup;
mod fskind;
pub mod fusectl;
mod loopdev;
mod mount;
pub mod writelog;

pub use fskind::{FsKind, FsKindError};
pub use loopdev::{LoopDevice, attached_loop_devices, memory_file};
pub use mount::{Mount, MountOptions, holders_of, mount_points_under, mount_points_under_in, unmount_path};

use std::path::{Path, PathBuf};

/// A system call on a device or mount failed, or a request could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockdevError {
    /// `what` says what brink was doing; `source` is what the kernel answered.
    #[error("{what}: {source}")]
    Sys { what: String, source: std::io::Error },
    /// A mount option word holds white space, which mount(2) cannot take.
    #[error("mount option '{0}' contains whitespace")]
    MountOptionWhitespace(String),
}

/// An image size that [`parse_size`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Not a positive number of bytes with an optional K, M, G or T suffix, or too large.
    #[error("bad size '{0}': use bytes or a K, M, G or T suffix")]
    Malformed(String),
}

impl BlockdevError {
    pub(crate) fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        BlockdevError::Sys { what: what.into(), source: source.into() }
    }
}

/// Find `prog` on `PATH`, also looking in the sbin directories that a non-login root
/// shell may lack.
pub fn find_program(prog: &str) -> Option<PathBuf> {
    find_on_path(prog).or_else(|| {
        ["/usr/local/sbin", "/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(prog)).find(|p| is_executable(p))
    })
}

/// Find `prog` on `PATH` only.
pub fn find_on_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| is_executable(p))
}

/// A regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Parse an image size: "64M", "1G", "4096" (binary units).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(SizeError::Malformed(s.to_string())),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| SizeError::Malformed(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("0").is_err());
    }
}
