//! `brink check-model TRACE --apm NAME -o OUT`: an abstract persistence model checked
//! against what the real kernel recovered from the same recording.
//!
//! Both explorations run with one checker, brink itself (`brink content-listing`),
//! which reports each state's logical content (`brink_explore::tree::content_listing`:
//! names, types, sizes, contents) as its details and passes every state. The block run
//! (kernel recovery, every state of the write-back model up to `--max-states`) gives
//! the states the kernel produced; the logical run (the APM's exhaustive space) the
//! states the model allows. Then: (a) a recovered (content, acknowledgements) the model
//! cannot produce means the model is wrong (exit 1, each shown against the closest
//! state the model allows); (b) how many of the model's states the kernel never
//! produced in this recording is the model's pessimism.
//!
//! Garbage: where a model's state holds garbage (stale blocks of a writeback append),
//! the model means "any bytes", and the kernel's stale bytes are whatever the disk held,
//! so a recovered state whose files differ from a model state's only in the model's
//! garbage blocks is explained (the listing also carries a hash per 4 KiB block of each
//! file up to 1 MiB, and a block with any garbage byte is not compared). Larger files
//! are compared whole.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use brink_explore::{CheckerSpec, Results, StateRecord};
use brink_pmodel::{Apm, LStrategy, Model, Strategy};

use crate::emit;

/// Unexplained states shown, at most.
const SHOWN_MAX: usize = 10;

#[derive(clap::Args)]
pub struct CheckModelArgs {
    trace: PathBuf,
    /// The model to check: posix, ext4-ordered, ext4-writeback, ext4-journal, xfs, btrfs.
    #[arg(long)]
    apm: String,
    /// Where both explorations go (`OUT/block`, `OUT/logical`); must not exist.
    #[arg(short, long)]
    output: PathBuf,
    /// Refuse an exploration (either level) larger than this.
    #[arg(long, default_value_t = 100_000)]
    max_states: u128,
    #[arg(long)]
    jobs: Option<usize>,
    #[arg(long)]
    json: bool,
}

/// One state's logical content and the acknowledgements it is held to.
type Key = (String, u64);

pub fn check_model(a: CheckModelArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    let apm: Apm = a.apm.parse()?;
    let rec = brink_logical::Recording::open(&a.trace)?;
    model_fits(apm, &rec.meta.fs, &rec.meta.mount_opts)?;
    if a.output.exists() {
        bail!("{} already exists: choose another -o", a.output.display());
    }
    let listing = format!("{} content-listing", shlex::try_quote(&std::env::current_exe()?.to_string_lossy())?);
    let jobs = crate::suite::jobs(a.jobs)?;
    let block = a.output.join("block");
    let cfg = brink_explore::ExploreConfig {
        trace: a.trace.clone(),
        results: block.clone(),
        model: Model::WRITEBACK,
        strategy: Strategy::Exhaustive,
        max_states: a.max_states,
        checkers: vec![CheckerSpec::Command(listing.clone())],
        jobs,
        checker_timeout: brink_explore::defaults::CHECKER_TIMEOUT,
        time_budget: None,
        resume: false,
        recovery: brink_explore::Recovery::Kernel,
        media_faults: false,
        cache: None,
        interrupt: interrupt.0.clone(),
        shard: None,
        tree_dedup: false,
        checker_protocol: brink_check::Protocol::Brink,
    };
    crate::progress::explore(&cfg).map_err(|e| anyhow::anyhow!("the block exploration: {e}"))?;
    let logical = a.output.join("logical");
    let lcfg = brink_logical::LogicalConfig {
        trace: a.trace.clone(),
        results: logical.clone(),
        apm,
        strategy: LStrategy::Exhaustive { max_missing: u32::MAX },
        max_states: a.max_states,
        checkers: vec![listing],
        jobs,
        checker_timeout: brink_explore::defaults::CHECKER_TIMEOUT,
        time_budget: None,
        resume: false,
        shard: None,
        checker_protocol: brink_check::Protocol::Brink,
        interrupt: interrupt.0.clone(),
        cache: None,
    };
    crate::progress::explore_logical(&rec, &lcfg).map_err(|e| anyhow::anyhow!("the {apm} exploration: {e}"))?;
    let plan = brink_pmodel::Plan::new(&rec.logical, apm);
    let mut applier = brink_pmodel::Applier::new(&rec.logical, &plan);
    let mut garbage = |id: &str, path: &str| garbage_blocks(&plan, &mut applier, id, path);
    let verdict = compare(&Results::load(&block)?.states, &Results::load(&logical)?.states, &mut garbage);
    if a.json {
        emit(&(serde_json::to_string_pretty(&verdict.json(apm))? + "\n"))?;
    } else {
        emit(&verdict.text(apm))?;
    }
    Ok(i32::from(!verdict.unexplained.is_empty()))
}

