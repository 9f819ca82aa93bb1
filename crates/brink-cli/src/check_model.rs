//! `brink check-model TRACE --apm NAME -o OUT`: an abstract persistence model checked
//! against what the real kernel recovered from the same recording.
//!
//! The block run (kernel recovery, every state of the write-back model up to
//! `--max-kernel-states`, past it a stratified sample, with one checker, brink itself:
//! `brink content-listing`) gives each recovered state's logical content
//! (`brink_explore::tree::content_listing`: names, types, sizes, contents) and so the
//! states the kernel produced. The model's side is its whole space, listed in process
//! (`brink_logical::model_space`: the same listing made from each state's tree, no
//! directory written and no checker run: a million states in about ten seconds). Then:
//! (a) a recovered (content, acknowledgements) the model cannot produce means the model
//! is wrong (exit 1, each shown against the closest state the model allows); (b) how
//! many of the model's states the kernel never produced in this recording is the
//! model's pessimism.
//!
//! A space over `--max-states` is not listed: witnesses are looked for instead
//! (`witnesses`), states of the model with a recovered state's content, translated from
//! the other models whose spaces fit or found near them. A witness proves the model
//! allows the state; a state without one is undecided, never counted against the model.
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
use brink_logical::{ModelListing, ModelSpace};
use brink_pmodel::{Apm, LStrategy, Model, Strategy};
use serde::Deserialize;

use crate::emit;

/// Unexplained states shown, at most.
const SHOWN_MAX: usize = 10;

#[derive(clap::Args)]
pub struct CheckModelArgs {
    trace: PathBuf,
    /// The model to check: posix, ext4-ordered, ext4-writeback, ext4-journal, xfs, btrfs.
    #[arg(long)]
    apm: String,
    /// Where the block exploration goes (`OUT/block`); must not exist.
    #[arg(short, long, required_unless_present = "results")]
    output: Option<PathBuf>,
    /// Use this block exploration of the trace instead of running one: the `block`
    /// folder of an earlier check-model of the same trace (its states carry listings).
    #[arg(long, conflicts_with = "output")]
    results: Option<PathBuf>,
    /// Refuse a model space larger than this (listed in process: about 100,000 states a
    /// second on 2 cores).
    #[arg(long, default_value_t = 2_000_000)]
    max_states: u128,
    /// Recover every state of the block level up to this many; past it, a stratified
    /// sample of this many (every crash point gets its share) and no pessimism figure.
    #[arg(long, default_value_t = 5_000)]
    max_kernel_states: u128,
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
    let jobs = crate::suite::jobs(a.jobs)?;
    let block = match (&a.results, &a.output) {
        (Some(dir), _) => dir.clone(),
        (None, Some(out)) => {
            if out.exists() {
                bail!("{} already exists: choose another -o", out.display());
            }
            let block = out.join("block");
            kernel_states(&a, &block, jobs, &interrupt)?;
            block
        }
        (None, None) => bail!("give -o DIR or --results DIR"),
    };
    let results =
        Results::load(&block).with_context(|| format!("reading the block exploration at {}", block.display()))?;
    if a.results.is_some() {
        by_check_model(&results, &block, &a.trace)?;
    }
    let summary = &results.summary;
    let sampled =
        summary.strategy.starts_with("sample").then(|| (u128::from(summary.states_generated), summary.states_total.0));
    let kernel = recovered(&results.states, &listings_dir(&block))?;
    let plan = brink_pmodel::Plan::new(&rec.logical, apm);
    let (space, witness) =
        match crate::progress::model_space(&rec, &plan, WHOLE, (a.max_states, jobs), &interrupt.0, None) {
            Ok(space) => (space, None),
            Err(brink_logical::LogicalError::TooManyStates { .. }) => {
                let own = Apm::of_fs(&rec.meta.fs, &rec.meta.mount_opts);
                let (space, from) = witnesses(&rec, (&plan, own), &kernel, (a.max_states, jobs), &interrupt)?;
                (space, Some(from))
            }
            Err(e) => return Err(crate::progress::logical_error(e, &format!("the {apm} space"))),
        };
    let mut verdict = compare(&kernel, &space);
    if witness.is_some() && sampled.is_none() {
        verdict.model_sample = Some(sampled_pessimism(&rec, &plan, &kernel, jobs, &interrupt)?);
    }
    verdict.kernel_sampled = sampled;
    verdict.witness = witness;
    if a.json {
        emit(&(serde_json::to_string_pretty(&verdict.json(apm))? + "\n"))?;
    } else {
        emit(&verdict.text(apm))?;
    }
    Ok(i32::from(verdict.wrong()))
}

