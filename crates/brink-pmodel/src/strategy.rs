//! Strategies: which of the legal states at a crash point to visit, how many there are,
//! and lazy enumeration of them.
//!
//! Per write, the model allows a number of *options*: 0 = persisted whole, 1 = omitted,
//! then partial persistence (torn models only). With `s` sectors, `--torn sector` gives
//! `2^s` options (every subset of sectors), `--torn prefix` gives `s + 1` (every prefix).
//!
//! Spaces at a point with volatile writes `w1..wn` (opts = options per write):
//! - *product* (writeback, exhaustive): every combination, `Π opts(wi)`.
//! - *prefix* (writethrough, or strategy `prefix`): `w1..wj` whole and the rest omitted
//!   (`n + 1` states), plus, torn, `w1..wj` whole, `wj+1` partial, the rest omitted:
//!   `n + 1 + Σ (opts(wi) − 2)`.
//! - *omit-k*: at most k writes not whole (each omitted or partial):
//!   `Σ_{j≤k} e_j(opts(w) − 1)` (elementary symmetric sums); omit-one is k = 1.
//! - *sample*: uniform over the model's legal space (product for writeback, prefix for
//!   writethrough), with replacement; the caller deduplicates.

use serde::{Deserialize, Serialize};

use crate::count::Count;
use crate::epoch::{CrashPoint, Epoch, PWrite};
use crate::id::{StateId, WriteChoice};
use crate::rng::Rng;
use crate::{CacheModel, Model, Torn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Exhaustive,
    Prefix,
    OmitK(u32),
    Sample { samples: u64, seed: u64 },
}

impl Strategy {
    pub fn name(&self) -> String {
        match self {
            Strategy::Exhaustive => "exhaustive".into(),
            Strategy::Prefix => "prefix".into(),
            Strategy::OmitK(1) => "omit-one".into(),
            Strategy::OmitK(k) => format!("omit-{k}"),
            Strategy::Sample { samples, seed } => format!("sample({samples}, seed {seed})"),
        }
    }
}

/// One crash state: where, what persisted, and the promises it is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashState {
    pub id: StateId,
    pub epoch: u64,
    pub marks_before: u64,
}

fn options(model: Model, w: &PWrite) -> Count {
    if w.fua {
        return Count::ONE;
    }
    if !w.tearable || w.sectors <= 1 {
        return Count(2);
    }
    match model.torn {
        Torn::None => Count(2),
        Torn::Sector => Count::pow2(w.sectors as u64),
        Torn::Prefix => Count(w.sectors as u128 + 1),
    }
}

/// Partial options of a write, in a fixed order: for `--torn sector` the masks
/// 1..2^s−1 (the full mask is "whole"), for `--torn prefix` the prefixes of 1..s−1.
fn partial(model: Model, w: &PWrite, k: u128) -> WriteChoice {
    let s = w.sectors;
    let mut mask = vec![0u64; (s as usize).div_ceil(64)];
    match model.torn {
        Torn::Sector => {
            let m = k + 1; // skip the empty mask (omitted)
            mask[0] = m as u64;
            if mask.len() > 1 {
                mask[1] = (m >> 64) as u64;
            }
        }
        Torn::Prefix => {
            for i in 0..=(k as u32) {
                mask[i as usize / 64] |= 1 << (i % 64);
            }
        }
        Torn::None => unreachable!("no partial options without tearing"),
    }
    while mask.last() == Some(&0) {
        mask.pop();
    }
    WriteChoice::Torn(mask)
}

fn partial_count(model: Model, w: &PWrite) -> Count {
    Count(options(model, w).0.saturating_sub(2))
}

/// Option `o` of a write: None = whole, Some(choice) otherwise.
fn option(model: Model, w: &PWrite, o: u128) -> Option<WriteChoice> {
    match o {
        0 => None,
        1 => Some(WriteChoice::Omitted),
        k => Some(partial(model, w, k - 2)),
    }
}

