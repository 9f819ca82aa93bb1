//! Known answers for the persistence models (issue 3): counts match the formulas,
//! enumeration matches the counts, exhaustive is exactly the power set, torn states are
//! exactly the sector subsets, ids are stable and round-trip.

mod apm;

use std::collections::{BTreeSet, HashSet};

use brink_pmodel::{
    CacheModel, Count, CrashState, Draw, Epoch, EpochBuilder, Model, PWrite, Sampler, StateId, StateIter, Strategy,
    Torn, WriteChoice, count_point, shares,
};

fn w(index: u64, sectors: u32) -> PWrite {
    PWrite { index, sectors, fua: false, tearable: true }
}

/// One epoch of `n` single-sector writes at event indices 0..n, ending at index n.
fn epoch_of(writes: Vec<PWrite>) -> Epoch {
    let mut b = EpochBuilder::new();
    let end = writes.last().map_or(0, |w| w.index + 1);
    for x in writes {
        b.write(x);
    }
    b.end(end)
}

fn states(model: Model, strategy: Strategy, e: &Epoch) -> Vec<CrashState> {
    e.points.iter().flat_map(|p| StateIter::new(model, strategy, e, p, &[])).collect()
}

fn model(cache: CacheModel, torn: Torn) -> Model {
    Model { cache, torn }
}

fn choose(n: u128, k: u128) -> u128 {
    if k > n { 0 } else { (0..k).fold(1, |acc, i| acc * (n - i) / (i + 1)) }
}

#[test]
fn counts_match_formulas() {
    let wb = Model::WRITEBACK;
    for n in 0..=12u64 {
        let e = epoch_of((0..n).map(|i| w(i, 1)).collect());
        if n == 0 {
            assert!(e.points.is_empty(), "an empty epoch has no point");
            continue;
        }
        let p = &e.points[0];
        let n = n as u128;
        assert_eq!(count_point(wb, Strategy::Exhaustive, &e, p), Count(1 << n));
        assert_eq!(count_point(wb, Strategy::Prefix, &e, p), Count(n + 1));
        assert_eq!(count_point(wb, Strategy::OmitK(1), &e, p), Count(n + 1));
        assert_eq!(count_point(wb, Strategy::OmitK(2), &e, p), Count(1 + n + choose(n, 2)));
        assert_eq!(count_point(wb, Strategy::OmitK(3), &e, p), Count(1 + n + choose(n, 2) + choose(n, 3)));
        let wt = model(CacheModel::Writethrough, Torn::None);
        assert_eq!(count_point(wt, Strategy::Exhaustive, &e, p), Count(n + 1));
    }
    // Torn: a 4-sector write has 16 (sector) or 5 (prefix) options.
    let e = epoch_of(vec![w(0, 4), w(1, 1), w(2, 3)]);
    let p = &e.points[0];
    assert_eq!(count_point(model(CacheModel::Writeback, Torn::Sector), Strategy::Exhaustive, &e, p), Count(16 * 2 * 8));
    assert_eq!(count_point(model(CacheModel::Writeback, Torn::Prefix), Strategy::Exhaustive, &e, p), Count(5 * 2 * 4));
    // prefix space, torn sector: 4 prefixes + (16−2) + 0 + (8−2) partial states
    assert_eq!(count_point(model(CacheModel::Writeback, Torn::Sector), Strategy::Prefix, &e, p), Count(4 + 14 + 6));
    // omit-one, torn sector: 1 + (15 + 1 + 7)
    assert_eq!(
        count_point(model(CacheModel::Writeback, Torn::Sector), Strategy::OmitK(1), &e, p),
        Count(1 + 15 + 1 + 7)
    );
}

