//! Vulnerabilities in the program's terms (issue 14): when the results carry the calls
//! each write holds (`TraceInfo::calls`, brink-attrib's `link`), a minimal state's cause
//! is the calls whose effect it lost, and vulnerabilities group by those calls.
//!
//! The cause of a minimal state: the calls linked to the writes that it dropped or tore
//! (or, when everything persisted in order, the writes still to come up to the next
//! flush), less every call whose effect is already on disk in the state (carried by a
//! persisted write in place, or by a persisted jbd2 commit block: a journal copy whose
//! commit never persisted changes nothing), and, for a durability failure, only the
//! calls made before the broken acknowledgement. A write that carries no such call
//! changes nothing the program did.
//!
//! The signature is one entry per cause call: its kind in words, its paths with digit
//! runs as `N`, and its site's source file name (no directory) and function, never its
//! line, seq, block or mark; with the kind of vulnerability and the message class it is
//! the id. So the same missing directory fsync reached from one line is one
//! vulnerability however many marks it broke, keeps its id in another recording of a
//! non-deterministic program, and in the next version where only the line moved. The
//! sentence names the line.

use std::collections::BTreeSet;

use brink_attrib::{CallLinks, CallRow, Kind};
use brink_calls::{Site, fold_digits};
use brink_pmodel::StateId;

use crate::{Ctx, Explained, VulnKind};

/// Where the writes of a minimal state stand, as the block-level explanation found them.
pub(crate) struct Writes<'a> {
    pub kind: VulnKind,
    /// Dropped, torn or still to come: the writes whose calls were lost.
    pub lost: &'a [u64],
    /// Writes of the same epoch made after them that persisted (ordering).
    pub later: &'a [u64],
    /// Seq of the broken acknowledgement's call (durability).
    pub ack: Option<(u64, String)>,
    /// What the lost writes hold, in the file system's terms (for the sentence).
    pub holds: String,
}

/// The calls-based explanation of a minimal state, if the results carry calls and some
/// lost write carries a call whose effect the state lacks.
pub(crate) fn explain(ctx: &Ctx, id: &StateId, w: &Writes, class: &str) -> Option<Explained> {
    let links = ctx.info?.calls.as_ref()?;
    let persisted = on_disk(ctx, links, id, false);
    let mut cause: BTreeSet<u64> = carried(links, w.lost).difference(&persisted).copied().collect();
    if let Some((seq, _)) = &w.ack {
        cause.retain(|s| s < seq);
    }
    let mut rows: Vec<&CallRow> =
        cause.iter().filter_map(|&s| links.call(s)).filter(|r| r.kind != "acknowledge").collect();
    if rows.is_empty() && w.kind == VulnKind::Durability {
        rows = acknowledged_not_on_disk(links, w, &on_disk(ctx, links, id, true));
    }
    if rows.is_empty() {
        return None;
    }
    let later: Vec<&CallRow> = carried(links, w.later)
        .into_iter()
        .filter(|s| !cause.contains(s) && cause.first().is_some_and(|f| s > f))
        .filter_map(|s| links.call(s))
        .collect();
    let mut because = because(w.kind, w.ack.as_ref().map(|(_, t)| t.as_str()), &rows, &later);
    if !w.holds.is_empty() {
        because += &format!(" (in the blocks: {})", w.holds);
    }
    Some(Explained { kind: w.kind, signature: signature(&rows), because, class: class.to_string() })
}

