//! End-to-end tests of the `brink` binary on real kernel file systems (issue 2).
//!
//! Tests that mount need root, `/dev/fuse` and loop devices. Where those are missing
//! they fail with a message saying so; `BRINK_SKIP_PRIVILEGED=1` turns that into a loud
//! SKIPPED line on stderr instead, for machines that cannot run them.

mod calls;
mod cleanup;
mod cluster;
mod errors;
mod explore;
mod import;
mod inject;
mod inputs;
mod kill9;
mod logical;
mod record;
mod shard;
mod signals;
mod suite;
mod triage;
mod vulns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Held by tests that briefly leave a dead FUSE mount in the system's mount table (a
/// SIGKILLed brink, until its watchdog cleans up) and by tests running tools that stat
/// every mount and fail on a dead one (mkfs.btrfs).
pub static MOUNT_TABLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn brink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brink"))
}

/// True if privileged tests can run here (`brink_testkit`'s rule otherwise).
pub fn privileged(test: &str) -> bool {
    brink_testkit::can_run(test, &brink_testkit::Need::KERNEL)
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run brink")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn show_json(trace: &Path) -> serde_json::Value {
    let o = run(brink().arg("show").arg("--json").arg(trace));
    assert!(o.status.success(), "show failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("show --json prints JSON")
}

/// No mount and no loop device refers to anything under the scratch directory (mount
/// points compared unescaped: the kernel writes a space as `\040`).
pub fn assert_no_mounts_or_loops(s: &Scratch) {
    let left = brink_blockdev::mount_points_under(s.dir.path());
    assert!(left.is_empty(), "mounts left behind: {left:?}");
    let loops: Vec<_> =
        brink_blockdev::attached_loop_devices().into_iter().filter(|(_, b)| b.starts_with(s.dir.path())).collect();
    assert!(loops.is_empty(), "loop devices left behind: {loops:?}");
}

/// A scratch directory with its own TMPDIR, so a test can check that brink left
/// nothing in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::Builder::new().prefix("brink-test-").tempdir().expect("tempdir") }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn tmpdir(&self) -> PathBuf {
        let t = self.path("tmp");
        std::fs::create_dir_all(&t).expect("mkdir tmp");
        t
    }
    /// `brink record` with TMPDIR inside the scratch directory.
    pub fn record(&self, args: &[&str]) -> Command {
        let mut c = brink();
        c.env("TMPDIR", self.tmpdir()).arg("record").args(args);
        c
    }
}
