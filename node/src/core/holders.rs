//! [`Holders`]: which peers hold which results, as their `Have` announcements said.
//!
//! Every node keeps an entry for every result announced in the mesh, so this is a node's
//! largest structure, and on a large mesh its busiest: every announcement reaches every node.
//! netsim, with a thousand cores in one process, spends most of its time here, nearly all of
//! it waiting for memory, so the layout is chosen to touch as few cache lines per
//! announcement as it can: one probe of a small table for the sender (which also holds its
//! count of entries and whether it is up), and one bucket of a [`JobTable`] per result.

use weft_protocol::{JobId, NodeId};

use std::hash::{Hash, Hasher};

use super::id_hash::IdHasher;
use super::job_table::JobTable;
use super::prefetch::prefetch;

/// Which peers hold which results, bounded to about `cap` job-to-holder entries: the least
/// recently announced go first.
///
/// An entry is 12 bytes: the job id's first 8 bytes and a [`HolderList`] (see
/// [`JobTable`]). Instead of a queue of every entry
/// in announcement order, entries live in two generations: new ones in `young`; when `young`
/// holds half the cap, `old` is dropped and `young` becomes `old`. An entry announced again
/// moves to `young`.
#[derive(Debug, Default)]
pub(super) struct Holders {
    young: JobTable,
    old: JobTable,
    /// Job-to-holder entries in each generation.
    young_entries: usize,
    old_entries: usize,
    /// Each peer ever seen, by id.
    slots: PeerIndex,
    /// Each peer's id, by its index.
    ids: Vec<NodeId>,
    /// The lists of [`HolderList`]s with several holders, by their index; empty ones are free
    /// (their indices in `free_many`).
    many: Vec<Vec<NodeId>>,
    free_many: Vec<u32>,
}

/// A peer, as the holder map knows it.
#[derive(Debug, Clone, Copy)]
// One cache line each: a lookup touches one line.
#[repr(align(64))]
struct PeerSlot {
    id: NodeId,
    /// Its index in [`Holders::ids`], which never changes.
    index: u32,
    /// Job-to-holder entries naming it.
    entries: u32,
    /// Whether it is up: the core tells the holder map itself (rather than have it look the
    /// peer up in its own table) so that an announcement costs one lookup of its sender.
    up: bool,
}

/// The holders of one result: one holder, by its index in [`Holders::ids`], or with
/// [`HolderList::MANY`] set, several (rare: a result made twice, or fetched and announced),
/// by the index of their list in [`Holders::many`]. Four bytes, where an enum with a boxed
/// list took sixteen: with a thousand nodes each holding a hundred thousand entries, that is
/// a quarter of the memory. Never [`job_table::FREE`](super::job_table::FREE): peer indices
/// and list indices stay far below 2^31.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HolderList(u32);

impl HolderList {
    const MANY: u32 = 1 << 31;

    /// The index of its list in [`Holders::many`], when it has several holders.
    fn many(self) -> Option<usize> {
        (self.0 & HolderList::MANY != 0).then_some((self.0 & !HolderList::MANY) as usize)
    }
}

/// The peers by id: a hash table with the entries in place (open addressing, linear
/// probing, at most half full), so that finding a peer reads one cache line where a
/// `HashMap` reads two (its control bytes, then the entry). Peers are never removed.
#[derive(Debug, Default)]
struct PeerIndex {
    /// A power of two in length (or empty); free entries have `index` [`PeerIndex::FREE`].
    entries: Vec<PeerSlot>,
    len: usize,
}

impl PeerIndex {
    const FREE: u32 = u32::MAX;