/// For a durability failure whose lost work no write before the next flush carries (the
/// kernel had not even written it yet): the changes the broken acknowledgement covered,
/// made since the acknowledgement before it, whose effect is not on disk.
fn acknowledged_not_on_disk<'l>(links: &'l CallLinks, w: &Writes, on_disk: &BTreeSet<u64>) -> Vec<&'l CallRow> {
    let Some((ack, _)) = &w.ack else { return Vec::new() };
    let since = links.marks.iter().copied().filter(|m| m < ack).max().unwrap_or(0);
    let syncs = ["acknowledge", "fsync", "fdatasync", "sync", "syncfs"];
    let window: Vec<&CallRow> = links.calls.iter().filter(|r| r.seq > since && r.seq < *ack).collect();
    window
        .iter()
        .filter(|r| !on_disk.contains(&r.seq) && !syncs.contains(&r.kind.as_str()))
        .filter(|r| !synced_before(r, &window, *ack))
        .copied()
        .collect()
}

/// Whether the program made `change` durable before `ack`: a `sync`, or an fsync of its
/// file (data) or of its parent directory (a name made or removed) after it.
fn synced_before(change: &CallRow, window: &[&CallRow], ack: u64) -> bool {
    let parent = |p: &str| std::path::Path::new(p).parent().map(|d| d.to_string_lossy().into_owned());
    let parent = |p: &str| parent(p).filter(|d| !d.is_empty()).unwrap_or_else(|| ".".into());
    let names = matches!(change.kind.as_str(), "rename" | "create" | "link" | "unlink" | "mkdir" | "rmdir" | "symlink");
    let needs: Vec<String> = match names {
        true => change.paths.iter().map(|p| parent(p)).collect(),
        false => change.paths.clone(),
    };
    let after: Vec<&&CallRow> = window.iter().filter(|r| r.seq > change.seq && r.seq < ack).collect();
    after.iter().any(|r| r.kind == "sync" || r.kind == "syncfs")
        || needs
            .iter()
            .all(|n| after.iter().any(|r| matches!(r.kind.as_str(), "fsync" | "fdatasync") && r.paths.contains(n)))
}

/// The calls the writes at `indices` carry.
fn carried(links: &CallLinks, indices: &[u64]) -> BTreeSet<u64> {
    indices.iter().filter_map(|&i| links.of_write(i)).flat_map(|w| w.calls.iter().copied()).collect()
}

/// Calls whose effect persisted writes before the crash carry in place, or through
/// persisted commit blocks, and no write that did not persist also carries.
fn on_disk(ctx: &Ctx, links: &CallLinks, id: &StateId, strict: bool) -> BTreeSet<u64> {
    let Some(info) = ctx.info else { return BTreeSet::new() };
    let lost: BTreeSet<u64> = id.choices.iter().map(|c| c.0).collect();
    let in_place = |index: u64| {
        let items = info.attribution.of_write(index).unwrap_or_default();
        items.iter().any(|it| !it.journal && !it.kind.is_journal_bookkeeping())
    };
    let commits = |index: u64| {
        info.attribution.of_write(index).unwrap_or_default().iter().any(|it| it.kind == Kind::JournalCommit)
    };
    let (mut out, mut missing) = (BTreeSet::new(), BTreeSet::new());
    for w in &links.writes {
        let persisted = w.index < id.position && !lost.contains(&w.index);
        if persisted && (in_place(w.index) || commits(w.index)) {
            out.extend(w.calls.iter().copied());
        } else if !persisted && in_place(w.index) {
            missing.extend(w.calls.iter().copied());
        }
    }
    // Strictly, a call is on disk only when its writes in place persisted too: one whose
    // inode was committed while its data was not written yet is not. (A commit block
    // carries every call of the copies it commits, metadata bookkeeping included, so an
    // unpersisted commit does not make an older call missing.) Strictness is for the
    // acknowledged work no lost write carries (`acknowledged_not_on_disk`): file data is
    // linked by path and range, so a later file's blocks at that path can carry an
    // earlier file's calls too, and the strict rule would call those missing.
    if strict {
        out.retain(|c| !missing.contains(c));
    }
    out
}

