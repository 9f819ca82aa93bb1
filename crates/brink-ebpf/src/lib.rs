//! The workload's system calls, traced in the kernel: a small eBPF program
//! (`src/bpf/calls.bpf.c`) on the `sys_enter` and `sys_exit` raw tracepoints, limited
//! to the workload's cgroup, writes each traced call's arguments, the paths and
//! structures it reads, the bytes it wrote, its result, its user registers and a copy of
//! the top of its user stack into a ring buffer; a thread here writes the records to an
//! events file ([`Tracer`]), read back once the workload has ended ([`events`]).
//!
//! # Why eBPF, not ptrace
//!
//! A ptrace tracer stops the workload twice per traced call (entry and exit): on this
//! machine about 27 µs a call, measured with strace writing nothing
//! (`results/bench/record-overhead.md`), which alone is more than issue 14's budget on
//! SQLite. The kernel half costs no context switch; it copies what the user half needs
//! and goes on. The order of completion is exact: a global counter taken at each return.
//! The stacks are unwound in the tracer's thread as the records arrive (`stacks.rs`),
//! while each process's memory map can still be read.
//!
//! # Limits (each said where it applies, never silently)
//!
//! - x86_64 only (call numbers and the register layout); elsewhere brink records calls
//!   with strace.
//! - A write's bytes are copied up to [`events::DATA_BYTES_MAX`] (then marked truncated,
//!   as strace's `-s` does); a string up to 4096 bytes; `argv` up to 64 entries.
//! - User memory not resident when the call returns cannot be read from a tracepoint
//!   (no page faults there): those bytes are marked unreadable.
//! - Only the top [`events::STACK_BYTES`] of each stack are copied: deeper frames are
//!   not unwound (perf's `--call-graph dwarf` makes the same trade).
//! - A full ring buffer (64 MiB) drops records; the count is kept and reported.
//! - Needs root (or `CAP_BPF` and `CAP_PERFMON`), cgroup v2 and a kernel with BPF ring
//!   buffers and `bpf_loop` (5.17 or later).

#![allow(unsafe_code, reason = "the generated skeleton")]

mod assemble;
mod decode;
pub mod events;
mod fds;
mod images;
mod kinds;
mod stacks;
mod syscalls;
mod tracer;

pub use decode::{Decoded, decode};
pub use tracer::{EbpfError, Loading, Options, Stats, Tracer};
