//! Messages between daemons, over QUIC streams after team admission.
//!
//! This is the skeleton the mesh fills in: the shapes are here so that the sans-IO core can
//! be written against them, and the mesh issue extends them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::FailureReport;
use crate::{ActionResult, Digest, Job, JobId, NodeId, TrustStatement};

/// What one daemon says to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Load and capabilities, gossiped about once a second and on change.
    Beacon(LoadBeacon),
    /// Results the sender newly holds, batched.
    Have {
        /// The jobs whose results the sender holds.
        jobs: Vec<JobId>,
    },
    /// Does the receiver hold a result for this job?
    CacheQuery {
        /// The job.
        job: JobId,
        /// Send up to this many bytes of the result's output tree along with the answer (its
        /// tree blobs and small files), saving a round trip per blob for the small outputs
        /// most jobs have. Zero when the asker does not want the outputs now.
        inline_limit: u32,
    },
    /// The answer to [`PeerMessage::CacheQuery`].
    CacheAnswer {
        /// The job asked about.
        job: JobId,
        /// The signed result, when the receiver has one.
        result: Option<ActionResult>,
        /// Blobs of the result's output tree, at most the asked `inline_limit` bytes in all;
        /// each is checked against its digest before it is stored.
        inline: Vec<InlineBlob>,
    },
    /// An idle node asks for work.
    Steal(StealRequest),
    /// Jobs handed to a thief, each under a lease.
    Granted {
        /// The leases; empty when there is nothing suitable.
        leases: Vec<Lease>,
    },
    /// The thief still runs these jobs.
    Renew {
        /// The leased jobs.
        jobs: Vec<JobId>,
    },
    /// The answer to [`PeerMessage::Renew`].
    Renewed {
        /// Jobs that are no longer leased to the thief (done elsewhere, or the lease ran out
        /// and the job went back to the queue): the thief may stop them.
        lost: Vec<JobId>,
    },
    /// The thief finished a leased job.
    Done {
        /// The job.
        job: JobId,
        /// Its signed result.
        result: ActionResult,
    },
    /// The thief could not finish a leased job.
    JobFailed {
        /// The job.
        job: JobId,
        /// The job could not run for reasons of the thief's (a missing input, a full disk, a
        /// different tool): the victim runs it elsewhere. Otherwise the job itself failed.
        infrastructure: bool,
        /// What went wrong.
        report: FailureReport,
    },
    /// The request was taken.
    Ack,
    /// The request was refused.
    Refused {
        /// Why.
        reason: String,
    },
    /// Send the blob with this digest, from `offset`.
    BlobRequest {
        /// The blob.
        digest: Digest,
        /// Where to start, for resuming.
        offset: u64,
    },
    /// The blob follows, raw, right after this frame.
    BlobHeader {
        /// The blob.
        digest: Digest,
        /// How many bytes follow.
        size: u64,
    },
    /// The sender does not hold the blob.
    BlobMissing {
        /// The blob.
        digest: Digest,
    },
    /// A thief's report on a stolen job it could not run: none of the holders in the lease
    /// served the outputs of these deps. The victim runs them again. Answered with `Ack`.
    DepsLost {
        /// The job.
        job: JobId,
        /// The deps whose outputs could not be had.
        lost: Vec<JobId>,
    },
    /// From a thief whose daemon died (its machine did not restart) while it ran these jobs
    /// of the victim's, sent once it is admitted again: they count towards the jobs'
    /// quarantine. Answered with `Ack`.
    WorkerDied {
        /// The jobs.
        jobs: Vec<JobId>,
    },
    /// Every statement on who is disowned that the sender knows (its own and those it
    /// heard), sent to a newly admitted peer so that a node that joins later learns the
    /// distrusts in force. Answered with `Ack`.
    Statements {
        /// The statements, each signed by its issuer.
        statements: Vec<TrustStatement>,
    },
}

/// What one daemon gossips to its whole team, on the team's gossipsub topic.
///
/// Gossip is best-effort: a message may be lost or arrive twice, so each one stands alone
/// (a beacon replaces the last one; an announcement may repeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMessage {
    /// Load and capabilities, about once a second and on change.
    Beacon(LoadBeacon),
    /// Results the sender newly holds, batched.
    Have {
        /// The jobs whose results the sender holds.
        jobs: Vec<JobId>,
    },
    /// The sender disowns a node, or takes it back (`weft team distrust`, `weft team trust`):
    /// gossiped once by its issuer.
    Statement(TrustStatement),
}

/// A blob sent inside a message rather than on a blob stream. Its bytes are untrusted until
/// they hash to `digest`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineBlob {
    /// What the bytes should hash to.
    pub digest: Digest,
    /// The bytes.
    pub bytes: Bytes,
}

impl std::fmt::Debug for InlineBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InlineBlob({}, {} bytes)",
            self.digest.short(8),
            self.bytes.len()
        )
    }
}

/// A node's load and capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBeacon {
    /// Slots free for stolen work.
    pub free_slots: u32,
    /// Jobs queued and ready.
    pub queue_len: u32,
    /// The platform, such as `linux-x86_64`.
    pub platform: String,
    /// Digests of the tool binaries this node has.
    pub tools: Vec<Digest>,
    /// Whether the node runs others' jobs.
    pub share: SharePolicy,
    /// At most this many slots run others' jobs.
    pub max_shared_slots: u32,
    /// How fast one slot runs a job, in thousandths of the reference machine's speed
    /// (`1000`: as fast; `1500`: a job of 3 s takes 2 s). Peers give the jobs on a build's
    /// critical path to a node clearly faster than the others.
    pub speed: u32,
    /// Of `queue_len`, about how many jobs this node reserves for peers a quarter faster
    /// than itself: a peer that is not that fast leaves them out when it looks for work.
    pub reserved: u32,
}

/// When a node runs jobs for its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharePolicy {
    /// Whenever it has free slots.
    Always,
    /// Only with no local build running and a low load average.
    Idle,
    /// Never.
    Never,
}

/// An idle node asks for up to `max_jobs` jobs it can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StealRequest {
    /// At most this many jobs.
    pub max_jobs: u32,
    /// The thief's platform.
    pub platform: String,
    /// Digests of the tool binaries the thief has.
    pub tools: Vec<Digest>,
}

/// A job lent to a thief until a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job to run.
    pub job: Job,
    /// How long the lease lasts without renewal, in milliseconds.
    pub ttl_ms: u64,
    /// Where the outputs of the job's deps can be had.
    pub deps: Vec<LeaseDep>,
}

/// The outputs of one dep of a leased job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDep {
    /// The dep.
    pub job: JobId,
    /// The digest of its output tree.
    pub tree: Digest,
    /// Nodes that hold the tree, the best first (the victim itself may be one).
    pub holders: Vec<NodeId>,
}
