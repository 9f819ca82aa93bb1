//! Fault injection: the recorder's disk fails chosen requests with EIO, under the real
//! file system, so the workload sees whatever the kernel really does with a failed
//! write or flush (the fsync-failure problem: the error is reported once, the pages are
//! marked clean, a retried fsync succeeds although the data never reached the disk).
//!
//! A failed request reaches no media: a failed write leaves the image untouched, a
//! failed flush makes nothing durable. Each is logged as an `Error` event in order with
//! the rest, so replaying a trace with errors gives exactly the image the disk held.
//!
//! Requests are counted and matched from the moment the workload starts: the mount's
//! own requests are never failed (a failed mount is not an application's problem).
//!
//! Targets, as `--inject` spells them (`,permanent` fails every match from the first
//! on; the default, `,once`, fails only the first match):
//! - `flush:N`: the N-th flush after the workload started;
//! - `write:N`: the N-th write after the workload started;
//! - `sectors:A-B`: writes touching 512-byte sectors A to B-1;
//! - `file:PATH`: writes touching the data blocks of PATH (relative to the file
//!   system's root), read from the base image's metadata after `--setup` (ext4 through
//!   debugfs, XFS through xfs_db). The file must exist with its blocks allocated by
//!   then, as a database preallocates its files; a file created by the workload has no
//!   blocks to aim at yet. Btrfs is refused: it writes file data copy-on-write to new
//!   places, so the blocks a file holds before the workload are not where its next
//!   writes go.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use brink_blockdev::FsKind;

use crate::RecordError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Flush(u64),
    Write(u64),
    /// Byte range `[start, end)`.
    Bytes(u64, u64),
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub target: Target,
    pub permanent: bool,
}

impl FromStr for Injection {
    type Err = String;

    fn from_str(s: &str) -> Result<Injection, String> {
        let usage = || format!("bad injection '{s}': use flush:N, write:N, sectors:A-B or file:PATH, optionally ,once or ,permanent");
        let (spec, permanent) = match s.rsplit_once(',') {
            Some((spec, "permanent")) => (spec, true),
            Some((spec, "once")) => (spec, false),
            _ => (s, false),
        };
        let (kind, arg) = spec.split_once(':').ok_or_else(usage)?;
        let nth = |a: &str| a.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(usage);
        let target = match kind {
            "flush" => Target::Flush(nth(arg)?),
            "write" => Target::Write(nth(arg)?),
            "sectors" => {
                let (a, b) = arg.split_once('-').ok_or_else(usage)?;
                let (a, b) = (a.parse::<u64>().map_err(|_| usage())?, b.parse::<u64>().map_err(|_| usage())?);
                if a >= b || b > u64::MAX / 512 {
                    return Err(format!("bad injection '{s}': the sector range {a}-{b} is empty or too large"));
                }
                Target::Bytes(a * 512, b * 512)
            }
            "file" if !arg.is_empty() => Target::File(arg.trim_start_matches('/').to_string()),
            _ => return Err(usage()),
        };
        Ok(Injection { target, permanent })
    }
}

impl std::fmt::Display for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Flush(n) => write!(f, "flush:{n}")?,
            Target::Write(n) => write!(f, "write:{n}")?,
            Target::Bytes(a, b) => write!(f, "sectors:{}-{}", a / 512, b / 512)?,
            Target::File(p) => write!(f, "file:{p}")?,
        }
        write!(f, "{}", if self.permanent { ",permanent" } else { ",once" })
    }
}

/// What an armed rule matches.
#[derive(Debug, Clone)]
enum Match {
    NthFlush(u64),
    NthWrite(u64),
    /// Sorted, non-overlapping byte ranges.
    Ranges(Vec<(u64, u64)>),
}

#[derive(Debug, Clone)]
struct Rule {
    what: Match,
    permanent: bool,
    fired: bool,
}

/// The injections of one recording, resolved to what the disk sees, with the counters
/// the rules need. Consulted only while recording.
#[derive(Debug, Default)]
pub(crate) struct Armed {
    rules: Vec<Rule>,
    flushes: u64,
    writes: u64,
}

impl Armed {
    /// Does this write fail? Counts it either way.
    pub(crate) fn write(&mut self, offset: u64, len: u64) -> bool {
        self.writes += 1;
        let n = self.writes;
        self.decide(|m| match m {
            Match::NthWrite(k) => (n == *k, n >= *k),
            Match::Ranges(r) => {
                let hit = r.iter().any(|&(a, b)| offset < b && a < offset + len);
                (hit, hit)
            }
            Match::NthFlush(_) => (false, false),
        })
    }

    /// Does this flush fail? Counts it either way.
    pub(crate) fn flush(&mut self) -> bool {
        self.flushes += 1;
        let n = self.flushes;
        self.decide(|m| match m {
            Match::NthFlush(k) => (n == *k, n >= *k),
            _ => (false, false),
        })
    }