/// The recovered states a model allows, found without listing its space (too large):
/// first the model's own ALICE states and its states missing a few micro-ops (as many as
/// fit under `OWN_STATES_MAX`); then other shipped models whose spaces fit are listed
/// whole (the file system's own first), and each of their states that a recovered
/// state matches is translated into the model (`Plan::translate`) and listed there;
/// last, states near those found (`near_witnesses`). A state of the model with the same
/// content and acknowledgements explains the recovered one. The result holds only
/// these witnesses (`states`: 0, the space was not gone through), and where they were
/// looked for.
fn witnesses(
    rec: &brink_logical::Recording,
    (plan, own): (&brink_pmodel::Plan, Option<Apm>),
    kernel: &Kernel,
    (max_states, jobs): (u128, usize),
    interrupt: &brink_record::Interrupt,
) -> Result<(ModelSpace, Vec<String>)> {
    let mut wanted: HashSet<Key> = kernel.states.keys().cloned().collect();
    let (mut found, mut from) = (ModelSpace::default(), Vec::new());
    // The model's own states need no translation: ALICE's (prefixes, each op omitted,
    // partial ops), then those missing at most a few micro-ops, as many as fit.
    let own_strategies =
        [LStrategy::Alice].into_iter().chain(OWN_MISSING.map(|k| LStrategy::Exhaustive { max_missing: k }));
    for (i, strategy) in own_strategies.enumerate() {
        let only = Some(wanted.clone());
        let bound = max_states.min(OWN_STATES_MAX);
        match crate::progress::model_space(rec, plan, strategy, (bound, jobs), &interrupt.0, only) {
            Ok(space) => {
                from.push(format!("its own {} states ({})", brink_logical::strategy_name(strategy), space.states));
                for (k, v) in space.distinct {
                    if wanted.remove(&k) {
                        found.distinct.insert(k, v);
                    }
                }
                if i > 0 {
                    break;
                }
            }
            Err(brink_logical::LogicalError::TooManyStates { .. }) => {}
            Err(e) => return Err(crate::progress::logical_error(e, &format!("the {} states", plan.apm))),
        }
    }
    let mut lister = brink_logical::Lister::new(rec, plan);
    for source in witness_sources(plan.apm, own) {
        if wanted.is_empty() {
            break;
        }
        let other = brink_pmodel::Plan::new(&rec.logical, source);
        let space = match crate::progress::model_space(
            rec,
            &other,
            WHOLE,
            (max_states, jobs),
            &interrupt.0,
            Some(wanted.clone()),
        ) {
            Ok(space) => space,
            Err(brink_logical::LogicalError::TooManyStates { .. }) => continue,
            Err(e) => return Err(crate::progress::logical_error(e, &format!("the {source} space"))),
        };
        from.push(source.name().to_string());
        for (k, (id, _)) in space.distinct.iter() {
            if !wanted.contains(k) {
                continue;
            }
            let Some(w) = other.state(id).and_then(|s| plan.translate(&other, &s)) else { continue };
            let listing = lister.listing(&w)?;
            if (listing.listing.digest(), w.marks_before) == *k {
                wanted.remove(k);
                found.distinct.insert(k.clone(), (w.id, listing));
            }
        }
    }
    near_witnesses(&mut lister, plan, kernel, &mut wanted, &mut found)?;
    if !wanted.is_empty() {
        from.push(format!("a search of its own states per recovered state ({})", wanted.len()));
        let own_plan = own.filter(|&m| m != plan.apm).map(|m| brink_pmodel::Plan::new(&rec.logical, m));
        let mut own_lister = own_plan.as_ref().map(|p| brink_logical::Lister::new(rec, p));
        member_witnesses(&mut lister, own_lister.as_mut(), kernel, &mut wanted, &mut found, interrupt)?;
    }
    if from.is_empty() {
        bail!(
            "the {} space has more than {max_states} states, and so has every other model's, where witnesses would be found: raise --max-states",
            plan.apm
        );
    }
    Ok((found, from))
}