#[test]
fn enumeration_matches_counts_everywhere() {
    let models = [
        model(CacheModel::Writeback, Torn::None),
        model(CacheModel::Writeback, Torn::Sector),
        model(CacheModel::Writeback, Torn::Prefix),
        model(CacheModel::Writethrough, Torn::None),
        model(CacheModel::Writethrough, Torn::Sector),
        model(CacheModel::Writethrough, Torn::Prefix),
    ];
    let strategies = [Strategy::Exhaustive, Strategy::Prefix, Strategy::OmitK(1), Strategy::OmitK(2)];
    let mut b = EpochBuilder::new();
    b.write(w(0, 3));
    b.write(w(1, 1));
    b.mark(2);
    b.write(w(3, 2));
    b.write(PWrite { index: 4, sectors: 2, fua: true, tearable: true });
    b.write(PWrite { index: 5, sectors: 4, fua: false, tearable: false });
    let e = b.end(6);
    assert_eq!(e.points.len(), 2);
    for m in models {
        for s in strategies {
            for p in &e.points {
                let got: Vec<CrashState> = StateIter::new(m, s, &e, p, &[]).collect();
                let ids: HashSet<String> = got.iter().map(|s| s.id.to_string()).collect();
                assert_eq!(ids.len(), got.len(), "{} {}: duplicate ids", m.name(), s.name());
                assert_eq!(
                    Count(got.len() as u128),
                    count_point(m, s, &e, p),
                    "{} {} at {}",
                    m.name(),
                    s.name(),
                    p.position
                );
                for st in &got {
                    let back: StateId = st.id.to_string().parse().unwrap();
                    assert_eq!(back, st.id, "id round trip");
                    assert!(st.id.choices.iter().all(|(i, _)| *i != 4), "a FUA write is never dropped");
                    assert!(
                        st.id.choices.iter().all(|(i, c)| *i != 5 || *c == WriteChoice::Omitted),
                        "a discard never tears"
                    );
                }
            }
        }
    }
}