    /// `test` says whether a rule fails the request when it fires once, and when it is
    /// permanent (for an N-th rule: "is the N-th", "is the N-th or later"; for a range
    /// rule both are "touches the range").
    fn decide(&mut self, test: impl Fn(&Match) -> (bool, bool)) -> bool {
        let mut fail = false;
        for r in &mut self.rules {
            let (once, permanent) = test(&r.what);
            if (r.permanent && permanent) || (!r.permanent && once && !r.fired) {
                r.fired = true;
                fail = true;
            }
        }
        fail
    }
}

/// Check what can be checked before anything runs: ranges inside the image, file
/// targets on a file system whose metadata brink can read.
pub(crate) fn preflight(injections: &[Injection], fs: FsKind, size: u64) -> Result<(), RecordError> {
    for i in injections {
        match &i.target {
            Target::Bytes(_, end) if *end > size => {
                return Err(RecordError::Precondition(format!(
                    "injection {i}: the range ends past the {}-sector image",
                    size / 512
                )));
            }
            Target::File(_) if fs == FsKind::Btrfs => {
                return Err(RecordError::Precondition(format!(
                    "injection {i}: btrfs writes file data copy-on-write to new blocks, so a file's blocks before the workload are not its next writes; use write:N or sectors:A-B"
                )));
            }
            Target::File(_) => {
                let (tool, package) = metadata_tool(fs);
                if brink_blockdev::find_program(tool).is_none() {
                    return Err(RecordError::Precondition(format!("{tool} not found: install {package}")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Resolve the injections against the base image (unmounted, after setup).
pub(crate) fn arm(injections: &[Injection], fs: FsKind, image: &Path) -> Result<Armed, RecordError> {
    let mut rules = Vec::new();
    for i in injections {
        let what = match &i.target {
            Target::Flush(n) => Match::NthFlush(*n),
            Target::Write(n) => Match::NthWrite(*n),
            Target::Bytes(a, b) => Match::Ranges(vec![(*a, *b)]),
            Target::File(p) => Match::Ranges(file_ranges(fs, image, p).map_err(|e| RecordError::Precondition(format!("injection {i}: {e}")))?),
        };
        rules.push(Rule { what, permanent: i.permanent, fired: false });
    }
    Ok(Armed { rules, ..Armed::default() })
}

/// The program that reads `fs`'s metadata from an unmounted image, and its package.
fn metadata_tool(fs: FsKind) -> (&'static str, &'static str) {
    match fs {
        FsKind::Xfs => ("xfs_db", "xfsprogs"),
        _ => ("debugfs", "e2fsprogs"),
    }
}

/// Run the metadata tool of `fs` on `image` with `requests`, in order. Both tools
/// print a failed request's complaint on stderr (debugfs exits 0 all the same).
fn read_metadata(fs: FsKind, image: &Path, requests: &[&str]) -> Result<String, String> {
    let (tool, package) = metadata_tool(fs);
    let prog = brink_blockdev::find_program(tool).ok_or_else(|| format!("{tool} not found: install {package}"))?;
    let mut cmd = Command::new(prog);
    match fs {
        FsKind::Xfs => cmd.arg("-r").args(requests.iter().flat_map(|r| ["-c", r])),
        _ => cmd.arg("-R").arg(requests.join("; ")),
    };
    let o = cmd.arg(image).output().map_err(|e| format!("running {tool}: {e}"))?;
    let err = String::from_utf8_lossy(&o.stderr);
    if let Some(line) = err.lines().find(|l| !l.starts_with("debugfs ") && !l.trim().is_empty()) {
        return Err(line.trim().to_string());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The byte ranges of `path`'s data blocks in the image, merged.
fn file_ranges(fs: FsKind, image: &Path, path: &str) -> Result<Vec<(u64, u64)>, String> {
    let in_base = |e: String| format!("{path} in the base image: {e}");
    let (block, extents) = match fs {
        FsKind::Xfs => xfs_extents(image, path).map_err(in_base)?,
        _ => ext4_extents(image, path).map_err(in_base)?,
    };
    if extents.is_empty() {
        return Err(format!("{path} has no data blocks in the base image: create and fill it in --setup"));
    }
    Ok(merge(block, extents))
}

/// ext4, through debugfs: the block size and each data block as a 1-block extent.
fn ext4_extents(image: &Path, path: &str) -> Result<(u64, Vec<(u64, u64)>), String> {
    let stats = read_metadata(FsKind::Ext4, image, &["stats"])?;
    let block = field(&stats, "Block size:").ok_or("debugfs did not report the block size")?;
    let out = read_metadata(FsKind::Ext4, image, &[&format!("blocks \"/{path}\"")])?;
    Ok((block, out.split_whitespace().filter_map(|b| b.parse().ok()).map(|b| (b, 1)).collect()))
}

/// XFS, through xfs_db: the data fork's extents. A start block is printed as
/// `(AG/AGBLOCK)`; its place on the disk is `AG * agblocks + AGBLOCK` blocks.
fn xfs_extents(image: &Path, path: &str) -> Result<(u64, Vec<(u64, u64)>), String> {
    let sb = read_metadata(FsKind::Xfs, image, &["sb 0", "print blocksize agblocks"])?;
    let (block, agblocks) = match (field(&sb, "blocksize ="), field(&sb, "agblocks =")) {
        (Some(b), Some(a)) => (b, a),
        _ => return Err("xfs_db did not report the block size".into()),
    };
    if path.contains(char::is_whitespace) {
        return Err("xfs_db cannot name a path with white space; use sectors:A-B".into());
    }
    // xfs_db prints a failed request's complaint on standard output, before the extents.
    let out = read_metadata(FsKind::Xfs, image, &[&format!("path /{path}"), "bmap -d"])?;
    let mut extents = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        // data offset 0 startblock 24 (0/24) count 768 flag 0
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str, n: usize| words.iter().position(|w| *w == key).and_then(|i| words.get(i + n));
        let (Some(ag), Some(count)) = (after("startblock", 2), after("count", 1)) else {
            return Err(line.trim().to_string());
        };
        let unreadable = || format!("xfs_db printed an extent brink cannot read: {line}");
        let (a, b) = ag.trim_matches(|c| c == '(' || c == ')').split_once('/').ok_or_else(unreadable)?;
        let parse = |v: &str| v.parse::<u64>().map_err(|_| unreadable());
        extents.push((parse(a)? * agblocks + parse(b)?, parse(count)?));
    }
    Ok((block, extents))
}

/// The number after `key` on the line that starts with it.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.trim().strip_prefix(key).and_then(|v| v.trim().parse().ok()))
}

/// Block extents `(start, count)` to sorted, merged byte ranges.
fn merge(block: u64, mut extents: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    extents.sort_unstable();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (b, n) in extents {
        let (a, e) = (b * block, (b + n) * block);
        match ranges.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(e),
            _ => ranges.push((a, e)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(spec: &str) -> Armed {
        let i: Injection = spec.parse().unwrap();
        let what = match i.target {
            Target::Flush(n) => Match::NthFlush(n),
            Target::Write(n) => Match::NthWrite(n),
            Target::Bytes(a, b) => Match::Ranges(vec![(a, b)]),
            Target::File(_) => unreachable!(),
        };
        Armed { rules: vec![Rule { what, permanent: i.permanent, fired: false }], ..Armed::default() }
    }

    #[test]
    fn parse_and_print() {
        for s in ["flush:3,once", "write:10,permanent", "sectors:8-16,once", "file:db/wal,permanent"] {
            assert_eq!(s.parse::<Injection>().unwrap().to_string(), s);
        }
        assert_eq!("flush:2".parse::<Injection>().unwrap().to_string(), "flush:2,once");
        for bad in ["flush:0", "flush", "sectors:9-8", "sectors:1", "disk:3", "file:", "write:x"] {
            assert!(bad.parse::<Injection>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nth_flush_once_and_permanent() {
        let mut a = armed("flush:2");
        assert_eq!((1..=4).map(|_| a.flush()).collect::<Vec<_>>(), [false, true, false, false]);
        let mut a = armed("flush:2,permanent");
        assert_eq!((1..=4).map(|_| a.flush()).collect::<Vec<_>>(), [false, true, true, true]);
        // Writes do not count as flushes.
        let mut a = armed("flush:1");
        assert!(!a.write(0, 512));
        assert!(a.flush());
    }

    #[test]
    fn ranges_once_and_permanent() {
        let mut a = armed("sectors:8-16");
        assert!(!a.write(0, 4096));
        assert!(a.write(4096, 512));
        assert!(!a.write(4096, 512), "once: only the first match fails");
        let mut a = armed("sectors:8-16,permanent");
        assert!(a.write(3584, 1024), "a write overlapping the range fails");
        assert!(!a.write(8192, 512), "outside the range");
        assert!(a.write(7680, 512));
        let mut a = armed("write:2,permanent");
        assert_eq!((1..=3).map(|_| a.write(0, 512)).collect::<Vec<_>>(), [false, true, true]);
    }

    #[test]
    fn extents_merge_into_byte_ranges() {
        assert_eq!(merge(4096, vec![(10, 1), (24, 768), (11, 2), (5, 1)]), [(5 * 4096, 6 * 4096), (10 * 4096, 13 * 4096), (24 * 4096, 792 * 4096)]);
        assert_eq!(merge(1024, vec![(3, 4), (4, 1)]), [(3072, 7168)]);
    }
}
