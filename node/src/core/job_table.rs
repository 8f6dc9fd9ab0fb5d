//! [`JobTable`]: a hash table from job id to a `u32`, laid out so that an insert or a lookup
//! reads one cache line.
//!
//! The holder map keeps an entry for every result announced in the mesh, and takes an insert
//! for every announcement, so on a large mesh it is a node's largest structure and its
//! commonest event. With a thousand cores in one process (netsim), nearly all of that time
//! is spent waiting for memory. A `HashMap<JobId, u32>` reads two cache lines per insert (a
//! control byte, then the 36-byte entry) and takes about 37 bytes per slot. Here:
//!
//! - A bucket is one 64-byte cache line holding five entries and a count of the entries
//!   that had to go past it (`overflow`, as in folly's F14): a lookup reads its home bucket
//!   and stops there unless that count says an entry lives further on, which at the load
//!   kept (at most four entries in five slots) is rare. There is no control-byte array.
//! - An entry keeps the first 8 bytes of the job id, not all 32 (12 bytes an entry with its
//!   value, where the full id took 36). Ids are blake3 digests: two distinct ids share their
//!   first 8 bytes with odds of 2^-64, so a table of a million results has a collision
//!   with odds of about 1 in 37 million; a peer that made one on purpose (it would have to
//!   find it first) gains nothing it could not have by announcing the real id. What a
//!   collision does is merge two jobs' holder lists, so a holder is asked for a result it
//!   does not have, which a node survives anyway (the answer is a miss).
//! - Removing an entry leaves no tombstone: the overflow counts along its probe path go
//!   down instead.

use weft_protocol::JobId;

/// The key kept for a job: the first 8 bytes of its id (see the module documentation).
fn key(job: &JobId) -> u64 {
    let bytes = job.0.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

/// Entries per bucket.
const WIDTH: usize = 5;

/// A value no entry may hold: it marks a free slot.
pub(super) const FREE: u32 = u32::MAX;

/// An `overflow` count that stopped counting: it never goes down again (F14's rule), so
/// that a lookup never stops short of an entry.
const SATURATED: u32 = u32::MAX;

/// Five entries in one cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; WIDTH],
    /// [`FREE`] where the slot is free.
    values: [u32; WIDTH],
    /// Entries whose probe started at or before this bucket and that live after it.
    overflow: u32,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        keys: [0; WIDTH],
        values: [FREE; WIDTH],
        overflow: 0,
    };

    fn find(&self, key: u64) -> Option<usize> {
        (0..WIDTH).find(|&i| self.values[i] != FREE && self.keys[i] == key)
    }

    fn free_slot(&self) -> Option<usize> {
        self.values.iter().position(|v| *v == FREE)
    }
}

/// A map from job id (its first 8 bytes) to a `u32` other than [`FREE`]; see the module
/// documentation.
#[derive(Debug, Default)]
pub(super) struct JobTable {
    /// A power of two in length, or empty.
    buckets: Vec<Bucket>,
    len: usize,
}

impl JobTable {
    /// Entries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// The bucket where `key`'s probe starts.
    fn home(&self, key: u64) -> usize {
        // The ids are digests already; the multiply only guards against ids made to share
        // their low bits (and spreads the test suites' ids).
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & (self.buckets.len() - 1)
    }

