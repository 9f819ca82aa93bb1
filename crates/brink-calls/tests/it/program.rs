//! End to end: a small C program built with `gcc -g` (as a PIE and as a non-PIE
//! executable, whose file offsets and virtual addresses differ) runs under
//! [`strace_command`]; its trace is parsed and symbolized, and the calls, their order,
//! paths, data, threads and the source line of the `rename` are checked. Needs strace
//! and gcc; without them the test fails saying so, or with `BRINK_SKIP_PRIVILEGED=1`
//! prints a loud SKIPPED line, as the repository's other tests that need the machine do.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use brink_calls::{Call, CallKind, CallResult, Symbolizer, TraceOptions, check_strace, parse_file, strace_command};

const PROGRAM: &str = r#"#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg) {
    int fd = open("thread.log", O_WRONLY | O_CREAT | O_TRUNC, 0644); /* WORKER OPEN */
    write(fd, "from the thread\n", 16);
    close(fd);
    return arg;
}

int main(void) {
    int fd = open("tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "new \"contents\"\n\0\xff", 17);
    fsync(fd);
    close(fd);
    rename("tmp", "data"); /* RENAME */
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    fsync(dir);
    close(dir);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    pid_t child = fork();
    if (child == 0) {
        int c = open("child.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        write(c, "from the child\n", 15);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    return 0;
}
"#;

/// Whether strace (with stack traces) and gcc are here; without, the test fails unless
/// `BRINK_SKIP_PRIVILEGED=1` says to skip it loudly.
fn tools_present(test: &str) -> bool {
    let strace = check_strace(&TraceOptions::default());
    let gcc = Command::new("gcc").arg("--version").output().is_ok_and(|o| o.status.success());
    if strace.is_ok() && gcc {
        return true;
    }
    let strace = strace.map_or_else(|e| e.to_string(), |_| "ok".into());
    brink_testkit::skip_or_fail(
        test,
        &format!("it needs strace with stack traces and gcc (strace: {strace}; gcc found: {gcc})"),
    )
}

/// The 1-based line of the source holding `marker`.
fn line_of(marker: &str) -> u32 {
    let index = PROGRAM.lines().position(|l| l.contains(marker)).unwrap();
    u32::try_from(index + 1).unwrap()
}

/// Builds the program into `dir`, runs it under strace there, and returns its calls, symbolized.
fn traced_calls(dir: &Path, pie: bool) -> Vec<Call> {
    std::fs::write(dir.join("prog.c"), PROGRAM).unwrap();
    let exe = dir.join("prog");
    let pie_flag = if pie { "-pie" } else { "-no-pie" };
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-pthread", pie_flag, "-o"])
        .arg(&exe)
        .arg(dir.join("prog.c"))
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed");
    let out = dir.join("trace.strace");
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    let workload = [OsString::from(&exe)];
    let status =
        strace_command(&workload, &out, &TraceOptions::default()).unwrap().current_dir(&work).status().unwrap();
    assert!(status.success(), "the traced program failed: {status}");
    let mut calls = parse_file(&out).unwrap().calls;
    let mut symbolizer = Symbolizer::new();
    for call in &mut calls {
        symbolizer.symbolize_call(call);
    }
    calls
}

fn written(call: &Call) -> &[u8] {
    match &call.kind {
        CallKind::Write { data, truncated: false, .. } => data,
        other => panic!("not a whole write: {other:?}"),
    }
}

fn check_program(dir: &Path, pie: bool) {
    let calls = traced_calls(dir, pie);
    let exe = dir.join("prog");
    let ours: Vec<&Call> = calls
        .iter()
        .filter(|c| c.user_frame().is_some_and(|f| f.object == exe))
        .filter(|c| !matches!(c.kind, CallKind::Mmap(_) | CallKind::Exit { .. }))
        .collect();
    let main = ours[0].tid;
    let of = |tid: u32| -> Vec<&Call> { ours.iter().copied().filter(|c| c.tid == tid).collect() };
    let names = |calls: &[&Call]| calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" ");
    let in_main = of(main);
    assert_eq!(names(&in_main), "openat write fsync close rename openat fsync close clone", "pie: {pie}");
    let spawned = calls.iter().find(|c| c.name == "clone3" && matches!(c.kind, CallKind::Spawn { thread: true }));
    let CallResult::Ok(thread) = spawned.unwrap().result else { panic!("{spawned:?}") };
    let CallResult::Ok(child) = in_main[8].result else { panic!("{:?}", in_main[8]) };
    let (thread, child) = (u32::try_from(thread).unwrap(), u32::try_from(child).unwrap());
    assert!(thread != main && child != main && thread != child, "tids {main} {thread} {child}");
    let (in_thread, in_child) = (of(thread), of(child));
    assert_eq!((names(&in_thread), names(&in_child)), ("openat write close".into(), "openat write".into()));
    assert_eq!(ours.len(), in_main.len() + in_thread.len() + in_child.len());
    // The thread runs between pthread_create and pthread_join, the child after fork.
    assert!(in_thread.iter().all(|c| c.seq > in_main[7].seq && c.seq < in_main[8].seq));
    assert!(in_child.iter().all(|c| c.seq > in_thread[2].seq));
    let work = dir.join("work").canonicalize().unwrap();
    let CallKind::Open { path, fd: Some(fd), .. } = &in_main[0].kind else { panic!("{:?}", in_main[0]) };
    assert_eq!((path.as_slice(), fd.path()), (&b"tmp"[..], Some(work.join("tmp").as_path())));
    assert_eq!(written(in_main[1]), b"new \"contents\"\n\0\xff");
    let CallKind::Rename { old, new, .. } = &in_main[4].kind else { panic!() };
    assert_eq!((old.as_slice(), new.as_slice()), (&b"tmp"[..], &b"data"[..]));
    let CallKind::Fsync { fd, .. } = &in_main[6].kind else { panic!() };
    assert_eq!(fd.path(), Some(work.as_path()), "the directory's fsync names the directory");
    assert_eq!((written(in_thread[1]), written(in_child[1])), (&b"from the thread\n"[..], &b"from the child\n"[..]));
    for (call, function, marker) in [(in_main[4], "main", "RENAME"), (in_thread[0], "worker", "WORKER OPEN")] {
        let frame = call.user_frame().unwrap();
        let source = frame.source.as_ref().unwrap_or_else(|| panic!("no line for {frame:?}"));
        assert_eq!(frame.function.as_deref(), Some(function), "pie: {pie}");
        assert_eq!((source.file.file_name().unwrap().to_str(), source.line), (Some("prog.c"), line_of(marker)));
    }
}

#[test]
fn a_traced_c_program_explains_its_calls_by_source_line() {
    if !tools_present("a_traced_c_program_explains_its_calls_by_source_line") {
        return;
    }
    for pie in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        check_program(dir.path(), pie);
    }
}
