//! One client request: a build, a graph run, a query or a cache command.
//!
//! A build holds its workspace's lock from start to end, streams the engine's events to the
//! client, and cancels itself when the client goes away: the engine kills its processes,
//! nothing partial is published, and the lock is released.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::info;
use weft_protocol::wire::{
    BuildEvent, BuildRequest, BuildSummary, CacheReport, ClientMessage, DaemonMessage,
    GraphRunRequest, QueryRequest,
};
use weft_protocol::{ActionResult, Job, JobId, Label};

use super::conn::{ConnError, ConnReader, ConnWriter};
use super::engine::{BuildPlan, EngineEvent};
use super::locks::WorkspaceGuard;
use super::lower::{self, Lowered};
use super::outputs::FileStamp;
use super::server::{Shared, error};
use crate::core::{BuildOptions, BuildOutcome};
use crate::frontend::{self, TargetGraph, Workspace};
use crate::stat::{DirStat, par_map};

/// What a finished build hands back for publishing its outputs.
struct Finished {
    outcome: BuildOutcome,
    results: Arc<HashMap<JobId, ActionResult>>,
    cancelled: bool,
}

/// The last successful build of a workspace: the very jobs it ran (the same `Lowered` means
/// the same graph, sources and tools), their results, and what it published. While the store
/// removes nothing, building the same jobs again changes nothing: it is replayed.
pub(crate) struct LastBuild {
    lowered: Arc<Lowered>,
    /// The graph it was lowered from: the same graph means the same requested targets.
    graph: Arc<TargetGraph>,
    results: Arc<HashMap<JobId, ActionResult>>,
    removals: u64,
    /// Each published file, as published.
    published: Arc<Vec<Published>>,
}

