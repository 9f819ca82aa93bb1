//! A deterministic mutation fuzzer over real strace output: thousands of mutants of the
//! committed fixtures (bytes flipped, inserted and deleted, lines duplicated, swapped and
//! cut, strace's own markers planted), each parsed in full on a thread with a time limit.
//! Every mutant must give calls or an error, never a panic or a hang. `FUZZ_ITERS` and
//! `FUZZ_SEED` make a longer or another run.

use std::sync::mpsc;
use std::time::Duration;

use brink_calls::{Call, CallReader};

/// Mutants per fixture when `FUZZ_ITERS` is not set.
const ITERS_DEFAULT: usize = 1500;

/// Longest a mutant may take to parse.
const MUTANT_TIME_MAX: Duration = Duration::from_secs(20);

const SEED_DEFAULT: u64 = 0x6272_696e_6b63_616c;

/// Lines of the fixture each mutant is cut from: small windows keep thousands fast.
const WINDOW_LINES_MAX: usize = 120;

/// Text strace prints in its own syntax, planted to reach the parser's corners.
const MARKERS: &[&str] = &[
    " <unfinished ...>",
    "<... openat resumed>",
    "<... write resumed>) = 1",
    "+++ exited with 1 +++",
    "+++ killed by SIGKILL (core dumped) +++",
    "+++ superseded by execve in pid 1 +++",
    "--- SIGCHLD {si_signo=SIGCHLD} ---",
    " > /x(y+0x1) [0x2]",
    " > ",
    "\\x",
    "\\",
    "\"",
    "<",
    ">",
    "(",
    ")",
    "[",
    "{",
    "/*",
    ") = ",
    " = ? ",
    "...",
    "\u{fffd}",
    "\n",
    "99999999999999999999999",
];

/// SplitMix64: the same mutants on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn iterations() -> usize {
    std::env::var("FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(ITERS_DEFAULT)
}

/// A window of whole lines of `text`.
fn window(rng: &mut Rng, lines: &[&[u8]]) -> Vec<Vec<u8>> {
    let start = rng.below(lines.len());
    let len = 1 + rng.below(WINDOW_LINES_MAX);
    lines[start..(start + len).min(lines.len())].iter().map(|l| l.to_vec()).collect()
}

/// One mutation of `lines`, and what it was.
fn mutate(rng: &mut Rng, lines: &mut Vec<Vec<u8>>) -> String {
    let i = rng.below(lines.len());
    let line = &mut lines[i];
    let at = rng.below(line.len() + 1);
    match rng.below(7) {
        0 if !line.is_empty() => {
            let at = at.min(line.len() - 1);
            line[at] ^= 1 << rng.below(8);
            format!("flip a bit of line {i} at {at}")
        }
        1 => {
            let marker = MARKERS[rng.below(MARKERS.len())];
            line.splice(at..at, marker.bytes());
            format!("insert {marker:?} in line {i} at {at}")
        }
        2 => {
            let end = (at + 1 + rng.below(40)).min(line.len());
            line.drain(at.min(end)..end);
            format!("delete bytes {at}..{end} of line {i}")
        }
        3 => {
            let copy = line.clone();
            lines.insert(rng.below(lines.len() + 1), copy);
            format!("duplicate line {i}")
        }
        4 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
            format!("swap lines {i} and {j}")
        }
        5 => {
            line.truncate(at);
            format!("cut line {i} at {at}")
        }
        _ => {
            let byte = (rng.next() & 0xff) as u8;
            line.insert(at, byte);
            format!("insert byte {byte:#x} in line {i} at {at}")
        }
    }
}

/// Parses `text` to the end on a thread: the number of calls and whether it ended in an error.
fn parse_with_limit(text: Vec<u8>, what: &str) -> (usize, bool) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut calls = 0;
        let mut failed = false;
        for item in CallReader::new(&text[..]) {
            match item {
                Ok(call) => {
                    check_call(&call);
                    calls += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    failed = true;
                }
            }
        }
        let _ = tx.send((calls, failed));
    });
    match rx.recv_timeout(MUTANT_TIME_MAX) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {MUTANT_TIME_MAX:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the parser panicked"),
    }
}

/// What every call the parser gives must satisfy, whatever its input.
fn check_call(call: &Call) {
    assert!(call.stack.len() <= brink_calls::STACK_FRAMES_MAX);
    assert!(call.name.len() <= brink_calls::CALL_NAME_BYTES_MAX);
    let _ = call.user_frame();
    let _ = call.untraceable().map(|u| u.what());
}

#[test]
fn fuzz_strace_output_never_panics_or_hangs() {
    let mut rng = Rng(std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED_DEFAULT));
    let (mut calls, mut errors) = (0, 0);
    for name in ["basic.strace", "kinds.strace", "killed.strace"] {
        let original = std::fs::read(crate::fixture(name)).unwrap();
        let lines: Vec<&[u8]> = original.split(|&b| b == b'\n').collect();
        for iter in 0..iterations() {
            let mut mutant = window(&mut rng, &lines);
            let mut what = Vec::new();
            for _ in 0..1 + rng.below(4) {
                what.push(mutate(&mut rng, &mut mutant));
            }
            let text = mutant.join(&b'\n');
            let (n, failed) = parse_with_limit(text, &format!("{name} mutant {iter}: {}", what.join("; ")));
            calls += n;
            errors += usize::from(failed);
        }
    }
    eprintln!("strace output fuzz: {calls} calls parsed, {errors} mutants rejected");
    assert!(calls > 0 && errors > 0, "the mutants reach both the accepting and the rejecting paths");
}
