//! FUSE connections, and a watchdog for brink's own.
//!
//! brink is both the FUSE server of a disk and a user of file systems on that disk. If
//! brink is killed outright (SIGKILL) while one of its threads waits in the kernel on a
//! request that only its (now dead) server thread could answer, the process can never
//! finish exiting, and everything that syncs that file system hangs with it. Aborting
//! the FUSE connection (fusectl's `abort` file) fails those requests and lets the kernel
//! finish. The watchdog is a small separate process that does this when brink dies.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use std::os::unix::process::CommandExt;

const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Mount fusectl if it is not mounted (some machines do not mount it at boot).
fn ensure_fusectl() {
    let mounted =
        std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| m.lines().any(|l| l.contains(" fusectl ")));
    if !mounted {
        let _ =
            nix::mount::mount(Some("fusectl"), FUSECTL, Some("fusectl"), nix::mount::MsFlags::empty(), None::<&str>);
    }
}

/// The fusectl directory of the FUSE connection mounted at `mountpoint` (from the
/// device number in /proc/self/mountinfo, without touching the mount itself, which may
/// hang if its server is gone).
pub fn connection_dir(mountpoint: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Mount points are compared unescaped: the kernel writes a space as `\040`.
    let line = info
        .lines()
        .rev()
        .find(|l| l.split_whitespace().nth(4).is_some_and(|t| crate::cgroup::unescape_mount_path(t) == mountpoint))?;
    let fstype = line.split(" - ").nth(1)?.split_whitespace().next()?;
    if !fstype.starts_with("fuse") {
        return None;
    }
    let minor = line.split_whitespace().nth(2)?.split(':').nth(1)?;
    ensure_fusectl();
    Some(Path::new(FUSECTL).join(minor))
}

/// Abort the FUSE connection at `mountpoint`: pending and future requests fail.
pub fn abort(mountpoint: &Path) {
    if let Some(dir) = connection_dir(mountpoint) {
        let _ = std::fs::write(dir.join("abort"), "1");
    }
}

/// Cleans up after this process when it dies or is being killed. Stopped (and nothing
/// touched) on drop.
#[derive(Debug)]
pub struct Watchdog(Child);

/// What a [`Watchdog`] cleans up once the process it watches is dying.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    /// Every FUSE connection mounted under it is aborted, every mount under it unmounted
    /// lazily, deepest first, again (bounded) until nothing under it is mounted, and then
    /// it is removed. A later run must not reuse it before the watchdog is done: hold a
    /// lock it waits for (`start_holding`).
    pub work: PathBuf,
    /// A cgroup v2 directory whose processes are killed (`cgroup.kill`) before anything
    /// is unmounted, then removed with its child cgroups: the workload's, whose working
    /// directory would otherwise pin the lazily detached file system and its loop
    /// device, or the parent of the checkers' cgroups.
    pub cgroup: Option<PathBuf>,
    /// Without a cgroup: a file holding the id of a process group to SIGKILL instead
    /// (written by the process as it starts each child; absent when none runs).
    pub pgid_file: Option<PathBuf>,
    /// Further paths removed last (an unfinished output directory, a tracefs instance).
    pub remove: Vec<PathBuf>,
}

/// Mount points under `$W`, read from /proc/self/mountinfo: `abort` prints the fusectl
/// connection (device minor) of each FUSE mount, `umount` lazily unmounts every mount
/// point, deepest first, and prints how many it found. The kernel escapes space, tab,
/// newline and backslash in mount points as `\040 \011 \012 \134`: they are unescaped
/// before the comparison, and passed to umount shell-quoted (`\047` is a single quote),
/// so any byte in a path works. The work path comes through the environment because
/// `awk -v` would interpret its backslashes.
const MOUNTS_AWK: &str = r#"
function oct(c) { return substr(c, 1, 1) * 64 + substr(c, 2, 1) * 8 + substr(c, 3, 1) }
function unesc(s,   out, i, c) {
  out = ""
  while ((i = index(s, "\\")) > 0) {
    c = substr(s, i + 1, 3)
    if (c ~ /^[0-7][0-7][0-7]$/) { out = out substr(s, 1, i - 1) sprintf("%c", oct(c)); s = substr(s, i + 4) }
    else { out = out substr(s, 1, i); s = substr(s, i + 1) }
  }
  return out s
}
function q(s,   out, i) {
  out = "\047"
  while ((i = index(s, "\047")) > 0) { out = out substr(s, 1, i - 1) "\047\\\047\047"; s = substr(s, i + 1) }
  return out s "\047"
}
BEGIN { w = ENVIRON["W"] }
{
  m = unesc($5)
  if (m != w && substr(m, 1, length(w) + 1) != w "/") next
  for (i = 7; i <= NF && $i != "-"; i++) {}
  if (mode == "abort") { if ($(i + 1) ~ /^fuse/) { split($3, d, ":"); print d[2] }; next }
  n++; path[n] = m
}
END {
  if (mode != "umount") exit
  for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++)
    if (length(path[b]) > length(path[a])) { t = path[a]; path[a] = path[b]; path[b] = t }
  for (a = 1; a <= n; a++) system("umount -l " q(path[a]) " 2>/dev/null")
  print n + 0
}
"#;

