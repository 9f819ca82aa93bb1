//! From a call's name and its split arguments to a typed [`CallKind`]: one small decoder
//! per family of calls. A call whose arguments do not decode (cut by the process's death,
//! or printed in a form this version does not know) becomes [`CallKind::Other`] with its
//! raw text, never an error: the rest of the trace is still worth having.

use crate::args::{self, fd, flags, has_flag, int, iovec_data, offset_arg, optional_fd, string_arg, uint};
use crate::model::{
    Access, CallKind, Fd, Flags, Mmap, Target, Untraceable, falloc_flag, map_flag, open_flag, rename_flag, rwf_flag,
    sync_range_flag,
};

/// Longest raw argument text kept for [`CallKind::Other`], in characters.
pub const RAW_ARGS_CHARS_MAX: usize = 4096;

/// Most `argv` entries kept for an `execve`.
pub const EXEC_ARGS_MAX: usize = 256;

/// The typed call, or `Other` with `raw` (the argument text) when it does not decode.
/// `returned` is the descriptor the call returned, with its `-y` path, if any.
pub(crate) fn kind(name: &str, a: &[&str], raw: &str, returned: Option<Fd>) -> CallKind {
    decode(name, a, returned).unwrap_or_else(|| other(raw))
}

pub(crate) fn other(raw: &str) -> CallKind {
    CallKind::Other { raw_args: raw.trim().chars().take(RAW_ARGS_CHARS_MAX).collect() }
}

fn decode(name: &str, a: &[&str], returned: Option<Fd>) -> Option<CallKind> {
    match name {
        "open" | "openat" | "openat2" | "creat" => open(name, a, returned),
        "close" => Some(CallKind::Close { fd: fd(a.first()?)? }),
        "dup" | "dup2" | "dup3" => dup(name, a),
        "fcntl" | "fcntl64" => fcntl(a),
        "chdir" => Some(CallKind::Chdir { target: path_target(None, a.first()?)? }),
        "fchdir" => Some(CallKind::Chdir { target: Target::Fd(fd(a.first()?)?) }),
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => write(name, a),
        "read" | "readv" => Some(CallKind::Read { fd: fd(a.first()?)? }),
        "lseek" | "_llseek" => Some(CallKind::Seek { fd: fd(a.first()?)? }),
        "truncate" | "truncate64" => {
            Some(CallKind::Truncate { target: path_target(None, a.first()?)?, len: uint(a.get(1)?)? })
        }
        "ftruncate" | "ftruncate64" => {
            Some(CallKind::Truncate { target: Target::Fd(fd(a.first()?)?), len: uint(a.get(1)?)? })
        }
        "fallocate" => fallocate(a),
        "rename" | "renameat" | "renameat2" => rename(name, a),
        "link" | "linkat" => link(name, a),
        "unlink" | "unlinkat" | "rmdir" => unlink(name, a),
        "mkdir" | "mkdirat" => mkdir(name, a),
        "symlink" | "symlinkat" => symlink(name, a),
        "fsync" | "fdatasync" => Some(CallKind::Fsync { fd: fd(a.first()?)?, data_only: name == "fdatasync" }),
        "sync_file_range" | "sync_file_range2" => sync_file_range(a),
        "sync" => Some(CallKind::Sync),
        "syncfs" => Some(CallKind::Syncfs { fd: fd(a.first()?)? }),
        "msync" => Some(CallKind::Msync {
            addr: uint(a.first()?)?,
            len: uint(a.get(1)?)?,
            flags: flags(a.get(2)?, map_flag::NAMES),
        }),
        "mmap" | "mmap2" => mmap(a),
        "copy_file_range" | "splice" => copy_range(a),
        "sendfile" | "sendfile64" => sendfile(a),
        "ioctl" => clone_ioctl(a),
        "io_uring_setup" => Some(CallKind::Untraceable { what: Untraceable::IoUring { fd: returned } }),
        "io_uring_enter" | "io_uring_register" => {
            Some(CallKind::Untraceable { what: Untraceable::IoUring { fd: fd(a.first()?) } })
        }
        "clone" | "clone3" => Some(CallKind::Spawn { thread: a.first().is_some_and(|f| f.contains("CLONE_THREAD")) }),
        "fork" | "vfork" => Some(CallKind::Spawn { thread: false }),
        "execve" | "execveat" => exec(name, a),
        "exit" | "exit_group" => Some(CallKind::Exit { group: name == "exit_group", code: int(a.first()?)? }),
        _ => None,
    }
}