/// Refuse a model of another file system than the recording's (posix fits every one).
fn model_fits(apm: Apm, fs: &str, mount_opts: &str) -> Result<()> {
    let data = mount_opts.split(',').find_map(|o| o.strip_prefix("data=")).unwrap_or("ordered");
    let fits = match apm {
        Apm::Posix => true,
        Apm::Ext4Ordered => fs == "ext4" && data == "ordered",
        Apm::Ext4Writeback => fs == "ext4" && data == "writeback",
        Apm::Ext4Journal => fs == "ext4" && data == "journal",
        Apm::Xfs => fs == "xfs",
        Apm::Btrfs => fs == "btrfs",
    };
    if !fits {
        bail!(
            "the trace was recorded on {fs} ({mount_opts}); {apm} describes another file system: record on it, or check posix"
        );
    }
    Ok(())
}

/// A state's content listing, from its checker's details.
fn listing(r: &StateRecord) -> Option<Vec<String>> {
    let d = r.checks.first()?.details.as_ref()?;
    Some(d.get("entries")?.as_array()?.iter().filter_map(|e| e.as_str().map(String::from)).collect())
}

fn key(r: &StateRecord) -> Option<Key> {
    let d = r.checks.first()?.details.as_ref()?;
    Some((d.get("content")?.as_str()?.to_string(), r.marks))
}

/// What the comparison found.
struct Verdict {
    /// Recovered states (one per distinct content and marks) the model cannot produce,
    /// each with the differences from the closest state it allows.
    unexplained: Vec<(String, u64, Vec<String>)>,
    kernel: usize,
    model: usize,
    /// The model's distinct states the kernel never produced.
    model_only: usize,
    /// States whose content could not be listed (a file the state could not read).
    unlisted: usize,
    /// Recovered states the model explains only where its state holds garbage (the
    /// blocks compared as wildcards: `explained_by_garbage`).
    with_garbage: usize,
}

/// The 4 KiB blocks of `path` that hold garbage in the model's state `id` (a block is
/// counted if any byte of it does); None if the state or the file is not there.
fn garbage_blocks(
    plan: &brink_pmodel::Plan,
    applier: &mut brink_pmodel::Applier<'_>,
    id: &str,
    path: &str,
) -> Option<HashSet<u64>> {
    let state = plan.state(&id.parse().ok()?)?;
    let files = applier.tree(&state).files();
    let view = files.iter().find(|(p, _)| brink_explore::tree::shown(p) == path)?.1;
    let block = brink_explore::tree::LISTED_BLOCK;
    let garbage = view.content.iter().filter(|e| e.fill == brink_pmodel::Fill::Garbage && e.len > 0);
    Some(garbage.flat_map(|e| e.offset / block..=(e.offset + e.len - 1) / block).collect())
}

/// A state's block hashes, from its checker's details.
fn blocks(r: &StateRecord) -> BTreeMap<String, Vec<String>> {
    let d = r.checks.first().and_then(|c| c.details.as_ref()).and_then(|d| d.get("blocks"));
    d.and_then(|b| serde_json::from_value(b.clone()).ok()).unwrap_or_default()
}

