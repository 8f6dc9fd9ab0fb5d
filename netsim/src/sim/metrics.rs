//! Counters gathered during a run, and the trace hash.

use weft_node::core::{IdMap, IdSet};

use weft_node::core::Time;
use weft_protocol::{Digest, DigestHasher, JobId};

/// Counters of a run.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Runs that completed successfully, duplicates included.
    pub(crate) executed: u64,
    /// Completed runs of a job that had completed somewhere before.
    pub(crate) duplicated: u64,
    /// Runs (preparing or running) that died with their node.
    pub(crate) lost_runs: u64,
    /// Runs stopped by a cancel.
    pub(crate) cancelled_runs: u64,
    /// Own runs that could not start because deps' outputs were gone.
    pub(crate) deps_lost: u64,
    /// Stolen runs that failed for want of inputs or deps.
    pub(crate) stolen_infra_failures: u64,
    /// Jobs that failed their build for losing their worker too often.
    pub(crate) quarantined: u64,
    /// Jobs that completed at least once.
    pub(crate) completed: IdSet<JobId>,
    /// Payload bytes of fetches (outputs and inputs).
    pub(crate) bytes_data: u64,
    /// Bytes of rpc requests and replies other than fetch payloads.
    pub(crate) bytes_rpc: u64,
    /// Bytes of gossip transmissions (publishes and forwards).
    pub(crate) bytes_gossip: u64,
    /// Rpcs sent, messages lost on the way, and rpcs that failed (timed out, or their
    /// connection dropped).
    pub(crate) rpcs: u64,
    pub(crate) rpcs_lost: u64,
    pub(crate) rpcs_failed: u64,
    /// Gossip publishes, by kind, and deliveries to cores.
    pub(crate) beacons: u64,
    pub(crate) haves: u64,
    pub(crate) gossip_deliveries: u64,
    /// Per announced result: time from its finish until 99% of the other nodes that were up
    /// had the announcement, in microseconds.
    pub(crate) convergence: Vec<u64>,
    /// Announced results that did not reach 99% of the nodes up.
    pub(crate) unconverged: u64,
    /// Core ticks.
    pub(crate) ticks: u64,
    /// Events processed.
    pub(crate) events: u64,
    /// Leases held by thieves when they crashed: `(victim, job) -> lease deadline`.
    pub(crate) orphaned_leases: IdMap<(u32, JobId), Time>,
    /// Of those, how many were run again, and the latest re-run after its deadline (in
    /// microseconds; negative when before).
    pub(crate) orphans_rerun: u64,
    pub(crate) orphan_worst_lateness: Option<i64>,
    /// Lease deadlines as victims set them: `(victim, job) -> deadline`.
    pub(crate) lease_deadlines: IdMap<(u32, JobId), Time>,
}

/// The ordered trace of what the cores decided, hashed as it goes.
pub(crate) struct Trace {
    hasher: DigestHasher,
    buffer: Vec<u8>,
    /// Records hashed.
    pub(crate) records: u64,
}

impl Trace {
    pub(crate) fn new(seed: u64) -> Trace {
        let mut trace = Trace {
            hasher: DigestHasher::new(),
            buffer: Vec::with_capacity(1 << 16),
            records: 0,
        };
        trace.hasher.update(b"weft-netsim trace v1");
        trace.hasher.update(&seed.to_le_bytes());
        trace
    }

    /// One record: when, which node, what kind of thing, and a detail (a job id's first
    /// bytes, a peer's index).
    pub(crate) fn record(&mut self, now: Time, node: u32, kind: u8, detail: u64) {
        self.buffer
            .extend_from_slice(&now.as_micros().to_le_bytes());
        self.buffer.extend_from_slice(&node.to_le_bytes());
        self.buffer.push(kind);
        self.buffer.extend_from_slice(&detail.to_le_bytes());
        self.records += 1;
        if self.buffer.len() >= 1 << 16 {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
    }

    pub(crate) fn finish(&mut self) -> Digest {
        self.hasher.update(&self.buffer);
        self.buffer.clear();
        self.hasher.finalize()
    }
}

/// The first eight bytes of a job id, for trace records.
pub(crate) fn short(job: &JobId) -> u64 {
    let bytes = job.0.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}
