//! Containment of checker runs: every process a checker starts is found and stopped when
//! the run ends, daemons that left its process group included. One such process, with its
//! working directory in the state's mount, makes the unmount fail; the stale file system
//! then stays on the slot's loop device and every later state of that slot is judged on
//! it (one escaped `sleep 20` turned 34 violations into 233; `pg_ctl` does the same).
//!
//! Each run gets its own cgroup v2, `<cgroup2>/brink-<pid>/check-<n>`, joined between
//! fork and exec, so nothing the checker starts can be outside it. Stopping a run: every
//! process in it gets SIGTERM (read while the cgroup is frozen, so no process id can be
//! reused before it is signalled), then up to [`STOP_GRACE`] to exit, then `cgroup.kill`,
//! then a bounded wait until the cgroup is empty, then the cgroup is removed.
//!
//! Where cgroup v2 is unavailable (not mounted, not writable, or without `cgroup.kill`),
//! a [`Jail`] says why once ([`Jail::fallback_note`]) and finds a run's processes as its
//! process group plus every process whose working directory, root or open files are
//! under the directory the run watches (the state's mount): that catches the daemons
//! that pin the mount, though not one that left both the group and the mount.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use brink_blockdev::cgroup::{Cgroup, CgroupError, cgroup2_mount, wait_until};
pub use brink_blockdev::cgroup::{KILL_WAIT_MAX, STOP_GRACE, STOP_GRACE_INTERRUPTED};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How often an interrupt is looked for while a checker runs.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// Why a [`Jail`] cannot use cgroup v2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupUnavailable {
    #[error("cgroup v2 is unavailable")]
    Cgroup(#[source] CgroupError),
    /// `cgroup.kill` appeared in Linux 5.14.
    #[error("the kernel's cgroup v2 has no cgroup.kill (Linux 5.14 or later has)")]
    NoKill,
}

/// How a checker's own process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited,
    TimedOut,
    Interrupted,
}

/// How the processes of one run were stopped. After a clean run all three are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Processes other than the checker's own still running when it exited (or when the
    /// run was stopped): escaped daemons and stray background children. Each got SIGTERM.
    pub left_behind: usize,
    /// Processes, the checker's own included, that outlived the grace period and were
    /// killed.
    pub killed: usize,
    /// Processes still there after they were killed and [`KILL_WAIT_MAX`] passed (stuck
    /// in the kernel): whatever they hold (a mount) may still be busy.
    pub survivors: usize,
}

enum Mode {
    Cgroup { parent: Cgroup },
    Fallback { why: CgroupUnavailable },
}

/// Where checker runs are contained: one per explorer (or per command), shared by its
/// workers. In cgroup mode it owns `<cgroup2>/brink-<pid>`, removed when the last jail of
/// the process is dropped; killing that directory's `cgroup.kill` stops every checker of
/// the process at once.
pub struct Jail {
    mode: Mode,
    interrupt: Option<Arc<AtomicUsize>>,
}

/// Jails alive in this process: the shared parent cgroup exists while this is nonzero.
static JAILS: Mutex<usize> = Mutex::new(0);

/// Numbers the runs' cgroups within the process.
static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// Parents left by brink processes that are gone (`kill -9`) are emptied once a process.
static STALE_SWEEP: Once = Once::new();

impl Default for Jail {
    fn default() -> Self {
        Jail::new()
    }
}

impl Jail {
    /// A jail using cgroup v2 where possible, else the fallback ([`Jail::fallback_note`]
    /// says why).
    pub fn new() -> Jail {
        let mode = match Self::cgroup_parent() {
            Ok(parent) => Mode::Cgroup { parent },
            Err(why) => Mode::Fallback { why },
        };
        Jail { mode, interrupt: None }
    }

    /// A jail that never uses cgroups: process group plus the processes using the watched
    /// directory. For machines where brink must not touch cgroups, and for tests.
    pub fn without_cgroup() -> Jail {
        let why = CgroupUnavailable::Cgroup(CgroupError::NotMounted);
        Jail { mode: Mode::Fallback { why }, interrupt: None }
    }