/// The other models whose states are translated into `apm`'s: the file system's own
/// (`own`) first, then the strongest (`WITNESS_SOURCES`), never posix (the weakest).
fn witness_sources(apm: Apm, own: Option<Apm>) -> Vec<Apm> {
    let mut sources: Vec<Apm> = Vec::new();
    for m in own.into_iter().chain(WITNESS_SOURCES) {
        if m != apm && m != Apm::Posix && !sources.contains(&m) {
            sources.push(m);
        }
    }
    sources
}

/// Witnesses for the recovered states still `wanted`, near those found: a found state
/// held to as many marks with some file's appended pages cut back (`Lister::near`: the
/// size committed before the data, which no stronger model has).
fn near_witnesses(
    lister: &mut brink_logical::Lister<'_>,
    plan: &brink_pmodel::Plan,
    kernel: &Kernel,
    wanted: &mut HashSet<Key>,
    found: &mut ModelSpace,
) -> Result<()> {
    for (k, r) in &kernel.states {
        if !wanted.contains(k) {
            continue;
        }
        let target = brink_explore::tree::Listing { entries: r.entries.clone(), blocks: BTreeMap::new() };
        let near: Vec<brink_pmodel::LState> =
            found.distinct.iter().filter(|((_, m), _)| *m == k.1).filter_map(|(_, (id, _))| plan.state(id)).collect();
        for s in near {
            let Some(w) = lister.near(&s, &target)? else { continue };
            if w.marks_before == k.1 {
                let listing = lister.listing(&w)?;
                wanted.remove(k);
                found.distinct.insert(k.clone(), (w.id, listing));
                break;
            }
        }
    }
    Ok(())
}

/// Witnesses for the recovered states still `wanted`, searched for one by one
/// (`Lister::find`: a descent on the distance between listings): first in the file
/// system's own model (`own`, when it is another: its states are fewer and nearer the
/// kernel's), translated into the model (`Plan::translate`), then in the model itself.
/// A witness whose listing differs from the recovered one only where it holds garbage
/// is kept under its own content, where `compare` takes it as explaining the recovered
/// state.
fn member_witnesses(
    lister: &mut brink_logical::Lister<'_>,
    own: Option<&mut brink_logical::Lister<'_>>,
    kernel: &Kernel,
    wanted: &mut HashSet<Key>,
    found: &mut ModelSpace,
    interrupt: &brink_record::Interrupt,
) -> Result<()> {
    let bar = crate::progress::steps_bar(wanted.len() as u64, "searching the model for the recovered states");
    let mut own = own;
    for (k, r) in &kernel.states {
        if !wanted.contains(k) {
            continue;
        }
        interrupt.check()?;
        let target = brink_explore::tree::Listing { entries: r.entries.clone(), blocks: r.blocks.clone() };
        let search = |e| crate::progress::logical_error(e, "the search");
        let mut witness = None;
        if let Some(own) = own.as_deref_mut() {
            let theirs = own.find(&target, k.1).map_err(search)?;
            let ours = theirs.and_then(|s| lister.plan().translate(own.plan(), &s));
            witness = ours.map(|w| lister.listing(&w).map(|l| (w, l))).transpose()?.filter(|(_, l)| explains(r, k, l));
        }
        if witness.is_none() {
            witness =
                lister.find(&target, k.1).map_err(search)?.map(|w| lister.listing(&w).map(|l| (w, l))).transpose()?;
        }
        bar.inc(1);
        let Some((w, listing)) = witness else { continue };
        wanted.remove(k);
        found.distinct.insert((listing.listing.digest(), w.marks_before), (w.id, listing));
    }
    bar.finish_and_clear();
    Ok(())
}

/// Whether the model's listing `m` explains the recovered state `r` (its key `k`): the
/// same content, or the same where `m` holds no garbage.
fn explains(r: &Recovered, k: &Key, m: &ModelListing) -> bool {
    m.listing.digest() == k.0 || explained_by_garbage(&r.entries, &r.blocks, m)
}

/// The most micro-ops missing before the crash point in a model's own states tried as
/// witnesses, largest first (the first whose space fits is listed).
const OWN_MISSING: [u32; 5] = [6, 4, 3, 2, 1];

/// The most of a model's own states listed in a witness search (a database's states
/// list at a few thousand a second).
const OWN_STATES_MAX: u128 = 200_000;

/// A model's whole space.
const WHOLE: LStrategy = LStrategy::Exhaustive { max_missing: u32::MAX };

