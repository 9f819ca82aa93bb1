//! Triage: from thousands of failing crash states to a few explained vulnerabilities.
//!
//! Every violating state has a *minimal* state (the explorer's delta debugging: the
//! fewest of its dropped or torn writes that still fail with the same message class).
//! The minimal state is explained in the file system's terms (brink-attrib) and its
//! explanation is the *signature* of the vulnerability:
//!
//! - **ordering**: the minimal state drops writes while a later write of the same
//!   epoch persisted. The signature is what the dropped writes hold.
//! - **atomicity**: the minimal state tears a write, or nothing acknowledged is broken
//!   but the writes still to come would have completed the operation (it is seen half
//!   done).
//! - **durability**: an acknowledged mark is broken (its text is in the checker's
//!   message) and nothing later persisted out of order: the acknowledged operation's
//!   writes came after the acknowledgement. The signature is what those late writes hold
//!   (the writes up to the flush that would have made them durable; a jbd2 commit block
//!   stands for the copies it commits).
//! - **media**: a media-fault state (brink-pmodel's faults): the fault and what the
//!   faulted write holds.
//!
//! A signature keeps the most telling items: directory blocks if any, else inodes and
//! file data, else other metadata, by path and kind, never by block number or position.
//! With the message class it is hashed into the vulnerability id (`V` + 8 hex digits),
//! so the same bug keeps its id in next week's run of the next version of the
//! application. Where the file system is not attributed (XFS, btrfs) the signature is
//! the kind and message class alone.
//!
//! Logical runs (`--level logical`) are grouped by `logical.rs` from their states' ids
//! and `ops.json`, in ALICE's forms as well; `matrix.rs` lines up the runs of one
//! recording under several models (and the kernel's) by vulnerability id.

#![forbid(unsafe_code)]

mod logical;
mod matrix;
mod printable;
mod program;
mod render;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use brink_attrib::{Item, Kind};
use brink_check::Verdict;
use brink_explore::results::TraceInfo;
use brink_explore::{ExploreError, Results, StateRecord, Summary};
use brink_pmodel::{StateId, WriteChoice};
use serde::{Deserialize, Serialize};

pub use matrix::{Column, Matrix, Row, matrix, matrix_text};
pub use printable::{class_text, printable};

pub use render::{diff_text, html, junit, matrix_html, text};

use printable::violation_class;

/// ALICE's vulnerability kinds, plus media faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VulnKind {
    Atomicity,
    Ordering,
    Durability,
    Media,
    /// Checker failures (the application crashed in its own recovery, a signal, a time
    /// out): the application cannot start or recover. Grouped only when the results
    /// carry calls (older results list checker failures apart, as before).
    Recovery,
}

impl VulnKind {
    pub fn name(self) -> &'static str {
        match self {
            VulnKind::Atomicity => "atomicity",
            VulnKind::Ordering => "ordering",
            VulnKind::Durability => "durability",
            VulnKind::Media => "media",
            VulnKind::Recovery => "recovery",
        }
    }
}

/// Whose finding a vulnerability is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// The application broke its own promise (its checker says so) or cannot recover.
    #[default]
    Application,
    /// The file system is inconsistent (the built-in `fsck` says so) or only its own
    /// metadata is at stake (a torn superblock): not the application's bug.
    FileSystem,
}

impl Owner {
    pub fn name(self) -> &'static str {
        match self {
            Owner::Application => "application",
            Owner::FileSystem => "file system",
        }
    }
}

/// How many state ids a vulnerability lists (the count is always whole).
pub const STATE_IDS_MAX: usize = 10;
/// How many items a sentence names before "and N more".
const SENTENCE_ITEMS_MAX: usize = 2;

/// One vulnerability. Fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// Stable: derived from `kind`, `signature` and `class` only.
    pub id: String,
    pub kind: VulnKind,
    /// The application's or the file system's.
    #[serde(default)]
    pub owner: Owner,
    /// One sentence a person can act on.
    pub sentence: String,
    /// The message class of the checker's violation (digits as `#`).
    pub class: String,
    /// What the minimal state lost, tore or had not yet written, by kind and path.
    pub signature: Vec<String>,
    /// Violating states in this vulnerability (duplicates included).
    pub states: u64,
    /// The first of them, by id.
    pub state_ids: Vec<String>,
    /// Acknowledged marks that some state of it broke (texts, in trace order).
    pub marks_broken: Vec<String>,
    pub minimal: MinimalState,
    /// The command that rebuilds the minimal state.
    pub repro: String,
    /// ALICE's form, at the logical level: "operation 6 (rename) must persist before
    /// operation 7 (ack)", "operation 3 (append) must be atomic".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinimalState {
    pub id: String,
    pub position: u64,
    /// Dropped and torn writes, each with what it holds.
    pub writes: Vec<MinimalWrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinimalWrite {
    pub index: u64,
    /// `dropped` or `torn`.
    pub what: String,
    pub holds: Vec<String>,
}

