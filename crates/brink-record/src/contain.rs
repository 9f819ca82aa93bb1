//! Containment of the recorder's children (mkfs, the setup command, the workload): every
//! process they start, daemons that leave the process group and session included, is
//! found and stopped before the file system is unmounted. One such process left running
//! keeps its working directory in the mount; the unmount then fails, and after a
//! `kill -9` of brink it pins the lazily detached file system and its loop device.
//!
//! The children run in one cgroup v2, `<cgroup2>/brink-record-<pid>`, joined between fork
//! and exec ([`Cgroup::join_on_exec`]), so nothing they start can be outside it. After
//! each child (or on an interrupt) every process left gets SIGTERM (read while the cgroup
//! is frozen, so no id is reused before it is signalled), a grace period, then
//! `cgroup.kill`. The watchdog (`brink_blockdev::fusectl`) is told the cgroup, and kills
//! it first if brink itself is killed.
//!
//! Where cgroup v2 is unavailable, the process group stands in for it (each child is the
//! leader of its own), and [`Workgroup::note`] says so once: a daemon that leaves the
//! group is then not stopped. The group's id is written to a file the watchdog reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use brink_blockdev::cgroup::{
    Cgroup, CgroupError, KILL_WAIT_MAX, STOP_GRACE, STOP_GRACE_INTERRUPTED, cgroup2_mount, wait_until,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::RecordError;

/// The prefix of the recorder's cgroups; the process id follows, then `.N` (the N-th
/// recording of that process: recordings in one process, as in tests, run side by side).
const CGROUP_PREFIX: &str = "brink-record-";

/// Where the recorder's children run: a cgroup, or process groups as a fallback.
#[derive(Debug)]
pub(crate) struct Workgroup {
    cgroup: Option<Cgroup>,
    /// Why there is no cgroup.
    note: Option<String>,
    /// Holds the id of the running child's process group, for the watchdog.
    pgid_file: PathBuf,
}

impl Workgroup {
    /// A cgroup of this process where possible; `pgid_file` is written in fallback mode.
    pub(crate) fn new(pgid_file: PathBuf, planned: Option<&Path>) -> Workgroup {
        match create_cgroup(planned) {
            Ok(cg) => Workgroup { cgroup: Some(cg), note: None, pgid_file },
            Err(why) => Workgroup {
                cgroup: None,
                note: Some(format!(
                    "{why}; the workload's processes are found by process group (a daemon that leaves it is not \
                     stopped)"
                )),
                pgid_file,
            },
        }
    }

    /// The cgroup v2 the children run in, if there is one.
    pub(crate) fn cgroup_path(&self) -> Option<&Path> {
        self.cgroup.as_ref().map(Cgroup::path)
    }

    /// Why cgroup v2 is not used, as one line to print once; None when it is used.
    pub(crate) fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Make `cmd` start in its own process group, and in the cgroup if there is one.
    pub(crate) fn prepare(&self, cmd: &mut Command, what: &str) -> Result<(), RecordError> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        if let Some(cg) = &self.cgroup {
            cg.join_on_exec(cmd).map_err(|e| RecordError::Failed(format!("cannot contain {what}: {e}")))?;
        }
        Ok(())
    }

    /// The child whose process group is `pgid` has started.
    pub(crate) fn started(&self, pgid: u32) {
        if self.cgroup.is_none() {
            // Best effort: without the file the watchdog cannot kill the group.
            let _ = std::fs::write(&self.pgid_file, pgid.to_string());
        }
    }

    /// Stop `child` and every process it left: SIGTERM, a grace period (shorter if
    /// `interrupted`), then SIGKILL. The child is reaped once it exits (its zombie would
    /// keep its process group alive).
    pub(crate) fn stop(&self, child: &mut Child, interrupted: bool) {
        let grace = if interrupted { STOP_GRACE_INTERRUPTED } else { STOP_GRACE };
        match &self.cgroup {
            Some(cg) => stop_cgroup(cg, grace),
            None => {
                let group = Pid::from_raw(child.id() as i32);
                let mut gone = || {
                    let _ = child.try_wait();
                    killpg(group, None) == Err(Errno::ESRCH)
                };
                if !gone() {
                    let _ = killpg(group, Signal::SIGTERM);
                    if !wait_until(grace, &mut gone) {
                        let _ = killpg(group, Signal::SIGKILL);
                        wait_until(KILL_WAIT_MAX, gone);
                    }
                }
                let _ = std::fs::remove_file(&self.pgid_file);
            }
        }
    }
}

