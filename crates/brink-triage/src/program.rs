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
    let on_disk = on_disk(ctx, links, id);
    let mut cause: BTreeSet<u64> = carried(links, w.lost).difference(&on_disk).copied().collect();
    if let Some((seq, _)) = &w.ack {
        cause.retain(|s| s < seq);
    }
    let rows: Vec<&CallRow> = cause.iter().filter_map(|&s| links.call(s)).filter(|r| r.kind != "acknowledge").collect();
    if rows.is_empty() {
        return None;
    }
    let later: Vec<&CallRow> = carried(links, w.later)
        .into_iter()
        .filter(|s| !cause.contains(s) && cause.first().is_some_and(|f| s > f))
        .filter_map(|s| links.call(s))
        .collect();
    let mut because = sentence(w, &rows, &later);
    if !w.holds.is_empty() {
        because += &format!(" (in the blocks: {})", w.holds);
    }
    Some(Explained { kind: w.kind, signature: signature(&rows), because, class: class.to_string() })
}

/// The calls the writes at `indices` carry.
fn carried(links: &CallLinks, indices: &[u64]) -> BTreeSet<u64> {
    indices.iter().filter_map(|&i| links.of_write(i)).flat_map(|w| w.calls.iter().copied()).collect()
}

/// Calls whose effect a persisted write before the crash carries in place, or through a
/// persisted commit block.
fn on_disk(ctx: &Ctx, links: &CallLinks, id: &StateId) -> BTreeSet<u64> {
    let Some(info) = ctx.info else { return BTreeSet::new() };
    let lost: BTreeSet<u64> = id.choices.iter().map(|c| c.0).collect();
    let mut out = BTreeSet::new();
    for w in links.writes.iter().take_while(|w| w.index < id.position) {
        if lost.contains(&w.index) {
            continue;
        }
        let items = info.attribution.of_write(w.index).unwrap_or_default();
        let lands =
            items.iter().any(|it| it.kind == Kind::JournalCommit || (!it.journal && !it.kind.is_journal_bookkeeping()));
        if lands {
            out.extend(w.calls.iter().copied());
        }
    }
    out
}

/// One entry per distinct cause: kind, digit-folded paths, site file and function.
fn signature(rows: &[&CallRow]) -> Vec<String> {
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

fn sentence(w: &Writes, rows: &[&CallRow], later: &[&CallRow]) -> String {
    let calls = name_calls(rows);
    let were = if rows.len() == 1 { "was" } else { "were" };
    match w.kind {
        VulnKind::Durability => {
            let ack = w.ack.as_ref().map(|(_, t)| format!(" ('{t}')")).unwrap_or_default();
            format!("{calls} {were} acknowledged{ack} before {}: a power cut in between loses it", missing_sync(rows))
        }
        VulnKind::Ordering if !later.is_empty() => format!(
            "{calls} did not persist while {}, made after it, did: the program relies on an order the file system does not keep (an fsync between them would)",
            name_calls(later)
        ),
        VulnKind::Ordering => {
            format!("{calls} did not persist while a later write of the file system did")
        }
        _ => format!("{calls} {were} seen half done after a crash: the operation is not atomic on disk"),
    }
}
