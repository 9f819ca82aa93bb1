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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateId {
    /// Crash just before this event index.
    pub position: u64,
    /// Volatile writes not persisted whole, by event index, ascending.
    pub choices: Vec<(u64, WriteChoice)>,
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
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError(pub String);

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad state id '{}': expected POSITION[-INDEX|-INDEXtHEXMASK]…", self.0)
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for StateId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<StateId, ParseIdError> {
        let bad = || ParseIdError(s.to_string());
        let mut parts = s.split('-');
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
        Ok(StateId { position, choices })
    }
}
