//! A build request: load the workspace's targets, lower them to jobs, run them (or replay the
//! last build when nothing changed), and publish the requested targets' outputs.
//!
//! A build holds its workspace's lock from start to end, streams the engine's events to the
//! client, and cancels itself when the client goes away: while the BUILD files load, their
//! evaluation stops at its next budget check (see [`LoadCancel`]); while jobs run, the engine
//! kills their processes; nothing partial is published, and the lock is released at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinError;
use tracing::info;
use weft_protocol::wire::{BuildEvent, BuildRequest, ClientMessage, DaemonMessage};
use weft_protocol::{ActionResult, JobId};

use super::super::conn::{ConnError, ConnReader, ConnWriter};
use super::super::lower::{self, LowerError, Lowered};
use super::super::outputs::{self, OutputCollision, PublishError};
use super::super::shared::{LastBuild, Shared};
use super::lock::lock;
use super::reply::{EventSink, send_all, send_error, send_outputs, summary};
use super::run::{Finished, PlanSpec, run_plan};
use crate::core::{BuildOptions, BuildOutcome};
use crate::frontend::{FrontendError, FrontendErrorKind, LoadCancel, TargetGraph, Workspace};

/// A build that cannot run, or whose outputs cannot be published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The workspace's `weft.toml` cannot be read.
    #[error(transparent)]
    Workspace(FrontendError),
    /// The targets do not load.
    #[error(transparent)]
    Load(FrontendError),
    /// A target cannot become a job.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Two requested targets would publish the same file.
    #[error(transparent)]
    Collision(#[from] OutputCollision),
    /// Loading or lowering died.
    #[error("internal error while loading: {0}")]
    PlanPanicked(JoinError),
    /// An output cannot be published.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Publishing died.
    #[error("internal error while publishing outputs: {0}")]
    PublishPanicked(JoinError),
}

/// Serves a build request.
pub(crate) async fn build(
    shared: &Arc<Shared>,
    request: BuildRequest,
    pid: u32,
    mut reader: ConnReader,
    mut writer: ConnWriter,
) -> Result<(), ConnError> {
    let started = Instant::now();
    let mut sink = EventSink::new(request.every_event);
    let root = PathBuf::from(&request.workspace);
    let workspace = match Workspace::open(&root) {
        Ok(workspace) => workspace,
        Err(e) => return send_error(&mut writer, &BuildError::Workspace(e)).await,
    };
    let Some(_guard) = lock(
        shared,
        &workspace.root,
        pid,
        request.block_for_lock,
        &mut reader,
        &mut writer,
    )
    .await?
    else {
        return Ok(());
    };

    // While the workspace loads, look whether what the last build published is still in
    // place: a no-op build needs that answer, and the two passes share no work. A build that
    // runs jobs drops the answer (it would be stale by the time it publishes) and looks again.
    let published_check = {
        let builds = shared.last_builds.lock().unwrap_or_else(|p| p.into_inner());
        builds.get(&workspace.root).map(|last| {
            let published = last.published.clone();
            tokio::task::spawn_blocking(move || outputs::intact(&published))
        })
    };
    let cancel = LoadCancel::new();
    let mut planned = {
        let shared = shared.clone();
        let workspace = workspace.clone();
        let patterns = request.targets.clone();
        let cancel = cancel.clone();
        tokio::task::spawn_blocking(move || plan_build(&shared, &workspace, &patterns, &cancel))
    };
    let planned = tokio::select! {
        planned = &mut planned => planned,
        // A client says nothing during a build; anything, or the end of the stream, means it
        // is gone. The evaluation stops at its next check and lowers nothing; the lock goes
        // now, with this function's guard.
        message = reader.recv::<ClientMessage>() => {
            info!(closed = matches!(message, Ok(None)), "client hung up while loading; cancelling the load");
            cancel.cancel();
            return Ok(());
        }
    };
    let (graph, lowered) = match planned {
        Ok(Ok(planned)) => planned,
        Ok(Err(e)) => return send_error(&mut writer, &e).await,
        Err(e) => return send_error(&mut writer, &BuildError::PlanPanicked(e)).await,
    };
    let options = BuildOptions {
        keep_going: request.keep_going,
        max_parallel: request.jobs.map_or(shared.config.slots, |j| j as usize),
    };
    let timeout = request.job_timeout_secs.map(Duration::from_secs);
    let verdicts = shared.engine.verdicts();
    let (last, previous) = {
        let builds = shared.last_builds.lock().unwrap_or_else(|p| p.into_inner());
        let last = builds.get(&workspace.root);
        let removals = shared.store.removals();
        let same = last.is_some_and(|last| last.replays(&lowered, &graph, removals, verdicts));
        let previous = last.map(|last| last.published.clone()).unwrap_or_default();
        (
            last.filter(|_| same).map(|last| last.results.clone()),
            previous,
        )
    };
    let replayed = last.is_some();
    let finished = match last {
        Some(results) => replay(&lowered, results, &mut writer, &sink).await?,
        None => {
            let wanted = graph
                .requested
                .iter()
                .filter_map(|l| lowered.ids.get(l).copied())
                .collect();
            let Some(finished) = run_plan(
                shared,
                PlanSpec {
                    jobs: lowered.jobs.clone(),
                    wanted,
                    options,
                    job_timeout: timeout,
                },
                &mut reader,
                &mut writer,
                &mut sink,
            )
            .await?
            else {
                return Ok(());
            };
            finished
        }
    };

    info!(run_ms = started.elapsed().as_millis() as u64, "jobs done");
    let mut summary = summary(&finished.outcome, started);
    if summary.success && !finished.cancelled {
        // Publish the requested targets' outputs into `weft-out/`.
        let results = finished.results.clone();
        let intact = match published_check {
            Some(check) if replayed => check.await.ok(),
            _ => None,
        };
        let publish = {
            let workspace = workspace.clone();
            let shared = shared.clone();
            let (graph, lowered) = (graph.clone(), lowered.clone());
            tokio::task::spawn_blocking(move || {
                let (store, kept) = (&shared.store, &shared.kept);
                if replayed {
                    outputs::republish(store, kept, previous, intact)
                } else {
                    outputs::publish_outputs(
                        store, kept, &workspace, &graph, &lowered, &results, &previous,
                    )
                }
            })
            .await
        };
        let published = match publish {
            Ok(Ok(published)) => Ok(published),
            Ok(Err(e)) => Err(BuildError::Publish(e)),
            Err(e) => Err(BuildError::PublishPanicked(e)),
        };
        match published {
            Ok(published) => {
                {
                    let mut builds = shared.last_builds.lock().unwrap_or_else(|p| p.into_inner());
                    builds.insert(
                        workspace.root.clone(),
                        LastBuild {
                            lowered: lowered.clone(),
                            graph: graph.clone(),
                            results: finished.results.clone(),
                            removals: shared.store.removals(),
                            verdicts,
                            published: published.clone(),
                        },
                    );
                }
                send_outputs(&mut writer, &published, &mut sink).await?;
            }
            Err(e) => {
                summary.success = false;
                send_error(&mut writer, &e).await?;
            }
        }
    }
    // The build's time includes publishing its outputs.
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(total_ms = summary.duration_ms, "build done");
    writer
        .send(&DaemonMessage::Event(BuildEvent::Done(summary)))
        .await
}