/// A results directory, triaged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    pub results: String,
    pub trace: String,
    pub summary: Summary,
    pub vulnerabilities: Vec<Vulnerability>,
    /// Whether the trace's writes are attributed (ext4).
    pub attributed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Per crash position, the worst verdict and how many states (for the picture).
    #[serde(skip)]
    pub positions: BTreeMap<u64, (Verdict, u64)>,
    #[serde(skip)]
    pub info: Option<TraceInfo>,
    /// `ops.json`, for logical runs.
    #[serde(skip)]
    pub logical: Option<brink_explore::results::LogicalInfo>,
    /// `run.json`: what was explored (the model matrix checks that its runs share a
    /// recording).
    #[serde(skip)]
    pub run: Option<brink_explore::RunIdentity>,
    /// `states.jsonl`, as loaded (sorted by id, its invariants checked).
    #[serde(skip)]
    pub states: Vec<StateRecord>,
}

struct Ctx<'a> {
    info: Option<&'a TraceInfo>,
    /// The violation class of the no-crash state, if it violates.
    no_crash_class: Option<String>,
}

impl<'a> Ctx<'a> {
    fn new(info: Option<&'a TraceInfo>, recs: &[StateRecord]) -> Ctx<'a> {
        let end = info.map(|i| i.events.len().to_string());
        let no_crash_class = recs
            .iter()
            .find(|r| Some(&r.id) == end.as_ref() && r.verdict == Verdict::Violation)
            .map(|r| first_violation(r).1);
        Ctx { info, no_crash_class }
    }

    /// The seq of the call of the mark at event `index`, if the results carry calls.
    fn mark_call(&self, index: u64) -> Option<u64> {
        let info = self.info?;
        let k = info.marks.iter().position(|m| m.index == index)?;
        info.calls.as_ref()?.marks.get(k).copied()
    }

    /// What the writes at `indices` hold, in words (`message` picks the items it names).
    fn holds(&self, indices: &[u64], message: &str) -> String {
        let items = self.items(indices);
        name_or(&named_in(telling(&items), message), "")
    }

    /// Whether the results carry the calls each write holds.
    fn has_calls(&self) -> bool {
        self.info.is_some_and(|i| i.calls.is_some())
    }

    /// The first injected error before `p`.
    fn first_error(&self, p: u64) -> Option<u64> {
        self.events().iter().take(p.min(usize::MAX as u64) as usize).position(|&k| k == b'e').map(|i| i as u64)
    }

    fn events(&self) -> &[u8] {
        self.info.map(|i| i.events.as_bytes()).unwrap_or(&[])
    }

    /// What the writes at `indices` hold; a jbd2 commit block also stands for the
    /// journal copies of its transaction (the writes since the previous commit).
    fn items(&self, indices: &[u64]) -> Vec<Item> {
        let Some(info) = self.info else { return Vec::new() };
        let a = &info.attribution;
        let mut out: Vec<Item> = Vec::new();
        for &i in indices {
            let Some(items) = a.of_write(i) else { continue };
            out.extend(items.iter().cloned());
            if items.iter().any(|it| it.kind == Kind::JournalCommit) {
                let pos = a.writes.partition_point(|w| w.index < i);
                for w in a.writes[..pos].iter().rev() {
                    if w.items.iter().any(|it| it.kind == Kind::JournalCommit) {
                        break;
                    }
                    out.extend(w.items.iter().filter(|it| it.journal).cloned());
                }
            }
        }
        out
    }

    /// The writes after `p` up to the flush that would have made them durable: the
    /// first flush with a write between `p` and it.
    fn window(&self, p: u64) -> Vec<u64> {
        let ev = self.events();
        let mut out = Vec::new();
        for (i, &k) in ev.iter().enumerate().skip(p as usize) {
            match k {
                b'w' => out.push(i as u64),
                b'f' if !out.is_empty() => break,
                _ => {}
            }
        }
        out
    }

    /// Volatile writes at crash position `p`: writes since the last flush before it.
    fn volatile(&self, p: u64) -> Vec<u64> {
        let ev = self.events();
        let end = (p as usize).min(ev.len());
        let start = ev[..end].iter().rposition(|&k| k == b'f').map_or(0, |f| f + 1);
        (start..end).filter(|&i| ev[i] == b'w').map(|i| i as u64).collect()
    }
}

/// The items a signature keeps (see the crate docs).
fn telling(items: &[Item]) -> Vec<&Item> {
    let tiers: [&dyn Fn(&Item) -> bool; 4] = [
        &|i| i.kind == Kind::Directory,
        &|i| matches!(i.kind, Kind::Inode | Kind::Data | Kind::ExtentTree),
        &|i| !i.kind.is_journal_bookkeeping() && i.kind != Kind::Unknown,
        &|i| i.kind != Kind::Unknown,
    ];
    for t in tiers {
        let v: Vec<&Item> = items.iter().filter(|i| t(i)).collect();
        if !v.is_empty() {
            return v;
        }
    }
    Vec::new()
}

/// A signature key: a file (its data, inode or extents alike) or directory by path;
/// other metadata by kind.
fn sig_key(i: &Item) -> String {
    let what = match i.kind {
        Kind::Inode | Kind::Data | Kind::ExtentTree if i.path.is_some() => "file",
        Kind::Directory => "directory",
        k => k.name(),
    };
    format!("{what}:{}", i.path.as_deref().unwrap_or("-"))
}

fn keys(items: &[&Item]) -> Vec<String> {
    items.iter().map(|i| sig_key(i)).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The items whose path (or its last component) the checker's message names as a word,
/// if any; else all of them.
fn named_in<'a>(items: Vec<&'a Item>, message: &str) -> Vec<&'a Item> {
    let words: BTreeSet<&str> = message
        .split(|c: char| c.is_whitespace() || "'\":,;()[]".contains(c))
        .map(|w| w.trim_start_matches("./"))
        .collect();
    let named: Vec<&Item> = items
        .iter()
        .copied()
        .filter(|i| {
            i.path.as_deref().is_some_and(|p| {
                let p = p.trim_end_matches('/');
                words.contains(p) || p.rsplit('/').next().is_some_and(|b| words.contains(b))
            })
        })
        .collect();
    if named.is_empty() { items } else { named }
}

