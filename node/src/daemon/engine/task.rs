//! The engine's loop: commands from sessions and from the tasks it spawned, mesh events, and
//! the core's timer, each followed by carrying out the core's effects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p_identity::Keypair;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, warn};
use weft_protocol::wire::{BuildEvent, CacheSource, FailureReport, InlineBlob, Lease, LeaseDep};
use weft_protocol::{ActionResult, Job, JobId, NodeId, Signature};
use weft_store::Store;

use super::durations::{self, Durations};
use super::work::{OwnRun, StolenReport};
use crate::core::{
    BuildId, BuildOptions, BuildOutcome, Core, CoreConfig, CoreStats, Effect, JobOutcome, PeerView,
    PlanError, PlannedJob, Time,
};
use crate::exec::{Executor, RunOutcome, Toolchains};
use crate::mesh::{Mesh, MeshEvent};

/// What the engine works with.
#[derive(Clone)]
pub(crate) struct EngineContext {
    pub(crate) store: Store,
    pub(crate) executor: Executor,
    pub(crate) toolchains: Arc<Toolchains>,
    pub(crate) keypair: Keypair,
    /// The mesh, when this node has a team.
    pub(crate) mesh: Option<Mesh>,
}

impl EngineContext {
    pub(crate) fn node(&self) -> NodeId {
        crate::daemon::node_id(&self.keypair)
    }

    /// Signs with the node's ed25519 key.
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Signature> {
        let bytes = self.keypair.sign(message).ok()?;
        <[u8; 64]>::try_from(bytes.as_slice()).ok().map(Signature)
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// The core's settings: slots, sharing, leases.
    pub(crate) core: CoreConfig,
    /// Under this 1-minute load average (and with no build here), the machine is idle.
    pub(crate) idle_load: f64,
    /// Where job durations are kept across restarts; `None` keeps them in memory.
    pub(crate) durations: Option<PathBuf>,
}

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
    pub(crate) running: usize,
    /// How long lent jobs waited in the queue before a thief took them: (p50, p99).
    pub(crate) steal_wait: Option<(Duration, Duration)>,
    /// How long peer cache hits took, from the query to the checked answer: (p50, p99).
    pub(crate) peer_hit: Option<(Duration, Duration)>,
}

/// A handle to the engine task.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    inbox: mpsc::UnboundedSender<Command>,
}

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
        result: Option<ActionResult>,
        inline: Vec<InlineBlob>,
    },
    /// A peer's answer to a cache query, checked (and, for a wanted job, its outputs
    /// fetched); `None` is a miss.
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
    /// A thief's report on a job it stole from this node, checked (and, for a wanted job, its
    /// outputs fetched: `fetched` false means they could not be).
    ThiefReport {
        peer: NodeId,
        job: JobId,
        report: ThiefReport,
    },
    SystemIdle(bool),
}

/// What a thief said about a job it stole from this node.
#[derive(Debug)]
pub(super) enum ThiefReport {
    Done {
        result: ActionResult,
        fetched: bool,
    },
    Failed {
        infrastructure: bool,
        report: FailureReport,
    },
}