/// A path argument relative to `dir` (`None`: the current directory, for the old calls).
fn path_target(dir: Option<Fd>, arg: &str) -> Option<Target> {
    Some(Target::Path { dir, path: string_arg(arg)?.0 })
}

fn path(arg: &str) -> Option<Vec<u8>> {
    string_arg(arg).map(|(bytes, _)| bytes)
}

/// For the `*at` calls: the directory descriptor and the rest of the arguments.
fn at<'a, 'b>(name: &str, a: &'b [&'a str]) -> Option<(Option<Fd>, &'b [&'a str])> {
    if matches!(name, "openat" | "openat2" | "unlinkat" | "mkdirat") {
        Some((Some(fd(a.first()?)?), a.get(1..)?))
    } else {
        Some((None, a))
    }
}

fn open(name: &str, a: &[&str], returned: Option<Fd>) -> Option<CallKind> {
    let (dir, rest) = at(name, a)?;
    let path = path(rest.first()?)?;
    let (flag_text, mode) = match name {
        "creat" => ("O_WRONLY|O_CREAT|O_TRUNC", rest.get(1).and_then(|m| int(m))),
        "openat2" => {
            let how = rest.get(1)?;
            (args::field(how, "flags")?, args::field(how, "mode").and_then(int))
        }
        _ => (*rest.get(1)?, rest.get(2).and_then(|m| int(m))),
    };
    let access = if has_flag(flag_text, "O_RDWR") {
        Access::ReadWrite
    } else if has_flag(flag_text, "O_WRONLY") {
        Access::WriteOnly
    } else {
        Access::ReadOnly
    };
    let flags = flags(flag_text, open_flag::NAMES);
    let mode = mode.and_then(|m| u32::try_from(m).ok());
    Some(CallKind::Open { dir, path, access, flags, mode, fd: returned })
}

fn dup(name: &str, a: &[&str]) -> Option<CallKind> {
    let old = fd(a.first()?)?;
    let new = match name {
        "dup" => None,
        _ => Some(fd(a.get(1)?)?.num),
    };
    let cloexec = a.get(2).is_some_and(|f| has_flag(f, "O_CLOEXEC"));
    Some(CallKind::Dup { old, new, cloexec })
}

fn fcntl(a: &[&str]) -> Option<CallKind> {
    let fd = fd(a.first()?)?;
    let cmd = *a.get(1)?;
    if cmd == "F_DUPFD" || cmd == "F_DUPFD_CLOEXEC" {
        let new = int(a.get(2)?).and_then(|n| i32::try_from(n).ok());
        return Some(CallKind::Dup { old: fd, new, cloexec: cmd == "F_DUPFD_CLOEXEC" });
    }
    let flags = (cmd == "F_SETFL").then(|| a.get(2).map(|f| flags(f, open_flag::NAMES))).flatten();
    Some(CallKind::Fcntl { fd, cmd: cmd.chars().take(RAW_ARGS_CHARS_MAX).collect(), flags })
}

fn write(name: &str, a: &[&str]) -> Option<CallKind> {
    let fd = fd(a.first()?)?;
    let (data, truncated, len) = if name == "write" || name == "pwrite64" {
        let (data, truncated) = string_arg(a.get(1)?)?;
        let len = uint(a.get(2)?)?;
        let truncated = truncated || (data.len() as u64) < len;
        (data, truncated, len)
    } else {
        iovec_data(a.get(1)?)?
    };
    let offset = match name {
        "pwrite64" => Some(uint(a.get(3)?)?),
        "pwritev" | "pwritev2" => Some(a.get(3).and_then(|o| int(o))).flatten().and_then(|o| u64::try_from(o).ok()),
        _ => None,
    };
    let flags = if name == "pwritev2" { a.get(4).map_or(Flags(0), |f| flags(f, rwf_flag::NAMES)) } else { Flags(0) };
    Some(CallKind::Write { fd, offset, len, data, truncated, flags })
}

