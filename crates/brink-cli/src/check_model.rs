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
    let verdict = compare(&Results::load(&block)?.states, &Results::load(&logical)?.states);
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
}

fn compare(block: &[StateRecord], logical: &[StateRecord]) -> Verdict {
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
    let unexplained = seen
        .iter()
        .filter(|(k, _)| !allowed.contains_key(*k))
        .map(|((_, marks), (id, l))| (id.clone(), *marks, closest(l, *marks, &allowed)))
        .collect();
    Verdict {
        unexplained,
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
            "unlisted": self.unlisted,
        })
    }
}

/// `brink content-listing` (the checker check-model runs): the logical content of the
/// state in the working directory, as details, and exit 0.
pub fn content_listing() -> Result<i32> {
    let entries = brink_explore::tree::content_listing(Path::new(".")).context("listing the state")?;
    let content = blake3::hash(entries.join("\n").as_bytes()).to_hex().to_string();
    emit(&(serde_json::json!({"content": content, "entries": entries}).to_string() + "\n"))?;
    Ok(0)
}