/// Watches the process from its status: a zombie leader, or a pending SIGKILL, means
/// the process is dying; then, or once it is gone: abort the FUSE connections under the
/// work directory, kill the workload's cgroup (or process group), wait (bounded) for the
/// process's threads to finish (one may be inside mount(2)) and for the cgroup to empty,
/// lazily unmount every mount under the work directory (deepest first; the loop devices
/// under them detach themselves, AUTOCLEAR), and remove what it was asked to. A dead
/// FUSE mount left in the mount table would otherwise break tools that stat every mount
/// (mkfs.btrfs does).
const WATCH: &str = r#"
pid=$1; W=$2; cgroup=$3; pgfile=$4; awkprog=$5; shift 5
# Stopped by the process it watches, at once: the round's `sleep` runs in the background
# and the shell waits for it with `wait`, which a trapped signal interrupts (a foreground
# `sleep` would hold the stop, and the process waiting for it, up to a round). The trap
# ends that `sleep` and waits for it, so that no child of the shell outlives it with a
# descriptor it holds (`start_holding`).
s=
trap '[ -n "$s" ] && kill "$s" 2>/dev/null && wait "$s"; exit 0' TERM
export W LC_ALL=C
# Polled with builtins only (one `sleep` per round): the watchdog runs beside every
# recording and exploration, and a `cat` and a `sed` per round cost a core's few percent.
# From /proc/PID/stat, a line the shell reads a byte a call (`status` is five times as
# long): gone, a zombie leader, or SIGKILL pending (a fatal signal is queued on every
# thread, the leader's field 31 among them) is dying.
dying() {
  line=
  IFS= read -r line 2>/dev/null < "/proc/$pid/stat" || [ -n "$line" ] || return 0
  set -- ${line##*) }
  case $1 in Z|X) return 0;; esac
  [ $# -ge 29 ] && shift 28 && [ $(( $1 & 256 )) -ne 0 ]
}
while ! dying; do sleep 0.1 & s=$!; wait "$s"; s=; done
for c in $(awk -v mode=abort "$awkprog" /proc/self/mountinfo); do
  echo 1 > "/sys/fs/fuse/connections/$c/abort" 2>/dev/null
done
[ -n "$cgroup" ] && echo 1 > "$cgroup/cgroup.kill" 2>/dev/null
[ -n "$pgfile" ] && g=$(cat "$pgfile" 2>/dev/null) && [ -n "$g" ] && kill -9 "-$g" 2>/dev/null
# A thread of the dying process may be inside mount(2), and completes it after the
# abort: wait (bounded) until no thread of the process is left (gone, or a zombie leader
# alone), so that the unmounting below sees every mount it made.
n=0
while [ $n -lt 200 ] && s=$(cat /proc/$pid/status 2>/dev/null); do
  case "$s" in *"State:	Z"*) [ "$(ls /proc/$pid/task 2>/dev/null | wc -l)" -le 1 ] && break;; esac
  sleep 0.05; n=$((n + 1))
done
# Kill the cgroup until it can be removed (bounded): a child forked just before the
# kill may join it after, and cannot once it is gone.
n=0
while [ $n -lt 100 ] && [ -n "$cgroup" ] && [ -d "$cgroup" ]; do
  echo 1 > "$cgroup/cgroup.kill" 2>/dev/null
  for d in "$cgroup"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  rmdir "$cgroup" 2>/dev/null || sleep 0.05
  n=$((n + 1))
done
# Unmount until nothing is left (bounded): a mount in flight may complete late.
n=0
while [ $n -lt 100 ] && [ "$(awk -v mode=umount "$awkprog" /proc/self/mountinfo)" != 0 ]; do
  sleep 0.05; n=$((n + 1))
done
rm -rf "$W"
# A tracefs instance (`writelog.rs`) holds files nobody can unlink: rmdir removes it.
for p in "$@"; do rm -rf "$p" 2>/dev/null || rmdir "$p" 2>/dev/null; done
exit 0
"#;

