//! The lints' one pass over the calls, in trace order: each call updates the model
//! ([`crate::state`]) and the changes not yet durable (directory entries, file data,
//! failed fsyncs, shared mappings, mixed direct and buffered descriptors); each
//! acknowledgement turns every change still pending into an occurrence of its lint and
//! starts afresh; the occurrences are grouped into findings.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use brink_calls::{Call, CallKind, CallResult, Fd, Flags, Mmap, Target, Untraceable, map_flag, open_flag};

use crate::finding::{Ack, CallRef, Finding, Findings, LintKind, Occurrence};
use crate::paths;
use crate::state::{DescId, FileId, State};

mod durable;

/// Errors of a failed fsync that say nothing about the data (a bad descriptor, a file
/// that cannot be synced): the call did nothing, like any other failed call.
const FSYNC_ERRORS_IGNORED: &[&str] = &["EBADF", "EINVAL", "EROFS", "EINTR", "ERESTARTSYS"];

/// A directory entry change not yet covered by an fsync of its directories.
#[derive(Debug)]
struct Entry {
    occurrence: Occurrence,
    /// The directories still to be fsynced (two for a rename across directories).
    needs: Vec<FileId>,
    /// A name created since the last acknowledgement: removing or renaming it cancels
    /// the need to make the creation durable.
    created: bool,
}

#[derive(Debug)]
struct Failed {
    occurrence: Occurrence,
    /// The file was written since the failure: a successful fsync now makes it durable.
    rewritten: bool,
}

#[derive(Debug)]
struct Mapping {
    file: FileId,
    start: u64,
    end: u64,
    occurrence: Occurrence,
}

/// The pass's state.
pub(crate) struct Walker<'a> {
    pub(crate) state: State,
    preexisting: &'a BTreeSet<PathBuf>,
    findings: Findings,
    entries: HashMap<(FileId, OsString), Entry>,
    data: HashMap<FileId, Vec<Occurrence>>,
    failed: HashMap<FileId, Failed>,
    maps: Vec<Mapping>,
    conflicts: Vec<Occurrence>,
}

