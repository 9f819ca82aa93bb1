//! The strace command line that wraps a workload, and the check that the installed strace
//! can run it. The flags are chosen for a parser, not a person: every string hex-escaped,
//! every descriptor with its path, every thread followed, stacks on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::args::STRING_BYTES_MAX;
use crate::error::CallsError;

/// The program run when no other is configured (found on `PATH`).
pub const STRACE_PROGRAM: &str = "strace";

/// The oldest strace whose output this crate was written against (Debian 11's; 6.1,
/// Debian 12's, is what the tests run).
pub const STRACE_VERSION_MIN: (u32, u32) = (5, 10);

/// Bytes of write data strace prints per buffer by default (`-s`): every write up to
/// 1 MiB whole (databases write SST files, WAL batches and pages of more than 4 KiB in
/// one call; a logical state built from a truncated write would hold bytes the program
/// never wrote, so the front end warns on each). strace reads only what a call wrote,
/// so the limit costs only where writes are that large: 4 bytes of text a byte.
pub const STRING_LIMIT_DEFAULT: usize = STRING_BYTES_MAX;

/// Calls traced raw (`-e raw=`): numbers only, so their buffers are not printed; what
/// matters of them is the descriptor and the result (how far the file position moved).
pub const RAW_CALLS: &[&str] = &["read", "readv"];

/// The system calls traced. The ones an architecture may lack (x86_64 has them all) are
/// prefixed `?` so strace skips them there instead of refusing to start.
pub const TRACED_CALLS: &[&str] = &[
    "?open",
    "openat",
    "openat2",
    "?creat",
    "close",
    "close_range",
    "dup",
    "?dup2",
    "dup3",
    "?fcntl",
    "?fcntl64",
    "chdir",
    "fchdir",
    "read",
    "readv",
    "lseek",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "truncate",
    "ftruncate",
    "fallocate",
    "?rename",
    "renameat",
    "renameat2",
    "?link",
    "linkat",
    "?unlink",
    "unlinkat",
    "?mkdir",
    "mkdirat",
    "?rmdir",
    "?symlink",
    "symlinkat",
    "fsync",
    "fdatasync",
    "?sync_file_range",
    "?sync_file_range2",
    "sync",
    "syncfs",
    "msync",
    "?mmap",
    "?mmap2",
    "copy_file_range",
    "?sendfile",
    "?sendfile64",
    "splice",
    "ioctl",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "clone",
    "clone3",
    "?fork",
    "?vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
];

/// How to trace a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOptions {
    /// The strace program.
    pub strace: PathBuf,
    /// Bytes of each written buffer strace prints (`-s`); longer writes are marked
    /// truncated. Capped at [`STRING_BYTES_MAX`]. Paths are printed whole regardless.
    pub string_limit: usize,
    /// Record a stack per call (`-k`): the source of the call's line, at some cost.
    pub stacks: bool,
    /// Stop the workload only at traced calls (`--seccomp-bpf`) rather than at every
    /// system call; strace falls back to stopping at all when the kernel refuses.
    pub seccomp_bpf: bool,
    /// Run the workload as this user while strace keeps its privileges (`-u`).
    pub run_as: Option<String>,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            strace: PathBuf::from(STRACE_PROGRAM),
            string_limit: STRING_LIMIT_DEFAULT,
            stacks: true,
            seccomp_bpf: true,
            run_as: None,
        }
    }
}

/// The `-e trace=` value: [`TRACED_CALLS`] joined.
pub fn trace_set() -> String {
    TRACED_CALLS.join(",")
}

/// The strace arguments (without the program) that trace `workload` into `out`.
pub fn strace_args(workload: &[OsString], out: &Path, opts: &TraceOptions) -> Result<Vec<OsString>, CallsError> {
    if workload.is_empty() {
        return Err(CallsError::EmptyWorkload);
    }
    let limit = opts.string_limit.clamp(1, STRING_BYTES_MAX);
    let mut args: Vec<OsString> = ["-f", "-q", "-y", "-xx", "-ttt", "-s"].iter().map(OsString::from).collect();
    args.push(limit.to_string().into());
    if opts.stacks {
        args.push("-k".into());
    }
    if opts.seccomp_bpf {
        args.push("--seccomp-bpf".into());
    }
    if let Some(user) = &opts.run_as {
        args.extend(["-u".into(), user.into()]);
    }
    args.extend(["-e".into(), format!("trace={}", trace_set()).into()]);
    args.extend(["-e".into(), format!("raw={}", RAW_CALLS.join(",")).into()]);
    args.extend(["-o".into(), out.into(), "--".into()]);
    args.extend(workload.iter().cloned());
    Ok(args)
}

