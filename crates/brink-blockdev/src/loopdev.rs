//! Loop devices through their ioctls (UAPI `<linux/loop.h>`), configured atomically with
//! `LOOP_CONFIGURE`. Neither `libc` nor `nix` has the loop requests, so they are declared
//! here with `nix`'s ioctl macros. Those generate `unsafe fn`s (the kernel reads memory
//! through the argument), and the calls below are, with the `pre_exec` hook of `cgroup`, this crate's only unsafe code.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

use crate::BlockdevError;

// LOOP_CTL_GET_FREE = _IO('L', 0x82) on /dev/loop-control: no argument, answers an index.
nix::ioctl_none!(loop_ctl_get_free, b'L', 0x82);
// LOOP_CONFIGURE = _IO('L', 0x0A), though it reads a `struct loop_config` through its
// argument (the UAPI declares it without a size, hence the "bad" variant).
nix::ioctl_write_ptr_bad!(loop_configure, nix::request_code_none!(b'L', 0x0A), LoopConfig);
// LOOP_CLR_FD = _IO('L', 0x01): no argument.
nix::ioctl_none!(loop_clr_fd, b'L', 0x01);
// BLKFLSBUF = _IO(0x12, 97) (<linux/fs.h>): no argument.
nix::ioctl_none!(blkflsbuf, 0x12, 97);
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Attempts at finding a free device when other processes race for the same one.
const ATTACH_ATTEMPTS_MAX: u32 = 200;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// An attached loop device. Detached on drop; it is also configured with AUTOCLEAR, so
/// if this process dies the kernel detaches it once nothing holds it open any more.
#[derive(Debug)]
pub struct LoopDevice {
    dev: Option<File>,
    path: PathBuf,
}

impl LoopDevice {
    /// Attach `backing` (already open) to a free loop device.
    pub fn attach(backing: &File, backing_path: &Path, read_only: bool) -> Result<LoopDevice, BlockdevError> {
        let ctl = OpenOptions::new().read(true).write(true).open("/dev/loop-control").map_err(|e| {
            BlockdevError::sys("cannot open /dev/loop-control (loop devices need root and the loop module)", e)
        })?;
        let mut cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 },
                lo_file_name: [0; 64],
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        let name = backing_path.as_os_str().as_encoded_bytes();
        let n = name.len().min(63);
        cfg.info.lo_file_name[..n].copy_from_slice(&name[..n]);
        let mut last_err = None;
        for _ in 0..ATTACH_ATTEMPTS_MAX {
            // SAFETY: LOOP_CTL_GET_FREE on an open /dev/loop-control reads no memory.
            let index = unsafe { loop_ctl_get_free(ctl.as_raw_fd()) }
                .map_err(|e| BlockdevError::sys("no free loop device", e))?;
            let path = PathBuf::from(format!("/dev/loop{index}"));
            let dev = match OpenOptions::new().read(true).write(!read_only).open(&path) {
                Ok(d) => d,
                Err(e) => {
                    // The device node may appear a moment after the index is handed out.
                    last_err = Some(e);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            };
            // SAFETY: cfg is a valid, fully initialised loop_config (its layout checked
            // against the UAPI's size above) that outlives the call; the kernel only reads it.
            match unsafe { loop_configure(dev.as_raw_fd(), &raw const cfg) } {
                Ok(_) => return Ok(LoopDevice { dev: Some(dev), path }),
                Err(Errno::EBUSY) => {
                    last_err = Some(Errno::EBUSY.into()); // someone else took it between GET_FREE and CONFIGURE
                }
                Err(e) => return Err(BlockdevError::sys(format!("cannot configure {}", path.display()), e)),
            }
        }
        Err(BlockdevError::sys(
            "no loop device could be attached",
            last_err.unwrap_or_else(|| std::io::Error::other("retries exhausted")),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drop the device's block cache (BLKFLSBUF): needed when the backing file's content
    /// changed underneath, so that the next mount reads the new content.
    pub fn drop_caches(&self) -> Result<(), BlockdevError> {
        let dev = self.dev.as_ref().expect("attached");
        // SAFETY: BLKFLSBUF on an open block device reads no memory.
        unsafe { blkflsbuf(dev.as_raw_fd()) }
            .map(|_| ())
            .map_err(|e| BlockdevError::sys(format!("cannot drop the block cache of {}", self.path.display()), e))
    }

    /// Keep the device attached after this process ends. With AUTOCLEAR it detaches
    /// itself once nothing holds it (the file system on it unmounted).
    pub fn leak(mut self) -> PathBuf {
        drop(self.dev.take());
        self.path.clone()
    }

    /// Detach now and report failure (drop detaches too but cannot report).
    pub fn detach(mut self) -> Result<(), BlockdevError> {
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<(), BlockdevError> {
        let Some(dev) = self.dev.take() else { return Ok(()) };
        // SAFETY: LOOP_CLR_FD on an open loop device reads no memory.
        let rc = unsafe { loop_clr_fd(dev.as_raw_fd()) };
        drop(dev);
        match rc {
            Ok(_) => Ok(()),
            // With AUTOCLEAR already set the device may have been cleared: the state we want.
            Err(Errno::ENXIO) => Ok(()),
            Err(e) => Err(BlockdevError::sys(format!("cannot detach {}", self.path.display()), e)),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = self.detach_inner();
    }
}

/// The prefix of the name of a memory file that [`memory_file`] names after a path.
const MEMFD_PREFIX: &str = "brink-slot ";
/// The longest name a memory file takes (`memfd_create(2)`).
const MEMFD_NAME_MAX: usize = 249;

/// A memory file (`memfd`) of `size` bytes, all holes, that stands for `path` (brink's
/// memory slots): a loop device over it is listed by [`attached_loop_devices`] with
/// `path` as its backing file, so that a check for loop devices left under a directory
/// sees it.
pub fn memory_file(path: &Path, size: u64) -> std::io::Result<File> {
    let mut name = format!("{MEMFD_PREFIX}{}", path.display()).into_bytes();
    name.truncate(MEMFD_NAME_MAX);
    name.retain(|&b| b != 0);
    let name = std::ffi::CString::new(name).expect("no NUL left");
    let file = File::from(nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?);
    file.set_len(size)?;
    Ok(file)
}

/// A backing file as sysfs shows it, with a memory file made by [`memory_file`] shown
/// as the path it stands for.
fn backing_path(shown: &str) -> PathBuf {
    let memfd = shown.strip_prefix("/memfd:").and_then(|n| n.strip_prefix(MEMFD_PREFIX));
    PathBuf::from(memfd.map_or(shown, |n| n.strip_suffix(" (deleted)").unwrap_or(n)))
}

/// Loop devices attached right now, with their backing files (from sysfs; a memory file
/// made by [`memory_file`] as the path it stands for).
pub fn attached_loop_devices() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            out.push((PathBuf::from("/dev").join(&name), backing_path(b.trim_end())));
        }
    }
    out
}