/// Whether the model's state `m` explains a recovered state (its listing `kl` and block
/// hashes `kb`) where the model holds garbage: the same entries but for regular files
/// of the same sizes whose blocks agree wherever the model's state holds no garbage
/// (the kernel's stale bytes are whatever the disk held; the model's garbage is bytes
/// it picks).
fn explained_by_garbage(
    kl: &[String],
    kb: &BTreeMap<String, Vec<String>>,
    m: &StateRecord,
    garbage: GarbageOf,
) -> bool {
    let Some(ml) = listing(m) else { return false };
    if kl.len() != ml.len() {
        return false;
    }
    let mb = blocks(m);
    kl.iter().zip(&ml).all(|(a, b)| {
        if a == b {
            return true;
        }
        let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
        if fa.len() != 4 || fb.len() != 4 || fa[0] != "f" || fa[..3] != fb[..3] {
            return false;
        }
        let (Some(ka), Some(ma), Some(wild)) = (kb.get(fa[1]), mb.get(fa[1]), garbage(&m.id, fa[1])) else {
            return false;
        };
        !wild.is_empty() && ka.len() == ma.len() && (0..ka.len()).all(|i| wild.contains(&(i as u64)) || ka[i] == ma[i])
    })
}

/// The garbage blocks of a file in a model's state (`garbage_blocks`), by state id and path.
type GarbageOf<'g, 'a> = &'g mut dyn FnMut(&str, &str) -> Option<HashSet<u64>>;

fn compare(block: &[StateRecord], logical: &[StateRecord], garbage: GarbageOf) -> Verdict {
    let mut allowed: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for r in logical {
        if let (Some(k), Some(l)) = (key(r), listing(r)) {
            allowed.entry(k).or_insert(l);
        }
    }
    let mut seen: BTreeMap<Key, (String, Vec<String>)> = BTreeMap::new();
    let mut unlisted = 0;
    for r in block {
        match (key(r), listing(r)) {
            (Some(k), Some(l)) => {
                seen.entry(k).or_insert((r.id.clone(), l));
            }
            _ => unlisted += 1,
        }
    }
    let produced: HashSet<&Key> = seen.keys().collect();
    let by_id: BTreeMap<&str, &StateRecord> = block.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut with_garbage = 0;
    let mut unexplained = Vec::new();
    for ((_, marks), (id, l)) in seen.iter().filter(|(k, _)| !allowed.contains_key(*k)) {
        let kb = blocks(by_id[id.as_str()]);
        if logical.iter().filter(|m| m.marks == *marks).any(|m| explained_by_garbage(l, &kb, m, garbage)) {
            with_garbage += 1;
        } else {
            unexplained.push((id.clone(), *marks, closest(l, *marks, &allowed)));
        }
    }
    Verdict {
        unexplained,
        with_garbage,
        kernel: seen.len(),
        model: allowed.len(),
        model_only: allowed.keys().filter(|k| !produced.contains(k)).count(),
        unlisted,
    }
}

/// The entries that differ between `l` and the closest allowed state held to as many
/// marks (`-` only in the recovered state, `+` only in the model's).
fn closest(l: &[String], marks: u64, allowed: &BTreeMap<Key, Vec<String>>) -> Vec<String> {
    let diff = |m: &[String]| {
        let (a, b): (HashSet<&String>, HashSet<&String>) = (l.iter().collect(), m.iter().collect());
        let mut d: Vec<String> = a.difference(&b).map(|e| format!("- {e}")).collect();
        d.extend(b.difference(&a).map(|e| format!("+ {e}")));
        d.sort();
        d
    };
    allowed
        .iter()
        .filter(|((_, m), _)| *m == marks)
        .map(|(_, m)| diff(m))
        .min_by_key(Vec::len)
        .unwrap_or_else(|| vec![format!("(the model allows no state held to {marks} marks)")])
}