    /// Stop runs early, as on a timeout but with [`STOP_GRACE_INTERRUPTED`], once
    /// `interrupt` is nonzero (the signal number brink's handler stores).
    pub fn with_interrupt(mut self, interrupt: Arc<AtomicUsize>) -> Jail {
        self.interrupt = Some(interrupt);
        self
    }

    /// Why cgroup v2 is not used, as one line to print once; None when it is used.
    pub fn fallback_note(&self) -> Option<String> {
        let Mode::Fallback { why } = &self.mode else { return None };
        let text = crate::error_line(why);
        Some(format!(
            "{text}; checker processes are found by process group and by their files under the state's mount \
             (a daemon that leaves both is not stopped)"
        ))
    }

    /// The cgroup that holds every run of this process once a jail exists, if cgroup v2
    /// is mounted: known before it exists, so a watchdog started first can be told it.
    pub fn planned_cgroup() -> Option<PathBuf> {
        Some(parent_in(&cgroup2_mount().ok()?))
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|i| i.load(Ordering::Relaxed) != 0)
    }

    /// Wait for the message that the checker's process exited, at most `timeout`, and
    /// less if brink is interrupted (looked at every [`INTERRUPT_POLL`]).
    pub(crate) fn wait_for(&self, exit: &Receiver<()>, timeout: Duration) -> Ending {
        // A limit too large for an Instant (1e300 seconds) is no limit.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.interrupted() {
                return Ending::Interrupted;
            }
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ending::TimedOut;
            }
            let slice = if self.interrupt.is_some() { left.min(INTERRUPT_POLL) } else { left };
            match exit.recv_timeout(slice) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return Ending::Exited,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn cgroup_parent() -> Result<Cgroup, CgroupUnavailable> {
        let root = cgroup2_mount().map_err(CgroupUnavailable::Cgroup)?;
        STALE_SWEEP.call_once(|| brink_blockdev::cgroup::sweep_dead(&root, "brink-"));
        let path = parent_in(&root);
        let mut jails = JAILS.lock().unwrap_or_else(PoisonError::into_inner);
        if *jails == 0 {
            match Cgroup::create(&path) {
                Ok(_) => {}
                Err(CgroupError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CgroupUnavailable::Cgroup(e)),
            }
            // The root cgroup has no cgroup.kill, so a child (ours) tells.
            if !path.join("cgroup.kill").exists() {
                let _ = Cgroup::existing(&path).remove();
                return Err(CgroupUnavailable::NoKill);
            }
        }
        *jails += 1;
        Ok(Cgroup::existing(&path))
    }

    /// A fresh cgroup for one run, or None in fallback mode.
    pub(crate) fn run_cgroup(&self) -> Result<Option<Cgroup>, CgroupError> {
        let Mode::Cgroup { parent } = &self.mode else { return Ok(None) };
        let n = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
        Cgroup::create(&parent.path().join(format!("check-{n}"))).map(Some)
    }
}

/// This process's cgroup for its jails, under the cgroup2 mount `root`.
fn parent_in(root: &Path) -> PathBuf {
    root.join(format!("brink-{}", std::process::id()))
}

impl Drop for Jail {
    fn drop(&mut self) {
        let Mode::Cgroup { parent } = &self.mode else { return };
        let mut jails = JAILS.lock().unwrap_or_else(PoisonError::into_inner);
        *jails -= 1;
        if *jails == 0 {
            // Runs remove their own cgroups; what is left holds survivors. Kill them
            // once more; the directory stays if they still do not go.
            if parent.remove().is_err() {
                parent.remove_tree();
            }
        }
    }
}

/// The processes of one run.
pub(crate) struct Scope<'a> {
    /// The run's cgroup; None in fallback mode.
    pub cgroup: Option<&'a Cgroup>,
    /// The checker's own process, also its process group's id.
    pub main: Pid,
    /// Fallback mode: processes using files under this directory belong to the run.
    pub watched: Option<&'a Path>,
}