/// The models witnesses are looked for in, after the file system's own (strongest first:
/// the smallest spaces).
const WITNESS_SOURCES: [Apm; 5] = [Apm::Ext4Journal, Apm::Xfs, Apm::Btrfs, Apm::Ext4Ordered, Apm::Ext4Writeback];

/// Refuses `results` (at `dir`, given with `--results`) unless it is a block exploration
/// of `trace` by check-model (its states carry listings).
fn by_check_model(results: &Results, dir: &Path, trace: &Path) -> Result<()> {
    let summary = &results.summary;
    let same = |p: &Path| std::fs::canonicalize(p).ok();
    if same(Path::new(&summary.trace)) != same(trace) {
        bail!("{} explored {}, not {}", dir.display(), summary.trace, trace.display());
    }
    if results.states.iter().all(|r| key(r).is_none()) {
        bail!(
            "{} was not explored by check-model (its states carry no content listings): pass -o instead",
            dir.display()
        );
    }
    Ok(())
}

/// The block exploration of the trace with kernel recovery and the listing checker, into
/// `block`: every state, or a stratified sample when there are more than
/// `--max-kernel-states` (then: the sample's size and the space's).
fn kernel_states(a: &CheckModelArgs, block: &Path, jobs: usize, interrupt: &brink_record::Interrupt) -> Result<()> {
    let whole = brink_explore::count(&a.trace, Model::WRITEBACK, Strategy::Exhaustive)?.states_total.0;
    let samples = u64::try_from(a.max_kernel_states).unwrap_or(u64::MAX);
    let strategy =
        if whole > a.max_kernel_states { Strategy::Sample { samples, seed: 0 } } else { Strategy::Exhaustive };
    let listings = listings_dir(block);
    std::fs::create_dir_all(&listings).with_context(|| format!("creating {}", listings.display()))?;
    let listing = format!(
        "{} content-listing --out {}",
        shlex::try_quote(&std::env::current_exe()?.to_string_lossy())?,
        shlex::try_quote(&listings.to_string_lossy())?
    );
    let cfg = brink_explore::ExploreConfig {
        trace: a.trace.clone(),
        results: block.to_path_buf(),
        model: Model::WRITEBACK,
        strategy,
        max_states: a.max_kernel_states.max(1),
        checkers: vec![CheckerSpec::Command(listing)],
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
        slots: brink_explore::SlotKind::Auto,
    };
    crate::progress::explore(&cfg).map_err(|e| anyhow::anyhow!("the block exploration: {e}"))?;
    Ok(())
}

/// Refuse a model of another file system than the recording's (posix fits every one).
fn model_fits(apm: Apm, fs: &str, mount_opts: &str) -> Result<()> {
    if apm != Apm::Posix && Apm::of_fs(fs, mount_opts) != Some(apm) {
        bail!(
            "the trace was recorded on {fs} ({mount_opts}); {apm} describes another file system: record on it, or check posix"
        );
    }
    Ok(())
}

/// A recovered state: the first (in id order) of those with its content and marks.
struct Recovered {
    id: String,
    entries: Vec<String>,
    /// Block hashes by path (`brink_explore::tree::Listing::blocks`).
    blocks: BTreeMap<String, Vec<String>>,
}

/// What the kernel recovered: one state per distinct (content, acknowledgements), and
/// how many states could not be listed (their checker gave no content).
struct Kernel {
    states: BTreeMap<Key, Recovered>,
    unlisted: usize,
}

/// The block run's states by distinct key, each listing read once: from the checker's
/// details, or from the file `content-listing --out` wrote to `dir` (a large state's).
fn recovered(states: &[StateRecord], dir: &Path) -> Result<Kernel> {
    let mut kernel = Kernel { states: BTreeMap::new(), unlisted: 0 };
    for r in states {
        let details = r.checks.first().and_then(|c| c.details.as_ref());
        let (Some(k), Some(details)) = (key(r), details) else {
            kernel.unlisted += 1;
            continue;
        };
        if kernel.states.contains_key(&k) {
            continue;
        }
        let whole = match details.get("entries") {
            Some(_) => std::borrow::Cow::Borrowed(details),
            None => {
                let file = dir.join(format!("{}.json", k.0));
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                std::borrow::Cow::Owned(
                    serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?,
                )
            }
        };
        let entries = Deserialize::deserialize(&whole["entries"]).unwrap_or_default();
        let blocks = Deserialize::deserialize(&whole["blocks"]).unwrap_or_default();
        kernel.states.insert(k, Recovered { id: r.id.clone(), entries, blocks });
    }
    Ok(kernel)
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
    /// The model's distinct states (content, acknowledgements).
    model: usize,
    /// The model's states gone through (its whole space).
    model_states: u64,
    /// The block level's states were a sample: its size, and the space's.
    kernel_sampled: Option<(u128, u128)>,
    /// The model's space was too large to list: the model holds only the witnesses
    /// found through these models' states (`witnesses`), and a recovered state without
    /// one is undecided, not unexplained.
    witness: Option<Vec<String>>,
    /// The model's distinct states the kernel never produced.
    model_only: usize,
    /// States whose content could not be listed (a file the state could not read).
    unlisted: usize,
    /// The model's space was not listed: a sample of it, as (distinct contents, those
    /// the kernel never produced) (`sampled_pessimism`).
    model_sample: Option<(u64, u64)>,
    /// Recovered states the model explains only where its state holds garbage (the
    /// blocks compared as wildcards: `explained_by_garbage`).
    with_garbage: usize,
}

