//! The build scheduler: which ready job runs next, and what a result unblocks.
//!
//! Flow, for each build:
//!
//! 1. [`Scheduler::add_build`] takes the whole job graph. Jobs with no deps are ready.
//! 2. A ready job is first looked up in the cache ([`BuildEffect::LookupCache`]); the driver
//!    answers with [`Scheduler::on_cache_lookup`].
//! 3. A miss joins the build's ready queue. Whenever a slot is free, the queued job with the
//!    longest remaining critical path (its own estimate plus the longest chain of estimates
//!    below it) starts ([`BuildEffect::Start`]).
//! 4. [`Scheduler::on_job_finished`] frees the slot and makes dependents ready. A failure stops
//!    the build from starting anything new, or with `keep_going` skips only what depends on
//!    it.
//! 5. When nothing of the build is left to do or in flight, [`BuildEffect::BuildDone`].
//!
//! Builds do not share jobs: two concurrent builds that contain the same job may both run it,
//! which is harmless because results are deterministic and cached by id.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use weft_protocol::wire::LeaseDep;
use weft_protocol::{Digest, Job, JobId, NodeId};

use super::Time;

/// Names one build among those the scheduler runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildId(pub u64);

/// A job as the scheduler receives it.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The job's id.
    pub id: JobId,
    /// The job itself; its `deps` are the edges of the graph.
    pub job: Arc<Job>,
    /// How long the job is expected to run, from past runs; zero when unknown.
    pub estimate: Duration,
    /// The build publishes the job's outputs: a result made elsewhere counts only once its
    /// outputs are in this node's store.
    pub wanted: bool,
}

/// Where a settled job's outputs are: their tree, and the node that made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    /// The output tree's digest.
    pub tree: Digest,
    /// The node that made the result (it holds the outputs).
    pub by: NodeId,
}

/// How a build behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// After a failure, go on with everything that does not depend on it.
    pub keep_going: bool,
    /// At most this many of the build's jobs run at once (at least 1).
    pub max_parallel: usize,
}

/// What a job's run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It succeeded, with these outputs; dependents may run.
    Succeeded(Made),
    /// It failed.
    Failed,
    /// It was stopped because its build was cancelled.
    Cancelled,
}

/// The end of a build, with its counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOutcome {
    /// Every job succeeded.
    pub success: bool,
    /// The build was cancelled.
    pub cancelled: bool,
    /// Jobs that ran.
    pub n_ran: u64,
    /// Jobs whose results came from a cache.
    pub n_cached: u64,
    /// Jobs that failed.
    pub n_failed: u64,
    /// Jobs that never started because a dependency failed or the build stopped.
    pub n_skipped: u64,
}

/// Something the driver must do for one of this node's builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEffect {
    /// Look the job up in the caches and answer with [`Scheduler::on_cache_lookup`].
    LookupCache {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
    },
    /// Run the job here, and answer with [`Scheduler::on_job_finished`].
    Start {
        /// The build.
        build: BuildId,
        /// The job's id.
        id: JobId,
        /// The job.
        job: Arc<Job>,
        /// Where each dep's outputs are, in the order of the job's deps. The scheduler names
        /// the node that made each; `Core` adds the peers that announced it and this node.
        deps: Vec<LeaseDep>,
    },
    /// Stop the running job, then answer with [`Scheduler::on_job_finished`].
    Cancel {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
    },
    /// The job will not run, because a dependency failed.
    Skipped {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
    },
    /// The build is over; the scheduler has forgotten it.
    BuildDone {
        /// The build.
        build: BuildId,
        /// How it ended.
        outcome: BuildOutcome,
    },
}

/// A graph the scheduler cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A job names a dependency that is not in the graph.
    #[error("job `{job}` depends on `{dep}`, which is not part of the build")]
    UnknownDep {
        /// The job's name.
        job: String,
        /// The missing dependency's id.
        dep: JobId,
    },
    /// The graph has a cycle through these jobs.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// The build id is in use.
    #[error("build {0:?} is already running")]
    DuplicateBuild(BuildId),
}

/// Queued jobs reserved for peers faster than the node about to take them, so that a
/// build's critical path runs on its fastest machine (set by `Core`, which knows the peers).
///
/// The `count` highest-priority queued jobs that are worth moving (expected to run at least
/// `min_estimate`) and were queued less than `window` before `now` are passed over; the
/// rest are taken as usual. A job reserved longer than `window` is taken by whoever comes, so
/// a fast peer that does not come costs at most `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// How many jobs to reserve.
    pub count: usize,
    /// The time now.
    pub now: Time,
    /// The longest a job is reserved.
    pub window: Duration,
    /// Jobs expected to run for less are never reserved.
    pub min_estimate: Duration,
}

impl Reserve {
    /// Reserves nothing.
    pub const NONE: Reserve = Reserve {
        count: 0,
        now: Time::ZERO,
        window: Duration::ZERO,
        min_estimate: Duration::ZERO,
    };

    fn covers(&self, entry: &Entry) -> bool {
        entry.estimate >= self.min_estimate && entry.queued_at + self.window > self.now
    }
}

/// The scheduler of every build this node runs.
#[derive(Debug)]
pub struct Scheduler {
    slots: usize,
    /// Queued jobs the local slots leave for faster peers.
    reserve: Reserve,
    /// When the earliest job `reserve` passed over stops being reserved.
    reserve_expiry: Option<Time>,
    /// Slots taken by work that is not the scheduler's own (jobs run for peers).
    slots_for_peers: usize,
    running: usize,
    builds: BTreeMap<BuildId, Build>,
    effects: VecDeque<BuildEffect>,
    seq: u64,
}

#[derive(Debug)]
struct Build {
    options: BuildOptions,
    jobs: HashMap<JobId, Entry>,
    ready: BinaryHeap<Ready>,
    /// Jobs running now.
    running: usize,
    /// Jobs being looked up or running.
    in_flight: usize,
    /// Jobs not yet in a final state.
    left: usize,
    failed: bool,
    cancelled: bool,
    outcome: BuildOutcome,
}

#[derive(Debug)]
struct Entry {
    job: Arc<Job>,
    dependents: Vec<JobId>,
    deps_left: usize,
    priority: u64,
    /// How long it is expected to run (zero when unknown).
    estimate: Duration,
    state: State,
    /// Settled from a cache rather than run (for the counts when it is reopened).
    cached: bool,
    /// Where its outputs are, once settled.
    made: Option<Made>,
    /// Its outputs are published: see [`PlannedJob::wanted`].
    wanted: bool,
    /// When it last joined the ready queue.
    queued_at: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    LookingUp,
    Queued,
    /// Running here (`None`) or on a peer that stole it.
    Running(Option<NodeId>),
    Done,
    Failed,
    Skipped,
}