    /// Where the probe for `peer` starts (`None` when the table is empty).
    fn home(&self, peer: &NodeId) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mut hasher = IdHasher::default();
        peer.hash(&mut hasher);
        Some(hasher.finish() as usize & (self.entries.len() - 1))
    }

    /// Where `peer` is, or the free entry where it would go (`None` when the table is
    /// empty).
    fn position(&self, peer: &NodeId) -> Option<usize> {
        let mut pos = self.home(peer)?;
        let mask = self.entries.len() - 1;
        // Terminates: the table is at most half full.
        loop {
            let entry = &self.entries[pos];
            if entry.index == PeerIndex::FREE || entry.id == *peer {
                return Some(pos);
            }
            pos = (pos + 1) & mask;
        }
    }

    fn get(&self, peer: &NodeId) -> Option<&PeerSlot> {
        let pos = self.position(peer)?;
        let entry = &self.entries[pos];
        (entry.index != PeerIndex::FREE).then_some(entry)
    }

    fn get_mut(&mut self, peer: &NodeId) -> Option<&mut PeerSlot> {
        let pos = self.position(peer)?;
        let entry = &mut self.entries[pos];
        (entry.index != PeerIndex::FREE).then_some(entry)
    }

    /// `peer`'s entry, made with index `index` if it has none.
    fn get_or_insert(&mut self, peer: NodeId, index: u32) -> &mut PeerSlot {
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow();
        }
        // The table is not empty after `grow`.
        let pos = self.position(&peer).unwrap_or(0);
        let entry = &mut self.entries[pos];
        if entry.index == PeerIndex::FREE {
            *entry = PeerSlot {
                id: peer,
                index,
                entries: 0,
                up: false,
            };
            self.len += 1;
        }
        entry
    }

    fn grow(&mut self) {
        let size = (2 * self.entries.len()).max(16);
        let free = PeerSlot {
            id: NodeId([0; 32]),
            index: PeerIndex::FREE,
            entries: 0,
            up: false,
        };
        let old = std::mem::replace(&mut self.entries, vec![free; size]);
        for slot in old {
            if slot.index != PeerIndex::FREE
                && let Some(pos) = self.position(&slot.id)
            {
                self.entries[pos] = slot;
            }
        }
    }
}

impl Holders {
    /// `peer`'s index, given one if it has none.
    fn index_of(&mut self, peer: NodeId) -> u32 {
        let next = self.ids.len() as u32;
        let index = self.slots.get_or_insert(peer, next).index;
        if index == next {
            self.ids.push(peer);
        }
        index
    }

    /// `peer` came up: its announcements count from now on.
    pub(super) fn peer_up(&mut self, peer: NodeId) {
        let next = self.ids.len() as u32;
        let slot = self.slots.get_or_insert(peer, next);
        slot.up = true;
        if slot.index == next {
            self.ids.push(peer);
        }
    }

    /// `peer` went down: its entries go, and its announcements no longer count.
    pub(super) fn peer_down(&mut self, peer: NodeId) {
        let Some(slot) = self.slots.get_mut(&peer) else {
            return;
        };
        slot.up = false;
        if slot.entries == 0 {
            return;
        }
        slot.entries = 0;
        let index = slot.index;
        let mut removed = [0usize; 2];
        let mut freed = Vec::new();
        for (map, removed) in [&mut self.young, &mut self.old]
            .into_iter()
            .zip(&mut removed)
        {
            map.retain(|value| match HolderList(*value).many() {
                None => {
                    let keep = *value != index;
                    if !keep {
                        *removed += 1;
                    }
                    keep
                }
                Some(i) => {
                    let ids = &mut self.many[i];
                    let before = ids.len();
                    ids.retain(|id| *id != peer);
                    *removed += before - ids.len();
                    if ids.is_empty() {
                        freed.push(HolderList(*value));
                    }
                    !ids.is_empty()
                }
            });
        }
        for list in freed {
            self.free(list);
        }
        self.young_entries -= removed[0];
        self.old_entries -= removed[1];
    }

    /// `peer` announced `jobs`; false (and nothing recorded) if it is not up.
    pub(super) fn announced(&mut self, jobs: &[JobId], peer: NodeId, cap: usize) -> bool {
        let Some(&PeerSlot {
            index, up: true, ..
        }) = self.slots.get(&peer)
        else {
            return false;
        };
        let mut added = 0;
        for job in jobs {
            added += u32::from(self.add_one(*job, peer, index, cap));
        }
        if added > 0
            && let Some(slot) = self.slots.get_mut(&peer)
        {
            slot.entries = slot.entries.saturating_add(added);
        }
        true
    }

    /// `peer` holds `job` (whether or not it is up).
    pub(super) fn add(&mut self, job: JobId, peer: NodeId, cap: usize) {
        let index = self.index_of(peer);
        if self.add_one(job, peer, index, cap)
            && let Some(slot) = self.slots.get_mut(&peer)
        {
            slot.entries = slot.entries.saturating_add(1);
        }
    }

