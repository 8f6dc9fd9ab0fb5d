//! What sessions hand the engine and get back: [`BuildPlan`], [`EngineEvent`], [`MeshReport`],
//! why a build could not be added ([`AddBuildError`]), and why a verdict did not take
//! ([`VerdictError`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use weft_protocol::wire::BuildEvent;
use weft_protocol::{ActionResult, Job, JobId};

use crate::core::{BuildOptions, BuildOutcome, CoreStats, PeerView, PlanError};

/// A build as the engine receives it.
#[derive(Debug)]
pub(crate) struct BuildPlan {
    /// The jobs, closed under deps.
    pub(crate) jobs: Vec<(JobId, Arc<Job>)>,
    /// Jobs whose outputs the session publishes: fetched from peers before they count as
    /// done.
    pub(crate) wanted: HashSet<JobId>,
    /// How the build behaves.
    pub(crate) options: BuildOptions,
    /// Kill a job that runs longer than this.
    pub(crate) job_timeout: Option<Duration>,
    /// Where the build's events go.
    pub(crate) events: mpsc::UnboundedSender<EngineEvent>,
}

/// What the engine tells a session.
#[derive(Debug)]
pub(crate) enum EngineEvent {
    /// Something to show the user.
    Build(BuildEvent),
    /// The build is over, with the results of every job that succeeded.
    Done {
        /// How it ended.
        outcome: BuildOutcome,
        /// The results, by job.
        results: HashMap<JobId, ActionResult>,
    },
}

/// The mesh as the engine sees it, for `weft status` and `weft peers`.
#[derive(Debug, Clone, Default)]
pub(crate) struct MeshReport {
    pub(crate) peers: Vec<PeerView>,
    pub(crate) stats: CoreStats,
    pub(crate) nondeterministic: u64,
    pub(crate) distrusted: Vec<weft_protocol::NodeId>,
    pub(crate) running: usize,
    /// How long lent jobs waited in the queue before a thief took them: (p50, p99).
    pub(crate) steal_wait: Option<(Duration, Duration)>,
    /// How long peer cache hits took, from the query to the checked answer: (p50, p99).
    pub(crate) peer_hit: Option<(Duration, Duration)>,
}

/// Why the engine did not take a build.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddBuildError {
    /// The job graph cannot be run.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The engine has stopped (the daemon is shutting down).
    #[error("the daemon's engine has stopped; run the build again")]
    Stopped,
}

/// Why `weft team distrust` or `weft team trust` did not take.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerdictError {
    /// The node named is none, several, or this one.
    #[error(transparent)]
    Name(#[from] crate::daemon::disown::NodeRefError),
    /// The node's key cannot sign: a bug, since only ed25519 keys are loaded.
    #[error("internal error: this node's key cannot sign a statement")]
    CannotSign,
    /// The statement cannot count here.
    #[error("the statement was refused: {0}")]
    Refused(crate::core::Ignored),
    /// The verdict holds, but the file that keeps it across restarts cannot be written.
    #[error("{0}; the verdict holds until the daemon stops")]
    Record(crate::daemon::DistrustFileError),
    /// The engine has stopped (the daemon is shutting down).
    #[error("the daemon's engine has stopped; run the command again")]
    Stopped,
}