impl State {
    fn is_final(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Skipped)
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Ready {
    priority: u64,
    seq: u64,
    job: JobId,
}

impl Ord for Ready {
    fn cmp(&self, other: &Ready) -> Ordering {
        // Highest priority first; among equals, the one queued first.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Ready) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Scheduler {
    /// A scheduler that runs at most `slots` jobs at once (at least 1).
    pub fn new(slots: usize) -> Scheduler {
        Scheduler {
            slots: slots.max(1),
            reserve: Reserve::NONE,
            reserve_expiry: None,
            slots_for_peers: 0,
            running: 0,
            builds: BTreeMap::new(),
            effects: VecDeque::new(),
            seq: 0,
        }
    }

    /// How many jobs run at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Jobs of its own builds running here now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Sets how many slots other work (jobs run for peers) takes.
    pub fn set_slots_for_peers(&mut self, n: usize) {
        self.slots_for_peers = n;
    }

    /// Sets which queued jobs the local slots leave for faster peers (from the next
    /// [`Scheduler::poll_effect`] on).
    pub fn set_reserve(&mut self, reserve: Reserve) {
        self.reserve = reserve;
    }

    /// When a job that the local slots left for faster peers may start here after all: the
    /// driver should poll again then.
    pub fn reserve_expiry(&self) -> Option<Time> {
        self.reserve_expiry
    }

    /// Slots running neither a local job nor a peer's.
    pub fn free_slots(&self) -> usize {
        self.slots
            .saturating_sub(self.running + self.slots_for_peers)
    }

    /// Whether any build is running.
    pub fn is_building(&self) -> bool {
        !self.builds.is_empty()
    }

    /// Jobs queued and ready to run, over all builds.
    pub fn queued(&self) -> usize {
        self.builds.values().map(|b| b.ready.len()).sum()
    }

    /// The next thing to do, if any.
    ///
    /// Jobs start only once every earlier effect has been taken: a driver that answers cache
    /// lookups as it polls them lets the whole ready set into the queue before the best job
    /// is chosen.
    pub fn poll_effect(&mut self) -> Option<BuildEffect> {
        if self.effects.is_empty() {
            self.fill_slots();
        }
        self.effects.pop_front()
    }

    /// Starts a build of `jobs`, which must be closed under deps and acyclic.
    pub fn add_build(
        &mut self,
        _now: Time,
        build: BuildId,
        jobs: Vec<PlannedJob>,
        options: BuildOptions,
    ) -> Result<(), PlanError> {
        if self.builds.contains_key(&build) {
            return Err(PlanError::DuplicateBuild(build));
        }
        let estimates: HashMap<JobId, u64> = jobs
            .iter()
            .map(|p| {
                (
                    p.id,
                    u64::try_from(p.estimate.as_micros()).unwrap_or(u64::MAX),
                )
            })
            .collect();
        let mut entries: HashMap<JobId, Entry> = HashMap::with_capacity(jobs.len());
        for planned in &jobs {
            entries.insert(
                planned.id,
                Entry {
                    job: planned.job.clone(),
                    dependents: Vec::new(),
                    deps_left: planned.job.deps.len(),
                    priority: 0,
                    estimate: planned.estimate,
                    state: State::Waiting,
                    cached: false,
                    made: None,
                    wanted: planned.wanted,
                    queued_at: Time::ZERO,
                },
            );
        }
        for planned in &jobs {
            for dep in &planned.job.deps {
                match entries.get_mut(dep) {
                    Some(entry) => entry.dependents.push(planned.id),
                    None => {
                        return Err(PlanError::UnknownDep {
                            job: planned.job.name.clone(),
                            dep: *dep,
                        });
                    }
                }
            }
        }
        let order = topological_order(&entries)?;
        // Longest remaining path: a job's estimate plus the longest path among its dependents,
        // computed from the sinks up. One microsecond per job breaks ties towards deep chains
        // when no estimates are known yet.
        for id in order.iter().rev() {
            let below = entries[id]
                .dependents
                .iter()
                .map(|d| entries[d].priority)
                .max()
                .unwrap_or(0);
            let own = estimates[id].max(1);
            if let Some(entry) = entries.get_mut(id) {
                entry.priority = below.saturating_add(own);
            }
        }
        let roots: Vec<JobId> = order
            .iter()
            .copied()
            .filter(|id| entries[id].deps_left == 0)
            .collect();
        let left = entries.len();
        self.builds.insert(
            build,
            Build {
                options: BuildOptions {
                    max_parallel: options.max_parallel.max(1),
                    ..options
                },
                jobs: entries,
                ready: BinaryHeap::new(),
                running: 0,
                in_flight: 0,
                left,
                failed: false,
                cancelled: false,
                outcome: BuildOutcome::default(),
            },
        );
        for id in roots {
            self.look_up(build, id);
        }
        self.finish_if_done(build);
        Ok(())
    }

    /// The driver's answer to [`BuildEffect::LookupCache`]: a hit, with where its outputs
    /// are, or a miss.
    pub fn on_cache_lookup(&mut self, now: Time, build: BuildId, job: JobId, hit: Option<Made>) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        if entry.state != State::LookingUp {
            return;
        }
        b.in_flight -= 1;
        if let Some(made) = hit {
            b.outcome.n_cached += 1;
            entry.cached = true;
            entry.made = Some(made);
            self.succeed(build, job);
        } else if b.failed || b.cancelled {
            entry.state = State::Skipped;
            b.left -= 1;
            b.outcome.n_skipped += 1;
        } else if entry.deps_left > 0 {
            // A dep's outputs went while this was looked up: it runs again first.
            entry.state = State::Waiting;
        } else {
            entry.state = State::Queued;
            entry.queued_at = now;
            self.seq += 1;
            b.ready.push(Ready {
                priority: entry.priority,
                seq: self.seq,
                job,
            });
        }
        self.finish_if_done(build);
    }

    /// The driver's answer to [`BuildEffect::Start`] (or [`BuildEffect::Cancel`]), or a
    /// peer's report on a job it stole: the job is over.
    pub fn on_job_finished(&mut self, _now: Time, build: BuildId, job: JobId, outcome: JobOutcome) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        let State::Running(runner) = entry.state else {
            return;
        };
        if runner.is_none() {
            self.running -= 1;
            b.running -= 1;
        }
        b.in_flight -= 1;
        self.settle(build, job, outcome);
    }

