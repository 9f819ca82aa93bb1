//! Integration tests of the trace format: round trips, dedup, and every kind of bad input
//! giving an error that names the file and offset (issue 2).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use brink_trace::{Event, TraceError, TraceMeta, TraceReader, TraceWriter, WriteFlags, image};

mod fuzz;
mod mutate;
mod trust;

const IMAGE: u64 = 1 << 20;

fn meta() -> TraceMeta {
    TraceMeta::new("test", "unknown", IMAGE)
}

/// A small trace: two writes sharing content, a flush, a discard, a mark.
fn sample(dir: &Path) -> PathBuf {
    let out = dir.join("t");
    let mut w = TraceWriter::create(&out).unwrap();
    File::create(w.base_image_path()).unwrap().set_len(IMAGE).unwrap();
    let block = vec![0xabu8; 8192];
    w.write(0, &block, WriteFlags::default()).unwrap();
    w.flush().unwrap();
    w.write(65536, &block, WriteFlags(WriteFlags::FUA)).unwrap();
    w.write(4096, &[7u8; 512], WriteFlags::default()).unwrap();
    w.discard(4096, 4096).unwrap();
    w.mark("txn 1 committed").unwrap();
    let stats = w.stats();
    assert_eq!(stats.bytes_written, 8192 * 2 + 512);
    assert_eq!(stats.bytes_stored, 4096 + 512, "identical chunks are stored once");
    w.finish(meta()).unwrap()
}

fn collect(r: &TraceReader) -> Result<Vec<Event>, TraceError> {
    r.events()?.map(|e| e.map(|p| p.event)).collect()
}

#[test]
fn round_trip_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let r = TraceReader::open(&t).unwrap();
    let evs = collect(&r).unwrap();
    let kinds: Vec<_> = evs.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["write", "flush", "write", "write", "discard", "mark"]);
    assert_eq!(evs[5], Event::Mark { text: "txn 1 committed".into() });
    let Event::Write(w) = &evs[2] else { panic!() };
    assert!(w.flags.fua());
    let mut buf = Vec::new();
    r.read_payload(w, &mut buf).unwrap();
    assert_eq!(buf, vec![0xab; 8192]);

    let img_path = tmp.path().join("img");
    image::copy_sparse(&r.base_image_path(), &img_path).unwrap();
    let img = OpenOptions::new().read(true).write(true).open(&img_path).unwrap();
    assert_eq!(image::replay(&r, &img, &img_path, None).unwrap(), 6);
    let got = fs::read(&img_path).unwrap();
    let mut want = vec![0u8; IMAGE as usize];
    want[..8192].fill(0xab);
    want[65536..65536 + 8192].fill(0xab);
    want[4096..8192].fill(0); // the discard after the 512-byte write
    assert_eq!(got, want);
}

#[test]
fn output_that_exists_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let e = TraceWriter::create(&t).err().unwrap();
    assert!(e.to_string().contains("already exists"), "{e}");
}

#[test]
fn unfinished_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut w = TraceWriter::create(&tmp.path().join("t")).unwrap();
        w.flush().unwrap();
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn truncated_log_names_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let log = t.join("events.log");
    let len = fs::metadata(&log).unwrap().len();
    // Cut inside the last record: open() sees the short file.
    OpenOptions::new().write(true).open(&log).unwrap().set_len(len - 3).unwrap();
    let e = TraceReader::open(&t).err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, TraceError::Truncated { .. }), "{msg}");
    assert!(msg.contains("events.log") && msg.contains(&format!("offset {}", len - 3)), "{msg}");
}

#[test]
fn truncated_log_at_record_boundary_is_detected_while_streaming() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    // Claim one more event than there is, keeping the byte length consistent.
    let meta_path = t.join("meta.json");
    let mut m: TraceMeta = serde_json::from_slice(&fs::read(&meta_path).unwrap()).unwrap();
    m.events += 1;
    fs::write(&meta_path, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = TraceReader::open(&t).unwrap();
    let e = collect(&r).err().unwrap();
    assert!(matches!(e, TraceError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("event 6 (of 7)"), "{e}");
}

#[test]
fn flipped_byte_is_a_checksum_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let log = t.join("events.log");
    let f = OpenOptions::new().read(true).write(true).open(&log).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 50).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], 50).unwrap();
    let r = TraceReader::open(&t).unwrap();
    let e = collect(&r).err().unwrap();
    let msg = e.to_string();
    assert!(msg.contains("events.log") && msg.contains("offset 32") && msg.contains("checksum"), "{msg}");
}

#[test]
fn newer_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let f = OpenOptions::new().write(true).open(t.join("events.log")).unwrap();
    f.write_all_at(&99u32.to_le_bytes(), 8).unwrap();
    let e = TraceReader::open(&t).err().unwrap();
    assert!(matches!(e, TraceError::NewerVersion { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("upgrade brink"), "{e}");
}

#[test]
fn missing_payload_names_pack_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let pack = t.join("payloads.pack");
    // Keep the header and the first chunk only: the 512-byte chunk is gone.
    OpenOptions::new().write(true).open(&pack).unwrap().set_len(32 + 4096).unwrap();
    let r = TraceReader::open(&t).unwrap();
    let mut buf = Vec::new();
    let mut errs = Vec::new();
    for ev in r.events().unwrap() {
        if let Event::Write(w) = ev.unwrap().event {
            if let Err(e) = r.read_payload(&w, &mut buf) {
                errs.push(e.to_string());
            }
        }
    }
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("payloads.pack") && errs[0].contains("offset 4128") && errs[0].contains("missing payload"),
        "{errs:?}"
    );
}