    /// Records that `peer` (at `index`) holds `job`; whether that is a new entry. The caller
    /// counts it in the peer's slot.
    fn add_one(&mut self, job: JobId, peer: NodeId, index: u32, cap: usize) -> bool {
        // One probe of `young` for the usual case, a result not seen before (`old` is
        // empty unless the cap was reached).
        let added = if let Some(value) = self.young.get_mut(&job) {
            let (list, added) = with_holder(
                &mut self.many,
                &mut self.free_many,
                &self.ids,
                HolderList(*value),
                peer,
                index,
            );
            *value = list.0;
            added
        } else {
            let (list, added) = match self.old.remove(&job) {
                None => (HolderList(index), true),
                Some(value) => {
                    let list = HolderList(value);
                    let n = match list.many() {
                        None => 1,
                        Some(i) => self.many[i].len(),
                    };
                    self.old_entries -= n;
                    self.young_entries += n;
                    with_holder(
                        &mut self.many,
                        &mut self.free_many,
                        &self.ids,
                        list,
                        peer,
                        index,
                    )
                }
            };
            self.young.insert_new(&job, list.0);
            added
        };
        if added {
            self.young_entries += 1;
        }
        let cap = cap.max(1);
        if self.young_entries + self.old_entries > cap && self.young_entries >= cap.div_ceil(2) {
            self.drop_old();
        }
        added
    }

    /// The old generation goes, and the young one becomes old.
    fn drop_old(&mut self) {
        let old = std::mem::take(&mut self.old);
        let mut dropped = vec![0u32; self.ids.len()];
        for list in old.values().map(HolderList) {
            match list.many() {
                None => {
                    if let Some(n) = dropped.get_mut(list.0 as usize) {
                        *n += 1;
                    }
                }
                Some(i) => {
                    for id in &self.many[i] {
                        if let Some(slot) = self.slots.get(id) {
                            dropped[slot.index as usize] += 1;
                        }
                    }
                    self.free(list);
                }
            }
        }
        for (index, n) in dropped.into_iter().enumerate() {
            if n > 0
                && let Some(slot) = self.slots.get_mut(&self.ids[index])
            {
                slot.entries = slot.entries.saturating_sub(n);
            }
        }
        self.old = std::mem::take(&mut self.young);
        self.old_entries = self.young_entries;
        self.young_entries = 0;
    }

    /// Frees a list of several holders.
    fn free(&mut self, list: HolderList) {
        if let Some(i) = list.many()
            && let Some(ids) = self.many.get_mut(i)
        {
            *ids = Vec::new();
            self.free_many.push(i as u32);
        }
    }

    /// Entries naming `peer`.
    pub(super) fn count(&self, peer: &NodeId) -> usize {
        self.slots.get(peer).map_or(0, |slot| slot.entries as usize)
    }

    /// The peers that announced `job`.
    pub(super) fn get(&self, job: &JobId) -> &[NodeId] {
        let Some(list) = self.young.get(job).or_else(|| self.old.get(job)) else {
            return &[];
        };
        let list = HolderList(list);
        match list.many() {
            None => self
                .ids
                .get(list.0 as usize)
                .map(std::slice::from_ref)
                .unwrap_or(&[]),
            Some(i) => self.many.get(i).map_or(&[], Vec::as_slice),
        }
    }

    /// Asks the CPU to load what [`Holders::announced`] will read first for an
    /// announcement of `job` by `peer`: the peer's entry and `job`'s bucket.
    pub(super) fn prefetch(&self, peer: &NodeId, job: &JobId) {
        // Only where the probes start: reading the entries now would wait for them.
        if let Some(pos) = self.slots.home(peer) {
            prefetch(&self.slots.entries[pos]);
        }
        self.young.prefetch(job);
    }

    /// Whether `peer` announced `job`.
    pub(super) fn holds(&self, job: &JobId, peer: NodeId) -> bool {
        self.get(job).contains(&peer)
    }
}

