//! One model's crash state as another's: the witness that a weaker model allows what a
//! stronger one does. `brink check-model` lists a model's whole space when it fits; a
//! weak model's space (posix's grows past millions of states on real traces) does not,
//! so a recovered state is shown allowed by it by translating the state of the file
//! system's own model that produced it and checking the translation: legal in the weak
//! model and leaving the same content (the caller lists it). A translation that fails
//! proves nothing either way; it is never taken as a verdict.

use crate::lstate::LState;
use crate::micro::Plan;

impl Plan {
    /// `state` (of `from`, a plan of the same logical ops) as a state of this plan, if
    /// the translation is legal here. Per logical op: every micro-op of an op that
    /// persisted whole, none of one that did not persist at all, and of an op that
    /// persisted in part the micro-ops equal to a persisted one (a block of a write).
    pub fn translate(&self, from: &Plan, state: &LState) -> Option<LState> {
        if from.ops() != self.ops() {
            return None;
        }
        let present = |m: u32| state.end.is_some_and(|e| m <= e) && state.missing.binary_search(&m).is_err();
        let mut keep = Vec::new();
        for i in 0..self.ops() {
            let theirs: Vec<u32> = from.of_op(i).filter(|&m| present(m)).collect();
            let ours = self.of_op(i);
            if theirs.len() == from.of_op(i).len() {
                keep.extend(ours);
            } else if !theirs.is_empty() {
                let same =
                    |m: u32| theirs.iter().any(|&t| from.micro[t as usize].micro == self.micro[m as usize].micro);
                keep.extend(ours.filter(|&m| same(m)));
            }
        }
        let end = keep.last().copied();
        let missing = end.map_or_else(Vec::new, |e| (0..e).filter(|m| keep.binary_search(m).is_err()).collect());
        let s = self.make(end, missing);
        self.legal(&s).then_some(s)
    }
}
