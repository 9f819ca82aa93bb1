//! The calls crate's integration tests: committed strace output (`fixtures.rs`), a
//! mutation fuzzer over it (`fuzz.rs`), and a C program traced, parsed and symbolized end
//! to end (`program.rs`).

mod fixtures;
mod fuzz;
mod program;

use std::path::PathBuf;

/// A committed fixture's path.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}
