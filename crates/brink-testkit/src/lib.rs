//! What brink's tests share: one rule for a test that needs what a machine may lack
//! (root, `/dev/fuse`, loop devices, cgroup v2, a program). Such a test runs where it can;
//! elsewhere it fails, saying what is missing, unless `BRINK_SKIP_PRIVILEGED=1` asks to
//! skip it, and then it says `SKIPPED` loudly. A test never passes silently for want of
//! what it tests. A dev-dependency only.

#![forbid(unsafe_code)]

use std::path::Path;

/// The environment variable that turns a missing need into a loud skip.
pub const SKIP_VAR: &str = "BRINK_SKIP_PRIVILEGED";

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Root,
    /// `/dev/fuse`: brink's FUSE disks.
    Fuse,
    /// `/dev/loop-control`: loop devices.
    Loop,
    /// A program on `PATH` (or in an sbin directory).
    Program(&'static str),
}

impl Need {
    /// The usual needs of a test that records or recovers on the kernel.
    pub const KERNEL: [Need; 3] = [Need::Root, Need::Fuse, Need::Loop];

    fn met(self) -> bool {
        match self {
            Need::Root => nix::unistd::geteuid().is_root(),
            Need::Fuse => Path::new("/dev/fuse").exists(),
            Need::Loop => Path::new("/dev/loop-control").exists(),
            Need::Program(p) => find_program(p),
        }
    }

    fn name(self) -> String {
        match self {
            Need::Root => "root".into(),
            Need::Fuse => "/dev/fuse".into(),
            Need::Loop => "/dev/loop-control".into(),
            Need::Program(p) => p.into(),
        }
    }
}

/// Whether `program` is on `PATH` or in an sbin directory.
fn find_program(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from);
    std::env::split_paths(&path).chain(sbin).any(|d| d.join(program).is_file())
}

/// True if every need of `test` is met. Otherwise: with [`SKIP_VAR`]`=1`, prints
/// `SKIPPED <test> needs …` and returns false; without, panics naming what is missing.
pub fn can_run(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> = needs.iter().filter(|n| !n.met()).map(|n| n.name()).collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(test, &format!("it lacks {}", missing.join(", ")))
}

/// The rule for a test that cannot run here for a reason `why` (a sentence fragment):
/// skip loudly with [`SKIP_VAR`]`=1` (returns false), else panic.
pub fn skip_or_fail(test: &str, why: &str) -> bool {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {why}");
        return false;
    }
    panic!(
        "{test} cannot run here: {why}; run the tests as root with setup.sh's packages, as CI does, or set {SKIP_VAR}=1 to skip them loudly"
    );
}
