//! The program's layer end to end (issue 14): `brink record` records the workload's
//! system calls with its block I/O, `show --syscalls` lists them with the source line of
//! each and the marks in place, `verify` reads them back, and `--no-syscalls` records a
//! trace without them that everything else reads as before.

use std::path::{Path, PathBuf};
use std::process::Command;

use brink_testkit::{Need, can_run};

use crate::{Scratch, run, stderr};

/// The atomic-replace bug in C: the rename is acknowledged before its directory is
/// fsynced. `RENAME` marks the line of the rename.
const PROGRAM: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    int fd = open("file.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "new\n", 4) != 4 || fsync(fd) != 0) return 1;
    close(fd);
    if (rename("file.tmp", "file") != 0) return 1; /* RENAME */
    FILE *mark = fopen(getenv("BRINK_MARK"), "w");
    fputs("replaced\n", mark);
    fclose(mark);
    return 0;
}
"#;

fn needs(test: &str) -> bool {
    can_run(test, &[Need::Root, Need::Fuse, Need::Loop, Need::Program("gcc"), Need::Program("strace")])
}

/// The program compiled with `-g` into the scratch directory; and the line of `RENAME`.
fn compile(s: &Scratch) -> (PathBuf, usize) {
    let src = s.path("replace.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let bin = s.path("replace");
    let o = Command::new("gcc").args(["-g", "-O0", "-o"]).arg(&bin).arg(&src).output().unwrap();
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    let line = PROGRAM.lines().position(|l| l.contains("RENAME")).unwrap() + 1;
    (bin, line)
}

fn record(s: &Scratch, bin: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let trace = s.path(out);
    let o = run(s.record(extra).arg("-o").arg(&trace).arg("--").arg(bin));
    assert!(o.status.success(), "{}", stderr(&o));
    trace
}

#[test]
fn show_syscalls_names_each_call_and_its_source_line_with_marks_in_place() {
    if !needs("show_syscalls_names_each_call_and_its_source_line_with_marks_in_place") {
        return;
    }
    let s = Scratch::new();
    let (bin, line) = compile(&s);
    let t = record(&s, &bin, "t", &[]);
    let o = run(crate::brink().args(["show", "--syscalls", "--json"]).arg(&t));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let calls = v["calls"].as_array().unwrap();
    let text = |c: &serde_json::Value| c["text"].as_str().unwrap_or_default().to_string();
    let rename = calls.iter().position(|c| text(c).starts_with("rename(file.tmp → file)")).expect("the rename");
    let at = calls[rename]["at"].as_str().unwrap();
    assert!(at.ends_with(&format!("/replace.c:{line} in main")), "{at}");
    let mark = calls.iter().position(|c| c["mark"] == "replaced").expect("the mark");
    assert!(rename < mark, "the mark comes after the rename");
    let fsync = calls.iter().position(|c| text(c) == "fsync(file.tmp)").expect("the fsync");
    assert!(fsync < rename);
    assert!(v["untraceable"].as_array().unwrap().is_empty());
    // The table says the same for people; verify reads the calls back.
    let o = run(crate::brink().args(["show", "--syscalls"]).arg(&t));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains(&format!("replace.c:{line} in main")), "{table}");
    assert!(table.contains("── mark \"replaced\" ──"), "{table}");
    let o = run(crate::brink().arg("verify").arg(&t));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_trace_recorded_without_syscalls_works_as_before_and_says_so() {
    if !needs("a_trace_recorded_without_syscalls_works_as_before_and_says_so") {
        return;
    }
    let s = Scratch::new();
    let (bin, _) = compile(&s);
    let t = record(&s, &bin, "t", &["--no-syscalls"]);
    assert!(!t.join("calls.log").exists());
    let o = run(crate::brink().arg("show").arg(&t));
    assert!(String::from_utf8_lossy(&o.stdout).contains("calls          not recorded"));
    let o = run(crate::brink().args(["show", "--syscalls"]).arg(&t));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("brink: ") && err.contains("holds no system calls") && err.lines().count() == 1, "{err}");
    let o = run(crate::brink().arg("verify").arg(&t));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `brink lint` on the suite's atomic-replace workloads (shell scripts run as the suite
/// runs them): the buggy one has the rename acknowledged before its directory is fsynced,
/// one finding for its three versions, at the script's `mv` line; the fixed one has none.
#[test]
fn lint_finds_the_rename_without_dir_fsync_at_its_script_line_and_nothing_when_fixed() {
    if !needs("lint_finds_the_rename_without_dir_fsync_at_its_script_line_and_nothing_when_fixed") {
        return;
    }
    let s = Scratch::new();
    let workloads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workloads").canonicalize().unwrap();
    for (name, findings) in [("atomic-replace-buggy", 1), ("atomic-replace-fixed", 0)] {
        let dir = workloads.join(name);
        let setup = format!("sh {}", dir.join("setup.sh").display());
        let t = s.path(name);
        let o = run(s.record(&["--setup", &setup, "-o"]).arg(&t).arg("--").arg("sh").arg(dir.join("workload.sh")));
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(crate::brink().args(["lint", "--json"]).arg(&t));
        assert_eq!(o.status.code(), Some(i32::from(findings > 0)), "{name}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let found = v["findings"].as_array().unwrap();
        assert_eq!(found.len(), findings, "{name}: {found:#?}");
        if findings == 0 {
            continue;
        }
        let script = std::fs::read_to_string(dir.join("workload.sh")).unwrap();
        let mv_line = script.lines().position(|l| l.trim_start().starts_with("mv config.tmp config")).unwrap() + 1;
        let f = &found[0];
        assert_eq!(f["kind"], "rename-without-dir-fsync");
        assert_eq!(f["count"], 3);
        let site = &f["calls"][0]["site"]["source"];
        assert_eq!(site["line"], mv_line as u64, "{f:#?}");
        assert!(site["file"].as_str().unwrap().ends_with("atomic-replace-buggy/workload.sh"), "{f:#?}");
        let message = f["message"].as_str().unwrap();
        assert!(message.contains(&format!("workload.sh:{mv_line}")) && message.contains("config v1"), "{message}");
    }
}
