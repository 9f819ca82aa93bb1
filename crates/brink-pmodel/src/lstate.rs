//! Logical crash states: sets of persisted micro-ops of a [`Plan`] closed under its
//! dependencies, named by stable ids, counted exactly and enumerated lazily by ALICE's
//! strategies (prefix, omit-one, intra-op partial states), bounded exhaustion and
//! seeded sampling.
//!
//! # State ids
//! A logical state is `L` followed by the last persisted micro-op as `OP.K` (micro-op
//! `K` of logical op `OP`, both from 0), then, for each earlier micro-op that did not
//! persist, ascending, `-OP.K`. Every micro-op up to the last one persists unless
//! listed. `L` alone is the state where nothing persisted; `L7.2` has everything up to
//! micro-op 2 of op 7; `L9.0-3.0-3.1` has everything up to op 9's first micro-op but
//! op 3's first two. The leading `L` keeps them apart from block-level ids (which start
//! with a digit). Ids depend only on the logical ops and the APM (its splitting), never
//! on the strategy or the run, so the same state has the same id whichever strategy
//! found it.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::count::Count;
use crate::micro::{Micro, Plan};
use crate::rng::Rng;

/// A micro-op named by its logical op and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroRef {
    pub op: u32,
    pub k: u32,
}

/// A logical state's id (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LStateId {
    /// The last persisted micro-op; `None`: nothing persisted.
    pub end: Option<MicroRef>,
    /// Earlier micro-ops that did not persist, ascending.
    pub missing: Vec<MicroRef>,
}

impl fmt::Display for LStateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("L")?;
        if let Some(e) = self.end {
            write!(f, "{}.{}", e.op, e.k)?;
        }
        for m in &self.missing {
            write!(f, "-{}.{}", m.op, m.k)?;
        }
        Ok(())
    }
}

/// A logical state id that does not parse; holds the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad logical state id '{0}': expected L[OP.K][-OP.K]… (ascending, before the last)")]
#[non_exhaustive]
pub struct ParseLStateIdError(pub String);

impl FromStr for LStateId {
    type Err = ParseLStateIdError;
    fn from_str(s: &str) -> Result<LStateId, ParseLStateIdError> {
        let bad = || ParseLStateIdError(s.to_string());
        let rest = s.strip_prefix('L').ok_or_else(bad)?;
        if rest.is_empty() {
            return Ok(LStateId::default());
        }
        let micro = |t: &str| -> Result<MicroRef, ParseLStateIdError> {
            let (op, k) = t.split_once('.').ok_or_else(bad)?;
            let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
            if !digits(op) || !digits(k) {
                return Err(bad());
            }
            Ok(MicroRef { op: op.parse().map_err(|_| bad())?, k: k.parse().map_err(|_| bad())? })
        };
        let mut parts = rest.split('-');
        let end = micro(parts.next().ok_or_else(bad)?)?;
        let missing = parts.map(micro).collect::<Result<Vec<_>, _>>()?;
        if missing.windows(2).any(|w| w[0] >= w[1]) || missing.last().is_some_and(|m| *m >= end) {
            return Err(bad());
        }
        Ok(LStateId { end: Some(end), missing })
    }
}

/// Which logical states to visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LStrategy {
    /// The state before any op, then each prefix of whole logical ops (ALICE phase 1).
    Prefix,
    /// Each logical op (not a barrier) omitted, with everything that depends on it, at
    /// each later crash point up to the first barrier that depends on it (phase 2).
    OmitOne,
    /// Each op's proper prefixes of micro-ops, and each of its prefixes less one earlier
    /// micro-op of the op, when legal (phase 3).
    Partial,
    /// Prefix, then omit-one, then partial: ALICE's three phases (disjoint sets).
    Alice,
    /// Every legal state missing at most `max_missing` micro-ops before its last one.
    Exhaustive { max_missing: u32 },
    /// Legal states drawn at random (uniform crash end, then each free micro-op kept
    /// with probability ½), with replacement: the caller deduplicates.
    Sample { samples: u64, seed: u64 },
}

