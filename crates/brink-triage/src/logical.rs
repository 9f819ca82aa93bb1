//! Vulnerabilities of a logical run (issue 15), in the program's terms and in ALICE's
//! forms, from `ops.json` (each logical op's call) and the states' ids.
//!
//! A logical id says what did not persist (`L9.0-6.0`: everything up to op 9's first
//! micro-op but op 6's). A violating state's *cause* is its first op that lost a
//! micro-op; later ops that lost theirs depend on it or are lost beside it. A state that
//! lost nothing but ends inside an op has that op as its cause.
//! - *atomicity*: the cause op persisted in part and no acknowledgement after it did
//!   ("operation 6 must be atomic");
//! - *durability*: the cause op persisted not at all, and in some state of the group
//!   nothing that changes files persisted after it, only acknowledgements and syncs
//!   ("operation 6 must persist before operation 7", the acknowledgement it broke);
//! - *ordering*: otherwise, a later op that changes files persisted while the cause did
//!   not ("operation 6 must persist before operation 9", the earliest such op).
//!
//! A state that lost nothing and ends on an op's last micro-op is a prefix of the
//! program's own order: if it violates, the acknowledgement came before the calls that
//! make it true (durability, the cause the op it ends on).
//!
//! States group by (cause op's call signature, whether it was partial, message class);
//! the id is [`crate::vuln_id`] over the kind, the signature and the class, built as at
//! the block level (`program.rs`: the call's kind, its paths with digits folded, its
//! site's file and function), so that the same bug has the same id under every model
//! and in the kernel's exploration of the same recording: the model matrix
//! ([`crate::matrix`]) lines them up by it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use brink_attrib::CallRow;
use brink_check::Verdict;
use brink_explore::StateRecord;
use brink_explore::results::{LogicalInfo, OpInfo};
use brink_pmodel::LStateId;

use crate::program::{because, name_calls, signature};
use crate::{MinimalState, MinimalWrite, STATE_IDS_MAX, VulnKind, Vulnerability, first_message, vuln_id};

/// Ops that change no file: they can be lost or persist without changing what a
/// checker sees (acknowledgements, syncs).
fn changes_files(op: &OpInfo) -> bool {
    !matches!(
        op.name.as_str(),
        "ack" | "fsync" | "failed-fsync" | "fdatasync" | "sync" | "sync_file_range" | "msync" | "sync-write"
    )
}

/// What one violating state says about its cause.
struct Cause {
    op: u32,
    partial: bool,
    /// The earliest later op that changes files and persisted whole or in part.
    later: Option<u32>,
    /// The first acknowledgement after the cause that persisted.
    ack: Option<u32>,
    missing: usize,
}

/// The cause of the state `id` (module docs); None for the empty state.
fn cause_of(info: &LogicalInfo, id: &LStateId) -> Option<Cause> {
    let end = id.end?;
    let whole = |op: u32| info.ops.get(op as usize).map_or(1, |o| o.parts);
    let (op, partial) = match id.missing.first() {
        Some(m) => {
            let lost_here = id.missing.iter().filter(|x| x.op == m.op).count() as u32;
            let reached = if end.op == m.op { end.k.saturating_add(1) } else { whole(m.op) };
            (m.op, lost_here < reached)
        }
        None => (end.op, end.k.saturating_add(1) < whole(end.op)),
    };
    let lost_whole = |o: u32| {
        let reached = if end.op == o { end.k.saturating_add(1) } else { whole(o) };
        id.missing.iter().filter(|x| x.op == o).count() as u32 >= reached
    };
    let after = (op.saturating_add(1)..=end.op).filter(|&o| !lost_whole(o));
    let is = |o: u32, f: &dyn Fn(&OpInfo) -> bool| info.ops.get(o as usize).is_some_and(f);
    let later = after.clone().find(|&o| is(o, &changes_files));
    let ack = after.clone().find(|&o| is(o, &|x: &OpInfo| x.name == "ack"));
    // Part of the op persisted, then its acknowledgement: what broke is the promise, a
    // durability failure, however the op was split (a minimal state often keeps the
    // parts that change nothing visible).
    let partial = partial && ack.is_none();
    Some(Cause { op, partial, later, ack, missing: id.missing.len() })
}