impl<'a> Walker<'a> {
    pub fn new(calls: &[Call], base: Option<&Path>, mark: &Path, preexisting: &'a BTreeSet<PathBuf>) -> Self {
        Walker {
            state: State::new(calls, base, mark),
            preexisting,
            findings: Findings::default(),
            entries: HashMap::new(),
            data: HashMap::new(),
            failed: HashMap::new(),
            maps: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    /// The findings, once every call was stepped through: mixed descriptors with no
    /// acknowledgement after them are still reported; other changes never acknowledged
    /// are no mistake.
    pub fn finish(mut self) -> Vec<Finding> {
        let base = self.state.base.clone();
        for occurrence in std::mem::take(&mut self.conflicts) {
            self.findings.add(&occurrence, None, base.as_deref());
        }
        self.findings.into_sorted()
    }

    /// One call. A failed call changes nothing, except a failed fsync (the data it could
    /// not write may be gone) and a failed `close` (the descriptor is closed anyway,
    /// unless it was not open: `EBADF`).
    pub fn step(&mut self, call: &Call) {
        let proc = self.state.proc_of(call.tid);
        match (&call.kind, &call.result) {
            (CallKind::Exit { group: true, .. }, _) => self.state.exit(proc),
            (CallKind::Fsync { fd, .. }, CallResult::Err(error)) => self.fsync_failed(proc, call, fd, error),
            (CallKind::Close { fd }, CallResult::Err(error)) if error != "EBADF" => self.state.close(proc, fd.num),
            (_, CallResult::Ok(result)) => self.apply(proc, call, *result),
            _ => {}
        }
    }

    fn apply(&mut self, proc: usize, call: &Call, result: i64) {
        match &call.kind {
            CallKind::Open { dir, path, flags, fd, .. } => {
                self.open(proc, call, (dir.as_ref(), path), *flags, fd.as_ref(), result);
            }
            CallKind::Close { fd } => self.state.close(proc, fd.num),
            CallKind::Dup { old, cloexec, .. } => {
                if let (Some(desc), Ok(new)) = (self.state.desc_of(proc, old), i32::try_from(result)) {
                    if new != old.num {
                        self.state.install(proc, new, desc, *cloexec);
                    }
                }
            }
            CallKind::Fcntl { fd, flags: Some(flags), .. } => {
                if let Some(desc) = self.state.desc_of(proc, fd) {
                    self.state.descs[desc].direct = flags.contains(open_flag::DIRECT);
                }
            }
            CallKind::Chdir { target } => self.chdir(proc, target),
            CallKind::Write { fd, data, truncated, flags, .. } if result > 0 => {
                self.write(proc, call, fd, (data, *truncated), *flags);
            }
            CallKind::Truncate { target, .. } => self.truncate(proc, call, target),
            CallKind::Fallocate { fd, .. } => {
                if let Some(desc) = self.state.desc_of(proc, fd) {
                    self.data_change(call, desc, LintKind::DataWithoutFsync, "of");
                }
            }
            // A clone ioctl returns 0; the other copies return the bytes moved.
            CallKind::Copy { to, .. } if result > 0 || call.name == "ioctl" => {
                if let Some(desc) = self.state.desc_of(proc, to) {
                    self.data_change(call, desc, LintKind::CopyWithoutFsync, "into");
                }
            }
            CallKind::Fsync { fd, .. } => {
                if let Some(desc) = self.state.desc_of(proc, fd) {
                    let file = self.state.descs[desc].file;
                    self.synced(Some(file));
                }
            }
            CallKind::Sync | CallKind::Syncfs { .. } => self.synced(None),
            CallKind::Msync { addr, len, flags } if flags.contains(map_flag::MS_SYNC) => {
                let end = addr.saturating_add(*len);
                self.maps.retain(|m| m.end <= *addr || m.start >= end);
            }
            CallKind::Untraceable { what: Untraceable::SharedWritableMapping(map) } => {
                self.mapping(proc, call, map, result);
            }
            _ => self.apply_names(proc, call, result),
        }
    }

    /// The calls that change names, and the process calls.
    fn apply_names(&mut self, proc: usize, call: &Call, result: i64) {
        match &call.kind {
            CallKind::Rename { old_dir, old, new_dir, new, flags } => {
                let old = self.state.resolve(proc, old_dir.as_ref(), old);
                let new = self.state.resolve(proc, new_dir.as_ref(), new);
                self.rename(call, &old, &new, flags.contains(brink_calls::rename_flag::EXCHANGE));
            }
            CallKind::Link { old_dir, old, new_dir, new } => {
                let file = match old_dir {
                    Some(fd) if old.is_empty() && fd.num >= 0 => {
                        self.state.desc_of(proc, fd).map(|d| self.state.descs[d].file)
                    }
                    _ => {
                        let old = self.state.resolve(proc, old_dir.as_ref(), old);
                        Some(self.state.file_at(&old))
                    }
                };
                let new = self.state.resolve(proc, new_dir.as_ref(), new);
                if let Some(file) = file {
                    self.state.bind(&new, file);
                    let what = format!("{}({})", call.name, self.state.show(&new, false));
                    self.entry_change(call, &new, what, None, false);
                }
            }
            CallKind::Unlink { dir, path, .. } => {
                let path = self.state.resolve(proc, dir.as_ref(), path);
                self.unlink(call, &path);
            }
            CallKind::Mkdir { dir, path, .. } | CallKind::Symlink { dir, path, .. } => {
                let path = self.state.resolve(proc, dir.as_ref(), path);
                let file = self.state.new_file(Some(&path));
                self.state.bind(&path, file);
                self.state.files[file].dir = matches!(call.kind, CallKind::Mkdir { .. });
                let what = format!("{}({})", call.name, self.state.show(&path, false));
                self.entry_change(call, &path, what, None, true);
            }
            CallKind::Spawn { .. } => {
                if let Ok(child) = u32::try_from(result) {
                    self.state.proc_of(child);
                }
            }
            CallKind::Exec { .. } => self.state.exec(proc),
            CallKind::Other { raw_args } if call.name == "close_range" => close_range(&mut self.state, proc, raw_args),
            _ => {}
        }
    }

    fn open(
        &mut self,
        proc: usize,
        call: &Call,
        (dir, path): (Option<&Fd>, &[u8]),
        flags: Flags,
        fd: Option<&Fd>,
        result: i64,
    ) {
        let Ok(num) = i32::try_from(result) else { return };
        let printed = fd.filter(|f| !f.deleted).and_then(Fd::path).map(paths::normalize);
        let full = printed.unwrap_or_else(|| self.state.resolve(proc, dir, path));
        self.state.learn_cwd(proc, dir);
        let tmpfile = flags.contains(open_flag::TMPFILE);
        let creates = flags.contains(open_flag::CREAT)
            && !tmpfile
            && (flags.contains(open_flag::EXCL) || !(self.state.is_known(&full) || self.preexisting.contains(&full)));
        let file = if tmpfile || creates { self.state.new_file(Some(&full)) } else { self.state.file_at(&full) };
        if creates {
            self.state.bind(&full, file);
            let what = format!("{}({}, O_CREAT)", call.name, self.state.show(&full, false));
            self.entry_change(call, &full, what, None, true);
        }
        if flags.contains(open_flag::DIRECTORY) {
            self.state.files[file].dir = true;
        }
        let opened = CallRef::new(call, vec![self.state.show(&full, false)]);
        let direct = flags.contains(open_flag::DIRECT);
        let sync = flags.contains(open_flag::SYNC) || flags.contains(open_flag::DSYNC);
        let desc = self.state.new_desc(file, direct, sync, Some(opened));
        self.state.install(proc, num, desc, false);
        if flags.contains(open_flag::TRUNC) && !creates && !tmpfile {
            self.data_change(call, desc, LintKind::DataWithoutFsync, "with O_TRUNC of");
        }
    }

    fn chdir(&mut self, proc: usize, target: &Target) {
        let path = match target {
            Target::Path { dir, path } => Some(self.state.resolve(proc, dir.as_ref(), path)),
            Target::Fd(fd) => {
                let desc = self.state.desc_of(proc, fd);
                desc.and_then(|d| self.state.files[self.state.descs[d].file].path.clone())
            }
        };
        if let Some(path) = path {
            self.state.set_cwd(proc, path);
        }
    }

    fn write(&mut self, proc: usize, call: &Call, fd: &Fd, (data, truncated): (&[u8], bool), flags: Flags) {
        let Some(desc) = self.state.desc_of(proc, fd) else { return };
        let file = self.state.descs[desc].file;
        if self.state.files[file].mark {
            let mut mark = String::from_utf8_lossy(data).trim_end_matches('\n').to_string();
            if truncated {
                mark.push('…');
            }
            self.ack(Ack { seq: call.seq, mark });
            return;
        }
        if !self.counts(desc) {
            return;
        }
        self.check_direct(call, desc);
        let durable = flags.contains(brink_calls::rwf_flag::SYNC) || flags.contains(brink_calls::rwf_flag::DSYNC);
        if !durable {
            self.data_change(call, desc, LintKind::DataWithoutFsync, "to");
        } else if let Some(failed) = self.failed.get_mut(&file) {
            failed.rewritten = true;
        }
    }

    /// Whether changes through `desc` are the workload's data: a file on storage, not a
    /// directory, not the mark file, opened in the trace.
    fn counts(&self, desc: DescId) -> bool {
        let d = &self.state.descs[desc];
        let f = &self.state.files[d.file];
        d.own && f.storage && !f.dir && !f.mark
    }

    fn truncate(&mut self, proc: usize, call: &Call, target: &Target) {
        match target {
            Target::Fd(fd) => {
                if let Some(desc) = self.state.desc_of(proc, fd) {
                    self.data_change(call, desc, LintKind::DataWithoutFsync, "of");
                }
            }
            Target::Path { dir, path } => {
                let path = self.state.resolve(proc, dir.as_ref(), path);
                let file = self.state.file_at(&path);
                let f = &self.state.files[file];
                if f.storage && !f.dir && !f.mark {
                    self.file_change(call, file, LintKind::DataWithoutFsync, "of");
                }
            }
        }
    }

    /// Data changed through `desc` by `call` (`{name} {preposition} {file}`), pending
    /// until the file is fsynced; durable at once through an `O_SYNC`/`O_DSYNC` description.
    fn data_change(&mut self, call: &Call, desc: DescId, kind: LintKind, preposition: &str) {
        if !self.counts(desc) {
            return;
        }
        let file = self.state.descs[desc].file;
        if self.state.descs[desc].sync {
            if let Some(failed) = self.failed.get_mut(&file) {
                failed.rewritten = true;
            }
            return;
        }
        self.file_change(call, file, kind, preposition);
    }

    /// `file`'s data changed by `call`, pending until it is fsynced.
    fn file_change(&mut self, call: &Call, file: FileId, kind: LintKind, preposition: &str) {
        if let Some(failed) = self.failed.get_mut(&file) {
            failed.rewritten = true;
        }
        let path = self.state.show_file(file);
        let pending = self.data.entry(file).or_default();
        let site = brink_calls::Site::of(call);
        if let Some(same) = pending.iter_mut().find(|o| o.kind == kind && o.calls[0].site == site) {
            same.count += 1;
            return;
        }
        pending.push(Occurrence {
            kind,
            calls: vec![CallRef::new(call, vec![path.clone()])],
            what: format!("{} {preposition} {path}", call.name),
            path,
            detail: String::new(),
            count: 1,
        });
    }

    /// The file written through `desc` is open elsewhere with the other `O_DIRECT` setting.
    fn check_direct(&mut self, call: &Call, desc: DescId) {
        let d = &self.state.descs[desc];
        let file = d.file;
        let Some(&other) = self.state.files[file].descs.iter().find(|&&o| self.state.descs[o].direct != d.direct)
        else {
            return;
        };
        let site = brink_calls::Site::of(call);
        let path = self.state.show_file(file);
        if let Some(same) = self.conflicts.iter_mut().find(|o| o.calls[0].site == site && o.path == path) {
            same.count += 1;
            return;
        }
        let base = self.state.base.as_deref();
        let (mine, theirs) = if d.direct { ("an O_DIRECT", "a buffered") } else { ("a buffered", "an O_DIRECT") };
        let opened = self.state.descs[other].opened.clone();
        let at = opened.as_ref().map_or_else(String::new, |o| format!(" (opened at {})", o.site.show(base)));
        let mut calls = vec![CallRef::new(call, vec![path.clone()])];
        calls.extend(opened);
        self.conflicts.push(Occurrence {
            kind: LintKind::DirectAndBuffered,
            calls,
            what: format!("{} to {path}", call.name),
            detail: format!("{mine} descriptor while {theirs} descriptor{at} was open on the same file"),
            path,
            count: 1,
        });
    }

    fn mapping(&mut self, proc: usize, call: &Call, map: &Mmap, result: i64) {
        let Some(desc) = map.fd.as_ref().and_then(|fd| self.state.desc_of(proc, fd)) else { return };
        let file = self.state.descs[desc].file;
        if !self.state.files[file].storage || self.state.files[file].mark {
            return;
        }
        let start = result as u64;
        let path = self.state.show_file(file);
        let occurrence = Occurrence {
            kind: LintKind::MmapWithoutMsync,
            calls: vec![CallRef::new(call, vec![path.clone()])],
            what: format!("the shared writable mapping of {path} ({})", call.name),
            path,
            detail: String::new(),
            count: 1,
        };
        self.maps.push(Mapping { file, start, end: start.saturating_add(map.len), occurrence });
    }
}

/// `close_range(first, last, flags)` from its raw arguments (it is not decoded); with
/// `CLOSE_RANGE_CLOEXEC` nothing closes now.
fn close_range(state: &mut State, proc: usize, raw: &str) {
    let args: Vec<&str> = raw.split(',').map(str::trim).collect();
    if args.get(2).is_some_and(|f| f.contains("CLOSE_RANGE_CLOEXEC")) {
        return;
    }
    let number = |i: usize| args.get(i).and_then(|a| a.split('<').next()?.parse::<i64>().ok());
    if let (Some(first), Some(last)) = (number(0), number(1)) {
        state.close_range(proc, first, last);
    }
}
