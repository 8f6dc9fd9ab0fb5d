//! Running jobs: this node's own, and those it stole from peers.
//!
//! Before a job runs, the outputs of its deps must be in the local store. Those made here are;
//! the others are fetched from the holders the core listed, in its order. When nobody can serve
//! a dep's outputs any more, the run reports the dep as lost and the core runs it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};
use weft_protocol::wire::{FailureReport, LeaseDep};
use weft_protocol::{Digest, Job, JobId, NodeId};

use super::command::{Command, OwnRun, StolenReport};
use super::context::EngineContext;
use crate::core::BuildId;
use crate::exec::{ExecError, RunOutcome, RunRequest, Toolchains};
use crate::mesh::{FetchError, peer_of};

/// Fetches each dep's output tree that is not in the store, from the first holder that
/// serves it. Returns the deps that nobody could serve.
async fn fetch_deps(
    context: &EngineContext,
    inbox: &mpsc::UnboundedSender<Command>,
    deps: &[LeaseDep],
) -> Vec<JobId> {
    let mut lost = Vec::new();
    let local = context.node();
    for dep in deps {
        if context.store.has_tree(&dep.tree) {
            continue;
        }
        let mut fetched = false;
        if let Some(mesh) = &context.mesh {
            for holder in dep.holders.iter().filter(|h| **h != local) {
                let Some(peer) = peer_of(holder) else {
                    continue;
                };
                match mesh.fetch_tree(peer, dep.tree).await {
                    Ok(()) => {
                        fetched = true;
                        break;
                    }
                    Err(e) => {
                        debug!(dep = %dep.job, %holder, error = %e, "fetching a dep's outputs failed");
                        report_corrupt(inbox, *holder, &e);
                    }
                }
            }
        }
        if !fetched && !context.store.has_tree(&dep.tree) {
            lost.push(dep.job);
        }
    }
    lost
}

/// The deps whose output trees are not whole in the store.
fn incomplete_deps(context: &EngineContext, deps: &[LeaseDep]) -> Vec<JobId> {
    deps.iter()
        .filter(|dep| !context.store.has_tree(&dep.tree))
        .map(|dep| dep.job)
        .collect()
}

/// Runs one of this node's jobs: fetches its deps' outputs, runs it, reports back.
pub(super) async fn run_own(
    context: EngineContext,
    inbox: mpsc::UnboundedSender<Command>,
    build: BuildId,
    id: JobId,
    job: Arc<Job>,
    deps: Vec<LeaseDep>,
    timeout: Option<Duration>,
) {
    let lost = fetch_deps(&context, &inbox, &deps).await;
    let run = if lost.is_empty() {
        let dep_trees: Vec<(JobId, Digest)> = deps.iter().map(|d| (d.job, d.tree)).collect();
        let request = RunRequest {
            id,
            job: &job,
            deps: &dep_trees,
            timeout,
            node: context.node(),
            peer: false,
        };
        match context.executor.run(request).await {
            Err(error) => match error.corrupt_blob() {
                // The store removed the bad blob: a dep's outputs are then incomplete (the core
                // runs the dep again), or an input's blob is gone (the engine stores it again).
                Some(blob) => {
                    let lost = incomplete_deps(&context, &deps);
                    if lost.is_empty() {
                        OwnRun::CorruptInput { blob, error }
                    } else {
                        OwnRun::DepsLost(lost)
                    }
                }
                None => OwnRun::Ran(Box::new(Err(error))),
            },
            ran => OwnRun::Ran(Box::new(ran)),
        }
    } else {
        OwnRun::DepsLost(lost)
    };
    let _ = inbox.send(Command::Finished {
        build,
        job: id,
        run,
    });
}

/// Runs a job whose result came from a peer's cache, to check it: fetches its deps' outputs,
/// runs it, keeps the result (signed) when it succeeds, and reports its output tree.
pub(super) async fn run_check(
    context: EngineContext,
    inbox: mpsc::UnboundedSender<Command>,
    id: JobId,
    job: Arc<Job>,
    deps: Vec<LeaseDep>,
) {
    let lost = fetch_deps(&context, &inbox, &deps).await;
    let tree = if lost.is_empty() {
        let dep_trees: Vec<(JobId, Digest)> = deps.iter().map(|d| (d.job, d.tree)).collect();
        let request = RunRequest {
            id,
            job: &job,
            deps: &dep_trees,
            timeout: None,
            node: context.node(),
            peer: false,
        };
        match context.executor.run(request).await {
            Ok(RunOutcome {
                mut result,
                failure: None,
            }) => {
                let digest = result.signing_digest(id);
                result.signature = context.sign(digest.as_bytes());
                if let Err(e) = context.store.put_new_action(id, &result) {
                    warn!(job = %id, error = %e, "cannot record a checked result");
                }
                Some(result.output_tree)
            }
            Ok(RunOutcome {
                failure: Some(f), ..
            }) => {
                debug!(job = %id, message = %f.message, "a check run failed; nothing is concluded");
                None
            }
            Err(e) => {
                debug!(job = %id, error = %e, "a check run could not run; nothing is concluded");
                None
            }
        }
    } else {
        None
    };
    let _ = inbox.send(Command::Verified { id, tree });
}

