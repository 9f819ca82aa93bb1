//! The kernel half on a real process: what it records of a small shell workload.

use std::path::Path;
use std::process::Command;

use brink_ebpf::Options;
use brink_ebpf::events::Event;
use brink_testkit::{Need, can_run};

mod common;

/// Run `script` with `sh -c` in `dir` under the tracer; its events.
fn trace(name: &str, dir: &Path, script: &str, stacks: bool) -> Vec<Event> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(dir);
    let opts = Options { stacks, ..Options::default() };
    let (stats, events) = common::run_traced(name, cmd, &dir.join("events"), opts);
    assert_eq!((stats.dropped, stats.records > 0), (0, true), "{stats:?}");
    events
}

/// The bytes of a string record (`string`) or of a data record, if readable.
fn readable(e: &Event, string: bool) -> Option<&[u8]> {
    match (e, string) {
        (Event::Str { bytes: Some(b), .. }, true) | (Event::Data { bytes: Some(b), .. }, false) => Some(b.as_slice()),
        _ => None,
    }
}

#[test]
fn a_write_its_path_and_its_data_are_recorded_in_order() {
    if !can_run("a_write_its_path_and_its_data_are_recorded_in_order", &[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = trace("write", dir.path(), "printf hello > f && mv f g", true);
    // The readable bytes of the string and the data records.
    let bytes = |string: bool| -> Vec<&[u8]> { events.iter().filter_map(|e| readable(e, string)).collect() };
    let strs = bytes(true);
    assert!(strs.contains(&b"f".as_slice()) && strs.contains(&b"g".as_slice()), "{strs:?}");
    let data = bytes(false);
    assert!(data.contains(&b"hello".as_slice()), "{data:?}");
    // Stacks are unwound as they arrive: the events hold frames, not the copies.
    let unwound = |e: &&Event| matches!(e, Event::Return { frames: Some((f, _)), stack, .. } if !f.is_empty() && stack.is_empty());
    assert!(events.iter().filter(unwound).count() > 0);
}

/// The calls inside `dir` as `brink show --syscalls` lists them.
fn listed(calls: &[brink_calls::Call], dir: &Path) -> Vec<String> {
    let place = brink_calls::Place { cwd: dir.as_os_str().as_encoded_bytes(), mark_file: b"/nonexistent" };
    brink_calls::listing(calls, place).0.into_iter().map(|s| format!("{} {} = {}", s.name, s.text, s.result)).collect()
}

/// `script` under strace, as `brink record` ran it before this crate.
fn strace_calls(dir: &Path, script: &str) -> Vec<brink_calls::Call> {
    let out = dir.join("strace.out");
    let opts = brink_calls::TraceOptions { stacks: false, ..Default::default() };
    let argv = ["sh", "-c", script].map(std::ffi::OsString::from);
    let mut cmd = brink_calls::strace_command(&argv, &out, &opts).unwrap();
    assert!(cmd.current_dir(dir).status().unwrap().success());
    let mut calls = brink_calls::parse_file(&out).unwrap().calls;
    // The kernel half traces only the fcntl commands that change descriptors or flags.
    calls.retain(|c| match &c.kind {
        brink_calls::CallKind::Fcntl { cmd, .. } => cmd == "F_SETFL" || cmd == "F_SETFD",
        _ => true,
    });
    calls
}

#[test]
fn the_calls_decode_as_strace_would_give_them() {
    if !can_run("the_calls_decode_as_strace_would_give_them", &[Need::Root, Need::Program("strace")]) {
        return;
    }
    let script = "mkdir d && cd d && printf hello > f && mv f g && ln g h && rm h && sync -f g && \
                  python3 -c 'import os; fd = os.open(\"log\", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644); \
                  os.write(fd, b\"x\" * 10000); os.writev(fd, [b\"ab\", b\"cd\"]); os.fsync(fd); os.rename(\"log\", \"log2\"); os.fdatasync(fd)'";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let strace = listed(&strace_calls(a.path(), script), a.path());
    let events = trace("decode", b.path(), script, false);
    let decoded = brink_ebpf::decode(events, b.path().as_os_str().as_encoded_bytes(), None);
    assert!(decoded.notes.is_empty(), "{:?}", decoded.notes);
    let ebpf = listed(&decoded.parsed.calls, b.path());
    assert_eq!(ebpf, strace);
}
