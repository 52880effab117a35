//! A Bloom filter over the keys the store holds, so the common lookup — a key never seen
//! before — is answered without reading the record runs. A key the filter may hold is
//! looked up in the runs; a removed key leaves its bits set, which only costs a lookup.
//! It is filled with every key held while the store opens.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 2^24 bits (2 MiB): about 1% false positives at 1.7 million keys. Beyond that the
/// filter answers "maybe" more often and lookups fall back to the tree more often; it is
/// never wrong about a key it holds.
const BITS_LOG2: u32 = 24;
/// Bits set per key, here and in each run's filter: about the optimum for 10 bits a key.
pub(super) const PROBES: u64 = 7;

/// The bits a key with `hash` sets in a filter of `mask + 1` bits (a power of two), as
/// (word, bit mask) pairs. Double hashing: probe i is h1 + i·h2, h2 odd so the probes
/// differ.
pub(super) fn probes(hash: u64, mask: u64) -> impl Iterator<Item = (usize, u64)> {
    let step = hash.rotate_left(32) | 1;
    (0..PROBES).map(move |i| {
        let bit = hash.wrapping_add(i.wrapping_mul(step)) & mask;
        ((bit >> 6) as usize, 1u64 << (bit & 63))
    })
}

/// Set-only bits, shared by every thread without a lock.
pub(crate) struct KeyFilter {
    bits: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
}

impl KeyFilter {
    pub(crate) fn new() -> Self {
        let words = 1usize << (BITS_LOG2 - 6);
        Self {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn probes(&self, key: &[u8]) -> impl Iterator<Item = (usize, u64)> {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        probes(hasher.finish(), (1u64 << BITS_LOG2) - 1)
    }

    /// Adds `key`. Call before the key's record is written, so no lookup can find the
    /// record's key missing from the filter.
    pub(crate) fn insert(&self, key: &[u8]) {
        for (word, mask) in self.probes(key) {
            self.bits[word].fetch_or(mask, Ordering::Relaxed);
        }
    }

    /// False only if `key` was certainly never inserted.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .all(|(word, mask)| self.bits[word].load(Ordering::Relaxed) & mask != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_inserted_and_rejects_most_of_the_rest() {
        let filter = KeyFilter::new();
        for i in 0..100_000 {
            filter.insert(format!("order-{i}").as_bytes());
        }
        assert!((0..100_000).all(|i| filter.may_contain(format!("order-{i}").as_bytes())));
        let false_positives = (0..100_000)
            .filter(|i| filter.may_contain(format!("other-{i}").as_bytes()))
            .count();
        assert!(false_positives < 100, "{false_positives} false positives");
    }
}
