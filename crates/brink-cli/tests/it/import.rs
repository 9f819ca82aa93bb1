//! `brink import dm-log-writes`: real QEMU blklogwrites logs, hand-made kernel-style logs
//! with marks and flags, and corrupt logs.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

use brink_testkit::LogBuilder;
use brink_trace::{Event, TraceReader, image};

use crate::{Scratch, brink, run, stderr};

/// Replay a trace onto a copy of its base image and return the image bytes.
fn replayed(trace: &Path, scratch: &Scratch) -> Vec<u8> {
    let r = TraceReader::open(trace).unwrap();
    let img = scratch.path("replayed.img");
    let _ = fs::remove_file(&img);
    image::copy_sparse(&r.base_image_path(), &img).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&img).unwrap();
    image::replay(&r, &f, &img, None).unwrap();
    fs::read(&img).unwrap()
}

fn import(s: &Scratch, log: &Path, base: &Path, out: &str) -> std::process::Output {
    run(brink().args(["import", "dm-log-writes"]).arg(log).arg("--base").arg(base).arg("-o").arg(s.path(out)))
}

#[test]
fn qemu_blklogwrites_log_replays_to_the_disk() {
    if Command::new("qemu-io").arg("--version").output().is_err() {
        panic!("qemu-io (Debian qemu-utils) is needed to make a real blklogwrites log; install qemu-utils");
    }
    let s = Scratch::new();
    let (disk, base, log) = (s.path("disk.raw"), s.path("base.raw"), s.path("log.bin"));
    let f = fs::File::create(&disk).unwrap();
    f.set_len(1 << 20).unwrap();
    fs::write(&disk, vec![0x5au8; 1 << 20]).unwrap();
    fs::copy(&disk, &base).unwrap();
    fs::File::create(&log).unwrap();
    let opts = format!(
        "driver=blklogwrites,file.driver=file,file.filename={},log.driver=file,log.filename={},log-sector-size=512",
        disk.display(),
        log.display()
    );
    let o = Command::new("qemu-io")
        .args(["-t", "writeback", "--image-opts", &opts])
        .args(["-c", "write -P 0xaa 0 4k", "-c", "flush", "-c", "write -P 0xbb 8k 12k", "-c", "write -z 64k 4k"])
        .args(["-c", "discard 128k 64k", "-c", "write -P 0xcc 4k 512", "-c", "flush"])
        .output()
        .unwrap();
    assert!(o.status.success(), "qemu-io: {}", String::from_utf8_lossy(&o.stderr));
    let o = import(&s, &log, &base, "t");
    assert!(o.status.success(), "{}", stderr(&o));
    let r = TraceReader::open(&s.path("t")).unwrap();
    let kinds: Vec<&str> = r.events().unwrap().map(|e| e.unwrap().event.kind()).collect();
    assert_eq!(kinds, ["write", "flush", "write", "write", "discard", "write", "flush"]);
    let got = replayed(&s.path("t"), &s);
    let want = fs::read(&disk).unwrap();
    // QEMU's discard on a raw file punches a hole (zeros), as the trace replays it.
    assert!(got == want, "replayed image differs from the disk QEMU wrote");
}

#[test]
fn kernel_log_with_marks_fua_and_metadata() {
    let s = Scratch::new();
    let base = s.path("base.img");
    fs::write(&base, vec![0u8; 64 * 4096]).unwrap();
    let log = s.path("log");
    LogBuilder::new(4096)
        .entry(0, 0, 8, b"mkfs", &[])
        .entry(2, 1, 0, b"", &[0x11; 4096])
        .entry(0, 0, 1, b"", &[])
        .entry(4, 2, 2 | 16, b"", &[0x22; 8192])
        .entry(3, 1, 1, b"", &[0x33; 4096]) // flush carrying data: the kernel fallback
        .entry(2, 1, 4, b"", &[]) // discard: no data follows
        .entry(0, 0, 8, b"txn 17 committed", &[])
        .build(&log);
    let o = import(&s, &log, &base, "t");
    assert!(o.status.success(), "{}", stderr(&o));
    let r = TraceReader::open(&s.path("t")).unwrap();
    let evs: Vec<Event> = r.events().unwrap().map(|e| e.unwrap().event).collect();
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["mark", "write", "flush", "write", "flush", "write", "discard", "mark"]);
    assert_eq!(evs[7], Event::Mark { text: "txn 17 committed".into() });
    let Event::Write(w) = &evs[3] else { panic!() };
    assert!(w.flags.fua() && w.flags.metadata() && w.offset == 4 * 4096 && w.len == 8192);
    let img = replayed(&s.path("t"), &s);
    assert!(img[2 * 4096..3 * 4096].iter().all(|&b| b == 0), "discarded block reads zero");
    assert!(img[3 * 4096..4 * 4096].iter().all(|&b| b == 0x33));
    assert!(img[4 * 4096..6 * 4096].iter().all(|&b| b == 0x22));
}

fn corrupt_case(name: &str, build: impl FnOnce(&PathBuf), needle: &str) {
    let s = Scratch::new();
    let base = s.path("base.img");
    fs::write(&base, vec![0u8; 16 * 512]).unwrap();
    let log = s.path("log");
    build(&log);
    let o = import(&s, &log, &base, "t");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{name}: {err}");
    assert!(err.starts_with("brink: ") && err.trim_end().lines().count() == 1, "{name}: {err}");
    assert!(err.contains(&log.display().to_string()) && err.contains(needle), "{name}: expected '{needle}' in {err}");
    assert!(!s.path("t").exists(), "{name}: no trace from a corrupt log");
    let leftovers: Vec<_> = fs::read_dir(s.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{name}: temporary trace left");
}

#[test]
fn corrupt_logs_give_one_line_errors() {
    corrupt_case("bad magic", |p| fs::write(p, vec![0u8; 512]).unwrap(), "offset 0: not a dm-log-writes log");
    corrupt_case("empty", |p| fs::write(p, b"").unwrap(), "offset 0: truncated");
    corrupt_case(
        "truncated data",
        |p| {
            LogBuilder::new(512).entry(1, 2, 0, b"", &[7; 1024]).build(p);
            let len = fs::metadata(p).unwrap().len();
            OpenOptions::new().write(true).open(p).unwrap().set_len(len - 100).unwrap();
        },
        "offset 1024: truncated: the data of entry 0",
    );
    corrupt_case(
        "malformed",
        |p| LogBuilder::new(512).entry(0, 0, 0, b"", &[]).build(p),
        "offset 512: entry 0: malformed",
    );
    corrupt_case(
        "outside the image",
        |p| LogBuilder::new(512).entry(100, 1, 0, b"", &[1; 512]).build(p),
        "outside the 8192-byte base image",
    );
    corrupt_case(
        "unpadded header",
        |p| {
            LogBuilder::new(512).entry(0, 0, 1, b"x", &[]).build(p);
        },
        "not zero-padded",
    );
}
