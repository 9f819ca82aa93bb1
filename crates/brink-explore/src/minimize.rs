//! Minimal failing states, by delta debugging.
//!
//! A failing state drops (or tears) a set of volatile writes. Most of them do not
//! matter: the state that drops only the ones that do fails the same way and explains
//! the failure. `ddmin` (Zeller and Hildebrandt, "Simplifying and isolating
//! failure-inducing input", TSE 2002) shrinks the set to a 1-minimal one: dropping any
//! single write fewer no longer fails *with the same message class*.
//!
//! Per crash point and message class the failing states are taken fewest drops first;
//! a state whose drops include an already-found minimal set is given that one without
//! a test, so an exhaustive epoch of 2^n states costs a handful of minimizations. Each
//! test is a state of the same crash point: its verdict is looked up (the strategy may
//! have checked it already) or checked like any other state, at most
//! `PROBES_PER_STATE_MAX` per minimization.

use std::collections::BTreeMap;

use brink_check::{CheckOutcome, violation_class};
use brink_pmodel::{CrashState, StateId, WriteChoice};
use rayon::prelude::*;

use crate::ExploreError;

pub const PROBES_PER_STATE_MAX: usize = 256;

/// A 1-minimal subset of `elems` for which `fails` holds, assuming it holds for
/// `elems`; tests the empty set first. Gives up shrinking (returning the smallest failing
/// set found) after `budget` tests.
pub fn ddmin<T: Clone, E>(
    elems: &[T],
    budget: usize,
    fails: &mut dyn FnMut(&[T]) -> Result<bool, E>,
) -> Result<Vec<T>, E> {
    let mut tests = 0usize;
    let mut test = |s: &[T], tests: &mut usize| -> Result<bool, E> {
        *tests += 1;
        fails(s)
    };
    if test(&[], &mut tests)? {
        return Ok(Vec::new());
    }
    let mut cur = elems.to_vec();
    let mut n = 2usize;
    'outer: while cur.len() >= 2 && tests < budget {
        let chunk = cur.len().div_ceil(n);
        let parts: Vec<Vec<T>> = cur.chunks(chunk).map(|c| c.to_vec()).collect();
        for p in &parts {
            if tests >= budget {
                break 'outer;
            }
            if test(p, &mut tests)? {
                cur = p.clone();
                n = 2;
                continue 'outer;
            }
        }
        if parts.len() > 2 {
            for i in 0..parts.len() {
                if tests >= budget {
                    break 'outer;
                }
                let complement: Vec<T> =
                    parts.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, p)| p.iter().cloned()).collect();
                if test(&complement, &mut tests)? {
                    cur = complement;
                    n = (n - 1).max(2);
                    continue 'outer;
                }
            }
        }
        if n >= cur.len() {
            break;
        }
        n = (2 * n).min(cur.len());
    }
    Ok(cur)
}

/// The minimal sets of one group's members (their element lists, fewest first): a
/// member holding a minimal set found already takes it untested, any other is given
/// `shrink(elements)` (ddmin), which is kept for the members after it. Shared by the
/// block level (elements: dropped or torn writes) and the logical level (missing
/// micro-ops).
pub fn minimize_group<T: PartialEq + Clone, E>(
    members: &[&[T]],
    mut shrink: impl FnMut(&[T]) -> Result<Vec<T>, E>,
) -> Result<Vec<Vec<T>>, E> {
    let mut known: Vec<Vec<T>> = Vec::new();
    let mut out = Vec::with_capacity(members.len());
    for elems in members {
        let m = match known.iter().find(|k| k.iter().all(|e| elems.contains(e))) {
            Some(k) => k.clone(),
            None => {
                let m = shrink(elems)?;
                known.push(m.clone());
                m
            }
        };
        out.push(m);
    }
    Ok(out)
}

/// The minimal state of every violating state of one epoch: (state id, minimal state).
/// `checks[i]` are the checks of `states[i]` (none if it was not checked); `probe`
/// checks (or looks up) any state of the epoch.
pub(crate) fn epoch(
    states: &[CrashState],
    checks: &[Option<Vec<CheckOutcome>>],
    probe: &(dyn Fn(&CrashState) -> Result<Vec<CheckOutcome>, ExploreError> + Sync),
) -> Result<Vec<(String, StateId)>, ExploreError> {
    let mut groups: BTreeMap<(u64, String), Vec<&CrashState>> = BTreeMap::new();
    for (s, c) in states.iter().zip(checks) {
        if s.id.fault.is_some() {
            continue;
        }
        if let Some(class) = c.as_deref().and_then(violation_class) {
            groups.entry((s.id.position, class)).or_default().push(s);
        }
    }
    let groups: Vec<_> = groups.into_iter().collect();
    let out: Vec<Vec<(String, StateId)>> = groups
        .par_iter()
        .map(|((position, class), members)| {
            let mut members = members.clone();
            members.sort_by(|a, b| a.id.choices.len().cmp(&b.id.choices.len()).then(a.id.cmp(&b.id)));
            // One crash point: every member has its epoch and its marks.
            let (epoch, marks_before) = (members[0].epoch, members[0].marks_before);
            let shrink = |choices: &[(u64, WriteChoice)]| {
                let mut fails = |sub: &[(u64, WriteChoice)]| -> Result<bool, ExploreError> {
                    let id = StateId { position: *position, choices: sub.to_vec(), fault: None };
                    let cs = CrashState { id, epoch, marks_before };
                    Ok(violation_class(&probe(&cs)?).as_deref() == Some(class.as_str()))
                };
                ddmin(choices, PROBES_PER_STATE_MAX, &mut fails)
            };
            let elems: Vec<&[(u64, WriteChoice)]> = members.iter().map(|s| s.id.choices.as_slice()).collect();
            let minimal = minimize_group(&elems, shrink)?;
            let id = |choices| StateId { position: *position, choices, fault: None };
            Ok(members.iter().zip(minimal).map(|(s, m)| (s.id.to_string(), id(m))).collect())
        })
        .collect::<Result<_, ExploreError>>()?;
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::ddmin;

    #[test]
    fn ddmin_finds_the_pair_that_fails() {
        let elems: Vec<u32> = (0..16).collect();
        let mut n = 0;
        let got = ddmin(&elems, 1000, &mut |s: &[u32]| -> Result<bool, ()> {
            n += 1;
            Ok(s.contains(&3) && s.contains(&11))
        })
        .unwrap();
        assert_eq!(got, vec![3, 11]);
        assert!(n < 60, "{n} tests");
    }

    #[test]
    fn ddmin_empty_set_when_nothing_needs_dropping() {
        let got = ddmin(&[1, 2, 3], 10, &mut |_: &[i32]| -> Result<bool, ()> { Ok(true) }).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn ddmin_respects_its_budget() {
        let elems: Vec<u32> = (0..64).collect();
        let mut n = 0;
        let got = ddmin(&elems, 5, &mut |s: &[u32]| -> Result<bool, ()> {
            n += 1;
            Ok(s.contains(&7) && s.contains(&40))
        })
        .unwrap();
        assert!(n <= 6);
        assert!(got.contains(&7) && got.contains(&40));
    }
}
