//! Membership: a state of a model whose listing is a given recovered one (`brink
//! check-model`, where the model's space is too large to list and no witness was found
//! among its small strategies or other models' states).
//!
//! A state is a set of micro-ops closed under their dependencies. Acknowledgements are
//! barriers in one chain, so a state held to `k` marks holds the `k`-th and everything it
//! depends on, and nothing from the next on: the search runs over the micro-ops in
//! between. It is a descent on the distance between the state's listing and the target
//! (entries missing or extra, file sizes and 4 KiB blocks that differ, the model's
//! garbage matching any bytes), counted first, and then the model's garbage blocks, so a
//! state with the target's zeros or data is preferred to one with garbage there. Each
//! step adds a micro-op with whatever it depends on, or removes one with whatever depends
//! on it, when that brings the listing closer. The last-written bytes of a block are what
//! a listing shows, so taking micro-ops in program order walks each block to its target.
//!
//! When single moves stall (a name must change together with the size of the file it
//! names, as when a rename's replaced file is cut), pairs of moves on one file or name
//! are tried, bounded by [`PAIRS_MAX`].
//!
//! The search is a heuristic and only ever proves membership: a state it returns is legal
//! (closed under dependencies, held to the marks) at distance zero, and check-model
//! compares its listing with the recovered one as it does any model state's; not finding
//! one proves nothing, and the recovered state is reported undecided.

use std::collections::{BTreeSet, HashMap};

use brink_explore::tree::Listing;
use brink_pmodel::{Ino, LState, Micro, Plan};

use crate::listing::Seen;
use crate::{Lister, LogicalError};

/// Rounds of single moves (each up to this many passes) and pair steps.
const PASSES_MAX: usize = 6;

/// Pairs of moves tried in one search, at most.
const PAIRS_MAX: usize = 4_000;

/// The distance of a name missing, extra or of another kind.
const MISPLACED: u64 = 1 << 32;

/// What the target listing shows at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shown {
    Dir,
    Link(String),
    File { size: u64, whole: String, blocks: Option<Vec<String>> },
}

/// What an entry counts as when the other side has nothing there (`blocks`: a file's
/// block hashes): more than any difference of content, so a name is put in place
/// before its bytes are.
fn absent(blocks: Option<&Vec<String>>) -> u64 {
    MISPLACED + blocks.map_or(0, |b| b.len() as u64)
}

impl Shown {
    fn weight(&self) -> u64 {
        absent(match self {
            Shown::File { blocks, .. } => blocks.as_ref(),
            _ => None,
        })
    }
}

/// The target listing by path, and the sum of its entries' weights.
struct Goal {
    by_path: HashMap<String, Shown>,
    weight: u64,
}

fn goal(l: &Listing) -> Goal {
    let mut by_path = HashMap::with_capacity(l.entries.len());
    for e in &l.entries {
        let mut parts = e.splitn(3, ' ');
        let (kind, path, rest) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let shown = match kind {
            Some("d") => Shown::Dir,
            Some("l") => Shown::Link(rest.to_string()),
            _ => {
                let (size, whole) = rest.split_once(' ').unwrap_or((rest, ""));
                let blocks = l.blocks.get(path).cloned();
                Shown::File { size: size.parse().unwrap_or(u64::MAX), whole: whole.to_string(), blocks }
            }
        };
        by_path.insert(path.to_string(), shown);
    }
    let weight = by_path.values().map(Shown::weight).sum();
    Goal { by_path, weight }
}

/// A file's block hashes, none for an empty file; `None` for one too large to have them.
fn by_block(b: &Option<Vec<String>>, size: u64) -> Option<&[String]> {
    match b {
        Some(b) => Some(b.as_slice()),
        None => (size == 0).then_some(&[][..]),
    }
}

/// What a model's entry counts as when the target has nothing there.
fn seen_weight(e: &Seen<'_>) -> u64 {
    absent(match e {
        Seen::File(d, _) => d.blocks.as_ref(),
        _ => None,
    })
}

/// How far a model's entry `m` is from the target's `t`.
fn entry_distance(m: &Seen<'_>, t: &Shown) -> u64 {
    match (m, t) {
        (Seen::File(d, wild), Shown::File { size, whole, blocks }) => {
            let sized = u64::from(d.size != *size);
            match (by_block(&d.blocks, d.size), by_block(blocks, *size)) {
                (Some(a), Some(b)) => {
                    let n = a.len().max(b.len());
                    let differ = |i: usize| !wild.contains(&(i as u64)) && (a.get(i).is_none() || a.get(i) != b.get(i));
                    sized + (0..n).filter(|&i| differ(i)).count() as u64
                }
                _ if d.size == *size && d.whole == *whole => 0,
                _ => 1 + seen_weight(m).max(t.weight()) - MISPLACED,
            }
        }
        (Seen::Dir, Shown::Dir) => 0,
        (Seen::Link(a), Shown::Link(b)) if a == b => 0,
        _ => seen_weight(m) + t.weight(),
    }
}

