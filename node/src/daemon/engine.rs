//! The engine: the one task that owns the [`Scheduler`] and carries out its effects.
//!
//! Sessions hand it whole job graphs; it looks jobs up in the action cache, runs the misses
//! in sandboxes, records results, and streams [`BuildEvent`]s back to each build's session.
//! Every decision of who runs what, and when, is the scheduler's; this file only does the IO.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p_identity::Keypair;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, warn};
use weft_protocol::wire::{BuildEvent, CacheSource, FailureReport};
use weft_protocol::{ActionResult, Job, JobId, NodeId, Signature};
use weft_store::Store;

use crate::core::{
    BuildId, BuildOptions, BuildOutcome, Core, CoreConfig, Effect, JobOutcome, PlanError,
    PlannedJob, Time,
};
use crate::exec::{ExecError, Executor, RunOutcome, RunRequest};

/// A build as the engine receives it.
#[derive(Debug)]
pub(crate) struct BuildPlan {
    /// The jobs, closed under deps.
    pub(crate) jobs: Vec<(JobId, Arc<Job>)>,
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

/// A handle to the engine task.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    inbox: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
enum Command {
    AddBuild {
        build: BuildId,
        plan: BuildPlan,
        reply: oneshot::Sender<Result<(), PlanError>>,
    },
    Cancel {
        build: BuildId,
    },
    Finished {
        build: BuildId,
        job: JobId,
        outcome: Result<RunOutcome, ExecError>,
    },
}

impl Engine {
    /// Starts the engine task.
    pub(crate) fn spawn(
        store: Store,
        executor: Executor,
        keypair: Keypair,
        slots: usize,
    ) -> Engine {
        let (inbox, commands) = mpsc::unbounded_channel();
        let node = super::home::node_id(&keypair);
        let platform = crate::exec::Toolchains::platform();
        let task = EngineTask {
            core: Core::new(node, platform, Default::default(), CoreConfig::new(slots)),
            store,
            executor,
            node: super::home::node_id(&keypair),
            keypair,
            builds: HashMap::new(),
            durations: HashMap::new(),
            known: KnownResults::default(),
            epoch: Instant::now(),
            inbox: inbox.clone(),
        };
        tokio::spawn(task.run(commands));
        Engine { inbox }
    }

    /// Starts a build. Its events, ending with [`EngineEvent::Done`], go to `plan.events`.
    pub(crate) async fn add_build(&self, build: BuildId, plan: BuildPlan) -> Result<(), PlanError> {
        let (reply, answer) = oneshot::channel();
        if self
            .inbox
            .send(Command::AddBuild { build, plan, reply })
            .is_err()
        {
            return Err(PlanError::DuplicateBuild(build));
        }
        answer
            .await
            .unwrap_or(Err(PlanError::DuplicateBuild(build)))
    }