fn random_mask(rng: &mut Rng, sectors: u32, model: Model) -> Option<WriteChoice> {
    // Uniform over all 2^s (sector) or s+1 (prefix) options, whole and omitted included.
    let mut mask = vec![0u64; (sectors as usize).div_ceil(64)];
    match model.torn {
        Torn::Sector => {
            for w in mask.iter_mut() {
                *w = rng.next_u64();
            }
            if sectors % 64 != 0 {
                *mask.last_mut().expect("non-empty") &= (1u64 << (sectors % 64)) - 1;
            }
        }
        Torn::Prefix => {
            let keep = rng.below(sectors as u128 + 1) as u32;
            for i in 0..keep {
                mask[i as usize / 64] |= 1 << (i % 64);
            }
        }
        Torn::None => unreachable!(),
    }
    let ones: u32 = mask.iter().map(|w| w.count_ones()).sum();
    if ones == sectors {
        return None;
    }
    if ones == 0 {
        return Some(WriteChoice::Omitted);
    }
    while mask.last() == Some(&0) {
        mask.pop();
    }
    Some(WriteChoice::Torn(mask))
}

/// Which space a (model, strategy) pair enumerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    Product,
    Prefix,
    OmitK(u32),
}

fn space(model: Model, strategy: Strategy) -> Space {
    match (model.cache, strategy) {
        (_, Strategy::Prefix) | (CacheModel::Writethrough, Strategy::Exhaustive | Strategy::Sample { .. }) => {
            Space::Prefix
        }
        (CacheModel::Writeback, Strategy::Exhaustive | Strategy::Sample { .. }) => Space::Product,
        (_, Strategy::OmitK(k)) => Space::OmitK(k),
    }
}

fn count_space(model: Model, sp: Space, vol: &[PWrite]) -> Count {
    match sp {
        Space::Product => vol.iter().fold(Count::ONE, |c, w| c.mul(options(model, w))),
        Space::Prefix => vol.iter().fold(Count(vol.len() as u128 + 1), |c, w| c.add(partial_count(model, w))),
        Space::OmitK(k) if model.cache == CacheModel::Writethrough => prefix_with_at_most(model, vol, k),
        Space::OmitK(k) => {
            // e[j] = elementary symmetric sum of degree j over (opts − 1).
            let mut e = vec![Count::ZERO; k as usize + 1];
            e[0] = Count::ONE;
            for w in vol {
                let x = Count(options(model, w).0 - 1);
                for j in (1..e.len()).rev() {
                    e[j] = e[j].add(e[j - 1].mul(x));
                }
            }
            e.into_iter().fold(Count::ZERO, Count::add)
        }
    }
}

/// Prefix-space states with at most `k` writes not whole.
fn prefix_with_at_most(model: Model, vol: &[PWrite], k: u32) -> Count {
    let n = vol.len();
    let mut c = Count::ZERO;
    // j whole writes, the rest omitted: n − j non-whole.
    for j in 0..=n {
        if n - j <= k as usize {
            c = c.add(Count::ONE);
        }
    }
    // j whole, write j partial, the rest omitted: n − j non-whole.
    for (j, w) in vol.iter().enumerate() {
        if n - j <= k as usize {
            c = c.add(partial_count(model, w));
        }
    }
    c
}

/// The number of states `strategy` visits at `point` (for `Sample`: the legal space it
/// samples from).
pub fn count_point(model: Model, strategy: Strategy, epoch: &Epoch, point: &CrashPoint) -> Count {
    count_space(model, space(model, strategy), &epoch.volatile(point))
}

/// Decode state number `n` of the prefix space into choices (by position in `vol`).
fn decode_prefix(model: Model, vol: &[PWrite], mut n: u128) -> Vec<(usize, WriteChoice)> {
    let len = vol.len() as u128;
    let omitted_from = |j: usize| (j..vol.len()).map(|i| (i, WriteChoice::Omitted)).collect::<Vec<_>>();
    if n <= len {
        // n whole writes, in order, the rest omitted.
        return omitted_from(n as usize);
    }
    n -= len + 1;
    for (j, w) in vol.iter().enumerate() {
        let p = partial_count(model, w).0;
        if n < p {
            let mut c = vec![(j, partial(model, w, n))];
            c.extend(omitted_from(j + 1));
            return c;
        }
        n -= p;
    }
    unreachable!("state number beyond the prefix space")
}

