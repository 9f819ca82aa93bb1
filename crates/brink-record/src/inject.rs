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
//! Targets, as `--inject` spells them. A rule counts the requests it matches and fails
//! the N-th (`@N`, default the first); `,permanent` fails that one and every later match,
//! `,once` (the default) only that one:
//! - `flush:N`: the N-th flush after the workload started;
//! - `write:N`: the N-th write after the workload started;
//! - `sectors:A-B[@N]`: writes touching 512-byte sectors A to B-1;
//! - `file:PATH[@N]`: writes touching the data blocks of PATH (relative to the file
//!   system's root), read from the base image's metadata after `--setup` (ext4 through
//!   debugfs, XFS through xfs_db). The file must exist with its blocks allocated by
//!   then, as a database preallocates its files; a file created by the workload has no
//!   blocks to aim at yet. Btrfs is refused: it writes file data copy-on-write to new
//!   places, so the blocks a file holds before the workload are not where its next
//!   writes go.
//!
//! A rule can also be armed to watch only (`brink faults sweep` counts the injection
//! points of a workload that way): it counts its matches and fails nothing.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use brink_blockdev::FsKind;
use brink_trace::SECTOR_BYTES;

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
    /// Which match fails, from 1. Always 1 for `flush:N` and `write:N` (N says it).
    pub nth: u64,
    pub permanent: bool,
}

/// An injection spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InjectionSpecError {
    #[error(
        "bad injection '{0}': use flush:N, write:N, sectors:A-B[@N] or file:PATH[@N], optionally ,once or ,permanent"
    )]
    Syntax(String),
    #[error("bad injection '{spec}': the sector range {start}-{end} is empty or too large")]
    SectorRange { spec: String, start: u64, end: u64 },
}

/// Why a `file:PATH` target cannot be aimed at the base image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileTargetError {
    /// The file's blocks could not be read from the image's metadata.
    #[error("{path} in the base image: {source}")]
    Metadata { path: String, source: MetadataError },
    /// The file exists but holds no data blocks yet.
    #[error("{path} has no data blocks in the base image: create and fill it in the setup command")]
    NoDataBlocks { path: String },
}

/// Why the file system's metadata tool did not give a file's blocks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    #[error("{tool} not found: install {package}")]
    ToolMissing { tool: &'static str, package: &'static str },
    #[error("running {tool}: {source}")]
    ToolFailed { tool: &'static str, source: std::io::Error },
    /// The tool's own complaint (no such file, a bad path), as it printed it.
    #[error("{line}")]
    Complaint { tool: &'static str, line: String },
    #[error("{tool} did not report the block size")]
    NoBlockSize { tool: &'static str },
    #[error("xfs_db cannot name a path with white space; use sectors:A-B")]
    WhiteSpaceInPath,
    #[error("xfs_db printed an extent brink cannot read: {line}")]
    UnreadableExtent { line: String },
}

impl FromStr for Injection {
    type Err = InjectionSpecError;

    fn from_str(s: &str) -> Result<Injection, InjectionSpecError> {
        let usage = || InjectionSpecError::Syntax(s.to_string());
        let (spec, permanent) = match s.rsplit_once(',') {
            Some((spec, "permanent")) => (spec, true),
            Some((spec, "once")) => (spec, false),
            _ => (s, false),
        };
        let (kind, arg) = spec.split_once(':').ok_or_else(usage)?;
        let nth = |a: &str| a.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(usage);
        // `@N` ends a range or file target; a path may hold '@' elsewhere.
        let (arg, n) = match arg.rsplit_once('@') {
            Some((a, n)) if matches!(kind, "sectors" | "file") && n.bytes().all(|b| b.is_ascii_digit()) => (a, nth(n)?),
            _ => (arg, 1),
        };
        let target = match kind {
            "flush" => Target::Flush(nth(arg)?),
            "write" => Target::Write(nth(arg)?),
            "sectors" => {
                let (a, b) = arg.split_once('-').ok_or_else(usage)?;
                let (a, b) = (a.parse::<u64>().map_err(|_| usage())?, b.parse::<u64>().map_err(|_| usage())?);
                if a >= b || b > u64::MAX / SECTOR_BYTES {
                    return Err(InjectionSpecError::SectorRange { spec: s.to_string(), start: a, end: b });
                }
                Target::Bytes(a * SECTOR_BYTES, b * SECTOR_BYTES)
            }
            "file" if !arg.is_empty() => Target::File(arg.trim_start_matches('/').to_string()),
            _ => return Err(usage()),
        };
        Ok(Injection { target, nth: n, permanent })
    }
}

impl std::fmt::Display for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Flush(n) => write!(f, "flush:{n}")?,
            Target::Write(n) => write!(f, "write:{n}")?,
            Target::Bytes(a, b) => write!(f, "sectors:{}-{}", a / SECTOR_BYTES, b / SECTOR_BYTES)?,
            Target::File(p) => write!(f, "file:{p}")?,
        }
        if self.nth > 1 {
            write!(f, "@{}", self.nth)?;
        }
        write!(f, "{}", if self.permanent { ",permanent" } else { ",once" })
    }
}