/// Whether the model's state `m` explains a recovered state (its listing `kl` and block
/// hashes `kb`) where the model holds garbage: the same entries but for regular files
/// of the same sizes whose blocks agree wherever the model's state holds no garbage
/// (the kernel's stale bytes are whatever the disk held; the model's garbage is bytes
/// it picks).
fn explained_by_garbage(kl: &[String], kb: &BTreeMap<String, Vec<String>>, m: &ModelListing) -> bool {
    let ml = &m.listing.entries;
    if m.garbage.is_empty() || kl.len() != ml.len() {
        return false;
    }
    kl.iter().zip(ml).all(|(a, b)| {
        if a == b {
            return true;
        }
        let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
        if fa.len() != 4 || fb.len() != 4 || fa[0] != "f" || fa[..3] != fb[..3] {
            return false;
        }
        let (Some(ka), Some(ma), Some(wild)) = (kb.get(fa[1]), m.listing.blocks.get(fa[1]), m.garbage.get(fa[1]))
        else {
            return false;
        };
        ka.len() == ma.len() && (0..ka.len()).all(|i| wild.contains(&(i as u64)) || ka[i] == ma[i])
    })
}

fn compare(kernel: &Kernel, space: &ModelSpace) -> Verdict {
    let allowed = &space.distinct;
    let mut with_garbage = 0;
    let mut unexplained = Vec::new();
    for ((_, marks), r) in kernel.states.iter().filter(|(k, _)| !allowed.contains_key(*k)) {
        let same_marks = allowed.iter().filter(|((_, m), _)| m == marks);
        if same_marks.clone().any(|(_, (_, m))| explained_by_garbage(&r.entries, &r.blocks, m)) {
            with_garbage += 1;
        } else {
            let closest = closest(&r.entries, same_marks.map(|(_, (_, m))| &m.listing.entries), *marks);
            unexplained.push((r.id.clone(), *marks, closest));
        }
    }
    Verdict {
        unexplained,
        with_garbage,
        kernel: kernel.states.len(),
        model: allowed.len(),
        model_states: space.states,
        kernel_sampled: None,
        witness: None,
        model_sample: None,
        model_only: allowed.keys().filter(|k| !kernel.states.contains_key(*k)).count(),
        unlisted: kernel.unlisted,
    }
}

/// The model's states listed for its pessimism where its space is too large to list.
const PESSIMISM_SAMPLES: u64 = 1_000;

/// The model's pessimism where its space is too large to list and the kernel's states
/// were all recovered: a seeded sample of the model's states (`LStrategy::Sample`: a
/// uniform crash point, then each free micro-op kept with probability ½), as (its
/// distinct contents, those no recovered state shows). An estimate, and said as one.
fn sampled_pessimism(
    rec: &brink_logical::Recording,
    plan: &brink_pmodel::Plan,
    kernel: &Kernel,
    jobs: usize,
    interrupt: &brink_record::Interrupt,
) -> Result<(u64, u64)> {
    let strategy = LStrategy::Sample { samples: PESSIMISM_SAMPLES, seed: 0 };
    let bound = (u128::from(PESSIMISM_SAMPLES), jobs);
    let space = crate::progress::model_space(rec, plan, strategy, bound, &interrupt.0, None)
        .map_err(|e| crate::progress::logical_error(e, &format!("a sample of the {} space", plan.apm)))?;
    let never = space.distinct.iter().filter(|(k, (_, m))| !recovered_as(kernel, k, m)).count();
    Ok((space.distinct.len() as u64, never as u64))
}

