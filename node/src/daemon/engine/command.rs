//! What reaches the engine's loop besides mesh events: [`Command`]s from sessions, and the
//! reports of the tasks the engine spawned (runs, rpcs, fetches).

use tokio::sync::oneshot;
use weft_protocol::wire::{FailureReport, InlineBlob, Lease, VerdictReport};
use weft_protocol::{ActionResult, Digest, JobId, NodeId, Verdict};

use super::api::{BuildPlan, MeshReport, VerdictError};
use crate::core::{BuildId, PlanError, StolenOutcome};
use crate::daemon::disown::NodeRef;
use crate::exec::{ExecError, RunOutcome};

#[derive(Debug)]
pub(super) enum Command {
    AddBuild {
        build: BuildId,
        plan: BuildPlan,
        reply: oneshot::Sender<Result<(), PlanError>>,
    },
    Cancel {
        build: BuildId,
    },
    Report {
        reply: oneshot::Sender<MeshReport>,
    },
    /// A run of this node's job ended.
    Finished {
        build: BuildId,
        job: JobId,
        run: OwnRun,
    },
    /// A peer's answer to a cache query, not yet checked.
    PeerAnswer {
        build: BuildId,
        job: JobId,
        peer: NodeId,
        with_outputs: bool,
        result: Option<ActionResult>,
        inline: Vec<InlineBlob>,
    },
    /// A peer's answer to a cache query, checked (and, with outputs, those fetched); `None`
    /// is a miss.
    PeerCache {
        build: BuildId,
        job: JobId,
        peer: NodeId,
        result: Option<ActionResult>,
    },
    /// A victim's answer to a steal request; `None` when the request failed.
    Granted {
        peer: NodeId,
        leases: Option<Vec<Lease>>,
    },
    Renewed {
        lost: Vec<JobId>,
    },
    /// A stolen job ended here.
    StolenFinished {
        id: JobId,
        report: StolenReport,
    },
    /// The outputs of a thief's job, which the core asked for before the job counts, were
    /// fetched from the thief (or could not be).
    ThiefOutputs {
        peer: NodeId,
        job: JobId,
        result: ActionResult,
        fetched: bool,
    },
    SystemIdle(bool),
    /// A run here of a job taken from a peer's cache, to check it, ended: its output tree,
    /// or `None` when it could not run.
    Verified {
        id: JobId,
        tree: Option<weft_protocol::Digest>,
    },
    /// A peer sent bytes that do not match their digest (or a tree that does not decode):
    /// it is disowned for the rest of the daemon's life.
    PeerCorrupt {
        peer: NodeId,
        what: String,
    },
    /// The owner disowns a node, or takes it back (`weft team distrust`, `weft team trust`).
    Verdict {
        node: NodeRef,
        verdict: Verdict,
        reason: String,
        reply: oneshot::Sender<Result<VerdictReport, VerdictError>>,
    },
    /// These jobs' action-cache entries were removed (`weft cache forget`): what is
    /// remembered of them goes too.
    Forget {
        jobs: Vec<JobId>,
    },
}

/// How a run of one of this node's jobs ended.
#[derive(Debug)]
pub(crate) enum OwnRun {
    /// It ran (successfully or not), or the executor could not run it.
    Ran(Box<Result<RunOutcome, ExecError>>),
    /// It did not run: the outputs of these deps could not be had from anyone, or were
    /// found corrupt in the store.
    DepsLost(Vec<JobId>),
    /// It did not run: the blob of one of its inputs was found corrupt in the store (and
    /// removed). The run's error says where.
    CorruptInput { blob: Digest, error: ExecError },
}

/// How a stolen job ended here.
#[derive(Debug, Clone)]
pub(crate) enum StolenReport {
    /// It succeeded; the result is signed and in this node's store.
    Done(ActionResult),
    /// It failed: the job itself, or (`infrastructure`) this node's ability to run it.
    Failed {
        infrastructure: bool,
        report: FailureReport,
    },
    /// It could not run: nobody served the outputs of these deps.
    DepsLost(Vec<JobId>),
}

impl StolenReport {
    /// How the run ended, for the core's `on_stolen_finished` (a run that could not fetch its
    /// deps' outputs goes to `on_stolen_deps_lost` instead, and counts as the thief's own
    /// failure only if it ever reached here).
    pub(super) fn outcome(&self) -> StolenOutcome {
        match self {
            StolenReport::Done(_) => StolenOutcome::Succeeded,
            StolenReport::Failed {
                infrastructure: false,
                ..
            } => StolenOutcome::Failed,
            StolenReport::Failed {
                infrastructure: true,
                ..
            }
            | StolenReport::DepsLost(_) => StolenOutcome::Infrastructure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(infrastructure: bool) -> StolenReport {
        StolenReport::Failed {
            infrastructure,
            report: FailureReport {
                job: JobId(weft_protocol::Digest::of(b"job")),
                name: "job".into(),
                command: vec![],
                exit_code: Some(1),
                message: String::new(),
                stderr_tail: String::new(),
            },
        }
    }

    #[test]
    fn what_a_thief_tells_its_victim() {
        // A job that failed on its own merits fails the build; anything the thief could not
        // do sends the job elsewhere.
        assert_eq!(failure(false).outcome(), StolenOutcome::Failed);
        assert_eq!(failure(true).outcome(), StolenOutcome::Infrastructure);
    }
}