/// "A and B", "A, B and 3 more".
fn name_items(items: &[&Item]) -> String {
    let mut seen = BTreeSet::new();
    let mut uniq: Vec<&Item> = Vec::new();
    for i in items {
        if seen.insert(i.key()) {
            uniq.push(i);
        }
    }
    let named: Vec<String> = uniq.iter().take(SENTENCE_ITEMS_MAX).map(|i| i.describe()).collect();
    match uniq.len().saturating_sub(SENTENCE_ITEMS_MAX) {
        0 => named.join(" and "),
        n => format!("{} and {n} more", named.join(", ")),
    }
}

#[derive(Clone)]
struct Explained {
    kind: VulnKind,
    signature: Vec<String>,
    because: String,
    class: String,
}

fn first_violation(r: &StateRecord) -> (String, String) {
    let message = r
        .checks
        .iter()
        .find(|c| c.verdict == Verdict::Violation)
        .map(|c| printable(&c.message).into_owned())
        .unwrap_or_default();
    (message, violation_class(&r.checks).unwrap_or_default())
}

fn broken_marks(info: Option<&TraceInfo>, r: &StateRecord) -> Vec<(u64, String)> {
    let Some(info) = info else { return Vec::new() };
    let msgs: Vec<&str> =
        r.checks.iter().filter(|c| c.verdict == Verdict::Violation).map(|c| c.message.as_str()).collect();
    info.marks
        .iter()
        .take(r.marks as usize)
        .filter(|m| !m.text.is_empty() && msgs.iter().any(|msg| msg.contains(&m.text)))
        .map(|m| (m.index, printable(&m.text).into_owned()))
        .collect()
}

fn explain(ctx: &Ctx, m: &StateRecord, id: &StateId) -> Explained {
    let (message, class) = first_violation(m);
    if ctx.no_crash_class.as_deref() == Some(class.as_str()) {
        return lost_without_a_crash(ctx, class);
    }
    if let Some(f) = id.fault {
        return media(ctx, m, f, class);
    }
    let attributed = ctx.info.is_some_and(|i| i.attribution.covered);
    let unattributed = if attributed { "" } else { " (writes not attributed on this file system)" };
    let torn: Vec<u64> = id.choices.iter().filter(|c| c.1 != WriteChoice::Omitted).map(|c| c.0).collect();
    if !torn.is_empty() {
        let holds = ctx.holds(&torn, "");
        let w = program::Writes { kind: VulnKind::Atomicity, lost: &torn, later: &[], ack: None, holds };
        return program::explain(ctx, id, &w, &class).unwrap_or_else(|| torn_write(ctx, &torn, unattributed, class));
    }
    let dropped: Vec<u64> = id.choices.iter().filter(|c| c.1 == WriteChoice::Omitted).map(|c| c.0).collect();
    let all: Vec<u64> = id.choices.iter().map(|c| c.0).collect();
    let later: Vec<u64> = all
        .first()
        .map(|&first| ctx.volatile(id.position).into_iter().filter(|v| *v > first && !all.contains(v)).collect())
        .unwrap_or_default();
    if !later.is_empty() {
        let holds = ctx.holds(&dropped, "");
        let w = program::Writes { kind: VulnKind::Ordering, lost: &dropped, later: &later, ack: None, holds };
        return program::explain(ctx, id, &w, &class)
            .unwrap_or_else(|| out_of_order(ctx, &dropped, &later, unattributed, class));
    }
    in_order(ctx, m, id, &message, unattributed, class)
}

