//! What the lint reports: a [`Finding`] per root cause, with the offending call, its
//! source line, the acknowledgement it came before and one sentence in the program's
//! terms; and the grouping that makes a loop repeating one mistake one finding with a
//! count rather than a hundred.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use brink_calls::{Call, Site};
use serde::Serialize;

use crate::paths;

/// The lints, each a pattern visible in the calls alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LintKind {
    /// A directory entry changed (rename, link, creation, mkdir, symlink, unlink) and was
    /// acknowledged before its directory was fsynced.
    RenameWithoutDirFsync,
    /// File data changed (write, truncate, fallocate) and was acknowledged before the
    /// file was fsynced.
    DataWithoutFsync,
    /// An fsync failed and something was acknowledged before the file was written again
    /// and fsynced successfully.
    AckAfterFailedFsync,
    /// One file open with `O_DIRECT` on one descriptor and without it on another, written
    /// through one of them.
    DirectAndBuffered,
    /// Data copied in the kernel into a file acknowledged before the file was fsynced.
    CopyWithoutFsync,
    /// A shared writable file mapping followed by an acknowledgement with no
    /// `msync(MS_SYNC)` or fsync of the file.
    MmapWithoutMsync,
}

impl LintKind {
    /// Every lint, in the order of [`LintKind::name`]'s documentation.
    pub const ALL: [LintKind; 6] = [
        LintKind::RenameWithoutDirFsync,
        LintKind::DataWithoutFsync,
        LintKind::AckAfterFailedFsync,
        LintKind::DirectAndBuffered,
        LintKind::CopyWithoutFsync,
        LintKind::MmapWithoutMsync,
    ];

    /// The stable name, as `--json` and the text report spell it.
    pub fn name(self) -> &'static str {
        match self {
            LintKind::RenameWithoutDirFsync => "rename-without-dir-fsync",
            LintKind::DataWithoutFsync => "data-without-fsync",
            LintKind::AckAfterFailedFsync => "ack-after-failed-fsync",
            LintKind::DirectAndBuffered => "direct-and-buffered",
            LintKind::CopyWithoutFsync => "copy-without-fsync",
            LintKind::MmapWithoutMsync => "mmap-without-msync",
        }
    }
}

impl fmt::Display for LintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One call, as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRef {
    /// [`Call::seq`]: its position in the trace.
    pub seq: u64,
    pub tid: u32,
    /// The system call's name (`renameat2`, `pwrite64`, …).
    pub name: String,
    /// The paths it concerns, relative to the starting directory where possible.
    pub paths: Vec<String>,
    pub site: Site,
}

impl CallRef {
    pub(crate) fn new(call: &Call, paths: Vec<String>) -> CallRef {
        CallRef { seq: call.seq, tid: call.tid, name: call.name.clone(), paths, site: Site::of(call) }
    }
}

/// An acknowledgement: a line the workload wrote to its mark file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    /// The write's [`Call::seq`].
    pub seq: u64,
    /// The text written, without its final newline (lossy UTF-8; `…` when strace cut it).
    pub mark: String,
}

/// One root cause: a mistake made at one site on one (digit-folded) path, however many
/// times it was repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: LintKind,
    /// The offending call of the first occurrence, then any call it involves (the other
    /// descriptor's `open` for [`LintKind::DirectAndBuffered`]).
    pub calls: Vec<CallRef>,
    /// Where the offending call was made (the first call's site).
    pub site: Site,
    /// The file or directory at stake, relative to the starting directory where possible.
    pub path: String,
    /// How many times the mistake was made.
    pub count: u64,
    /// The first acknowledgement that came before the mistake was repaired; `None` only
    /// for [`LintKind::DirectAndBuffered`] with no acknowledgement after it.
    pub first_ack: Option<Ack>,
    /// The last such acknowledgement over all occurrences.
    pub last_ack: Option<Ack>,
    /// One sentence, in the program's terms, about the first occurrence.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if self.count > 1 {
            write!(f, " ({} times", self.count)?;
            if let Some(last) = &self.last_ack {
                write!(f, ", last before '{}'", last.mark)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A mistake seen once (or a few times at one site, before one acknowledgement), before
/// grouping.
#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    pub kind: LintKind,
    pub calls: Vec<CallRef>,
    /// The path at stake, shown.
    pub path: String,
    /// The call in words: `rename(a → b)`, `pwrite64 to data.db`.
    pub what: String,
    /// What the message needs beyond the call: the unsynced directories, the failed
    /// fsync's error, the other descriptor.
    pub detail: String,
    pub count: u64,
}