/// One entry per distinct cause: kind, digit-folded paths, site file and function.
pub(crate) fn signature(rows: &[&CallRow]) -> Vec<String> {
    rows.iter()
        .map(|r| format!("call:{} {} @ {}", r.kind, fold_digits(&r.paths.join(" → ")), site_key(&r.site)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A site without its line: the file's (or object's) name and the function.
fn site_key(site: &Site) -> String {
    let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match site {
        Site::Source { file, function, .. } => format!("{} {}", name(file), function.as_deref().unwrap_or("")),
        Site::Object { object, function, .. } => format!("{} {}", name(object), function.as_deref().unwrap_or("")),
        Site::Unknown => "?".into(),
    }
}

/// `workload.sh:10`, `prog+0x1a2b`.
fn site_short(site: &Site) -> String {
    let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match site {
        Site::Source { file, line, .. } => format!("{}:{line}", name(file)),
        Site::Object { object, offset, .. } => format!("{}+{offset:#x}", name(object)),
        Site::Unknown => "an unknown site".into(),
    }
}

/// The distinct calls in words, `rename(config.tmp → config) at workload.sh:10`, with a
/// count where one line made several (`write(log) at app.c:12 (3 calls)`).
pub(crate) fn name_calls(rows: &[&CallRow]) -> String {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for r in rows {
        let t = format!("{} at {}", r.text(), site_short(&r.site));
        match seen.iter_mut().find(|(s, _)| *s == t) {
            Some((_, n)) => *n += 1,
            None => seen.push((t, 1)),
        }
    }
    let shown: Vec<String> =
        seen.iter().map(|(t, n)| if *n > 1 { format!("{t} ({n} calls)") } else { t.clone() }).collect();
    match shown.len() {
        0 => String::new(),
        1 => shown[0].clone(),
        n => format!("{} and {}", shown[..n - 1].join(", "), shown[n - 1]),
    }
}

/// What would have made the calls durable: the directory's fsync for a name change, the
/// file's for its data.
fn missing_sync(rows: &[&CallRow]) -> String {
    let entry = |k: &str| matches!(k, "rename" | "create" | "link" | "unlink" | "rmdir" | "mkdir" | "symlink");
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    for r in rows {
        let Some(p) = r.paths.last() else { continue };
        if entry(&r.kind) {
            dirs.insert(match p.rsplit_once('/') {
                Some((d, _)) => format!("{d}/"),
                None => "./".into(),
            });
        } else {
            files.insert(p.clone());
        }
    }
    let mut parts = Vec::new();
    if !dirs.is_empty() {
        let d: Vec<String> = dirs.into_iter().collect();
        parts.push(format!(
            "{} {} was fsynced",
            if d.len() == 1 { "its directory" } else { "its directories" },
            d.join(", ")
        ));
    }
    if !files.is_empty() {
        parts.push(format!("{} was fsynced", files.into_iter().collect::<Vec<_>>().join(", ")));
    }
    if parts.is_empty() { "it was made durable".into() } else { parts.join(" and ") }
}

/// Why `rows` broke the program, by kind: `ack` is the broken acknowledgement's text
/// (durability), `later` the calls that persisted in their place (ordering).
pub(crate) fn because(kind: VulnKind, ack: Option<&str>, rows: &[&CallRow], later: &[&CallRow]) -> String {
    let calls = name_calls(rows);
    let were = if rows.len() == 1 { "was" } else { "were" };
    match kind {
        VulnKind::Durability => {
            let ack = ack.map(|t| format!(" ('{t}')")).unwrap_or_default();
            format!("{calls} {were} acknowledged{ack} before {}: a power cut in between loses it", missing_sync(rows))
        }
        VulnKind::Ordering if !later.is_empty() => format!(
            "{calls} did not persist while {}, made after it, did: the program relies on an order the file system does not keep (it holds if {} in between)",
            name_calls(later),
            missing_sync(rows)
        ),
        VulnKind::Ordering => {
            format!("{calls} did not persist while a later write of the file system did")
        }
        _ => format!("{calls} {were} seen half done after a crash: the operation is not atomic on disk"),
    }
}