/// What an armed rule matches.
#[derive(Debug, Clone)]
enum Match {
    Flushes,
    Writes,
    /// Writes touching these sorted, non-overlapping byte ranges.
    Ranges(Vec<(u64, u64)>),
}

#[derive(Debug, Clone)]
struct Rule {
    what: Match,
    /// The match that fails first, from 1.
    nth: u64,
    permanent: bool,
    /// False for a rule that only watches.
    fails: bool,
    matches: u64,
}

impl Rule {
    /// The rule for `i`; a file target's ranges come from `file_ranges`.
    fn new(
        i: &Injection,
        fails: bool,
        file_ranges: impl FnOnce(&str) -> Result<Vec<(u64, u64)>, RecordError>,
    ) -> Result<Rule, RecordError> {
        let (what, nth) = match &i.target {
            Target::Flush(n) => (Match::Flushes, *n),
            Target::Write(n) => (Match::Writes, *n),
            Target::Bytes(a, b) => (Match::Ranges(vec![(*a, *b)]), i.nth),
            Target::File(p) => (Match::Ranges(file_ranges(p)?), i.nth),
        };
        Ok(Rule { what, nth, permanent: i.permanent, fails, matches: 0 })
    }
}

/// The injections of one recording, resolved to what the disk sees, each counting its
/// matches. Consulted only while recording.
#[derive(Debug, Default)]
pub(crate) struct Armed {
    /// The failing rules, then the watching ones.
    rules: Vec<Rule>,
}

impl Armed {
    /// Does this write fail? Counts it either way.
    pub(crate) fn write(&mut self, offset: u64, len: u64) -> bool {
        self.decide(|m| match m {
            Match::Writes => true,
            Match::Ranges(r) => r.iter().any(|&(a, b)| offset < b && a < offset + len),
            Match::Flushes => false,
        })
    }

    /// Does this flush fail? Counts it either way.
    pub(crate) fn flush(&mut self) -> bool {
        self.decide(|m| matches!(m, Match::Flushes))
    }

    /// Count the request against every rule it matches; it fails if a failing rule is
    /// at its N-th match (or past it, when permanent).
    fn decide(&mut self, hits: impl Fn(&Match) -> bool) -> bool {
        let mut fail = false;
        for r in self.rules.iter_mut().filter(|r| hits(&r.what)) {
            r.matches += 1;
            fail |= r.fails && (r.matches == r.nth || (r.permanent && r.matches > r.nth));
        }
        fail
    }

    /// How many requests each watching rule matched so far, in the order given.
    pub(crate) fn watched(&self) -> Vec<u64> {
        self.rules.iter().filter(|r| !r.fails).map(|r| r.matches).collect()
    }
}

