//! A deterministic mutation fuzzer over dm-log-writes logs (issue 13): thousands of
//! mutants of one small valid log (random bytes, and header fields set to values that
//! break lengths) go through the importer. Each must import or be refused within
//! `MUTANT_TIME_MAX`, never panic; and every trace the importer makes from a mutant must
//! read and verify, so that import, show, verify and explore agree on what is valid.

use std::fs;
use std::path::Path;

use crate::dmlog::{LogBuilder, import_bounded};
use crate::mutate::{Outcome, Rng, Tally, iterations, mutate, scratch_dir};

/// Mutants when `FUZZ_ITERS` is not set.
const ITERS_DEFAULT: usize = 1500;

/// A log with every kind of entry, in the kernel's layout with sector size `ss`, onto a
/// 64-sector base; and the byte offsets of the fields a mutant may break: the
/// superblock's entry count and sector size, and the four fields of the first headers.
/// Sector sizes below 512 are refused now but panicked an older importer, so they are
/// seeds too.
fn seed_log(ss: usize) -> (Vec<u8>, Vec<usize>) {
    let data = |byte: u8, sectors: usize| vec![byte; sectors * ss];
    let log = LogBuilder::new(ss)
        .entry(0, 0, 8, b"mkfs done", &[])
        .entry(2, 1, 0, b"", &data(0x11, 1))
        .entry(0, 0, 1, b"", &[])
        .entry(4, 2, 2 | 16, b"", &data(0x22, 2))
        .entry(3, 1, 1, b"", &data(0x33, 1))
        .entry(2, 1, 4, b"", &[])
        .entry(0, 0, 8, b"txn 17 committed", &[])
        .entry(60, 4, 0, b"", &data(0x44, 4))
        .bytes();
    let mut fields = vec![16, 24];
    for header in [ss, 2 * ss, 4 * ss] {
        fields.extend([header, header + 8, header + 16, header + 24]);
    }
    (log, fields)
}

/// One mutant of `seed`: a random byte mutation or a field set to a breaking value.
fn mutant(rng: &mut Rng, seed: &[u8], fields: &[usize]) -> (Vec<u8>, String) {
    let mut bytes = seed.to_vec();
    if rng.below(3) == 0 {
        // The sector size decides every other offset: set it a quarter of the time.
        let at = if rng.below(4) == 0 { 24 } else { fields[rng.below(fields.len())] };
        let v = match rng.below(4) {
            0 => u64::MAX,
            1 => 1 << (rng.below(if at == 24 { 24 } else { 64 })),
            2 => rng.next() % 1024,
            _ => rng.next(),
        };
        let width = if at == 24 { 4 } else { 8 };
        bytes[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        return (bytes, format!("field at {at} = {v:#x}"));
    }
    let what = mutate(rng, &mut bytes);
    (bytes, what)
}

/// Import the log; a trace it makes must read and verify.
fn check(dir: &Path) -> Outcome {
    let out = dir.join("t");
    let _ = fs::remove_dir_all(&out);
    match import_bounded(dir, &dir.join("log"), &dir.join("base.img")) {
        Err(_) => Outcome::Rejected,
        Ok(trace) => {
            if let Err(e) = brink_trace::verify(&trace) {
                panic!("the importer made a trace that does not verify: {e}");
            }
            Outcome::Accepted
        }
    }
}

#[test]
fn fuzz_dm_log_writes_import_never_panics_or_hangs() {
    let tmp = scratch_dir();
    fs::write(tmp.path().join("base.img"), vec![0x5au8; 64 * 4096]).unwrap();
    let seeds: Vec<_> = [512, 4096, 32].into_iter().map(seed_log).collect();
    for (ss, (log, _)) in [512, 4096].iter().zip(&seeds) {
        fs::write(tmp.path().join("log"), log).unwrap();
        assert!(matches!(check(tmp.path()), Outcome::Accepted), "the seed log of sector size {ss} imports");
    }
    let mut rng = Rng::from_env();
    let mut tally = Tally::new("dm-log-writes fuzz");
    for iter in 0..iterations(ITERS_DEFAULT) {
        // Mostly the common sector size; a fifth each of the others.
        let which = [0, 0, 0, 1, 2][rng.below(5)];
        let (seed, fields) = &seeds[which];
        let (bytes, what) = mutant(&mut rng, seed, fields);
        fs::write(tmp.path().join("log"), bytes).unwrap();
        let dir = tmp.path().to_path_buf();
        tally.run(&format!("mutant {iter} of seed {which}: {what}"), move || check(&dir));
    }
    tally.finish();
}