impl Drop for Workgroup {
    fn drop(&mut self) {
        if let Some(cg) = &self.cgroup {
            cg.remove_tree();
        }
    }
}

/// Why the recorder cannot use cgroup v2.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("cgroup v2 is unavailable: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("the kernel's cgroup v2 has no cgroup.kill (Linux 5.14 or later has)")]
    NoKill,
}

/// The cgroup this process's children run in, if cgroup v2 is mounted: known before it
/// exists, so that the watchdog, started first, is told it.
pub(crate) fn planned_cgroup() -> Option<PathBuf> {
    static RECORDINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RECORDINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(cgroup2_mount().ok()?.join(format!("{CGROUP_PREFIX}{}.{n}", std::process::id())))
}

fn create_cgroup(planned: Option<&Path>) -> Result<Cgroup, Unavailable> {
    let root = cgroup2_mount()?;
    brink_blockdev::cgroup::sweep_dead(&root, CGROUP_PREFIX);
    let Some(planned) = planned else { return Err(CgroupError::NotMounted.into()) };
    let cg = Cgroup::create(planned)?;
    // The root cgroup has no cgroup.kill, so a child (ours) tells.
    if !cg.path().join("cgroup.kill").exists() {
        let _ = cg.remove();
        return Err(Unavailable::NoKill);
    }
    Ok(cg)
}

/// SIGTERM every process in `cg` (frozen while listed), up to `grace` to exit, then
/// `cgroup.kill` and a bounded wait until it is empty.
fn stop_cgroup(cg: &Cgroup, grace: Duration) {
    let empty = || !cg.is_populated().unwrap_or(false);
    if empty() {
        return;
    }
    cg.terminate();
    if !wait_until(grace, empty) {
        let _ = cg.kill();
        wait_until(KILL_WAIT_MAX, empty);
    }
}

/// Remove the unfinished trace directories (`.NAME.tmp-PID`) in `parent` whose process
/// is gone: a recorder killed outright (`kill -9`, power loss) leaves one behind.
pub(crate) fn remove_stale_trace_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(stale_trace_pid) else { continue };
        if e.file_type().is_ok_and(|t| t.is_dir()) && kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The process id in an unfinished trace directory's name, `.NAME.tmp-PID`.
fn stale_trace_pid(name: &str) -> Option<i32> {
    let (head, pid) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    (!head.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.parse().ok()).flatten().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Without cgroup v2 the process group stands in: a child that ignores SIGTERM is
    /// killed after the grace period, and the watchdog's group file is gone afterwards.
    #[test]
    fn without_cgroup_the_process_group_is_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let pgid_file = tmp.path().join("child.pgid");
        let group = Workgroup { cgroup: None, note: Some("test".into()), pgid_file: pgid_file.clone() };
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "trap '' TERM; sleep 30 & trap '' TERM; wait"]);
        group.prepare(&mut cmd, "the test").unwrap();
        let mut child = cmd.spawn().unwrap();
        group.started(child.id());
        assert_eq!(std::fs::read_to_string(&pgid_file).unwrap(), child.id().to_string());
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        group.stop(&mut child, true);
        assert!(started.elapsed() >= STOP_GRACE_INTERRUPTED, "SIGTERM was ignored: the grace period passed");
        assert_eq!(killpg(Pid::from_raw(child.id() as i32), None), Err(Errno::ESRCH), "the group is gone");
        assert!(child.try_wait().unwrap().is_some(), "the child is reaped");
        assert!(!pgid_file.exists());
    }

    #[test]
    fn unfinished_trace_directory_names_are_recognised() {
        assert_eq!(stale_trace_pid(".my trace.tmp-1234"), Some(1234));
        assert_eq!(stale_trace_pid(".a.tmp-b.tmp-7"), Some(7));
        assert_eq!(stale_trace_pid("trace.tmp-1234"), None);
        assert_eq!(stale_trace_pid(".trace.tmp-"), None);
        assert_eq!(stale_trace_pid(".trace.tmp-12x"), None);
        assert_eq!(stale_trace_pid("..tmp-12"), None);
    }
}
