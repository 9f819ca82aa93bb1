//! cgroup v2 directories, talked to through their files: the one kernel mechanism that
//! finds every process a program starts, including daemons that leave its process group
//! and session (`setsid`, `pg_ctl`), and kills them all at once (`cgroup.kill`).
//!
//! The cgroup2 file system is found in `/proc/mounts` rather than assumed at
//! `/sys/fs/cgroup`: hybrid machines mount it beside the v1 controllers (for example at
//! `/sys/fs/cgroup/unified`), and the core files brink needs (`cgroup.procs`,
//! `cgroup.events`, `cgroup.freeze`, `cgroup.kill`) work there without any controller.
//!
//! A program is put into its cgroup between fork and exec (see [`Cgroup::join_on_exec`]),
//! so no process it starts can be created outside it. That hook is a `pre_exec` closure,
//! unsafe in std's API; it lives here, beside the crate's other system-level unsafe code,
//! so that the crates that run programs stay free of unsafe code.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A cgroup v2 operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// No file system of type cgroup2 is mounted.
    #[error("no cgroup2 file system is mounted")]
    NotMounted,
    /// `what` says what brink was doing to the cgroup at `path`.
    #[error("cannot {what} {}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { what, path: path.to_path_buf(), source }
}

/// How long the processes left in a cgroup have, after SIGTERM, to exit by themselves (a
/// database flushing and closing its files) before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The grace period when brink itself is interrupted: SIGINT must stop brink within about
/// two seconds, in-flight checkers and workloads included.
pub const STOP_GRACE_INTERRUPTED: Duration = Duration::from_millis(500);

/// How long killed processes may take to be gone (a process in uninterruptible sleep
/// exits only when its I/O ends) before they are reported as survivors.
pub const KILL_WAIT_MAX: Duration = Duration::from_secs(5);

/// How long a freeze may take to reach every process before SIGTERM is sent anyway.
pub const FREEZE_WAIT_MAX: Duration = Duration::from_millis(200);

/// How often membership is read again while waiting for processes to exit.
pub const STOP_POLL: Duration = Duration::from_millis(10);

/// Whether process `pid` has ended: it is gone, or a zombie its parent has not reaped.
pub fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Poll `done` every [`STOP_POLL`] for up to `max`; whether it became true.
pub fn wait_until(max: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= max {
            return false;
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// Undo the octal escapes of `/proc/mounts` (`\040` is a space, `\011` a tab, `\012` a
/// newline, `\134` a backslash).
pub fn unescape_mount_path(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Where the cgroup2 file system is mounted, from a `/proc/mounts` text.
pub fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (_source, target, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| unescape_mount_path(target))
    })
}

/// Where the cgroup2 file system is mounted on this machine.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let path = Path::new("/proc/mounts");
    let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
    cgroup2_mount_in(&text).ok_or(CgroupError::NotMounted)
}

/// Empty and remove every cgroup `<prefix><pid>` directly under `root` whose process is
/// gone: what a brink killed outright (`kill -9`) left behind.
pub fn sweep_dead(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        // `PREFIX<pid>` or `PREFIX<pid>.<n>`.
        let pid = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|p| p.split('.').next());
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH);
        if gone {
            Cgroup::existing(&e.path()).remove_tree();
        }
    }
}