    /// A peer finished a job that this scheduler had given away, after the lease ran out and
    /// the job came back: whatever state the job is in now, the peer's success counts. A copy
    /// running here is stopped ([`BuildEffect::Cancel`]); its own finish is then ignored.
    pub fn on_returned_job_done(&mut self, now: Time, build: BuildId, job: JobId, made: Made) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        match entry.state {
            State::Running(_) => {
                if entry.state == State::Running(None) {
                    self.effects.push_back(BuildEffect::Cancel { build, job });
                }
                self.on_job_finished(now, build, job, JobOutcome::Succeeded(made));
            }
            State::Queued => {
                // Its heap entry is skipped when popped.
                b.outcome.n_ran += 1;
                entry.made = Some(made);
                self.succeed(build, job);
                self.finish_if_done(build);
            }
            _ => {}
        }
    }

    /// A job could not start because the outputs of some of its deps cannot be had any more
    /// (the peer that held them is gone): those deps run again, and the job waits for them.
    /// Call it instead of [`Scheduler::on_job_finished`] for a job that was started, or for
    /// a job given to a peer.
    pub fn on_deps_lost(&mut self, now: Time, build: BuildId, job: JobId, lost: &[JobId]) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get(&job) else {
            return;
        };
        let State::Running(runner) = entry.state else {
            return;
        };
        let this = entry.job.clone();
        if runner.is_none() {
            self.running -= 1;
            b.running -= 1;
        }
        b.in_flight -= 1;
        let mut waits_for = 0;
        for dep in lost {
            let Some(d) = b.jobs.get_mut(dep) else {
                continue;
            };
            if !this.deps.contains(dep) {
                continue;
            }
            match d.state {
                State::Done => {
                    // Settled once, but its outputs are gone: run it again. Its other
                    // dependents that have not started wait for it again too.
                    if d.cached {
                        b.outcome.n_cached -= 1;
                    } else {
                        b.outcome.n_ran -= 1;
                    }
                    d.cached = false;
                    d.made = None;
                    d.state = State::Queued;
                    d.queued_at = now;
                    b.left += 1;
                    self.seq += 1;
                    b.ready.push(Ready {
                        priority: d.priority,
                        seq: self.seq,
                        job: *dep,
                    });
                    let others: Vec<JobId> =
                        d.dependents.iter().copied().filter(|e| *e != job).collect();
                    for other in others {
                        if let Some(e) = b.jobs.get_mut(&other) {
                            match e.state {
                                // One being looked up waits too, if the lookup misses.
                                State::Waiting | State::LookingUp => e.deps_left += 1,
                                State::Queued => {
                                    // Its heap entry goes stale; it waits again.
                                    e.state = State::Waiting;
                                    e.deps_left += 1;
                                }
                                _ => {}
                            }
                        }
                    }
                    waits_for += 1;
                }
                State::Waiting | State::LookingUp | State::Queued | State::Running(_) => {
                    waits_for += 1;
                }
                State::Failed | State::Skipped => {}
            }
        }
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        entry.state = State::Waiting;
        entry.deps_left = waits_for;
        if waits_for == 0 {
            // Nothing to wait for after all: look it up and queue it again.
            self.look_up(build, job);
        }
        self.finish_if_done(build);
    }

    fn settle(&mut self, build: BuildId, job: JobId, outcome: JobOutcome) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        match outcome {
            JobOutcome::Succeeded(made) => {
                b.outcome.n_ran += 1;
                entry.made = Some(made);
                self.succeed(build, job);
            }
            JobOutcome::Failed | JobOutcome::Cancelled => {
                entry.state = State::Failed;
                b.left -= 1;
                if outcome == JobOutcome::Failed {
                    b.outcome.n_failed += 1;
                } else {
                    b.outcome.n_skipped += 1;
                }
                if b.options.keep_going && outcome == JobOutcome::Failed {
                    self.skip_dependents(build, job);
                } else {
                    b.failed = true;
                    self.stop_queue(build);
                }
            }
        }
        self.finish_if_done(build);
    }

    /// Gives up to `max` queued jobs to a peer: the highest priority first, among those
    /// `score` accepts (`None` refuses a job; a higher score is preferred among the
    /// `4 * max` best candidates), except those `reserve` keeps for faster peers. The jobs
    /// count as running on `peer` until [`Scheduler::on_job_finished`] or
    /// [`Scheduler::requeue`].
    pub fn take_for_peer(
        &mut self,
        peer: NodeId,
        max: usize,
        reserve: Reserve,
        mut score: impl FnMut(JobId, &Job) -> Option<i64>,
    ) -> Vec<(BuildId, JobId, Arc<Job>, Time)> {
        let mut given = Vec::new();
        if max == 0 {
            return given;
        }
        let window = max.saturating_mul(4);
        // Enough candidates that `window` remain after the reserved ones.
        let wanted = window.saturating_add(reserve.count);
        // Candidates from every build, by priority: (priority, build, ready entry, score).
        let mut candidates: Vec<(u64, BuildId, Ready, i64)> = Vec::new();
        let mut refused: Vec<(BuildId, Ready)> = Vec::new();
        for (build_id, b) in &mut self.builds {
            if b.failed || b.cancelled {
                continue;
            }
            // A job can have two live heap entries: one left from before it went back to
            // waiting (`on_deps_lost`), one from when it was queued again. Each job is a
            // candidate once; its other entry is dropped like any stale one.
            let mut seen: Vec<JobId> = Vec::new();
            let mut taken = 0;
            while taken < wanted {
                let Some(ready) = b.ready.pop() else { break };
                let Some(entry) = b.jobs.get(&ready.job) else {
                    continue;
                };
                if entry.state != State::Queued || seen.contains(&ready.job) {
                    continue;
                }
                seen.push(ready.job);
                match score(ready.job, &entry.job) {
                    Some(points) => {
                        candidates.push((ready.priority, *build_id, ready, points));
                        taken += 1;
                    }
                    None => refused.push((*build_id, ready)),
                }
            }
        }
        // Best `window` by priority, after the reserved ones, then prefer the higher score within
        // them.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.seq.cmp(&b.2.seq)));
        if reserve.count > 0 {
            let mut left = reserve.count;
            let mut kept = Vec::with_capacity(candidates.len());
            for candidate in candidates {
                let reserved = left > 0
                    && self
                        .builds
                        .get(&candidate.1)
                        .and_then(|b| b.jobs.get(&candidate.2.job))
                        .is_some_and(|entry| reserve.covers(entry));
                if reserved {
                    left -= 1;
                    refused.push((candidate.1, candidate.2));
                } else {
                    kept.push(candidate);
                }
            }
            candidates = kept;
        }
        let mut window_set: Vec<_> = candidates.drain(..candidates.len().min(window)).collect();
        let rest = candidates;
        window_set.sort_by(|a, b| {
            b.3.cmp(&a.3)
                .then_with(|| b.0.cmp(&a.0))
                .then_with(|| a.2.seq.cmp(&b.2.seq))
        });
        let mut back = Vec::new();
        for (index, (_, build, ready, _)) in window_set.into_iter().enumerate() {
            if index < max {
                let Some(b) = self.builds.get_mut(&build) else {
                    continue;
                };
                let Some(entry) = b.jobs.get_mut(&ready.job) else {
                    continue;
                };
                entry.state = State::Running(Some(peer));
                b.in_flight += 1;
                given.push((build, ready.job, entry.job.clone(), entry.queued_at));
            } else {
                back.push((build, ready));
            }
        }
        for (_, build, ready, _) in rest {
            back.push((build, ready));
        }
        for (build, ready) in back.into_iter().chain(refused) {
            if let Some(b) = self.builds.get_mut(&build) {
                b.ready.push(ready);
            }
        }
        given
    }

    /// Puts a job given to a peer back in its build's queue: the lease ran out or the peer
    /// is gone. Returns whether the job was still out.
    pub fn requeue(&mut self, now: Time, build: BuildId, job: JobId) -> bool {
        let Some(b) = self.builds.get_mut(&build) else {
            return false;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return false;
        };
        if !matches!(entry.state, State::Running(Some(_))) {
            return false;
        }
        b.in_flight -= 1;
        if b.failed || b.cancelled {
            entry.state = State::Skipped;
            b.left -= 1;
            b.outcome.n_skipped += 1;
            self.finish_if_done(build);
            return true;
        }
        entry.state = State::Queued;
        entry.queued_at = now;
        self.seq += 1;
        b.ready.push(Ready {
            priority: entry.priority,
            seq: self.seq,
            job,
        });
        true
    }

    /// The builds in which a job is not settled yet.
    pub fn builds_with(&self, job: JobId) -> Vec<BuildId> {
        self.builds
            .iter()
            .filter(|(_, b)| b.jobs.get(&job).is_some_and(|e| !e.state.is_final()))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The peer a job was given to, if it is out.
    pub fn runner(&self, build: BuildId, job: JobId) -> Option<NodeId> {
        match self.builds.get(&build)?.jobs.get(&job)?.state {
            State::Running(peer) => peer,
            _ => None,
        }
    }

    /// Cancels a build: nothing new starts, and running jobs are asked to stop.
    pub fn cancel_build(&mut self, _now: Time, build: BuildId) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        if b.cancelled {
            return;
        }
        b.cancelled = true;
        let mut running: Vec<JobId> = b
            .jobs
            .iter()
            .filter(|(_, e)| e.state == State::Running(None))
            .map(|(id, _)| *id)
            .collect();
        running.sort();
        for job in running {
            self.effects.push_back(BuildEffect::Cancel { build, job });
        }
        self.stop_queue(build);
        self.finish_if_done(build);
    }

    fn look_up(&mut self, build: BuildId, job: JobId) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        entry.state = State::LookingUp;
        b.in_flight += 1;
        self.effects
            .push_back(BuildEffect::LookupCache { build, job });
    }

    fn succeed(&mut self, build: BuildId, job: JobId) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let Some(entry) = b.jobs.get_mut(&job) else {
            return;
        };
        entry.state = State::Done;
        b.left -= 1;
        let dependents = entry.dependents.clone();
        let stopped = b.failed || b.cancelled;
        let mut unblocked = Vec::new();
        for dependent in dependents {
            let Some(d) = b.jobs.get_mut(&dependent) else {
                continue;
            };
            d.deps_left = d.deps_left.saturating_sub(1);
            if d.deps_left == 0 && d.state == State::Waiting && !stopped {
                unblocked.push(dependent);
            }
        }
        for dependent in unblocked {
            self.look_up(build, dependent);
        }
    }

    /// Marks everything below a failed job as skipped (for `keep_going`).
    fn skip_dependents(&mut self, build: BuildId, job: JobId) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        let mut todo = b
            .jobs
            .get(&job)
            .map(|e| e.dependents.clone())
            .unwrap_or_default();
        while let Some(id) = todo.pop() {
            let Some(entry) = b.jobs.get_mut(&id) else {
                continue;
            };
            if entry.state != State::Waiting {
                continue;
            }
            entry.state = State::Skipped;
            b.left -= 1;
            b.outcome.n_skipped += 1;
            todo.extend(entry.dependents.iter().copied());
            self.effects
                .push_back(BuildEffect::Skipped { build, job: id });
        }
    }

    /// Drops a stopped build's queue; its waiting jobs will never run.
    fn stop_queue(&mut self, build: BuildId) {
        let Some(b) = self.builds.get_mut(&build) else {
            return;
        };
        for ready in std::mem::take(&mut b.ready) {
            // Only what is still queued: a heap entry can be stale (its job settled since).
            if let Some(entry) = b.jobs.get_mut(&ready.job)
                && entry.state == State::Queued
            {
                entry.state = State::Skipped;
                b.left -= 1;
                b.outcome.n_skipped += 1;
            }
        }
    }

    fn finish_if_done(&mut self, build: BuildId) {
        let Some(b) = self.builds.get(&build) else {
            return;
        };
        let stopped = b.failed || b.cancelled;
        if b.in_flight > 0 || (!stopped && b.left > 0) {
            return;
        }
        let Some(mut b) = self.builds.remove(&build) else {
            return;
        };
        // Whatever never got going counts as skipped.
        let never_started = b.jobs.values().filter(|e| !e.state.is_final()).count() as u64;
        b.outcome.n_skipped += never_started;
        b.outcome.cancelled = b.cancelled;
        b.outcome.success = !b.failed && !b.cancelled && b.outcome.n_failed == 0;
        self.effects.push_back(BuildEffect::BuildDone {
            build,
            outcome: b.outcome,
        });
    }

    /// Starts queued jobs while slots are free: the highest priority over all builds that are
    /// under their own parallelism limit.
    ///
    /// The jobs [`Scheduler::set_reserve`] reserves are passed over and stay queued.
    fn fill_slots(&mut self) {
        let reserve = self.reserve;
        let mut to_reserve = reserve.count;
        let mut passed_over: Vec<(BuildId, Ready)> = Vec::new();
        self.reserve_expiry = None;
        while self.running + self.slots_for_peers < self.slots {
            let best = self
                .builds
                .iter()
                .filter(|(_, b)| b.running < b.options.max_parallel)
                .filter_map(|(id, b)| b.ready.peek().map(|r| (r.priority, *id)))
                .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
            let Some((_, build)) = best else { break };
            let Some(b) = self.builds.get_mut(&build) else {
                break;
            };
            let Some(ready) = b.ready.pop() else { break };
            let Some(entry) = b.jobs.get_mut(&ready.job) else {
                continue;
            };
            if entry.state != State::Queued {
                // Finished meanwhile by a peer: a stale heap entry.
                continue;
            }
            if to_reserve > 0 && reserve.covers(entry) {
                to_reserve -= 1;
                let expiry = entry.queued_at + reserve.window;
                self.reserve_expiry = Some(self.reserve_expiry.map_or(expiry, |e| e.min(expiry)));
                passed_over.push((build, ready));
                continue;
            }
            entry.state = State::Running(None);
            let job = entry.job.clone();
            b.running += 1;
            b.in_flight += 1;
            self.running += 1;
            let deps = b.dep_outputs(&job);
            self.effects.push_back(BuildEffect::Start {
                build,
                id: ready.job,
                job,
                deps,
            });
        }
        for (build, ready) in passed_over {
            if let Some(b) = self.builds.get_mut(&build) {
                b.ready.push(ready);
            }
        }
    }

    /// The job behind an id in a running build.
    pub fn job(&self, build: BuildId, job: JobId) -> Option<&Arc<Job>> {
        self.builds.get(&build)?.jobs.get(&job).map(|e| &e.job)
    }

    /// Where the outputs of `job`'s deps are, as far as `build` knows: each settled dep's
    /// tree and the node that made it, in the order of the job's deps.
    pub fn dep_outputs(&self, build: BuildId, job: &Job) -> Vec<LeaseDep> {
        self.builds
            .get(&build)
            .map(|b| b.dep_outputs(job))
            .unwrap_or_default()
    }

    /// Fails a queued job (it will not run in this build); false when it is not queued.
    pub fn fail_queued(&mut self, now: Time, build: BuildId, job: JobId) -> bool {
        let Some(entry) = self
            .builds
            .get_mut(&build)
            .and_then(|b| b.jobs.get_mut(&job))
        else {
            return false;
        };
        if entry.state != State::Queued {
            return false;
        }
        // Its heap entry is skipped when popped; `settle` counts it as running no more.
        entry.state = State::Running(None);
        self.running += 1;
        if let Some(b) = self.builds.get_mut(&build) {
            b.running += 1;
            b.in_flight += 1;
        }
        self.on_job_finished(now, build, job, JobOutcome::Failed);
        true
    }

    /// Where a settled result of `job` is, in the first build that has one.
    pub fn made_of(&self, job: JobId) -> Option<Made> {
        self.builds
            .values()
            .find_map(|b| b.jobs.get(&job).and_then(|e| e.made))
    }

    /// Records that a result of `job` made elsewhere is in: every build that has the job
    /// takes its outputs from there from now on.
    pub fn set_made(&mut self, job: JobId, made: Made) {
        for b in self.builds.values_mut() {
            if let Some(entry) = b.jobs.get_mut(&job) {
                entry.made = Some(made);
            }
        }
    }

    /// Whether `build` publishes the outputs of `job`.
    pub fn is_wanted(&self, build: BuildId, job: JobId) -> bool {
        self.builds
            .get(&build)
            .and_then(|b| b.jobs.get(&job))
            .is_some_and(|e| e.wanted)
    }

    /// Whether any build publishes the outputs of `job`.
    pub fn is_wanted_anywhere(&self, job: JobId) -> bool {
        self.builds
            .values()
            .any(|b| b.jobs.get(&job).is_some_and(|e| e.wanted))
    }
}

