//! The parser on strace output captured on Debian 12 (strace 6.1) with this crate's flags
//! (`-s 16` for `kinds.strace`, to see truncation), from the C programs beside each
//! fixture in `tests/fixtures/`: `basic.c` (the end-to-end test's program, with a file
//! name holding a quote and a newline), `kinds.c` (every decoded call, and two threads
//! whose calls interleave as `<unfinished ...>`/`resumed` pairs), `killed.c` (a child
//! killed by SIGABRT).

use brink_calls::{
    Access, Call, CallKind, CallResult, EndKind, Parsed, Target, Untraceable, falloc_flag, open_flag, parse_bytes,
    parse_file, rename_flag, rwf_flag,
};

fn parsed(name: &str) -> Parsed {
    parse_file(&crate::fixture(name)).unwrap()
}

/// The calls whose first user frame is in the fixture's program (not the loader's or libc's own).
fn program_calls<'a>(p: &'a Parsed, program: &str) -> Vec<&'a Call> {
    p.calls.iter().filter(|c| c.user_frame().is_some_and(|f| f.object.ends_with(program))).collect()
}

/// The number of lines that end a call: every call line but `<unfinished ...>` ones.
fn completing_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            !l.starts_with(" > ") && !l.contains("--- ") && !l.contains("+++ ") && !l.ends_with("<unfinished ...>")
        })
        .count()
}

#[test]
fn every_call_line_is_one_call_in_completion_order() {
    for name in ["basic.strace", "kinds.strace", "killed.strace"] {
        let text = std::fs::read_to_string(crate::fixture(name)).unwrap();
        let p = parsed(name);
        assert_eq!(p.calls.len(), completing_lines(&text), "{name}");
        assert!(p.calls.iter().enumerate().all(|(i, c)| c.seq == i as u64), "{name}: seq is the position");
        assert!(p.calls.iter().all(|c| c.result != CallResult::Unfinished), "{name}: every call resumed");
        assert!(p.calls.iter().all(|c| c.time_us.is_some()), "{name}");
        let exits = |c: &&Call| matches!(c.kind, CallKind::Exit { .. });
        assert!(p.calls.iter().filter(|c| !exits(c)).all(|c| !c.stack.is_empty()), "{name}: stacks");
        let raw = p.calls.iter().filter(|c| matches!(c.kind, CallKind::Other { .. })).map(|c| c.name.as_str());
        assert!(
            raw.clone().all(|n| n == "close_range" || n == "ioctl"),
            "{name}: undecoded {:?}",
            raw.collect::<Vec<_>>()
        );
    }
}

#[test]
fn basic_program_calls_in_order_with_paths_and_data() {
    let p = parsed("basic.strace");
    let calls = program_calls(&p, "w");
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    let want = "openat write fsync close rename openat fsync close mmap openat write close clone openat pwrite64 openat mmap msync";
    assert_eq!(names.join(" "), want);
    let CallKind::Open { path, fd, flags, access, .. } = &calls[0].kind else { panic!("{:?}", calls[0]) };
    assert_eq!(path.as_slice(), b"tmp file \"q\"\n.txt");
    assert_eq!(fd.as_ref().unwrap().path.as_deref(), Some(&b"/tmp/bc/fx/tmp file \"q\"\n.txt"[..]));
    assert!(flags.contains(open_flag::CREAT) && flags.contains(open_flag::TRUNC) && *access == Access::WriteOnly);
    let CallKind::Write { data, truncated: false, offset: None, .. } = &calls[1].kind else { panic!() };
    assert_eq!(data.as_slice(), b"hello\0\xff\n");
    let CallKind::Rename { old, new, .. } = &calls[4].kind else { panic!() };
    assert_eq!((old.as_slice(), new.as_slice()), (&b"tmp file \"q\"\n.txt"[..], &b"data.txt"[..]));
    let thread = p.calls.iter().find(|c| c.name == "clone3").unwrap();
    assert!(matches!(&thread.kind, CallKind::Spawn { thread: true }));
    let main = calls[0].tid;
    assert_eq!(thread.result, CallResult::Ok(i64::from(calls[10].tid)), "the thread's write is by the new thread");
    assert!(calls[10].tid != main && calls[14].tid != main && calls[10].tid != calls[14].tid);
    assert_eq!(calls[12].result, CallResult::Ok(i64::from(calls[14].tid)), "the child's write is by the forked child");
    let CallKind::Write { offset: Some(100), data, .. } = &calls[14].kind else { panic!() };
    assert_eq!(data.as_slice(), b"child");
    assert!(matches!(calls[16].untraceable(), Some(Untraceable::SharedWritableMapping(_))));
    assert!(p.ends.iter().all(|e| e.how == EndKind::Exited(0)) && p.ends.len() == 3);
}

