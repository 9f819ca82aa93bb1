//! `brink merge R1 R2 … -o R`: the shards of one exploration (`shard.rs`) put back
//! together into the results directory a one-machine run would have written.
//!
//! What is reproduced exactly (a complete set of shards, deterministic checkers):
//! - `states.jsonl`, apart from each check's `ms`: every record of every shard, sorted
//!   by id; states with one (image, marks) are deduplicated across shards, the smallest
//!   id representing them (the one-machine run's representative: ids grow with the
//!   generation order) and the others naming it in `dup_of` with its checks. Each
//!   record's `minimal` is its shard's, which is the one-machine run's: a crash point's
//!   states are all in one shard and minimization works per crash point.
//! - `minimal.jsonl`: a minimal state probed in one shard is kept only where the
//!   one-machine run would have checked it as a probe: no state of its epoch or an
//!   earlier one has its (image, marks), nor does an earlier probe (same epoch: the
//!   smallest id; a one-machine run probes an epoch's crash points in parallel, so which
//!   of two probes of one image it keeps is a race there).
//! - `trace.json` (the shards' are equal, their trace path aside), `ops.json` (equal),
//!   `run.json` without
//!   the shard, and `summary.json`'s counts: states total, generated, unique, checked,
//!   the verdicts, the no-crash state, media-fault states, the sampled fraction.
//!
//! Not reproduced: times (`wall_s` is the longest shard's, `states_per_s` all shards'
//! checks over it, `time_ms` summed), `jobs` (summed over the shards), `minimize_probes`
//! (summed: a probe whose image another shard's state had is counted where a one-machine
//! run would have looked it up), the verdict cache's counts (summed).
//!
//! Shards of different explorations (their `run.json` differ in anything but the shard
//! and the trace's path, which differs between machines; or their `trace.json` or
//! `ops.json` differ)
//! are refused; missing and stopped shards are named in `summary.json`'s `merged`, and
//! such a merge is not complete. The directory is built under `.NAME.tmp-PID` beside
//! it and renamed into place once every file is durable; it also holds
//! `states.partial.jsonl`, so resuming it without a shard completes the exploration on
//! one machine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use brink_trace::durable;

use crate::results::{self, AnyStateId, MergeInfo, Results, RunIdentity, RunLock, StateRecord, Summary, TraceInfo};
use crate::{MergeError, NoCrash, ResultsError, Shard};

/// One shard's finished results.
struct Input {
    dir: PathBuf,
    shard: Shard,
    run: RunIdentity,
    results: Results,
}

/// Merge the shards in `dirs` into `out` (module docs); the merged summary.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Summary, MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::NoInputs);
    }
    if out.exists() {
        return Err(MergeError::OutputExists { dir: out.to_path_buf() });
    }
    // Held until the merge is written: no shard may be resumed meanwhile.
    let mut locks: Vec<RunLock> = Vec::new();
    let mut inputs = Vec::new();
    for dir in dirs {
        let (input, lock) = load(dir)?;
        locks.extend(lock);
        inputs.push(input);
    }
    inputs.sort_by_key(|i| i.shard);
    same_exploration(&inputs)?;
    let states = merge_states(&inputs)?;
    let minimal = merge_minimal(&inputs, &states);
    let info = merge_info(&inputs);
    let summary = merged_summary(&inputs, &states, info);
    let run = RunIdentity { shard: None, ..inputs[0].run.clone() };
    let logical = inputs.iter().find_map(|i| i.results.logical.as_ref());
    write(out, &run, &states, &minimal, inputs.iter().find_map(|i| i.results.trace.as_ref()), logical, &summary)?;
    drop(locks);
    Ok(summary)
}

/// A shard's results, and its lock unless its directory cannot be written (a read-only
/// copy no run can use either).
fn load(dir: &Path) -> Result<(Input, Option<RunLock>), MergeError> {
    let lock = match RunLock::take(dir) {
        Ok(lock) => Some(lock),
        Err(e @ ResultsError::Busy { .. }) => return Err(e.into()),
        Err(_) => None,
    };
    if !dir.join(results::SUMMARY).is_file() {
        return Err(MergeError::Unfinished { dir: dir.to_path_buf() });
    }
    let results = Results::load(dir)?;
    let not_sharded = || MergeError::NotSharded { dir: dir.to_path_buf() };
    let run = results.run.clone().ok_or_else(not_sharded)?;
    let shard = run.shard.ok_or_else(not_sharded)?;
    Ok((Input { dir: dir.to_path_buf(), shard, run, results }, lock))
}

/// The fields of two JSON objects that differ, `except` some.
fn differing(a: &serde_json::Value, b: &serde_json::Value, except: &[&str]) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).filter(|k| !except.contains(&k.as_str())).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

