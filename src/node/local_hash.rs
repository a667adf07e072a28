//! A fast hash for the process table's own keys: local process numbers and
//! registered names.
//!
//! Every message delivered looks a process up by number or by name, and the
//! standard SipHash took more instructions per small message than the
//! mailbox push. SipHash protects a map from keys chosen to collide, which
//! needs the chooser to insert them; these maps hold only what this node
//! inserts (numbers it allocates, names its own code registers), so a peer can
//! only look keys up, which no choice of key slows down.

use std::hash::{BuildHasher, Hasher};

/// Builds [`LocalHasher`]s.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LocalHash;

impl BuildHasher for LocalHash {
    type Hasher = LocalHasher;

    fn build_hasher(&self) -> LocalHasher {
        LocalHasher(0)
    }
}

/// Multiply-rotate hashing of 8-byte words (the scheme rustc uses for its own
/// tables): a few instructions per word.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalHasher(u64);

/// An odd constant with well-spread bits.
const K: u64 = 0xf135_7aea_2e62_a9c5;

impl LocalHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for LocalHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The product's best-mixed bits are the high ones; hashbrown indexes
        // buckets with the low ones.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn numbers_and_names_spread_and_find_their_entries() {
        let mut by_number: HashMap<u32, u32, LocalHash> = HashMap::default();
        let mut by_name: HashMap<String, u32, LocalHash> = HashMap::default();
        for n in 0..10_000u32 {
            by_number.insert(n << 3, n);
            by_name.insert(format!("server_{n}"), n);
        }
        for n in 0..10_000u32 {
            assert_eq!(by_number.get(&(n << 3)), Some(&n));
            assert_eq!(by_name.get(format!("server_{n}").as_str()), Some(&n));
        }
        assert_eq!(by_name.get("server_"), None);
        // Distinct small keys get distinct hashes.
        let hashes: std::collections::HashSet<u64> =
            (0..10_000u32).map(|n| LocalHash.hash_one(n)).collect();
        assert_eq!(hashes.len(), 10_000);
    }
}