/// A state of the plan as a set of micro-ops, with the bounds the target's marks set.
struct Search<'p> {
    plan: &'p Plan,
    dependents: Vec<Vec<u32>>,
    /// Micro-ops every candidate holds (the last acknowledgement and its dependencies).
    forced: Vec<bool>,
    /// Micro-ops at and past this one (the next acknowledgement) are never held.
    limit: u32,
    held: Vec<bool>,
}

impl<'p> Search<'p> {
    /// The search for states held to `marks` acknowledgements; `None` if the plan has fewer.
    fn new(plan: &'p Plan, marks: u64) -> Option<Search<'p>> {
        let acks: Vec<u32> =
            (0..plan.micro.len() as u32).filter(|&m| matches!(plan.micro[m as usize].micro, Micro::Ack(_))).collect();
        let k = usize::try_from(marks).ok()?;
        if k > acks.len() {
            return None;
        }
        let n = plan.micro.len();
        let limit = acks.get(k).copied().unwrap_or(n as u32);
        let mut s = Search { plan, dependents: plan.dependents(), forced: vec![false; n], limit, held: vec![false; n] };
        if let Some(&last) = k.checked_sub(1).and_then(|i| acks.get(i)) {
            for m in s.with_deps(last) {
                s.forced[m as usize] = true;
                s.held[m as usize] = true;
            }
        }
        Some(s)
    }

    /// `m` and what it depends on, not held yet.
    fn with_deps(&self, m: u32) -> Vec<u32> {
        self.closure(m, |x| &self.plan.micro[x as usize].deps, |x| !self.held[x as usize])
    }

    /// `m` and what depends on it, held and not forced; empty if a forced one does.
    fn with_dependents(&self, m: u32) -> Vec<u32> {
        let out = self.closure(m, |x| &self.dependents[x as usize], |x| self.held[x as usize]);
        if out.iter().any(|&x| self.forced[x as usize]) { Vec::new() } else { out }
    }

    fn closure<'a>(&'a self, m: u32, next: impl Fn(u32) -> &'a Vec<u32>, take: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![m];
        while let Some(x) = todo.pop() {
            if take(x) && seen.insert(x) {
                todo.extend(next(x).iter().copied());
            }
        }
        seen.into_iter().collect()
    }

    /// Adding `m` (with what it depends on) or removing it (with what depends on it).
    fn moves(&self, m: u32, adding: bool) -> Vec<u32> {
        if self.forced[m as usize] || self.held[m as usize] == adding {
            return Vec::new();
        }
        if adding { self.with_deps(m) } else { self.with_dependents(m) }
    }

    /// The other free micro-ops before the limit that touch a file or name `m` does.
    fn related(&self, m: u32) -> Vec<u32> {
        let mine = subjects(&self.plan.micro[m as usize].micro);
        (0..self.limit)
            .filter(|&n| n != m && !self.forced[n as usize])
            .filter(|&n| subjects(&self.plan.micro[n as usize].micro).iter().any(|s| mine.contains(s)))
            .collect()
    }

    fn flip(&mut self, ms: &[u32], to: bool) {
        for &m in ms {
            self.held[m as usize] = to;
        }
    }

    /// The held set as a state's last micro-op and the ones missing before it.
    fn end_and_missing(&self) -> (Option<u32>, Vec<u32>) {
        let end = (0..self.limit).rev().find(|&m| self.held[m as usize]);
        (end, end.map_or_else(Vec::new, |e| (0..e).filter(|&m| !self.held[m as usize]).collect()))
    }

    /// The held set as a state.
    fn state(&self) -> Option<LState> {
        let (end, missing) = self.end_and_missing();
        self.plan.state(&self.plan.id_of(end, &missing))
    }
}

/// What a micro-op changes, to pair moves on: a file's bytes, or a name.
#[derive(PartialEq, Eq)]
enum Subject<'m> {
    File(Ino),
    Name(Ino, &'m [u8]),
}

/// The files and names a micro-op touches: a write's file; an entry's name, the file
/// it names and the one it named.
fn subjects(m: &Micro) -> Vec<Subject<'_>> {
    match m {
        Micro::Write { ino, .. } | Micro::SetSize { ino, .. } => vec![Subject::File(*ino)],
        Micro::Entries(changes) => changes
            .iter()
            .flat_map(|c| {
                let files = [c.was].into_iter().chain(c.to).map(Subject::File);
                files.chain([Subject::Name(c.at.parent, &c.at.name)])
            })
            .collect(),
        Micro::Sync | Micro::Ack(_) => Vec::new(),
    }
}

