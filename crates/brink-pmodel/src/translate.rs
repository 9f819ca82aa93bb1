//! One model's crash state as another's: the witness that a weaker model allows what a
//! stronger one does. `brink check-model` lists a model's whole space when it fits; a
//! weak model's space (posix's grows past millions of states on real traces) does not,
//! so a recovered state is shown allowed by it by translating the state of the file
//! system's own model that produced it and checking the translation: legal in the weak
//! model and leaving the same content (the caller lists it). A translation that fails
//! proves nothing either way; it is never taken as a verdict.

use crate::lstate::LState;
use crate::micro::{Fill, Micro, Plan};

impl Plan {
    /// `state` less the micro-ops `cut` and everything that depends on them (`dependents`:
    /// [`Plan::dependents`]); `None` if nothing is left to end it or it is not legal.
    pub fn without(&self, state: &LState, cut: &[u32], dependents: &[Vec<u32>]) -> Option<LState> {
        let end = state.end?;
        let mut gone: std::collections::BTreeSet<u32> = state.missing.iter().copied().collect();
        let mut todo: Vec<u32> = cut.to_vec();
        while let Some(m) = todo.pop() {
            if m <= end && gone.insert(m) {
                todo.extend(dependents[m as usize].iter().copied());
            }
        }
        let last = (0..=end).rev().find(|m| !gone.contains(m))?;
        let missing = gone.into_iter().filter(|&m| m < last).collect();
        self.legal_state(Some(last), missing)
    }

    /// `state` (of `from`, a plan of the same logical ops) as a state of this plan, if
    /// the translation is legal here. Per logical op: every micro-op of an op that
    /// persisted whole, none of one that did not persist at all, and of an op that
    /// persisted in part the micro-ops equal to a persisted one (a block of a write),
    /// with the zeros or garbage stages of a block whose data persisted.
    pub fn translate(&self, from: &Plan, state: &LState) -> Option<LState> {
        if from.ops() != self.ops() {
            return None;
        }
        let mut keep = Vec::new();
        for i in 0..self.ops() {
            let theirs: Vec<u32> = from.of_op(i).filter(|&m| state.holds(m)).collect();
            let ours = self.of_op(i);
            if theirs.len() == from.of_op(i).len() {
                keep.extend(ours);
            } else if !theirs.is_empty() {
                let covered = |m: u32| {
                    theirs.iter().any(|&t| covers(&from.micro[t as usize].micro, &self.micro[m as usize].micro))
                };
                keep.extend(ours.filter(|&m| covered(m)));
            }
        }
        let end = keep.last().copied();
        let missing = end.map_or_else(Vec::new, |e| (0..e).filter(|m| keep.binary_search(m).is_err()).collect());
        self.legal_state(end, missing)
    }
}

/// Whether `theirs` persisting means `ours` did: the same micro-op, or an earlier stage
/// (zeros, garbage) of the block whose data `theirs` wrote.
fn covers(theirs: &Micro, ours: &Micro) -> bool {
    match (theirs, ours) {
        (
            Micro::Write { ino, offset, len, fill: Fill::Data { .. } },
            Micro::Write { ino: i, offset: o, len: l, fill: Fill::Zeros | Fill::Garbage },
        ) => (ino, offset, len) == (i, o, l),
        _ => theirs == ours,
    }
}
