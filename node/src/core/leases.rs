//! Leases, both ways: [`Lent`], the jobs of this node's builds that run on peers (the victim's
//! side: deadlines, requeued when they run out), and [`Borrowed`], the peers' jobs that run here
//! (the thief's side: renewed every third of the lease).

use std::collections::BTreeMap;
use std::time::Duration;

use weft_protocol::{JobId, NodeId};

use super::Time;
use super::deadlines::Deadlines;
use super::id_hash::IdMap;
use super::scheduler::BuildId;

/// A job of this node's that runs on a peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeaseOut {
    pub(super) build: BuildId,
    pub(super) thief: NodeId,
    pub(super) deadline: Time,
}

/// The jobs of this node's builds that run on peers.
#[derive(Debug, Default)]
pub(super) struct Lent {
    leases: BTreeMap<JobId, LeaseOut>,
    /// The leases by deadline, so that expiries and the next timeout are found without a
    /// scan (a victim of a large mesh has thousands out).
    deadlines: Deadlines<JobId>,
    /// How many jobs each thief has.
    per_thief: IdMap<NodeId, u32>,
}

impl Lent {
    pub(super) fn get(&self, job: &JobId) -> Option<LeaseOut> {
        self.leases.get(job).copied()
    }

    pub(super) fn contains(&self, job: &JobId) -> bool {
        self.leases.contains_key(job)
    }

    /// How many of this node's jobs `thief` runs now.
    pub(super) fn count(&self, thief: &NodeId) -> u32 {
        self.per_thief.get(thief).copied().unwrap_or(0)
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Time> {
        self.deadlines.first_time()
    }

    /// Lends `job` (replacing a lease it had).
    pub(super) fn insert(&mut self, job: JobId, lease: LeaseOut) {
        self.tally(lease.thief, true);
        if let Some(old) = self.leases.insert(job, lease) {
            self.tally(old.thief, false);
            self.deadlines.remove(old.deadline, job);
        }
        self.deadlines.insert(lease.deadline, job);
    }

    pub(super) fn remove(&mut self, job: &JobId) -> Option<LeaseOut> {
        let lease = self.leases.remove(job)?;
        self.tally(lease.thief, false);
        self.deadlines.remove(lease.deadline, *job);
        Some(lease)
    }

    /// Moves the deadline of `job`'s lease to `deadline`, when `thief` holds it; false when it
    /// does not.
    pub(super) fn renew(&mut self, job: JobId, thief: NodeId, deadline: Time) -> bool {
        match self.leases.get_mut(&job) {
            Some(lease) if lease.thief == thief => {
                self.deadlines.remove(lease.deadline, job);
                lease.deadline = deadline;
                self.deadlines.insert(deadline, job);
                true
            }
            _ => false,
        }
    }

    /// Takes out the leases whose deadline is `now` or earlier, in the order of their ids.
    pub(super) fn expire(&mut self, now: Time) -> Vec<(JobId, LeaseOut)> {
        let mut expired: Vec<JobId> = Vec::new();
        while let Some(&(deadline, job)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            expired.push(job);
        }
        expired.sort_unstable();
        let mut out = Vec::with_capacity(expired.len());
        for job in expired {
            if let Some(lease) = self.leases.remove(&job) {
                self.tally(lease.thief, false);
                out.push((job, lease));
            }
        }
        out
    }

    /// The jobs `thief` has, in the order of their ids.
    pub(super) fn of_thief(&self, thief: &NodeId) -> Vec<(JobId, BuildId)> {
        self.leases
            .iter()
            .filter(|(_, l)| l.thief == *thief)
            .map(|(id, l)| (*id, l.build))
            .collect()
    }

    /// The jobs of `build` that are out, in the order of their ids.
    pub(super) fn of_build(&self, build: BuildId) -> Vec<JobId> {
        self.leases
            .iter()
            .filter(|(_, l)| l.build == build)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Keeps the per-thief counts up to date as a lease comes or goes.
    fn tally(&mut self, thief: NodeId, added: bool) {
        if added {
            *self.per_thief.entry(thief).or_insert(0) += 1;
        } else if let Some(n) = self.per_thief.get_mut(&thief) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_thief.remove(&thief);
            }
        }
    }
}

/// A peer's job that runs here.
#[derive(Debug)]
pub(super) struct BorrowedJob {
    pub(super) origin: NodeId,
    next_renew: Time,
}

/// The peers' jobs that run here.
#[derive(Debug, Default)]
pub(super) struct Borrowed {
    stolen: BTreeMap<JobId, BorrowedJob>,
    /// The stolen jobs by when their lease is renewed next.
    renewals: Deadlines<JobId>,
}

impl Borrowed {
    pub(super) fn len(&self) -> usize {
        self.stolen.len()
    }

    pub(super) fn contains(&self, id: &JobId) -> bool {
        self.stolen.contains_key(id)
    }

    /// The jobs stolen from `origin`, in id order.
    pub(super) fn from(&self, origin: &NodeId) -> Vec<JobId> {
        self.stolen
            .iter()
            .filter(|(_, s)| s.origin == *origin)
            .map(|(id, _)| *id)
            .collect()
    }

    /// When the next renewal is due.
    pub(super) fn next_renewal(&self) -> Option<Time> {
        self.renewals.first_time()
    }

    /// A job stolen from `origin` starts here; its lease is first renewed after
    /// `renew_every`.
    pub(super) fn insert(&mut self, now: Time, id: JobId, origin: NodeId, renew_every: Duration) {
        let next_renew = now + renew_every;
        self.stolen.insert(id, BorrowedJob { origin, next_renew });
        self.renewals.insert(next_renew, id);
    }

    /// A stolen job ended here: no more renewals.
    pub(super) fn end(&mut self, id: JobId) -> Option<BorrowedJob> {
        let stolen = self.stolen.remove(&id)?;
        self.renewals.remove(stolen.next_renew, id);
        Some(stolen)
    }

    /// The renewals due at `now`, one list per origin, jobs in id order; each is due again
    /// after `every`.
    pub(super) fn due(&mut self, now: Time, every: Duration) -> BTreeMap<NodeId, Vec<JobId>> {
        let mut due: Vec<JobId> = Vec::new();
        while let Some(&(at, id)) = self.renewals.first() {
            if at > now {
                break;
            }
            self.renewals.pop_first();
            due.push(id);
        }
        due.sort_unstable();
        let mut renewals: BTreeMap<NodeId, Vec<JobId>> = BTreeMap::new();
        for id in due {
            if let Some(stolen) = self.stolen.get_mut(&id) {
                renewals.entry(stolen.origin).or_default().push(id);
                stolen.next_renew = now + every;
                self.renewals.insert(stolen.next_renew, id);
            }
        }
        renewals
    }
}
