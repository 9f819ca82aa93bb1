//! Integration tests of the kernel block devices: a loop device attached, flushed and
//! detached through the ioctls brink declares itself (the only unsafe code in the crate).

use std::fs::File;

use brink_blockdev::{LoopDevice, attached_loop_devices};
use brink_testkit::{Need, can_run};

fn privileged(test: &str) -> bool {
    can_run(test, &[Need::Root, Need::Loop])
}

#[test]
fn a_loop_device_attaches_flushes_and_detaches() {
    if !privileged("a_loop_device_attaches_flushes_and_detaches") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing_path = dir.path().join("disk.img");
    let backing = File::options().read(true).write(true).create_new(true).open(&backing_path).unwrap();
    backing.set_len(4 << 20).unwrap();
    for read_only in [false, true] {
        let dev = LoopDevice::attach(&backing, &backing_path, read_only).unwrap();
        let path = dev.path().to_path_buf();
        assert!(path.to_string_lossy().starts_with("/dev/loop"), "{path:?}");
        assert!(
            attached_loop_devices().iter().any(|(d, b)| *d == path && *b == backing_path),
            "{path:?} is not listed with its backing file"
        );
        dev.drop_caches().unwrap();
        dev.detach().unwrap();
    }
}

/// `FsKind::alive_on`, the explorer's stale-slot probe: each file system is alive on
/// its loop device while mounted and gone after the unmount, as sysfs tells it (ext4 and
/// XFS by device name, btrfs under its fsid). A kind whose tools are missing is skipped
/// loudly.
#[test]
fn sysfs_says_whether_a_file_system_is_alive_on_a_device() {
    use brink_blockdev::{FsKind, Mount, MountOptions};
    if !privileged("sysfs_says_whether_a_file_system_is_alive_on_a_device") {
        return;
    }
    for fs in FsKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let backing = File::options().read(true).write(true).create_new(true).open(&img).unwrap();
        backing.set_len(fs.min_image_bytes().max(16 << 20)).unwrap();
        let made = std::process::Command::new(fs.mkfs_program()).args(fs.mkfs_args()).arg(&img).output();
        if !made.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED {fs}: {} is missing or failed: {made:?}", fs.mkfs_program());
            continue;
        }
        let dev = LoopDevice::attach(&backing, &img, false).unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let m = Mount::mount(dev.path(), &mnt, fs.name(), &"".parse::<MountOptions>().unwrap()).unwrap();
        assert_eq!(fs.alive_on(dev.path()), Some(true), "{fs} mounted");
        m.unmount().unwrap();
        assert_eq!(fs.alive_on(dev.path()), Some(false), "{fs} unmounted");
        dev.detach().unwrap();
    }
}