/// Runs a job stolen from `origin`: checks that this node's tools are the ones the job was
/// made for, fetches the inputs from the origin and the deps' outputs from their holders,
/// runs it, signs and stores the result.
pub(super) async fn run_stolen(
    context: EngineContext,
    inbox: mpsc::UnboundedSender<Command>,
    origin: NodeId,
    id: JobId,
    job: Arc<Job>,
    deps: Vec<LeaseDep>,
) {
    let report = match prepare_stolen(&context, &inbox, origin, &job, &deps).await {
        Err(Unprepared::DepsLost(lost)) => {
            warn!(job = %id, name = %job.name, %origin, n_lost = lost.len(),
                "cannot run a stolen job: no holder served its deps' outputs");
            StolenReport::DepsLost(lost)
        }
        Err(other) => {
            let message = other.to_string();
            warn!(job = %id, name = %job.name, %origin, %message, "cannot run a stolen job");
            StolenReport::Failed {
                infrastructure: true,
                report: failure(id, &job, message),
            }
        }
        Ok(()) => {
            let dep_trees: Vec<(JobId, Digest)> = deps.iter().map(|d| (d.job, d.tree)).collect();
            let request = RunRequest {
                id,
                job: &job,
                deps: &dep_trees,
                timeout: None,
                node: context.node(),
                peer: true,
            };
            match context.executor.run(request).await {
                Ok(RunOutcome {
                    mut result,
                    failure: None,
                }) => {
                    let digest = result.signing_digest(id);
                    result.signature = context.sign(digest.as_bytes());
                    match context.store.put_action(id, &result) {
                        Ok(()) => StolenReport::Done(result),
                        Err(e) => StolenReport::Failed {
                            infrastructure: true,
                            report: failure(id, &job, format!("cannot store the result: {e}")),
                        },
                    }
                }
                Ok(RunOutcome {
                    failure: Some(f), ..
                }) => StolenReport::Failed {
                    infrastructure: false,
                    report: FailureReport {
                        job: id,
                        name: job.name.clone(),
                        command: f.argv,
                        exit_code: f.exit_code,
                        message: f.message,
                        stderr_tail: f.stderr_tail,
                    },
                },
                Err(e)
                    if e.corrupt_blob().is_some()
                        && !incomplete_deps(&context, &deps).is_empty() =>
                {
                    StolenReport::DepsLost(incomplete_deps(&context, &deps))
                }
                Err(e) => StolenReport::Failed {
                    infrastructure: true,
                    report: failure(id, &job, format!("could not run the job: {e}")),
                },
            }
        }
    };
    let _ = inbox.send(Command::StolenFinished { id, report });
}

/// Why a stolen job cannot run here.
#[derive(Debug, thiserror::Error)]
enum Unprepared {
    /// Nobody served the outputs of these deps.
    #[error("no holder served the outputs of {} of its deps", .0.len())]
    DepsLost(Vec<JobId>),
    #[error("the job is for `{job}`, this node is `{node}`")]
    OtherPlatform { job: String, node: String },
    /// The tool the job names resolves here to another binary than the one it was made for.
    #[error("`{tool}` here (`{}`) is another binary", .path.display())]
    OtherTool {
        tool: String,
        path: std::path::PathBuf,
    },
    #[error(transparent)]
    NoTool(ExecError),
    #[error("this node has no mesh")]
    NoMesh,
    #[error("the origin's id is not an ed25519 key")]
    BadOrigin,
    #[error("cannot fetch input `{path}`: {source}")]
    Input { path: String, source: FetchError },
}

async fn prepare_stolen(
    context: &EngineContext,
    inbox: &mpsc::UnboundedSender<Command>,
    origin: NodeId,
    job: &Job,
    deps: &[LeaseDep],
) -> Result<(), Unprepared> {
    // The job's id names its tools by digest: running other binaries would file a result
    // under an id it does not belong to.
    if job.toolchain.platform != Toolchains::platform() {
        return Err(Unprepared::OtherPlatform {
            job: job.toolchain.platform.clone(),
            node: Toolchains::platform(),
        });
    }
    for (tool, wanted) in &job.toolchain.tools {
        match context.toolchains.resolve(tool) {
            Ok((_, digest)) if digest == *wanted => {}
            Ok((path, _)) => {
                return Err(Unprepared::OtherTool {
                    tool: tool.clone(),
                    path,
                });
            }
            Err(e) => return Err(Unprepared::NoTool(e)),
        }
    }
    let mesh = context.mesh.as_ref().ok_or(Unprepared::NoMesh)?;
    let origin_peer = peer_of(&origin).ok_or(Unprepared::BadOrigin)?;
    for input in &job.inputs {
        if context.store.has(&input.digest) {
            continue;
        }
        if let Err(source) = mesh.fetch_blob(origin_peer, input.digest).await {
            report_corrupt(inbox, origin, &source);
            return Err(Unprepared::Input {
                path: input.path.clone(),
                source,
            });
        }
    }
    let lost = fetch_deps(context, inbox, deps).await;
    if !lost.is_empty() {
        return Err(Unprepared::DepsLost(lost));
    }
    Ok(())
}

/// Tells the engine when a fetch from `peer` failed because the peer sent bad data (bytes that
/// do not match their digest, a tree that does not decode), not because it lacked them.
pub(super) fn report_corrupt(
    inbox: &mpsc::UnboundedSender<Command>,
    peer: NodeId,
    error: &FetchError,
) {
    if matches!(
        error,
        FetchError::Corrupt { .. } | FetchError::BadTree { .. }
    ) {
        let _ = inbox.send(Command::PeerCorrupt {
            peer,
            what: error.to_string(),
        });
    }
}

fn failure(id: JobId, job: &Job, message: String) -> FailureReport {
    FailureReport {
        job: id,
        name: job.name.clone(),
        command: Vec::new(),
        exit_code: None,
        message,
        stderr_tail: String::new(),
    }
}