fn decode_product(model: Model, vol: &[PWrite], mut n: u128) -> Vec<(usize, WriteChoice)> {
    let mut out = Vec::new();
    for (i, w) in vol.iter().enumerate() {
        let opts = options(model, w).0;
        if let Some(c) = option(model, w, n % opts) {
            out.push((i, c));
        }
        n /= opts;
    }
    out
}

fn to_id(position: u64, vol: &[PWrite], choices: Vec<(usize, WriteChoice)>) -> StateId {
    StateId { position, choices: choices.into_iter().map(|(i, c)| (vol[i].index, c)).collect(), fault: None }
}

/// Lazy iterator over the states a strategy visits at one point.
pub struct StateIter {
    model: Model,
    position: u64,
    epoch: u64,
    marks_before: u64,
    vol: Vec<PWrite>,
    kind: IterKind,
}

enum IterKind {
    Numbered { space: Space, next: u128, count: u128 },
    OmitK { k: u32, combo: Option<Vec<usize>>, digits: Vec<u128> },
    Sampled(std::vec::IntoIter<u64>),
}

impl StateIter {
    /// The states of `strategy` at `point`. For `Sample`, pass the per-sample seeds the
    /// caller drew for this point (see [`Sampler`](crate::Sampler)); otherwise `&[]`.
    pub fn new(model: Model, strategy: Strategy, epoch: &Epoch, point: &CrashPoint, sample_seeds: &[u64]) -> StateIter {
        let vol = epoch.volatile(point);
        let sp = space(model, strategy);
        let kind = match (strategy, sp) {
            (Strategy::Sample { .. }, _) => IterKind::Sampled(Vec::from(sample_seeds).into_iter()),
            (_, Space::OmitK(k)) => IterKind::OmitK { k, combo: Some(Vec::new()), digits: Vec::new() },
            (_, sp) => {
                let count = count_space(model, sp, &vol);
                assert!(!count.saturated(), "enumerating a space too large to count; the caller must bound it");
                IterKind::Numbered { space: sp, next: 0, count: count.0 }
            }
        };
        StateIter { model, position: point.position, epoch: epoch.number, marks_before: point.marks_before, vol, kind }
    }

    fn state(&self, choices: Vec<(usize, WriteChoice)>) -> CrashState {
        CrashState { id: to_id(self.position, &self.vol, choices), epoch: self.epoch, marks_before: self.marks_before }
    }

    fn next_omit_k(&mut self) -> Option<Vec<(usize, WriteChoice)>> {
        let (model, n) = (self.model, self.vol.len());
        let IterKind::OmitK { k, combo, digits } = &mut self.kind else { unreachable!() };
        let writethrough = model.cache == CacheModel::Writethrough;
        loop {
            let c = combo.as_ref()?.clone();
            // Choices for the current combination and digit vector (each digit picks
            // omitted = 0 or a partial option 1..).
            if digits.len() != c.len() {
                *digits = vec![0; c.len()];
            }
            let choices: Vec<(usize, WriteChoice)> = c
                .iter()
                .zip(digits.iter())
                .map(|(&i, &d)| (i, if d == 0 { WriteChoice::Omitted } else { partial(model, &self.vol[i], d - 1) }))
                .collect();
            // Advance: digits first (mixed radix over opts − 1), then the combination.
            let mut carry = true;
            for (pos, d) in digits.iter_mut().enumerate() {
                let radix = options(model, &self.vol[c[pos]]).0 - 1;
                *d += 1;
                if *d < radix {
                    carry = false;
                    break;
                }
                *d = 0;
            }
            if carry {
                *combo = next_combination(&c, n, *k as usize);
                digits.clear();
            }
            // Writethrough keeps only prefix-shaped states: the non-whole writes are a
            // suffix, all omitted except possibly the first one.
            if writethrough {
                let suffix = c.first().is_none_or(|&first| {
                    c.iter().enumerate().all(|(j, &i)| i == first + j) && c.last() == Some(&(n - 1))
                });
                let shaped = choices.iter().skip(1).all(|(_, ch)| *ch == WriteChoice::Omitted);
                if !(suffix && shaped) {
                    continue;
                }
            }
            return Some(choices);
        }
    }
}

