//! Hostile traces (issue 13): lengths that claim gigabytes behind a valid checksum,
//! files that are FIFOs or devices, a base image that is not the recorded one, events the
//! explorer cannot cut, and bytes after the last event. Each must be a clear error,
//! quickly: never a panic, an allocation abort or a hang.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use brink_trace::{Event, TraceError, TraceMeta, TraceReader, TraceSummary, TraceWriter, Write, WriteFlags};

use crate::sample;

/// How long one hostile open may take before the test calls it a hang.
const HANG_LIMIT: Duration = Duration::from_secs(10);

fn meta_of(t: &Path) -> TraceMeta {
    serde_json::from_slice(&fs::read(t.join("meta.json")).unwrap()).unwrap()
}

fn set_meta(t: &Path, m: &TraceMeta) {
    fs::write(t.join("meta.json"), serde_json::to_vec_pretty(m).unwrap()).unwrap();
}

/// Append one record with `body` (and its valid checksum) to the trace's log, and count
/// it in `meta.json`, so that only the body itself is wrong.
fn append_record(t: &Path, body: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(t.join("events.log")).unwrap();
    f.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
    f.write_all(&crc32fast::hash(body).to_le_bytes()).unwrap();
    f.write_all(body).unwrap();
    let mut m = meta_of(t);
    m.events += 1;
    m.events_log_bytes += 8 + body.len() as u64;
    set_meta(t, &m);
}

fn encode(ev: &Event) -> Vec<u8> {
    let config = bincode::config::standard().with_little_endian().with_fixed_int_encoding();
    bincode::serde::encode_to_vec(ev, config).unwrap()
}

/// A new directory `name` under `parent`, for one of several traces in a test.
fn subdir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).unwrap();
    dir
}

/// Open the trace and read all of it (events, payloads, summary): the first error.
pub fn read_all(t: &Path) -> Result<(), TraceError> {
    let r = TraceReader::open(t)?;
    let mut buf = Vec::new();
    for ev in r.events()? {
        if let Event::Write(w) = ev?.event {
            r.read_payload(&w, &mut buf)?;
        }
    }
    TraceSummary::compute(&r)?;
    if let Some(calls) = r.calls()? {
        for c in calls {
            c?;
        }
    }
    Ok(())
}

/// [`read_all`] on another thread, failing the test if it does not finish in time.
fn read_all_bounded(t: &Path) -> Result<(), TraceError> {
    let (tx, rx) = mpsc::channel();
    let dir = t.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(|| read_all(&dir)));
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("reading {} hangs", t.display()),
    }
}

#[test]
fn huge_lengths_inside_records_are_errors_not_allocations() {
    let tmp = tempfile::tempdir().unwrap();
    let mark = |len: u64| {
        let mut b = 4u32.to_le_bytes().to_vec(); // Event::Mark
        b.extend(len.to_le_bytes());
        b.extend(b"abc");
        b
    };
    let mut chunks = 0u32.to_le_bytes().to_vec(); // Event::Write: offset, len, flags, chunk count
    chunks.extend(0u64.to_le_bytes());
    chunks.extend(4096u64.to_le_bytes());
    chunks.extend(0u32.to_le_bytes());
    chunks.extend(u64::MAX.to_le_bytes());
    let cases = [mark(u64::MAX), mark(1 << 62), mark(1 << 40), mark(u64::from(u32::MAX) + 1), chunks];
    for (i, body) in cases.iter().enumerate() {
        let t = sample(&subdir(tmp.path(), &i.to_string()));
        append_record(&t, body);
        let e = read_all_bounded(&t).unwrap_err();
        assert!(matches!(e, TraceError::Undecodable { index: 6, .. }), "case {i}: {e}");
        assert!(e.to_string().contains("event 6 does not decode"), "case {i}: {e}");
    }
}

#[test]
fn mark_longer_than_the_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    append_record(&t, &encode(&Event::Mark { text: "m".repeat(brink_trace::MARK_BYTES_MAX + 1) }));
    let e = read_all_bounded(&t).unwrap_err();
    assert!(e.to_string().ends_with("event 6: mark of 4097 bytes is longer than the limit of 4096"), "{e}");
}

