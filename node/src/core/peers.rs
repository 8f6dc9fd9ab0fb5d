//! [`PeerTable`]: what this node knows of each admitted peer: its last beacon, its failures
//! and when it is avoided, when it may be asked for work again, which peers are busy (the
//! steal candidates) and which are fast (the ones jobs are reserved for).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weft_protocol::NodeId;
use weft_protocol::wire::{LoadBeacon, SharePolicy};

use super::Time;
use super::id_hash::IdMap;
use super::leases::Lent;
use super::scheduler::Reserve;

/// How much faster than another a node must be to be given the jobs that other would take
/// ([`faster`]): a quarter, so that two machines of one kind, whose measured speeds differ by a
/// few percent, never wait for each other.
const FASTER: (u32, u32) = (5, 4);

/// The longest a thief waits before asking a victim that turned it away again (the backoff
/// doubles from [`super::CoreConfig::steal_backoff`] up to this).
const MAX_STEAL_BACKOFF: Duration = Duration::from_secs(1);

/// Jobs expected to run less than this many reserve windows
/// ([`super::CoreConfig::reserve_for`]) are never reserved for a faster peer: the wait could
/// cost more than the faster run saves.
const MIN_RESERVED_JOB_IN_WINDOWS: u32 = 10;

/// Whether `speed` is at least [`FASTER`] times `than`.
pub(super) fn faster(speed: u32, than: u32) -> bool {
    u64::from(speed) * u64::from(FASTER.1) >= u64::from(than) * u64::from(FASTER.0)
}

/// The jobs in a peer's beacon that a node of `speed` may be given: those it reserves for
/// faster peers are left out unless this node is one of them.
pub(super) fn open_queue(beacon: &LoadBeacon, speed: u32) -> u32 {
    if faster(speed, beacon.speed) {
        beacon.queue_len
    } else {
        beacon.queue_len.saturating_sub(beacon.reserved)
    }
}

/// What this node knows of one peer.
#[derive(Debug)]
pub(super) struct PeerState {
    pub(super) beacon: Option<LoadBeacon>,
    pub(super) beacon_at: Option<Time>,
    pub(super) failures: u32,
    pub(super) avoid_until: Option<Time>,
    steal_backoff_until: Time,
    steal_backoff: Duration,
}

impl PeerState {
    /// When it may be asked for work: after its backoff, and after the time it is avoided.
    fn steal_ready(&self) -> Time {
        self.steal_backoff_until
            .max(self.avoid_until.unwrap_or(Time::ZERO))
    }

    /// Whether it is avoided at `now` (it kept failing jobs for reasons of its own).
    pub(super) fn is_avoided(&self, now: Time) -> bool {
        self.avoid_until.is_some_and(|until| until > now)
    }
}

/// Every admitted peer, with the indexes the core reads after every event, as a node of one
/// speed on one platform sees them.
#[derive(Debug)]
pub(super) struct PeerTable {
    /// This node's speed.
    speed: u32,
    /// This node's platform: busy peers on another have no work for it.
    platform: String,
    /// Only looked up (every gossip message looks its sender up); listed sorted.
    peers: IdMap<NodeId, PeerState>,
    /// Peers whose last beacon said they have jobs queued on this platform that this node may
    /// be given: the steal candidates, kept as beacons come so that a steal attempt does not
    /// scan every peer. Each with when it may be asked next ([`PeerState::steal_ready`]).
    busy: BTreeMap<NodeId, Time>,
    /// The earliest of those times (read after every event; see `Core::next_timeout`).
    busy_ready: Option<Time>,
    /// The slowest speed among this node and every peer whose beacon came (it only goes down).
    slowest_speed: u32,
    /// Peers whose last beacon said they are at least [`FASTER`] times the slowest speed: the
    /// only ones jobs are reserved for. Empty on a mesh of equal machines, so that the common
    /// case costs nothing.
    fast: BTreeSet<NodeId>,
    /// Peers whose beacon came (the others' speed is unknown).
    beaconed: usize,
}