/// One exploration, one split, each shard once (module docs).
fn same_exploration(inputs: &[Input]) -> Result<(), MergeError> {
    let first = &inputs[0];
    let json = |r: &RunIdentity| serde_json::to_value(r).expect("json");
    for (prev, i) in inputs.iter().zip(&inputs[1..]) {
        if prev.shard == i.shard {
            return Err(MergeError::SameShard { a: prev.dir.clone(), b: i.dir.clone(), shard: i.shard });
        }
    }
    for i in &inputs[1..] {
        let mut what = differing(&json(&first.run), &json(&i.run), &["shard", "trace"]);
        let trace = |x: &Input| x.results.trace.as_ref().map(|t| TraceInfo { trace: String::new(), ..t.clone() });
        if trace(first) != trace(i) {
            what.push("trace.json".into());
        }
        if first.results.logical != i.results.logical {
            what.push("ops.json".into());
        }
        if !what.is_empty() {
            return Err(MergeError::OtherExploration { a: first.dir.clone(), b: i.dir.clone(), what: what.join(", ") });
        }
        if i.shard.count != first.shard.count {
            return Err(MergeError::OtherSplit {
                a: first.dir.clone(),
                sa: first.shard,
                b: i.dir.clone(),
                sb: i.shard,
            });
        }
    }
    Ok(())
}

/// Every shard's records in id order, deduplicated across shards (module docs).
fn merge_states(inputs: &[Input]) -> Result<Vec<StateRecord>, MergeError> {
    let mut all: BTreeMap<AnyStateId, (usize, &StateRecord)> = BTreeMap::new();
    for (n, input) in inputs.iter().enumerate() {
        for r in &input.results.states {
            let id: AnyStateId = r.id.parse().map_err(|_| ResultsError::BadStateId {
                path: input.dir.join(results::STATES),
                line: 0,
                id: r.id.clone(),
            })?;
            if let Some((m, _)) = all.insert(id, (n, r)) {
                let (a, b) = (inputs[m].dir.clone(), input.dir.clone());
                return Err(MergeError::StateInTwoShards { id: r.id.clone(), a, b });
            }
        }
    }
    let mut out: Vec<StateRecord> = all.into_values().map(|(_, r)| r.clone()).collect();
    results::smallest_representatives(&mut out);
    Ok(out)
}

