//! The program's layer: which system call, from which source line, caused what brink
//! sees on the disk. A workload runs under `strace` ([`strace_command`]); its output is
//! read into typed [`Call`]s ([`CallReader`], [`parse_file`]) and their stack frames are
//! mapped to function and `file:line` through DWARF ([`Symbolizer`]); [`Call::user_frame`]
//! picks the first frame in the program's own code, as ALICE (OSDI'14) reports a call.
//!
//! # strace, and brink's kernel tracer
//!
//! strace (ptrace) gives, for every traced call and in one total order per trace: the
//! arguments decoded, descriptors resolved to paths (`-y`), the written bytes (`-xx -s`),
//! the result, and the user stack (`-k`, libunwind or libdw). Its price is a ptrace stop
//! per traced call (about 27 µs here) and, for a stack, an unwind through ptrace (about a
//! millisecond). `brink record` therefore records with `brink-ebpf` by default, which
//! traces in the kernel and decodes into this crate's [`Call`]s, the same form strace's
//! output parses to; strace stays for machines where that tracer cannot run
//! (`--tracer strace`). `--seccomp-bpf` keeps the calls strace does not trace (reads,
//! stats, futexes) free of stops.
//!
//! # What strace cannot see
//!
//! - Stores through a shared writable file mapping: after `mmap` they are plain memory
//!   writes; the call is marked [`Untraceable::SharedWritableMapping`]. A mapping made
//!   writable later by `mprotect` is not marked.
//! - io_uring: requests go through shared rings, not system calls; `io_uring_setup` and
//!   `io_uring_enter` are marked [`Untraceable::IoUring`].
//! - The vDSO's calls (time only, so nothing for a file system), and calls of processes
//!   that escape the trace (a daemon started before it, or reached over a socket).
//! - A plain `write`'s file offset: it is the file position, which strace does not print.
//!   It can be followed from the calls that move it (`open`, `read`/`readv`, which are
//!   traced raw so their buffers cost nothing, `lseek`, `write`); `brink-pmodel`'s
//!   logical front end does, and says when it cannot.
//! - Stacks are symbolized against the objects on disk when [`Symbolizer`] runs: a
//!   binary rebuilt since the trace gives wrong lines.

#![forbid(unsafe_code)]

mod args;
mod decode;
mod describe;
mod error;
mod model;
mod parse;
mod resolve;
mod script;
mod site;
mod symbolize;
mod tracer;

pub use args::{ARGS_MAX, STRING_BYTES_MAX};
pub use decode::{EXEC_ARGS_MAX, RAW_ARGS_CHARS_MAX};
pub use describe::{Place, Shown, is_mark, listing, mark_text, paths_of, relative};
pub use error::{CallsError, ERROR_DETAIL_CHARS_MAX};
pub use model::{
    AT_FDCWD, Access, Call, CallKind, CallResult, EndKind, Fd, Flags, Frame, Mmap, ProcessEnd, SYSTEM_OBJECT_PREFIXES,
    SourceLine, Target, Untraceable, bytes_path, falloc_flag, is_system_object, map_flag, open_flag, rename_flag,
    rwf_flag, sync_range_flag,
};
pub use parse::{
    CALL_NAME_BYTES_MAX, CallReader, FRAME_TEXT_BYTES_MAX, LINE_BYTES_MAX, PENDING_MAX, PROCESS_ENDS_MAX, Parsed,
    STACK_FRAMES_MAX, parse_bytes, parse_file,
};
pub use resolve::{Resolver, normalize, spawns};
pub use script::{SCRIPT_BYTES_MAX, SCRIPT_TEXT_CHARS_MAX, attribute_scripts};
pub use site::{Site, fold_digits, show_path};
pub use symbolize::{OBJECTS_CACHED_MAX, Symbolizer};
pub use tracer::{
    RAW_CALLS, STRACE_PROGRAM, STRACE_VERSION_MIN, STRING_LIMIT_DEFAULT, StraceInfo, TRACED_CALLS, TraceOptions,
    check_strace, parse_version, strace_args, strace_command, trace_set,
};
