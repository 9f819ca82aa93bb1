//! The system calls traced, by number (x86_64; the kernel half knows none by name): what
//! the kernel half copies of each ([`Spec`]), and its name as strace spells it, so that
//! calls traced either way read the same.

/// What the kernel half captures of one call number (`struct spec` in `calls.bpf.c`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spec {
    /// Bit `i`: argument `i` is a NUL-terminated string (a path), read at entry.
    pub(crate) strings: u8,
    /// 1 + the index of an `argv`-style array of strings (`execve`), or 0.
    pub(crate) argv: u8,
    /// 1 + the index of a structure copied at entry (`open_how`, `clone_args`), or 0.
    pub(crate) blob: u8,
    pub(crate) blob_len: u8,
    /// The bytes written: 1, a buffer in argument 1; 2, an iovec array in argument 1,
    /// its count in 2. Copied at return, as many as the call wrote.
    pub(crate) data: u8,
    /// 1: `fcntl`, only the commands that make descriptors or set flags; 2: `ioctl`,
    /// only `FICLONE` and `FICLONERANGE` (decided in the kernel, so that a program's
    /// many lock and terminal calls cost nothing).
    pub(crate) filter: u8,
    /// Bit `i`: argument `i` points to a 64-bit offset (`copy_file_range`, `sendfile`,
    /// `splice`), read at entry; a null pointer is not read.
    pub(crate) u64_ptrs: u8,
}

impl Spec {
    /// The bytes of `struct spec`, in its field order.
    pub(crate) fn bytes(self) -> [u8; 8] {
        [1, self.strings, self.argv, self.blob, self.blob_len, self.data, self.filter, self.u64_ptrs]
    }
}

const fn s(strings: u8) -> Spec {
    Spec { strings, argv: 0, blob: 0, blob_len: 0, data: 0, filter: 0, u64_ptrs: 0 }
}
const PLAIN: Spec = s(0);
const WRITE: Spec = Spec { data: 1, ..PLAIN };
const WRITEV: Spec = Spec { data: 2, ..PLAIN };

/// `(number, name, what to capture)` of every traced call on x86_64.
pub(crate) const SYSCALLS: &[(u32, &str, Spec)] = &[
    (0, "read", PLAIN),
    (1, "write", WRITE),
    (2, "open", s(0b1)),
    (3, "close", PLAIN),
    (8, "lseek", PLAIN),
    (9, "mmap", PLAIN),
    (11, "munmap", PLAIN),
    (16, "ioctl", Spec { filter: 2, blob: 3, blob_len: 32, ..PLAIN }),
    (18, "pwrite64", WRITE),
    (19, "readv", PLAIN),
    (20, "writev", WRITEV),
    (26, "msync", PLAIN),
    (32, "dup", PLAIN),
    (33, "dup2", PLAIN),
    (40, "sendfile", Spec { u64_ptrs: 0b100, ..PLAIN }),
    (56, "clone", PLAIN),
    (57, "fork", PLAIN),
    (58, "vfork", PLAIN),
    (59, "execve", Spec { argv: 2, ..s(0b1) }),
    (60, "exit", PLAIN),
    (72, "fcntl", Spec { filter: 1, ..PLAIN }),
    (74, "fsync", PLAIN),
    (75, "fdatasync", PLAIN),
    (76, "truncate", s(0b1)),
    (77, "ftruncate", PLAIN),
    (80, "chdir", s(0b1)),
    (81, "fchdir", PLAIN),
    (82, "rename", s(0b11)),
    (83, "mkdir", s(0b1)),
    (84, "rmdir", s(0b1)),
    (85, "creat", s(0b1)),
    (86, "link", s(0b11)),
    (87, "unlink", s(0b1)),
    (88, "symlink", s(0b11)),
    (162, "sync", PLAIN),
    (231, "exit_group", PLAIN),
    (257, "openat", s(0b10)),
    (258, "mkdirat", s(0b10)),
    (263, "unlinkat", s(0b10)),
    (264, "renameat", s(0b1010)),
    (265, "linkat", s(0b1010)),
    (266, "symlinkat", s(0b101)),
    (275, "splice", Spec { u64_ptrs: 0b1010, ..PLAIN }),
    (277, "sync_file_range", PLAIN),
    (285, "fallocate", PLAIN),
    (292, "dup3", PLAIN),
    (296, "pwritev", WRITEV),
    (306, "syncfs", PLAIN),
    (316, "renameat2", s(0b1010)),
    (322, "execveat", Spec { argv: 3, ..s(0b10) }),
    (326, "copy_file_range", Spec { u64_ptrs: 0b1010, ..PLAIN }),
    (328, "pwritev2", WRITEV),
    (425, "io_uring_setup", PLAIN),
    (426, "io_uring_enter", PLAIN),
    (427, "io_uring_register", PLAIN),
    (435, "clone3", Spec { blob: 1, blob_len: 8, ..PLAIN }),
    (436, "close_range", PLAIN),
    (437, "openat2", Spec { blob: 3, blob_len: 24, ..s(0b10) }),
];

/// The name of call number `nr`, if traced.
pub(crate) fn name(nr: u32) -> Option<&'static str> {
    SYSCALLS.iter().find(|(n, ..)| *n == nr).map(|(_, name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_traced_name_is_one_strace_traces_too() {
        // munmap is traced for the stacks (`images.rs`), not for the calls' readers.
        for (_, name, _) in SYSCALLS.iter().filter(|(_, n, _)| *n != "munmap") {
            let listed = brink_calls::TRACED_CALLS.iter().any(|c| c.trim_start_matches('?') == *name);
            assert!(listed, "{name} is not in brink_calls::TRACED_CALLS");
        }
    }

    #[test]
    fn numbers_are_distinct_and_fit_the_kernel_table() {
        let mut seen = std::collections::HashSet::new();
        for (nr, name, _) in SYSCALLS {
            assert!(*nr < 512 && seen.insert(*nr), "{name}");
        }
    }
}
