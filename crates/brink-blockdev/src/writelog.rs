//! Which bytes of some block devices the kernel wrote: the `block_rq_issue` event of a
//! private trace instance of tracefs, filtered to those devices. brink keeps a crash
//! state in a memory file under a loop device and, after a check, restores from the
//! durable image only what the state's pieces and the kernel's writes changed; a write
//! missed here would leave the next state with a stale block. So the log is complete
//! or says it is not: every request the block layer hands to the device's driver passes
//! this event before it reaches the file; the events are read after the file system
//! has let the device go; and an instance that overwrote or dropped an event (its
//! per-CPU `overrun`, `commit overrun` and `dropped events` counters) makes
//! [`WriteLog::drain`] say `lost`, on which the caller restores whole images.
//!
//! An instance is a kernel object, not a file: `rm -rf` cannot remove it, `rmdir` can.
//! It is named `brink-PID.N` and removed on drop; one left by a killed process is
//! removed by the next [`WriteLog::open`] once that process is gone.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::BlockdevError;

/// Where tracefs is mounted on every distribution brink knows.
const TRACEFS: &str = "/sys/kernel/tracing";
/// The per-CPU ring buffer of the instance, in KiB: a state's writes are tens of
/// events of about 150 bytes, drained after every check.
const BUFFER_KB: u32 = 1024;
/// The instance's name: `PREFIX<pid>.<n>`.
const PREFIX: &str = "brink-";

/// A write the kernel issued to one of the watched devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevWrite {
    /// The device, as the kernel numbers it (`major << 20 | minor`).
    pub dev: u32,
    pub offset: u64,
    pub len: u64,
}

/// What [`WriteLog::drain`] read.
#[derive(Debug, Default)]
pub struct Drained {
    pub writes: Vec<DevWrite>,
    /// The instance lost events since the last drain: the writes are not all there.
    pub lost: bool,
}

/// A private tracefs instance logging the write requests issued to some devices.
#[derive(Debug)]
pub struct WriteLog {
    dir: PathBuf,
    /// `trace_pipe`, open (None only while the instance is made or removed: an instance
    /// with a file open cannot be removed).
    pipe: Option<File>,
    text: Vec<u8>,
    lost_before: u64,
    /// Each CPU buffer's `stats` file, open.
    stats: Vec<(File, PathBuf)>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl WriteLog {
    /// The instance directory the next [`WriteLog::open`] of this process creates (for a
    /// watchdog to remove).
    pub fn planned_path() -> PathBuf {
        instance_path(NEXT.load(Ordering::SeqCst))
    }

    /// Create an instance logging nothing yet ([`WriteLog::watch`] names the devices).
    pub fn open() -> Result<WriteLog, BlockdevError> {
        let instances = Path::new(TRACEFS).join("instances");
        sweep_dead(&instances);
        let dir = instance_path(NEXT.fetch_add(1, Ordering::SeqCst));
        std::fs::create_dir(&dir).map_err(|e| BlockdevError::sys(format!("cannot create {}", dir.display()), e))?;
        let mut log = WriteLog { pipe: None, dir, text: Vec::new(), lost_before: 0, stats: Vec::new() };
        let event = log.dir.join("events/block/block_rq_issue");
        log.write(Path::new("buffer_size_kb"), &BUFFER_KB.to_string())?;
        // The filter [`WriteLog::watch`] sets, on no device yet: a kernel that cannot
        // take it fails here, before any slot is made.
        log.write(&event.join("filter"), &filter(&[]))?;
        log.write(&event.join("enable"), "1")?;
        let pipe_path = log.dir.join("trace_pipe");
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&pipe_path)
            .map_err(|e| BlockdevError::sys(format!("cannot open {}", pipe_path.display()), e))?;
        log.pipe = Some(pipe);
        log.lost_before = log.lost_events()?;
        Ok(log)
    }

    /// Log the writes to exactly these devices (the kernel's numbers: [`kernel_dev`]).
    pub fn watch(&mut self, devs: &[u32]) -> Result<(), BlockdevError> {
        self.write(Path::new("events/block/block_rq_issue/filter"), &filter(devs))
    }

