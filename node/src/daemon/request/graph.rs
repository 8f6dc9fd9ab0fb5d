//! A distbuild graph run: read and lower the graph, run every job, and publish every job's
//! outputs in `OUT/<ID>/`, its stdout and stderr in `OUT/<ID>.stdout` and `OUT/<ID>.stderr`.
//! The out directory's lock is held from start to end.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinError;
use weft_protocol::wire::{BuildEvent, ClientMessage, DaemonMessage, GraphRunRequest};

use super::super::conn::{ConnError, ConnReader, ConnWriter};
use super::super::lower::{self, GraphLowerError, LoweredGraph};
use super::super::outputs::{self, PublishError};
use super::super::shared::Shared;
use super::lock::lock;
use super::reply::{EventSink, send_error, send_events, summary};
use super::run::{PlanSpec, run_plan};
use crate::core::BuildOptions;
use crate::frontend::{self, DistbuildError};

/// A graph run that cannot run, or whose outputs cannot be published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GraphRunError {
    /// The graph file cannot be read.
    #[error("cannot read the graph `{path}`: {source}")]
    Read {
        /// The graph file, as the client gave it.
        path: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The graph file is not a valid graph.
    #[error("`{path}`: {source}")]
    Parse {
        /// The graph file, as the client gave it.
        path: String,
        /// What is wrong.
        source: Box<DistbuildError>,
    },
    /// A job cannot become a protocol job.
    #[error(transparent)]
    Lower(#[from] GraphLowerError),
    /// Reading or lowering died.
    #[error("internal error while loading: {0}")]
    PlanPanicked(JoinError),
    /// An output cannot be published.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Publishing died.
    #[error("internal error while publishing: {0}")]
    PublishPanicked(JoinError),
}

/// Serves a distbuild graph run.
pub(crate) async fn graph_run(
    shared: &Arc<Shared>,
    request: GraphRunRequest,
    pid: u32,
    mut reader: ConnReader,
    mut writer: ConnWriter,
) -> Result<(), ConnError> {
    let started = Instant::now();
    let out_dir = PathBuf::from(&request.out_dir);
    let Some(_guard) = lock(shared, &out_dir, pid, true, &mut reader, &mut writer).await? else {
        return Ok(());
    };
    let mut planned = {
        let shared = shared.clone();
        let request = request.clone();
        tokio::task::spawn_blocking(move || plan_graph(&shared, &request))
    };
    let planned = tokio::select! {
        planned = &mut planned => planned,
        // The client is gone: the lock goes now, and the plan's result with its task.
        _ = reader.recv::<ClientMessage>() => return Ok(()),
    };
    let graph = match planned {
        Ok(Ok(graph)) => graph,
        Ok(Err(e)) => return send_error(&mut writer, &e).await,
        Err(e) => return send_error(&mut writer, &GraphRunError::PlanPanicked(e)).await,
    };
    let options = BuildOptions {
        keep_going: request.keep_going,
        max_parallel: request.jobs.map_or(shared.config.slots, |j| j as usize),
    };
    let timeout = request.job_timeout_secs.map(Duration::from_secs);
    // Every job's outputs land in the out directory.
    let wanted = graph.jobs.iter().map(|(id, _)| *id).collect();
    // A graph run lists every job's outputs; there are few of them.
    let mut sink = EventSink::new(true);
    let Some(finished) = run_plan(
        shared,
        PlanSpec {
            jobs: graph.jobs.clone(),
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
    let mut summary = summary(&finished.outcome, started);
    if !finished.cancelled {
        let shared = shared.clone();
        let published = tokio::task::spawn_blocking(move || {
            outputs::publish_graph(&shared.store, &out_dir, &graph.names, &finished.results)
        })
        .await;
        match published {
            Ok(Ok(paths)) => {
                let outputs = paths
                    .into_iter()
                    .map(|(name, path)| BuildEvent::Output { name, path });
                send_events(&mut writer, outputs.collect(), &mut sink).await?;
            }
            Ok(Err(e)) => {
                summary.success = false;
                send_error(&mut writer, &GraphRunError::Publish(e)).await?
            }
            Err(e) => {
                summary.success = false;
                send_error(&mut writer, &GraphRunError::PublishPanicked(e)).await?
            }
        }
    }
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    writer
        .send(&DaemonMessage::Event(BuildEvent::Done(summary)))
        .await
}

/// Reads the graph file and lowers its jobs, on a blocking thread.
fn plan_graph(shared: &Shared, request: &GraphRunRequest) -> Result<LoweredGraph, GraphRunError> {
    let path = &request.graph;
    let text = std::fs::read_to_string(path).map_err(|source| GraphRunError::Read {
        path: path.clone(),
        source,
    })?;
    let graph = frontend::parse_distbuild(&text).map_err(|source| GraphRunError::Parse {
        path: path.clone(),
        source: Box::new(source),
    })?;
    Ok(lower::lower_graph(
        &graph,
        Path::new(&request.source_dir),
        &shared.digests,
        &shared.toolchains,
    )?)
}