fn fallocate(a: &[&str]) -> Option<CallKind> {
    Some(CallKind::Fallocate {
        fd: fd(a.first()?)?,
        mode: flags(a.get(1)?, falloc_flag::NAMES),
        offset: uint(a.get(2)?)?,
        len: uint(a.get(3)?)?,
    })
}

fn rename(name: &str, a: &[&str]) -> Option<CallKind> {
    if name == "rename" {
        let (old, new) = (path(a.first()?)?, path(a.get(1)?)?);
        return Some(CallKind::Rename { old_dir: None, old, new_dir: None, new, flags: Flags(0) });
    }
    let old_dir = Some(fd(a.first()?)?);
    let old = path(a.get(1)?)?;
    let new_dir = Some(fd(a.get(2)?)?);
    let new = path(a.get(3)?)?;
    let flags = a.get(4).map_or(Flags(0), |f| flags(f, rename_flag::NAMES));
    Some(CallKind::Rename { old_dir, old, new_dir, new, flags })
}

fn link(name: &str, a: &[&str]) -> Option<CallKind> {
    if name == "link" {
        return Some(CallKind::Link { old_dir: None, old: path(a.first()?)?, new_dir: None, new: path(a.get(1)?)? });
    }
    Some(CallKind::Link {
        old_dir: Some(fd(a.first()?)?),
        old: path(a.get(1)?)?,
        new_dir: Some(fd(a.get(2)?)?),
        new: path(a.get(3)?)?,
    })
}

fn unlink(name: &str, a: &[&str]) -> Option<CallKind> {
    let (dir, rest) = at(name, a)?;
    let removes_dir = name == "rmdir" || rest.get(1).is_some_and(|f| has_flag(f, "AT_REMOVEDIR"));
    Some(CallKind::Unlink { dir, path: path(rest.first()?)?, removes_dir })
}

fn mkdir(name: &str, a: &[&str]) -> Option<CallKind> {
    let (dir, rest) = at(name, a)?;
    let mode = u32::try_from(int(rest.get(1)?)?).ok()?;
    Some(CallKind::Mkdir { dir, path: path(rest.first()?)?, mode })
}

fn symlink(name: &str, a: &[&str]) -> Option<CallKind> {
    let target = path(a.first()?)?;
    let (dir, link) = if name == "symlinkat" { (Some(fd(a.get(1)?)?), a.get(2)?) } else { (None, a.get(1)?) };
    Some(CallKind::Symlink { target, dir, path: path(link)? })
}

fn sync_file_range(a: &[&str]) -> Option<CallKind> {
    Some(CallKind::SyncFileRange {
        fd: fd(a.first()?)?,
        offset: uint(a.get(1)?)?,
        len: uint(a.get(2)?)?,
        flags: flags(a.get(3)?, sync_range_flag::NAMES),
    })
}

fn mmap(a: &[&str]) -> Option<CallKind> {
    let prot = flags(a.get(2)?, map_flag::NAMES);
    let map = flags(a.get(3)?, map_flag::NAMES);
    let mapping = Mmap {
        len: uint(a.get(1)?)?,
        flags: Flags(prot.0 | map.0),
        fd: optional_fd(a.get(4)?)?,
        offset: uint(a.get(5)?)?,
    };
    if mapping.is_shared_writable_file() {
        Some(CallKind::Untraceable { what: Untraceable::SharedWritableMapping(mapping) })
    } else {
        Some(CallKind::Mmap(mapping))
    }
}

fn copy_range(a: &[&str]) -> Option<CallKind> {
    Some(CallKind::Copy {
        from: fd(a.first()?)?,
        from_offset: offset_arg(a.get(1)?)?,
        to: fd(a.get(2)?)?,
        to_offset: offset_arg(a.get(3)?)?,
        len: uint(a.get(4)?)?,
    })
}