/// A logical crash state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LState {
    pub id: LStateId,
    /// The last persisted micro-op (an index into [`Plan::micro`]).
    pub end: Option<u32>,
    /// Micro-ops before `end` that did not persist, ascending.
    pub missing: Vec<u32>,
    /// Acknowledgements that persisted: the promises the state is held to.
    pub marks_before: u64,
}

impl LState {
    /// Whether micro-op `m` (an index into [`Plan::micro`]) persisted in this state.
    pub fn holds(&self, m: u32) -> bool {
        self.end.is_some_and(|e| m <= e) && self.missing.binary_search(&m).is_err()
    }
}

impl Plan {
    /// The id of a state given by its last micro-op and missing ones (global indices).
    pub fn id_of(&self, end: Option<u32>, missing: &[u32]) -> LStateId {
        let r = |m: u32| {
            let op = self.micro[m as usize].op;
            MicroRef { op, k: m - self.op_start[op as usize] }
        };
        LStateId { end: end.map(r), missing: missing.iter().map(|&m| r(m)).collect() }
    }

    /// The state an id names, if it names a legal state of this plan.
    pub fn state(&self, id: &LStateId) -> Option<LState> {
        let g = |m: &MicroRef| {
            let r = self.of_op(m.op as usize);
            let at = r.start.checked_add(m.k)?;
            (at < r.end).then_some(at)
        };
        let (end, missing) = match id.end {
            None => (None, Vec::new()),
            Some(e) => (Some(g(&e)?), id.missing.iter().map(g).collect::<Option<Vec<_>>>()?),
        };
        self.legal_state(end, missing)
    }

    /// The state of `end` and `missing` (global indices, as [`LState`]'s), if it is legal.
    pub(crate) fn legal_state(&self, end: Option<u32>, missing: Vec<u32>) -> Option<LState> {
        let s = self.make(end, missing);
        self.legal(&s).then_some(s)
    }

    /// Whether every persisted micro-op's dependencies persisted.
    pub fn legal(&self, s: &LState) -> bool {
        let Some(end) = s.end else { return true };
        (0..=end).filter(|&m| s.holds(m)).all(|m| self.micro[m as usize].deps.iter().all(|&d| s.holds(d)))
    }

    pub(crate) fn make(&self, end: Option<u32>, missing: Vec<u32>) -> LState {
        let marks = end
            .map_or(0, |e| (0..=e).filter(|m| matches!(self.micro[*m as usize].micro, Micro::Ack(_))).count() as u64);
        let missing_marks =
            missing.iter().filter(|m| matches!(self.micro[**m as usize].micro, Micro::Ack(_))).count() as u64;
        LState { id: self.id_of(end, &missing), end, missing, marks_before: marks - missing_marks }
    }

