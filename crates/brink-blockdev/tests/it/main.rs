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

/// The write log sees a write to a watched device, where it landed, and nothing of a
/// read, of a device it does not watch, or after its drain; dropped, its tracefs
/// instance is gone.
#[test]
fn the_write_log_sees_the_writes_to_watched_devices() {
    use std::os::unix::fs::FileExt;

    use brink_blockdev::writelog::{DevWrite, WriteLog, kernel_dev};
    if !privileged("the_write_log_sees_the_writes_to_watched_devices") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let attach = |name: &str| {
        let path = dir.path().join(name);
        let f = File::options().read(true).write(true).create_new(true).open(&path).unwrap();
        f.set_len(4 << 20).unwrap();
        LoopDevice::attach(&f, &path, false).unwrap()
    };
    let (watched, other) = (attach("a.img"), attach("b.img"));
    let instance = WriteLog::planned_path();
    let mut log = WriteLog::open().unwrap();
    assert!(instance.is_dir(), "{instance:?}");
    let dev = kernel_dev(watched.path()).unwrap();
    log.watch(&[dev]).unwrap();
    let write_sync = |dev: &LoopDevice, at: u64| {
        let f = File::options().read(true).write(true).open(dev.path()).unwrap();
        f.write_all_at(&[7u8; 4096], at).unwrap();
        f.sync_all().unwrap();
        let mut buf = [0u8; 4096];
        f.read_exact_at(&mut buf, 1 << 20).unwrap();
    };
    write_sync(&watched, 8192);
    write_sync(&other, 16384);
    let d = log.drain().unwrap();
    assert!(!d.lost);
    assert!(d.writes.iter().all(|w| w.dev == dev), "{:?}", d.writes);
    assert!(d.writes.contains(&DevWrite { dev, offset: 8192, len: 4096 }), "{:?}", d.writes);
    assert!(log.drain().unwrap().writes.is_empty());
    drop(log);
    assert!(!instance.exists(), "{instance:?} removed");
}