#[test]
fn every_kind_decodes() {
    let p = parsed("kinds.strace");
    let calls = program_calls(&p, "k");
    let find = |name: &str| calls.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name}"));
    let CallKind::Write { len: 36, truncated: true, data, .. } = &find("writev").kind else { panic!() };
    assert_eq!(data.as_slice(), b"abcdefghijklmnopqr", "-s 16 cuts each buffer at 16 bytes");
    assert!(
        matches!(&find("pwritev2").kind, CallKind::Write { offset: Some(8192), flags, .. } if flags.contains(rwf_flag::DSYNC))
    );
    assert!(matches!(&find("ftruncate").kind, CallKind::Truncate { target: Target::Fd(_), len: 10 }));
    let CallKind::Fallocate { mode, len: 4096, .. } = &find("fallocate").kind else { panic!() };
    assert!(mode.contains(falloc_flag::PUNCH_HOLE) && mode.contains(falloc_flag::KEEP_SIZE));
    let rename2 = find("renameat2");
    assert_eq!(rename2.result, CallResult::Err("EEXIST".into()));
    assert!(matches!(&rename2.kind, CallKind::Rename { flags, .. } if flags.contains(rename_flag::NOREPLACE)));
    assert!(matches!(&find("unlinkat").kind, CallKind::Unlink { removes_dir: true, .. }));
    assert!(matches!(&find("openat2").kind, CallKind::Open { access: Access::ReadWrite, mode: Some(0o600), .. }));
    let tmpfile =
        calls.iter().find(|c| matches!(&c.kind, CallKind::Open { flags, .. } if flags.contains(open_flag::TMPFILE)));
    assert!(matches!(&tmpfile.unwrap().kind, CallKind::Open { fd: Some(fd), .. } if fd.deleted));
    let clones: Vec<_> = calls.iter().filter(|c| c.name == "ioctl").map(|c| &c.kind).collect();
    assert!(matches!(
        clones[..],
        [CallKind::Copy { len: 0, .. }, CallKind::Copy { len: 4096, to_offset: Some(0), .. }]
    ));
    assert!(matches!(find("io_uring_setup").untraceable(), Some(Untraceable::IoUring { .. })));
    assert!(matches!(&find("vfork").kind, CallKind::Spawn { thread: false }));
    let direct = find("pwrite64");
    assert!(
        matches!(&calls[1].kind, CallKind::Open { flags, .. } if flags.contains(open_flag::DIRECT | open_flag::DSYNC))
    );
    assert_eq!(direct.result, CallResult::Err("EINVAL".into()));
    let true_exec = |c: &&Call| matches!(&c.kind, CallKind::Exec { path, .. } if path == b"/usr/bin/true");
    let exec = p.calls.iter().find(true_exec).unwrap();
    assert!(matches!(&exec.kind, CallKind::Exec { argv, .. } if argv == &[b"true".to_vec()]));
    assert_eq!(exec.result, CallResult::Ok(0));
}

#[test]
fn interleaved_threads_pair_their_calls() {
    let p = parsed("kinds.strace");
    let writes: Vec<&Call> = p.calls.iter().filter(|c| c.name == "pwrite64").collect();
    assert_eq!(writes.len(), 40);
    let tids: std::collections::BTreeSet<u32> = writes.iter().map(|c| c.tid).collect();
    assert_eq!(tids.len(), 2);
    for tid in tids {
        let offsets: Vec<Option<u64>> = writes
            .iter()
            .filter(|c| c.tid == tid)
            .map(|c| match c.kind {
                CallKind::Write { offset, .. } => offset,
                _ => None,
            })
            .collect();
        assert_eq!(offsets, (0..20).map(Some).collect::<Vec<_>>(), "thread {tid} wrote its offsets in order");
    }
}

#[test]
fn killed_process_and_unresumed_calls() {
    let p = parsed("killed.strace");
    assert!(p.ends.iter().any(|e| e.how == EndKind::Killed { signal: "SIGABRT".into(), core: false }));
    let text = b"10 1.5 fsync(3</a> <unfinished ...>\n11 1.6 write(1, \"\\x61\", 1) = 1\n > /bin/x(f+0x1) [0x10]\n10 2.0 +++ killed by SIGKILL +++\n12 3.0 openat(AT_FDCWD, \"b\", O_RDONLY <unfinished ...>\n";
    let p = parse_bytes(text).unwrap();
    let got: Vec<(&str, u32, &CallResult, usize)> =
        p.calls.iter().map(|c| (c.name.as_str(), c.tid, &c.result, c.stack.len())).collect();
    let unfinished = &CallResult::Unfinished;
    assert_eq!(
        got,
        vec![("write", 11, &CallResult::Ok(1), 1), ("fsync", 10, unfinished, 0), ("openat", 12, unfinished, 0)]
    );
    assert!(matches!(&p.calls[2].kind, CallKind::Open { path, .. } if path == b"b"));
    assert_eq!(p.calls[1].time_us, Some(1_500_000));
}

#[test]
fn calls_survive_bincode_and_json() {
    let p = parsed("kinds.strace");
    let config = bincode::config::standard().with_fixed_int_encoding();
    let bytes = bincode::serde::encode_to_vec(&p.calls, config).unwrap();
    let (back, _): (Vec<Call>, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(back, p.calls);
    let json = serde_json::to_string(&p.calls).unwrap();
    assert_eq!(serde_json::from_str::<Vec<Call>>(&json).unwrap(), p.calls);
}

#[test]
fn bad_lines_are_errors_naming_the_line() {
    let err = parse_bytes(b"1 write(1, \"a\", 1) = 1\n2 this is not strace\n").unwrap_err();
    assert!(err.to_string().starts_with("strace output line 2:"), "{err}");
    let err = parse_bytes(b"1 write(1, \"a\", 1) = ???\n").unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

/// strace killed while writing its last line (the workload's processes killed at the
/// end of a recording): that line is left out and said; the calls before it stand.
#[test]
fn a_last_line_cut_short_is_said_not_an_error() {
    let text = b"1 write(1, \"a\", 1) = 1\n2 clone3({flags=CLONE_VM|CLONE_FS, exit_signal=0";
    let p = parse_bytes(text).unwrap();
    assert!(p.last_line_cut);
    assert_eq!(p.calls.len(), 1);
    // The same line ended by a newline is a malformed line, an error.
    let mut whole = text.to_vec();
    whole.push(b'\n');
    assert!(parse_bytes(&whole).is_err());
    assert!(!parse_bytes(b"1 write(1, \"a\", 1) = 1\n").unwrap().last_line_cut);
}