fn sendfile(a: &[&str]) -> Option<CallKind> {
    Some(CallKind::Copy {
        to: fd(a.first()?)?,
        from: fd(a.get(1)?)?,
        from_offset: offset_arg(a.get(2)?)?,
        to_offset: None,
        len: uint(a.get(3)?)?,
    })
}

/// `FICLONE` and `FICLONERANGE` (strace names them `BTRFS_IOC_CLONE or FICLONE`);
/// other ioctls are not decoded.
fn clone_ioctl(a: &[&str]) -> Option<CallKind> {
    let to = fd(a.first()?)?;
    let request = a.get(1)?;
    if request.ends_with("FICLONE") {
        return Some(CallKind::Copy { from: fd(a.get(2)?)?, from_offset: None, to, to_offset: None, len: 0 });
    }
    if request.ends_with("FICLONERANGE") {
        let range = a.get(2)?;
        return Some(CallKind::Copy {
            from: fd(args::field(range, "src_fd")?)?,
            from_offset: Some(uint(args::field(range, "src_offset")?)?),
            to,
            to_offset: Some(uint(args::field(range, "dest_offset")?)?),
            len: uint(args::field(range, "src_length")?)?,
        });
    }
    None
}

fn exec(name: &str, a: &[&str]) -> Option<CallKind> {
    let rest = if name == "execveat" { a.get(1..)? } else { a };
    let path = path(rest.first()?)?;
    let list = rest.get(1)?.trim().strip_prefix('[').unwrap_or_default();
    let argv = args::split_args(list)
        .args
        .into_iter()
        .filter_map(|arg| string_arg(arg.trim_end_matches(']')).map(|(bytes, _)| bytes))
        .take(EXEC_ARGS_MAX)
        .collect();
    Some(CallKind::Exec { path, argv })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::split_args;

    fn decode_line(name: &str, text: &str) -> CallKind {
        let split = split_args(text);
        kind(name, &split.args, text, None)
    }

    #[test]
    fn decodes_open_flags_and_mode() {
        let k = decode_line("openat", r#"AT_FDCWD<\x2f\x74>, "\x61", O_RDWR|O_CREAT|O_DIRECT|O_DSYNC|O_EXCL, 0600)"#);
        let CallKind::Open { dir, path, access, flags, mode, .. } = k else { panic!("{k:?}") };
        assert_eq!(dir.unwrap().path.unwrap(), b"/t");
        assert_eq!((path, access, mode), (b"a".to_vec(), Access::ReadWrite, Some(0o600)));
        let want = open_flag::CREAT | open_flag::DIRECT | open_flag::DSYNC | open_flag::EXCL;
        assert_eq!(flags.0, want);
    }

    #[test]
    fn unknown_or_broken_calls_keep_their_text() {
        assert_eq!(decode_line("getpid", ")"), CallKind::Other { raw_args: ")".into() });
        assert!(matches!(decode_line("rename", "0x1234, \"b\")"), CallKind::Other { .. }));
    }

    #[test]
    fn decodes_raw_reads_and_seeks() {
        assert_eq!(
            decode_line("read", "0x3, 0x7ffe, 0x340)"),
            CallKind::Read { fd: Fd { num: 3, path: None, deleted: false } }
        );
        let CallKind::Seek { fd } = decode_line("lseek", r#"3<\x2f\x61>, 0, SEEK_END)"#) else { panic!() };
        assert_eq!((fd.num, fd.path.unwrap()), (3, b"/a".to_vec()));
    }

    #[test]
    fn decodes_iovec_writes() {
        let text =
            r#"4<\x2f\x62>, [{iov_base="\x61\x62", iov_len=2}, {iov_base="\x63"..., iov_len=34}], 2, 8192, RWF_DSYNC)"#;
        let CallKind::Write { offset, len, data, truncated, flags, .. } = decode_line("pwritev2", text) else {
            panic!()
        };
        assert_eq!((offset, len, data, truncated), (Some(8192), 36, b"abc".to_vec(), true));
        assert!(flags.contains(rwf_flag::DSYNC));
    }
}
