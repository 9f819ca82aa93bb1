//! The lint on real programs: small C programs, each with a mistake and its fixed
//! version (`-DFIXED`), built with `gcc -g`, run under strace by `brink_calls`, their
//! traces parsed, symbolized and linted (`programs.rs`); and `brink-calls`' committed
//! traces linted for robustness (`fixtures.rs`). Needs strace and gcc; without them a
//! test fails saying so, or with `BRINK_SKIP_PRIVILEGED=1` skips loudly.

mod fixtures;
mod programs;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use brink_calls::{Symbolizer, TraceOptions, parse_file, strace_args};
use brink_lint::{Finding, LintKind, LintOptions, lint_with};
use brink_testkit::Need;

/// What every program starts with: the includes, and `ack(text)`, which appends
/// `text` and a newline to `$BRINK_MARK` in one write.
pub const PRELUDE: &str = r#"#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int mark_fd = -1;

static void ack(const char *text) {
    char line[256];
    if (mark_fd < 0)
        mark_fd = open(getenv("BRINK_MARK"), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int n = snprintf(line, sizeof line, "%s\n", text);
    if (write(mark_fd, line, n) != n)
        exit(2);
}
"#;

/// Whether this machine can run the test.
pub fn can_run(test: &str) -> bool {
    brink_testkit::can_run(test, &[Need::Program("strace"), Need::Program("gcc")])
}

/// A program's whole source: the prelude, then `body`.
pub fn source(body: &str) -> String {
    format!("{PRELUDE}{body}")
}

/// The 1-based line of `source` holding `marker` (exactly one line must).
pub fn line_of(source: &str, marker: &str) -> u32 {
    let lines: Vec<usize> = source.lines().enumerate().filter(|(_, l)| l.contains(marker)).map(|(i, _)| i).collect();
    assert_eq!(lines.len(), 1, "marker {marker} on lines {lines:?}");
    u32::try_from(lines[0] + 1).unwrap()
}

/// A traced run of one program.
pub struct Run {
    pub findings: Vec<Finding>,
    pub source_file: PathBuf,
    /// The acknowledgements the program wrote, as the mark file holds them.
    pub marks: String,
    _dir: tempfile::TempDir,
}

impl Run {
    /// The findings of `kind`.
    pub fn of(&self, kind: LintKind) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.kind == kind).collect()
    }

    /// Every finding, one a line, for assertion messages.
    pub fn report(&self) -> String {
        self.findings.iter().map(|f| format!("{f}\n")).collect()
    }

    /// Asserts one finding of `kind`, at `line` of the program, and returns it.
    pub fn one_at(&self, kind: LintKind, line: u32) -> &Finding {
        let found = self.of(kind);
        assert_eq!(found.len(), 1, "want one {kind}, got:\n{}", self.report());
        let finding = found[0];
        let brink_lint::Site::Source { file, line: at, .. } = &finding.site else {
            panic!("no source line: {finding:?}")
        };
        assert_eq!((file.as_path(), *at), (self.source_file.as_path(), line), "{}", self.report());
        finding
    }
}

/// Builds `source` (with `-DFIXED` if `fixed`) in a temporary directory, runs it under
/// strace (with `strace_extra` before the workload, such as a fault injection) in a
/// `work` directory there, with `BRINK_MARK` outside it, and lints the trace.
pub fn run(source: &str, fixed: bool, strace_extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let source_file = root.join("prog.c");
    std::fs::write(&source_file, source).unwrap();
    let exe = root.join("prog");
    let mut gcc = Command::new("gcc");
    gcc.args(["-g", "-O0", "-Wall", "-o"]).arg(&exe).arg(&source_file);
    if fixed {
        gcc.arg("-DFIXED");
    }
    let built = gcc.output().unwrap();
    assert!(built.status.success(), "gcc failed: {}", String::from_utf8_lossy(&built.stderr));
    let (work, mark, out) = (root.join("work"), root.join("mark"), root.join("trace.strace"));
    std::fs::create_dir(&work).unwrap();
    let status = traced(&exe, &work, &mark, &out, strace_extra);
    assert!(status.success(), "the traced program failed: {status}");
    let mut calls = parse_file(&out).unwrap().calls;
    let mut symbolizer = Symbolizer::new();
    for call in &mut calls {
        symbolizer.symbolize_call(call);
    }
    let findings = lint_with(&calls, &LintOptions::new(&mark).base_dir(&work));
    let marks = std::fs::read_to_string(&mark).unwrap_or_default();
    Run { findings, source_file, marks, _dir: dir }
}

fn traced(exe: &Path, work: &Path, mark: &Path, out: &Path, extra: &[&str]) -> std::process::ExitStatus {
    let workload = [OsString::from(exe)];
    let mut args = strace_args(&workload, out, &TraceOptions::default()).unwrap();
    let at = args.iter().position(|a| a == "-o").unwrap();
    args.splice(at..at, extra.iter().map(OsString::from));
    Command::new(brink_calls::STRACE_PROGRAM)
        .args(args)
        .current_dir(work)
        .env("BRINK_MARK", mark)
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap()
}