impl Scope<'_> {
    /// The live processes of the run (zombies are not counted: they hold nothing).
    fn members(&self) -> Vec<Pid> {
        match self.cgroup {
            Some(cg) => cg.procs().unwrap_or_default().into_iter().map(Pid::from_raw).collect(),
            None => fallback_members(self.main, self.watched),
        }
    }

    /// SIGTERM every process of the run.
    fn terminate(&self) {
        let Some(cg) = self.cgroup else {
            let _ = killpg(self.main, Signal::SIGTERM);
            for p in self.members() {
                let _ = kill(p, Signal::SIGTERM);
            }
            return;
        };
        cg.terminate();
    }

    fn kill_all(&self) {
        match self.cgroup {
            Some(cg) => {
                let _ = cg.kill();
            }
            None => {
                let _ = killpg(self.main, Signal::SIGKILL);
                for p in self.members() {
                    let _ = kill(p, Signal::SIGKILL);
                }
            }
        }
    }

    /// Stop every process of the run: SIGTERM, `grace`, then kill. `main_running`: the
    /// checker's own process has not exited (a timeout or an interrupt). An interrupt
    /// during the grace period shortens it to [`STOP_GRACE_INTERRUPTED`].
    pub fn stop(&self, main_running: bool, grace: Duration, interrupted: &dyn Fn() -> bool) -> Stopped {
        let members = self.members();
        let left_behind = members.iter().filter(|p| **p != self.main).count();
        if members.is_empty() && !main_running {
            return Stopped::default();
        }
        self.terminate();
        let start = Instant::now();
        let cut_short = || interrupted() && start.elapsed() >= STOP_GRACE_INTERRUPTED;
        if wait_until(grace, || self.members().is_empty() || cut_short()) && self.members().is_empty() {
            return Stopped { left_behind, ..Stopped::default() };
        }
        let killed = self.members().len();
        self.kill_all();
        let survivors = if wait_until(KILL_WAIT_MAX, || self.members().is_empty()) { 0 } else { self.members().len() };
        Stopped { left_behind, killed, survivors }
    }
}

/// Fallback membership: the live processes in `main`'s process group, and those whose
/// working directory, root or an open file is under `watched`; never brink itself.
fn fallback_members(main: Pid, watched: Option<&Path>) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let Some((state, pgrp)) = stat_state_and_group(&dir) else { continue };
        if state == 'Z' {
            continue;
        }
        if pgrp == main.as_raw() || watched.is_some_and(|w| uses_files_under(&dir, w)) {
            out.push(Pid::from_raw(pid as i32));
        }
    }
    out
}

/// The state letter and process group of `/proc/PID`. The command name in `stat` may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_state_and_group(dir: &Path) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let mut f = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// Whether the process at `/proc/PID` has its working directory, root or an open file
/// under `watched`.
fn uses_files_under(dir: &Path, watched: &Path) -> bool {
    let under = |link: PathBuf| std::fs::read_link(link).is_ok_and(|t| t.starts_with(watched));
    if under(dir.join("cwd")) || under(dir.join("root")) {
        return true;
    }
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else { return false };
    fds.flatten().any(|fd| under(fd.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jail_is_shared_by_workers_and_says_why_it_falls_back() {
        fn shared<T: Send + Sync>() {}
        shared::<Jail>();
        let note = Jail::without_cgroup().fallback_note().unwrap();
        assert!(note.starts_with("cgroup v2 is unavailable: no cgroup2 file system is mounted; "), "{note}");
    }

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), "42 (a) b (c)) S 1 4242 4242 0").unwrap();
        assert_eq!(stat_state_and_group(dir.path()), Some(('S', 4242)));
    }

    #[test]
    fn the_fallback_finds_a_process_by_its_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").current_dir(dir.path()).spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let found = fallback_members(Pid::from_raw(-1), Some(dir.path()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![pid]);
    }
}