/// Replays a build whose jobs are all known to be done: the events it would have streamed,
/// without asking the engine.
async fn replay(
    lowered: &Lowered,
    results: Arc<HashMap<JobId, ActionResult>>,
    writer: &mut ConnWriter,
    sink: &EventSink,
) -> Result<Finished, ConnError> {
    send_all(writer, sink.replayed(&lowered.jobs)).await?;
    let outcome = BuildOutcome {
        success: true,
        n_cached: lowered.jobs.len() as u64,
        ..BuildOutcome::default()
    };
    Ok(Finished {
        outcome,
        results,
        cancelled: false,
    })
}

/// Loads the targets and lowers them to jobs, on a blocking thread; stops with an error once
/// `cancel` is cancelled.
pub(super) fn plan_build(
    shared: &Shared,
    workspace: &Workspace,
    patterns: &[String],
    cancel: &LoadCancel,
) -> Result<(Arc<TargetGraph>, Arc<Lowered>), BuildError> {
    let started = Instant::now();
    let graph = {
        let loader = shared.loader(&workspace.root);
        let mut loader = loader.lock().unwrap_or_else(|p| p.into_inner());
        loader
            .load_cancellable(workspace, patterns, cancel)
            .map_err(BuildError::Load)?
    };
    if cancel.is_cancelled() {
        return Err(BuildError::Load(FrontendError::new(
            FrontendErrorKind::Cancelled,
        )));
    }
    let loaded = started.elapsed();
    let lowered = {
        // The workspace's lock is held, so no other build of it uses this memo meanwhile.
        let mut memos = shared.lowered.lock().unwrap_or_else(|p| p.into_inner());
        let memo = memos.entry(workspace.root.clone()).or_default();
        lower::lower_cached(memo, workspace, &graph, &shared.digests, &shared.toolchains)?
    };
    info!(
        n_targets = graph.targets.len(),
        load_ms = loaded.as_millis() as u64,
        lower_ms = (started.elapsed() - loaded).as_millis() as u64,
        "planned"
    );
    // The last successful build of the same jobs and targets passed this check.
    let checked = {
        let builds = shared.last_builds.lock().unwrap_or_else(|p| p.into_inner());
        builds
            .get(&workspace.root)
            .is_some_and(|last| last.planned(&lowered, &graph))
    };
    if !checked {
        outputs::check_output_collisions(workspace, &graph.requested, &lowered)?;
    }
    Ok((graph, lowered))
}