/// Start a watchdog that does `cleanup` once this process is dying. It needs nothing
/// mounted yet: the FUSE connections are looked up when it acts. None if it cannot start.
pub fn start(cleanup: &Cleanup) -> Option<Watchdog> {
    start_for(std::process::id(), cleanup)
}

/// [`start`], and the watchdog keeps `hold` open until it is done: given a locked file
/// (`flock`), the lock outlives a killed process until its cleanup is over, so the next
/// run cannot start in a work area still being cleaned. The descriptor is inheritable
/// while the watchdog is spawned (the shell inherits it, and never needs to name it):
/// call this before the process starts other children.
pub fn start_holding(cleanup: &Cleanup, hold: BorrowedFd<'_>) -> Option<Watchdog> {
    let flags = FdFlag::from_bits_retain(fcntl(hold, FcntlArg::F_GETFD).ok()?);
    fcntl(hold, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC)).ok()?;
    let dog = start_for(std::process::id(), cleanup);
    let _ = fcntl(hold, FcntlArg::F_SETFD(flags));
    dog
}

/// [`start`], watching the process `pid` (tests watch a child they kill).
fn start_for(pid: u32, cleanup: &Cleanup) -> Option<Watchdog> {
    ensure_fusectl();
    let opt = |p: &Option<PathBuf>| p.clone().unwrap_or_default();
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCH)
        .arg("brink-fuse-watchdog")
        .arg(pid.to_string())
        .arg(&cleanup.work)
        .arg(opt(&cleanup.cgroup))
        .arg(opt(&cleanup.pgid_file))
        .arg(MOUNTS_AWK)
        .args(&cleanup.remove)
        .process_group(0) // a terminal's Ctrl-C must not take it along
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Watchdog(child))
}

impl Drop for Watchdog {
    /// SIGTERM: the shell ends its round's `sleep`, waits for it and exits, so when this
    /// returns nothing of the watchdog holds anything any more.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Cgroup, cgroup2_mount};
    use crate::mount_points_under as mounts_under;
    use std::time::{Duration, Instant};

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(15), "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Issue 13: with a space in the results path the lookups compared the kernel's
    /// escaped text (`\040`) with the raw path, found nothing, and left every mount of a
    /// killed run. Here the work path holds a space, a tab, a newline, a backslash and a
    /// quote; a process in a cgroup keeps its working directory in the innermost mount.
    #[test]
    fn the_watchdog_unmounts_paths_with_spaces_tabs_newlines_and_backslashes() {
        if !brink_testkit::can_run(
            "the_watchdog_unmounts_paths_with_spaces_tabs_newlines_and_backslashes",
            &[brink_testkit::Need::Root],
        ) {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("a b\tc\nd\\e'f");
        let inner = work.join("mnt").join("in ner");
        std::fs::create_dir_all(work.join("mnt")).unwrap();
        let tmpfs = |p: &Path| {
            nix::mount::mount(Some("tmpfs"), p, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).unwrap()
        };
        tmpfs(&work.join("mnt"));
        std::fs::create_dir(&inner).unwrap();
        tmpfs(&inner);
        let extra = tmp.path().join(".out put.tmp-1");
        std::fs::create_dir(&extra).unwrap();
        let cgroup = cgroup2_mount()
            .ok()
            .and_then(|root| Cgroup::create(&root.join(format!("brink-test-watchdog-{}", std::process::id()))).ok());
        let mut pinning = Command::new("sleep");
        pinning.arg("1000").current_dir(&inner);
        if let Some(cg) = &cgroup {
            cg.join_on_exec(&mut pinning).unwrap();
        } else {
            pinning.process_group(0);
        }
        let mut pinning = pinning.spawn().unwrap();
        let pgid_file = tmp.path().join("pgid");
        std::fs::write(&pgid_file, pinning.id().to_string()).unwrap();
        let mut watched = Command::new("sleep").arg("1000").spawn().unwrap();
        let cleanup = Cleanup {
            work: work.clone(),
            cgroup: cgroup.as_ref().map(|c| c.path().to_path_buf()),
            pgid_file: Some(pgid_file),
            remove: vec![extra.clone()],
        };
        let dog = start_for(watched.id(), &cleanup).unwrap();
        assert_eq!(mounts_under(&work).len(), 2);
        watched.kill().unwrap();
        watched.wait().unwrap();
        wait_for("the pinning process is killed", || pinning.try_wait().unwrap().is_some());
        wait_for("nothing is mounted under the work path", || mounts_under(&work).is_empty());
        wait_for("the work path and the unfinished output are removed", || !work.exists() && !extra.exists());
        if let Some(cg) = &cgroup {
            wait_for("the cgroup is removed", || !cg.path().exists());
        }
        drop(dog);
    }
}
