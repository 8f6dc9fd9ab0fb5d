//! The engine's loop: commands from sessions and from the tasks it spawned, mesh events, and
//! the core's timer, each followed by carrying out the core's effects; and this node's builds:
//! their cache lookups, runs and results.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, warn};
use weft_protocol::wire::{BuildEvent, CacheSource, FailureReport, LeaseDep, VerdictReport};
use weft_protocol::{ActionResult, Digest, Job, JobId, NodeId, Verdict};
use weft_store::PutAction;

use super::api::{AddBuildError, BuildPlan, EngineEvent, MeshReport, VerdictError};
use super::command::{Command, OwnRun, StolenReport};
use super::context::{EngineConfig, EngineContext};
use super::durations::{self, Durations};
use super::journal::Journal;
use super::known::KnownResults;
use super::latencies::Latencies;
use crate::core::{
    BuildEffect, BuildId, Core, Effect, Finished, PlannedJob, Reported, Statements, StolenOutcome,
    Time,
};
use crate::daemon::disown::NodeRef;
use crate::exec::{RunOutcome, Toolchains};
use crate::mesh::MeshEvent;

/// A handle to the engine task.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    inbox: mpsc::UnboundedSender<Command>,
    /// Counts the engine's changes of mind: a job found nondeterministic, a peer disowned.
    /// A build replayed from the last one's results needs it unchanged since.
    verdicts: Arc<AtomicU64>,
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
        // The tools this node runs for peers, as its `PATH` resolves them (an entry that is a
        // path names its binary).
        let offered: Vec<Digest> = core
            .config()
            .accept_tools
            .iter()
            .filter_map(|tool| context.toolchains.resolve(tool).ok())
            .map(|(_, digest)| digest)
            .collect();
        core.add_tools(offered);
        let (journal, died) = match &config.journal {
            Some(path) => Journal::open(path.clone()),
            None => (Journal::none(), Default::default()),
        };
        for (job, losses) in &died.own {
            warn!(%job, losses, "this daemon died while the job ran; it counts towards its quarantine");
        }
        core.restore_losses(died.own);
        // The nodes disowned before: kept out before any peer counts.
        for subject in config.statements.distrusted() {
            core.distrust(Time::ZERO, subject);
        }
        // What the store holds from before: newcomers hear of it, as of what this daemon
        // makes from now on.
        match context.store.cached_jobs(core.config().have_snapshot) {
            Ok(jobs) => core.restore_results(jobs),
            Err(e) => {
                warn!(error = %e, "cannot list the action cache; peers hear only of new results")
            }
        }
        let verdicts = Arc::new(AtomicU64::new(0));
        let task = EngineTask {
            verdicts: verdicts.clone(),
            core,
            statements: config.statements,
            statements_file: config.statements_file,
            statements_seq: 0,
            statements_written: Arc::default(),
            served_corrupt: std::collections::HashSet::new(),
            connected: std::collections::HashSet::new(),
            context,
            node,
            builds: HashMap::new(),
            durations: match &config.durations {
                Some(path) => Durations::load(path.clone()),
                None => Durations::default(),
            },
            known: KnownResults::default(),
            journal,
            died_running: died.stolen,
            members: std::collections::HashSet::from([node]),
            stolen: HashMap::new(),
            stolen_reports: HashMap::new(),
            queries_sent: HashMap::new(),
            told_not_chosen: false,
            untold_nondeterministic: HashMap::new(),
            steal_waits: Latencies::default(),
            peer_hits: Latencies::default(),
            epoch: Instant::now(),
            inbox: inbox.clone(),
        };
        if task.context.mesh.is_some() {
            tokio::spawn(watch_load(inbox.clone(), config.idle_load));
        }
        tokio::spawn(task.run(commands, mesh_events));
        Engine { inbox, verdicts }
    }

    /// How many times the engine changed its mind about a result so far (see
    /// [`Engine::verdicts`]'s field).
    pub(crate) fn verdicts(&self) -> u64 {
        self.verdicts.load(Ordering::Acquire)
    }

    /// Disowns the node `node` names, or takes it back, as this node's owner says.
    pub(crate) async fn verdict(
        &self,
        node: NodeRef,
        verdict: Verdict,
        reason: String,
    ) -> Result<VerdictReport, VerdictError> {
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(Command::Verdict {
                node,
                verdict,
                reason,
                reply,
            })
            .map_err(|_| VerdictError::Stopped)?;
        answer.await.map_err(|_| VerdictError::Stopped)?
    }

    /// These jobs' action-cache entries were removed: the engine forgets them too, before
    /// any build asked for after this call looks them up.
    pub(crate) fn forget(&self, jobs: Vec<JobId>) {
        self.verdicts.fetch_add(1, Ordering::Release);
        let _ = self.inbox.send(Command::Forget { jobs });
    }

    /// Starts a build. Its events, ending with [`EngineEvent::Done`], go to `plan.events`.
    pub(crate) async fn add_build(
        &self,
        build: BuildId,
        plan: BuildPlan,
    ) -> Result<(), AddBuildError> {
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(Command::AddBuild { build, plan, reply })
            .map_err(|_| AddBuildError::Stopped)?;
        Ok(answer.await.map_err(|_| AddBuildError::Stopped)??)
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
    /// The statements on disowned nodes, and which this node follows.
    pub(super) statements: Statements,
    /// Where they are kept (`distrusted.toml`); `None` keeps them in memory.
    pub(super) statements_file: Option<std::path::PathBuf>,
    /// How many times they changed, and which change the file holds (writes run on blocking
    /// threads and may finish out of order).
    pub(super) statements_seq: u64,
    pub(super) statements_written: Arc<std::sync::Mutex<u64>>,
    /// Peers disowned for serving corrupt data: only the owner's word takes them back.
    pub(super) served_corrupt: std::collections::HashSet<NodeId>,
    /// Peers admitted and connected now.
    pub(super) connected: std::collections::HashSet<NodeId>,
    pub(super) context: EngineContext,
    pub(super) node: NodeId,
    pub(super) builds: HashMap<BuildId, BuildState>,
    /// How long each job (by name) took last time: the scheduler's priorities.
    pub(super) durations: Durations,
    /// Results checked against the store, for no-op builds that look up every job.
    pub(super) known: KnownResults,
    /// The jobs running here now, on disk.
    pub(super) journal: Journal,
    /// Peers' jobs the last daemon died running, by origin: told to each origin when it is
    /// admitted.
    pub(super) died_running: std::collections::BTreeMap<NodeId, Vec<JobId>>,
    /// This node and every peer admitted since the daemon started: whose signatures count.
    pub(super) members: std::collections::HashSet<NodeId>,
    /// Peers' jobs running here, by the handle of their run.
    pub(super) stolen: HashMap<JobId, AbortHandle>,
    /// How stolen jobs ended, until the core says to send the report.
    pub(super) stolen_reports: HashMap<JobId, StolenReport>,
    /// When each cache query to a peer went out.
    pub(super) queries_sent: HashMap<(BuildId, JobId), Instant>,
    /// A build was told that this node shares nothing until its owner chooses.
    told_not_chosen: bool,
    /// Jobs found nondeterministic when no build had them, with the two nodes: the next build
    /// that has one says so.
    untold_nondeterministic: HashMap<JobId, (NodeId, NodeId)>,
    verdicts: Arc<AtomicU64>,
    pub(super) steal_waits: Latencies,
    pub(super) peer_hits: Latencies,
    epoch: Instant,
    pub(super) inbox: mpsc::UnboundedSender<Command>,
}