/// A command that runs `workload` under strace, writing the trace to `out`. Its exit
/// status is the workload's (strace passes it on, and re-raises a killing signal).
pub fn strace_command(workload: &[OsString], out: &Path, opts: &TraceOptions) -> Result<Command, CallsError> {
    let mut command = Command::new(&opts.strace);
    command.args(strace_args(workload, out, opts)?);
    Ok(command)
}

/// What `strace -V` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StraceInfo {
    pub version: (u32, u32),
    /// Built with a stack unwinder (`-k` works).
    pub stack_traces: bool,
}

/// Runs `strace -V` and checks that it is recent enough and, if `opts` asks for stacks,
/// built with stack-trace support; then traces `strace -V` itself with the flags `opts`
/// give, which fails where ptrace is refused (a container's seccomp policy, Yama): a
/// clear error now rather than a strange trace later.
pub fn check_strace(opts: &TraceOptions) -> Result<StraceInfo, CallsError> {
    let program = opts.strace.clone();
    let output = Command::new(&program)
        .arg("-V")
        .output()
        .map_err(|source| CallsError::StraceMissing { program: program.clone(), source })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let unusable = |problem: String| CallsError::StraceUnusable { program: program.clone(), problem };
    if !output.status.success() {
        return Err(unusable(format!("`strace -V` failed ({})", output.status)));
    }
    let info = parse_version(&text).ok_or_else(|| unusable("`strace -V` printed no version".into()))?;
    if info.version < STRACE_VERSION_MIN {
        let ((major, minor), (need_major, need_minor)) = (info.version, STRACE_VERSION_MIN);
        return Err(unusable(format!(
            "strace {major}.{minor} is too old: brink needs {need_major}.{need_minor} or newer"
        )));
    }
    if opts.stacks && !info.stack_traces {
        return Err(unusable("this strace is built without stack traces (-k); install one built with libunwind or libdw, or turn stacks off".into()));
    }
    trial_run(opts).map_err(unusable)?;
    Ok(info)
}

/// Traces `strace -V` with `opts`' flags into `/dev/null`: what went wrong, in strace's
/// own first words, if it fails.
fn trial_run(opts: &TraceOptions) -> Result<(), String> {
    let workload = [opts.strace.clone().into_os_string(), OsString::from("-V")];
    let mut command = strace_command(&workload, Path::new("/dev/null"), opts).map_err(|e| e.to_string())?;
    let output = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run a trial trace: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("no message");
    Err(format!("a trial trace failed ({}): {}", output.status, crate::error::clip(first)))
}

/// Parses `strace -V`: `strace -- version 6.1` and `Optional features enabled: stack-trace=…`.
pub fn parse_version(text: &str) -> Option<StraceInfo> {
    let first = text.lines().next()?;
    let number = first.rsplit("version ").next()?.split_whitespace().next()?;
    let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let stack_traces = text.lines().any(|l| l.contains("Optional features enabled") && l.contains("stack-trace="));
    Some(StraceInfo { version: (major, minor), stack_traces })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses() {
        let v = "strace -- version 6.1\nCopyright\n\nOptional features enabled: stack-trace=libunwind stack-demangle\n";
        assert_eq!(parse_version(v), Some(StraceInfo { version: (6, 1), stack_traces: true }));
        let v = "strace -- version 5.10\nOptional features enabled: m32-mpers\n";
        assert_eq!(parse_version(v), Some(StraceInfo { version: (5, 10), stack_traces: false }));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn command_line_ends_with_the_workload() {
        let workload = vec![OsString::from("/bin/sh"), OsString::from("-c"), OsString::from("true")];
        let args = strace_args(&workload, Path::new("/tmp/out"), &TraceOptions::default()).unwrap();
        let tail: Vec<_> = args.iter().rev().take(4).rev().collect();
        assert_eq!(tail, ["--", "/bin/sh", "-c", "true"]);
        assert!(args.iter().any(|a| a == "-k") && args.iter().any(|a| a == "--seccomp-bpf"));
        assert!(matches!(strace_args(&[], Path::new("/o"), &TraceOptions::default()), Err(CallsError::EmptyWorkload)));
    }
}