impl PeerTable {
    /// No peers yet, beside a node of `speed` on `platform`.
    pub(super) fn new(speed: u32, platform: String) -> PeerTable {
        PeerTable {
            speed,
            platform,
            peers: IdMap::default(),
            busy: BTreeMap::new(),
            busy_ready: None,
            slowest_speed: speed,
            fast: BTreeSet::new(),
            beaconed: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.peers.len()
    }

    pub(super) fn contains(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(peer)
    }

    pub(super) fn get(&self, peer: &NodeId) -> Option<&PeerState> {
        self.peers.get(peer)
    }

    /// Every peer, sorted.
    pub(super) fn sorted(&self) -> Vec<(&NodeId, &PeerState)> {
        let mut peers: Vec<(&NodeId, &PeerState)> = self.peers.iter().collect();
        peers.sort_unstable_by_key(|(node, _)| **node);
        peers
    }

    /// A peer was admitted (again, perhaps: what is known of it stays).
    pub(super) fn up(&mut self, now: Time, peer: NodeId) {
        self.peers.entry(peer).or_insert_with(|| PeerState {
            beacon: None,
            beacon_at: None,
            failures: 0,
            avoid_until: None,
            steal_backoff_until: now,
            steal_backoff: Duration::ZERO,
        });
    }

    /// A peer left: everything known of it goes.
    pub(super) fn down(&mut self, peer: &NodeId) {
        if self.peers.remove(peer).is_some_and(|p| p.beacon.is_some()) {
            self.beaconed -= 1;
        }
        self.fast.remove(peer);
        self.set_busy(*peer, None);
    }

    /// A peer's beacon. Returns whether the jobs this node may be given there grew, or
    /// `None` for a peer that is not admitted.
    pub(super) fn beacon(&mut self, now: Time, peer: NodeId, beacon: &LoadBeacon) -> Option<bool> {
        let (speed, platform) = (self.speed, self.platform.as_str());
        let state = self.peers.get_mut(&peer)?;
        let before = state.beacon.as_ref().map_or(0, |b| open_queue(b, speed));
        let queue_len = open_queue(beacon, speed);
        if queue_len > 0 && (before == 0 || state.steal_backoff_until > now) {
            // Newly busy, or busy again since it turned this node away: ask again at once.
            state.steal_backoff_until = now;
            state.steal_backoff = Duration::ZERO;
        }
        let busy = (queue_len > 0 && beacon.platform == platform).then(|| state.steal_ready());
        if state.beacon.is_none() {
            self.beaconed += 1;
        }
        // Most beacons repeat the last one (an idle node's, every so often): keep it.
        if state.beacon.as_ref() != Some(beacon) {
            state.beacon = Some(beacon.clone());
        }
        state.beacon_at = Some(now);
        self.set_busy(peer, busy);
        self.note_speed(peer, beacon.speed);
        Some(queue_len > before)
    }

    /// A peer answered a steal request: with nothing, it is asked again only after a backoff
    /// (doubling from `first` up to a second); with jobs, at once.
    pub(super) fn steal_answered(&mut self, now: Time, peer: NodeId, empty: bool, first: Duration) {
        if let Some(state) = self.peers.get_mut(&peer) {
            if empty {
                state.steal_backoff = (state.steal_backoff * 2).max(first).min(MAX_STEAL_BACKOFF);
                state.steal_backoff_until = now + state.steal_backoff;
            } else {
                state.steal_backoff = Duration::ZERO;
                state.steal_backoff_until = now;
            }
        }
        self.refresh_busy(&peer);
    }

    /// A job failed on `peer` for reasons of its own: after `limit` in a row, it is avoided
    /// for `avoid_for`.
    pub(super) fn count_failure(
        &mut self,
        now: Time,
        peer: NodeId,
        limit: u32,
        avoid_for: Duration,
    ) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.failures += 1;
            if state.failures >= limit {
                state.avoid_until = Some(now + avoid_for);
                state.failures = 0;
            }
        }
        self.refresh_busy(&peer);
    }

    /// A job ran on `peer` (whatever the job itself made of it): its failures are forgiven.
    pub(super) fn reset_failures(&mut self, peer: NodeId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.failures = 0;
            if state.avoid_until.is_some() {
                state.avoid_until = None;
            }
        }
        self.refresh_busy(&peer);
    }

    /// The busy peers, sorted: the steal candidates.
    pub(super) fn busy(&self) -> impl Iterator<Item = &NodeId> {
        self.busy.keys()
    }

    /// How many peers are busy.
    pub(super) fn n_busy(&self) -> usize {
        self.busy.len()
    }

    /// When the first busy peer may be asked for work.
    pub(super) fn busy_ready(&self) -> Option<Time> {
        self.busy_ready
    }

    /// A busy peer's queue, as far as this node may take from it, when it may be asked for
    /// work at `now`.
    pub(super) fn steal_weight(&self, node: &NodeId, now: Time) -> Option<u64> {
        let p = self.peers.get(node)?;
        if p.is_avoided(now) || p.steal_backoff_until > now {
            return None;
        }
        let beacon = p.beacon.as_ref()?;
        let queue_len = open_queue(beacon, self.speed);
        (queue_len > 0 && beacon.platform == self.platform).then_some(u64::from(queue_len))
    }

    /// Whether this node is one the others reserve jobs for (a quarter faster than the
    /// slowest).
    pub(super) fn is_fast_here(&self) -> bool {
        faster(self.speed, self.slowest_speed)
    }

    /// Which queued jobs a taker of `speed` (this node, or the thief `except`) should leave
    /// for faster peers: as many as those peers have slots free, as far as this node knows,
    /// and at least one each, for at most `window`. A peer counts while its last beacon said
    /// it had nothing queued (so it is looking for work), it shares, it is on this platform
    /// and it is not avoided; its free slots are those of that beacon less the jobs `lent`
    /// to it since.
    ///
    /// One job is reserved even for a fast peer that looks full: one of its slots frees
    /// soon, and the critical path gains more from waiting for it than from a slow start now;
    /// beacons are not sent when only free slots change, so "full" is often stale too
    /// (`bench/RESULTS.md` has the netsim runs behind this rule).
    pub(super) fn reserve(
        &self,
        now: Time,
        lent: &Lent,
        speed: u32,
        except: Option<NodeId>,
        window: Duration,
    ) -> Reserve {
        if self.fast.is_empty() {
            return Reserve::NONE;
        }
        let mut count = 0usize;
        for node in &self.fast {
            if Some(*node) == except {
                continue;
            }
            let Some(state) = self.peers.get(node) else {
                continue;
            };
            let Some(beacon) = state.beacon.as_ref() else {
                continue;
            };
            let looking = beacon.queue_len == 0
                && beacon.share != SharePolicy::Never
                && beacon.platform == self.platform
                && !state.is_avoided(now);
            if !looking || !faster(beacon.speed, speed) {
                continue;
            }
            count += beacon.free_slots.saturating_sub(lent.count(node)).max(1) as usize;
        }
        if count == 0 {
            return Reserve::NONE;
        }
        Reserve {
            count,
            now,
            window,
            min_estimate: window.saturating_mul(MIN_RESERVED_JOB_IN_WINDOWS),
        }
    }

    /// The fast peers, sorted.
    pub(super) fn fast(&self) -> &BTreeSet<NodeId> {
        &self.fast
    }

    /// The slowest speed seen (this node's, or a peer's).
    pub(super) fn slowest_speed(&self) -> u32 {
        self.slowest_speed
    }

    /// Peers whose beacon has not come yet (their speed is unknown).
    pub(super) fn n_unknown_speed(&self) -> usize {
        self.peers.len().saturating_sub(self.beaconed)
    }

    /// A peer's speed, as its last beacon said.
    pub(super) fn speed_of(&self, peer: &NodeId) -> Option<u32> {
        Some(self.peers.get(peer)?.beacon.as_ref()?.speed)
    }

    /// Records a peer's speed: whether it is one of the fast peers jobs are reserved for.
    fn note_speed(&mut self, peer: NodeId, speed: u32) {
        if speed < self.slowest_speed {
            // A new slowest machine: peers that were not fast before may be now.
            self.slowest_speed = speed;
            let slowest = speed;
            self.fast = self
                .peers
                .iter()
                .filter(|(_, p)| p.beacon.as_ref().is_some_and(|b| faster(b.speed, slowest)))
                .map(|(node, _)| *node)
                .collect();
        } else if faster(speed, self.slowest_speed) {
            self.fast.insert(peer);
        } else {
            self.fast.remove(&peer);
        }
    }

    /// Brings a busy peer's entry up to date after its backoff or avoidance changed.
    fn refresh_busy(&mut self, peer: &NodeId) {
        if self.busy.contains_key(peer)
            && let Some(state) = self.peers.get(peer)
        {
            let ready = state.steal_ready();
            self.set_busy(*peer, Some(ready));
        }
    }

    /// Makes `peer` a busy peer that may be asked from `ready` on, or (`None`) not a busy
    /// peer, keeping `busy_ready` the earliest time.
    fn set_busy(&mut self, peer: NodeId, ready: Option<Time>) {
        let old = match ready {
            Some(ready) => self.busy.insert(peer, ready),
            None => self.busy.remove(&peer),
        };
        if old.is_some() && old == self.busy_ready {
            // The earliest may have moved later.
            self.busy_ready = self.busy.values().min().copied();
        } else if let Some(ready) = ready
            && self.busy_ready.is_none_or(|earliest| ready < earliest)
        {
            self.busy_ready = Some(ready);
        }
    }
}

/// What this node knows of a peer, for `weft peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub node: NodeId,
    /// Its last beacon.
    pub beacon: Option<LoadBeacon>,
    /// When it came.
    pub beacon_at: Option<Time>,
    /// Results it announced that are still in the holder map.
    pub n_results: usize,
    /// Jobs of this node it runs now.
    pub n_leased: usize,
    /// Infrastructure failures in a row.
    pub failures: u32,
    /// Avoided until then.
    pub avoided_until: Option<Time>,
}