/// The no-crash state fails the same way: the data never reached the disk at all.
fn lost_without_a_crash(ctx: &Ctx, class: String) -> Explained {
    Explained {
        kind: VulnKind::Durability,
        signature: vec!["lost without a crash".into()],
        because: format!(
            "the disk as the run left it (no crash, page cache dropped) fails the same way, so the data never reached the disk{}",
            ctx.first_error(u64::MAX)
                .map(|e| format!(" (an injected I/O error at event {e} threw it away and the application went on)"))
                .unwrap_or_default()
        ),
        class,
    }
}

/// A media-fault state: the fault and what the faulted write holds.
fn media(ctx: &Ctx, m: &StateRecord, f: brink_pmodel::MediaFault, class: String) -> Explained {
    let items = ctx.items(&[f.write()]);
    let t = telling(&items);
    let fault = m.fault.clone().unwrap_or_else(|| f.describe());
    let because = if t.is_empty() { fault } else { format!("{fault}, on {}", name_items(&t)) };
    Explained { kind: VulnKind::Media, signature: [vec![fault_kind(&f)], keys(&t)].concat(), because, class }
}

/// The minimal state tears writes: what they hold persisted in part.
fn torn_write(ctx: &Ctx, torn: &[u64], unattributed: &str, class: String) -> Explained {
    let items = ctx.items(torn);
    let t = telling(&items);
    Explained {
        kind: VulnKind::Atomicity,
        signature: keys(&t),
        because: format!("{} persisted only in part (a torn write){unattributed}", name_or(&t, "a write")),
        class,
    }
}

/// The minimal state drops writes while `later` ones of the same epoch persisted.
fn out_of_order(ctx: &Ctx, dropped: &[u64], later: &[u64], unattributed: &str, class: String) -> Explained {
    let (lost, kept) = (ctx.items(dropped), ctx.items(later));
    let tl = telling(&lost);
    let lost_paths: BTreeSet<Option<&str>> = tl.iter().map(|i| i.path.as_deref()).collect();
    let lost_keys: BTreeSet<String> = tl.iter().map(|i| i.key()).collect();
    // What the reader should compare: the same file's other parts (its inode for
    // lost data), else the later writes' telling items.
    let same: Vec<&Item> = kept
        .iter()
        .filter(|i| {
            !i.kind.is_journal_bookkeeping() && lost_paths.contains(&i.path.as_deref()) && !lost_keys.contains(&i.key())
        })
        .collect();
    let tk = if same.is_empty() { telling(&kept) } else { same };
    Explained {
        kind: VulnKind::Ordering,
        signature: keys(&tl),
        because: format!(
            "{} did not persist while {}, written after it, did{unattributed}",
            name_or(&tl, "an earlier write"),
            name_or(&tk, "a later write")
        ),
        class,
    }
}

/// Everything persisted in order: the failure is what was still to come (the minimal
/// state's writes and those up to the next flush).
fn in_order(ctx: &Ctx, m: &StateRecord, id: &StateId, message: &str, unattributed: &str, class: String) -> Explained {
    let mut late: Vec<u64> = id.choices.iter().map(|c| c.0).collect();
    late.extend(ctx.window(id.position));
    let items = ctx.items(&late);
    let t = named_in(telling(&items), message);
    let broken = broken_marks(ctx.info, m);
    if let Some(e) = ctx.first_error(id.position).filter(|_| !broken.is_empty()) {
        return Explained {
            kind: VulnKind::Durability,
            signature: vec!["after an injected I/O error".into()],
            because: format!(
                "a crash after the injected I/O error at event {e} loses data acknowledged after it: the application's handling of the failed write or fsync did not make it durable"
            ),
            class,
        };
    }
    let kind = if broken.is_empty() { VulnKind::Atomicity } else { VulnKind::Durability };
    let ack = broken.last().and_then(|(index, text)| ctx.mark_call(*index).map(|seq| (seq, text.clone())));
    let w = program::Writes { kind, lost: &late, later: &[], ack, holds: name_or(&t, "") };
    if let Some(e) = program::explain(ctx, id, &w, &class) {
        return e;
    }
    if broken.is_empty() {
        Explained {
            kind: VulnKind::Atomicity,
            signature: keys(&t),
            because: format!(
                "the operation is seen half done: the writes before the crash persisted and {} had not reached the disk yet{unattributed}",
                name_or(&t, "the next writes")
            ),
            class,
        }
    } else {
        Explained {
            kind: VulnKind::Durability,
            signature: keys(&t),
            because: format!(
                "it was acknowledged before {} reached the disk, so a power cut in between loses it{unattributed}",
                name_or(&t, "its writes")
            ),
            class,
        }
    }
}

fn name_or(items: &[&Item], none: &str) -> String {
    if items.is_empty() { none.to_string() } else { name_items(items) }
}

