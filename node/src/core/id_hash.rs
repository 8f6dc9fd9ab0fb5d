//! [`IdHasher`]: a cheap hasher for maps keyed by ids that are already digests.
//!
//! A [`JobId`](weft_protocol::JobId) is a blake3 digest and a
//! [`NodeId`](weft_protocol::NodeId) a public key: their bytes are already spread evenly, so
//! SipHash (std's default) only adds cost. The holder map takes an insert for every result
//! announced in the mesh, and netsim measured SipHash as a fifth of its time at 100 nodes.
//! This hasher folds the key 8 bytes at a time with a multiply and mixes the result once.
//!
//! It is not keyed, so keys chosen to collide would make a map slow: only admitted peers
//! (team members, whose jobs this node runs anyway) can put ids into the core's maps.
//! Iteration order of a map with this hasher is fixed by its contents; the core never lets
//! that order decide anything.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The odd constant of the fold (from the golden ratio).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// See the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher {
    state: u64,
}

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // The fold's last multiply leaves the low bits depending on few input bits; the
        // table takes its bucket from the low bits and its tag from the high ones.
        let wide = u128::from(self.state) * u128::from(K);
        (wide as u64) ^ ((wide >> 64) as u64)
    }
}

/// Builds [`IdHasher`]s.
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A `HashMap` keyed by ids, with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, IdBuildHasher>;

/// A `HashSet` of ids, with [`IdHasher`].
pub type IdSet<K> = HashSet<K, IdBuildHasher>;

#[cfg(test)]
mod tests {
    use super::IdHasher;
    use std::hash::{Hash, Hasher};
    use weft_protocol::{Digest, JobId};

    fn hash_of(job: &JobId) -> u64 {
        let mut hasher = IdHasher::default();
        job.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn digests_spread_over_buckets_and_tags() {
        // 4096 ids into 4096 buckets by the low 12 bits, and by the top 7 bits (hashbrown's
        // tag): both should look uniform.
        let mut low = vec![0u32; 4096];
        let mut top = vec![0u32; 128];
        for i in 0..4096u32 {
            let h = hash_of(&JobId(Digest::of(&i.to_le_bytes())));
            low[(h & 4095) as usize] += 1;
            top[(h >> 57) as usize] += 1;
        }
        assert!(
            low.iter().all(|n| *n <= 9),
            "a bucket got {:?}",
            low.iter().max()
        );
        assert!(top.iter().all(|n| (8..=60).contains(n)), "tags: {top:?}");
    }

    #[test]
    fn ids_that_differ_in_one_byte_hash_apart() {
        let mut bytes = [7u8; 32];
        let a = hash_of(&JobId(Digest::from_bytes(bytes)));
        bytes[31] ^= 1;
        let b = hash_of(&JobId(Digest::from_bytes(bytes)));
        assert_ne!(a, b);
        assert_ne!(a & 0xffff, b & 0xffff);
    }
}
