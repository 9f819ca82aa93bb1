//! Integration tests of the recorders: the dm-log-writes importer on hand-made and
//! damaged logs and a mutation fuzzer over such logs (no root needed), and the recorder
//! end to end (root).

mod dmlog;
mod fuzz;
/// The fuzzers' machinery, shared with the trace reader's fuzzer.
#[path = "../../../brink-trace/tests/it/mutate.rs"]
mod mutate;
mod record;