fn fault_kind(f: &brink_pmodel::MediaFault) -> String {
    match f {
        brink_pmodel::MediaFault::Garbage(_) => "garbage tear",
        brink_pmodel::MediaFault::Latent(_) => "latent sector error",
        brink_pmodel::MediaFault::Misdirected(_) => "misdirected write",
    }
    .into()
}

fn vuln_id(kind: VulnKind, signature: &[String], class: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(kind.name().as_bytes());
    for s in signature {
        h.update(b"\n");
        h.update(s.as_bytes());
    }
    h.update(b"\n\n");
    h.update(class.as_bytes());
    format!("V{}", &h.finalize().to_hex()[..8])
}

/// A vulnerability being gathered: its explanation and its minimal state are those of
/// the minimal state with the fewest drops (then the smallest id).
struct Group<'a> {
    ex: Explained,
    states: Vec<String>,
    marks: BTreeMap<u64, String>,
    best: Option<(usize, StateId, &'a StateRecord)>,
}

/// Triage a finished results directory.
pub fn analyze(dir: &Path) -> Result<Analysis, ExploreError> {
    let Results { mut summary, states: mut recs, minimal: probes, trace: info, logical: ops, run, .. } =
        Results::load(dir)?;
    let ctx = Ctx::new(info.as_ref(), &recs);
    let trace = summary.trace.clone();
    let mut vulns: Vec<Vulnerability> = match &ops {
        Some(ops) => logical::vulnerabilities(ops, &recs, &probes),
        None => {
            let groups = gather(&ctx, &recs, &probes);
            groups.into_iter().map(|(vid, g)| vulnerability(&ctx, &trace, vid, g)).collect()
        }
    };
    // Most states first, then by id: the order a person reads them in.
    vulns.sort_by(|a, b| b.states.cmp(&a.states).then(a.id.cmp(&b.id)));
    printable_messages(&mut summary, &mut recs);
    let mut notes = info.as_ref().map(|i| i.attribution.notes.clone()).unwrap_or_default();
    if info.is_none() && summary.level.is_block() {
        notes.push(
            "this results directory has no trace.json (an older brink): vulnerabilities are grouped by message only"
                .into(),
        );
    }
    if ops.is_none() && !summary.level.is_block() {
        notes.push("this logical run has no ops.json (an older brink): its violating states are not grouped".into());
    }
    Ok(Analysis {
        results: dir.display().to_string(),
        trace,
        summary,
        attributed: info.as_ref().is_some_and(|i| i.attribution.covered),
        notes,
        vulnerabilities: vulns,
        positions: positions(&recs),
        info,
        logical: ops,
        run,
        states: recs,
    })
}

/// The messages a report shows, made printable once grouping (which classes the raw
/// messages) is done.
fn printable_messages(summary: &mut Summary, recs: &mut [StateRecord]) {
    for c in recs.iter_mut().flat_map(|r| r.checks.iter_mut()) {
        if let Cow::Owned(m) = printable(&c.message) {
            c.message = m;
        }
    }
    if let Some(m) = summary.no_crash.as_mut().and_then(|n| n.message.as_mut()) {
        *m = printable(m).into_owned();
    }
}

/// Per crash position, the worst verdict and how many states.
fn positions(recs: &[StateRecord]) -> BTreeMap<u64, (Verdict, u64)> {
    let mut positions: BTreeMap<u64, (Verdict, u64)> = BTreeMap::new();
    for r in recs {
        let e = positions.entry(r.position).or_insert((Verdict::Consistent, 0));
        e.1 += 1;
        if rank(&r.verdict) > rank(&e.0) {
            e.0 = r.verdict.clone();
        }
    }
    positions
}

/// Every violating state into the vulnerability of its minimal state (its record in
/// `recs` or `probes`), by vulnerability id.
fn gather<'a>(ctx: &Ctx, recs: &'a [StateRecord], probes: &'a [StateRecord]) -> BTreeMap<String, Group<'a>> {
    let by_id: HashMap<&str, &StateRecord> = recs.iter().chain(probes).map(|r| (r.id.as_str(), r)).collect();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut explained: HashMap<String, (String, Explained)> = HashMap::new();
    for r in recs.iter().filter(|r| r.verdict == Verdict::Violation) {
        let mid = r.minimal.clone().unwrap_or_else(|| r.id.clone());
        let m = by_id.get(mid.as_str()).copied().unwrap_or(r);
        let Ok(id) = m.id.parse::<StateId>() else { continue };
        let vid = match explained.get(&mid) {
            Some((vid, _)) => vid.clone(),
            None => {
                let ex = explain(ctx, m, &id);
                let vid = vuln_id(ex.kind, &ex.signature, &ex.class);
                explained.insert(mid.clone(), (vid.clone(), ex));
                vid
            }
        };
        let ex = &explained[&mid].1;
        let g = groups.entry(vid).or_insert_with(|| Group {
            ex: ex.clone(),
            states: Vec::new(),
            marks: BTreeMap::new(),
            best: None,
        });
        g.states.push(r.id.clone());
        g.marks.extend(broken_marks(ctx.info, r));
        if g.best.as_ref().is_none_or(|(n, b, _)| (id.choices.len(), &id) < (*n, b)) {
            g.ex.because = ex.because.clone();
            g.best = Some((id.choices.len(), id, m));
        }
    }
    if ctx.has_calls() {
        gather_failures(recs, &mut groups);
    }
    groups
}

