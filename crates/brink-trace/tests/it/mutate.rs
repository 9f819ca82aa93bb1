//! The machinery of the mutation fuzzers (issue 13), shared by the trace reader's and the
//! dm-log-writes importer's (which includes this file by path): a seeded PRNG, byte-level
//! mutations, and a harness that runs each mutant on its own thread so that a panic is
//! caught and counted and a hang fails the test instead of stalling it.
//!
//! Deterministic: the same seed gives the same mutants, so a failure names a mutant that
//! can be run again. `FUZZ_ITERS` sets the number of mutants per target (for a longer
//! run), `FUZZ_SEED` the seed.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest one mutant may take (open and read a small trace, or import a small log) in a
/// debug build on a busy machine before the fuzzer calls it a hang.
pub const MUTANT_TIME_MAX: Duration = Duration::from_secs(10);

/// Seed when `FUZZ_SEED` is not set.
const SEED_DEFAULT: u64 = 0x0062_7269_6e6b_3133; // "brink13"

/// SplitMix64: small, fast, and good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        Rng(std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED_DEFAULT))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutants per target: `FUZZ_ITERS`, or `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A scratch directory, on tmpfs where there is one: a trace that reads is verified and
/// an import writes a trace, each with several fsyncs, which on a disk cost more than all
/// the rest of the run.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap()
}

/// Values that break length fields: zero, one, the edges of the integer types, sizes
/// no allocator grants.
const INTERESTING: [u64; 10] =
    [0, 1, 0x7f, 0xff, 0x7fff_ffff, 0xffff_ffff, 1 << 32, 1 << 40, 0x7fff_ffff_ffff_ffff, u64::MAX];

/// Apply one random mutation to `bytes`; returns what it did, to name the mutant.
pub fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    if bytes.is_empty() {
        let n = 1 + rng.below(64);
        bytes.extend((0..n).map(|_| rng.next() as u8));
        return format!("filled with {n} random bytes");
    }
    let at = rng.below(bytes.len());
    match rng.below(7) {
        0 => {
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            format!("flipped bit {bit} of byte {at}")
        }
        1 => {
            let n = (1 + rng.below(8)).min(bytes.len() - at);
            for b in &mut bytes[at..at + n] {
                *b = rng.next() as u8;
            }
            format!("overwrote {n} bytes at {at}")
        }
        2 => {
            let v = if rng.below(4) == 0 { rng.next() } else { INTERESTING[rng.below(INTERESTING.len())] };
            let width = if rng.below(2) == 0 { 4 } else { 8 };
            let le = v.to_le_bytes();
            let n = width.min(bytes.len() - at);
            bytes[at..at + n].copy_from_slice(&le[..n]);
            format!("wrote {v:#x} as {width} bytes at {at}")
        }
        3 => {
            bytes.truncate(at);
            format!("truncated to {at} bytes")
        }
        4 => {
            let n = 1 + rng.below(64);
            let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, ins);
            format!("inserted {n} bytes at {at}")
        }
        5 => {
            let n = (1 + rng.below(64)).min(bytes.len() - at);
            bytes.drain(at..at + n);
            format!("deleted {n} bytes at {at}")
        }
        _ => {
            let n = (1 + rng.below(64)).min(bytes.len() - at);
            let piece = bytes[at..at + n].to_vec();
            let to = rng.below(bytes.len() + 1);
            bytes.splice(to..to, piece);
            format!("copied {n} bytes from {at} to {to}")
        }
    }
}

/// What running one mutant gave.
pub enum Outcome {
    Accepted,
    Rejected,
}

/// Counts of a fuzz run, and the mutants that panicked.
pub struct Tally {
    name: &'static str,
    mutants: usize,
    rejected: usize,
    panics: Vec<String>,
    slowest: Duration,
}

impl Tally {
    pub fn new(name: &'static str) -> Tally {
        Tally { name, mutants: 0, rejected: 0, panics: Vec::new(), slowest: Duration::ZERO }
    }

    /// Run `check` on its own thread; a panic is counted against `mutant`, a run longer
    /// than [`MUTANT_TIME_MAX`] fails the test at once.
    pub fn run(&mut self, mutant: &str, check: impl FnOnce() -> Outcome + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(check)));
        });
        let result = rx.recv_timeout(MUTANT_TIME_MAX);
        self.slowest = self.slowest.max(start.elapsed());
        self.mutants += 1;
        match result {
            Ok(Ok(Outcome::Accepted)) => {}
            Ok(Ok(Outcome::Rejected)) => self.rejected += 1,
            Ok(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_default();
                self.panics.push(format!("{mutant}: {msg}"));
            }
            Err(_) => panic!("{}: mutant hangs (over {MUTANT_TIME_MAX:?}): {mutant}", self.name),
        }
    }

    /// Print the counts and fail on any panic.
    pub fn finish(self) {
        println!(
            "{}: {} mutants, {} rejected, {} accepted, {} panics; slowest {:?}",
            self.name,
            self.mutants,
            self.rejected,
            self.mutants - self.rejected - self.panics.len(),
            self.panics.len(),
            self.slowest
        );
        assert!(
            self.panics.is_empty(),
            "{}: {} panics, first: {:?}",
            self.name,
            self.panics.len(),
            &self.panics[..self.panics.len().min(5)]
        );
    }
}