/// The shards' minimal states that a one-machine run would have kept (module docs).
fn merge_minimal(inputs: &[Input], states: &[StateRecord]) -> Vec<StateRecord> {
    let ids: HashSet<&str> = states.iter().map(|r| r.id.as_str()).collect();
    let mut first_epoch: HashMap<(&str, u64), u64> = HashMap::new();
    for r in states.iter().filter(|r| r.fault.is_none()) {
        let e = first_epoch.entry((&r.image, r.marks)).or_insert(r.epoch);
        *e = (*e).min(r.epoch);
    }
    let mut probes: Vec<(u64, AnyStateId, &StateRecord)> = inputs
        .iter()
        .flat_map(|i| &i.results.minimal)
        .filter_map(|r| r.id.parse().ok().map(|id| (r.epoch, id, r)))
        .collect();
    probes.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut taken: HashSet<(&str, u64)> = HashSet::new();
    let mut out: Vec<(AnyStateId, StateRecord)> = Vec::new();
    for (epoch, id, r) in probes {
        let key = (r.image.as_str(), r.marks);
        if ids.contains(r.id.as_str()) || first_epoch.get(&key).is_some_and(|e| *e <= epoch) || !taken.insert(key) {
            continue;
        }
        out.push((id, r.clone()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Which shards were merged, missing, stopped; what the complete ones cover.
fn merge_info(inputs: &[Input]) -> MergeInfo {
    let n = inputs[0].shard.count;
    let merged: Vec<u32> = inputs.iter().map(|i| i.shard.index).collect();
    let incomplete: Vec<u32> = inputs.iter().filter(|i| !i.results.summary.complete).map(|i| i.shard.index).collect();
    let missing: Vec<u32> = (0..n).filter(|k| !merged.contains(k)).collect();
    let complete = merged.len() - incomplete.len();
    MergeInfo { shards: n, merged, missing, incomplete, fraction_covered: complete as f64 / f64::from(n) }
}

/// Why a merge is not complete, in words.
fn not_complete(info: &MergeInfo) -> Option<String> {
    let list = |v: &[u32]| v.iter().map(|k| format!("{k}/{}", info.shards)).collect::<Vec<_>>().join(", ");
    let mut why = Vec::new();
    if !info.missing.is_empty() {
        why.push(format!("shards {} missing", list(&info.missing)));
    }
    if !info.incomplete.is_empty() {
        why.push(format!("shards {} stopped before their end", list(&info.incomplete)));
    }
    (!why.is_empty()).then(|| format!("a merge of partial shards ({})", why.join("; ")))
}

/// The summary of the whole, its counts from the merged records (module docs).
fn merged_summary(inputs: &[Input], states: &[StateRecord], info: MergeInfo) -> Summary {
    let sums = |f: &dyn Fn(&Summary) -> u64| inputs.iter().map(|i| f(&i.results.summary)).sum::<u64>();
    let floats = |f: &dyn Fn(&Summary) -> f64| inputs.iter().map(|i| f(&i.results.summary)).sum::<f64>();
    let count = |f: &dyn Fn(&StateRecord) -> bool| states.iter().filter(|r| f(r)).count() as u64;
    let base = &inputs[0].results.summary;
    let wall = inputs.iter().map(|i| i.results.summary.wall_s).fold(0.0, f64::max);
    let checked_now = floats(&|s| s.states_per_s * s.wall_s);
    let worker_ms = floats(&|s| s.jobs as f64 * s.wall_s * 1000.0);
    let generated = sums(&|s| s.states_generated);
    let unique = count(&|r| r.dup_of.is_none());
    let no_crash_id = inputs[0].run.trace_events.to_string();
    let stopped_by = not_complete(&info);
    Summary {
        states_generated: generated,
        states_unique: unique,
        states_checked: unique,
        violations: count(&|r| r.verdict == brink_check::Verdict::Violation),
        checker_failures: count(&|r| r.verdict == brink_check::Verdict::CheckerFailure),
        consistent: count(&|r| r.verdict == brink_check::Verdict::Consistent),
        wall_s: wall,
        states_per_s: if wall > 0.0 { checked_now / wall } else { 0.0 },
        jobs: inputs.iter().map(|i| i.results.summary.jobs).sum(),
        complete: stopped_by.is_none(),
        stopped_by,
        fraction_covered: base.fraction_covered.map(|_| generated as f64 / base.states_total.as_f64().max(1.0)),
        time_ms: results::TimeSummary {
            hash: floats(&|s| s.time_ms.hash),
            overlay: floats(&|s| s.time_ms.overlay),
            mount: floats(&|s| s.time_ms.mount),
            checkers: floats(&|s| s.time_ms.checkers),
            unmount: floats(&|s| s.time_ms.unmount),
            per_state: if checked_now > 0.0 { worker_ms / checked_now } else { 0.0 },
        },
        no_crash: states.iter().find(|r| r.id == no_crash_id).map(NoCrash::of),
        media_fault_states: sums(&|s| s.media_fault_states),
        minimize_probes: sums(&|s| s.minimize_probes),
        cache_hits: sums(&|s| s.cache_hits),
        cache_stored: sums(&|s| s.cache_stored),
        tree_dups: count(&|r| r.tree_dup_of.is_some()),
        processes_left_behind: sums(&|s| s.processes_left_behind),
        containment_note: inputs.iter().find_map(|i| i.results.summary.containment_note.clone()),
        tree_dedup_off: inputs.iter().find_map(|i| i.results.summary.tree_dedup_off.clone()),
        shard: None,
        merged: Some(info),
        ..base.clone()
    }
}

/// Build the merged directory beside `out` and rename it into place (module docs).
fn write(
    out: &Path,
    run: &RunIdentity,
    states: &[StateRecord],
    minimal: &[StateRecord],
    trace: Option<&TraceInfo>,
    logical: Option<&results::LogicalInfo>,
    summary: &Summary,
) -> Result<(), MergeError> {
    let name = out.file_name().ok_or_else(|| MergeError::OutputExists { dir: out.to_path_buf() })?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = (|| {
        std::fs::create_dir(&tmp).map_err(|e| MergeError::io(&tmp, e))?;
        results::check_states(&tmp.join(results::STATES), states)?;
        let run_path = tmp.join(results::RUN);
        let run_json = serde_json::to_vec_pretty(&serde_json::to_value(run).expect("json")).expect("json");
        durable::write_atomic(&run_path, &run_json).map_err(|e| MergeError::io(&run_path, e))?;
        let partial = tmp.join(results::PARTIAL);
        durable::write_atomic(&partial, &results::jsonl(states)).map_err(|e| MergeError::io(&partial, e))?;
        match trace {
            Some(info) => results::write_final(&tmp, states, minimal, info, summary)?,
            None => results::write_states_and_summary(&tmp, states, minimal, logical, summary)?,
        }
        durable::rename_durable(&tmp, out).map_err(|e| MergeError::io(out, e))
    })();
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    built
}