impl Lister<'_> {
    /// A legal state of the lister's plan held to `marks` acknowledgements whose listing is
    /// `target`'s, the model's garbage matching any bytes (see the module docs); `None`
    /// when the search finds none, which proves nothing.
    pub fn find(&mut self, target: &Listing, marks: u64) -> Result<Option<LState>, LogicalError> {
        let Some(mut search) = Search::new(self.plan(), marks) else { return Ok(None) };
        let goal = goal(target);
        let mut best = self.measure(&search, &goal)?;
        let mut budget = PAIRS_MAX;
        for _ in 0..PASSES_MAX {
            best = self.descend(&mut search, &goal, best)?;
            if best.0 == 0 {
                break;
            }
            let Some(d) = self.pair_step(&mut search, &goal, best, &mut budget)? else { break };
            best = d;
        }
        Ok(if best.0 == 0 { search.state() } else { None })
    }

    /// Single moves, adding in program order then removing in reverse, as long as the
    /// distance falls; moves that keep it are taken too (a plateau is crossed, and
    /// passes are bounded).
    fn descend(
        &mut self,
        search: &mut Search<'_>,
        goal: &Goal,
        mut best: (u64, u64),
    ) -> Result<(u64, u64), LogicalError> {
        let mut before = best;
        for pass in 0..2 * PASSES_MAX {
            let adding = pass % 2 == 0;
            if adding {
                before = best;
            }
            let order: Vec<u32> = if adding { (0..search.limit).collect() } else { (0..search.limit).rev().collect() };
            for m in order {
                let ms = search.moves(m, adding);
                best = self.try_flip(search, &ms, adding, goal, best, false)?.0;
            }
            if best.0 == 0 || (!adding && best == before) {
                break;
            }
        }
        Ok(best)
    }

    /// Two moves on the same file or name where one alone does not bring the listing
    /// closer (a rename's entry and the size cut of the file it replaced): the distance
    /// after the first pair that does, `None` if none does within `budget` tries.
    fn pair_step(
        &mut self,
        search: &mut Search<'_>,
        goal: &Goal,
        best: (u64, u64),
        budget: &mut usize,
    ) -> Result<Option<(u64, u64)>, LogicalError> {
        for m in 0..search.limit {
            if search.forced[m as usize] {
                continue;
            }
            let first = !search.held[m as usize];
            let ms = search.moves(m, first);
            if ms.is_empty() {
                continue;
            }
            search.flip(&ms, first);
            for n in search.related(m) {
                if *budget == 0 {
                    search.flip(&ms, !first);
                    return Ok(None);
                }
                *budget -= 1;
                let second = !search.held[n as usize];
                let ns = search.moves(n, second);
                let (d, flipped) = self.try_flip(search, &ns, second, goal, best, true)?;
                if flipped {
                    return Ok(Some(d));
                }
            }
            search.flip(&ms, !first);
        }
        Ok(None)
    }

    /// Flips `ms` if that brings the listing closer (or as close, unless `strictly`):
    /// the distance after, and whether it flipped.
    fn try_flip(
        &mut self,
        search: &mut Search<'_>,
        ms: &[u32],
        to: bool,
        goal: &Goal,
        best: (u64, u64),
        strictly: bool,
    ) -> Result<((u64, u64), bool), LogicalError> {
        if ms.is_empty() {
            return Ok((best, false));
        }
        search.flip(ms, to);
        let d = self.measure(search, goal)?;
        if d < best || (!strictly && d == best) {
            return Ok((d, true));
        }
        search.flip(ms, !to);
        Ok((best, false))
    }

    /// The distance from `search`'s state to the goal: (entries, sizes and blocks that
    /// differ, the model's garbage blocks).
    fn measure(&mut self, search: &Search<'_>, goal: &Goal) -> Result<(u64, u64), LogicalError> {
        // The listing depends on the held set only: no id or marks needed.
        let (end, missing) = search.end_and_missing();
        let state = LState { id: Default::default(), end, missing, marks_before: 0 };
        let (mut far, mut garbage) = (goal.weight, 0);
        self.visit(&state, |path, e| {
            if let Seen::File(_, wild) = &e {
                garbage += wild.len() as u64;
            }
            // `far` began with every target entry's weight: a matched one's comes off.
            match goal.by_path.get(&brink_explore::tree::shown(path)) {
                Some(t) => far = far + entry_distance(&e, t) - t.weight(),
                None => far += seen_weight(&e),
            }
        })?;
        Ok((far, garbage))
    }
}