/// Whether the kernel recovered a state with the model's content `k` (its listing `m`:
/// the same listing, or the same but where `m` holds garbage).
fn recovered_as(kernel: &Kernel, k: &Key, m: &ModelListing) -> bool {
    kernel.states.contains_key(k) || kernel.states.iter().any(|(kk, r)| kk.1 == k.1 && explains(r, kk, m))
}

/// The entries that differ between `l` and the closest of `allowed` (the model's states
/// held to as many marks): `-` only in the recovered state, `+` only in the model's.
fn closest<'m>(l: &[String], allowed: impl Iterator<Item = &'m Vec<String>>, marks: u64) -> Vec<String> {
    let diff = |m: &[String]| {
        let (a, b): (HashSet<&String>, HashSet<&String>) = (l.iter().collect(), m.iter().collect());
        let mut d: Vec<String> = a.difference(&b).map(|e| format!("- {e}")).collect();
        d.extend(b.difference(&a).map(|e| format!("+ {e}")));
        d.sort();
        d
    };
    allowed
        .map(|m| diff(m))
        .min_by_key(Vec::len)
        .unwrap_or_else(|| vec![format!("(the model allows no state held to {marks} marks)")])
}

impl Verdict {
    fn text(&self, apm: Apm) -> String {
        let mut out = String::new();
        let sources = self.witness.as_ref().map(|w| w.join(" and "));
        let _ = match &sources {
            None => writeln!(
                out,
                "{apm} against the kernel: {} distinct recovered states (content and acknowledgements), {} allowed by the model (of its {} states)",
                self.kernel, self.model, self.model_states
            ),
            Some(own) => writeln!(
                out,
                "{apm} against the kernel: {} distinct recovered states (content and acknowledgements); {apm}'s space is too large to list, so {apm} states with their contents were looked for among {own} (translated into {apm}), near those found (a file's appended pages cut back), and by a search of {apm}'s states per recovered state: {} found",
                self.kernel, self.model
            ),
        };
        self.text_unexplained(&mut out, apm);
        let pct = 100.0 * self.model_only as f64 / self.model.max(1) as f64;
        let _ = match (&self.witness, self.kernel_sampled, self.model_sample) {
            (Some(_), None, Some((n, never))) => writeln!(
                out,
                "  (b) of a sample of {PESSIMISM_SAMPLES} {apm} states ({n} distinct contents; its space was too large to list), the kernel never produced {never} here ({:.0}%: its pessimism, estimated)",
                100.0 * never as f64 / n.max(1) as f64
            ),
            (Some(_), _, _) => writeln!(out, "  (b) not measured: {apm}'s space was not listed"),
            (None, None, _) => writeln!(
                out,
                "  (b) states the model allows that the kernel never produced here: {} of {} ({pct:.0}%: its pessimism)",
                self.model_only, self.model
            ),
            (None, Some((n, whole)), _) => writeln!(
                out,
                "  (b) not measured: the kernel recovered a sample of {n} of the block level's {whole} states (--max-kernel-states)"
            ),
        };
        if self.unlisted > 0 {
            let _ = writeln!(
                out,
                "  {} recovered states could not be listed (unreadable files) and are left out",
                self.unlisted
            );
        }
        out
    }

    /// (a), each state against the closest the model allows; undecided ones (witness
    /// mode) said as such.
    fn text_unexplained(&self, out: &mut String, apm: Apm) {
        let n = self.unexplained.len();
        let sources = self.witness.as_ref().map(|w| w.join(" and "));
        let _ = match (sources, n) {
            (_, 0) => {
                writeln!(out, "  (a) recovered states the model cannot produce: 0 (the model explains every one)")
            }
            (None, _) => writeln!(out, "  (a) recovered states the model cannot produce: {n}: the model is wrong"),
            (Some(own), _) => writeln!(
                out,
                "  (a) 0 shown wrong; {n} recovered states undecided: no {apm} state found among {own} (its space may still hold them)"
            ),
        };
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
    }

    /// Whether the model was shown wrong (the exit status): undecided states are not.
    fn wrong(&self) -> bool {
        self.witness.is_none() && !self.unexplained.is_empty()
    }

