//! State ids: `P[-I|-ItMASK]…` (see the crate docs).

use std::fmt;
use std::str::FromStr;

/// What happened to a volatile write that did not persist whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteChoice {
    Omitted,
    /// Persisted sectors: bit i of word i/64 is sector i of the write.
    Torn(Vec<u64>),
}

impl WriteChoice {
    /// The persisted-sector mask in hex, for a torn write.
    pub fn mask_hex(&self) -> Option<String> {
        match self {
            WriteChoice::Omitted => None,
            WriteChoice::Torn(mask) => Some(mask_hex(mask)),
        }
    }

    /// Whether sector `i` of the write persisted.
    pub fn keeps_sector(&self, i: u32) -> bool {
        match self {
            WriteChoice::Omitted => false,
            WriteChoice::Torn(mask) => mask.get(i as usize / 64).is_some_and(|w| w >> (i % 64) & 1 == 1),
        }
    }
}

/// One media fault on the write at an event index (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MediaFault {
    /// The write's first half of sectors persists; the rest reads back as garbage.
    Garbage(u64),
    /// The write persists; reading its first sector fails.
    Latent(u64),
    /// The write's data lands next to its own sectors, which keep the old data.
    Misdirected(u64),
}

impl MediaFault {
    pub fn write(&self) -> u64 {
        match *self {
            MediaFault::Garbage(i) | MediaFault::Latent(i) | MediaFault::Misdirected(i) => i,
        }
    }

    /// The first sector of a garbage tear that reads back as garbage: the write keeps
    /// the sectors before it.
    pub fn garbage_from(sectors: u32) -> u32 {
        sectors / 2
    }

    /// How the faulted write itself persists: a garbage tear keeps its first half of
    /// sectors (the rest is overwritten with garbage), a misdirected write misses its
    /// own sectors, a write with a latent error persists whole.
    pub fn own_sectors(&self, sectors: u32) -> Option<WriteChoice> {
        match *self {
            MediaFault::Garbage(_) => {
                let half = Self::garbage_from(sectors) as usize;
                let mut mask = vec![0u64; half.div_ceil(64)];
                for i in 0..half {
                    mask[i / 64] |= 1 << (i % 64);
                }
                Some(WriteChoice::Torn(mask))
            }
            MediaFault::Misdirected(_) => Some(WriteChoice::Omitted),
            MediaFault::Latent(_) => None,
        }
    }

    /// Where a misdirected write of `len` bytes at `offset` lands: right after its own
    /// sectors, or right before them when that would run past the disk.
    pub fn misdirected_to(offset: u64, len: u64, disk: u64) -> Option<u64> {
        if offset + 2 * len <= disk { Some(offset + len) } else { offset.checked_sub(len) }
    }

    /// In words, for reports.
    pub fn describe(&self) -> String {
        match *self {
            MediaFault::Garbage(i) => format!("write {i} torn, its second half read back as garbage"),
            MediaFault::Latent(i) => format!("reading the first sector of write {i} fails (latent sector error)"),
            MediaFault::Misdirected(i) => format!("write {i} landed on the neighbouring sectors (misdirected)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateId {
    /// Crash just before this event index.
    pub position: u64,
    /// Volatile writes not persisted whole, by event index, ascending.
    pub choices: Vec<(u64, WriteChoice)>,
    /// At most one media fault.
    pub fault: Option<MediaFault>,
}

fn mask_hex(mask: &[u64]) -> String {
    let mut s: String = mask.iter().rev().map(|w| format!("{w:016x}")).collect();
    let trimmed = s.trim_start_matches('0');
    s = if trimmed.is_empty() { "0".into() } else { trimmed.into() };
    s
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position)?;
        for (index, c) in &self.choices {
            match c {
                WriteChoice::Omitted => write!(f, "-{index}")?,
                WriteChoice::Torn(mask) => write!(f, "-{index}t{}", mask_hex(mask))?,
            }
        }
        match self.fault {
            None => Ok(()),
            Some(MediaFault::Garbage(i)) => write!(f, "~g{i}"),
            Some(MediaFault::Latent(i)) => write!(f, "~l{i}"),
            Some(MediaFault::Misdirected(i)) => write!(f, "~m{i}"),
        }
    }
}

/// A state id that does not parse; holds the text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseIdError(pub String);

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad state id '{}': expected POSITION[-INDEX|-INDEXtHEXMASK]…[~gINDEX|~lINDEX|~mINDEX]", self.0)
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for StateId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<StateId, ParseIdError> {
        let bad = || ParseIdError(s.to_string());
        let (s_choices, fault) = match s.split_once('~') {
            None => (s, None),
            Some((head, f)) => {
                let index = |t: &str| t.parse::<u64>().map_err(|_| bad());
                let fault = match f.split_at_checked(1) {
                    Some(("g", i)) => MediaFault::Garbage(index(i)?),
                    Some(("l", i)) => MediaFault::Latent(index(i)?),
                    Some(("m", i)) => MediaFault::Misdirected(index(i)?),
                    _ => return Err(bad()),
                };
                (head, Some(fault))
            }
        };
        let mut parts = s_choices.split('-');
        let position = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let mut choices = Vec::new();
        for part in parts {
            let (index, choice) = match part.split_once('t') {
                None => (part.parse().map_err(|_| bad())?, WriteChoice::Omitted),
                Some((i, hex)) => {
                    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad());
                    }
                    let mut words = Vec::new();
                    let bytes = hex.as_bytes();
                    let mut end = bytes.len();
                    while end > 0 {
                        let start = end.saturating_sub(16);
                        let w = u64::from_str_radix(&hex[start..end], 16).map_err(|_| bad())?;
                        words.push(w);
                        end = start;
                    }
                    while words.last() == Some(&0) {
                        words.pop();
                    }
                    if words.is_empty() {
                        return Err(bad()); // an empty mask is "omitted", written without t
                    }
                    (i.parse().map_err(|_| bad())?, WriteChoice::Torn(words))
                }
            };
            if choices.last().is_some_and(|(last, _): &(u64, WriteChoice)| *last >= index) {
                return Err(bad());
            }
            choices.push((index, choice));
        }
        Ok(StateId { position, choices, fault })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_faults_in_ids_round_trip() {
        for s in ["120", "120-3-7tf", "120~g7", "120-3~l9", "5-1t3~m4"] {
            assert_eq!(s.parse::<StateId>().unwrap().to_string(), s);
        }
        assert_eq!("120~m7".parse::<StateId>().unwrap().fault, Some(MediaFault::Misdirected(7)));
        for bad in ["120~", "120~x7", "120~g", "120~g7~l8", "120~gx"] {
            assert!(bad.parse::<StateId>().is_err(), "{bad}");
        }
    }
}