#[test]
fn oversized_meta_json_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let mut json = vec![b' '; brink_trace::META_BYTES_MAX as usize];
    json.extend(serde_json::to_vec(&meta_of(&t)).unwrap());
    fs::write(t.join("meta.json"), json).unwrap();
    let e = read_all_bounded(&t).unwrap_err();
    assert!(matches!(e, TraceError::TooLarge { .. }), "{e}");
    assert!(e.to_string().ends_with("meta.json: larger than the limit of 16777216 bytes"), "{e}");
}

#[test]
fn fifo_or_device_as_a_trace_file_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["events.log", "payloads.pack", "meta.json", "base.img"] {
        let t = sample(&subdir(tmp.path(), name));
        fs::remove_file(t.join(name)).unwrap();
        nix::unistd::mkfifo(&t.join(name), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_all_bounded(&t).unwrap_err();
        assert!(matches!(e, TraceError::NotRegularFile { kind: "FIFO", .. }), "{name}: {e}");
        assert!(e.to_string().ends_with(&format!("{name}: not a regular file but a FIFO")), "{e}");
    }
    for name in ["meta.json", "events.log"] {
        let t = sample(&subdir(tmp.path(), &format!("zero-{name}")));
        fs::remove_file(t.join(name)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", t.join(name)).unwrap();
        let e = read_all_bounded(&t).unwrap_err();
        assert!(e.to_string().ends_with("not a regular file but a character device"), "{name}: {e}");
    }
    let t = sample(&subdir(tmp.path(), "dir"));
    fs::remove_file(t.join("base.img")).unwrap();
    fs::create_dir(t.join("base.img")).unwrap();
    let e = read_all_bounded(&t).unwrap_err();
    assert!(e.to_string().ends_with("base.img: not a regular file but a directory"), "{e}");
}

#[test]
fn base_image_is_checked_against_its_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    brink_trace::check_base_image(&t).unwrap();
    brink_trace::verify(&t).unwrap();
    // A flipped bit in a block the workload later rewrites: replay alone cannot see it.
    OpenOptions::new().write(true).open(t.join("base.img")).unwrap().write_all_at(&[1], 100).unwrap();
    let e = brink_trace::check_base_image(&t).unwrap_err();
    assert!(matches!(e, TraceError::BaseImageDigest { .. }), "{e}");
    assert!(e.to_string().contains("base.img: the base image's digest is "), "{e}");
    let e = brink_trace::verify(&t).unwrap_err();
    assert!(matches!(e, brink_trace::VerifyError::Trace(TraceError::BaseImageDigest { .. })), "{e}");
    // A trace whose meta.json lost the digest is not taken on trust either.
    let mut m = meta_of(&t);
    m.base_image_digest.clear();
    set_meta(&t, &m);
    let e = brink_trace::check_base_image(&t).unwrap_err();
    assert!(e.to_string().ends_with("meta.json: no base image digest recorded"), "{e}");
}

#[test]
fn events_that_are_not_whole_sectors_are_refused_by_the_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let w = |offset: u64, len: u64| {
        let chunks = vec![brink_trace::ChunkRef { hash: [0; 32], pack_offset: 32 }; len.div_ceil(4096) as usize];
        Event::Write(Write { offset, len, flags: WriteFlags::default(), chunks })
    };
    let cases = [
        (w(100, 512), "write of 512 bytes at byte 100 is not whole 512-byte sectors"),
        (w(512, 100), "write of 100 bytes at byte 512 is not whole 512-byte sectors"),
        (Event::Discard { offset: 512, len: 0 }, "discard of 0 bytes at byte 512 is not whole 512-byte sectors"),
        (Event::WriteZeroes { offset: 1, len: 512 }, "write-zeroes of 512 bytes at byte 1 is not whole"),
        (Event::Discard { offset: 0, len: 1 << 41 }, "discard of 2199023255552 bytes is more than 4294967295 sectors"),
    ];
    for (i, (ev, want)) in cases.iter().enumerate() {
        let t = sample(&subdir(tmp.path(), &i.to_string()));
        append_record(&t, &encode(ev));
        let e = read_all_bounded(&t).unwrap_err();
        assert!(matches!(e, TraceError::BadEvent { index: 6, .. }), "case {i}: {e}");
        assert!(e.to_string().contains(want), "case {i}: {e}");
    }
}

