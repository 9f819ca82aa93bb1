//! Sharding: one exploration split over N machines (`--shard I/N`), each exploring a
//! deterministic part of the states the strategy generates into a results directory of
//! its own, merged afterwards into the one-machine results (`merge.rs`).
//!
//! The unit of the partition is the *crash point*: all states the strategy generates at
//! one point go to one shard. Minimization works per crash point (`minimize.rs`: a
//! point's failing states are shrunk in an order that depends on the others found
//! there), so a shard that has all of a point's states finds exactly the minimal states
//! a one-machine run finds. Points are dealt in the global generation order (epochs,
//! then points) to the shard with the least work so far (the number of states dealt to
//! it; ties to the lowest index), the greedy list schedule: every shard computes the
//! same assignment from the trace, model and strategy alone, and no shard's share of the
//! states exceeds another's by more than the largest point. Media-fault states are dealt
//! one by one the same way. The no-crash state is shard 0's, unless the trace ends
//! with a crash point (writes after the last flush): that point's state without a
//! drop has the no-crash state's id, so both belong to the shard of that point. Sampling draws the global
//! sample first (every shard walks every point through the same `Sampler`), so the
//! sample is the same whatever N is; only then is it partitioned.
//!
//! The logical level (`brink-logical`) has no minimization and no per-point counts up
//! front (its states stream from the strategy), so it deals states one by one, by a
//! hash of their id (`Shard::owns_state`): deterministic, and balanced in expectation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shard `index` of `count` (`I/N`, 0 ≤ I < N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Why a shard's spelling is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("a shard is written I/N (shard I of N, counted from 0), not '{text}'")]
    Syntax { text: String },
    #[error("a sharded run has at least one shard, not {count}")]
    NoShards { count: u32 },
    #[error("shard {index} of {count} does not exist: shards are numbered 0 to {}", count - 1)]
    OutOfRange { index: u32, count: u32 },
}

impl Shard {
    /// The whole exploration as a single shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards { count });
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the state `id` belongs to this shard at the logical level (module docs).
    pub fn owns_state(&self, id: &str) -> bool {
        let h = blake3::hash(id.as_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        n % u64::from(self.count) == u64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax { text: s.to_string() };
        let (i, n) = s.split_once('/').ok_or_else(syntax)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(n) {
            return Err(syntax());
        }
        Shard::new(i.parse().map_err(|_| syntax())?, n.parse().map_err(|_| syntax())?)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Written as `"I/N"` in `run.json` and `summary.json`.
impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The deal of work to shards (module docs), replayed identically by every shard.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    shard: Shard,
    /// States dealt to each shard so far.
    loads: Vec<u64>,
    /// The last crash point dealt: its position, and whether it is this shard's.
    last_point: Option<(u64, bool)>,
}

impl Partition {
    pub(crate) fn new(shard: Shard) -> Partition {
        Partition { shard, loads: vec![0; shard.count as usize], last_point: None }
    }

    /// Deal the next unit of `weight` states; true if it is this shard's.
    pub(crate) fn take(&mut self, weight: u64) -> bool {
        let (least, _) = self.loads.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).expect("at least one shard");
        self.loads[least] += weight;
        least == self.shard.index as usize
    }

    /// Deal the crash point at `position`, where the strategy generates `states`; true if
    /// it is this shard's.
    pub(crate) fn take_point(&mut self, position: u64, states: u64) -> bool {
        let mine = self.take(states);
        self.last_point = Some((position, mine));
        mine
    }

    /// Whether the no-crash state (id `end`, the trace's event count) is this shard's,
    /// once every point was dealt (module docs).
    pub(crate) fn has_no_crash(&self, end: u64) -> bool {
        match self.last_point {
            Some((position, mine)) if position == end => mine,
            _ => self.shard.index == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Partition, Shard, ShardError};

    #[test]
    fn shards_parse_and_refuse() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::NoShards { count: 0 }));
        assert_eq!("3/2".parse::<Shard>(), Err(ShardError::OutOfRange { index: 3, count: 2 }));
        for bad in ["", "a/b", "1", "1/", "/2", "-1/2", "+1/2", "1/2/3", " 1/2", "99999999999/2"] {
            assert!(matches!(bad.parse::<Shard>(), Err(ShardError::Syntax { .. })), "{bad}");
        }
        assert_eq!(Shard { index: 2, count: 7 }.to_string(), "2/7");
    }

    #[test]
    fn every_unit_goes_to_exactly_one_shard_and_the_deal_is_balanced() {
        let weights = [5u64, 1, 1, 8, 2, 2, 3, 1, 9, 4, 4, 1];
        let n = 3;
        let mut parts: Vec<Partition> = (0..n).map(|i| Partition::new(Shard::new(i, n).unwrap())).collect();
        let mut loads = vec![0u64; n as usize];
        for w in weights {
            let owners: Vec<usize> = parts.iter_mut().enumerate().filter_map(|(i, p)| p.take(w).then_some(i)).collect();
            assert_eq!(owners.len(), 1);
            loads[owners[0]] += w;
        }
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= 9, "{loads:?}");
    }
}
