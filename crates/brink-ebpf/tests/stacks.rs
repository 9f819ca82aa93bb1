//! Stacks unwound from the kernel half's copy: a small C program built with `gcc -g -O2`
//! (no frame pointers, as Debian builds its packages), as a PIE and a non-PIE
//! executable, with a call made from a thread and one from a function three calls deep;
//! the symbolized frames must name the source lines that made them, whether the objects'
//! places come from the memory map the tracer read or from the calls.

use std::path::Path;
use std::process::Command;

use brink_calls::{Call, CallKind, Symbolizer};
use brink_ebpf::Options;
use brink_testkit::{Need, can_run};

mod common;

const PROGRAM: &str = r#"#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *worker(void *arg) {
    int fd = open("thread.log", O_WRONLY | O_CREAT | O_TRUNC, 0644); /* WORKER OPEN */
    write(fd, "t\n", 2);
    close(fd);
    return arg;
}

static volatile int sink;

__attribute__((noinline)) static int deep(int n) {
    if (n > 0) return deep(n - 1) + 1;
    sink = rename("tmp", "data"); /* RENAME */
    return sink;
}

int main(void) {
    char big[3000];
    snprintf(big, sizeof big, "%d", getpid());
    int fd = open("tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, big, 4);
    close(fd);
    deep(3);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    return 0;
}
"#;

fn line_of(marker: &str) -> u32 {
    u32::try_from(PROGRAM.lines().position(|l| l.contains(marker)).unwrap() + 1).unwrap()
}

/// Build the program (`pie` or not), run it under the tracer, decode and symbolize;
/// `from_calls`: without the memory maps the tracer read, as for a process that ended
/// before it could read them (the objects' places then come from the calls).
fn traced(dir: &Path, pie: bool, from_calls: bool) -> Vec<Call> {
    std::fs::write(dir.join("prog.c"), PROGRAM).unwrap();
    let exe = dir.join("prog");
    let pie_flag = if pie { "-pie" } else { "-no-pie" };
    let mut gcc = Command::new("gcc");
    gcc.args(["-g", "-O2", "-pthread", pie_flag, "-o"]).arg(&exe).arg(dir.join("prog.c"));
    assert!(gcc.status().unwrap().success(), "gcc failed");
    let mut cmd = Command::new(&exe);
    cmd.current_dir(dir);
    let opts = Options { stacks: true, unwind_live: !from_calls };
    let (_, mut events) = common::run_traced(&format!("stacks-{pie}"), cmd, &dir.join("events"), opts);
    if from_calls {
        events.retain(|e| !matches!(e, brink_ebpf::events::Event::Maps { .. }));
    }
    let decoded = brink_ebpf::decode(events, dir.as_os_str().as_encoded_bytes(), None);
    assert!(decoded.notes.is_empty(), "{:?}", decoded.notes);
    let mut calls = decoded.parsed.calls;
    let mut symbolizer = Symbolizer::new();
    calls.iter_mut().for_each(|c| symbolizer.symbolize_call(c));
    calls
}

fn line_of_call(calls: &[Call], what: impl Fn(&CallKind) -> bool) -> Option<u32> {
    let call = calls.iter().find(|c| what(&c.kind))?;
    call.user_frame().and_then(|f| f.source.as_ref()).map(|s| s.line)
}

#[test]
fn stacks_name_the_source_lines_of_calls_in_pie_and_non_pie_programs() {
    let test = "stacks_name_the_source_lines_of_calls_in_pie_and_non_pie_programs";
    if !can_run(test, &[Need::Root, Need::Program("gcc")]) {
        return;
    }
    for (pie, from_calls) in [(true, false), (false, false), (true, true), (false, true)] {
        let dir = tempfile::tempdir().unwrap();
        let calls = traced(dir.path(), pie, from_calls);
        let rename = line_of_call(&calls, |k| matches!(k, CallKind::Rename { .. }));
        assert_eq!(rename, Some(line_of("RENAME")), "pie {pie}, maps from the calls {from_calls}");
        let thread_open =
            line_of_call(&calls, |k| matches!(k, CallKind::Open { path, .. } if path.as_slice() == b"thread.log"));
        assert_eq!(thread_open, Some(line_of("WORKER OPEN")), "pie {pie}, maps from the calls {from_calls}");
        let renames = calls.iter().find(|c| matches!(c.kind, CallKind::Rename { .. })).unwrap();
        let depth = renames.stack.iter().filter(|f| f.function.as_deref() == Some("deep")).count();
        assert!(depth >= 1, "the recursion is unwound: {:?}", renames.stack);
    }
}