#[test]
fn trailing_bytes_after_the_last_event_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let end = meta_of(&t).events_log_bytes;
    append_record(&t, &encode(&Event::Flush));
    let mut m = meta_of(&t);
    m.events -= 1; // the flush is there, but meta.json does not count it
    set_meta(&t, &m);
    let e = read_all_bounded(&t).unwrap_err();
    assert!(matches!(e, TraceError::TrailingBytes { bytes: 12, .. }), "{e}");
    assert!(e.to_string().ends_with(&format!("events.log: 12 trailing bytes after the last event at offset {end}")));
}

#[test]
fn record_length_past_the_end_of_the_log_is_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let mut f = OpenOptions::new().append(true).open(t.join("events.log")).unwrap();
    f.write_all(&brink_trace::EVENT_BYTES_MAX.to_le_bytes()).unwrap();
    f.write_all(&[0; 4]).unwrap();
    let mut m = meta_of(&t);
    m.events += 1;
    m.events_log_bytes += 8;
    set_meta(&t, &m);
    let e = read_all_bounded(&t).unwrap_err();
    assert!(matches!(e, TraceError::Truncated { .. }), "{e}");
    assert!(
        e.to_string().ends_with(&format!("offset {}: truncated: record body of event 6 (of 7)", m.events_log_bytes))
    );
}

#[test]
fn meta_json_error_quotes_a_bounded_part_of_a_huge_value() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(t.join("meta.json")).unwrap()).unwrap();
    v["image_size"] = serde_json::json!("x".repeat(1 << 20));
    fs::write(t.join("meta.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let e = read_all_bounded(&t).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("invalid metadata: invalid type: string \"xxx") && msg.ends_with('…'), "{msg}");
    assert!(msg.len() < 1000, "{} bytes of error message", msg.len());
}

/// The workload's system calls come back from `calls.log` as they were written, write
/// data included (stored in the pack, each distinct chunk once), and `verify` reads them;
/// a trace without calls says so (None), as traces of older versions do.
#[test]
fn calls_round_trip_with_their_data_and_are_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let calls = crate::fuzz::seed_calls();
    for with_calls in [true, false] {
        let out = tmp.path().join(format!("t-{with_calls}"));
        let mut w = TraceWriter::create(&out).unwrap();
        std::fs::write(w.base_image_path(), vec![0u8; 65536]).unwrap();
        w.write(0, &[7u8; 4096], WriteFlags::default()).unwrap();
        if with_calls {
            // Twice the same calls: their data is stored once.
            w.calls(calls.iter().cloned().chain(calls.iter().cloned())).unwrap();
        }
        let mut meta = TraceMeta::new("test", "unknown", 65536);
        meta.final_image_digest = None;
        let t = w.finish(meta).unwrap();
        let r = TraceReader::open(&t).unwrap();
        let back: Option<Vec<brink_calls::Call>> = r.calls().unwrap().map(|it| it.map(Result::unwrap).collect());
        let report = brink_trace::verify(&t).unwrap();
        if with_calls {
            let back = back.unwrap();
            assert_eq!(back.len(), calls.len() * 2);
            assert_eq!(&back[..calls.len()], &calls[..]);
            assert_eq!(report.calls, Some(calls.len() as u64 * 2));
        } else {
            assert!(back.is_none());
            assert!(r.meta().calls.is_none());
            assert_eq!(report.calls, None);
        }
    }
}

/// A trace with calls written by this version and committed: every later brink must
/// read its calls back as they were (a `CallKind` variant added in the middle of the
/// enum, not at its end, would renumber the others and break it). `BRINK_BLESS=1`
/// rewrites the fixture, for a deliberate format change (which must bump the version).
#[test]
fn old_traces_with_calls_still_read() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/with-calls");
    let calls = crate::fuzz::seed_calls();
    if std::env::var_os("BRINK_BLESS").is_some_and(|v| v == "1") {
        let _ = fs::remove_dir_all(&fixture);
        let mut w = TraceWriter::create(&fixture).unwrap();
        fs::write(w.base_image_path(), vec![0u8; 8192]).unwrap();
        w.write(0, &[7u8; 4096], WriteFlags::default()).unwrap();
        w.calls(calls.iter().cloned()).unwrap();
        w.finish(TraceMeta::new("fixture", "unknown", 8192)).unwrap();
    }
    let r = TraceReader::open(&fixture).unwrap();
    let back: Vec<brink_calls::Call> = r.calls().unwrap().unwrap().map(Result::unwrap).collect();
    assert_eq!(back, calls);
}