#[test]
fn exhaustive_is_exactly_the_power_set() {
    let e = epoch_of((0..6).map(|i| w(i * 2, 1)).collect());
    let got: BTreeSet<BTreeSet<u64>> = states(Model::WRITEBACK, Strategy::Exhaustive, &e)
        .into_iter()
        .map(|s| s.id.choices.iter().map(|(i, _)| *i).collect())
        .collect();
    let all: Vec<u64> = (0..6).map(|i| i * 2).collect();
    let want: BTreeSet<BTreeSet<u64>> = (0u32..64)
        .map(|m| all.iter().enumerate().filter(|(b, _)| m >> b & 1 == 1).map(|(_, &i)| i).collect())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn torn_states_are_exactly_the_sector_subsets() {
    let e = epoch_of(vec![w(0, 5)]);
    let m = model(CacheModel::Writeback, Torn::Sector);
    let kept: BTreeSet<u32> = states(m, Strategy::Exhaustive, &e)
        .into_iter()
        .map(|s| match s.id.choices.as_slice() {
            [] => 0b11111,
            [(_, WriteChoice::Omitted)] => 0,
            [(_, c @ WriteChoice::Torn(_))] => (0..5).filter(|&i| c.keeps_sector(i)).map(|i| 1 << i).sum(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kept, (0..32).collect());
    let prefixes: BTreeSet<u32> = states(model(CacheModel::Writeback, Torn::Prefix), Strategy::Exhaustive, &e)
        .into_iter()
        .map(|s| match s.id.choices.as_slice() {
            [] => 5,
            [(_, WriteChoice::Omitted)] => 0,
            [(_, c)] => (0..5).take_while(|&i| c.keeps_sector(i)).count() as u32,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(prefixes, (0..=5).collect());
}

#[test]
fn writethrough_keeps_prefixes_only() {
    let e = epoch_of((0..4).map(|i| w(i, 1)).collect());
    let wt = model(CacheModel::Writethrough, Torn::None);
    let ids: Vec<String> = states(wt, Strategy::Exhaustive, &e).iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["4-0-1-2-3", "4-1-2-3", "4-2-3", "4-3", "4"]);
}

#[test]
fn points_sit_before_marks_and_at_epoch_ends() {
    let mut b = EpochBuilder::new();
    b.mark(0); // nothing happened yet: no point
    b.write(w(1, 1));
    b.mark(2);
    b.mark(3); // no write between the marks, but one more promise
    let e0 = b.end(4); // flush at 4
    let pos: Vec<(u64, usize, u64)> = e0.points.iter().map(|p| (p.position, p.writes_before, p.marks_before)).collect();
    assert_eq!(pos, [(2, 1, 1), (3, 1, 2), (4, 1, 3)]);
    let e1 = b.end(5); // another flush with nothing in between: no point
    assert!(e1.points.is_empty());
    assert_eq!(e1.number, 1);
}

#[test]
fn ids_parse_and_reject() {
    let id: StateId = "120-3-7t0f".parse().unwrap();
    assert_eq!(id.position, 120);
    assert_eq!(id.choices[0], (3, WriteChoice::Omitted));
    assert_eq!(id.choices[1], (7, WriteChoice::Torn(vec![0x0f])));
    assert_eq!(id.to_string(), "120-3-7t0f".replace("t0f", "tf"));
    let big: StateId = "5-1t1ffffffffffffffff".parse().unwrap();
    assert_eq!(big.choices[0].1, WriteChoice::Torn(vec![u64::MAX, 1]));
    assert_eq!(big.to_string().parse::<StateId>().unwrap(), big);
    for bad in ["", "x", "12-", "12-3t", "12-3tzz", "12-5-3", "12-3t0"] {
        assert!(bad.parse::<StateId>().is_err(), "{bad:?} must not parse");
    }
    // Ordering is by position, then choices: stable for sorting results.
    let mut v: Vec<StateId> = ["10-2", "9", "10", "10-1"].iter().map(|s| s.parse().unwrap()).collect();
    v.sort();
    let sorted: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    assert_eq!(sorted, ["9", "10", "10-1", "10-2"]);
}

#[test]
fn sampling_is_seeded_legal_and_covers_the_space() {
    let mut b = EpochBuilder::new();
    for i in 0..4 {
        b.write(w(i, 1));
    }
    b.mark(4);
    b.write(w(5, 2));
    let e = b.end(6);
    let m = model(CacheModel::Writeback, Torn::Sector);
    let total = e.points.iter().fold(Count::ZERO, |c, p| c.add(count_point(m, Strategy::Exhaustive, &e, p)));
    assert_eq!(total, Count(16 + 16 * 4));
    let counts: Vec<Count> = e.points.iter().map(|p| count_point(m, Strategy::Exhaustive, &e, p)).collect();
    let draw = |samples, seed| {
        let strategy = Strategy::Sample { samples, seed };
        let mut sampler = Sampler::new(&counts, samples, seed);
        let mut out = Vec::new();
        for p in &e.points {
            let ids = match sampler.take(count_point(m, strategy, &e, p)) {
                Draw::All => StateIter::new(m, Strategy::Exhaustive, &e, p, &[]).collect::<Vec<_>>(),
                Draw::Seeds(seeds) => StateIter::new(m, strategy, &e, p, &seeds).collect(),
            };
            out.extend(ids.into_iter().map(|s| s.id.to_string()));
        }
        out
    };
    let a = draw(40, 7);
    assert_eq!(a.len(), 40);
    assert_eq!(a, draw(40, 7), "same seed, same samples");
    assert_ne!(a, draw(40, 8));
    let legal: HashSet<String> = e
        .points
        .iter()
        .flat_map(|p| StateIter::new(m, Strategy::Exhaustive, &e, p, &[]))
        .map(|s| s.id.to_string())
        .collect();
    let seen: HashSet<String> = a.into_iter().collect();
    assert!(seen.is_subset(&legal), "samples are legal states");
    let all: HashSet<String> = draw(2000, 7).into_iter().collect();
    assert_eq!(all, legal, "2000 samples of 80 states take every point whole");
}

/// Stratified shares: every point first, the rest by size, none above its count.
#[test]
fn sample_shares_cover_every_point_then_follow_size() {
    let c = |v: &[u128]| v.iter().map(|&n| Count(n)).collect::<Vec<_>>();
    // One huge point (a checkpoint) among small ones: each small one still gets one.
    assert_eq!(shares(&c(&[1, 2, 32768, 1, 0, 4]), 20), [1, 1, 16, 1, 0, 1]);
    assert_eq!(shares(&c(&[1, 2, 32768, 1, 0, 4]), 300).iter().sum::<u128>(), 300);
    // Small points fill up; the space's size bounds the sample.
    assert_eq!(shares(&c(&[3, 5, 2]), 100), [3, 5, 2]);
    assert_eq!(shares(&c(&[10, 10]), 7), [4, 3]);
    // Fewer samples than points: spread evenly.
    assert_eq!(shares(&c(&[5, 5, 5, 5, 5, 5]), 3), [1, 0, 1, 0, 1, 0]);
    assert_eq!(shares(&c(&[]), 3), Vec::<u128>::new());
}