    /// The states `strategy` visits, lazily.
    pub fn states(&self, strategy: LStrategy) -> LStateIter<'_> {
        LStateIter::new(self, strategy)
    }

    /// How many states `strategy` visits: exactly the number [`Plan::states`] yields
    /// (prefix and sample by formula, the others by running the generator, which
    /// builds no trees).
    pub fn count(&self, strategy: LStrategy) -> Count {
        match strategy {
            LStrategy::Prefix => Count(1 + (0..self.ops()).filter(|&i| !self.of_op(i).is_empty()).count() as u128),
            LStrategy::Sample { samples, .. } => Count(u128::from(samples)),
            other => Count(self.states(other).count() as u128),
        }
    }

    /// Micro-ops that depend, directly or not, on any of op `i`'s (its own included).
    fn tainted_by(&self, i: usize) -> Vec<bool> {
        let mut t = vec![false; self.micro.len()];
        let r = self.of_op(i);
        for m in r.clone() {
            t[m as usize] = true;
        }
        for m in r.end as usize..self.micro.len() {
            t[m] = self.micro[m].deps.iter().any(|&d| t[d as usize]);
        }
        t
    }

    fn omit_states(&self, i: usize) -> Vec<LState> {
        let r = self.of_op(i);
        if r.is_empty() || r.clone().any(|m| self.micro[m as usize].is_barrier()) {
            return Vec::new();
        }
        let t = self.tainted_by(i);
        let mut out = Vec::new();
        for j in i + 1..self.ops() {
            let rj = self.of_op(j);
            if rj.clone().any(|m| t[m as usize] && self.micro[m as usize].is_barrier()) {
                break;
            }
            let Some(last) = rj.rev().find(|&m| !t[m as usize]) else { continue };
            let missing = (r.start..last).filter(|&m| t[m as usize]).collect();
            out.push(self.make(Some(last), missing));
        }
        out
    }

    /// Whether op `i` has partial states: two micro-ops or more, none a barrier.
    fn splits(&self, i: usize) -> bool {
        let r = self.of_op(i);
        r.len() >= 2 && !r.clone().any(|m| self.micro[m as usize].is_barrier())
    }

    /// Op `i`'s partial state at `cursor`, and the cursor moved past it; `None` when the
    /// op has no more. In order: its proper prefixes (`(0, p, _)`: `p` micro-ops), then
    /// each prefix of `p` less its micro-op `k` before the last (`(1, p, k)`), when legal.
    /// One at a time: an op of thousands of micro-ops has millions of them.
    fn partial_at(&self, i: usize, cursor: &mut (u8, u32, u32)) -> Option<LState> {
        let r = self.of_op(i);
        let n = r.len() as u32;
        loop {
            let (stage, p, k) = *cursor;
            match stage {
                0 if p < n => {
                    *cursor = (0, p + 1, 0);
                    return Some(self.make(Some(r.start + p - 1), Vec::new()));
                }
                0 => *cursor = (1, 2, 0),
                _ if p > n => return None,
                _ if k + 1 >= p => *cursor = (1, p + 1, 0),
                _ => {
                    *cursor = (1, p, k + 1);
                    let gone = r.start + k;
                    let later = r.start + k + 1..r.start + p;
                    if later.clone().all(|m| !self.micro[m as usize].deps.contains(&gone)) {
                        return Some(self.make(Some(r.start + p - 1), vec![gone]));
                    }
                }
            }
        }
    }

    fn sample_state(&self, rng: &mut Rng) -> LState {
        let n = self.micro.len();
        let pick = rng.below(n as u128 + 1) as usize;
        let Some(end) = pick.checked_sub(1) else { return self.make(None, Vec::new()) };
        let mut keep = vec![false; end + 1];
        keep[end] = true;
        let mut missing = Vec::new();
        for m in (0..=end).rev() {
            if !keep[m] && rng.next_u64() & 1 == 0 {
                missing.push(m as u32);
                continue;
            }
            keep[m] = true;
            for &d in &self.micro[m].deps {
                keep[d as usize] = true;
            }
        }
        missing.reverse();
        self.make(Some(end as u32), missing)
    }
}

enum Phase {
    Prefix,
    Omit,
    Partial,
    Exhaustive(u32),
    Sample(u64, Rng),
}

/// A partial-state cursor at an op's first state (its prefix of one micro-op).
const PART_START: (u8, u32, u32) = (0, 1, 0);

/// The states of a strategy, one at a time (see [`Plan::states`]).
pub struct LStateIter<'p> {
    plan: &'p Plan,
    phases: VecDeque<Phase>,
    /// The next logical op (or end micro-op, exhaustive) of the current phase.
    next: i64,
    buf: VecDeque<LState>,
    /// Exhaustive: the current missing set, descending.
    dfs: Vec<u32>,
    /// Exhaustive: the empty state was yielded.
    began: bool,
    /// Partial: where op `next` is (`Plan::partial_at`).
    part: (u8, u32, u32),
    dependents: Vec<Vec<u32>>,
}

