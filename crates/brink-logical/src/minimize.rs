//! Minimal failing logical states, found as `brink_explore`'s minimize.rs finds them at
//! the block level (its `minimize_group` serves both): per crash end (the last persisted micro-op) and message class, the
//! violating states fewest missing micro-ops first; `ddmin` over a state's missing
//! micro-ops, a subset tested as the state that misses it and everything depending on
//! it (so the state stays legal); a state whose missing set holds a minimal set found
//! already is given that one without a test. The triage then explains a vulnerability
//! by its minimal state: with an exhaustive or sampled strategy a violating state may
//! miss many micro-ops of which one matters.

use std::collections::BTreeMap;

use brink_check::{CheckOutcome, violation_class};
use brink_explore::{PROBES_PER_STATE_MAX, StateRecord, ddmin, minimize_group};
use brink_pmodel::{LState, LStateId, Plan};
use rayon::prelude::*;

use crate::LogicalError;

/// `missing` and every micro-op up to `end` that depends on one of them, ascending;
/// None when `end` itself depends on one (no legal state misses them and keeps it).
fn closure(plan: &Plan, dependents: &[Vec<u32>], end: u32, missing: &[u32]) -> Option<Vec<u32>> {
    let mut gone = vec![false; end as usize + 1];
    let mut stack: Vec<u32> = missing.to_vec();
    while let Some(m) = stack.pop() {
        if m > end || gone[m as usize] {
            continue;
        }
        gone[m as usize] = true;
        stack.extend(dependents[m as usize].iter().copied().filter(|&d| d <= end));
    }
    debug_assert!(plan.micro.len() > end as usize);
    (!gone[end as usize]).then(|| (0..end).filter(|&m| gone[m as usize]).collect())
}

/// The minimal state of each violating state of `recs` that misses more than one
/// micro-op: (its id, the minimal state's id). `probe` checks (or looks up) a state.
pub(crate) fn minimal_states(
    plan: &Plan,
    recs: &[StateRecord],
    probe: &(dyn Fn(&LState) -> Result<Vec<CheckOutcome>, LogicalError> + Sync),
) -> Result<Vec<(String, LStateId)>, LogicalError> {
    let mut groups: BTreeMap<(u32, String), Vec<LState>> = BTreeMap::new();
    for r in recs {
        let Some(class) = violation_class(&r.checks) else { continue };
        let Some(s) = r.id.parse::<LStateId>().ok().and_then(|id| plan.state(&id)) else { continue };
        if let (Some(end), true) = (s.end, s.missing.len() > 1) {
            groups.entry((end, class)).or_default().push(s);
        }
    }
    let dependents = plan.dependents();
    let groups: Vec<_> = groups.into_iter().collect();
    let out: Vec<Vec<(String, LStateId)>> = groups
        .par_iter()
        .map(|((end, class), members)| {
            let mut members = members.clone();
            members.sort_by(|a, b| a.missing.len().cmp(&b.missing.len()).then(a.id.cmp(&b.id)));
            let state_of = |sub: &[u32]| {
                let missing = closure(plan, &dependents, *end, sub)?;
                plan.state(&plan.id_of(Some(*end), &missing))
            };
            // The minimal set kept is the state's whole missing set (the subset closed).
            let shrink = |missing: &[u32]| -> Result<Vec<u32>, LogicalError> {
                let mut fails = |sub: &[u32]| -> Result<bool, LogicalError> {
                    let Some(t) = state_of(sub) else { return Ok(false) };
                    Ok(violation_class(&probe(&t)?).as_deref() == Some(class.as_str()))
                };
                let sub = ddmin(missing, PROBES_PER_STATE_MAX, &mut fails)?;
                Ok(state_of(&sub).map_or_else(|| missing.to_vec(), |m| m.missing))
            };
            let elems: Vec<&[u32]> = members.iter().map(|s| s.missing.as_slice()).collect();
            let minimal = minimize_group(&elems, shrink)?;
            let changed = members.iter().zip(minimal).filter(|(s, m)| s.missing != *m);
            Ok(changed.map(|(s, m)| (s.id.to_string(), plan.id_of(Some(*end), &m))).collect())
        })
        .collect::<Result<_, LogicalError>>()?;
    Ok(out.into_iter().flatten().collect())
}
