//! Integration tests of the recorders that need no root: the dm-log-writes importer on
//! hand-made and damaged logs (issue 13), and a mutation fuzzer over such logs.

mod dmlog;
mod fuzz;
/// The fuzzers' machinery, shared with the trace reader's fuzzer.
#[path = "../../../brink-trace/tests/it/mutate.rs"]
mod mutate;