impl Occurrence {
    /// The sentence for a person, about this occurrence before `ack`.
    fn message(&self, ack: Option<&Ack>, base: Option<&Path>) -> String {
        let (what, path, detail) = (&self.what, &self.path, &self.detail);
        let site = self.calls[0].site.show(base);
        let ack = ack.map_or_else(|| "nothing".to_string(), |a| format!("'{}'", a.mark));
        match self.kind {
            LintKind::RenameWithoutDirFsync => format!(
                "{what} at {site} was acknowledged ({ack}) before {detail} fsynced: a power cut in between can lose it"
            ),
            LintKind::DataWithoutFsync => format!(
                "{what} at {site} was acknowledged ({ack}) before {path} was fsynced: a power cut in between can lose the data"
            ),
            LintKind::CopyWithoutFsync => format!(
                "{what} at {site} was acknowledged ({ack}) before {path} was fsynced: a power cut in between can lose the copied data"
            ),
            LintKind::AckAfterFailedFsync => format!(
                "{what} at {site} failed ({detail}) and {ack} was acknowledged without {path} being written again and fsynced: the kernel may have dropped the pages it could not write, and a retried fsync that succeeds does not make them durable"
            ),
            LintKind::DirectAndBuffered => format!(
                "{what} at {site} went through {detail}: direct I/O bypasses the page cache, so the two can read or persist different data"
            ),
            LintKind::MmapWithoutMsync => format!(
                "{what} at {site} was followed by an acknowledgement ({ack}) with no msync(MS_SYNC) or fsync of {path}: this cannot be verified; stores through the mapping may not be durable"
            ),
        }
    }
}

/// The findings so far, grouped by root cause.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    index: HashMap<(LintKind, String, String), usize>,
    list: Vec<Finding>,
}

impl Findings {
    /// Counts `occurrence`, which came before `ack`.
    pub fn add(&mut self, occurrence: &Occurrence, ack: Option<&Ack>, base: Option<&Path>) {
        let first = &occurrence.calls[0];
        let key = (occurrence.kind, first.site.key(), Self::where_key(occurrence));
        if let Some(&i) = self.index.get(&key) {
            let finding = &mut self.list[i];
            finding.count += occurrence.count;
            if ack.is_some() {
                finding.last_ack = ack.cloned();
                if finding.first_ack.is_none() {
                    finding.first_ack = ack.cloned();
                }
            }
            return;
        }
        self.index.insert(key, self.list.len());
        self.list.push(Finding {
            kind: occurrence.kind,
            calls: occurrence.calls.clone(),
            site: first.site.clone(),
            path: occurrence.path.clone(),
            count: occurrence.count,
            first_ack: ack.cloned(),
            last_ack: ack.cloned(),
            message: occurrence.message(ack, base),
        });
    }

    /// The grouping key's place: the path, digit-folded; for a call with no known site,
    /// also its name, so that unrelated calls on one path stay apart.
    fn where_key(occurrence: &Occurrence) -> String {
        let first = &occurrence.calls[0];
        let path = paths::fold_digits(&occurrence.path);
        match first.site {
            Site::Unknown => format!("{} {path}", first.name),
            _ => path,
        }
    }

    /// The findings, in the order of their first offending call.
    pub fn into_sorted(mut self) -> Vec<Finding> {
        self.list.sort_by_key(|f| (f.calls[0].seq, f.kind));
        self.list
    }
}