    /// Cancels a build: running jobs are killed, and [`EngineEvent::Done`] follows.
    pub(crate) fn cancel(&self, build: BuildId) {
        let _ = self.inbox.send(Command::Cancel { build });
    }
}

struct EngineTask {
    core: Core,
    store: Store,
    executor: Executor,
    keypair: Keypair,
    node: NodeId,
    builds: HashMap<BuildId, BuildState>,
    /// How long each job (by name) took last time: the scheduler's priorities.
    durations: HashMap<String, Duration>,
    /// Results checked against the store, for no-op builds that look up every job.
    known: KnownResults,
    epoch: Instant,
    inbox: mpsc::UnboundedSender<Command>,
}

struct BuildState {
    events: mpsc::UnboundedSender<EngineEvent>,
    jobs: HashMap<JobId, Arc<Job>>,
    results: HashMap<JobId, ActionResult>,
    running: HashMap<JobId, AbortHandle>,
    job_timeout: Option<Duration>,
}

impl BuildState {
    fn emit(&self, event: BuildEvent) {
        let _ = self.events.send(EngineEvent::Build(event));
    }
}

impl EngineTask {
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn deadline(&self, time: Time) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch) + Duration::from_micros(time.as_micros())
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let wake = self.deadline(self.core.next_timeout());
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command);
                    // Take whatever else is waiting before scheduling, so that a burst of
                    // finished jobs is decided on together.
                    while let Ok(command) = commands.try_recv() {
                        self.handle(command);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.core.tick(now);
                }
            }
            self.drain_effects();
            self.touch_known();
        }
    }

    /// Records, off the build's path, a use of each result served from memory, so that GC
    /// still sees them as recently used.
    fn touch_known(&mut self) {
        if self.known.to_touch.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.known.to_touch);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            for job in jobs {
                let _ = store.get_action(job);
            }
        });
    }

    fn handle(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::AddBuild { build, plan, reply } => {
                let planned = plan
                    .jobs
                    .iter()
                    .map(|(id, job)| PlannedJob {
                        id: *id,
                        job: job.clone(),
                        estimate: self.durations.get(&job.name).copied().unwrap_or_default(),
                    })
                    .collect();
                let result = self.core.add_build(now, build, planned, plan.options);
                if result.is_ok() {
                    self.builds.insert(
                        build,
                        BuildState {
                            events: plan.events,
                            jobs: plan.jobs.into_iter().collect(),
                            results: HashMap::new(),
                            running: HashMap::new(),
                            job_timeout: plan.job_timeout,
                        },
                    );
                }
                let _ = reply.send(result);
            }
            Command::Cancel { build } => self.core.cancel_build(now, build),
            Command::Finished {
                build,
                job,
                outcome,
            } => self.finished(now, build, job, outcome),
        }
    }

    fn drain_effects(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            let now = self.now();
            match effect {
                Effect::LookupCache { build, job } => {
                    let hit = self.look_up(build, job);
                    self.core.on_local_cache(now, build, job, hit);
                }
                Effect::Start { build, job } => self.start(build, job),
                Effect::Cancel { build, job } => {
                    if let Some(state) = self.builds.get_mut(&build)
                        && let Some(handle) = state.running.remove(&job)
                    {
                        // Aborting drops the run future, whose guard kills the process
                        // group and removes the sandbox.
                        handle.abort();
                    }
                    self.core
                        .on_job_finished(now, build, job, JobOutcome::Cancelled);
                }
                Effect::Skipped { .. } => {}
                Effect::BuildDone { build, outcome } => {
                    if let Some(state) = self.builds.remove(&build) {
                        let _ = state.events.send(EngineEvent::Done {
                            outcome,
                            results: state.results,
                        });
                    }
                }
                // The mesh: with no team there are no peers, so none of these come up.
                Effect::QueryPeer { build, job, peer } => {
                    self.core.on_peer_cache(now, build, job, peer, false);
                }
                Effect::SendSteal { peer, .. } => self.core.on_steal_failed(now, peer),
                Effect::GivenAway { .. }
                | Effect::RunStolen { .. }
                | Effect::CancelStolen { .. }
                | Effect::SendRenew { .. }
                | Effect::SendDone { .. }
                | Effect::Publish(_) => {}
            }
        }
    }

    fn look_up(&mut self, build: BuildId, job: JobId) -> bool {
        let Some(state) = self.builds.get_mut(&build) else {
            return false;
        };
        let removals = self.store.removals();
        if self.known.removals != removals {
            // A blob may have gone: forget what was checked.
            self.known.results.clear();
            self.known.removals = removals;
        }
        let found = match self.known.results.get(&job) {
            Some(result) => {
                self.known.to_touch.push(job);
                Ok(Some(result.clone()))
            }
            None => self.store.get_action(job),
        };
        match found {
            Ok(Some(result)) if result.success() => {
                self.known.remember(job, &result);
                let name = state
                    .jobs
                    .get(&job)
                    .map(|j| j.name.clone())
                    .unwrap_or_default();
                state.emit(BuildEvent::CacheHit {
                    job,
                    name,
                    source: CacheSource::Local,
                });
                state.results.insert(job, result);
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(job = %job, error = %e, "action cache lookup failed; running the job");
                false
            }
        }
    }

    fn start(&mut self, build: BuildId, id: JobId) {
        let Some(state) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(job) = state.jobs.get(&id).cloned() else {
            return;
        };
        let deps: Vec<(JobId, weft_protocol::Digest)> = job
            .deps
            .iter()
            .filter_map(|dep| state.results.get(dep).map(|r| (*dep, r.output_tree)))
            .collect();
        state.emit(BuildEvent::Started {
            job: id,
            name: job.name.clone(),
            node: self.node,
        });
        debug!(job = %id, name = %job.name, "start");
        let executor = self.executor.clone();
        let inbox = self.inbox.clone();
        let timeout = state.job_timeout;
        let node = self.node;
        let handle = tokio::spawn(async move {
            let request = RunRequest {
                id,
                job: &job,
                deps: &deps,
                timeout,
                node,
            };
            let outcome = executor.run(request).await;
            let _ = inbox.send(Command::Finished {
                build,
                job: id,
                outcome,
            });
        });
        state.running.insert(id, handle.abort_handle());
    }

    fn finished(
        &mut self,
        now: Time,
        build: BuildId,
        id: JobId,
        outcome: Result<RunOutcome, ExecError>,
    ) {
        let Some(state) = self.builds.get_mut(&build) else {
            return;
        };
        if state.running.remove(&id).is_none() {
            // Cancelled meanwhile; the scheduler already knows.
            return;
        }
        let name = state
            .jobs
            .get(&id)
            .map(|j| j.name.clone())
            .unwrap_or_default();
        let verdict = match outcome {
            Ok(RunOutcome {
                mut result,
                failure: None,
            }) => {
                let digest = result.signing_digest(id);
                result.signature = sign(&self.keypair, digest.as_bytes());
                if let Err(e) = self.store.put_action(id, &result) {
                    warn!(job = %id, error = %e, "cannot record the result in the action cache");
                }
                self.known.remember(id, &result);
                self.durations
                    .insert(name.clone(), Duration::from_millis(result.duration_ms));
                state.emit(BuildEvent::Finished {
                    job: id,
                    name,
                    node: self.node,
                    duration_ms: result.duration_ms,
                });
                state.results.insert(id, result);
                JobOutcome::Succeeded
            }
            Ok(RunOutcome {
                failure: Some(failure),
                ..
            }) => {
                state.emit(BuildEvent::Failed(FailureReport {
                    job: id,
                    name,
                    command: failure.argv,
                    exit_code: failure.exit_code,
                    message: failure.message,
                    stderr_tail: failure.stderr_tail,
                }));
                JobOutcome::Failed
            }
            Err(e) => {
                state.emit(BuildEvent::Failed(FailureReport {
                    job: id,
                    name,
                    command: Vec::new(),
                    exit_code: None,
                    message: format!("could not run the job: {e}"),
                    stderr_tail: String::new(),
                }));
                JobOutcome::Failed
            }
        };
        self.core.on_job_finished(now, build, id, verdict);
    }
}

/// Successful results whose blobs were seen in the store since its last removal
/// ([`Store::removals`]): a lookup of one of them needs no index read and no `stat`.
#[derive(Default)]
struct KnownResults {
    results: HashMap<JobId, ActionResult>,
    removals: u64,
    to_touch: Vec<JobId>,
}

impl KnownResults {
    /// At most this many results are remembered; then the memory starts over.
    const CAPACITY: usize = 100_000;

    fn remember(&mut self, job: JobId, result: &ActionResult) {
        if self.results.len() >= Self::CAPACITY {
            self.results.clear();
        }
        self.results.entry(job).or_insert_with(|| result.clone());
    }
}

/// Signs with the node's ed25519 key.
fn sign(keypair: &Keypair, message: &[u8]) -> Option<Signature> {
    let bytes = keypair.sign(message).ok()?;
    <[u8; 64]>::try_from(bytes.as_slice()).ok().map(Signature)
}