impl Build {
    fn dep_outputs(&self, job: &Job) -> Vec<LeaseDep> {
        job.deps
            .iter()
            .filter_map(|dep| {
                let made = self.jobs.get(dep)?.made?;
                Some(LeaseDep {
                    job: *dep,
                    tree: made.tree,
                    holders: vec![made.by],
                })
            })
            .collect()
    }
}

/// Kahn's algorithm: every job after its deps, or the cycle that prevents it.
fn topological_order(entries: &HashMap<JobId, Entry>) -> Result<Vec<JobId>, PlanError> {
    let mut deps_left: HashMap<JobId, usize> = entries
        .iter()
        .map(|(id, e)| (*id, e.job.deps.len()))
        .collect();
    let mut ready: Vec<JobId> = deps_left
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    ready.sort();
    let mut order = Vec::with_capacity(entries.len());
    while let Some(id) = ready.pop() {
        order.push(id);
        for dependent in &entries[&id].dependents {
            if let Some(n) = deps_left.get_mut(dependent) {
                *n -= 1;
                if *n == 0 {
                    ready.push(*dependent);
                }
            }
        }
    }
    if order.len() == entries.len() {
        return Ok(order);
    }
    // Walk deps from any job left over until one repeats: that is a cycle.
    let mut stuck: Vec<JobId> = deps_left
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(id, _)| *id)
        .collect();
    stuck.sort();
    let mut path = vec![stuck[0]];
    loop {
        let last = path[path.len() - 1];
        let next = entries[&last]
            .job
            .deps
            .iter()
            .copied()
            .find(|d| deps_left.get(d).is_some_and(|n| *n > 0))
            .unwrap_or(last);
        if let Some(start) = path.iter().position(|id| *id == next) {
            let mut cycle: Vec<String> = path[start..]
                .iter()
                .map(|id| entries[id].job.name.clone())
                .collect();
            cycle.push(entries[&next].job.name.clone());
            return Err(PlanError::Cycle(cycle));
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weft_protocol::{Cmd, Digest, Toolchain};

    use super::*;

    const MADE: Made = Made {
        tree: Digest::from_bytes([1; 32]),
        by: NodeId([2; 32]),
    };

    /// A graph of named jobs: (name, deps by name, estimate in ms).
    fn plan(spec: &[(&str, &[&str], u64)]) -> (Vec<PlannedJob>, BTreeMap<String, JobId>) {
        let mut ids = BTreeMap::new();
        let mut planned = Vec::new();
        for (name, deps, ms) in spec {
            let job = Job {
                name: (*name).to_owned(),
                inputs: vec![],
                deps: deps.iter().map(|d| ids[*d]).collect(),
                cmds: vec![Cmd::Cat {
                    output: "{{OUTPUT_DIR}}/x".into(),
                    template: (*name).into(),
                }],
                env: BTreeMap::new(),
                outs: vec![],
                toolchain: Toolchain::default(),
                network: false,
            };
            let id = job.id();
            ids.insert((*name).to_owned(), id);
            planned.push(PlannedJob {
                id,
                job: Arc::new(job),
                estimate: Duration::from_millis(*ms),
                wanted: false,
            });
        }
        (planned, ids)
    }

    fn name_of(s: &Scheduler, build: BuildId, job: JobId) -> String {
        s.job(build, job)
            .map(|j| j.name.clone())
            .unwrap_or_default()
    }

    /// Drives the scheduler: cache lookups answer from `cached`, and every started job finishes
    /// in start order, failing when its name is in `failing`. Returns the start order and the
    /// outcome.
    fn drive(
        s: &mut Scheduler,
        build: BuildId,
        cached: &[&str],
        failing: &[&str],
    ) -> (Vec<String>, BuildOutcome) {
        let mut started = Vec::new();
        let mut running = VecDeque::new();
        loop {
            while let Some(effect) = s.poll_effect() {
                match effect {
                    BuildEffect::LookupCache { build, job } => {
                        let hit = cached.contains(&name_of(s, build, job).as_str());
                        s.on_cache_lookup(Time::ZERO, build, job, hit.then_some(MADE));
                    }
                    BuildEffect::Start { build, id: job, .. } => {
                        started.push(name_of(s, build, job));
                        running.push_back((build, job));
                    }
                    BuildEffect::BuildDone { outcome, .. } => return (started, outcome),
                    BuildEffect::Cancel { .. } | BuildEffect::Skipped { .. } => {}
                }
            }
            let Some((b, job)) = running.pop_front() else {
                panic!("stuck: {started:?}")
            };
            let outcome = if failing.contains(&name_of(s, b, job).as_str()) {
                JobOutcome::Failed
            } else {
                JobOutcome::Succeeded(MADE)
            };
            s.on_job_finished(Time::ZERO, b, job, outcome);
            assert_eq!(build, b);
        }
    }

    const OPTS: BuildOptions = BuildOptions {
        keep_going: false,
        max_parallel: 64,
    };

    #[test]
    fn diamond_runs_in_dependency_order() {
        let (jobs, _) = plan(&[
            ("a", &[], 0),
            ("b", &["a"], 0),
            ("c", &["a"], 0),
            ("d", &["b", "c"], 0),
        ]);
        let mut s = Scheduler::new(1);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let (order, outcome) = drive(&mut s, BuildId(1), &[], &[]);
        assert_eq!(order[0], "a");
        assert_eq!(order[3], "d");
        assert_eq!(
            outcome,
            BuildOutcome {
                success: true,
                n_ran: 4,
                ..BuildOutcome::default()
            }
        );
    }

    #[test]
    fn longest_remaining_path_goes_first() {
        // `long` heads a chain of 3 s; `short1..3` take 1 s each and nothing depends on them.
        let (jobs, _) = plan(&[
            ("short1", &[], 1000),
            ("short2", &[], 1000),
            ("long", &[], 1000),
            ("long2", &["long"], 1000),
            ("long3", &["long2"], 1000),
            ("short3", &[], 1000),
        ]);
        let mut s = Scheduler::new(1);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let (order, _) = drive(&mut s, BuildId(1), &[], &[]);
        assert_eq!(order[0], "long");
        // After `long`, `long2` (2 s left) beats the 1 s shorts.
        assert_eq!(order[1], "long2");
    }

    #[test]
    fn slots_bound_parallelism() {
        let (jobs, _) = plan(&[("a", &[], 0), ("b", &[], 0), ("c", &[], 0)]);
        let mut s = Scheduler::new(2);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let mut starts = 0;
        while let Some(effect) = s.poll_effect() {
            match effect {
                BuildEffect::LookupCache { build, job } => {
                    s.on_cache_lookup(Time::ZERO, build, job, None)
                }
                BuildEffect::Start { .. } => starts += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((starts, s.running(), s.queued()), (2, 2, 1));
    }

    #[test]
    fn cache_hits_unblock_without_running() {
        let (jobs, _) = plan(&[("a", &[], 0), ("b", &["a"], 0), ("c", &["b"], 0)]);
        let mut s = Scheduler::new(2);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let (order, outcome) = drive(&mut s, BuildId(1), &["a", "b"], &[]);
        assert_eq!(order, ["c"]);
        assert_eq!(
            (outcome.n_cached, outcome.n_ran, outcome.success),
            (2, 1, true)
        );
    }

    #[test]
    fn failure_stops_the_build() {
        let (jobs, _) = plan(&[
            ("bad", &[], 0),
            ("after", &["bad"], 0),
            ("x", &[], 0),
            ("y", &["x"], 0),
        ]);
        let mut s = Scheduler::new(1);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let (order, outcome) = drive(&mut s, BuildId(1), &[], &["bad"]);
        assert!(!order.contains(&"after".to_owned()));
        assert!(!outcome.success);
        assert_eq!(outcome.n_failed, 1);
        assert_eq!(outcome.n_ran + outcome.n_failed + outcome.n_skipped, 4);
    }

    #[test]
    fn keep_going_skips_only_dependents() {
        let (jobs, _) = plan(&[
            ("bad", &[], 5),
            ("after", &["bad"], 0),
            ("after2", &["after"], 0),
            ("x", &[], 0),
            ("y", &["x"], 0),
        ]);
        let mut s = Scheduler::new(1);
        let opts = BuildOptions {
            keep_going: true,
            max_parallel: 8,
        };
        s.add_build(Time::ZERO, BuildId(1), jobs, opts)
            .expect("valid graph");
        let (order, outcome) = drive(&mut s, BuildId(1), &[], &["bad"]);
        assert_eq!(order, ["bad", "x", "y"]);
        assert_eq!(
            (outcome.n_ran, outcome.n_failed, outcome.n_skipped),
            (2, 1, 2)
        );
        assert!(!outcome.success);
    }

    #[test]
    fn cancel_stops_running_jobs_and_ends_the_build() {
        let (jobs, _) = plan(&[("a", &[], 0), ("b", &[], 0), ("c", &["a"], 0)]);
        let mut s = Scheduler::new(2);
        s.add_build(Time::ZERO, BuildId(7), jobs, OPTS)
            .expect("valid graph");
        let mut running = Vec::new();
        while let Some(effect) = s.poll_effect() {
            match effect {
                BuildEffect::LookupCache { build, job } => {
                    s.on_cache_lookup(Time::ZERO, build, job, None)
                }
                BuildEffect::Start { id: job, .. } => running.push(job),
                other => panic!("unexpected {other:?}"),
            }
        }
        s.cancel_build(Time::ZERO, BuildId(7));
        let mut cancels = Vec::new();
        while let Some(effect) = s.poll_effect() {
            if let BuildEffect::Cancel { job, .. } = effect {
                cancels.push(job);
            }
        }
        running.sort();
        assert_eq!(cancels, running);
        for job in running {
            s.on_job_finished(Time::ZERO, BuildId(7), job, JobOutcome::Cancelled);
        }
        match s.poll_effect() {
            Some(BuildEffect::BuildDone { outcome, .. }) => {
                assert!(outcome.cancelled && !outcome.success);
            }
            other => panic!("expected BuildDone, got {other:?}"),
        }
        assert!(!s.is_building());
    }

    #[test]
    fn two_builds_share_slots_and_respect_their_limits() {
        let (a, _) = plan(&[("a1", &[], 0), ("a2", &[], 0), ("a3", &[], 0)]);
        let (b, _) = plan(&[("b1", &[], 0), ("b2", &[], 0)]);
        let mut s = Scheduler::new(3);
        s.add_build(
            Time::ZERO,
            BuildId(1),
            a,
            BuildOptions {
                keep_going: false,
                max_parallel: 1,
            },
        )
        .expect("valid");
        s.add_build(Time::ZERO, BuildId(2), b, OPTS).expect("valid");
        let mut per_build = BTreeMap::new();
        while let Some(effect) = s.poll_effect() {
            match effect {
                BuildEffect::LookupCache { build, job } => {
                    s.on_cache_lookup(Time::ZERO, build, job, None)
                }
                BuildEffect::Start { build, .. } => *per_build.entry(build).or_insert(0) += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            per_build,
            BTreeMap::from([(BuildId(1), 1), (BuildId(2), 2)])
        );
    }

    #[test]
    fn bad_graphs_are_refused() {
        let (mut jobs, _) = plan(&[("a", &[], 0)]);
        let mut orphan = (*jobs[0].job).clone();
        orphan.name = "orphan".into();
        orphan.deps = vec![JobId(Digest::of(b"nowhere"))];
        jobs.push(PlannedJob {
            id: orphan.id(),
            job: Arc::new(orphan),
            estimate: Duration::ZERO,
            wanted: false,
        });
        let mut s = Scheduler::new(1);
        let err = s
            .add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect_err("unknown dep");
        assert!(matches!(err, PlanError::UnknownDep { ref job, .. } if job == "orphan"));

        // A cycle cannot be built from content ids, so forge one: x -> y -> x.
        let x_id = JobId(Digest::of(b"x"));
        let y_id = JobId(Digest::of(b"y"));
        let base = (*plan(&[("x", &[], 0)]).0[0].job).clone();
        let x = Job {
            name: "x".into(),
            deps: vec![y_id],
            ..base.clone()
        };
        let y = Job {
            name: "y".into(),
            deps: vec![x_id],
            ..base
        };
        let jobs = vec![
            PlannedJob {
                id: x_id,
                job: Arc::new(x),
                estimate: Duration::ZERO,
                wanted: false,
            },
            PlannedJob {
                id: y_id,
                job: Arc::new(y),
                estimate: Duration::ZERO,
                wanted: false,
            },
        ];
        let err = s
            .add_build(Time::ZERO, BuildId(2), jobs, OPTS)
            .expect_err("cycle");
        let PlanError::Cycle(cycle) = err else {
            panic!("expected a cycle")
        };
        assert_eq!(cycle.len(), 3);
        assert_eq!(cycle.first(), cycle.last());
    }

    #[test]
    fn lost_dep_outputs_run_the_dep_again() {
        let (jobs, ids) = plan(&[("a", &[], 0), ("b", &["a"], 0), ("c", &["a"], 0)]);
        let mut s = Scheduler::new(1);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let mut starts = Vec::new();
        let mut lost_once = false;
        let outcome = loop {
            match s.poll_effect() {
                Some(BuildEffect::LookupCache { build, job }) => {
                    s.on_cache_lookup(Time::ZERO, build, job, None)
                }
                Some(BuildEffect::Start { build, id: job, .. }) => {
                    let name = name_of(&s, build, job);
                    starts.push(name.clone());
                    if name == "b" && !lost_once {
                        // `a`'s outputs vanished with the peer that held them.
                        lost_once = true;
                        s.on_deps_lost(Time::ZERO, build, job, &[ids["a"]]);
                    } else {
                        s.on_job_finished(Time::ZERO, build, job, JobOutcome::Succeeded(MADE));
                    }
                }
                Some(BuildEffect::BuildDone { outcome, .. }) => break outcome,
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("stuck after {starts:?}"),
            }
        };
        assert!(outcome.success);
        assert_eq!(starts.iter().filter(|n| *n == "a").count(), 2);
        assert_eq!(outcome.n_ran, 3, "{starts:?}");
        assert!(starts.iter().position(|n| n == "c") > starts.iter().position(|n| n == "a"));
    }

    #[test]
    fn a_dependent_being_looked_up_when_its_dep_is_lost_waits_for_the_rerun() {
        // `b` and `c` both need `a`. `b` finds `a`'s outputs gone while `c` is still being
        // looked up: `c`'s miss must not queue it (it would start without `a`'s outputs).
        let (jobs, ids) = plan(&[("a", &[], 0), ("b", &["a"], 5), ("c", &["a"], 0)]);
        let mut s = Scheduler::new(2);
        let b = BuildId(1);
        let now = Time::ZERO;
        s.add_build(now, b, jobs, OPTS).expect("valid graph");
        let lookup = |s: &mut Scheduler| -> Vec<JobId> {
            std::iter::from_fn(|| s.effects.pop_front())
                .filter_map(|e| match e {
                    BuildEffect::LookupCache { job, .. } => Some(job),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(lookup(&mut s), [ids["a"]]);
        s.on_cache_lookup(now, b, ids["a"], Some(MADE));
        let mut looking_up = lookup(&mut s);
        looking_up.sort_by_key(|job| name_of(&s, b, *job));
        assert_eq!(looking_up, [ids["b"], ids["c"]]);
        // `b` misses and starts; `c`'s lookup is still out.
        s.on_cache_lookup(now, b, ids["b"], None);
        match s.poll_effect() {
            Some(BuildEffect::Start { id, .. }) => assert_eq!(id, ids["b"]),
            other => panic!("expected b to start, got {other:?}"),
        }
        s.on_deps_lost(now, b, ids["b"], &[ids["a"]]);
        s.on_cache_lookup(now, b, ids["c"], None);
        // Only `a` starts: it lost its place (`made`), and `b` and `c` wait for it.
        let starts: Vec<(JobId, Vec<LeaseDep>)> = std::iter::from_fn(|| s.poll_effect())
            .filter_map(|e| match e {
                BuildEffect::Start { id, deps, .. } => Some((id, deps)),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [(ids["a"], vec![])]);
        assert!(
            s.dep_outputs(b, &s.job(b, ids["c"]).expect("c").clone())
                .is_empty()
        );
        // `a` runs again somewhere else: both dependents are looked up again, and start with
        // its new place.
        let again = Made {
            tree: Digest::from_bytes([3; 32]),
            by: NodeId([4; 32]),
        };
        s.on_job_finished(now, b, ids["a"], JobOutcome::Succeeded(again));
        for job in lookup(&mut s) {
            s.on_cache_lookup(now, b, job, None);
        }
        let started: Vec<(JobId, Vec<LeaseDep>)> = std::iter::from_fn(|| s.poll_effect())
            .filter_map(|e| match e {
                BuildEffect::Start { id, deps, .. } => Some((id, deps)),
                _ => None,
            })
            .collect();
        let mut deps_of_starts: Vec<(String, Vec<LeaseDep>)> = started
            .into_iter()
            .map(|(id, deps)| (name_of(&s, b, id), deps))
            .collect();
        deps_of_starts.sort_by(|x, y| x.0.cmp(&y.0));
        let from_again = vec![LeaseDep {
            job: ids["a"],
            tree: again.tree,
            holders: vec![again.by],
        }];
        assert_eq!(
            deps_of_starts,
            [
                ("b".to_owned(), from_again.clone()),
                ("c".to_owned(), from_again)
            ]
        );
    }

    #[test]
    fn a_job_queued_twice_is_given_away_once() {
        // `x` is queued when `j` finds the outputs of their dep `d` gone: `x` goes back to
        // waiting with its heap entry left behind, and is queued again once `d` has run
        // again. Both entries are live then; a thief must get `x` once, not twice.
        let (jobs, ids) = plan(&[("d", &[], 0), ("x", &["d"], 0), ("j", &["d"], 5)]);
        let mut s = Scheduler::new(1);
        s.add_build(Time::ZERO, BuildId(1), jobs, OPTS)
            .expect("valid graph");
        let b = BuildId(1);
        let now = Time::ZERO;
        let mut started = Vec::new();
        // Run `d`, queue `x` and `j`, start `j` (it has the higher priority).
        for _ in 0..2 {
            while let Some(effect) = s.poll_effect() {
                match effect {
                    BuildEffect::LookupCache { build, job } => {
                        s.on_cache_lookup(now, build, job, None)
                    }
                    BuildEffect::Start { id: job, .. } => started.push(job),
                    other => panic!("unexpected {other:?}"),
                }
            }
            if let Some(job) = started.pop()
                && job == ids["d"]
            {
                s.on_job_finished(now, b, job, JobOutcome::Succeeded(MADE));
            } else {
                break;
            }
        }
        assert_eq!(s.runner(b, ids["j"]), None);
        // `j` cannot fetch `d`'s outputs: `d` runs again, `x` waits again.
        s.on_deps_lost(now, b, ids["j"], &[ids["d"]]);
        match s.poll_effect() {
            Some(BuildEffect::Start { id: job, .. }) if job == ids["d"] => {}
            other => panic!("expected d to start again, got {other:?}"),
        }
        s.on_job_finished(now, b, ids["d"], JobOutcome::Succeeded(MADE));
        // `x` and `j` are looked up and queued again; a thief asks before a slot runs them.
        let mut lookups = Vec::new();
        while let Some(effect) = s.effects.pop_front() {
            if let BuildEffect::LookupCache { build, job } = effect {
                lookups.push((build, job));
            }
        }
        for (build, job) in lookups {
            s.on_cache_lookup(now, build, job, None);
        }
        let given = s.take_for_peer(NodeId([9; 32]), 4, Reserve::NONE, |_, _| Some(0));
        let mut names: Vec<String> = given
            .iter()
            .map(|(_, id, _, _)| name_of(&s, b, *id))
            .collect();
        names.sort();
        assert_eq!(names, ["j", "x"]);
        // Both come back from the thief; the build ends.
        for (build, id, _, _) in given {
            s.on_job_finished(now, build, id, JobOutcome::Succeeded(MADE));
        }
        match s.poll_effect() {
            Some(BuildEffect::BuildDone { outcome, .. }) => assert!(outcome.success),
            other => panic!("expected the build to end, got {other:?}"),
        }
    }

    #[test]
    fn reserved_jobs_wait_for_a_faster_peer_but_not_for_ever() {
        // Four independent jobs: `long1` and `long2` are worth moving, `short` is not.
        let (jobs, ids) = plan(&[
            ("long1", &[], 3000),
            ("long2", &[], 2000),
            ("short", &[], 5),
            ("mid", &[], 1000),
        ]);
        let b = BuildId(1);
        let mut s = Scheduler::new(4);
        s.add_build(Time::ZERO, b, jobs, OPTS).expect("valid");
        let lookups: Vec<JobId> = std::iter::from_fn(|| s.effects.pop_front())
            .filter_map(|e| match e {
                BuildEffect::LookupCache { job, .. } => Some(job),
                _ => None,
            })
            .collect();
        let queued_at = Time::from_millis(10);
        for job in lookups {
            s.on_cache_lookup(queued_at, b, job, None);
        }
        let reserve = |count, now| Reserve {
            count,
            now,
            window: Duration::from_millis(100),
            min_estimate: Duration::from_millis(1000),
        };
        // The two most critical jobs are reserved: local slots take the others.
        s.set_reserve(reserve(2, Time::from_millis(20)));
        let started: Vec<JobId> = std::iter::from_fn(|| s.poll_effect())
            .filter_map(|e| match e {
                BuildEffect::Start { id: job, .. } => Some(job),
                _ => None,
            })
            .collect();
        assert_eq!(started, [ids["mid"], ids["short"]]);
        assert_eq!(s.queued(), 2);
        assert_eq!(s.reserve_expiry(), Some(Time::from_millis(110)));
        // A slow thief, with the same reserve, is given nothing; a fast one takes both.
        let slow = s.take_for_peer(
            NodeId([8; 32]),
            4,
            reserve(2, Time::from_millis(30)),
            |_, _| Some(0),
        );
        assert!(slow.is_empty());
        let fast = s.take_for_peer(NodeId([9; 32]), 1, Reserve::NONE, |_, _| Some(0));
        assert_eq!(name_of(&s, b, fast[0].1), "long1");
        // Once the window has passed, a local slot takes what is left.
        s.set_reserve(reserve(2, Time::from_millis(110)));
        match s.poll_effect() {
            Some(BuildEffect::Start { id: job, .. }) => assert_eq!(name_of(&s, b, job), "long2"),
            other => panic!("expected long2 to start, got {other:?}"),
        }
        assert_eq!(s.reserve_expiry(), None);
    }

    #[test]
    fn empty_build_finishes_at_once() {
        let mut s = Scheduler::new(1);
        s.add_build(Time::ZERO, BuildId(1), vec![], OPTS)
            .expect("empty");
        assert!(
            matches!(s.poll_effect(), Some(BuildEffect::BuildDone { outcome, .. }) if outcome.success)
        );
    }

    proptest::proptest! {
        /// Random DAGs, cache hits, failures and finishing orders: a job starts at most once
        /// and only after its deps succeeded, slots are never exceeded, and the build ends
        /// exactly once with counts that add up.
        #[test]
        fn random_builds_keep_the_invariants(
            n_jobs in 1usize..40,
            edges in proptest::collection::vec((0usize..40, 0usize..40), 0..80),
            hits in proptest::collection::vec(proptest::bool::weighted(0.2), 40),
            fails in proptest::collection::vec(proptest::bool::weighted(0.1), 40),
            picks in proptest::collection::vec(0usize..8, 200),
            slots in 1usize..5,
            keep_going in proptest::bool::ANY,
        ) {
            let names: Vec<String> = (0..n_jobs).map(|i| format!("j{i}")).collect();
            let mut spec: Vec<(&str, Vec<&str>, u64)> = Vec::new();
            for i in 0..n_jobs {
                // Edges only point to lower indices, which keeps the graph acyclic.
                let mut deps: Vec<&str> = edges
                    .iter()
                    .filter(|(a, b)| *a % n_jobs == i && *b % n_jobs < i)
                    .map(|(_, b)| names[*b % n_jobs].as_str())
                    .collect();
                deps.sort();
                deps.dedup();
                spec.push((names[i].as_str(), deps, (i as u64 * 7) % 5));
            }
            let spec_refs: Vec<(&str, &[&str], u64)> =
                spec.iter().map(|(n, d, e)| (*n, d.as_slice(), *e)).collect();
            let (jobs, ids) = plan(&spec_refs);
            let by_id: BTreeMap<JobId, usize> =
                ids.iter().map(|(name, id)| (*id, name[1..].parse::<usize>().unwrap_or(0))).collect();
            let deps_of: BTreeMap<usize, Vec<usize>> = spec
                .iter()
                .enumerate()
                .map(|(i, (_, deps, _))| (i, deps.iter().map(|d| d[1..].parse().unwrap_or(0)).collect()))
                .collect();
            let mut s = Scheduler::new(slots);
            let opts = BuildOptions { keep_going, max_parallel: 16 };
            s.add_build(Time::ZERO, BuildId(1), jobs, opts).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let mut succeeded = vec![false; n_jobs];
            let mut started = vec![false; n_jobs];
            let mut running: Vec<JobId> = Vec::new();
            let mut done = None;
            let mut pick = picks.iter().cycle();
            for _ in 0..10_000 {
                while let Some(effect) = s.poll_effect() {
                    proptest::prop_assert!(done.is_none(), "effect after BuildDone: {:?}", effect);
                    match effect {
                        BuildEffect::LookupCache { build, job } => {
                            let i = by_id[&job];
                            for d in &deps_of[&i] {
                                proptest::prop_assert!(succeeded[*d], "lookup before dep");
                            }
                            if hits[i] {
                                succeeded[i] = true;
                            }
                            s.on_cache_lookup(Time::ZERO, build, job, hits[i].then_some(MADE));
                        }
                        BuildEffect::Start { id: job, .. } => {
                            let i = by_id[&job];
                            proptest::prop_assert!(!started[i], "started twice");
                            for d in &deps_of[&i] {
                                proptest::prop_assert!(succeeded[*d], "started before dep");
                            }
                            started[i] = true;
                            running.push(job);
                            proptest::prop_assert!(running.len() <= slots);
                        }
                        BuildEffect::BuildDone { outcome, .. } => done = Some(outcome),
                        BuildEffect::Cancel { .. } | BuildEffect::Skipped { .. } => {}
                    }
                }
                if running.is_empty() {
                    break;
                }
                let job = running.remove(pick.next().copied().unwrap_or(0) % running.len());
                let i = by_id[&job];
                let outcome = if fails[i] { JobOutcome::Failed } else { JobOutcome::Succeeded(MADE) };
                succeeded[i] = !fails[i];
                s.on_job_finished(Time::ZERO, BuildId(1), job, outcome);
            }
            let outcome = done.ok_or_else(|| proptest::test_runner::TestCaseError::fail("no BuildDone"))?;
            proptest::prop_assert_eq!(
                outcome.n_ran + outcome.n_cached + outcome.n_failed + outcome.n_skipped,
                n_jobs as u64
            );
            let any_failed = (0..n_jobs).any(|i| started[i] && fails[i]);
            proptest::prop_assert_eq!(outcome.success, !any_failed);
            if !any_failed {
                proptest::prop_assert!(succeeded.iter().all(|s| *s));
            }
        }
    }
}