/// The next combination after `c` in the order: by size (0..=k), then lexicographic.
fn next_combination(c: &[usize], n: usize, k: usize) -> Option<Vec<usize>> {
    let mut c = c.to_vec();
    let size = c.len();
    // Lexicographic successor of the same size.
    let mut i = size;
    while i > 0 {
        i -= 1;
        if c[i] < n - size + i {
            c[i] += 1;
            for j in i + 1..size {
                c[j] = c[j - 1] + 1;
            }
            return Some(c);
        }
    }
    let next = size + 1;
    (next <= k && next <= n).then(|| (0..next).collect())
}

impl Iterator for StateIter {
    type Item = CrashState;

    fn next(&mut self) -> Option<CrashState> {
        let choices = match &mut self.kind {
            IterKind::Numbered { space, next, count } => {
                if *next >= *count {
                    return None;
                }
                let n = *next;
                *next += 1;
                match space {
                    Space::Product => decode_product(self.model, &self.vol, n),
                    Space::Prefix => decode_prefix(self.model, &self.vol, n),
                    Space::OmitK(_) => unreachable!(),
                }
            }
            IterKind::OmitK { .. } => self.next_omit_k()?,
            IterKind::Sampled(seeds) => {
                let seed = seeds.next()?;
                let mut rng = Rng::new(seed);
                random_choices(self.model, &self.vol, &mut rng)
            }
        };
        Some(self.state(choices))
    }
}

/// A uniformly random state of the model's legal space at a point.
fn random_choices(model: Model, vol: &[PWrite], rng: &mut Rng) -> Vec<(usize, WriteChoice)> {
    match model.cache {
        CacheModel::Writeback => {
            let mut out = Vec::new();
            for (i, w) in vol.iter().enumerate() {
                let opts = options(model, w);
                let choice = if opts == Count(2) || model.torn == Torn::None || !w.tearable {
                    (rng.next_u64() & 1 == 1).then_some(WriteChoice::Omitted)
                } else {
                    random_mask(rng, w.sectors, model)
                };
                if let Some(c) = choice {
                    out.push((i, c));
                }
            }
            out
        }
        CacheModel::Writethrough => {
            let count = count_space(model, Space::Prefix, vol);
            if !count.saturated() {
                return decode_prefix(model, vol, rng.below(count.0));
            }
            // Too large to number (huge torn writes): pick the prefix length uniformly,
            // then a uniform partial option of the next write.
            let j = rng.below(vol.len() as u128 + 1) as usize;
            let mut c: Vec<(usize, WriteChoice)> = (j..vol.len()).map(|i| (i, WriteChoice::Omitted)).collect();
            if j < vol.len() {
                if let Some(m) = random_mask(rng, vol[j].sectors, model) {
                    c[0] = (j, m);
                }
            }
            c
        }
    }
}

/// What a sample takes at one crash point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Draw {
    /// Every state of the point (its share is at least its count).
    All,
    /// One state per seed (`StateIter::new` with `Strategy::Sample`); repeats are possible
    /// and the caller drops them. Empty: the point gets no sample.
    Seeds(Vec<u64>),
}

/// How a sample covers the crash points (the summary's `sample`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SampleCoverage {
    /// Crash points with at least one state.
    pub points: u64,
    /// Of those, the points given at least one sample, and the points taken whole.
    pub points_sampled: u64,
    pub points_whole: u64,
}

