//! A deterministic mutation fuzzer over the trace files (issue 13): thousands of mutants
//! of `events.log`, `payloads.pack`, `meta.json`, `base.img` and `calls.log` of one small valid trace,
//! each opened and read in full (events, payloads, summary, base image digest, and a
//! replay for the ones that pass). Every mutant must give a result or an error within
//! `MUTANT_TIME_MAX`, never a panic. `events.log` and `calls.log` mutants include ones whose record
//! checksum is fixed up, so that the decoder sees the damage and not only the checksum.

use std::fs;
use std::path::{Path, PathBuf};

use brink_trace::{Failed, TraceMeta, TraceWriter, WriteFlags, check_base_image, verify};

use crate::mutate::{Outcome, Rng, Tally, iterations, mutate, scratch_dir};
use crate::trust::read_all;

/// Mutants of each file when `FUZZ_ITERS` is not set: enough to hit every check in a
/// few seconds of a debug build.
const ITERS_DEFAULT: usize = 1500;

const IMAGE: u64 = 256 << 10;

/// A small trace with every kind of event, and a base image with data in it.
fn seed_trace(dir: &Path) -> PathBuf {
    let out = dir.join("seed");
    let mut w = TraceWriter::create(&out).unwrap();
    let mut base = vec![0u8; IMAGE as usize];
    base[4096..8192].fill(0x42);
    fs::write(w.base_image_path(), base).unwrap();
    w.mark("start").unwrap();
    w.write(0, &[1u8; 4096], WriteFlags::default()).unwrap();
    w.write(8192, &[2u8; 10240], WriteFlags(WriteFlags::METADATA)).unwrap();
    w.flush().unwrap();
    w.write(4096, &[1u8; 4096], WriteFlags(WriteFlags::FUA)).unwrap();
    w.discard(16384, 4096).unwrap();
    w.write_zeroes(20480, 1024).unwrap();
    w.error(Failed::Write { offset: 24576, len: 512 }).unwrap();
    w.error(Failed::Flush).unwrap();
    w.mark("txn 1 committed").unwrap();
    w.write(65536, &[3u8; 512], WriteFlags::default()).unwrap();
    w.flush().unwrap();
    w.calls(seed_calls()).unwrap();
    w.finish(TraceMeta::new("fuzz", "unknown", IMAGE)).unwrap()
}

/// Real system calls: strace's output of `brink-calls`' fixture program, parsed.
pub fn seed_calls() -> Vec<brink_calls::Call> {
    let text = include_bytes!("../../../brink-calls/tests/fixtures/basic.strace");
    let calls = brink_calls::parse_bytes(text).unwrap().calls;
    assert!(calls.iter().any(|c| matches!(&c.kind, brink_calls::CallKind::Write { data, .. } if !data.is_empty())));
    calls
}

/// Open and read the trace in full, then verify it if it reads: a mutant is rejected if
/// any step says so.
fn check(dir: &Path) -> Outcome {
    if read_all(dir).is_err() || check_base_image(dir).is_err() || verify(dir).is_err() {
        return Outcome::Rejected;
    }
    Outcome::Accepted
}

/// The records of `log` as (offset, length) of their bodies.
fn records(log: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 32;
    while at + 8 <= log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        out.push((at + 8, len));
        at += 8 + len;
    }
    out
}

/// Mutate the body of one record of `log` and fix its length and checksum, so that the
/// decoder and the validation see the damage. Returns what it did.
fn mutate_record(rng: &mut Rng, log: &mut Vec<u8>) -> String {
    let recs = records(log);
    let i = rng.below(recs.len());
    let (start, len) = recs[i];
    let mut body = log[start..start + len].to_vec();
    let what = mutate(rng, &mut body);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend(crc32fast::hash(&body).to_le_bytes());
    frame.extend(&body);
    log.splice(start - 8..start + len, frame);
    format!("record {i}, checksum fixed: {what}")
}

/// Mutate one field of `meta.json` as JSON (a number, a string, a type change).
fn mutate_meta_field(rng: &mut Rng, json: &[u8]) -> (Vec<u8>, String) {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let obj = v.as_object_mut().unwrap();
    let keys: Vec<String> = obj.keys().cloned().collect();
    let key = &keys[rng.below(keys.len())];
    let new = match rng.below(6) {
        0 => serde_json::json!(u64::MAX),
        1 => serde_json::json!(rng.next() % (1 << 24)),
        2 => serde_json::json!(-1),
        3 => serde_json::json!("x".repeat(rng.below(100_000))),
        4 => serde_json::Value::Null,
        _ => serde_json::json!({"nested": [1, 2, 3]}),
    };
    let what = format!("meta.json field {key} = {}", new.to_string().chars().take(40).collect::<String>());
    obj.insert(key.clone(), new);
    (serde_json::to_vec_pretty(&v).unwrap(), what)
}

/// A mutant of the file `name`; for `events.log` also the matching `meta.json` (whose
/// log length follows a checksum-fixed record, else the mutant dies at open).
fn mutant(rng: &mut Rng, name: &str, original: &[u8], meta: &[u8]) -> (Vec<u8>, Option<Vec<u8>>, String) {
    let mut bytes = original.to_vec();
    match name {
        "events.log" | "calls.log" if rng.below(2) == 0 => {
            let what = mutate_record(rng, &mut bytes);
            let mut m: TraceMeta = serde_json::from_slice(meta).unwrap();
            match name {
                "events.log" => m.events_log_bytes = bytes.len() as u64,
                _ => m.calls.as_mut().unwrap().log_bytes = bytes.len() as u64,
            }
            (bytes, Some(serde_json::to_vec_pretty(&m).unwrap()), what)
        }
        "meta.json" if rng.below(2) == 0 => {
            let (bytes, what) = mutate_meta_field(rng, original);
            (bytes, None, what)
        }
        _ => {
            let what = mutate(rng, &mut bytes);
            (bytes, None, what)
        }
    }
}

#[test]
fn fuzz_trace_files_never_panic_or_hang() {
    let tmp = scratch_dir();
    let seed = seed_trace(tmp.path());
    assert!(matches!(check(&seed), Outcome::Accepted), "the seed trace reads and verifies");
    let names = ["events.log", "payloads.pack", "meta.json", "base.img", "calls.log"];
    let originals: Vec<Vec<u8>> = names.iter().map(|n| fs::read(seed.join(n)).unwrap()).collect();
    let meta = &originals[2];
    let mut rng = Rng::from_env();
    let mut tally = Tally::new("trace fuzz");
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for iter in 0..iterations(ITERS_DEFAULT) * names.len() {
        let which = iter % names.len();
        let (bytes, new_meta, what) = mutant(&mut rng, names[which], &originals[which], meta);
        for (n, original) in names.iter().zip(&originals) {
            fs::write(work.join(n), original).unwrap();
        }
        fs::write(work.join(names[which]), bytes).unwrap();
        if let Some(m) = new_meta {
            fs::write(work.join("meta.json"), m).unwrap();
        }
        let dir = work.clone();
        tally.run(&format!("mutant {iter} of {}: {what}", names[which]), move || check(&dir));
    }
    tally.finish();
}