#[test]
fn corrupt_payload_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let f = OpenOptions::new().write(true).open(t.join("payloads.pack")).unwrap();
    f.write_all_at(&[0], 40).unwrap();
    let r = TraceReader::open(&t).unwrap();
    let Event::Write(w) = r.events().unwrap().next().unwrap().unwrap().event else { panic!() };
    let e = r.read_payload(&w, &mut Vec::new()).err().unwrap();
    assert!(e.to_string().contains("does not match its hash"), "{e}");
}

#[test]
fn not_a_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let e = TraceReader::open(tmp.path()).err().unwrap();
    assert!(e.to_string().contains("not a brink trace"), "{e}");
    let junk = tmp.path().join("junk");
    fs::create_dir(&junk).unwrap();
    File::create(junk.join("meta.json")).unwrap().write_all(b"{nope").unwrap();
    let e = TraceReader::open(&junk).err().unwrap();
    assert!(e.to_string().contains("invalid metadata"), "{e}");
}

#[test]
fn sparse_copy_keeps_holes_and_content() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let f = File::create(&src).unwrap();
    f.set_len(64 << 20).unwrap();
    f.write_all_at(b"hello", 10 << 20).unwrap();
    let dst = tmp.path().join("dst");
    image::copy_sparse(&src, &dst).unwrap();
    assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
    use std::os::unix::fs::MetadataExt;
    assert!(fs::metadata(&dst).unwrap().blocks() * 512 < 1 << 20, "copy is sparse");
}

#[test]
fn summary_counts_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = sample(tmp.path());
    let s = brink_trace::TraceSummary::compute(&TraceReader::open(&t).unwrap()).unwrap();
    assert_eq!((s.events, s.writes, s.flushes, s.fua, s.discards, s.marks), (6, 3, 1, 1, 1, 1));
    // write | flush | write write discard  → two epochs
    assert_eq!(s.epochs, 2);
    assert_eq!(s.bytes_written, 8192 * 2 + 512);
    assert_eq!(s.bytes_stored, 4096 + 512);
}

#[test]
fn digest_follows_content_not_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let fa = File::create(&a).unwrap();
    fa.set_len(32 << 20).unwrap();
    fa.write_all_at(b"data", (5 << 20) + 100).unwrap();
    // b: the same bytes, but written out in full (explicit zeros, no holes).
    let mut full = vec![0u8; 32 << 20];
    full[(5 << 20) + 100..(5 << 20) + 104].copy_from_slice(b"data");
    fs::write(&b, &full).unwrap();
    assert_eq!(image::digest_file(&a).unwrap(), image::digest_file(&b).unwrap());
    // c: one byte elsewhere differs.
    full[7] = 1;
    fs::write(&c, &full).unwrap();
    assert_ne!(image::digest_file(&a).unwrap(), image::digest_file(&c).unwrap());
    // A different length is a different image even if all zeros.
    let z1 = tmp.path().join("z1");
    let z2 = tmp.path().join("z2");
    File::create(&z1).unwrap().set_len(4096).unwrap();
    File::create(&z2).unwrap().set_len(8192).unwrap();
    assert_ne!(image::digest_file(&z1).unwrap(), image::digest_file(&z2).unwrap());
}

/// `sample`'s trace again, with `final_digest` recorded as the final image's digest.
fn sample_with_final(dir: &Path, name: &str, final_digest: Option<String>) -> PathBuf {
    let t = sample(dir);
    let mut meta: TraceMeta = serde_json::from_slice(&fs::read(t.join("meta.json")).unwrap()).unwrap();
    meta.final_image_digest = final_digest;
    fs::write(t.join("meta.json"), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let named = dir.join(name);
    fs::rename(&t, &named).unwrap();
    named
}

#[test]
fn verify_replays_onto_the_base_and_compares_with_the_final_digest() {
    let tmp = tempfile::tempdir().unwrap();
    // The disk `sample` leaves: what round_trip_and_replay spells out byte by byte.
    let want_path = tmp.path().join("want");
    let mut want = vec![0u8; IMAGE as usize];
    want[..8192].fill(0xab);
    want[65536..65536 + 8192].fill(0xab);
    want[4096..8192].fill(0); // the discard after the 512-byte write
    fs::write(&want_path, &want).unwrap();
    let digest = image::digest_file(&want_path).unwrap();

    let good = sample_with_final(tmp.path(), "good", Some(digest.clone()));
    let r = brink_trace::verify(&good).unwrap();
    assert_eq!((r.events, r.digest.as_str(), r.compared), (6, digest.as_str(), true));

    let unknown = sample_with_final(tmp.path(), "unknown", None);
    let r = brink_trace::verify(&unknown).unwrap();
    assert_eq!((r.events, r.digest.as_str(), r.compared), (6, digest.as_str(), false));

    let wrong = sample_with_final(tmp.path(), "wrong", Some("0".repeat(64)));
    let e = brink_trace::verify(&wrong).unwrap_err();
    assert!(matches!(&e, brink_trace::VerifyError::Mismatch { events: 6, got, .. } if *got == digest), "{e}");
    assert!(e.to_string().starts_with("replaying 6 events gives digest "), "{e}");

    let e = brink_trace::verify(&tmp.path().join("none")).unwrap_err();
    assert!(matches!(e, brink_trace::VerifyError::Trace(TraceError::NotATrace { .. })), "{e}");
}
