//! The built-in `fsck` checker: the file system's own checker, read-only, on the
//! recovered (unmounted) image.
//! Verifies: the on-disk structures are consistent after recovery.
//! Not verified: anything about file contents or the application's promises.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brink_blockdev::{FsKind, find_program};

use crate::run::{CheckRun, Finished, error_line, failure};
use crate::{CheckOutcome, Jail, Verdict};

/// The program and arguments that check `device` without changing it.
pub fn fsck_command(fs: FsKind, device: &Path) -> (&'static str, Vec<String>) {
    let dev = device.display().to_string();
    match fs {
        FsKind::Ext4 => ("e2fsck", vec!["-f".into(), "-n".into(), dev]),
        FsKind::Xfs => ("xfs_repair", vec!["-n".into(), dev]),
        FsKind::Btrfs => ("btrfs", vec!["check".into(), "--readonly".into(), dev]),
    }
}

/// Exit codes that mean "problems found" (a violation) for each checker.
fn found_problems(fs: FsKind, code: i32) -> bool {
    match fs {
        // 4: errors left uncorrected (-n); 1 and 2 cannot happen with -n but mean the same.
        FsKind::Ext4 => matches!(code, 1 | 2 | 4),
        FsKind::Xfs | FsKind::Btrfs => code == 1,
    }
}

/// The first line of the checker's report that names a problem.
fn problem_line(out: &str) -> String {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find(|l| {
            !(l.starts_with("Pass ")
                || l.starts_with("e2fsck ")
                || l.starts_with("Phase ")
                || l.starts_with("Opening ")
                || l.starts_with("Checking ")
                || l.starts_with("[")
                || l.contains("files,")
                || l.starts_with("No modify flag"))
        })
        .unwrap_or("problems found")
        .to_string()
}

pub(crate) fn fsck_in(jail: &Jail, fs: FsKind, device: &Path, timeout: Duration) -> CheckRun {
    let (prog, args) = fsck_command(fs, device);
    let run = |verdict, message: String, ms, f: Option<&Finished>| CheckRun {
        outcome: CheckOutcome { checker: "fsck".into(), verdict, message, details: None, ms },
        stopped: f.map(|f| f.stopped).unwrap_or_default(),
        interrupted: f.is_some_and(|f| f.interrupted),
    };
    let Some(path) = find_program(prog) else {
        return run(Verdict::CheckerFailure, format!("{prog} not found: install {}", fs.package()), 0, None);
    };
    let mut cmd = Command::new(path);
    cmd.args(&args);
    let f = match jail.run_bounded(cmd, None, timeout) {
        Ok(f) => f,
        Err(e) => return run(Verdict::CheckerFailure, error_line(&e), 0, None),
    };
    match f.status.and_then(|s| s.code()) {
        Some(0) => run(Verdict::Consistent, String::new(), f.ms, Some(&f)),
        Some(c) if found_problems(fs, c) => {
            let text = format!("{}\n{}", f.stdout, f.stderr);
            run(Verdict::Violation, format!("{prog}: {}", problem_line(&text)), f.ms, Some(&f))
        }
        _ => {
            let why = failure(&f, timeout).unwrap_or_else(|| "unexpected exit".into());
            run(Verdict::CheckerFailure, why, f.ms, Some(&f))
        }
    }
}