    /// Where `key` is: its bucket and slot.
    fn position(&self, key: u64) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut b = self.home(key);
        // Bounded by the table's size: with counts saturated, the probe could otherwise
        // go round a table whose every bucket says "more further on".
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            if let Some(i) = bucket.find(key) {
                return Some((b, i));
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = (b + 1) & mask;
        }
        None
    }

    /// The value of `job`.
    pub(super) fn get(&self, job: &JobId) -> Option<u32> {
        let (b, i) = self.position(key(job))?;
        Some(self.buckets[b].values[i])
    }

    /// The value of `job`, to change (not to [`FREE`]).
    pub(super) fn get_mut(&mut self, job: &JobId) -> Option<&mut u32> {
        let (b, i) = self.position(key(job))?;
        Some(&mut self.buckets[b].values[i])
    }

    /// Adds `job` with `value`; `job` must not be in the table (check with
    /// [`JobTable::get_mut`] first).
    pub(super) fn insert_new(&mut self, job: &JobId, value: u32) {
        debug_assert_ne!(value, FREE);
        debug_assert!(self.get(job).is_none());
        // At most four entries in five slots: probes stay short.
        if 5 * (self.len + 1) > 4 * WIDTH * self.buckets.len() {
            self.grow();
        }
        self.place(key(job), value);
        self.len += 1;
    }

    /// Puts an entry in the first free slot from its home on, counting it in the overflow
    /// of every bucket it passes. The table has a free slot.
    fn place(&mut self, key: u64, value: u32) {
        let mask = self.buckets.len() - 1;
        let mut b = self.home(key);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.free_slot() {
                bucket.keys[i] = key;
                bucket.values[i] = value;
                return;
            }
            if bucket.overflow != SATURATED {
                bucket.overflow += 1;
            }
            b = (b + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (2 * self.buckets.len()).max(2);
        let old = std::mem::replace(&mut self.buckets, vec![Bucket::EMPTY; size]);
        for bucket in &old {
            for i in 0..WIDTH {
                if bucket.values[i] != FREE {
                    self.place(bucket.keys[i], bucket.values[i]);
                }
            }
        }
    }

    /// Removes `job`; its value.
    pub(super) fn remove(&mut self, job: &JobId) -> Option<u32> {
        let key = key(job);
        let (b, i) = self.position(key)?;
        Some(self.remove_at(key, b, i))
    }

    /// Frees slot `i` of bucket `b`, which holds `key`, and takes the entry out of the
    /// overflow counts on its way from its home.
    fn remove_at(&mut self, key: u64, b: usize, i: usize) -> u32 {
        let value = std::mem::replace(&mut self.buckets[b].values[i], FREE);
        self.len -= 1;
        let mask = self.buckets.len() - 1;
        let mut passed = self.home(key);
        while passed != b {
            let bucket = &mut self.buckets[passed];
            if bucket.overflow != SATURATED {
                bucket.overflow -= 1;
            }
            passed = (passed + 1) & mask;
        }
        value
    }

    /// Keeps the entries for which `keep` says so; `keep` may change the value (not to
    /// [`FREE`]).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&mut u32) -> bool) {
        for b in 0..self.buckets.len() {
            for i in 0..WIDTH {
                let bucket = &mut self.buckets[b];
                if bucket.values[i] == FREE || keep(&mut bucket.values[i]) {
                    continue;
                }
                // Other entries stay where they are, so the scan misses none.
                let key = bucket.keys[i];
                self.remove_at(key, b, i);
            }
        }
    }

    /// Every value, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.values)
            .filter(|v| *v != FREE)
    }

    /// Asks the CPU to load the bucket where `job`'s probe starts (see
    /// [`super::prefetch`]).
    pub(super) fn prefetch(&self, job: &JobId) {
        if !self.buckets.is_empty() {
            super::prefetch::prefetch(&self.buckets[self.home(key(job))]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weft_protocol::{Digest, JobId};

    use super::JobTable;

    fn job(i: u32) -> JobId {
        JobId(Digest::of(&i.to_le_bytes()))
    }

    /// Random inserts, changes, removals and retains against a `BTreeMap`; a small key
    /// space keeps the table crowded with removals, so the overflow counts are exercised.
    #[test]
    fn agrees_with_a_btree_map() {
        let mut table = JobTable::default();
        let mut model: BTreeMap<JobId, u32> = BTreeMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..200_000u32 {
            let j = job((next() % 2_000) as u32);
            match next() % 8 {
                0..=3 => {
                    if let Some(value) = table.get_mut(&j) {
                        *value = step;
                    } else {
                        table.insert_new(&j, step);
                    }
                    model.insert(j, step);
                }
                4..=5 => assert_eq!(table.remove(&j), model.remove(&j)),
                6 => assert_eq!(table.get(&j), model.get(&j).copied()),
                _ if step % 1_000 == 0 => {
                    let cut = (next() % 4) as u32;
                    table.retain(|v| *v % 4 != cut);
                    model.retain(|_, v| *v % 4 != cut);
                }
                _ => {}
            }
            assert_eq!(table.len(), model.len());
        }
        for i in 0..2_000 {
            let j = job(i);
            assert_eq!(table.get(&j), model.get(&j).copied(), "job {i}");
        }
        let mut values: Vec<u32> = table.values().collect();
        values.sort_unstable();
        let mut expected: Vec<u32> = model.values().copied().collect();
        expected.sort_unstable();
        assert_eq!(values, expected);
    }

    /// Many entries whose probes all start in one bucket: lookups find every one past the
    /// crowded buckets, and removing them brings the overflow counts back to what they were.
    #[test]
    fn entries_sharing_a_home_bucket() {
        let mut table = JobTable::default();
        for i in 0..200 {
            table.insert_new(&job(i), i);
        }
        let counts =
            |table: &JobTable| -> Vec<u32> { table.buckets.iter().map(|b| b.overflow).collect() };
        let before = counts(&table);
        // Keys that are multiples of 2^56 give products with K whose bits 32 to 55 are
        // zero: all of them start in bucket 0 (in a table of up to 2^24 buckets).
        let crafted: Vec<JobId> = (1..=40u64)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&(i << 56).to_le_bytes());
                JobId(Digest::from_bytes(bytes))
            })
            .collect();
        assert!(crafted.iter().all(|j| table.home(super::key(j)) == 0));
        for (n, j) in crafted.iter().enumerate() {
            table.insert_new(j, 1_000 + n as u32);
        }
        assert!(table.buckets[0].overflow >= 35);
        for (n, j) in crafted.iter().enumerate() {
            assert_eq!(table.get(j), Some(1_000 + n as u32));
        }
        for i in 0..200 {
            assert_eq!(table.get(&job(i)), Some(i));
        }
        for j in crafted.iter().rev() {
            assert!(table.remove(j).is_some());
        }
        assert_eq!(table.len(), 200);
        assert_eq!(counts(&table), before);
        for i in 0..200 {
            assert_eq!(table.get(&job(i)), Some(i));
        }
    }
}
