//! FUSE connections, and a watchdog for brink's own.
//!
//! brink is both the FUSE server of a disk and a user of file systems on that disk. If
//! brink is killed outright (SIGKILL) while one of its threads waits in the kernel on a
//! request that only its (now dead) server thread could answer, the process can never
//! finish exiting, and everything that syncs that file system hangs with it. Aborting
//! the FUSE connection (fusectl's `abort` file) fails those requests and lets the kernel
//! finish. The watchdog is a small separate process that does this when brink dies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
    let target = mountpoint.to_str()?;
    let line = info.lines().rev().find(|l| l.split_whitespace().nth(4) == Some(target))?;
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

/// Aborts a FUSE connection when this process dies or is being killed. Stopped (and
/// the connection left alone) on drop.
#[derive(Debug)]
pub struct Watchdog(Child);

/// Watches the process from its status: a zombie leader, or a pending SIGKILL, means
/// the process is dying; then, or once it is gone, abort the connection, wait (bounded)
/// for its threads to finish (one may be inside mount(2)), lazily unmount every mount
/// under the work directory (deepest first; the loop devices under them detach
/// themselves, AUTOCLEAR) and, if asked, remove the directory. A dead FUSE mount left in
/// the mount table would otherwise break tools that stat every mount (mkfs.btrfs does).
const WATCH: &str = r#"
pid=$1; conn=$2; work=$3; remove=$4
dying() {
  s=$(cat /proc/$pid/status 2>/dev/null) || return 0
  case "$s" in *"State:	Z"*) return 0;; esac
  for p in $(printf '%s\n' "$s" | sed -n 's/^ShdPnd:\t//p; s/^SigPnd:\t//p'); do
    [ $(( 0x$p & 0x100 )) -ne 0 ] && return 0
  done
  return 1
}
mounts() {
  awk -v w="$work" 'index($2, w) == 1 { print length($2), $2 }' /proc/self/mounts | sort -rn | cut -d' ' -f2-
}
while ! dying; do sleep 0.05; done
echo 1 > "$conn/abort" 2>/dev/null
# A thread of the dying process may be inside mount(2), and completes it after the
# abort: wait (bounded) until no thread of the process is left (gone, or a zombie leader
# alone), so that the one pass below sees every mount it made. One pass only: a later run
# may reuse the work area as soon as it is clean.
n=0
while [ $n -lt 200 ] && s=$(cat /proc/$pid/status 2>/dev/null); do
  case "$s" in *"State:	Z"*) [ "$(ls /proc/$pid/task 2>/dev/null | wc -l)" -le 1 ] && break;; esac
  sleep 0.05; n=$((n + 1))
done
mounts | while read -r m; do umount -l "$m" 2>/dev/null; done
[ "$remove" = remove ] && rm -rf "$work"
exit 0
"#;

/// Start a watchdog for the FUSE connection at `mountpoint`, served by this process;
/// if the process is killed, everything mounted under `work` is unmounted, and `work`
/// removed if `remove_work` (not for a directory a later run reuses: it would race).
pub fn watchdog(mountpoint: &Path, work: &Path, remove_work: bool) -> Option<Watchdog> {
    let conn = connection_dir(mountpoint)?;
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCH)
        .arg("brink-fuse-watchdog")
        .arg(std::process::id().to_string())
        .arg(conn)
        .arg(work)
        .arg(if remove_work { "remove" } else { "keep" })
        .process_group(0) // a terminal's Ctrl-C must not take it along
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Watchdog(child))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