/// Checker failures, grouped by their message class as one kind of their own: the
/// application cannot start or recover on these states (apart from lost data).
fn gather_failures<'a>(recs: &'a [StateRecord], groups: &mut BTreeMap<String, Group<'a>>) {
    for (vid, (ex, rs)) in failure_groups(recs) {
        let with_ids = rs.into_iter().filter_map(|r| Some((r.id.parse::<StateId>().ok()?, r)));
        for (id, r) in with_ids {
            let g = groups.entry(vid.clone()).or_insert_with(|| Group {
                ex: ex.clone(),
                states: Vec::new(),
                marks: BTreeMap::new(),
                best: None,
            });
            g.states.push(r.id.clone());
            if g.best.as_ref().is_none_or(|(n, b, _)| (id.choices.len(), &id) < (*n, b)) {
                g.best = Some((id.choices.len(), id, r));
            }
        }
    }
}

/// The checker failures of `recs` by vulnerability id, with their explanation
/// (`recovery`): the grouping both levels share.
fn failure_groups(recs: &[StateRecord]) -> BTreeMap<String, (Explained, Vec<&StateRecord>)> {
    let mut groups: BTreeMap<String, (Explained, Vec<&StateRecord>)> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.verdict == Verdict::CheckerFailure) {
        let ex = recovery(r);
        let vid = vuln_id(ex.kind, &ex.signature, &ex.class);
        groups.entry(vid).or_insert_with(|| (ex, Vec::new())).1.push(r);
    }
    groups
}

/// A checker failure's explanation: the application cannot start or recover.
fn recovery(r: &StateRecord) -> Explained {
    Explained {
        kind: VulnKind::Recovery,
        signature: vec!["checker failure".into()],
        because:
            "the application cannot start or recover on this crash state (its checker failed rather than judged it)"
                .into(),
        class: brink_check::message_class(&class_text(&first_message(r))),
    }
}

/// Checker failures of a logical run as vulnerabilities, grouped as [`gather_failures`]
/// groups them; each told by its state with the least `lost` (then the smallest id).
fn failure_vulnerabilities(recs: &[StateRecord], lost: impl Fn(&str) -> Option<usize>) -> Vec<Vulnerability> {
    failure_groups(recs)
        .into_iter()
        .map(|(id, (ex, rs))| {
            let m = *rs.iter().min_by_key(|r| (lost(&r.id).unwrap_or(usize::MAX), r.id.clone())).expect("a state");
            let message = first_message(m);
            Vulnerability {
                id,
                kind: ex.kind,
                owner: Owner::Application,
                sentence: format!("{message}: {}", ex.because),
                class: ex.class,
                signature: ex.signature,
                states: rs.len() as u64,
                state_ids: rs.iter().take(STATE_IDS_MAX).map(|r| r.id.clone()).collect(),
                marks_broken: Vec::new(),
                minimal: MinimalState {
                    id: m.id.clone(),
                    position: m.position,
                    writes: Vec::new(),
                    fault: None,
                    message,
                },
                repro: String::new(),
                alice: None,
            }
        })
        .collect()
}

/// The message of a state's first violation, else of its first checker failure.
fn first_message(r: &StateRecord) -> String {
    let c = r
        .checks
        .iter()
        .find(|c| c.verdict == Verdict::Violation)
        .or_else(|| r.checks.iter().find(|c| c.verdict == Verdict::CheckerFailure));
    c.map(|c| printable(&c.message).into_owned()).unwrap_or_default()
}

/// Whose a vulnerability is (see [`Owner`]): the file system's when the built-in fsck
/// found it, or when what it lost is only the file system's own metadata.
fn owner_of(ex: &Explained) -> Owner {
    let fs_meta = |s: &String| {
        !s.starts_with("call:")
            && !s.starts_with("file:")
            && !s.starts_with("directory:")
            && !matches!(s.as_str(), "lost without a crash" | "after an injected I/O error" | "checker failure")
    };
    let only_fs = ex.kind != VulnKind::Media && !ex.signature.is_empty() && ex.signature.iter().all(fs_meta);
    if ex.class.starts_with("fsck: ") || only_fs { Owner::FileSystem } else { Owner::Application }
}