/// A group of states with one cause (by its call's signature), class and partiality.
struct Group<'a> {
    sig: Vec<String>,
    /// The cause ops of its states (one per iteration of a loop, say).
    ops: BTreeSet<u32>,
    partial: bool,
    class: String,
    states: Vec<&'a StateRecord>,
    /// Some state showed the loss with nothing changed after the cause (durability).
    durable_only: bool,
    /// In the first state that showed a later op persisted, how many ops after the
    /// cause it came (ordering).
    ordered_after: Option<u32>,
    marks: BTreeMap<u32, String>,
    /// The state with the fewest lost micro-ops, then the smallest id.
    best: Option<(usize, LStateId, &'a StateRecord)>,
}

/// The logical run's vulnerabilities: violations grouped by cause, then checker
/// failures grouped by message (the application cannot start or recover).
pub(crate) fn vulnerabilities(info: &LogicalInfo, recs: &[StateRecord], probes: &[StateRecord]) -> Vec<Vulnerability> {
    let by_id: HashMap<&str, &StateRecord> = recs.iter().chain(probes).map(|r| (r.id.as_str(), r)).collect();
    let mut groups: BTreeMap<(Vec<String>, bool, String), Group> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.verdict == Verdict::Violation) {
        // A state is explained by its minimal state (minimize.rs in brink-logical).
        let m = r.minimal.as_deref().and_then(|mid| by_id.get(mid).copied()).unwrap_or(r);
        let Ok(id) = m.id.parse::<LStateId>() else { continue };
        let Some(c) = cause_of(info, &id) else { continue };
        let class = crate::first_violation(r).1;
        let sig = op_signature(info, c.op);
        let g = groups.entry((sig.clone(), c.partial, class.clone())).or_insert_with(|| Group {
            sig,
            ops: BTreeSet::new(),
            partial: c.partial,
            class,
            states: Vec::new(),
            durable_only: false,
            ordered_after: None,
            marks: BTreeMap::new(),
            best: None,
        });
        g.states.push(r);
        g.ops.insert(c.op);
        g.durable_only |= c.later.is_none();
        g.ordered_after = g.ordered_after.or(c.later.map(|j| j - c.op));
        if let Some(k) = c.ack {
            let text = info.ops[k as usize].call.as_ref().and_then(|row| row.mark.clone()).unwrap_or_default();
            g.marks.insert(k, text);
        }
        if g.best.as_ref().is_none_or(|(n, b, _)| (c.missing, &id) < (*n, b)) {
            g.best = Some((c.missing, id, m));
        }
    }
    let mut out: Vec<Vulnerability> = groups.into_values().map(|g| vulnerability(info, g)).collect();
    out.extend(crate::failure_vulnerabilities(recs, |id| id.parse::<LStateId>().ok().map(|i| i.missing.len())));
    out
}

/// The op in words: `rename(config.tmp → config) at workload.sh:10`, or its ALICE name.
fn op_words(info: &LogicalInfo, op: u32) -> String {
    match info.ops.get(op as usize) {
        Some(OpInfo { call: Some(row), .. }) => name_calls(&[row]),
        Some(o) => o.name.clone(),
        None => format!("operation {op}"),
    }
}

fn alice_name(info: &LogicalInfo, op: u32) -> String {
    let name = info.ops.get(op as usize).map_or("?", |o| o.name.as_str());
    format!("operation {op} ({name})")
}

/// The signature of op `op`'s call (as at the block level), or its ALICE name.
fn op_signature(info: &LogicalInfo, op: u32) -> Vec<String> {
    match info.ops.get(op as usize).and_then(|o| o.call.as_ref()) {
        Some(row) => signature(&[row]),
        None => vec![format!("op:{}", info.ops.get(op as usize).map_or("?", |o| o.name.as_str()))],
    }
}

/// The first acknowledgement after op `op`.
fn ack_after(info: &LogicalInfo, op: u32) -> Option<u32> {
    (op.saturating_add(1)..info.ops.len() as u32).find(|&k| info.ops[k as usize].name == "ack")
}

