//! [`PeerLookups`]: the peer-cache lookups in flight, and which peers each has asked. A job
//! missing from this node's cache is asked of the peers that announced it, one at a time, at
//! most [`MAX_CACHE_QUERIES`] of them.

use weft_protocol::{JobId, NodeId};

use super::id_hash::IdMap;
use super::peers::PeerTable;
use super::scheduler::BuildId;

/// The most peers asked for one job's result.
const MAX_CACHE_QUERIES: usize = 3;

/// Lookups in peers' caches, by build and job.
#[derive(Debug, Default)]
pub(super) struct PeerLookups {
    /// The peers asked so far, in order, per lookup.
    asked: IdMap<(BuildId, JobId), Vec<NodeId>>,
}

impl PeerLookups {
    /// The next peer to ask for `job`'s result, among those that announced it (`holders`, in
    /// order): one not asked yet, admitted, not avoided since its failures were last forgiven,
    /// and `trusted`. `None` when none is left; then the lookup is over.
    pub(super) fn next(
        &mut self,
        build: BuildId,
        job: JobId,
        holders: &[NodeId],
        peers: &PeerTable,
        trusted: impl Fn(&NodeId) -> bool,
    ) -> Option<NodeId> {
        let asked = self.asked.entry((build, job)).or_default();
        let next = if asked.len() >= MAX_CACHE_QUERIES {
            None
        } else {
            holders.iter().copied().find(|peer| {
                !asked.contains(peer)
                    && peers
                        .get(peer)
                        .is_some_and(|state| state.avoid_until.is_none())
                    && trusted(peer)
            })
        };
        match next {
            Some(peer) => asked.push(peer),
            None => {
                self.asked.remove(&(build, job));
            }
        }
        next
    }

    /// Whether `peer` was asked for `job`'s result in `build`.
    pub(super) fn was_asked(&self, build: BuildId, job: JobId, peer: &NodeId) -> bool {
        self.asked
            .get(&(build, job))
            .is_some_and(|asked| asked.contains(peer))
    }

    /// The lookup is over (a hit).
    pub(super) fn end(&mut self, build: BuildId, job: JobId) {
        self.asked.remove(&(build, job));
    }

    /// The lookups whose last question went to `peer`, in a fixed order (not the map's).
    pub(super) fn waiting_on(&self, peer: &NodeId) -> Vec<(BuildId, JobId)> {
        let mut waiting: Vec<(BuildId, JobId)> = self
            .asked
            .iter()
            .filter(|(_, asked)| asked.last() == Some(peer))
            .map(|(key, _)| *key)
            .collect();
        waiting.sort_unstable();
        waiting
    }

    /// A build is over: its lookups are forgotten.
    pub(super) fn forget_build(&mut self, build: BuildId) {
        self.asked.retain(|(b, _), _| *b != build);
    }
}