/// `list` with `peer` (at `index`) among its holders, and whether it was not already.
fn with_holder(
    many: &mut Vec<Vec<NodeId>>,
    free_many: &mut Vec<u32>,
    ids: &[NodeId],
    list: HolderList,
    peer: NodeId,
    index: u32,
) -> (HolderList, bool) {
    match list.many() {
        None if list.0 == index => (list, false),
        None => {
            let mut holders = Vec::with_capacity(2);
            holders.extend(ids.get(list.0 as usize).copied());
            holders.push(peer);
            let i = match free_many.pop() {
                Some(i) => {
                    many[i as usize] = holders;
                    i
                }
                None => {
                    many.push(holders);
                    (many.len() - 1) as u32
                }
            };
            (HolderList(i | HolderList::MANY), true)
        }
        Some(i) if many[i].contains(&peer) => (list, false),
        Some(i) => {
            many[i].push(peer);
            (list, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use weft_protocol::{Digest, JobId, NodeId};

    use super::Holders;

    fn job(i: u32) -> JobId {
        JobId(Digest::of(&i.to_le_bytes()))
    }

    fn node(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    /// Random announcements, reports and peers going down, against a model without
    /// generations and a cap too large to drop anything: the holders and counts agree.
    #[test]
    fn agrees_with_a_model_while_nothing_ages_out() {
        let mut holders = Holders::default();
        let mut model: BTreeMap<JobId, Vec<NodeId>> = BTreeMap::new();
        let mut up: BTreeSet<NodeId> = BTreeSet::new();
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..20_000 {
            let peer = node((next() % 6) as u8);
            match next() % 10 {
                0 => {
                    holders.peer_up(peer);
                    up.insert(peer);
                }
                1 => {
                    holders.peer_down(peer);
                    up.remove(&peer);
                    for list in model.values_mut() {
                        list.retain(|p| *p != peer);
                    }
                    model.retain(|_, list| !list.is_empty());
                }
                2 => {
                    let j = job((next() % 300) as u32);
                    holders.add(j, peer, usize::MAX);
                    let list = model.entry(j).or_default();
                    if !list.contains(&peer) {
                        list.push(peer);
                    }
                }
                _ => {
                    let jobs: Vec<JobId> = (0..next() % 4)
                        .map(|_| job((next() % 300) as u32))
                        .collect();
                    let counted = holders.announced(&jobs, peer, usize::MAX);
                    assert_eq!(counted, up.contains(&peer));
                    if counted {
                        for j in jobs {
                            let list = model.entry(j).or_default();
                            if !list.contains(&peer) {
                                list.push(peer);
                            }
                        }
                    }
                }
            }
        }
        for i in 0..300 {
            let j = job(i);
            assert_eq!(
                holders.get(&j),
                model.get(&j).map_or(&[][..], Vec::as_slice),
                "job {i}"
            );
        }
        for p in 0..6 {
            let expected = model.values().filter(|l| l.contains(&node(p))).count();
            assert_eq!(holders.count(&node(p)), expected, "peer {p}");
        }
    }

    #[test]
    fn the_least_recently_announced_age_out_and_counts_follow() {
        let mut holders = Holders::default();
        holders.peer_up(node(1));
        holders.peer_up(node(2));
        for i in 0..100 {
            assert!(holders.announced(&[job(i)], node(1), 40));
        }
        // Re-announced by another peer: it moves to the young generation with two holders.
        assert!(holders.announced(&[job(99)], node(2), 40));
        for i in 100..110 {
            assert!(holders.announced(&[job(i)], node(1), 40));
        }
        assert!(holders.get(&job(0)).is_empty());
        assert_eq!(holders.get(&job(99)), &[node(1), node(2)]);
        assert_eq!(holders.get(&job(109)), &[node(1)]);
        let kept = (0..110)
            .filter(|i| !holders.get(&job(*i)).is_empty())
            .count();
        assert!(kept <= 41, "kept {kept}");
        assert_eq!(holders.count(&node(1)), kept);
        assert_eq!(holders.count(&node(2)), 1);
        holders.peer_down(node(1));
        assert_eq!(holders.get(&job(99)), &[node(2)]);
        assert_eq!(holders.count(&node(1)), 0);
        assert!(!holders.announced(&[job(5)], node(1), 40));
    }
}
