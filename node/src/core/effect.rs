//! What the core asks of its driver: [`Effect`]s, and the answers to a thief's report
//! ([`Report`]).
//!
//! Every effect is an instruction complete enough to carry out without a decision: a start or
//! a lease lists where each dep's outputs may be had, best first; a query says whether the
//! outputs must come with a hit.

use std::sync::Arc;
use std::time::Duration;

use weft_protocol::wire::{LeaseDep, LoadBeacon, StealRequest};
use weft_protocol::{Digest, Job, JobId, NodeId};

use super::scheduler::{BuildEffect, BuildId};

/// What a node gossips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gossip {
    /// Load and capabilities.
    Beacon(LoadBeacon),
    /// Results this node newly holds.
    Have(Vec<JobId>),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A step of one of this node's builds, from its scheduler. A [`BuildEffect::Start`] lists
    /// every place the deps' outputs may be had, best first; answer it with
    /// [`Core::on_job_finished`](super::Core::on_job_finished) (or
    /// [`Core::on_deps_lost`](super::Core::on_deps_lost)), and a [`BuildEffect::LookupCache`] with
    /// [`Core::on_local_cache`](super::Core::on_local_cache).
    Build(BuildEffect),
    /// Ask `peer` for its result of the job; answer with
    /// [`Core::on_peer_cache`](super::Core::on_peer_cache).
    QueryPeer {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// A peer that announced the result.
        peer: NodeId,
        /// The build publishes the job's outputs: a hit counts only once they are in this
        /// node's store (fetched from `peer` when they are not).
        with_outputs: bool,
    },
    /// A job of this node's now runs on a peer.
    GivenAway {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// The thief.
        peer: NodeId,
        /// How long the job waited in the queue before it was lent.
        waited: Duration,
    },
    /// A job lent to a peer came back to the queue: its lease ran out, or the peer left.
    Returned {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// The peer that had it.
        peer: NodeId,
    },
    /// Run a job stolen from `origin`; answer with
    /// [`Core::on_stolen_finished`](super::Core::on_stolen_finished) (or
    /// [`Core::on_stolen_deps_lost`](super::Core::on_stolen_deps_lost)).
    RunStolen {
        /// The victim.
        origin: NodeId,
        /// The job's id.
        id: JobId,
        /// The job.
        job: Arc<Job>,
        /// Where its deps' outputs are, as the victim's lease says, best holder first.
        deps: Vec<LeaseDep>,
    },
    /// Stop a stolen job: its lease is gone. Then answer with
    /// [`Core::on_stolen_finished`](super::Core::on_stolen_finished).
    CancelStolen {
        /// The job.
        id: JobId,
    },
    /// Ask `peer` for work; answer with [`Core::on_granted`](super::Core::on_granted) or
    /// [`Core::on_steal_failed`](super::Core::on_steal_failed).
    SendSteal {
        /// The victim.
        peer: NodeId,
        /// The request.
        request: StealRequest,
    },
    /// Tell `origin` that these stolen jobs still run; answer with
    /// [`Core::on_renewed`](super::Core::on_renewed).
    SendRenew {
        /// The victim.
        origin: NodeId,
        /// The jobs.
        jobs: Vec<JobId>,
    },
    /// Send the outcome of a stolen job to its origin.
    SendDone {
        /// The victim.
        origin: NodeId,
        /// The job.
        id: JobId,
        /// How it ended.
        outcome: Reported,
    },
    /// Tell a stolen job's origin that it could not run here: nobody served the outputs of
    /// these deps.
    SendDepsLost {
        /// The victim.
        origin: NodeId,
        /// The job.
        id: JobId,
        /// The deps whose outputs could not be had.
        lost: Vec<JobId>,
    },
    /// Gossip to the team.
    Publish(Gossip),
    /// Run a job here beside the build, to check a result taken from `peer`'s cache; answer
    /// with [`Core::on_verified`](super::Core::on_verified). Nothing waits for it.
    Verify {
        /// The job's id.
        id: JobId,
        /// The job.
        job: Arc<Job>,
        /// Where its deps' outputs are, best holder first.
        deps: Vec<LeaseDep>,
        /// The peer whose result it checks.
        peer: NodeId,
    },
    /// Two results of one job differ in their outputs: the job is flagged, built here and
    /// never taken from a cache until two runs here agree. Say so in the builds that have it.
    Nondeterministic {
        /// The job.
        job: JobId,
        /// The node that made one result.
        first: NodeId,
        /// The node that made the other.
        second: NodeId,
    },
    /// A job lost its worker (hung it, or took its daemon down) too often (see
    /// [`CoreConfig::max_job_losses`](super::CoreConfig::max_job_losses)) and failed its build
    /// instead of running again.
    Quarantined {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// How many times it lost its worker.
        losses: u32,
        /// The node it last ran on.
        last: NodeId,
    },
}

/// How a run of one of this node's jobs ended, as the driver tells
/// [`Core::on_job_finished`](super::Core::on_job_finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// It succeeded; this is its output tree, in this node's store.
    Succeeded(Digest),
    /// It failed.
    Failed,
    /// It was stopped ([`BuildEffect::Cancel`]).
    Cancelled,
}

/// How a stolen job ended, on the thief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StolenOutcome {
    /// It succeeded; its result is in the thief's store.
    Succeeded,
    /// The job itself failed (a compile error, say).
    Failed,
    /// The thief could not run it (a missing input, a different tool, a full disk).
    Infrastructure,
    /// It was stopped.
    Cancelled,
}

/// What a thief tells the victim about a stolen job ([`Effect::SendDone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// It succeeded; its result is in the thief's store.
    Succeeded,
    /// The job itself failed (a compile error, say).
    Failed,
    /// The thief could not run it (a missing input, a different tool, a full disk).
    Infrastructure,
    /// The thief would not run it: it names a tool the thief does not run for peers, or it
    /// may use the network. Nothing ran.
    Refused,
}

/// What the victim made of a thief's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The job was out on this lease and is now settled.
    Accepted,
    /// The job's outputs are published here: fetch the tree from the thief, then tell
    /// [`Core::on_thief_outputs`](super::Core::on_thief_outputs). The lease is kept alive
    /// meanwhile.
    FetchOutputs,
    /// The job was settled already; a late duplicate, harmless.
    Duplicate,
    /// No build here knows the job.
    Unknown,
}