/// A stratified sample over the crash points of a trace: every point first gets one
/// sample (when there are fewer samples than points, points evenly spread through the
/// trace do), then the rest goes to the points in proportion to their size; a point
/// whose share reaches its count is taken whole. A uniform sample over states put
/// 979 of 987 samples on one point of a server database's trace (a 15-write checkpoint
/// is 32,768 states) and found none of the violations that omit-one found elsewhere.
///
/// The shares are computed from every point's count up front (a counting pass), then
/// handed out as the points stream by in order: the same sample whatever `--jobs` or
/// `--shard` is.
#[derive(Debug)]
pub struct Sampler {
    shares: std::collections::VecDeque<u128>,
    seed: u64,
    drawn: u64,
    coverage: SampleCoverage,
}

impl Sampler {
    /// `counts`: each crash point's number of states, in trace order.
    pub fn new(counts: &[Count], samples: u64, seed: u64) -> Sampler {
        let shares = shares(counts, u128::from(samples));
        let live = || counts.iter().zip(&shares).filter(|(c, _)| c.0 > 0);
        let coverage = SampleCoverage {
            points: live().count() as u64,
            points_sampled: live().filter(|(_, n)| **n > 0).count() as u64,
            points_whole: live().filter(|(c, n)| **n >= c.0).count() as u64,
        };
        Sampler { shares: shares.into(), seed, drawn: 0, coverage }
    }

    /// What to take at the next point (which has `count` states).
    pub fn take(&mut self, count: Count) -> Draw {
        let share = self.shares.pop_front().unwrap_or(0);
        if count.0 > 0 && share >= count.0 {
            return Draw::All;
        }
        let seeds = (0..share as u64)
            .map(|k| self.seed ^ (self.drawn + k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect::<Vec<_>>();
        self.drawn += share as u64;
        Draw::Seeds(seeds)
    }

    pub fn coverage(&self) -> SampleCoverage {
        self.coverage
    }
}

/// Each point's number of samples (`Sampler`'s rule), none above its count, summing to
/// `samples` or to the whole space when that is smaller.
pub fn shares(counts: &[Count], samples: u128) -> Vec<u128> {
    let mut share = vec![0u128; counts.len()];
    let live: Vec<usize> = (0..counts.len()).filter(|&i| counts[i].0 > 0).collect();
    if live.is_empty() {
        return share;
    }
    let n = live.len() as u128;
    if samples < n {
        // Evenly spread: the k-th sample at the point k·n/samples of the live points.
        for k in 0..samples {
            share[live[(k * n / samples) as usize]] = 1;
        }
        return share;
    }
    for &i in &live {
        share[i] = 1;
    }
    let mut rest = samples - n;
    // Water filling: in proportion to what each point has left, until the samples or
    // the points run out.
    loop {
        let open: Vec<usize> = live.iter().copied().filter(|&i| share[i] < counts[i].0).collect();
        if rest == 0 || open.is_empty() {
            return share;
        }
        let room: Vec<u128> = open.iter().map(|&i| counts[i].0 - share[i]).collect();
        let total: f64 = room.iter().map(|&r| r as f64).sum();
        let mut given = 0u128;
        for (&i, &r) in open.iter().zip(&room) {
            let want = ((rest as f64) * (r as f64) / total).floor() as u128;
            let g = want.min(r).min(rest - given);
            share[i] += g;
            given += g;
        }
        if given == 0 {
            // Fewer samples left than the proportions can split: one each to the points
            // with the most room (ties: trace order).
            let mut by_room: Vec<(u128, usize)> = room.iter().copied().zip(open.iter().copied()).collect();
            by_room.sort_by_key(|&(r, _)| std::cmp::Reverse(r));
            for &(_, i) in by_room.iter().take(rest.min(by_room.len() as u128) as usize) {
                share[i] += 1;
                given += 1;
            }
        }
        rest -= given;
    }
}