    /// The writes logged since the last drain, and whether any were lost.
    pub fn drain(&mut self) -> Result<Drained, BlockdevError> {
        let pipe_path = self.dir.join("trace_pipe");
        let fail = |e| BlockdevError::sys(format!("cannot read {}", pipe_path.display()), e);
        let mut chunk = [0u8; 16 << 10];
        let pipe = self.pipe.as_mut().expect("open while the log lives");
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.text.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(e)),
            }
        }
        // Whole lines only; a line cut by the read stays for the next drain.
        let end = self.text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text: Vec<u8> = self.text.drain(..end).collect();
        let mut drained = Drained::default();
        for line in String::from_utf8_lossy(&text).lines() {
            match parse_line(line) {
                Line::Write(w) => drained.writes.push(w),
                Line::Other => {}
                // Not understood: a write it may be is not known, which is a loss.
                Line::Lost => drained.lost = true,
            }
        }
        let lost_now = self.lost_events()?;
        drained.lost |= lost_now != self.lost_before;
        self.lost_before = lost_now;
        Ok(drained)
    }

    /// Events overwritten or dropped so far, over every CPU's buffer (each `stats` file
    /// is opened once and read again from its start).
    fn lost_events(&mut self) -> Result<u64, BlockdevError> {
        let fail = |what: &str, path: &Path, e| BlockdevError::sys(format!("cannot {what} {}", path.display()), e);
        if self.stats.is_empty() {
            let per_cpu = self.dir.join("per_cpu");
            for e in std::fs::read_dir(&per_cpu).map_err(|e| fail("list", &per_cpu, e))?.flatten() {
                let path = e.path().join("stats");
                self.stats.push((File::open(&path).map_err(|e| fail("open", &path, e))?, path));
            }
        }
        let mut lost = 0;
        let mut buf = vec![0u8; 4096];
        for (f, path) in &self.stats {
            let n = f.read_at(&mut buf, 0).map_err(|e| fail("read", path, e))?;
            lost += lost_in_stats(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok(lost)
    }

    fn write(&self, file: &Path, value: &str) -> Result<(), BlockdevError> {
        let path = self.dir.join(file);
        std::fs::write(&path, value)
            .map_err(|e| BlockdevError::sys(format!("cannot write {value:?} to {}", path.display()), e))
    }
}

impl Drop for WriteLog {
    fn drop(&mut self) {
        let _ = self.write(Path::new("events/block/block_rq_issue/enable"), "0");
        drop(self.pipe.take());
        self.stats.clear();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The event filter for the devices `devs` (kernel numbers; none: device 0, which is
/// no device). Reads and empty requests (flushes) are left out in the kernel: formatting
/// the events as text is most of what a drain costs.
fn filter(devs: &[u32]) -> String {
    let devs: Vec<String> = devs.iter().map(|d| format!("dev == {d}")).collect();
    let devs = if devs.is_empty() { "dev == 0".to_string() } else { devs.join(" || ") };
    format!("({devs}) && nr_sector > 0 && !(rwbs ~ \"R*\")")
}

fn instance_path(n: u32) -> PathBuf {
    Path::new(TRACEFS).join("instances").join(format!("{PREFIX}{}.{n}", std::process::id()))
}

/// Remove the instances of processes that are gone.
fn sweep_dead(instances: &Path) {
    let Ok(entries) = std::fs::read_dir(instances) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|p| p.split('.').next());
        let Some(pid) = pid.and_then(|p| p.parse::<i32>().ok()) else { continue };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// The kernel's number of the block device file `dev` (`major << 20 | minor`, as the
/// block events carry it).
pub fn kernel_dev(dev: &Path) -> Result<u32, BlockdevError> {
    let m = std::fs::metadata(dev).map_err(|e| BlockdevError::sys(format!("cannot stat {}", dev.display()), e))?;
    if !m.file_type().is_block_device() {
        let e = std::io::Error::other("not a block device");
        return Err(BlockdevError::sys(format!("cannot log writes to {}", dev.display()), e));
    }
    let rdev = m.rdev();
    Ok((nix::sys::stat::major(rdev) as u32) << 20 | nix::sys::stat::minor(rdev) as u32)
}

/// What a line of `trace_pipe` says.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A request that may change the device's bytes.
    Write(DevWrite),
    /// A read, an empty request (a flush), or no event of this log.
    Other,
    /// Events were lost (the reader's `[LOST N EVENTS]`), or an issue line brink cannot
    /// read.
    Lost,
}

/// A `block_rq_issue` line (`... block_rq_issue: 7,3 WS 4096 () 2048 + 8 ...`): any
/// request but a read or an empty one (a flush) may change the device's bytes.
fn parse_line(line: &str) -> Line {
    if line.contains("[LOST ") && line.contains(" EVENTS]") {
        return Line::Lost;
    }
    let Some((_, rest)) = line.split_once("block_rq_issue: ") else { return Line::Other };
    parse_issue(rest).unwrap_or(Line::Lost)
}

fn parse_issue(rest: &str) -> Option<Line> {
    let mut f = rest.split_whitespace();
    let (major, minor) = f.next()?.split_once(',')?;
    let rwbs = f.next()?;
    let _bytes = f.next()?;
    // The command is `()` for file-system requests; skip to the sector either way.
    let mut sector = f.next()?;
    while sector.starts_with('(') || sector.ends_with(')') {
        sector = f.next()?;
    }
    let (sector, plus, nr) = (sector.parse::<u64>().ok()?, f.next()?, f.next()?.parse::<u64>().ok()?);
    if plus != "+" {
        return None;
    }
    if rwbs.starts_with('R') || nr == 0 {
        return Some(Line::Other);
    }
    let dev = major.parse::<u32>().ok()?.checked_shl(20)? | minor.parse::<u32>().ok()?;
    Some(Line::Write(DevWrite { dev, offset: sector.checked_mul(512)?, len: nr.checked_mul(512)? }))
}

/// The events a per-CPU `stats` file says were lost: overwritten unread, overrun while
/// being committed, or dropped.
fn lost_in_stats(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(k.trim(), "overrun" | "commit overrun" | "dropped events"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_read_from_issue_lines_and_reads_and_flushes_skipped() {
        let w = "  jbd2/loop3-8-123 [001] ..... 10.5: block_rq_issue: 7,3 WS 4096 () 2048 + 8 none,0,0 [jbd2/loop3-8]";
        assert_eq!(parse_line(w), Line::Write(DevWrite { dev: 7 << 20 | 3, offset: 2048 * 512, len: 4096 }));
        let discard = "x: block_rq_issue: 7,4 D 0 () 8 + 16 none,0,0 [fstrim]";
        assert_eq!(parse_line(discard), Line::Write(DevWrite { dev: 7 << 20 | 4, offset: 4096, len: 8192 }));
        let read = "x: block_rq_issue: 7,3 RA 4096 () 2048 + 8 none,0,0 [mount]";
        assert_eq!(parse_line(read), Line::Other);
        let flush = "x: block_rq_issue: 7,3 FF 0 () 0 + 0 none,0,0 [kworker/0:1]";
        assert_eq!(parse_line(flush), Line::Other);
        assert_eq!(parse_line("x: block_rq_complete: 7,3 WS () 2048 + 8 [0]"), Line::Other);
    }

    #[test]
    fn lost_events_and_unreadable_issue_lines_are_losses() {
        assert_eq!(parse_line("CPU:1 [LOST 12 EVENTS]"), Line::Lost);
        assert_eq!(parse_line("x: block_rq_issue: 7,3 WS 4096 () 2048 - 8 [a]"), Line::Lost);
        assert_eq!(parse_line("x: block_rq_issue: 7,3 WS 4096 () 99999999999999999999 + 8 [a]"), Line::Lost);
        assert_eq!(parse_line("x: block_rq_issue: 7,3 WS 4096 () 36028797018963968 + 8 [a]"), Line::Lost);
        assert_eq!(parse_line("x: block_rq_issue: 7,3"), Line::Lost);
    }

    #[test]
    fn lost_events_add_the_three_counters() {
        let stats = "entries: 3\noverrun: 2\ncommit overrun: 1\nbytes: 100\ndropped events: 4\nread events: 9\n";
        assert_eq!(lost_in_stats(stats), 7);
    }
}