/// One cgroup v2 directory. Dropping it does nothing: removal is [`Cgroup::remove`],
/// which fails while processes remain, and that failure is the caller's to report.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Create the cgroup directory `path` (its parent must exist).
    pub fn create(path: &Path) -> Result<Cgroup, CgroupError> {
        std::fs::create_dir(path).map_err(io_err("create the cgroup", path))?;
        Ok(Cgroup { path: path.to_path_buf() })
    }

    /// A cgroup that exists already (created by an earlier run, say).
    pub fn existing(path: &Path) -> Cgroup {
        Cgroup { path: path.to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, file: &str) -> Result<String, CgroupError> {
        let p = self.path.join(file);
        std::fs::read_to_string(&p).map_err(io_err("read", &p))
    }

    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        let p = self.path.join(file);
        std::fs::write(&p, value).map_err(io_err("write", &p))
    }

    /// The processes in this cgroup (not in its children). Zombies are not listed: a
    /// process leaves its cgroup when it exits, before it is reaped.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(self.read("cgroup.procs")?.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// A key of `cgroup.events` ("populated", "frozen") is 1.
    fn event(&self, key: &str) -> Result<bool, CgroupError> {
        let text = self.read("cgroup.events")?;
        Ok(text.lines().any(|l| l.split_once(' ').is_some_and(|(k, v)| k == key && v.trim() == "1")))
    }

    /// Whether any process is in this cgroup or its children.
    pub fn is_populated(&self) -> Result<bool, CgroupError> {
        self.event("populated")
    }

    /// Freeze (or thaw) every process in the cgroup. A frozen process cannot exit, so the
    /// process ids read while frozen cannot be reused by the time they are signalled.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        self.write("cgroup.freeze", if frozen { "1" } else { "0" })
    }

    /// Whether the freeze asked for has taken effect on every process.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.event("frozen")
    }

    /// SIGKILL every process in the cgroup and its children (Linux 5.14 and later).
    pub fn kill(&self) -> Result<(), CgroupError> {
        self.write("cgroup.kill", "1")
    }

    /// Remove the (empty) cgroup directory.
    pub fn remove(&self) -> Result<(), CgroupError> {
        std::fs::remove_dir(&self.path).map_err(io_err("remove the cgroup", &self.path))
    }

    /// SIGTERM every process in the cgroup. The ids are read while it is frozen: a frozen
    /// process cannot exit, so no id can name a process that replaced one of them. A
    /// process stuck in the kernel may not freeze; it is signalled anyway (a later
    /// `cgroup.kill` needs no ids).
    pub fn terminate(&self) {
        let frozen = self.set_frozen(true).is_ok();
        if frozen {
            wait_until(FREEZE_WAIT_MAX, || self.is_frozen().unwrap_or(true));
        }
        for pid in self.procs().unwrap_or_default() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        if frozen {
            let _ = self.set_frozen(false);
        }
    }

    /// Kill everything in this cgroup and its children and remove the directories,
    /// children first, each after a bounded wait ([`KILL_WAIT_MAX`]) for its processes to
    /// go. A directory whose processes outlive the wait stays.
    pub fn remove_tree(&self) {
        let _ = self.kill();
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                Cgroup::existing(&e.path()).remove_tree();
            }
        }
        wait_until(KILL_WAIT_MAX, || !self.is_populated().unwrap_or(false));
        let _ = self.remove();
    }

    /// Make `cmd`'s process join this cgroup between fork and exec, so the program and
    /// everything it starts are in it from its first instruction (moving it after spawn
    /// would let it fork outside first). Fails here if `cgroup.procs` cannot be opened;
    /// if the kernel refuses the move, `cmd.spawn()` fails with that error.
    pub fn join_on_exec(&self, cmd: &mut Command) -> Result<(), CgroupError> {
        let p = self.path.join("cgroup.procs");
        let procs = OpenOptions::new().write(true).open(&p).map_err(io_err("open", &p))?;
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe calls are allowed. It makes one write(2) of a static buffer
        // to a descriptor opened before the fork, and converts a failure with
        // io::Error::from_raw_os_error, which does not allocate. The descriptor is
        // close-on-exec, so the program does not inherit it.
        unsafe {
            cmd.pre_exec(move || nix::unistd::write(&procs, b"0").map(drop).map_err(io::Error::from));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_beside_v1_controllers() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/uni\\040fied cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_mount_in(mounts), Some(PathBuf::from("/sys/fs/cgroup/uni fied")));
        assert_eq!(cgroup2_mount_in("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"), None);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b\\011c\\012d\\134e\\9"), PathBuf::from("/a b\tc\nd\\e\\9"));
    }
}
