//! The kernel's floor under an explorer: how many crash states a second the kernel
//! itself mounts (journal replay included) and unmounts, with nothing else done per
//! state. Each image is read into memory and put under a loop device of its own before
//! the clock starts; then JOBS threads take the images in turn: mount, unmount.
//! `bench/epochs.sh` runs it on the states brink checks, side by side with brink.
//!
//!   mount_floor FS MOUNT_OPTS JOBS IMAGE...   (as root; prints `STATES_PER_S STATES`)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use brink_blockdev::{LoopDevice, Mount, MountOptions, memory_file};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: mount_floor FS MOUNT_OPTS JOBS IMAGE...");
        std::process::exit(2);
    }
    let (fs, jobs) = (args[1].as_str(), args[3].parse::<usize>().expect("JOBS: a number"));
    let opts: MountOptions = args[2].parse().expect("MOUNT_OPTS");
    let work = tempfile_dir();
    let devs: Vec<(std::fs::File, LoopDevice)> = args[4..].iter().map(|i| in_memory(Path::new(i))).collect();
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..jobs {
            let (mnt, next, devs, opts) = (work.join(format!("mnt{t}")), &next, &devs, &opts);
            std::fs::create_dir(&mnt).expect("mount point");
            s.spawn(move || {
                while let Some((_, dev)) = devs.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let m = Mount::mount(dev.path(), &mnt, fs, opts).expect("mount");
                    m.unmount().expect("unmount");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    drop(devs);
    let _ = std::fs::remove_dir_all(&work);
    let mut out = std::io::stdout();
    writeln!(out, "{:.0} {}", (args.len() - 4) as f64 / secs, args.len() - 4).expect("stdout");
}

/// `image` read into a memory file (its zero blocks left as holes), under a loop device.
fn in_memory(image: &Path) -> (std::fs::File, LoopDevice) {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let mut input = std::fs::File::open(image).expect("image");
    let file = memory_file(image, input.metadata().expect("image size").len()).expect("memory file");
    let (mut buf, mut at) = (vec![0u8; 64 << 10], 0u64);
    loop {
        let n = input.read(&mut buf).expect("read the image");
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            file.write_all_at(&buf[..n], at).expect("write the memory file");
        }
        at += n as u64;
    }
    let dev = LoopDevice::attach(&file, image, false).expect("loop device");
    (file, dev)
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("brink-mount-floor-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("work directory");
    d
}