/// One file published into `weft-out/`.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// Where it is.
    dest: PathBuf,
    /// Its target.
    name: String,
    /// `dest`, relative to the workspace, as events show it.
    shown: String,
    /// What it holds.
    digest: weft_protocol::Digest,
    executable: bool,
    /// Its inode, size and mtime as published: while they are the same, so is the file.
    stamp: Option<FileStamp>,
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
        Err(e) => return error(&mut writer, &e.to_string()).await,
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
            tokio::task::spawn_blocking(move || intact(&published))
        })
    };
    let planned = {
        let shared = shared.clone();
        let workspace = workspace.clone();
        let patterns = request.targets.clone();
        tokio::task::spawn_blocking(move || plan_build(&shared, &workspace, &patterns)).await
    };
    let (graph, lowered) = match planned {
        Ok(Ok(planned)) => planned,
        Ok(Err(message)) => return error(&mut writer, &message).await,
        Err(e) => return error(&mut writer, &format!("internal error while loading: {e}")).await,
    };
    let options = BuildOptions {
        keep_going: request.keep_going,
        max_parallel: request.jobs.map_or(shared.config.slots, |j| j as usize),
    };
    let timeout = request.job_timeout_secs.map(Duration::from_secs);
    let (last, previous) = {
        let builds = shared.last_builds.lock().unwrap_or_else(|p| p.into_inner());
        let last = builds.get(&workspace.root);
        let same = last.is_some_and(|last| {
            Arc::ptr_eq(&last.lowered, &lowered)
                && Arc::ptr_eq(&last.graph, &graph)
                && last.removals == shared.store.removals()
        });
        let previous = last.map(|last| last.published.clone()).unwrap_or_default();
        (
            last.filter(|_| same).map(|last| last.results.clone()),
            previous,
        )
    };
    let replayed = last.is_some();
    let finished = match last {
        Some(results) => replay(&lowered, results, &mut writer, &mut sink).await?,
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
        let shared = shared.clone();
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
                if replayed {
                    republish(&shared, previous, intact)
                } else {
                    publish_outputs(&shared, &workspace, &graph, &lowered, &results, &previous)
                }
            })
            .await
        };
        let outcome = match publish {
            Ok(published) => {
                if let Ok(published) = &published {
                    let mut builds = shared.last_builds.lock().unwrap_or_else(|p| p.into_inner());
                    builds.insert(
                        workspace.root.clone(),
                        LastBuild {
                            lowered: lowered.clone(),
                            graph: graph.clone(),
                            results: finished.results.clone(),
                            removals: shared.store.removals(),
                            published: published.clone(),
                        },
                    );
                }
                Ok(published)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Ok(published)) => send_outputs(&mut writer, &published, &mut sink).await?,
            Ok(Err(message)) => {
                summary.success = false;
                error(&mut writer, &message).await?;
            }
            Err(e) => {
                summary.success = false;
                error(
                    &mut writer,
                    &format!("internal error while publishing outputs: {e}"),
                )
                .await?;
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
    sink: &mut EventSink,
) -> Result<Finished, ConnError> {
    let n_jobs = lowered.jobs.len() as u64;
    if sink.every {
        let mut events = Vec::with_capacity(lowered.jobs.len() + 1);
        events.push(BuildEvent::Planned { n_jobs });
        for (id, job) in &lowered.jobs {
            events.push(BuildEvent::CacheHit {
                job: *id,
                name: job.name.clone(),
                source: weft_protocol::wire::CacheSource::Local,
            });
        }
        send_events(writer, events, sink).await?;
    } else {
        // What `send_events` would make of those events, without making them.
        writer.queue(&DaemonMessage::Event(BuildEvent::Planned { n_jobs }))?;
        writer.queue(&DaemonMessage::Event(BuildEvent::Counted {
            cache_hits: n_jobs,
            outputs: 0,
        }))?;
        writer.flush().await?;
    }
    let outcome = BuildOutcome {
        success: true,
        n_cached: n_jobs,
        ..BuildOutcome::default()
    };
    Ok(Finished {
        outcome,
        results,
        cancelled: false,
    })
}

/// Loads the targets and lowers them to jobs, on a blocking thread.
fn plan_build(
    shared: &Shared,
    workspace: &Workspace,
    patterns: &[String],
) -> Result<(Arc<TargetGraph>, Arc<Lowered>), String> {
    let started = Instant::now();
    let graph = {
        let mut loader = shared.loader.lock().unwrap_or_else(|p| p.into_inner());
        loader
            .load(workspace, patterns)
            .map_err(|e| e.to_string())?
    };
    let loaded = started.elapsed();
    let lowered = {
        // The workspace's lock is held, so no other build of it uses this memo meanwhile.
        let mut memos = shared.lowered.lock().unwrap_or_else(|p| p.into_inner());
        let memo = memos.entry(workspace.root.clone()).or_default();
        lower::lower_cached(memo, workspace, &graph, &shared.digests, &shared.toolchains)
            .map_err(|e| e.to_string())?
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
        builds.get(&workspace.root).is_some_and(|last| {
            Arc::ptr_eq(&last.lowered, &lowered) && Arc::ptr_eq(&last.graph, &graph)
        })
    };
    if !checked {
        check_output_collisions(workspace, &graph.requested, &lowered)?;
    }
    Ok((graph, lowered))
}

/// Fails when two requested targets would publish the same file: targets of one directory
/// publish into one directory of `weft-out/`.
fn check_output_collisions(
    workspace: &Workspace,
    requested: &[Label],
    lowered: &Lowered,
) -> Result<(), String> {
    let jobs: HashMap<JobId, &Arc<Job>> = lowered.jobs.iter().map(|(id, job)| (*id, job)).collect();
    let mut owners: HashMap<PathBuf, &Label> = HashMap::new();
    for label in requested {
        let (Some(id), Some(dir)) = (lowered.ids.get(label), lower::output_dir(workspace, label))
        else {
            continue;
        };
        let Some(job) = jobs.get(id) else { continue };
        for out in &job.outs {
            let dest = dir.join(out);
            if let Some(other) = owners.insert(dest.clone(), label) {
                let shown = dest.strip_prefix(&workspace.root).unwrap_or(&dest);
                return Err(format!(
                    "`{other}` and `{label}` both declare the out `{out}`, and both would be \
                     published as `{}`; rename one of them",
                    shown.display()
                ));
            }
        }
    }
    Ok(())
}

/// Takes the workspace lock, waiting (and saying so) or failing at once. `None` means the
/// client has been answered or has gone.
async fn lock(
    shared: &Shared,
    key: &Path,
    pid: u32,
    block: bool,
    reader: &mut ConnReader,
    writer: &mut ConnWriter,
) -> Result<Option<WorkspaceGuard>, ConnError> {
    match shared.locks.try_lock(key, pid) {
        Ok(guard) => Ok(Some(guard)),
        Err(busy) if !block => {
            let message = format!(
                "another build (client pid {}) is running in `{}`; wait for it, or run \
                 without `--no-block-for-lock` to queue behind it",
                busy.holder_pid,
                key.display()
            );
            error(writer, &message).await?;
            Ok(None)
        }
        Err(busy) => {
            let waiting = BuildEvent::WaitingForLock {
                holder_pid: busy.holder_pid,
            };
            writer.send(&DaemonMessage::Event(waiting)).await?;
            tokio::select! {
                guard = shared.locks.lock(key, pid) => Ok(Some(guard)),
                _ = reader.recv::<ClientMessage>() => Ok(None),
            }
        }
    }
}

/// What a build hands the engine.
struct PlanSpec {
    jobs: Vec<(JobId, Arc<Job>)>,
    wanted: HashSet<JobId>,
    options: BuildOptions,
    job_timeout: Option<Duration>,
}

/// Hands the jobs to the engine and relays its events until the build is over, cancelling
/// it if the client goes away. `None` means the plan was refused and the client told.
async fn run_plan(
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
        error(writer, &e.to_string()).await?;
        return Ok(None);
    }
    let mut client_gone = false;
    if writer
        .send(&DaemonMessage::Event(BuildEvent::Planned { n_jobs }))
        .await
        .is_err()
    {
        shared.engine.cancel(build);
        client_gone = true;
    }
    loop {
        tokio::select! {
            event = received.recv() => match event {
                Some(EngineEvent::Build(event)) => {
                    // Send whatever else is waiting in the same write: a burst of ten
                    // thousand cache hits is a few writes, not ten thousand.
                    let mut batch = vec![event];
                    let mut done = None;
                    while batch.len() < 4096 {
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
                        return Ok((!client_gone).then_some(Finished {
                            cancelled: outcome.cancelled,
                            outcome,
                            results: Arc::new(results),
                        }));
                    }
                }
                Some(EngineEvent::Done { outcome, results }) => {
                    return if client_gone {
                        Ok(None)
                    } else {
                        Ok(Some(Finished {
                            cancelled: outcome.cancelled,
                            outcome,
                            results: Arc::new(results),
                        }))
                    };
                }
                None => {
                    error(writer, "internal error: the engine stopped").await?;
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

/// How a session sends events: every one, or cache hits and most outputs counted.
#[derive(Debug, Clone, Copy)]
struct EventSink {
    every: bool,
    outputs_listed: u64,
}

impl EventSink {
    /// Outputs listed one by one before the rest are counted.
    const LISTED_OUTPUTS: u64 = 20;

    fn new(every: bool) -> EventSink {
        EventSink {
            every,
            outputs_listed: 0,
        }
    }
}

/// Sends `events` in one write; unless the client asked for every event, cache hits and all
/// but the first outputs go as one [`BuildEvent::Counted`].
async fn send_events(
    writer: &mut ConnWriter,
    events: Vec<BuildEvent>,
    sink: &mut EventSink,
) -> Result<(), ConnError> {
    let (mut cache_hits, mut outputs) = (0, 0);
    for event in events {
        if !sink.every {
            match event {
                BuildEvent::CacheHit { .. } => {
                    cache_hits += 1;
                    continue;
                }
                BuildEvent::Output { .. } if sink.outputs_listed >= EventSink::LISTED_OUTPUTS => {
                    outputs += 1;
                    continue;
                }
                BuildEvent::Output { .. } => sink.outputs_listed += 1,
                _ => {}
            }
        }
        writer.queue(&DaemonMessage::Event(event))?;
    }
    if cache_hits + outputs > 0 {
        writer.queue(&DaemonMessage::Event(BuildEvent::Counted {
            cache_hits,
            outputs,
        }))?;
    }
    writer.flush().await
}

/// Sends an [`BuildEvent::Output`] for each published file, or, unless the client asked for
/// every event, for the first few and a count of the rest.
async fn send_outputs(
    writer: &mut ConnWriter,
    published: &[Published],
    sink: &mut EventSink,
) -> Result<(), ConnError> {
    let listed = if sink.every {
        published.len()
    } else {
        let left = EventSink::LISTED_OUTPUTS.saturating_sub(sink.outputs_listed);
        published
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX))
    };
    sink.outputs_listed += listed as u64;
    for p in &published[..listed] {
        writer.queue(&DaemonMessage::Event(BuildEvent::Output {
            name: p.name.clone(),
            path: p.shown.clone(),
        }))?;
    }
    let outputs = (published.len() - listed) as u64;
    if outputs > 0 {
        writer.queue(&DaemonMessage::Event(BuildEvent::Counted {
            cache_hits: 0,
            outputs,
        }))?;
    }
    writer.flush().await
}

fn summary(outcome: &BuildOutcome, started: Instant) -> BuildSummary {
    BuildSummary {
        success: outcome.success,
        n_ran: outcome.n_ran,
        n_cached: outcome.n_cached,
        n_failed: outcome.n_failed,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Publishes each requested target's declared outs at `weft-out/<dir>/<out>`.
fn publish_outputs(
    shared: &Shared,
    workspace: &Workspace,
    graph: &TargetGraph,
    lowered: &Lowered,
    results: &HashMap<JobId, ActionResult>,
    previous: &[Published],
) -> Result<Arc<Vec<Published>>, String> {
    let jobs: HashMap<JobId, &Arc<Job>> = lowered.jobs.iter().map(|(id, job)| (*id, job)).collect();
    let outputs = graph
        .requested
        .iter()
        .filter_map(|label| lowered.ids.get(label).map(|id| (label, *id)));
    let mut previous: HashMap<&Path, &Published> =
        previous.iter().map(|p| (p.dest.as_path(), p)).collect();
    // Each file to publish, with what the last build put at its place: cheap, in order.
    let mut planned: Vec<(Published, Option<&Published>)> = Vec::new();
    for (label, id) in outputs {
        let (Some(job), Some(result)) = (jobs.get(&id), results.get(&id)) else {
            continue;
        };
        let Some(dir) = lower::output_dir(workspace, label) else {
            continue;
        };
        for out in &job.outs {
            let Some(file) = result.outputs.iter().find(|f| &f.path == out) else {
                continue;
            };
            let dest = dir.join(out);
            let earlier = previous.remove(dest.as_path());
            let shown = dest
                .strip_prefix(&workspace.root)
                .unwrap_or(&dest)
                .display()
                .to_string();
            let entry = Published {
                name: label.to_string(),
                shown,
                digest: file.digest,
                executable: file.executable,
                stamp: None,
                dest,
            };
            planned.push((entry, earlier));
        }
    }
    // A `stat` each, and a copy for each that is not there yet: on several threads.
    let published = par_map(&planned, |stats, (entry, earlier)| -> Result<_, String> {
        let mut entry = entry.clone();
        // How the last build placed the same content here, if it did.
        let earlier = earlier
            .filter(|e| e.digest == entry.digest && e.executable == entry.executable)
            .and_then(|e| e.stamp);
        if earlier.is_some() && FileStamp::of(stats, &entry.dest) == earlier {
            // The last build put these very bytes there, and nobody touched them.
            entry.stamp = earlier;
        } else {
            // Its kept link may do.
            place(shared, stats, &mut entry, earlier)?;
        }
        Ok(entry)
    });
    Ok(Arc::new(published.into_iter().collect::<Result<_, _>>()?))
}

/// Whether each published file is still as it was placed: one `lstat` each.
fn intact(published: &[Published]) -> Vec<bool> {
    par_map(published, |stats, entry| {
        entry.stamp.is_some() && FileStamp::of(stats, &entry.dest) == entry.stamp
    })
}

/// Publishes again what the last build published, given which files are [`intact`] (looked
/// at now when not given): one that changed or went is placed again.
fn republish(
    shared: &Shared,
    published: Arc<Vec<Published>>,
    intact: Option<Vec<bool>>,
) -> Result<Arc<Vec<Published>>, String> {
    let intact = match intact {
        Some(intact) if intact.len() == published.len() => intact,
        _ => self::intact(&published),
    };
    if intact.iter().all(|&intact| intact) {
        return Ok(published);
    }
    let entries: Vec<(&Published, bool)> = published.iter().zip(intact).collect();
    let placed = par_map(&entries, |stats, &(entry, intact)| {
        let mut entry = entry.clone();
        if !intact {
            let earlier = entry.stamp;
            place(shared, stats, &mut entry, earlier)?;
        }
        Ok(entry)
    });
    Ok(Arc::new(placed.into_iter().collect::<Result<_, String>>()?))
}

/// Places one output: a copy, not a link into the store, since people may edit it. When the
/// same content was published there before with the stamp `earlier`, the daemon's kept link
/// of that copy is linked back instead, if it is unchanged (see `outputs.rs`).
fn place(
    shared: &Shared,
    stats: &mut DirStat,
    entry: &mut Published,
    earlier: Option<FileStamp>,
) -> Result<(), String> {
    if let Some(stamp) = earlier
        && shared.kept.restore(stats, &entry.dest, stamp)
    {
        entry.stamp = Some(stamp);
        return Ok(());
    }
    shared
        .store
        .export(&entry.digest, &entry.dest, entry.executable)
        .map_err(|e| format!("cannot publish `{}` of `{}`: {e}", entry.shown, entry.name))?;
    shared.kept.keep(&entry.dest);
    entry.stamp = FileStamp::of(stats, &entry.dest);
    Ok(())
}

/// Serves a distbuild graph run: every job's outputs land in `OUT/<ID>/`, its stdout and
/// stderr in `OUT/<ID>.stdout` and `OUT/<ID>.stderr`.
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
    let planned = {
        let shared = shared.clone();
        let request = request.clone();
        tokio::task::spawn_blocking(move || plan_graph(&shared, &request)).await
    };
    let graph = match planned {
        Ok(Ok(graph)) => graph,
        Ok(Err(message)) => return error(&mut writer, &message).await,
        Err(e) => return error(&mut writer, &format!("internal error while loading: {e}")).await,
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
            publish_graph(&shared, &out_dir, &graph.names, &finished.results)
        })
        .await;
        match published {
            Ok(Ok(paths)) => {
                let outputs = paths
                    .into_iter()
                    .map(|(name, path)| BuildEvent::Output { name, path });
                send_events(&mut writer, outputs.collect(), &mut sink).await?;
            }
            Ok(Err(message)) => {
                summary.success = false;
                error(&mut writer, &message).await?
            }
            Err(e) => {
                summary.success = false;
                error(
                    &mut writer,
                    &format!("internal error while publishing: {e}"),
                )
                .await?
            }
        }
    }
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    writer
        .send(&DaemonMessage::Event(BuildEvent::Done(summary)))
        .await
}

/// A lowered distbuild graph: the jobs, and each job's author-chosen ID.
struct PlannedGraph {
    jobs: Vec<(JobId, Arc<Job>)>,
    names: Vec<(String, JobId)>,
}

fn plan_graph(shared: &Shared, request: &GraphRunRequest) -> Result<PlannedGraph, String> {
    let text = std::fs::read_to_string(&request.graph)
        .map_err(|e| format!("cannot read the graph `{}`: {e}", request.graph))?;
    let graph =
        frontend::parse_distbuild(&text).map_err(|e| format!("`{}`: {e}", request.graph))?;
    let source_dir = Path::new(&request.source_dir);
    let mut ids: HashMap<String, JobId> = HashMap::new();
    let mut jobs = Vec::with_capacity(graph.jobs.len());
    let mut names = Vec::with_capacity(graph.jobs.len());
    for dist in &graph.jobs {
        let mut inputs = Vec::with_capacity(dist.inputs.len());
        for input in &dist.inputs {
            let (digest, executable) = shared
                .digests
                .digest(&source_dir.join(input))
                .map_err(|e| format!("job `{}`, field `Inputs`: {e}", dist.id))?;
            inputs.push(weft_protocol::Input {
                path: input.clone(),
                digest,
                executable,
            });
        }
        let deps = dist
            .deps
            .iter()
            .map(|d| {
                ids.get(d)
                    .copied()
                    .ok_or_else(|| format!("job `{}`: unknown dep `{d}`", dist.id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolve = |reference: &str| ids.get(reference).copied();
        let cmds = dist
            .cmds
            .iter()
            .map(|cmd| lower::rewrite_cmd(cmd, &resolve))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("job `{}`, field `Cmds`: {e}", dist.id))?;
        let toolchain = shared
            .toolchains
            .toolchain(&cmds, &[])
            .map_err(|e| format!("job `{}`: {e}", dist.id))?;
        let job = Job {
            name: if dist.name.is_empty() {
                dist.id.clone()
            } else {
                dist.name.clone()
            },
            inputs,
            deps,
            cmds,
            env: Default::default(),
            outs: Vec::new(),
            toolchain,
        };
        job.validate()
            .map_err(|e| format!("job `{}`: {e}", dist.id))?;
        let id = job.id();
        ids.insert(dist.id.clone(), id);
        names.push((dist.id.clone(), id));
        jobs.push((id, Arc::new(job)));
    }
    Ok(PlannedGraph { jobs, names })
}

fn publish_graph(
    shared: &Shared,
    out_dir: &Path,
    names: &[(String, JobId)],
    results: &HashMap<JobId, ActionResult>,
) -> Result<Vec<(String, String)>, String> {
    let mut published = Vec::new();
    for (name, id) in names {
        let Some(result) = results.get(id) else {
            continue;
        };
        let dir = out_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot replace `{}`: {e}", dir.display()))?;
        }
        shared
            .store
            .export_tree(&result.output_tree, &dir)
            .map_err(|e| format!("cannot publish the outputs of `{name}`: {e}"))?;
        for (stream, digest) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
            let path = out_dir.join(format!("{name}.{stream}"));
            shared
                .store
                .export(digest, &path, false)
                .map_err(|e| format!("cannot publish the {stream} of `{name}`: {e}"))?;
        }
        published.push((name.clone(), dir.display().to_string()));
    }
    Ok(published)
}

/// Answers a query about a workspace's targets.
pub(crate) fn query(shared: &Shared, query: &QueryRequest) -> Result<Vec<String>, String> {
    let (workspace, pattern) = match query {
        QueryRequest::Targets { workspace, pattern } => (workspace, pattern.clone()),
        QueryRequest::Deps { workspace, label } => (workspace, label.clone()),
    };
    let workspace = Workspace::open(Path::new(workspace)).map_err(|e| e.to_string())?;
    let mut loader = shared.loader.lock().unwrap_or_else(|p| p.into_inner());
    let graph = loader
        .load(&workspace, &[pattern])
        .map_err(|e| e.to_string())?;
    let lines = match query {
        QueryRequest::Targets { .. } => graph.requested.iter().map(|l| l.to_string()).collect(),
        QueryRequest::Deps { .. } => {
            let requested: std::collections::BTreeSet<&Label> = graph.requested.iter().collect();
            graph
                .targets
                .keys()
                .filter(|l| !requested.contains(l))
                .map(|l| l.to_string())
                .collect()
        }
    };
    Ok(lines)
}

/// Serves the cache commands.
pub(crate) fn cache(shared: &Shared, request: &ClientMessage) -> Result<CacheReport, String> {
    match request {
        ClientMessage::CacheGc { max_bytes } => {
            // Kept links of copies no longer in any `weft-out/` hold space only the daemon
            // can free: `gc` frees it.
            let n_kept = shared.kept.prune();
            info!(
                n_kept,
                "removed the kept links of published files that are gone"
            );
            let report = shared.store.gc(*max_bytes).map_err(|e| e.to_string())?;
            Ok(CacheReport::Gc {
                n_removed: report.n_evicted,
                bytes_freed: report.bytes_evicted,
                after: shared.store_report(),
            })
        }
        ClientMessage::CacheVerify => {
            let report = shared.store.verify().map_err(|e| e.to_string())?;
            Ok(CacheReport::Verify {
                n_checked: report.n_checked,
                n_corrupt: report.corrupt.len() as u64,
                n_index_fixed: report.n_index_added + report.n_index_removed,
            })
        }
        _ => Ok(CacheReport::Stats(shared.store_report())),
    }
}