    fn json(&self, apm: Apm) -> serde_json::Value {
        let states = |v: &[(String, u64, Vec<String>)]| {
            v.iter()
                .map(|(id, marks, diff)| serde_json::json!({"state": id, "marks": marks, "diff": diff}))
                .collect::<Vec<_>>()
        };
        let (unexplained, undecided) = match &self.witness {
            None => (states(&self.unexplained), Vec::new()),
            Some(_) => (Vec::new(), states(&self.unexplained)),
        };
        let listed = self.witness.is_none();
        serde_json::json!({
            "apm": apm.name(),
            "kernel_states": self.kernel,
            "model_states": self.model,
            "model_space": listed.then_some(self.model_states),
            "witnesses_from": self.witness,
            "unexplained": unexplained,
            "undecided": undecided,
            "model_only": (listed && self.kernel_sampled.is_none()).then_some(self.model_only),
            "kernel_sampled": self.kernel_sampled.map(|(n, whole)| serde_json::json!({"samples": n.to_string(), "space": whole.to_string()})),
            "model_sample": self.model_sample.map(|(n, never)| serde_json::json!({"samples": PESSIMISM_SAMPLES, "distinct": n, "never_recovered": never})),
            "explained_with_garbage": self.with_garbage,
            "unlisted": self.unlisted,
        })
    }
}

/// `brink content-listing` (the checker check-model runs): the logical content of the
/// state in the working directory, as details, and exit 0.
pub fn content_listing(out: Option<&Path>) -> Result<i32> {
    let listing = brink_explore::tree::content_listing(Path::new(".")).context("listing the state")?;
    let content = listing.digest();
    let brink_explore::tree::Listing { entries, blocks } = listing;
    let whole = serde_json::json!({"entries": entries, "blocks": blocks});
    let Some(dir) = out else {
        let mut line = whole;
        line["content"] = content.into();
        emit(&(line.to_string() + "\n"))?;
        return Ok(0);
    };
    let file = dir.join(format!("{content}.json"));
    if !file.exists() {
        // Written whole under another name, then renamed: a reader never sees a part,
        // and workers listing the same content at once each put the same bytes.
        let tmp = dir.join(format!(".{content}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, whole.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
    }
    emit(&(serde_json::json!({"content": content}).to_string() + "\n"))?;
    Ok(0)
}

/// Where a block run's listings are (`content-listing --out`): beside its folder.
fn listings_dir(block: &Path) -> PathBuf {
    block.with_file_name("listings")
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

    fn model(entries: &[&str], blocks: &[(&str, &[&str])], garbage: &[u64]) -> ModelListing {
        let mut m = ModelListing { listing: Default::default(), garbage: BTreeMap::new() };
        m.listing.entries = entries.iter().map(|e| e.to_string()).collect();
        for (path, b) in blocks {
            m.listing.blocks.insert(path.to_string(), b.iter().map(|x| x.to_string()).collect());
            if !garbage.is_empty() {
                m.garbage.insert(path.to_string(), garbage.iter().copied().collect());
            }
        }
        m
    }

    /// A recovered file of stale blocks matches a model state of the same size wherever
    /// the model holds no garbage, and nowhere else.
    #[test]
    fn garbage_blocks_compare_as_wildcards_and_nothing_else_does() {
        let kernel = state("7", &["d logs", "f logs/a 8192 k"], &[("logs/a", &["stale", "same"])]);
        let kernel = recovered(&[kernel], Path::new("/nonexistent")).unwrap();
        let r = &kernel.states[&("7".to_string(), 1)];
        let (kl, kb) = (&r.entries, &r.blocks);
        let entries = ["d logs", "f logs/a 8192 m"];
        assert!(explained_by_garbage(kl, kb, &model(&entries, &[("logs/a", &["junk", "same"])], &[0])));
        let block1 = model(&entries, &[("logs/a", &["junk", "same"])], &[1]);
        assert!(!explained_by_garbage(kl, kb, &block1), "block 0 differs and is not garbage");
        assert!(!explained_by_garbage(kl, kb, &model(&entries, &[("logs/a", &["junk", "same"])], &[])));
        let longer = model(&["d logs", "f logs/a 4096 m"], &[("logs/a", &["junk"])], &[0]);
        assert!(!explained_by_garbage(kl, kb, &longer), "sizes differ");
        let moved = model(&["d logs", "f logs/b 8192 m"], &[("logs/b", &["junk", "same"])], &[0]);
        assert!(!explained_by_garbage(kl, kb, &moved), "names differ");
    }
}
