//! Defaults of an exploration's settings, in one place: the binary's flags and the
//! suite's manifests default to these rather than to literals of their own. Two depend on
//! the machine and are decided here too, so that every front end (the binary, the suite,
//! a test) decides them the same way: how many states to check at once ([`jobs`]), and
//! whether the kernel can recover states here or e2fsprogs must do it in userspace
//! ([`recovery_auto`]).

use std::path::Path;
use std::time::Duration;

use crate::Recovery;

/// Exhaustive runs with more states than this are refused (`ExploreConfig::max_states`).
pub const STATES_MAX: u128 = 1_000_000;
/// How long a checker may run on one state (`ExploreConfig::checker_timeout`): the
/// checker protocol's own default.
pub const CHECKER_TIMEOUT: Duration = brink_check::TIMEOUT_DEFAULT;
/// The longest checker timeout accepted: a day (settings.rs).
pub const CHECKER_TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);
/// The longest time budget accepted: a year (settings.rs).
pub const TIME_BUDGET_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most jobs accepted: each holds a slot, a loop device and a mount at once.
pub const JOBS_MAX: usize = 256;
/// States the `sample` strategy draws.
pub const SAMPLES: u64 = 1000;
/// Volatile writes the `omit-k` strategy may drop.
pub const OMIT_K: u32 = 2;
/// Jobs per CPU: a state spends most of its time waiting on the kernel and the FUSE
/// disk rather than computing, so twice the CPUs keeps them busy.
pub const JOBS_PER_CPU: usize = 2;

/// A number of jobs that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    #[error("the number of jobs must be at least 1")]
    Zero,
}

/// [`JOBS_PER_CPU`] times the CPUs this process may use (one CPU if that is unknown).
pub fn jobs_default() -> usize {
    JOBS_PER_CPU * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The number of jobs asked for, or [`jobs_default`]; zero is refused.
pub fn jobs(asked: Option<usize>) -> Result<usize, JobsError> {
    match asked.unwrap_or_else(jobs_default) {
        0 => Err(JobsError::Zero),
        n => Ok(n),
    }
}

/// True if this process can mount crash states: it runs as root and the machine has
/// `/dev/fuse` and loop devices.
pub fn can_mount() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
    root && Path::new("/dev/fuse").exists() && Path::new("/dev/loop-control").exists()
}

/// The recovery to use when none is asked for: the kernel where it can mount (see
/// [`can_mount`]), else userspace.
pub fn recovery_auto() -> Recovery {
    if can_mount() { Recovery::Kernel } else { Recovery::Userspace }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_the_asked_number_or_a_positive_default() {
        assert_eq!(jobs(Some(3)), Ok(3));
        assert_eq!(jobs(Some(0)), Err(JobsError::Zero));
        assert!(jobs(None).unwrap() >= JOBS_PER_CPU);
    }
}
