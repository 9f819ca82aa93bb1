//! Exact state counts. Spaces grow as 2^writes, so counts are u128 and saturate; a
//! saturated count is reported as such, never as a wrong number.

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Count(pub u128);

impl Count {
    pub const ZERO: Count = Count(0);
    pub const ONE: Count = Count(1);
    pub const MAX: Count = Count(u128::MAX);

    pub fn saturated(self) -> bool {
        self.0 == u128::MAX
    }
    /// The sum, saturating at [`Count::MAX`].
    #[expect(
        clippy::should_implement_trait,
        reason = "saturating: a `+` would hide that the sum stops at Count::MAX, which callers must report"
    )]
    pub fn add(self, o: Count) -> Count {
        Count(self.0.saturating_add(o.0))
    }
    /// The product, saturating at [`Count::MAX`].
    #[expect(
        clippy::should_implement_trait,
        reason = "saturating: a `*` would hide that the product stops at Count::MAX, which callers must report"
    )]
    pub fn mul(self, o: Count) -> Count {
        Count(self.0.saturating_mul(o.0))
    }
    /// 2^n, saturating.
    pub fn pow2(n: u64) -> Count {
        if n >= 128 { Count::MAX } else { Count(1u128 << n) }
    }
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.saturated() { write!(f, "more than {}", u128::MAX) } else { write!(f, "{}", self.0) }
    }
}

/// JSON: a number when it fits in u64 (what JSON readers handle), else a string.
impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(self.0) {
            Ok(v) if !self.saturated() => s.serialize_u64(v),
            _ => s.serialize_str(&self.to_string()),
        }
    }
}
