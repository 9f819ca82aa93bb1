//! SplitMix64: a tiny seeded generator whose stream is fixed forever, so a sample with
//! a given seed names the same states in every version and on every machine.

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n), n > 0 (rejection sampling, no modulo bias).
    pub(crate) fn below(&mut self, n: u128) -> u128 {
        assert!(n > 0);
        if n == 1 {
            return 0;
        }
        let bits = 128 - (n - 1).leading_zeros();
        loop {
            let r = ((self.next_u64() as u128) << 64 | self.next_u64() as u128) >> (128 - bits);
            if r < n {
                return r;
            }
        }
    }
}