/// A gathered vulnerability, told by its best minimal state.
fn vulnerability(ctx: &Ctx, trace: &str, vid: String, g: Group) -> Vulnerability {
    let (_, id, m) = g.best.expect("a group has a state");
    let message = first_message(m);
    let owner = owner_of(&g.ex);
    let writes = id
        .choices
        .iter()
        .map(|(i, c)| MinimalWrite {
            index: *i,
            what: if *c == WriteChoice::Omitted { "dropped" } else { "torn" }.into(),
            holds: ctx.items(&[*i]).iter().map(|it| it.describe()).collect::<BTreeSet<_>>().into_iter().collect(),
        })
        .collect();
    Vulnerability {
        id: vid,
        kind: g.ex.kind,
        owner,
        sentence: format!("{message}: {}", g.ex.because),
        class: g.ex.class,
        signature: g.ex.signature,
        states: g.states.len() as u64,
        state_ids: g.states.iter().take(STATE_IDS_MAX).cloned().collect(),
        marks_broken: g.marks.into_values().collect(),
        minimal: MinimalState { id: m.id.clone(), position: id.position, writes, fault: m.fault.clone(), message },
        repro: format!("brink replay {} {} -o DIR", shlex::try_quote(trace).unwrap_or_else(|_| trace.into()), m.id),
        alice: None,
    }
}

fn rank(v: &Verdict) -> u8 {
    match v {
        Verdict::Consistent => 0,
        Verdict::CheckerFailure => 1,
        Verdict::Violation => 2,
    }
}

/// How two runs' vulnerabilities compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    /// In NEW only: regressions.
    pub added: Vec<Vulnerability>,
    /// In OLD only.
    pub fixed: Vec<Vulnerability>,
    /// In both (NEW's record).
    pub unchanged: Vec<Vulnerability>,
}

