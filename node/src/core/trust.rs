//! [`Trust`]: what this node no longer believes. Peers it distrusts (their results, blobs and
//! jobs refused), jobs whose results disagree (nondeterministic: built here, never taken from
//! a cache, until two runs here agree), jobs that keep losing their worker (quarantined
//! after [`super::CoreConfig::max_job_losses`]), and peers' cache hits being checked by a run
//! here ([`super::CoreConfig::verify_per_million`]).

use weft_protocol::{Digest, JobId, NodeId};

use super::id_hash::{IdMap, IdSet};

/// Distrusted peers, nondeterministic jobs and lost runs.
#[derive(Debug, Default)]
pub(super) struct Trust {
    distrusted: IdSet<NodeId>,
    /// Jobs seen with two different results, with the output tree of the last run here
    /// (`None` before one).
    flagged: IdMap<JobId, Option<Digest>>,
    /// How many times each job lost its worker.
    losses: IdMap<JobId, u32>,
    /// Quarantined jobs that sat out their last build: the next one tries them.
    sat_out: IdSet<JobId>,
    /// Peers' cache hits being run again here to check them: the peer, and the tree it gave.
    verifying: IdMap<JobId, (NodeId, Digest)>,
}

impl Trust {
    pub(super) fn is_distrusted(&self, peer: &NodeId) -> bool {
        !self.distrusted.is_empty() && self.distrusted.contains(peer)
    }

    /// Distrusts `peer`; false when it was already.
    pub(super) fn distrust(&mut self, peer: NodeId) -> bool {
        self.distrusted.insert(peer)
    }

    /// Trusts `peer` again; false when it was not distrusted.
    pub(super) fn trust(&mut self, peer: &NodeId) -> bool {
        self.distrusted.remove(peer)
    }

    /// The distrusted peers, sorted.
    pub(super) fn distrusted(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self.distrusted.iter().copied().collect();
        peers.sort_unstable();
        peers
    }

    pub(super) fn is_flagged(&self, job: &JobId) -> bool {
        !self.flagged.is_empty() && self.flagged.contains_key(job)
    }

    /// Flags `job` as nondeterministic; false when it was already.
    pub(super) fn flag(&mut self, job: JobId) -> bool {
        if self.flagged.contains_key(&job) {
            return false;
        }
        self.flagged.insert(job, None);
        true
    }

    /// The flagged jobs, sorted.
    pub(super) fn flagged(&self) -> Vec<JobId> {
        let mut jobs: Vec<JobId> = self.flagged.keys().copied().collect();
        jobs.sort_unstable();
        jobs
    }

    /// A flagged job ran here and made `tree`: when the run before made the same, its results
    /// agree again and the flag goes. Returns whether it went.
    pub(super) fn ran_here(&mut self, job: JobId, tree: Digest) -> bool {
        let Some(last) = self.flagged.get_mut(&job) else {
            return false;
        };
        if *last == Some(tree) {
            self.flagged.remove(&job);
            return true;
        }
        *last = Some(tree);
        false
    }

    /// `job` lost its worker once more; returns how many times it has.
    pub(super) fn lost(&mut self, job: JobId) -> u32 {
        let n = self.losses.entry(job).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// `job`, taken from `peer`'s cache with outputs `tree`, is being run here to check it.
    pub(super) fn verify(&mut self, job: JobId, peer: NodeId, tree: Digest) {
        self.verifying.insert(job, (peer, tree));
    }

    pub(super) fn is_verifying(&self, job: &JobId) -> bool {
        self.verifying.contains_key(job)
    }

    /// How many checks run now (each takes a slot).
    pub(super) fn n_verifying(&self) -> usize {
        self.verifying.len()
    }

    /// The check of `job` ended: whose result it checked, and its tree.
    pub(super) fn verified(&mut self, job: &JobId) -> Option<(NodeId, Digest)> {
        self.verifying.remove(job)
    }

    /// How many times `job` lost its worker.
    pub(super) fn losses(&self, job: &JobId) -> u32 {
        if self.losses.is_empty() {
            return 0;
        }
        self.losses.get(job).copied().unwrap_or(0)
    }

    /// Whether a quarantined `job` sits out this build (it fails without running); it
    /// alternates, so that every other build tries it once more.
    pub(super) fn sit_out(&mut self, job: JobId) -> bool {
        if self.sat_out.remove(&job) {
            return false;
        }
        self.sat_out.insert(job);
        true
    }

    /// `job` succeeded somewhere: its losses are forgiven.
    pub(super) fn succeeded(&mut self, job: &JobId) {
        if !self.losses.is_empty() {
            self.losses.remove(job);
            self.sat_out.remove(job);
        }
    }

    /// Losses counted before this core started (runs this daemon died in).
    pub(super) fn restore_losses(&mut self, job: JobId, n: u32) {
        let count = self.losses.entry(job).or_insert(0);
        *count = count.saturating_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> JobId {
        JobId(Digest::from_bytes([n; 32]))
    }

    #[test]
    fn a_flag_goes_when_two_runs_here_agree() {
        let mut trust = Trust::default();
        assert!(trust.flag(job(1)));
        assert!(!trust.flag(job(1)));
        assert!(!trust.ran_here(job(1), Digest::from_bytes([7; 32])));
        assert!(!trust.ran_here(job(1), Digest::from_bytes([8; 32])));
        assert!(trust.is_flagged(&job(1)));
        assert!(trust.ran_here(job(1), Digest::from_bytes([8; 32])));
        assert!(!trust.is_flagged(&job(1)));
    }

    #[test]
    fn losses_add_up_until_a_success() {
        let mut trust = Trust::default();
        trust.restore_losses(job(1), 2);
        assert_eq!(trust.lost(job(1)), 3);
        trust.succeeded(&job(1));
        assert_eq!(trust.lost(job(1)), 1);
    }
}
