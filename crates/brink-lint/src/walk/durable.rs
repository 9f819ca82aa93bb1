//! The walker's half that decides what is durable: directory entry changes and what
//! cancels them, fsyncs (successful or failed) and syncs, and the acknowledgement that
//! turns whatever is still pending into occurrences.

use std::path::Path;

use brink_calls::{Call, Fd};

use super::{Entry, FSYNC_ERRORS_IGNORED, Failed, Walker};
use crate::finding::{Ack, CallRef, LintKind, Occurrence};
use crate::state::FileId;

impl Walker<'_> {
    /// An entry of `path`'s directory changed (`what`, in words); `also` is a second
    /// directory a rename took the name from. `created`: a name that did not exist.
    pub(super) fn entry_change(&mut self, call: &Call, path: &Path, what: String, also: Option<FileId>, created: bool) {
        self.entry_change_from(call, None, path, what, also, created);
    }

    /// [`Walker::entry_change`] for a call that also names `from` (a rename's old name).
    fn entry_change_from(
        &mut self,
        call: &Call,
        from: Option<&Path>,
        path: &Path,
        what: String,
        also: Option<FileId>,
        created: bool,
    ) {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return };
        if path == self.mark_path() || !self.state.is_storage(path) {
            return;
        }
        let dir = self.state.file_at(parent);
        self.state.files[dir].dir = true;
        let mut needs = vec![dir];
        needs.extend(also.filter(|&d| d != dir));
        let shown = self.state.show(path, false);
        let occurrence = Occurrence {
            kind: LintKind::RenameWithoutDirFsync,
            calls: vec![CallRef::new(
                call,
                from.map(|f| self.state.show(f, false)).into_iter().chain([shown.clone()]).collect(),
            )],
            path: shown,
            what,
            detail: String::new(),
            count: 1,
        };
        self.entries.insert((dir, name.to_os_string()), Entry { occurrence, needs, created });
    }

    fn mark_path(&self) -> &Path {
        self.state.mark()
    }

    /// Removes the pending change of `path`'s entry if it was a creation: whether the
    /// creation was durable no longer matters. Returns whether it was.
    fn cancel_creation(&mut self, path: &Path) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
        if !self.state.is_known(parent) {
            return false;
        }
        let dir = self.state.file_at(parent);
        let key = (dir, name.to_os_string());
        if self.entries.get(&key).is_some_and(|e| e.created) {
            self.entries.remove(&key);
            return true;
        }
        false
    }

    pub(super) fn rename(&mut self, call: &Call, old: &Path, new: &Path, exchange: bool) {
        self.state.rename(old, new, exchange);
        let fresh = self.cancel_creation(old);
        let from_dir = match old.parent() {
            Some(parent) if !fresh => Some(self.state.file_at(parent)),
            _ => None,
        };
        let what = format!("{}({} → {})", call.name, self.state.show(old, false), self.state.show(new, false));
        self.entry_change_from(call, Some(old), new, what, from_dir, false);
    }

    pub(super) fn unlink(&mut self, call: &Call, path: &Path) {
        let file = self.state.unbind(path);
        if let Some(file) = file.filter(|&f| self.state.files[f].names == 0) {
            self.data.remove(&file);
        }
        if !self.cancel_creation(path) {
            let what = format!("{}({})", call.name, self.state.show(path, false));
            self.entry_change(call, path, what, None, false);
        }
    }

    /// An fsync of `file` succeeded, or (`None`) a `sync`/`syncfs`: its data, its
    /// mappings and the entries of it as a directory are durable; a failure before is
    /// repaired only if the file was written again since.
    pub(super) fn synced(&mut self, file: Option<FileId>) {
        let Some(file) = file else {
            self.data.clear();
            self.maps.clear();
            self.failed.retain(|_, failed| !failed.rewritten);
            self.entries.clear();
            return;
        };
        self.data.remove(&file);
        self.maps.retain(|m| m.file != file);
        if self.failed.get(&file).is_some_and(|f| f.rewritten) {
            self.failed.remove(&file);
        }
        // Entries wait only on directories, and every one waited on is marked so.
        if self.state.files[file].dir {
            for entry in self.entries.values_mut() {
                entry.needs.retain(|&d| d != file);
            }
            self.entries.retain(|_, e| !e.needs.is_empty());
        }
    }

    /// An fsync failed with `error`: the data written since the last good one may be
    /// lost whatever happens next, so it is no longer merely unsynced but failed.
    pub(super) fn fsync_failed(&mut self, proc: usize, call: &Call, fd: &Fd, error: &str) {
        if FSYNC_ERRORS_IGNORED.contains(&error) {
            return;
        }
        let Some(desc) = self.state.desc_of(proc, fd) else { return };
        if !self.counts(desc) {
            return;
        }
        let file = self.state.descs[desc].file;
        self.data.remove(&file);
        if self.failed.get(&file).is_some_and(|f| !f.rewritten) {
            return;
        }
        let path = self.state.show_file(file);
        let occurrence = Occurrence {
            kind: LintKind::AckAfterFailedFsync,
            calls: vec![CallRef::new(call, vec![path.clone()])],
            what: format!("{} of {path}", call.name),
            path,
            detail: error.to_string(),
            count: 1,
        };
        self.failed.insert(file, Failed { occurrence, rewritten: false });
    }

    /// The entry change's occurrence, naming the directories still not fsynced.
    fn unsynced_dirs(&self, entry: Entry) -> Occurrence {
        let dirs: Vec<String> = entry.needs.iter().map(|&d| self.state.show_file(d)).collect();
        let detail = match dirs.as_slice() {
            [one] => format!("its directory {one} was"),
            many => format!("its directories {} were", many.join(" and ")),
        };
        Occurrence { detail, ..entry.occurrence }
    }

    /// An acknowledgement: everything still pending was acknowledged too early.
    pub(super) fn ack(&mut self, ack: Ack) {
        let entries: Vec<Entry> = self.entries.drain().map(|(_, e)| e).collect();
        let mut due: Vec<Occurrence> = entries.into_iter().map(|e| self.unsynced_dirs(e)).collect();
        due.extend(self.data.drain().flat_map(|(_, pending)| pending));
        due.extend(self.failed.drain().map(|(_, f)| f.occurrence));
        due.extend(self.maps.drain(..).map(|m| m.occurrence));
        due.append(&mut self.conflicts);
        due.sort_by_key(|o| (o.calls[0].seq, o.kind));
        let base = self.state.base.clone();
        for occurrence in &due {
            self.findings.add(occurrence, Some(&ack), base.as_deref());
        }
    }
}
