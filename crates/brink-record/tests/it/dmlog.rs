//! The dm-log-writes importer on logs a hostile or broken source could give: impossible
//! sector sizes, empty discards, FIFOs. Each is an error, never a panic or a hang.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use brink_record::import::{DmLogImport, import_dm_log_writes};
use brink_record::{Interrupt, RecordError};
pub use brink_testkit::LogBuilder;

/// How long one import of a small log may take before the test calls it a hang.
pub const HANG_LIMIT: Duration = Duration::from_secs(10);

/// Import `log` onto `base` into `dir/t`, on another thread, failing the test if it
/// does not finish in time.
pub fn import_bounded(dir: &Path, log: &Path, base: &Path) -> Result<PathBuf, RecordError> {
    let req = DmLogImport {
        log: log.into(),
        base: base.into(),
        output: dir.join("t"),
        fs: "unknown".into(),
        mount_opts: String::new(),
        interrupt: Interrupt::default(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(|| import_dm_log_writes(&req).map(|s| s.trace)));
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("importing {} hangs", log.display()),
    }
}

/// A scratch directory with a 16-sector zero base image.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.img");
    fs::write(&base, vec![0u8; 16 * 512]).unwrap();
    (tmp, base)
}

#[test]
fn log_sector_size_smaller_than_a_header_is_an_error() {
    for ss in [0u32, 1, 32, 100, 256, 511, 513, 16 << 20, u32::MAX] {
        let (tmp, base) = scratch();
        let log = tmp.path().join("log");
        let mut b = LogBuilder::new(512);
        b.entry(1, 1, 0, b"", &[7; 512]).entry(0, 0, 8, b"mark", &[]);
        fs::write(&log, b.bytes_with_sector_size(ss)).unwrap();
        let e = import_bounded(tmp.path(), &log, &base).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RecordError::BadInput { offset: 24, .. }), "ss {ss}: {msg}");
        assert!(msg.contains(&format!("impossible sector size {ss} (a power of two from 512 to 8388608)")), "{msg}");
        assert!(!tmp.path().join("t").exists());
    }
    // Tiny logs that still claim a small sector size: no index past their end either.
    for len in [28usize, 32, 40, 64] {
        let (tmp, base) = scratch();
        let log = tmp.path().join("log");
        let mut bytes = LogBuilder::new(32).entry(0, 0, 1, b"", &[]).bytes();
        bytes.truncate(len);
        fs::write(&log, bytes).unwrap();
        assert!(import_bounded(tmp.path(), &log, &base).is_err(), "{len}-byte log");
    }
}

#[test]
fn zero_sector_discard_is_refused_at_import() {
    let (tmp, base) = scratch();
    let log = tmp.path().join("log");
    fs::write(&log, LogBuilder::new(512).entry(2, 0, 4, b"", &[]).bytes()).unwrap();
    let e = import_bounded(tmp.path(), &log, &base).unwrap_err();
    assert!(e.to_string().ends_with("offset 512: entry 0: malformed: a discard of 0 sectors"), "{e}");
    // One of a sector is fine, and the trace reads back.
    fs::write(&log, LogBuilder::new(512).entry(2, 1, 4, b"", &[]).bytes()).unwrap();
    let t = import_bounded(tmp.path(), &log, &base).unwrap();
    let r = brink_trace::TraceReader::open(&t).unwrap();
    let evs: Vec<_> = r.events().unwrap().map(|e| e.unwrap().event).collect();
    assert_eq!(evs, [brink_trace::Event::Discard { offset: 1024, len: 512 }]);
}

#[test]
fn fifo_as_log_or_base_is_refused_without_blocking() {
    let (tmp, base) = scratch();
    let log = tmp.path().join("log");
    fs::write(&log, LogBuilder::new(512).entry(1, 1, 0, b"", &[7; 512]).bytes()).unwrap();
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = import_bounded(tmp.path(), &fifo, &base).unwrap_err();
    assert!(e.to_string().ends_with("fifo: not a regular file but a FIFO"), "{e}");
    let e = import_bounded(tmp.path(), &log, &fifo).unwrap_err();
    assert!(e.to_string().starts_with("cannot open base image "), "{e}");
    assert!(e.to_string().ends_with("fifo: not a regular file but a FIFO"), "{e}");
    let e = import_bounded(tmp.path(), &log, Path::new("/dev/zero")).unwrap_err();
    assert!(e.to_string().ends_with("/dev/zero: not a regular file but a character device"), "{e}");
    assert!(!tmp.path().join("t").exists());
}