pub(super) struct BuildState {
    events: mpsc::UnboundedSender<EngineEvent>,
    /// Jobs of this build that ran here, and those peers ran or served: whether a mesh with
    /// peers helped at all.
    ran_here: u64,
    from_peers: u64,
    pub(super) jobs: HashMap<JobId, Arc<Job>>,
    pub(super) results: HashMap<JobId, ActionResult>,
    pub(super) running: HashMap<JobId, AbortHandle>,
    /// Jobs whose corrupt input blob was stored again in this build (each is, once).
    pub(super) restored: HashSet<JobId>,
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

impl EngineTask {
    /// The engine changed its mind about results (a job found nondeterministic, a node
    /// disowned, entries forgotten): no build replays what it remembers from before.
    pub(super) fn doubted(&self) {
        self.verdicts.fetch_add(1, Ordering::Release);
    }

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
                        wanted: plan.wanted.contains(id),
                    })
                    .collect();
                let result = self.core.add_build(now, build, planned, plan.options);
                if result.is_ok() {
                    for (id, job) in &plan.jobs {
                        if let Some((first, second)) = self.untold_nondeterministic.remove(id) {
                            let _ = plan.events.send(EngineEvent::Build(nondeterministic_notice(
                                &job.name, first, second,
                            )));
                        }
                    }
                    self.builds.insert(
                        build,
                        BuildState {
                            events: plan.events,
                            ran_here: 0,
                            from_peers: 0,
                            jobs: plan.jobs.into_iter().collect(),
                            results: HashMap::new(),
                            running: HashMap::new(),
                            restored: HashSet::new(),
                            job_timeout: plan.job_timeout,
                        },
                    );
                    if self.context.mesh.is_some()
                        && let Some(state) = self.builds.get(&build)
                    {
                        if !self.core.config().lend && !self.told_not_chosen {
                            self.told_not_chosen = true;
                            state.emit(BuildEvent::Notice(
                                "this machine neither lends jobs to teammates nor runs theirs \
                                 until you choose: `weft team share always|idle|never`"
                                    .to_owned(),
                            ));
                        }
                        if self.core.peers().is_empty() {
                            state.emit(BuildEvent::Notice(
                                "no peers are connected: building locally".to_owned(),
                            ));
                        }
                    }
                }
                let _ = reply.send(result);
            }
            Command::Cancel { build } => self.core.cancel_build(now, build),
            Command::Report { reply } => {
                let _ = reply.send(MeshReport {
                    peers: self.core.peers(),
                    stats: self.core.stats(),
                    nondeterministic: self.core.stats().nondeterministic,
                    distrusted: self.core.distrusted(),
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
                let hit = result.map(|result| {
                    let tree = result.output_tree;
                    if let Some(state) = self.builds.get_mut(&build) {
                        state.from_peers += 1;
                        let name = state.name(job);
                        state.emit(BuildEvent::CacheHit {
                            job,
                            name,
                            source: CacheSource::Peer(peer),
                        });
                        state.results.insert(job, result);
                    }
                    tree
                });
                self.core.on_peer_cache(now, build, job, peer, hit);
            }
            Command::PeerAnswer {
                build,
                job,
                peer,
                with_outputs,
                result,
                inline,
            } => self.on_peer_answer(build, job, peer, with_outputs, result, inline),
            Command::Granted { peer, leases } => match leases {
                Some(leases) => self.core.on_granted(now, peer, leases),
                None => self.core.on_steal_failed(now, peer),
            },
            Command::Renewed { lost } => self.core.on_renewed(now, &lost),
            Command::StolenFinished { id, report } => {
                if let StolenReport::Done(result) = &report {
                    self.known.remember(id, result);
                }
                self.journal.end(id);
                if self.stolen.remove(&id).is_some() {
                    match &report {
                        StolenReport::DepsLost(lost) => {
                            let lost = lost.clone();
                            self.stolen_reports.insert(id, report);
                            self.core.on_stolen_deps_lost(now, id, lost);
                        }
                        StolenReport::Done(_) | StolenReport::Failed { .. } => {
                            let outcome = report.outcome();
                            self.stolen_reports.insert(id, report);
                            self.core.on_stolen_finished(now, id, outcome);
                        }
                    }
                }
            }
            Command::ThiefOutputs {
                peer,
                job,
                result,
                fetched,
            } => self.on_thief_outputs(now, peer, job, result, fetched),
            Command::SystemIdle(idle) => self.core.set_system_idle(now, idle),
            Command::Verified { id, tree } => self.core.on_verified(now, id, tree),
            Command::PeerCorrupt { peer, what } => {
                if !self.core.is_distrusted(&peer) {
                    warn!(%peer, %what, "a peer served corrupt data; disowned for the rest of the daemon's life");
                    for state in self.builds.values() {
                        state.emit(BuildEvent::Notice(format!(
                            "`{peer}` served corrupt data ({what}); nothing more is taken from it \
                             (`weft team trust {peer}` takes it back)"
                        )));
                    }
                    self.served_corrupt.insert(peer);
                    self.core.distrust(now, peer);
                    self.doubted();
                }
            }
            Command::Verdict {
                node,
                verdict,
                reason,
                reply,
            } => self.own_verdict(node, verdict, reason, reply),
            Command::Forget { jobs } => {
                for job in &jobs {
                    self.known.forget(job);
                }
            }
        }
    }

    fn drain_effects(&mut self) {
        while let Some(effect) = self.core.poll_effect() {
            let now = self.now();
            match effect {
                Effect::Build(BuildEffect::LookupCache { build, job }) => {
                    let hit = self.look_up(build, job);
                    self.core.on_local_cache(now, build, job, hit);
                }
                Effect::Build(BuildEffect::Start {
                    build,
                    id,
                    job,
                    deps,
                }) => self.start(build, id, job, deps),
                Effect::Build(BuildEffect::Cancel { build, job }) => {
                    if let Some(state) = self.builds.get_mut(&build)
                        && let Some(handle) = state.running.remove(&job)
                    {
                        // Aborting drops the run future, whose guard kills the process
                        // group and removes the sandbox.
                        handle.abort();
                        self.journal.end(job);
                    }
                    self.core
                        .on_job_finished(now, build, job, Finished::Cancelled);
                }
                Effect::Build(BuildEffect::Skipped { .. }) => {}
                Effect::Build(BuildEffect::BuildDone { build, outcome }) => {
                    if let Some((path, bytes)) = self.durations.take_changes() {
                        tokio::task::spawn_blocking(move || durations::write(&path, &bytes));
                    }
                    if let Some(state) = self.builds.remove(&build) {
                        // Peers were there, but none took a job or served a result: say so, as
                        // a build with no peers does.
                        let n_peers = self.core.peers().len();
                        if self.context.mesh.is_some()
                            && n_peers > 0
                            && state.ran_here > 1
                            && state.from_peers == 0
                        {
                            state.emit(BuildEvent::Notice(format!(
                                "{n_peers} peer(s) connected, but none took a job or served a \
                                 result: built locally (`weft peers` shows whether they share)"
                            )));
                        }
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
                    if let Some(state) = self.builds.get_mut(&build) {
                        state.from_peers += 1;
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
                Effect::QueryPeer {
                    build,
                    job,
                    peer,
                    with_outputs,
                } => self.query_peer(build, job, peer, with_outputs),
                Effect::SendSteal { peer, request } => self.send_steal(peer, request),
                Effect::RunStolen {
                    origin,
                    id,
                    job,
                    deps,
                } => self.run_stolen(origin, id, job, deps),
                Effect::CancelStolen { id } => {
                    if let Some(handle) = self.stolen.remove(&id) {
                        handle.abort();
                        self.journal.end(id);
                        self.core
                            .on_stolen_finished(now, id, StolenOutcome::Cancelled);
                    }
                }
                Effect::SendRenew { origin, jobs } => self.send_renew(origin, jobs),
                Effect::SendDone {
                    origin,
                    id,
                    outcome: Reported::Refused,
                } => self.send_refused(origin, id),
                Effect::SendDone { origin, id, .. } | Effect::SendDepsLost { origin, id, .. } => {
                    self.send_done(origin, id)
                }
                Effect::Publish(gossip) => self.publish(gossip),
                Effect::Verify {
                    id,
                    job,
                    deps,
                    peer,
                } => {
                    debug!(job = %id, name = %job.name, %peer, "checking a peer's cached result by a run here");
                    tokio::spawn(super::work::run_check(
                        self.context.clone(),
                        self.inbox.clone(),
                        id,
                        job,
                        deps,
                    ));
                }
                Effect::Nondeterministic { job, first, second } => {
                    warn!(%job, %first, %second, "nondeterminism: two results of one job differ in their outputs");
                    self.doubted();
                    let mut told = false;
                    for state in self.builds.values() {
                        if state.jobs.contains_key(&job) {
                            state.emit(nondeterministic_notice(&state.name(job), first, second));
                            told = true;
                        }
                    }
                    if !told {
                        // Found after its build ended (a check of a peer's result): the next
                        // build that has the job says so.
                        self.untold_nondeterministic.insert(job, (first, second));
                    }
                }
                Effect::Quarantined {
                    build,
                    job,
                    losses,
                    last,
                } => {
                    if let Some(state) = self.builds.get(&build) {
                        state.emit(BuildEvent::Failed(FailureReport {
                            job,
                            name: state.name(job),
                            command: Vec::new(),
                            exit_code: None,
                            message: format!(
                                "quarantined: it lost its worker {losses} times (last on `{last}`, \
                                 which went away or stopped answering while it ran); it runs no \
                                 more in this build, and the next build tries it once more"
                            ),
                            stderr_tail: String::new(),
                        }));
                    }
                }
            }
        }
    }

    /// A job's result in this node's cache: its output tree.
    fn look_up(&mut self, build: BuildId, job: JobId) -> Option<Digest> {
        if self.core.is_nondeterministic(&job) {
            // The core takes no hit for it; the build must not say it had one.
            return None;
        }
        let state = self.builds.get_mut(&build)?;
        match self.known.look_up(&self.context.store, job) {
            // An entry a disowned node signed is no hit, even before its removal is done.
            Ok(Some(result))
                if result.success() && !self.core.is_distrusted(&result.executed_by) =>
            {
                self.known.remember(job, &result);
                let name = state.name(job);
                state.emit(BuildEvent::CacheHit {
                    job,
                    name,
                    source: CacheSource::Local,
                });
                let tree = result.output_tree;
                state.results.insert(job, result);
                Some(tree)
            }
            Ok(_) => None,
            Err(e) => {
                warn!(job = %job, error = %e, "action cache lookup failed; running the job");
                None
            }
        }
    }

    /// Records, off the build's path, a use of each result served from memory, so that GC
    /// still sees them as recently used.
    fn touch_known(&mut self) {
        let jobs = self.known.take_uses();
        if jobs.is_empty() {
            return;
        }
        let store = self.context.store.clone();
        tokio::task::spawn_blocking(move || {
            for job in jobs {
                let _ = store.get_action(job);
            }
        });
    }

    /// Runs one of this node's jobs, once `deps`' outputs are fetched from where the core
    /// says they are.
    fn start(&mut self, build: BuildId, id: JobId, job: Arc<Job>, deps: Vec<LeaseDep>) {
        let Some(state) = self.builds.get_mut(&build) else {
            return;
        };
        state.emit(BuildEvent::Started {
            job: id,
            name: job.name.clone(),
            node: self.node,
        });
        debug!(job = %id, name = %job.name, "start");
        state.ran_here += 1;
        self.journal.start(id, self.core.losses(&id));
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
        self.journal.end(id);
        let outcome = match run {
            OwnRun::Ran(outcome) => *outcome,
            OwnRun::DepsLost(lost) => {
                let name = state.name(id);
                warn!(job = %id, %name, n_lost = lost.len(), "deps' outputs are gone; running them again");
                state.emit(BuildEvent::Notice(format!(
                    "`{name}`: the outputs of {} of its deps are gone (with the peer that held \
                     them, or found corrupt in the store); building them again",
                    lost.len()
                )));
                self.core.on_deps_lost(now, build, id, &lost);
                return;
            }
            OwnRun::CorruptInput { blob, error } => {
                let name = state.name(id);
                // Once per job and build: a store that keeps corrupting what it is given
                // fails the job rather than loop.
                if state.restored.insert(id) && self.context.sources.restore(&blob) {
                    warn!(job = %id, %name, %blob, "an input's blob was corrupt; stored it again from the workspace");
                    state.emit(BuildEvent::Notice(format!(
                        "`{name}`: an input was corrupt in the store ({error}); stored it again \
                         from the workspace and running the job again"
                    )));
                    self.core.on_deps_lost(now, build, id, &[]);
                    return;
                }
                Err(error)
            }
        };
        let name = state.name(id);
        let mut conflict = None;
        let verdict = match outcome {
            Ok(RunOutcome {
                mut result,
                failure: None,
            }) => {
                let digest = result.signing_digest(id);
                result.signature = self.context.sign(digest.as_bytes());
                // Results are write-once: a different one already there is nondeterminism.
                match self.context.store.put_new_action(id, &result) {
                    Ok(PutAction::Stored | PutAction::Same) => {}
                    Ok(PutAction::Differs(first)) => {
                        conflict = Some(first.executed_by);
                    }
                    Err(e) => {
                        warn!(job = %id, error = %e, "cannot record the result in the action cache");
                    }
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
                let tree = result.output_tree;
                state.results.insert(id, result);
                Finished::Succeeded(tree)
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
                Finished::Failed
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
                Finished::Failed
            }
        };
        if let Some(first) = conflict {
            self.core.on_nondeterministic(now, id, first, self.node);
        }
        self.core.on_job_finished(now, build, id, verdict);
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
            && known.output_tree != result.output_tree
        {
            let now = self.now();
            self.core
                .on_nondeterministic(now, job, known.executed_by, result.executed_by);
        }
        for state in self.builds.values_mut() {
            if state.jobs.contains_key(&job) {
                state.results.insert(job, result.clone());
            }
        }
    }
}

/// What a build says of a job found to make different outputs.
fn nondeterministic_notice(name: &str, first: NodeId, second: NodeId) -> BuildEvent {
    BuildEvent::Notice(format!(
        "`{name}` is nondeterministic: `{first}` and `{second}` made different outputs; it is \
         built here, and taken from no cache, until two runs here agree"
    ))
}

async fn next_mesh_event(events: &mut Option<mpsc::Receiver<MeshEvent>>) -> Option<MeshEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}