impl<'p> LStateIter<'p> {
    fn new(plan: &'p Plan, strategy: LStrategy) -> LStateIter<'p> {
        let phases = match strategy {
            LStrategy::Prefix => vec![Phase::Prefix],
            LStrategy::OmitOne => vec![Phase::Omit],
            LStrategy::Partial => vec![Phase::Partial],
            LStrategy::Alice => vec![Phase::Prefix, Phase::Omit, Phase::Partial],
            LStrategy::Exhaustive { max_missing } => vec![Phase::Exhaustive(max_missing)],
            LStrategy::Sample { samples, seed } => vec![Phase::Sample(samples, Rng::new(seed))],
        };
        let dependents = if matches!(strategy, LStrategy::Exhaustive { .. }) { plan.dependents() } else { Vec::new() };
        LStateIter {
            plan,
            phases: phases.into(),
            next: -1,
            buf: VecDeque::new(),
            dfs: Vec::new(),
            began: false,
            part: PART_START,
            dependents,
        }
    }

    /// Fills `buf` from the current phase; false when the phase is over.
    fn refill(&mut self) -> bool {
        let plan = self.plan;
        let ops = plan.ops() as i64;
        match self.phases.front_mut() {
            None => false,
            Some(Phase::Prefix) => {
                while self.next < ops {
                    let i = self.next;
                    self.next += 1;
                    if i < 0 {
                        self.buf.push_back(plan.make(None, Vec::new()));
                        return true;
                    }
                    let r = plan.of_op(i as usize);
                    if !r.is_empty() {
                        self.buf.push_back(plan.make(Some(r.end - 1), Vec::new()));
                        return true;
                    }
                }
                false
            }
            Some(Phase::Omit) => {
                // `next` is -1 as a phase begins: a trace without ops has no op 0.
                while self.next.max(0) < ops {
                    let i = self.next.max(0) as usize;
                    self.next = i as i64 + 1;
                    let states = plan.omit_states(i);
                    if !states.is_empty() {
                        self.buf.extend(states);
                        return true;
                    }
                }
                false
            }
            Some(Phase::Partial) => self.partial_next(),
            Some(Phase::Sample(left, rng)) => {
                if *left == 0 {
                    return false;
                }
                *left -= 1;
                self.buf.push_back(plan.sample_state(rng));
                true
            }
            Some(Phase::Exhaustive(k)) => {
                let k = *k;
                self.exhaustive_next(k)
            }
        }
    }

    /// The next partial state of op `next`, else of the next op that has one.
    fn partial_next(&mut self) -> bool {
        let plan = self.plan;
        while self.next.max(0) < plan.ops() as i64 {
            let i = self.next.max(0) as usize;
            if plan.splits(i) {
                if let Some(s) = plan.partial_at(i, &mut self.part) {
                    self.buf.push_back(s);
                    return true;
                }
            }
            self.next = i as i64 + 1;
            self.part = PART_START;
        }
        false
    }

    /// The next legal missing set at the current end, else the next end's empty one.
    fn exhaustive_next(&mut self, k: u32) -> bool {
        let n = self.plan.micro.len() as i64;
        if !self.began {
            self.began = true;
            self.buf.push_back(self.plan.make(None, Vec::new()));
            return true;
        }
        if self.next >= 0 && self.next < n && self.advance(self.next as u32, k) {
            let missing: Vec<u32> = self.dfs.iter().rev().copied().collect();
            self.buf.push_back(self.plan.make(Some(self.next as u32), missing));
            return true;
        }
        self.next += 1;
        self.dfs.clear();
        if self.next >= n {
            return false;
        }
        let end = u32::try_from(self.next).ok();
        self.buf.push_back(self.plan.make(end, Vec::new()));
        true
    }

    /// The next missing set after `dfs` at end `e` in depth-first order (extend, else
    /// move the last element down, else backtrack).
    fn advance(&mut self, e: u32, k: u32) -> bool {
        if (self.dfs.len() as u32) < k {
            let below = self.dfs.last().copied().unwrap_or(e);
            if let Some(d) = self.addable(below, e) {
                self.dfs.push(d);
                return true;
            }
        }
        while let Some(x) = self.dfs.pop() {
            if let Some(d) = self.addable(x, e) {
                self.dfs.push(d);
                return true;
            }
        }
        false
    }

    /// The largest micro-op below `below` that can be missing along with `dfs` at end
    /// `e`: everything up to `e` depending on it is missing too.
    fn addable(&self, below: u32, e: u32) -> Option<u32> {
        (0..below).rev().find(|&d| self.dependents[d as usize].iter().all(|&r| r > e || self.dfs.contains(&r)))
    }
}

impl Iterator for LStateIter<'_> {
    type Item = LState;
    fn next(&mut self) -> Option<LState> {
        loop {
            if let Some(s) = self.buf.pop_front() {
                return Some(s);
            }
            if !self.refill() {
                self.phases.pop_front()?;
                self.next = -1;
                self.dfs.clear();
                self.began = false;
                self.part = PART_START;
            }
        }
    }
}