/// The failed fsync (`failed-fsync`) of the file op `op` changed, after it and before
/// the next acknowledgement: the model let op `op` be lost there.
fn failed_fsync_after(info: &LogicalInfo, op: u32) -> Option<&CallRow> {
    let file = info.ops.get(op as usize)?.call.as_ref()?.paths.last()?;
    let until = ack_after(info, op).unwrap_or(info.ops.len() as u32);
    (op.saturating_add(1)..until)
        .filter_map(|k| info.ops.get(k as usize))
        .filter(|o| o.name == "failed-fsync")
        .filter_map(|o| o.call.as_ref())
        .find(|c| c.paths.last() == Some(file))
}

/// Why a write pending at a failed fsync is lost though acknowledged.
fn dropped_at_failure(row: &CallRow, failed: &CallRow, ack: Option<&str>) -> String {
    let ack = ack.map(|t| format!(" ('{t}')")).unwrap_or_default();
    format!(
        "{} was pending when {} failed, and was acknowledged{ack} after a later fsync succeeded: the kernel may drop the writes pending at a failed fsync (it marks their pages clean), and no later fsync makes them durable",
        name_calls(&[row]),
        name_calls(&[failed])
    )
}

/// ALICE's form for the group, told by its best state's cause `op`; other ops of the
/// same call (`more`) are named after it.
fn alice_form(info: &LogicalInfo, g: &Group, op: u32) -> (VulnKind, String) {
    let (kind, form) = if g.partial {
        (VulnKind::Atomicity, format!("{} must be atomic", alice_name(info, op)))
    } else if let (true, Some(k)) = (g.durable_only, ack_after(info, op)) {
        (VulnKind::Durability, format!("{} must persist before {}", alice_name(info, op), alice_name(info, k)))
    } else {
        let j = op.saturating_add(g.ordered_after.unwrap_or(1));
        (VulnKind::Ordering, format!("{} must persist before {}", alice_name(info, op), alice_name(info, j)))
    };
    let more: Vec<String> = g.ops.iter().filter(|&&o| o != op).map(u32::to_string).collect();
    match more.len() {
        0 => (kind, form),
        _ => (
            kind,
            format!(
                "{form}; the same for operation{} {} (the same call)",
                if more.len() == 1 { "" } else { "s" },
                more.join(", ")
            ),
        ),
    }
}