pub fn diff(old: &Analysis, new: &Analysis) -> Diff {
    let old_ids: BTreeSet<&str> = old.vulnerabilities.iter().map(|v| v.id.as_str()).collect();
    let new_ids: BTreeSet<&str> = new.vulnerabilities.iter().map(|v| v.id.as_str()).collect();
    Diff {
        old: old.results.clone(),
        new: new.results.clone(),
        added: new.vulnerabilities.iter().filter(|v| !old_ids.contains(v.id.as_str())).cloned().collect(),
        fixed: old.vulnerabilities.iter().filter(|v| !new_ids.contains(v.id.as_str())).cloned().collect(),
        unchanged: new.vulnerabilities.iter().filter(|v| old_ids.contains(v.id.as_str())).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brink_calls::Site;

    /// Ids of `results/vulnerabilities.md`, recomputed from their kinds, signatures and
    /// classes: a change of the hash would renumber every vulnerability a user tracks.
    #[test]
    fn vulnerability_ids_are_pinned() {
        let id = |kind, sig: &[&str], class: &str| {
            vuln_id(kind, &sig.iter().map(|s| s.to_string()).collect::<Vec<_>>(), class)
        };
        let appended = "acknowledged 'appended #' lost: logs/app.log holds # valid records";
        let config = "acknowledged 'config v#' lost: config holds version #";
        let ids = [
            id(VulnKind::Durability, &[], appended),
            id(VulnKind::Durability, &["file:logs/app.log"], appended),
            id(VulnKind::Durability, &["directory:/"], appended),
            id(VulnKind::Durability, &[], config),
            id(VulnKind::Ordering, &[], config),
            id(VulnKind::Durability, &["directory:/"], config),
            id(
                VulnKind::Durability,
                &["lost without a crash"],
                "acknowledged 'data v#' lost: # of # bytes of data are not the new version",
            ),
            id(
                VulnKind::Durability,
                &["after an injected I/O error"],
                "acknowledged 'txn #' lost: app.db holds txns up to #",
            ),
            id(
                VulnKind::Ordering,
                &["file:report.dat"],
                "./report.dat shows bytes never written to it: stale data of a deleted file ('SECRET-KEY…')",
            ),
            id(
                VulnKind::Atomicity,
                &["directory:/"],
                "./report.dat shows bytes never written to it: stale data of a deleted file ('SECRET-KEY…')",
            ),
        ];
        expect_test::expect![[r#"
            V87a3fb98
            V5629db8c
            V1794fa2d
            V50ac0e69
            Vecea319e
            Vdc4ef2e8
            V5fc8c554
            V171e1c8a
            V10188961
            Va89e6871"#]]
        .assert_eq(&ids.join("\n"));
    }

    /// A hand-built run of the atomic-replace bug (rename, acknowledge, then the journal
    /// writes that hold the rename) in which `line` is the rename's script line.
    fn replace_run(line: u32) -> (TraceInfo, Vec<StateRecord>) {
        use brink_attrib::{Attribution, CallLinks, CallRow, WriteCalls};
        let dir = || Item {
            kind: Kind::Directory,
            path: Some("/".into()),
            journal: true,
            detail: Some("a.tmp→a".into()),
            bytes: 4096,
            range: None,
        };
        let commit =
            || Item { kind: Kind::JournalCommit, path: None, journal: false, detail: None, bytes: 4096, range: None };
        let w = |index, item: Item| brink_attrib::WriteItems { index, offset: 0, len: 4096, items: vec![item] };
        let site = Site::Source { file: "/src/app.sh".into(), line, function: Some("mv a.tmp a".into()) };
        let row = |seq, kind: &str, paths: &[&str], mark: Option<&str>| CallRow {
            seq,
            name: kind.into(),
            kind: kind.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            site: site.clone(),
            mark: mark.map(String::from),
        };
        let carried = |index, seq| WriteCalls { index, calls: vec![seq], durable_by: None };
        let calls = CallLinks {
            cwd: "/w".into(),
            calls: vec![
                row(3, "rename", &["a.tmp", "a"], None),
                row(4, "acknowledge", &[], Some("v1")),
                row(9, "rename", &["a.tmp", "a"], None),
                row(10, "acknowledge", &[], Some("v2")),
            ],
            writes: vec![carried(1, 3), carried(2, 3), carried(5, 9), carried(6, 9)],
            marks: vec![4, 10],
        };
        let info = TraceInfo {
            trace: "t".into(),
            events: "mwwfmwwf".into(),
            marks: vec![
                brink_explore::results::MarkAt { index: 0, text: "v1".into() },
                brink_explore::results::MarkAt { index: 4, text: "v2".into() },
            ],
            attribution: Attribution {
                fs: "ext4".into(),
                covered: true,
                notes: Vec::new(),
                writes: vec![w(1, dir()), w(2, commit()), w(5, dir()), w(6, commit())],
            },
            calls: Some(calls),
        };
        let rec = |id: &str, marks: u64, verdict: &str, checker: &str, message: &str| -> StateRecord {
            serde_json::from_value(serde_json::json!({"id": id, "position": id.parse::<u64>().unwrap(), "epoch": 0,
                "marks": marks, "omitted": [], "torn": [], "image": id, "verdict": verdict, "dup_of": null,
                "checks": [{"checker": checker, "verdict": verdict, "message": message, "ms": 1}]}))
            .unwrap()
        };
        let recs = vec![
            rec("1", 1, "violation", "./check", "acknowledged 'v1' lost: a holds 0"),
            rec("2", 1, "checker-failure", "./check", "killed by signal 11"),
            rec("5", 2, "violation", "./check", "acknowledged 'v2' lost: a holds 1"),
            rec("6", 2, "violation", "fsck", "block bitmap differences: -123"),
            rec("7", 2, "checker-failure", "./check", "killed by signal 11"),
        ];
        (info, recs)
    }

    fn triage(line: u32) -> Vec<Vulnerability> {
        let (info, recs) = replace_run(line);
        let ctx = Ctx::new(Some(&info), &recs);
        gather(&ctx, &recs, &[]).into_iter().map(|(vid, g)| vulnerability(&ctx, "t", vid, g)).collect()
    }

    /// The rename acknowledged before its directory was fsynced, broken at two marks, is
    /// one vulnerability named by its line; the checker failures are one of their own;
    /// fsck's finding is the file system's. Ids do not move with the line.
    #[test]
    fn vulnerabilities_group_by_the_calls_they_lost_not_by_mark() {
        let v = triage(10);
        let shown: Vec<String> = v
            .iter()
            .map(|v| {
                format!("{} {} {} {} {:?}: {}", v.id, v.kind.name(), v.owner.name(), v.states, v.signature, v.sentence)
            })
            .collect();
        expect_test::expect![[r#"
            V4f63fe2b recovery application 2 ["checker failure"]: killed by signal 11: the application cannot start or recover on this crash state (its checker failed rather than judged it)
            Vba35f7d9 durability application 2 ["call:rename a.tmp → a @ app.sh mv a.tmp a"]: acknowledged 'v1' lost: a holds 0: rename(a.tmp → a) at app.sh:10 was acknowledged ('v1') before its directory ./ was fsynced: a power cut in between loses it (in the blocks: the journal copy of the directory block of / (a.tmp→a))
            Vfeb90a02 atomicity file system 1 ["call:rename a.tmp → a @ app.sh mv a.tmp a"]: block bitmap differences: -123: rename(a.tmp → a) at app.sh:10 was seen half done after a crash: the operation is not atomic on disk (in the blocks: the journal copy of the directory block of / (a.tmp→a))"#]]
        .assert_eq(&shown.join("\n"));
        let moved: Vec<String> = triage(12).iter().map(|v| v.id.clone()).collect();
        assert_eq!(moved, v.iter().map(|v| v.id.clone()).collect::<Vec<_>>(), "the line moved, the ids did not");
        assert!(triage(12).iter().any(|v| v.sentence.contains("rename(a.tmp → a) at app.sh:12")));
    }
}
