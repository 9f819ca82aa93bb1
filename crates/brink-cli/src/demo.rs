//! `brink demo`: the first thing a new user runs. The bundled atomic-replace workloads
//! (buggy: rename without fsync of the directory; fixed: with it) are recorded on ext4
//! in its three data modes, every crash state is checked, and the table shows the bug
//! caught and the fix clean, with the command that replays a failing state. The
//! workloads and their checker are the suite's own files, compiled into the binary, so
//! the demo needs nothing outside it and can never drift from the suite.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use brink_suite::{Outcome, RunOpts};

use crate::progress::Bars;

/// (path under the demo's folder, contents, executable)
const FILES: &[(&str, &str, bool)] = &[
    (
        "workloads/atomic-replace-buggy/workload.toml",
        include_str!("../../../workloads/atomic-replace-buggy/workload.toml"),
        false,
    ),
    (
        "workloads/atomic-replace-buggy/workload.sh",
        include_str!("../../../workloads/atomic-replace-buggy/workload.sh"),
        true,
    ),
    ("workloads/atomic-replace-buggy/setup.sh", include_str!("../../../workloads/atomic-replace-buggy/setup.sh"), true),
    (
        "workloads/atomic-replace-fixed/workload.toml",
        include_str!("../../../workloads/atomic-replace-fixed/workload.toml"),
        false,
    ),
    (
        "workloads/atomic-replace-fixed/workload.sh",
        include_str!("../../../workloads/atomic-replace-fixed/workload.sh"),
        true,
    ),
    ("workloads/atomic-replace-fixed/setup.sh", include_str!("../../../workloads/atomic-replace-fixed/setup.sh"), true),
    ("checkers/atomic-replace/check.sh", include_str!("../../../checkers/atomic-replace/check.sh"), true),
];

fn unpack(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (rel, text, exec) in FILES {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("relative paths have parents"))?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        if *exec {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

pub fn demo(output: Option<PathBuf>, interrupt: brink_record::Interrupt) -> Result<i32> {
    let out = match output {
        Some(o) => {
            brink_suite::fresh_dir(&o)?;
            o
        }
        // Kept on purpose: the replay command printed at the end points into it.
        None => tempfile::Builder::new().prefix("brink-demo-").tempdir()?.keep(),
    };
    let src = out.join("src");
    unpack(&src)?;
    crate::emit(
        "brink demo: two bundled workloads replace a file the classic way: write a temporary\n\
         file, fsync it, rename it over the old one, acknowledge. The buggy one never fsyncs\n\
         the directory; the fixed one does, before acknowledging. Each is recorded on ext4 in\n\
         its three data modes, and every crash state a power cut could leave is recovered by\n\
         the kernel and checked.\n\n",
    )?;
    let mut selected = Vec::new();
    for name in ["atomic-replace-buggy", "atomic-replace-fixed"] {
        let w = brink_suite::load(&src.join("workloads").join(name), &src.join("checkers"))?;
        // ext4 only: its tools are everywhere, and three data modes make the point.
        let modes = w.modes.iter().filter(|m| m.fs == brink_blockdev::FsKind::Ext4).cloned().collect();
        selected.push((w, modes));
    }
    let opts = RunOpts::new(crate::suite::jobs(None)?, interrupt);
    let rows = brink_suite::run_workloads(&selected, &|w, m| out.join(&w.name).join(&m.name), &opts, &Bars)?;
    brink_suite::write_tables(&out, &rows, "brink demo", env!("CARGO_PKG_VERSION"))?;
    let ok = rows.iter().all(|r| r.outcome == Outcome::Pass);
    let mut text = brink_suite::render_text(&rows);
    let caught = rows.iter().find(|r| r.violations > 0 && r.example.is_some());
    if let Some((r, e)) = caught.and_then(|r| Some((r, r.example.as_ref()?))) {
        let fixed_clean = rows.iter().filter(|r| r.workload.ends_with("fixed")).all(|r| r.violations == 0);
        text += &format!(
            "\n{} the rename without a directory fsync lost an acknowledged version{}.\n\
             Replay that crash state (recovered by the kernel, left mounted):\n  brink replay {} {} -o /tmp/brink-state\n",
            if ok { "As expected:" } else { "Caught:" },
            if fixed_clean { "; the fix is clean in every mode" } else { "" },
            r.trace.display(),
            e.state
        );
    }
    text += &format!("Everything is in {} (brink report DIR/results for one mode).\n", out.display());
    crate::emit(&text)?;
    Ok(if ok { 0 } else { 1 })
}