/// Check what can be checked before anything runs: ranges inside the image, file
/// targets on a file system whose metadata brink can read.
pub(crate) fn preflight<'a>(
    injections: impl IntoIterator<Item = &'a Injection>,
    fs: FsKind,
    size: u64,
) -> Result<(), RecordError> {
    for i in injections {
        match &i.target {
            Target::Bytes(_, end) if *end > size => {
                return Err(RecordError::Precondition(format!(
                    "injection {i}: the range ends past the {}-sector image",
                    size / SECTOR_BYTES
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

/// Resolve the injections (which fail) and the watched targets (which only count)
/// against the base image (unmounted, after setup).
pub(crate) fn arm(inject: &[Injection], watch: &[Injection], fs: FsKind, image: &Path) -> Result<Armed, RecordError> {
    let rules = inject
        .iter()
        .map(|i| (i, true))
        .chain(watch.iter().map(|i| (i, false)))
        .map(|(i, fails)| {
            Rule::new(i, fails, |p| {
                file_ranges(fs, image, p).map_err(|source| RecordError::Injection { injection: i.to_string(), source })
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Armed { rules })
}

/// The program that reads `fs`'s metadata from an unmounted image, and its package.
fn metadata_tool(fs: FsKind) -> (&'static str, &'static str) {
    match fs {
        FsKind::Xfs => ("xfs_db", "xfsprogs"),
        _ => ("debugfs", "e2fsprogs"),
    }
}

/// Run the metadata tool of `fs` on `image` with `requests`, in order. debugfs prints a
/// failed request's complaint on stderr and exits 0 all the same; xfs_db prints it on
/// stdout, where its caller finds it.
fn read_metadata(fs: FsKind, image: &Path, requests: &[&str]) -> Result<String, MetadataError> {
    let (tool, package) = metadata_tool(fs);
    let prog = brink_blockdev::find_program(tool).ok_or(MetadataError::ToolMissing { tool, package })?;
    let mut cmd = Command::new(prog);
    match fs {
        FsKind::Xfs => cmd.arg("-r").args(requests.iter().flat_map(|r| ["-c", r])),
        _ => cmd.arg("-R").arg(requests.join("; ")),
    };
    let o = cmd.arg(image).output().map_err(|source| MetadataError::ToolFailed { tool, source })?;
    let err = String::from_utf8_lossy(&o.stderr);
    if let Some(line) = err.lines().find(|l| !l.starts_with("debugfs ") && !l.trim().is_empty()) {
        return Err(MetadataError::Complaint { tool, line: line.trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The byte ranges of `path`'s data blocks in the image, merged.
fn file_ranges(fs: FsKind, image: &Path, path: &str) -> Result<Vec<(u64, u64)>, FileTargetError> {
    let in_base = |source| FileTargetError::Metadata { path: path.to_string(), source };
    let (block, extents) = match fs {
        FsKind::Xfs => xfs_extents(image, path).map_err(in_base)?,
        _ => ext4_extents(image, path).map_err(in_base)?,
    };
    if extents.is_empty() {
        return Err(FileTargetError::NoDataBlocks { path: path.to_string() });
    }
    Ok(merge(block, extents))
}

/// ext4, through debugfs: the block size and each data block as a 1-block extent.
fn ext4_extents(image: &Path, path: &str) -> Result<(u64, Vec<(u64, u64)>), MetadataError> {
    let stats = read_metadata(FsKind::Ext4, image, &["stats"])?;
    let block = field(&stats, "Block size:").ok_or(MetadataError::NoBlockSize { tool: "debugfs" })?;
    let out = read_metadata(FsKind::Ext4, image, &[&format!("blocks \"/{path}\"")])?;
    Ok((block, out.split_whitespace().filter_map(|b| b.parse().ok()).map(|b| (b, 1)).collect()))
}

/// XFS, through xfs_db: the data fork's extents. A start block is printed as
/// `(AG/AGBLOCK)`; its place on the disk is `AG * agblocks + AGBLOCK` blocks.
fn xfs_extents(image: &Path, path: &str) -> Result<(u64, Vec<(u64, u64)>), MetadataError> {
    if path.contains(char::is_whitespace) {
        return Err(MetadataError::WhiteSpaceInPath);
    }
    let sb = read_metadata(FsKind::Xfs, image, &["sb 0", "print blocksize agblocks"])?;
    let (block, agblocks) = match (field(&sb, "blocksize ="), field(&sb, "agblocks =")) {
        (Some(b), Some(a)) => (b, a),
        _ => return Err(MetadataError::NoBlockSize { tool: "xfs_db" }),
    };
    // xfs_db prints a failed request's complaint on standard output, before the extents.
    let out = read_metadata(FsKind::Xfs, image, &[&format!("path /{path}"), "bmap -d"])?;
    let mut extents = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        // data offset 0 startblock 24 (0/24) count 768 flag 0
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str, n: usize| words.iter().position(|w| *w == key).and_then(|i| words.get(i + n));
        let (Some(ag), Some(count)) = (after("startblock", 2), after("count", 1)) else {
            return Err(MetadataError::Complaint { tool: "xfs_db", line: line.trim().to_string() });
        };
        let unreadable = || MetadataError::UnreadableExtent { line: line.to_string() };
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
        Armed { rules: vec![Rule::new(&i, true, |_| unreachable!("no file targets here")).unwrap()] }
    }

    #[test]
    fn parse_and_print() {
        for s in [
            "flush:3,once",
            "write:10,permanent",
            "sectors:8-16,once",
            "file:db/wal,permanent",
            "file:a@b@3,once",
            "sectors:1-2@2,once",
        ] {
            assert_eq!(s.parse::<Injection>().unwrap().to_string(), s);
        }
        assert_eq!("flush:2".parse::<Injection>().unwrap().to_string(), "flush:2,once");
        assert_eq!("file:a@b".parse::<Injection>().unwrap().target, Target::File("a@b".into()));
        for bad in
            ["flush:0", "flush", "sectors:9-8", "sectors:1", "disk:3", "file:", "write:x", "file:x@0", "flush:1@2"]
        {
            assert!(bad.parse::<Injection>().is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong_and_name_no_flag() {
        let e = "sectors:9-8".parse::<Injection>().unwrap_err();
        assert_eq!(e, InjectionSpecError::SectorRange { spec: "sectors:9-8".into(), start: 9, end: 8 });
        assert_eq!(e.to_string(), "bad injection 'sectors:9-8': the sector range 9-8 is empty or too large");
        let e = "disk:3".parse::<Injection>().unwrap_err();
        assert!(e.to_string().starts_with("bad injection 'disk:3': use flush:N, write:N"), "{e}");
        let e = crate::RecordError::Injection {
            injection: "file:db,once".into(),
            source: FileTargetError::NoDataBlocks { path: "db".into() },
        };
        assert_eq!(e.setting(), Some(crate::Setting::SetupCommand));
        assert_eq!(
            e.to_string(),
            "injection file:db,once: db has no data blocks in the base image: create and fill it in the setup command"
        );
        assert!(std::error::Error::source(&e).is_some());
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
    fn nth_match_of_a_range_and_watching() {
        let mut a = armed("sectors:8-16@2");
        let hits = [a.write(0, 512), a.write(4096, 512), a.write(8192, 512), a.write(4096, 512), a.write(4096, 512)];
        assert_eq!(hits, [false, false, false, true, false], "the second write into the range, once");
        let mut a = armed("sectors:8-16@2,permanent");
        assert_eq!((0..3).map(|_| a.write(4096, 512)).collect::<Vec<_>>(), [false, true, true]);
        // A watching rule counts and fails nothing.
        a.rules[0].fails = false;
        assert!(!a.write(4096, 512) && !a.flush());
        assert_eq!(a.watched(), [4]);
    }

    #[test]
    fn extents_merge_into_byte_ranges() {
        assert_eq!(
            merge(4096, vec![(10, 1), (24, 768), (11, 2), (5, 1)]),
            [(5 * 4096, 6 * 4096), (10 * 4096, 13 * 4096), (24 * 4096, 792 * 4096)]
        );
        assert_eq!(merge(1024, vec![(3, 4), (4, 1)]), [(3072, 7168)]);
    }
}