impl Engine {
    /// Starts the engine task, and with a mesh, the tasks that feed it mesh events and the
    /// machine's load.
    pub(crate) fn spawn(
        context: EngineContext,
        config: EngineConfig,
        mesh_events: Option<mpsc::Receiver<MeshEvent>>,
    ) -> Engine {
        let (inbox, commands) = mpsc::unbounded_channel();
        let node = context.node();
        let mut core = Core::new(
            node,
            Toolchains::platform(),
            Default::default(),
            config.core,
        );
        core.add_tools(super::work::default_tools(&context.toolchains));
        let task = EngineTask {
            core,
            context,
            node,
            builds: HashMap::new(),
            durations: match &config.durations {
                Some(path) => Durations::load(path.clone()),
                None => Durations::default(),
            },
            known: KnownResults::default(),
            members: HashSet::from([node]),
            stolen: HashMap::new(),
            stolen_reports: HashMap::new(),
            recent: VecDeque::new(),
            nondeterministic: 0,
            queries_sent: HashMap::new(),
            steal_waits: Latencies::default(),
            peer_hits: Latencies::default(),
            epoch: Instant::now(),
            inbox: inbox.clone(),
        };
        if task.context.mesh.is_some() {
            tokio::spawn(watch_load(inbox.clone(), config.idle_load));
        }
        tokio::spawn(task.run(commands, mesh_events));
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

    /// What the engine knows of the mesh.
    pub(crate) async fn report(&self) -> MeshReport {
        let (reply, answer) = oneshot::channel();
        if self.inbox.send(Command::Report { reply }).is_err() {
            return MeshReport::default();
        }
        answer.await.unwrap_or_default()
    }
}

/// Every few seconds, tells the engine whether the machine is idle by its load average.
async fn watch_load(inbox: mpsc::UnboundedSender<Command>, idle_load: f64) {
    let mut last = None;
    loop {
        let load = tokio::fs::read_to_string("/proc/loadavg")
            .await
            .ok()
            .and_then(|text| {
                text.split_whitespace()
                    .next()
                    .and_then(|l| l.parse::<f64>().ok())
            });
        // Where the load cannot be read, the machine counts as idle.
        let idle = load.is_none_or(|load| load < idle_load);
        if last != Some(idle) {
            if inbox.send(Command::SystemIdle(idle)).is_err() {
                return;
            }
            last = Some(idle);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

pub(super) struct EngineTask {
    pub(super) core: Core,
    pub(super) context: EngineContext,
    pub(super) node: NodeId,
    pub(super) builds: HashMap<BuildId, BuildState>,
    /// How long each job (by name) took last time: the scheduler's priorities.
    pub(super) durations: Durations,
    /// Results checked against the store, for no-op builds that look up every job.
    known: KnownResults,
    /// This node and every peer admitted since the daemon started: whose signatures count.
    pub(super) members: HashSet<NodeId>,
    /// Peers' jobs running here: the origin, the lease's deps, and the run's handle.
    pub(super) stolen: HashMap<JobId, StolenRun>,
    /// How stolen jobs ended, until the core says to send the report.
    pub(super) stolen_reports: HashMap<JobId, StolenReport>,
    /// Results this node made or fetched lately, for a new peer's first `Have`.
    pub(super) recent: VecDeque<JobId>,
    /// Jobs for which two different results were seen.
    pub(super) nondeterministic: u64,
    /// When each cache query to a peer went out.
    pub(super) queries_sent: HashMap<(BuildId, JobId), Instant>,
    steal_waits: Latencies,
    peer_hits: Latencies,
    epoch: Instant,
    pub(super) inbox: mpsc::UnboundedSender<Command>,
}

pub(super) struct StolenRun {
    pub(super) deps: Vec<LeaseDep>,
    pub(super) handle: Option<AbortHandle>,
}

pub(super) struct BuildState {
    events: mpsc::UnboundedSender<EngineEvent>,
    pub(super) jobs: HashMap<JobId, Arc<Job>>,
    pub(super) wanted: HashSet<JobId>,
    pub(super) results: HashMap<JobId, ActionResult>,
    pub(super) running: HashMap<JobId, AbortHandle>,
    pub(super) job_timeout: Option<Duration>,
}

impl BuildState {
    pub(super) fn emit(&self, event: BuildEvent) {
        let _ = self.events.send(EngineEvent::Build(event));
    }

    pub(super) fn name(&self, job: JobId) -> String {
        self.jobs
            .get(&job)
            .map(|j| j.name.clone())
            .unwrap_or_default()
    }
}

/// The most result ids kept for a new peer's first `Have`.
pub(super) const RECENT_RESULTS: usize = 50_000;

impl EngineTask {
    pub(super) fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn deadline(&self, time: Time) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch) + Duration::from_micros(time.as_micros())
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut mesh_events: Option<mpsc::Receiver<MeshEvent>>,
    ) {
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
                event = next_mesh_event(&mut mesh_events) => match event {
                    Some(event) => self.on_mesh_event(event),
                    None => mesh_events = None,
                },
                () = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.core.tick(now);
                }
            }
            self.drain_effects();
            self.touch_known();
        }
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
                        estimate: self.durations.get(&job.name).unwrap_or_default(),
                    })
                    .collect();
                // The tools this build uses are tools this node has.
                for (_, job) in &plan.jobs {
                    self.core.add_tools(job.toolchain.tools.values().copied());
                }
                let result = self.core.add_build(now, build, planned, plan.options);
                if result.is_ok() {
                    self.builds.insert(
                        build,
                        BuildState {
                            events: plan.events,
                            jobs: plan.jobs.into_iter().collect(),
                            wanted: plan.wanted,
                            results: HashMap::new(),
                            running: HashMap::new(),
                            job_timeout: plan.job_timeout,
                        },
                    );
                    if self.context.mesh.is_some()
                        && self.core.peers().is_empty()
                        && let Some(state) = self.builds.get(&build)
                    {
                        state.emit(BuildEvent::Notice(
                            "no peers are connected: building locally".to_owned(),
                        ));
                    }
                }
                let _ = reply.send(result);
            }
            Command::Cancel { build } => self.core.cancel_build(now, build),
            Command::Report { reply } => {
                let _ = reply.send(MeshReport {
                    peers: self.core.peers(),
                    stats: self.core.stats(),
                    nondeterministic: self.nondeterministic,
                    running: self.core.running(),
                    steal_wait: self.steal_waits.percentiles(),
                    peer_hit: self.peer_hits.percentiles(),
                });
            }
            Command::Finished { build, job, run } => self.finished(now, build, job, run),
            Command::PeerCache {
                build,
                job,
                peer,
                result,
            } => {
                if let Some(sent) = self.queries_sent.remove(&(build, job))
                    && result.is_some()
                {
                    self.peer_hits.record(sent.elapsed());
                }
                let hit = match result {
                    Some(result) => {
                        if let Some(state) = self.builds.get_mut(&build) {
                            let name = state.name(job);
                            state.emit(BuildEvent::CacheHit {
                                job,
                                name,
                                source: CacheSource::Peer(peer),
                            });
                            state.results.insert(job, result);
                        }
                        true
                    }
                    None => false,
                };
                self.core.on_peer_cache(now, build, job, peer, hit);
            }
            Command::PeerAnswer {
                build,
                job,
                peer,
                result,
                inline,
            } => self.on_peer_answer(build, job, peer, result, inline),
            Command::Granted { peer, leases } => match leases {
                Some(leases) => {
                    for lease in &leases {
                        self.stolen.insert(
                            lease.job.id(),
                            StolenRun {
                                deps: lease.deps.clone(),
                                handle: None,
                            },
                        );
                    }
                    self.core.on_granted(now, peer, leases);
                }
                None => self.core.on_steal_failed(now, peer),
            },
            Command::Renewed { lost } => self.core.on_renewed(now, &lost),
            Command::StolenFinished { id, report } => {
                let outcome = report.outcome();
                if let StolenReport::Done(result) = &report {
                    self.known.remember(id, result);
                    self.remember_recent(id);
                }
                if self.stolen.remove(&id).is_some() {
                    let lost = match &report {
                        StolenReport::DepsLost(lost) => Some(lost.clone()),
                        _ => None,
                    };
                    self.stolen_reports.insert(id, report);
                    match lost {
                        Some(lost) => self.core.on_stolen_deps_lost(now, id, lost),
                        None => self.core.on_stolen_finished(now, id, outcome),
                    }
                }
            }
            Command::ThiefReport { peer, job, report } => {
                self.on_thief_report(now, peer, job, report)
            }
            Command::SystemIdle(idle) => self.core.set_system_idle(now, idle),
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
                    if let Some((path, bytes)) = self.durations.take_changes() {
                        tokio::task::spawn_blocking(move || durations::write(&path, &bytes));
                    }
                    if let Some(state) = self.builds.remove(&build) {
                        let _ = state.events.send(EngineEvent::Done {
                            outcome,
                            results: state.results,
                        });
                    }
                }
                Effect::GivenAway {
                    build,
                    job,
                    peer,
                    waited,
                } => {
                    self.steal_waits.record(waited);
                    if let Some(state) = self.builds.get(&build) {
                        let name = state.name(job);
                        state.emit(BuildEvent::Started {
                            job,
                            name,
                            node: peer,
                        });
                    }
                }
                Effect::Returned { build, job, peer } => {
                    if let Some(state) = self.builds.get(&build) {
                        state.emit(BuildEvent::Notice(format!(
                            "`{}` came back from `{peer}` (its lease ran out, or the peer left); \
                             it runs again",
                            state.name(job)
                        )));
                    }
                }
                Effect::QueryPeer { build, job, peer } => self.query_peer(build, job, peer),
                Effect::SendSteal { peer, request } => self.send_steal(peer, request),
                Effect::RunStolen { origin, id, job } => self.run_stolen(origin, id, job),
                Effect::CancelStolen { id } => {
                    if let Some(run) = self.stolen.remove(&id) {
                        if let Some(handle) = run.handle {
                            handle.abort();
                        }
                        self.core.on_stolen_finished(
                            now,
                            id,
                            crate::core::StolenOutcome::Cancelled,
                        );
                    }
                }
                Effect::SendRenew { origin, jobs } => self.send_renew(origin, jobs),
                Effect::SendDone { origin, id, .. } | Effect::SendDepsLost { origin, id, .. } => {
                    self.send_done(origin, id)
                }
                Effect::Publish(gossip) => self.publish(gossip),
            }
        }
    }

    /// The result of a job from this node's cache, or from memory when the store has removed
    /// nothing since it was checked.
    fn look_up(&mut self, build: BuildId, job: JobId) -> bool {
        let Some(state) = self.builds.get_mut(&build) else {
            return false;
        };
        let removals = self.context.store.removals();
        if self.known.removals != removals {
            // A blob may have gone: forget what was checked.
            self.known.results.clear();
            self.known.removals = removals;
        }
        let found = match self.known.use_result(job) {
            Some(result) => Ok(Some(result)),
            None => self.context.store.get_action(job),
        };
        match found {
            Ok(Some(result)) if result.success() => {
                self.known.remember(job, &result);
                let name = state.name(job);
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

    /// Records, off the build's path, a use of each result served from memory, so that GC
    /// still sees them as recently used.
    fn touch_known(&mut self) {
        if self.known.to_touch.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.known.to_touch);
        let store = self.context.store.clone();
        tokio::task::spawn_blocking(move || {
            for job in jobs {
                let _ = store.get_action(job);
            }
        });
    }

    fn start(&mut self, build: BuildId, id: JobId) {
        let Some(state) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(job) = state.jobs.get(&id).cloned() else {
            return;
        };
        // Where each dep's outputs are: its tree, and who may hold it.
        let deps: Vec<LeaseDep> = job
            .deps
            .iter()
            .filter_map(|dep| {
                let result = state.results.get(dep)?;
                Some(LeaseDep {
                    job: *dep,
                    tree: result.output_tree,
                    holders: Vec::new(),
                })
            })
            .map(|mut dep| {
                dep.holders = holders_of(&self.core, &dep, state.results.get(&dep.job), self.node);
                dep
            })
            .collect();
        state.emit(BuildEvent::Started {
            job: id,
            name: job.name.clone(),
            node: self.node,
        });
        debug!(job = %id, name = %job.name, "start");
        let handle = tokio::spawn(super::work::run_own(
            self.context.clone(),
            self.inbox.clone(),
            build,
            id,
            job,
            deps,
            state.job_timeout,
        ));
        state.running.insert(id, handle.abort_handle());
    }

    fn finished(&mut self, now: Time, build: BuildId, id: JobId, run: OwnRun) {
        let Some(state) = self.builds.get_mut(&build) else {
            return;
        };
        if state.running.remove(&id).is_none() {
            // Cancelled meanwhile; the core already knows.
            return;
        }
        let outcome = match run {
            OwnRun::Ran(outcome) => *outcome,
            OwnRun::DepsLost(lost) => {
                let name = state.name(id);
                warn!(job = %id, %name, n_lost = lost.len(), "deps' outputs are gone; running them again");
                state.emit(BuildEvent::Notice(format!(
                "`{name}`: the outputs of {} of its deps are gone with the peer that held them; \
                 building them again",
                lost.len()
            )));
                self.core.on_deps_lost(now, build, id, &lost);
                return;
            }
        };
        let name = state.name(id);
        let verdict = match outcome {
            Ok(RunOutcome {
                mut result,
                failure: None,
            }) => {
                let digest = result.signing_digest(id);
                result.signature = self.context.sign(digest.as_bytes());
                if let Err(e) = self.context.store.put_action(id, &result) {
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
                self.remember_recent(id);
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

    pub(super) fn remember_recent(&mut self, job: JobId) {
        self.recent.push_back(job);
        if self.recent.len() > RECENT_RESULTS {
            self.recent.pop_front();
        }
    }

    /// The result of a job in any running build.
    pub(super) fn result_of(&self, job: &JobId) -> Option<&ActionResult> {
        self.builds.values().find_map(|b| b.results.get(job))
    }

    /// Records a result of a job of this node's that ran elsewhere, noticing when it differs
    /// from one seen before.
    pub(super) fn record_result(&mut self, job: JobId, result: &ActionResult) {
        let known = self
            .result_of(&job)
            .cloned()
            .or_else(|| self.known.get(&job).cloned());
        if let Some(known) = known
            && known.outputs != result.outputs
        {
            self.nondeterministic += 1;
            warn!(
                %job,
                first = %known.executed_by,
                second = %result.executed_by,
                "nondeterminism: two results of one job differ in their outputs"
            );
        }
        for state in self.builds.values_mut() {
            if state.jobs.contains_key(&job) {
                state.results.insert(job, result.clone());
            }
        }
    }
}

/// The nodes that may hold a dep's outputs, best first: the one that made it, then those
/// that announced it; this node first of all when its store has the tree.
pub(super) fn holders_of(
    core: &Core,
    dep: &LeaseDep,
    result: Option<&ActionResult>,
    local: NodeId,
) -> Vec<NodeId> {
    let mut holders = Vec::new();
    if let Some(result) = result {
        holders.push(result.executed_by);
    }
    for peer in core.holders(&dep.job) {
        if !holders.contains(peer) {
            holders.push(*peer);
        }
    }
    if !holders.contains(&local) {
        holders.push(local);
    }
    holders
}

async fn next_mesh_event(events: &mut Option<mpsc::Receiver<MeshEvent>>) -> Option<MeshEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Successful results whose blobs were seen in the store since its last removal
/// ([`Store::removals`]): a lookup of one of them needs no index read and no `stat`.
#[derive(Default)]
pub(super) struct KnownResults {
    results: HashMap<JobId, (ActionResult, Instant)>,
    removals: u64,
    to_touch: Vec<JobId>,
}

impl KnownResults {
    /// At most this many results are remembered; then the memory starts over.
    const CAPACITY: usize = 100_000;

    /// A result served from memory is recorded as a use in the store at most this often: GC's
    /// least-recently-used order needs minutes, not microseconds.
    const TOUCH_EVERY: Duration = Duration::from_secs(300);

    pub(super) fn remember(&mut self, job: JobId, result: &ActionResult) {
        if self.results.len() >= Self::CAPACITY {
            self.results.clear();
        }
        self.results
            .entry(job)
            .or_insert_with(|| (result.clone(), Instant::now()));
    }

    fn get(&self, job: &JobId) -> Option<&ActionResult> {
        self.results.get(job).map(|(result, _)| result)
    }

    /// The result of `job`, noting a use to record in the store when one is due.
    fn use_result(&mut self, job: JobId) -> Option<ActionResult> {
        let (result, touched) = self.results.get_mut(&job)?;
        if touched.elapsed() >= Self::TOUCH_EVERY {
            *touched = Instant::now();
            self.to_touch.push(job);
        }
        Some(result.clone())
    }
}

/// The latest durations of something, for percentiles.
#[derive(Default)]
struct Latencies {
    samples: VecDeque<Duration>,
}

impl Latencies {
    const KEPT: usize = 4096;

    fn record(&mut self, sample: Duration) {
        if self.samples.len() == Self::KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The median and the 99th percentile.
    fn percentiles(&self) -> Option<(Duration, Duration)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }
}