fn vulnerability(info: &LogicalInfo, g: Group) -> Vulnerability {
    let (_, id, m) = g.best.as_ref().expect("a group has a state");
    let (id, m) = (id.clone(), *m);
    let op = id.missing.first().map_or_else(|| id.end.map_or(0, |e| e.op), |x| x.op);
    let (kind, alice) = alice_form(info, &g, op);
    let rows: Vec<_> = info.ops.get(op as usize).and_then(|o| o.call.as_ref()).into_iter().collect();
    let ack = g.marks.values().next().cloned();
    let j = g.ordered_after.map(|d| op.saturating_add(d));
    let later: Vec<_> = j.and_then(|j| info.ops.get(j as usize)?.call.as_ref()).into_iter().collect();
    let said = match (rows.first(), failed_fsync_after(info, op)) {
        (Some(row), Some(failed)) if kind == VulnKind::Durability => dropped_at_failure(row, failed, ack.as_deref()),
        _ if rows.is_empty() => op_words(info, op),
        _ => because(kind, ack.as_deref(), &rows, &later),
    };
    let sig = g.sig;
    let message = first_message(m);
    let (cause, lost) = (op, id.missing.iter().map(|x| x.op).collect::<BTreeSet<_>>());
    let writes = lost
        .iter()
        .map(|&op| MinimalWrite {
            index: u64::from(op),
            what: if op == cause && g.partial { "partly lost" } else { "lost" }.into(),
            holds: vec![op_words(info, op)],
        })
        .collect();
    Vulnerability {
        id: vuln_id(kind, &sig, &g.class),
        kind,
        owner: crate::Owner::Application,
        sentence: format!("{message}: {said}"),
        class: g.class,
        signature: sig,
        states: g.states.len() as u64,
        state_ids: g.states.iter().take(STATE_IDS_MAX).map(|r| r.id.clone()).collect(),
        marks_broken: g.marks.into_values().collect(),
        minimal: MinimalState { id: m.id.clone(), position: m.position, writes, fault: None, message },
        repro: String::new(),
        alice: Some(alice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brink_attrib::CallRow;
    use brink_calls::Site;

    /// An atomic-replace loop of two iterations: creat(tmp), append, fsync(tmp),
    /// rename(tmp → config) in two parts, ack; rename at workload.sh:10 both times.
    fn info() -> LogicalInfo {
        let row = |seq: u64, kind: &str, paths: &[&str], line: u32, mark: Option<&str>| CallRow {
            seq,
            name: kind.into(),
            kind: kind.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            site: Site::Source { file: "/w/workload.sh".into(), line, function: None },
            mark: mark.map(str::to_string),
        };
        let op = |name: &str, parts: u32, call: CallRow| OpInfo { name: name.into(), parts, call: Some(call) };
        let mut ops = Vec::new();
        for (i, v) in ["v1", "v2"].iter().enumerate() {
            let s = 10 * i as u64;
            ops.push(op("creat", 1, row(s, "create", &["config.tmp"], 7, None)));
            ops.push(op("append", 1, row(s + 1, "write", &["config.tmp"], 8, None)));
            ops.push(op("fsync", 1, row(s + 2, "fsync", &["config.tmp"], 9, None)));
            ops.push(op("rename", 2, row(s + 3, "rename", &["config.tmp", "config"], 10, None)));
            ops.push(op("ack", 1, row(s + 4, "acknowledge", &[], 11, Some(v))));
        }
        LogicalInfo { cwd: "/w".into(), ops }
    }

    fn rec(id: &str, verdict: &str, message: &str) -> StateRecord {
        let position = id.parse::<LStateId>().unwrap().end.map_or(0, |e| u64::from(e.op) + 1);
        serde_json::from_value(serde_json::json!({"id": id, "position": position, "epoch": 0,
            "marks": 1, "omitted": [], "torn": [], "image": "00", "verdict": verdict, "dup_of": null,
            "checks": [{"checker": "./check", "verdict": verdict, "message": message, "ms": 1}]}))
        .unwrap()
    }

    #[test]
    fn one_call_lost_in_every_iteration_is_one_durability_vulnerability() {
        let recs = vec![
            // The rename lost, then only its acknowledgement: durability.
            rec("L4.0-3.0-3.1", "violation", "acknowledged 'config v1' lost"),
            // The same, with the next iteration's creat persisted too: same cause.
            rec("L5.0-3.0-3.1", "violation", "acknowledged 'config v1' lost"),
            rec("L9.0-8.0-8.1", "violation", "acknowledged 'config v2' lost"),
            // Half the rename persisted: atomicity.
            rec("L3.0", "violation", "config is missing"),
            rec("L8.0", "violation", "config is missing"),
            rec("L4.0", "consistent", ""),
            rec("L9.0-3.0-3.1", "checker-failure", "killed by signal 6"),
        ];
        let vs = vulnerabilities(&info(), &recs, &[]);
        let by_kind = |k: VulnKind| vs.iter().filter(|v| v.kind == k).collect::<Vec<_>>();
        let d = by_kind(VulnKind::Durability);
        assert_eq!(d.len(), 1, "{vs:#?}");
        assert_eq!(d[0].states, 3);
        assert_eq!(
            d[0].alice.as_deref(),
            Some(
                "operation 3 (rename) must persist before operation 4 (ack); the same for operation 8 (the same call)"
            )
        );
        assert!(
            d[0].sentence.contains("rename(config.tmp → config) at workload.sh:10 was acknowledged ('v1')"),
            "{}",
            d[0].sentence
        );
        assert_eq!(d[0].minimal.id, "L4.0-3.0-3.1");
        assert_eq!(d[0].marks_broken, vec!["v1".to_string(), "v2".to_string()]);
        let a = by_kind(VulnKind::Atomicity);
        assert_eq!((a.len(), a[0].states), (1, 2));
        assert_eq!(
            a[0].alice.as_deref(),
            Some("operation 3 (rename) must be atomic; the same for operation 8 (the same call)")
        );
        assert_eq!(by_kind(VulnKind::Recovery).len(), 1);
        assert!(by_kind(VulnKind::Ordering).is_empty());
    }

    #[test]
    fn a_later_change_persisting_in_every_state_is_ordering() {
        // The rename lost while the next iteration's creat and append persisted, and no
        // state shows the loss without them.
        let recs = vec![rec("L6.0-3.0-3.1", "violation", "config holds garbage")];
        let vs = vulnerabilities(&info(), &recs, &[]);
        assert_eq!(vs.len(), 1);
        assert_eq!(vs[0].kind, VulnKind::Ordering);
        assert_eq!(vs[0].alice.as_deref(), Some("operation 3 (rename) must persist before operation 5 (creat)"));
        assert!(
            vs[0].sentence.contains("did not persist while create(config.tmp) at workload.sh:7"),
            "{}",
            vs[0].sentence
        );
    }

    /// Part of the rename persisted, then its acknowledgement: durability, as when the
    /// whole rename is lost (a minimal state keeps the parts that change nothing seen).
    #[test]
    fn a_partly_persisted_op_before_its_acknowledgement_is_durability() {
        let recs = vec![
            rec("L4.0-3.1", "violation", "acknowledged 'config v1' lost"),
            rec("L4.0-3.0-3.1", "violation", "acknowledged 'config v1' lost"),
        ];
        let vs = vulnerabilities(&info(), &recs, &[]);
        assert_eq!(vs.len(), 1, "{vs:#?}");
        assert_eq!((vs[0].kind, vs[0].states), (VulnKind::Durability, 2));
    }

    /// A state that lost several ops is explained by its minimal state, a probe here.
    #[test]
    fn a_state_is_explained_by_its_minimal_state() {
        let mut wide = rec("L9.0-1.0-3.0-3.1-6.0", "violation", "acknowledged 'config v1' lost");
        wide.minimal = Some("L4.0-3.0-3.1".into());
        let probe = rec("L4.0-3.0-3.1", "violation", "acknowledged 'config v1' lost");
        let vs = vulnerabilities(&info(), &[wide], &[probe]);
        assert_eq!(vs.len(), 1);
        assert_eq!((vs[0].kind, vs[0].minimal.id.as_str()), (VulnKind::Durability, "L4.0-3.0-3.1"));
        assert_eq!(vs[0].state_ids, vec!["L9.0-1.0-3.0-3.1-6.0".to_string()]);
    }

    #[test]
    fn the_id_is_the_block_levels_for_the_same_call_and_class() {
        let recs = vec![rec("L4.0-3.0-3.1", "violation", "acknowledged 'config v1' lost")];
        let v = &vulnerabilities(&info(), &recs, &[])[0];
        let i = info();
        let row = i.ops[3].call.as_ref().unwrap();
        assert_eq!(v.id, vuln_id(VulnKind::Durability, &signature(&[row]), &v.class));
    }

    /// fsync-retry's pattern: the write pending at a failed fsync, lost though a retried
    /// fsync succeeded before the acknowledgement, is explained by the failure.
    #[test]
    fn a_write_lost_at_a_failed_fsync_is_explained_by_the_failure() {
        let row = |seq: u64, kind: &str, line: u32, mark: Option<&str>| CallRow {
            seq,
            name: kind.into(),
            kind: kind.into(),
            paths: if mark.is_some() { Vec::new() } else { vec!["data".into()] },
            site: Site::Source { file: "/w/workload.sh".into(), line, function: None },
            mark: mark.map(str::to_string),
        };
        let op = |name: &str, call: CallRow| OpInfo { name: name.into(), parts: 1, call: Some(call) };
        let ops = vec![
            op("overwrite", row(1, "write", 7, None)),
            op("failed-fsync", row(2, "fsync", 9, None)),
            op("fsync", row(3, "fsync", 9, None)),
            op("ack", row(4, "acknowledge", 11, Some("data v1"))),
        ];
        let info = LogicalInfo { cwd: "/w".into(), ops };
        let vs = vulnerabilities(&info, &[rec("L3.0-0.0", "violation", "acknowledged 'data v1' lost")], &[]);
        assert_eq!(vs.len(), 1, "{vs:#?}");
        assert_eq!(vs[0].kind, VulnKind::Durability);
        assert!(
            vs[0]
                .sentence
                .contains("write(data) at workload.sh:7 was pending when fsync(data) at workload.sh:9 failed"),
            "{}",
            vs[0].sentence
        );
    }
}
