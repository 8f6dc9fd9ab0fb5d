//! Running a request's jobs: the plan goes to the engine, and its events are relayed to the
//! client until the build is over. A client that goes away cancels its build.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::info;
use weft_protocol::wire::{BuildEvent, ClientMessage, DaemonMessage};
use weft_protocol::{ActionResult, Job, JobId};

use super::super::conn::{ConnError, ConnReader, ConnWriter};
use super::super::engine::{AddBuildError, BuildPlan, EngineEvent};
use super::super::shared::Shared;
use super::reply::{EventSink, send_error, send_events};
use crate::core::{BuildOptions, BuildOutcome};
use crate::exec::SandboxMode;

/// What a build hands the engine.
pub(crate) struct PlanSpec {
    pub(crate) jobs: Vec<(JobId, Arc<Job>)>,
    /// The jobs whose outputs are published, so fetched from peers before they count.
    pub(crate) wanted: HashSet<JobId>,
    pub(crate) options: BuildOptions,
    pub(crate) job_timeout: Option<Duration>,
}

/// What a finished build hands back for publishing its outputs.
pub(crate) struct Finished {
    pub(crate) outcome: BuildOutcome,
    pub(crate) results: Arc<HashMap<JobId, ActionResult>>,
    pub(crate) cancelled: bool,
}

/// The engine did not take a build, or did not finish it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The engine did not take the build: a plan it cannot run, or it has stopped.
    #[error(transparent)]
    NotTaken(AddBuildError),
    /// The engine's task is gone.
    #[error("internal error: the engine stopped")]
    EngineStopped,
}

/// What a build says, once, when jobs run in the weak sandbox.
pub(crate) fn weak_sandbox_notice(reason: &str) -> String {
    format!(
        "no hermetic sandbox ({reason}): jobs run without namespaces, so they can read what \
         this user can and use the network; this node takes no jobs from peers"
    )
}

/// How many engine events go out in one write at most.
const MAX_BATCH: usize = 4096;

/// Hands the jobs to the engine and relays its events until the build is over, cancelling
/// it if the client goes away. `None` means the plan was refused and the client told, or the
/// client is gone.
pub(crate) async fn run_plan(
    shared: &Shared,
    spec: PlanSpec,
    reader: &mut ConnReader,
    writer: &mut ConnWriter,
    sink: &mut EventSink,
) -> Result<Option<Finished>, ConnError> {
    let PlanSpec {
        jobs,
        wanted,
        options,
        job_timeout,
    } = spec;
    let n_jobs = jobs.len() as u64;
    let build = shared.next_build_id();
    let (events, mut received) = mpsc::unbounded_channel();
    let plan = BuildPlan {
        jobs,
        wanted,
        options,
        job_timeout,
        events,
    };
    if let Err(e) = shared.engine.add_build(build, plan).await {
        send_error(writer, &RunError::NotTaken(e)).await?;
        return Ok(None);
    }
    let mut client_gone = false;
    let mut first = vec![DaemonMessage::Event(BuildEvent::Planned { n_jobs })];
    if let SandboxMode::Weak { reason } = &shared.sandbox {
        first.push(DaemonMessage::Event(BuildEvent::Notice(
            weak_sandbox_notice(reason),
        )));
    }
    let mut sent = Ok(());
    for message in &first {
        if sent.is_ok() {
            sent = writer.send(message).await;
        }
    }
    if sent.is_err() {
        shared.engine.cancel(build);
        client_gone = true;
    }
    let finished = |outcome: BuildOutcome, results| Finished {
        cancelled: outcome.cancelled,
        outcome,
        results: Arc::new(results),
    };
    loop {
        tokio::select! {
            event = received.recv() => match event {
                Some(EngineEvent::Build(event)) => {
                    // Send whatever else is waiting in the same write: a burst of ten
                    // thousand cache hits is a few writes, not ten thousand.
                    let mut batch = vec![event];
                    let mut done = None;
                    while batch.len() < MAX_BATCH {
                        match received.try_recv() {
                            Ok(EngineEvent::Build(event)) => batch.push(event),
                            Ok(finished) => {
                                done = Some(finished);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if !client_gone && send_events(writer, batch, sink).await.is_err() {
                        info!(build = build.0, "client went away; cancelling the build");
                        shared.engine.cancel(build);
                        client_gone = true;
                    }
                    if let Some(EngineEvent::Done { outcome, results }) = done {
                        return Ok((!client_gone).then(|| finished(outcome, results)));
                    }
                }
                Some(EngineEvent::Done { outcome, results }) => {
                    return Ok((!client_gone).then(|| finished(outcome, results)));
                }
                None => {
                    send_error(writer, &RunError::EngineStopped).await?;
                    return Ok(None);
                }
            },
            message = reader.recv::<ClientMessage>(), if !client_gone => {
                // A client says nothing during a build; anything, or the end of the stream,
                // means it is gone.
                info!(build = build.0, closed = matches!(message, Ok(None)), "client hung up; cancelling the build");
                shared.engine.cancel(build);
                client_gone = true;
            }
        }
    }
}
