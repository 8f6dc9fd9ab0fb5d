//! [`Announcer`]: what this node tells the team, and when: load beacons (at once when it turns
//! busy or idle, then at intervals), batched `Have` announcements of the results it makes, and
//! the first `Have` a newly admitted peer is sent.

use std::collections::VecDeque;
use std::time::Duration;

use weft_protocol::JobId;

use super::Time;
use super::config::CoreConfig;

/// How soon after a peer comes up a busy node beacons (peers that come up together get one
/// beacon).
const PEER_UP_BEACON_DELAY: Duration = Duration::from_millis(50);

/// The most ids in one `Have` announcement.
const MAX_HAVE_BATCH: usize = 512;

/// The most results in one `Have` message of a newcomer's first snapshot.
const HAVE_SNAPSHOT_CHUNK: usize = 8192;

/// How long the queue must stay empty before a busy node says it is idle.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// The idle beacon interval per peer, once that exceeds
/// [`super::CoreConfig::idle_beacon_interval`].
const IDLE_BEACON_SPACING: Duration = Duration::from_millis(100);

/// When beacons and announcements go out, and the results a newcomer hears of.
#[derive(Debug)]
pub(super) struct Announcer {
    /// How long new results wait to be announced together.
    have_delay: Duration,
    /// How often a beacon goes out while this node has jobs queued, and while it has none.
    busy_interval: Duration,
    idle_interval: Duration,
    /// The most results a newcomer's first `Have` lists.
    snapshot_len: usize,
    pending_have: Vec<JobId>,
    have_due: Option<Time>,
    beacon_due: Time,
    /// Whether the last beacon said this node had jobs queued.
    last_beacon: Option<bool>,
    /// Since when the queue is empty while the last beacon said "busy".
    emptied_at: Option<Time>,
    /// A thief was turned away empty-handed since the last beacon, with this many jobs
    /// queued: when more queue up, say so at once (its backoff would otherwise keep it away).
    turned_away: Option<usize>,
    /// Results this node made lately, newest last, for a newly admitted peer's first `Have`.
    recent: VecDeque<JobId>,
}

impl Announcer {
    /// Beacons and announcements as `config` says.
    pub(super) fn new(config: &CoreConfig) -> Announcer {
        Announcer {
            have_delay: config.have_delay,
            busy_interval: config.beacon_interval,
            idle_interval: config.idle_beacon_interval,
            snapshot_len: config.have_snapshot,
            pending_have: Vec::new(),
            have_due: None,
            beacon_due: Time::ZERO,
            last_beacon: None,
            emptied_at: None,
            turned_away: None,
            recent: VecDeque::new(),
        }
    }

    /// When something is due next.
    pub(super) fn next_time(&self) -> Time {
        match self.have_due {
            Some(due) => self.beacon_due.min(due),
            None => self.beacon_due,
        }
    }

    /// A result this node made: announced with the next batch, and listed for newcomers.
    pub(super) fn announce(&mut self, now: Time, job: JobId) {
        self.remember(job);
        self.pending_have.push(job);
        if self.have_due.is_none() {
            self.have_due = Some(now + self.have_delay);
        }
        if self.pending_have.len() >= MAX_HAVE_BATCH {
            self.have_due = Some(now);
        }
    }

    /// A result this node holds, listed for newcomers but not announced.
    pub(super) fn remember(&mut self, job: JobId) {
        self.recent.push_back(job);
        if self.recent.len() > self.snapshot_len {
            self.recent.pop_front();
        }
    }

    /// The results to announce now, if their batch is due.
    pub(super) fn due_have(&mut self, now: Time) -> Option<Vec<JobId>> {
        let due = self.have_due?;
        if due > now {
            return None;
        }
        self.have_due = None;
        let jobs = std::mem::take(&mut self.pending_have);
        (!jobs.is_empty()).then_some(jobs)
    }

    /// The `Have` messages a newcomer is sent: the latest results, newest first.
    pub(super) fn snapshot(&self) -> Vec<Vec<JobId>> {
        let newest_first: Vec<JobId> = self.recent.iter().rev().copied().collect();
        newest_first
            .chunks(HAVE_SNAPSHOT_CHUNK)
            .map(<[JobId]>::to_vec)
            .collect()
    }

    /// A peer came up: a node with jobs queued lets it know soon (one beacon for a burst of
    /// newcomers); an idle one has nothing to tell it.
    pub(super) fn peer_up(&mut self, now: Time, queued: usize) {
        if queued > 0 {
            self.beacon_due = self.beacon_due.min(now + PEER_UP_BEACON_DELAY);
        }
    }

    /// A thief was turned away with `queued` jobs queued (all kept from it).
    pub(super) fn turned_away(&mut self, queued: usize) {
        self.turned_away = Some(queued);
    }

    /// Whether a beacon goes out now, for a node with `queued` jobs queued and `n_peers`
    /// peers; when it does, the next is due after the busy interval (jobs queued) or the idle
    /// one, spaced out on a large mesh.
    pub(super) fn beacon_now(&mut self, now: Time, queued: usize, n_peers: usize) -> bool {
        let busy = queued > 0;
        let grew = self.turned_away.is_some_and(|at| queued > at);
        let mut changed = self.last_beacon != Some(busy) || grew;
        if busy {
            self.emptied_at = None;
        } else if self.last_beacon == Some(true) {
            // A queue that empties often refills at once (thieves drain it, then the next
            // jobs turn ready): say "idle" only once it stays empty a while, rather than
            // send every node two beacons per refill.
            let since = *self.emptied_at.get_or_insert(now);
            if now < since + IDLE_GRACE {
                changed = false;
                self.beacon_due = self.beacon_due.min(since + IDLE_GRACE);
            }
        }
        let interval = if busy {
            self.busy_interval
        } else {
            // Every idle beacon goes to every node: on a large mesh, space them out so that
            // a node receives about ten a second, whatever the mesh's size.
            let per_peer = IDLE_BEACON_SPACING.saturating_mul(n_peers as u32);
            self.idle_interval.max(per_peer)
        };
        if !changed && now < self.beacon_due {
            return false;
        }
        if n_peers == 0 && !changed {
            self.beacon_due = now + interval;
            return false;
        }
        self.last_beacon = Some(busy);
        self.turned_away = None;
        self.beacon_due = now + interval;
        true
    }
}