impl Verdict {
    fn text(&self, apm: Apm) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{apm} against the kernel: {} distinct recovered states (content and acknowledgements), {} allowed by the model",
            self.kernel, self.model
        );
        let _ = writeln!(
            out,
            "  (a) recovered states the model cannot produce: {}{}",
            self.unexplained.len(),
            if self.unexplained.is_empty() { " (the model explains every one)" } else { ": the model is wrong" }
        );
        for (id, marks, diff) in self.unexplained.iter().take(SHOWN_MAX) {
            let _ = writeln!(out, "      state {id} ({marks} marks), against the closest state the model allows:");
            for d in diff.iter().take(SHOWN_MAX) {
                let _ = writeln!(out, "        {d}");
            }
        }
        if self.with_garbage > 0 {
            let _ = writeln!(
                out,
                "      ({} more recovered states match a model state but where the model's state holds garbage: the kernel's stale bytes are compared as wildcards there)",
                self.with_garbage
            );
        }
        let pct = 100.0 * self.model_only as f64 / self.model.max(1) as f64;
        let _ = writeln!(
            out,
            "  (b) states the model allows that the kernel never produced here: {} of {} ({pct:.0}%: its pessimism)",
            self.model_only, self.model
        );
        if self.unlisted > 0 {
            let _ = writeln!(
                out,
                "  {} recovered states could not be listed (unreadable files) and are left out",
                self.unlisted
            );
        }
        out
    }

    fn json(&self, apm: Apm) -> serde_json::Value {
        serde_json::json!({
            "apm": apm.name(),
            "kernel_states": self.kernel,
            "model_states": self.model,
            "unexplained": self.unexplained.iter().map(|(id, marks, diff)| serde_json::json!({"state": id, "marks": marks, "diff": diff})).collect::<Vec<_>>(),
            "model_only": self.model_only,
            "explained_with_garbage": self.with_garbage,
            "unlisted": self.unlisted,
        })
    }
}

/// `brink content-listing` (the checker check-model runs): the logical content of the
/// state in the working directory, as details, and exit 0.
pub fn content_listing() -> Result<i32> {
    let brink_explore::tree::Listing { entries, blocks } =
        brink_explore::tree::content_listing(Path::new(".")).context("listing the state")?;
    let content = blake3::hash(entries.join("\n").as_bytes()).to_hex().to_string();
    emit(&(serde_json::json!({"content": content, "entries": entries, "blocks": blocks}).to_string() + "\n"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, entries: &[&str], blocks: &[(&str, &[&str])]) -> StateRecord {
        let blocks: BTreeMap<&str, &[&str]> = blocks.iter().copied().collect();
        serde_json::from_value(serde_json::json!({"id": id, "position": 1, "epoch": 0, "marks": 1,
            "omitted": [], "torn": [], "image": "00", "verdict": "consistent", "dup_of": null,
            "checks": [{"checker": "listing", "verdict": "consistent", "ms": 1,
                "details": {"content": id, "entries": entries, "blocks": blocks}}]}))
        .unwrap()
    }

    /// A recovered file of stale blocks matches a model state of the same size wherever
    /// the model holds no garbage, and nowhere else.
    #[test]
    fn garbage_blocks_compare_as_wildcards_and_nothing_else_does() {
        let kernel = state("7", &["d logs", "f logs/a 8192 k"], &[("logs/a", &["stale", "same"])]);
        let model = state("L3.0", &["d logs", "f logs/a 8192 m"], &[("logs/a", &["junk", "same"])]);
        let (kl, kb) = (listing(&kernel).unwrap(), blocks(&kernel));
        let mut block0 = |_: &str, _: &str| Some(HashSet::from([0u64]));
        assert!(explained_by_garbage(&kl, &kb, &model, &mut block0));
        let mut block1 = |_: &str, _: &str| Some(HashSet::from([1u64]));
        assert!(!explained_by_garbage(&kl, &kb, &model, &mut block1), "block 0 differs and is not garbage");
        let mut none = |_: &str, _: &str| Some(HashSet::new());
        assert!(!explained_by_garbage(&kl, &kb, &model, &mut none));
        let longer = state("L4.0", &["d logs", "f logs/a 4096 m"], &[("logs/a", &["junk"])]);
        assert!(!explained_by_garbage(&kl, &kb, &longer, &mut block0), "sizes differ");
        let moved = state("L5.0", &["d logs", "f logs/b 8192 m"], &[("logs/b", &["junk", "same"])]);
        assert!(!explained_by_garbage(&kl, &kb, &moved, &mut block0), "names differ");
    }
}
