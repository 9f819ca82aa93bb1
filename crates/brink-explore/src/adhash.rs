//! An additive (multiset) hash of disk images: the sum, modulo 2^256, of
//! blake3(sector index ‖ sector bytes) over every sector that is not all zeros.
//!
//! Why additive: a crash state differs from the durable image only in the sectors the
//! epoch wrote, so its hash is the durable image's hash minus those sectors' old terms
//! plus their new ones. Hashing a state then costs its footprint, not the image, and
//! identical images get identical hashes whatever writes produced them.

use std::fmt;

/// A 256-bit hash value; addition and subtraction wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ImageHash(pub [u64; 4]);

impl ImageHash {
    pub fn add(&mut self, o: &ImageHash) {
        let mut carry = 0u64;
        for i in 0..4 {
            let (s1, c1) = self.0[i].overflowing_add(o.0[i]);
            let (s2, c2) = s1.overflowing_add(carry);
            self.0[i] = s2;
            carry = (c1 as u64) + (c2 as u64);
        }
    }

    pub fn sub(&mut self, o: &ImageHash) {
        let mut borrow = 0u64;
        for i in 0..4 {
            let (d1, b1) = self.0[i].overflowing_sub(o.0[i]);
            let (d2, b2) = d1.overflowing_sub(borrow);
            self.0[i] = d2;
            borrow = (b1 as u64) + (b2 as u64);
        }
    }

    /// The term of one sector (zero for an all-zero sector).
    pub fn sector(index: u64, bytes: &[u8]) -> ImageHash {
        if bytes.iter().all(|&b| b == 0) {
            return ImageHash::default();
        }
        let mut h = blake3::Hasher::new();
        h.update(&index.to_le_bytes());
        h.update(bytes);
        let out = h.finalize();
        let b = out.as_bytes();
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        ImageHash([word(0), word(1), word(2), word(3)])
    }

    /// Add the terms of consecutive sectors starting at `first`.
    pub fn add_sectors(&mut self, first: u64, bytes: &[u8]) {
        for (i, s) in bytes.chunks(SECTOR).enumerate() {
            self.add(&ImageHash::sector(first + i as u64, s));
        }
    }

    pub fn sub_sectors(&mut self, first: u64, bytes: &[u8]) {
        for (i, s) in bytes.chunks(SECTOR).enumerate() {
            self.sub(&ImageHash::sector(first + i as u64, s));
        }
    }
}

const SECTOR: usize = 512;

impl fmt::Display for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in self.0.iter().rev() {
            write!(f, "{w:016x}")?;
        }
        Ok(())
    }
}

/// A hash as `Display` writes it: 64 hex digits, most significant word first.
impl std::str::FromStr for ImageHash {
    type Err = BadHash;

    fn from_str(hex: &str) -> Result<ImageHash, BadHash> {
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(BadHash);
        }
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().enumerate() {
            let at = (3 - i) * 16;
            *w = u64::from_str_radix(&hex[at..at + 16], 16).map_err(|_| BadHash)?;
        }
        Ok(ImageHash(words))
    }
}

/// Text that is not an image hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an image hash (64 hex digits)")]
pub struct BadHash;

#[cfg(test)]
mod tests {
    use super::ImageHash;

    #[test]
    fn text_reads_back() {
        let mut h = ImageHash::sector(3, &[1u8; 512]);
        h.add(&ImageHash::sector(9, &[2u8; 512]));
        assert_eq!(h.to_string().parse::<ImageHash>(), Ok(h));
        for bad in ["", "12", &"g".repeat(64), &"é".repeat(32)] {
            assert!(bad.parse::<ImageHash>().is_err(), "{bad}");
        }
    }
}
