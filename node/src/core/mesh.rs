//! [`Core`]: one node's whole decision-making: its builds' scheduler, and the mesh around it:
//! the peer table, who holds which result, stealing, leases and the peer cache.
//!
//! Protocol flow, as this state machine sees it:
//!
//! - **Beacons**: [`Effect::Publish`] a [`LoadBeacon`] at once when this node turns busy (jobs
//!   queued) or idle; while busy, every [`CoreConfig::beacon_interval`]; while idle, every
//!   [`CoreConfig::idle_beacon_interval`]; and shortly after a peer comes up while busy, so the
//!   newcomer can steal. Peers' beacons come in through [`Core::on_beacon`]. Only the queue
//!   decides who is a steal victim, so a change in free slots alone is not announced: on a
//!   large mesh every beacon goes to every node (netsim measured two beacons per job, and a
//!   beacon from every node to every node when a mesh starts).
//! - **Results**: each result this node makes is announced in a batched
//!   [`Gossip::Have`]; peers' announcements ([`Core::on_have`]) fill the map from job to
//!   holders.
//! - **Cache**: a ready job is looked up here first ([`BuildEffect::LookupCache`]); on a miss, a peer
//!   that announced it is asked ([`Effect::QueryPeer`]); the shell checks the answer's
//!   signature before reporting a hit with [`Core::on_peer_cache`].
//! - **Stealing**: a node with free slots, nothing of its own to run and sharing allowed asks
//!   a busy peer for work ([`Effect::SendSteal`]); the victim ([`Core::on_steal_request`])
//!   grants queued jobs whose toolchain the thief has, preferring those whose deps' results the
//!   thief already holds, each under a lease. The thief runs them ([`Effect::RunStolen`]),
//!   renews the leases while they run ([`Effect::SendRenew`]) and reports back
//!   ([`Effect::SendDone`]). The victim requeues a job whose lease runs out or whose thief goes
//!   away.
//!
//! Everything is decided from the events and their times; the only randomness is a
//! generator seeded from the node's id, so a run is a pure function of its inputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use weft_protocol::wire::{Lease, LeaseDep, LoadBeacon, SharePolicy, StealRequest};
use weft_protocol::{Digest, Job, JobId, NodeId};

use super::Time;
use super::deadlines::Deadlines;
use super::holders::Holders;
use super::id_hash::IdMap;
use super::scheduler::{
    BuildEffect, BuildId, BuildOptions, Hold, JobOutcome, Made, PlanError, PlannedJob, Scheduler,
};

/// How a node takes part in the mesh. Every field names its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Jobs that run here at once, own and stolen together. Default: the number of cores.
    pub slots: usize,
    /// When this node runs peers' jobs. Default: [`SharePolicy::Idle`].
    pub share: SharePolicy,
    /// At most this many slots run peers' jobs. Default: all of them.
    pub max_shared_slots: usize,
    /// At most this many jobs per steal request. Default: 4.
    pub steal_batch: usize,
    /// How long a lease lasts without renewal. Default: 10 s.
    pub lease_ttl: Duration,
    /// How often a beacon goes out while this node has jobs queued and nothing changes.
    /// Default: 1 s.
    pub beacon_interval: Duration,
    /// How often a beacon goes out while this node has nothing queued (it only repairs a lost
    /// "idle" beacon: nobody steals from an idle node). Default: 10 s; on a mesh of more
    /// than 100 nodes, 100 ms per peer (a node then receives about ten idle beacons a
    /// second).
    pub idle_beacon_interval: Duration,
    /// How long new results wait to be announced together. Default: 50 ms.
    pub have_delay: Duration,
    /// The first wait after a steal request came back empty; it doubles up to 1 s.
    /// Default: 100 ms (tuned with netsim: against 20 ms, a third fewer steal requests and
    /// builds as fast or faster in every shipped scenario; `bench/RESULTS.md`).
    pub steal_backoff: Duration,
    /// About how many steal requests should chase each queued job. When the idle nodes
    /// outnumber the queued jobs by more than this, a node asks only with odds of
    /// `steal_fanout * queued / idle` each `steal_backoff`, rather than every idle node at
    /// once whenever a victim's queue turns non-empty. Default: 2.
    pub steal_fanout: u32,
    /// A peer that fails this many jobs in a row for infrastructure reasons is avoided.
    /// Default: 3.
    pub max_peer_failures: u32,
    /// How long such a peer is avoided. Default: 60 s.
    pub avoid_for: Duration,
    /// The most job-to-holder entries kept; the oldest go first. Default: 1,000,000.
    pub max_holder_entries: usize,
    /// How fast one slot of this node runs a job, in thousandths of the reference speed (see
    /// [`LoadBeacon::speed`]). A peer at least a quarter faster than the node about to take a
    /// job gets the first pick of the jobs worth moving: the most critical queued
    /// jobs are kept back for it for up to [`CoreConfig::speed_hold`]. Default: 1000.
    pub speed: u32,
    /// The longest a queued job is kept back for a faster peer that has free slots (then
    /// whoever comes takes it). Jobs expected to run less than ten times as long are never
    /// kept back. Default: 100 ms (tuned with netsim: against 20 ms and 200 ms, the
    /// shortest builds on both scenarios with a fast machine; `bench/RESULTS.md`).
    pub speed_hold: Duration,
    /// The most results listed in the first `Have` a newly admitted peer is sent (the latest
    /// this node made). Default: 50,000.
    pub have_snapshot: usize,
    /// The tools, by name, that this node offers to run for peers: those found on its `PATH`
    /// are advertised, with the tools of its own builds. Default:
    /// [`CoreConfig::DEFAULT_ACCEPT_TOOLS`].
    pub accept_tools: Vec<String>,
}

impl CoreConfig {
    /// The defaults, with `slots` slots.
    pub fn new(slots: usize) -> CoreConfig {
        CoreConfig {
            slots: slots.max(1),
            share: SharePolicy::Idle,
            max_shared_slots: slots.max(1),
            steal_batch: 4,
            lease_ttl: Duration::from_secs(10),
            beacon_interval: Duration::from_secs(1),
            idle_beacon_interval: Duration::from_secs(10),
            have_delay: Duration::from_millis(50),
            steal_backoff: Duration::from_millis(100),
            steal_fanout: 2,
            max_peer_failures: 3,
            avoid_for: Duration::from_secs(60),
            max_holder_entries: 1_000_000,
            speed: 1000,
            speed_hold: Duration::from_millis(100),
            have_snapshot: 50_000,
            accept_tools: CoreConfig::DEFAULT_ACCEPT_TOOLS
                .iter()
                .map(|tool| (*tool).to_owned())
                .collect(),
        }
    }

    /// The tools a node offers peers by default: the usual compilers and shell tools.
    pub const DEFAULT_ACCEPT_TOOLS: &[&str] = &[
        "cc", "c++", "gcc", "g++", "clang", "clang++", "ar", "ld", "as", "ranlib", "strip", "sh",
        "bash", "cp", "cat", "mv", "ln", "mkdir", "touch", "true", "false", "echo", "sleep", "sed",
        "awk", "tr", "python3", "make", "rustc", "go",
    ];
}

/// What a node gossips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gossip {
    /// Load and capabilities.
    Beacon(LoadBeacon),
    /// Results this node newly holds.
    Have(Vec<JobId>),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A step of one of this node's builds, from its scheduler. A
    /// [`BuildEffect::Start`] lists every place the deps' outputs may be had, best first;
    /// answer it with [`Core::on_job_finished`] (or [`Core::on_deps_lost`]), and a
    /// [`BuildEffect::LookupCache`] with [`Core::on_local_cache`].
    Build(BuildEffect),
    /// Ask `peer` for its result of the job; answer with [`Core::on_peer_cache`].
    QueryPeer {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// A peer that announced the result.
        peer: NodeId,
        /// The build publishes the job's outputs: a hit counts only once they are in this
        /// node's store (fetched from `peer` when they are not).
        with_outputs: bool,
    },
    /// A job of this node's now runs on a peer.
    GivenAway {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// The thief.
        peer: NodeId,
        /// How long the job waited in the queue before it was lent.
        waited: Duration,
    },
    /// A job lent to a peer came back to the queue: its lease ran out, or the peer left.
    Returned {
        /// The build.
        build: BuildId,
        /// The job.
        job: JobId,
        /// The peer that had it.
        peer: NodeId,
    },
    /// Run a job stolen from `origin`; answer with [`Core::on_stolen_finished`] (or
    /// [`Core::on_stolen_deps_lost`]).
    RunStolen {
        /// The victim.
        origin: NodeId,
        /// The job's id.
        id: JobId,
        /// The job.
        job: Arc<Job>,
        /// Where its deps' outputs are, as the victim's lease says, best holder first.
        deps: Vec<LeaseDep>,
    },
    /// Stop a stolen job: its lease is gone. Then answer with [`Core::on_stolen_finished`].
    CancelStolen {
        /// The job.
        id: JobId,
    },
    /// Ask `peer` for work; answer with [`Core::on_granted`] or [`Core::on_steal_failed`].
    SendSteal {
        /// The victim.
        peer: NodeId,
        /// The request.
        request: StealRequest,
    },
    /// Tell `origin` that these stolen jobs still run; answer with [`Core::on_renewed`].
    SendRenew {
        /// The victim.
        origin: NodeId,
        /// The jobs.
        jobs: Vec<JobId>,
    },
    /// Send the outcome of a stolen job to its origin.
    SendDone {
        /// The victim.
        origin: NodeId,
        /// The job.
        id: JobId,
        /// Whether it succeeded.
        outcome: StolenOutcome,
    },
    /// Tell a stolen job's origin that it could not run here: nobody served the outputs of
    /// these deps.
    SendDepsLost {
        /// The victim.
        origin: NodeId,
        /// The job.
        id: JobId,
        /// The deps whose outputs could not be had.
        lost: Vec<JobId>,
    },
    /// Gossip to the team.
    Publish(Gossip),
}

/// How a stolen job ended, as its thief reports it (the victim's side of
/// [`StolenOutcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThiefOutcome {
    Succeeded(Made),
    Failed,
    Infrastructure,
}

/// How a stolen job ended, on the thief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StolenOutcome {
    /// It succeeded; its result is in the thief's store.
    Succeeded,
    /// The job itself failed (a compile error, say).
    Failed,
    /// The thief could not run it (a missing input, a different tool, a full disk).
    Infrastructure,
    /// It was stopped.
    Cancelled,
}

/// What the victim made of a thief's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The job was out on this lease and is now settled.
    Accepted,
    /// The job's outputs are published here: fetch the tree from the thief, then tell
    /// [`Core::on_thief_outputs`]. The lease is kept alive meanwhile.
    FetchOutputs,
    /// The job was settled already; a late duplicate, harmless.
    Duplicate,
    /// No build here knows the job.
    Unknown,
}

/// What this node knows of a peer, for `weft peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub node: NodeId,
    /// Its last beacon.
    pub beacon: Option<LoadBeacon>,
    /// When it came.
    pub beacon_at: Option<Time>,
    /// Results it announced that are still in the holder map.
    pub n_results: usize,
    /// Jobs of this node it runs now.
    pub n_leased: usize,
    /// Infrastructure failures in a row.
    pub failures: u32,
    /// Avoided until then.
    pub avoided_until: Option<Time>,
}

/// Counters, for `weft status` and netsim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Steal requests sent.
    pub steal_requests: u64,
    /// Steal requests that brought at least one job.
    pub steal_successes: u64,
    /// Jobs received from peers.
    pub jobs_stolen: u64,
    /// Jobs given to peers.
    pub jobs_given: u64,
    /// Leases that ran out (or whose thief went away) and were requeued.
    pub leases_requeued: u64,
    /// Late duplicate reports.
    pub duplicates: u64,
    /// Results found in peers' caches.
    pub peer_cache_hits: u64,
    /// Results found in this node's cache.
    pub local_cache_hits: u64,
    /// Jobs given back by a thief that could not fetch their deps' outputs: the deps ran
    /// again.
    pub deps_lost_by_thieves: u64,
}

#[derive(Debug)]
struct PeerState {
    beacon: Option<LoadBeacon>,
    beacon_at: Option<Time>,
    failures: u32,
    avoid_until: Option<Time>,
    steal_backoff_until: Time,
    steal_backoff: Duration,
    /// Jobs of this node's builds it runs now (leases out to it).
    leased: u32,
}

impl PeerState {
    /// When it may be asked for work: after its backoff, and after the time it is avoided.
    fn steal_ready(&self) -> Time {
        self.steal_backoff_until
            .max(self.avoid_until.unwrap_or(Time::ZERO))
    }
}

#[derive(Debug, Clone, Copy)]
struct LeaseOut {
    build: BuildId,
    thief: NodeId,
    deadline: Time,
}

#[derive(Debug)]
struct Stolen {
    origin: NodeId,
    next_renew: Time,
}

/// One node's decisions: its builds and its part in the mesh.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    local: NodeId,
    platform: String,
    tools: BTreeSet<Digest>,
    scheduler: Scheduler,
    /// Only looked up (every gossip message looks its sender up); listed sorted.
    peers: IdMap<NodeId, PeerState>,
    holders: Holders,
    /// Jobs of this node's builds that run on peers.
    leases: BTreeMap<JobId, LeaseOut>,
    /// The leases by deadline, so that expiries and the next timeout are found without a
    /// scan (a victim of a large mesh has thousands out).
    lease_deadlines: Deadlines<JobId>,
    /// Peers' jobs that run here.
    stolen: BTreeMap<JobId, Stolen>,
    /// The stolen jobs by when their lease is renewed next.
    renewals: Deadlines<JobId>,
    /// Peers whose last beacon said they have jobs queued on this platform: the steal
    /// candidates, kept as beacons come so that a steal attempt does not scan every peer.
    /// Each with when it may be asked next ([`PeerState::steal_ready`]), kept up to date so
    /// that [`Core::next_timeout`], which runs after every event, need not look peers up.
    busy_peers: BTreeMap<NodeId, Time>,
    /// The earliest of those times (read after every event; see [`Deadlines`]).
    busy_ready: Option<Time>,
    /// The steal request in flight: the victim, and when it was sent.
    steal_pending: Option<(NodeId, Time)>,
    /// No steal attempt before this: the last roll of the odds (see
    /// [`CoreConfig::steal_fanout`]) said not to ask.
    steal_gate: Time,
    /// This node drew its turn to ask (see `maybe_steal`): it asks once `steal_gate` passes.
    steal_turn: bool,
    /// Peers asked for a job's result, per lookup in flight.
    queries: IdMap<(BuildId, JobId), Vec<NodeId>>,
    pending_have: Vec<JobId>,
    have_due: Option<Time>,
    beacon_due: Time,
    /// Whether the last beacon said this node had jobs queued.
    last_beacon: Option<bool>,
    /// Since when the queue is empty while the last beacon said "busy".
    emptied_at: Option<Time>,
    /// A thief was turned away empty-handed since the last beacon, with this many jobs
    /// queued: when more queue up, say so at once (its backoff would otherwise keep it away).
    turned_away: Option<usize>,
    system_idle: bool,
    /// The slowest speed among this node and every peer whose beacon came (it only goes down).
    slowest_speed: u32,
    /// Peers whose last beacon said they are at least [`FASTER`] times the slowest speed:
    /// the only ones jobs are kept back for. Empty on a mesh of equal machines, so that the
    /// common case costs nothing.
    fast_peers: BTreeSet<NodeId>,
    /// Peers whose beacon came (the others' speed is unknown).
    beaconed: usize,
    /// How many jobs the hold last given to the scheduler keeps back (what beacons call
    /// `held`). With no fast peer and none held, neither the hold nor its expiry is looked
    /// at: on a large mesh every event would otherwise touch the scheduler's memory for
    /// nothing.
    held: usize,
    /// Results this node made lately, newest last, for a newly admitted peer's first `Have`.
    recent: VecDeque<JobId>,
    rng: u64,
    effects: VecDeque<Effect>,
    stats: CoreStats,
}

impl Core {
    /// A node `local` on `platform` with the given tool digests.
    pub fn new(
        local: NodeId,
        platform: String,
        tools: BTreeSet<Digest>,
        config: CoreConfig,
    ) -> Core {
        let seed = u64::from_le_bytes([
            local.0[0], local.0[1], local.0[2], local.0[3], local.0[4], local.0[5], local.0[6],
            local.0[7],
        ]);
        let slowest_speed = config.speed;
        Core {
            scheduler: Scheduler::new(config.slots),
            config,
            local,
            platform,
            tools,
            peers: IdMap::default(),
            holders: Holders::default(),
            leases: BTreeMap::new(),
            lease_deadlines: Deadlines::default(),
            stolen: BTreeMap::new(),
            renewals: Deadlines::default(),
            busy_peers: BTreeMap::new(),
            busy_ready: None,
            steal_pending: None,
            steal_gate: Time::ZERO,
            steal_turn: false,
            queries: IdMap::default(),
            pending_have: Vec::new(),
            have_due: None,
            beacon_due: Time::ZERO,
            last_beacon: None,
            emptied_at: None,
            turned_away: None,
            system_idle: true,
            slowest_speed,
            fast_peers: BTreeSet::new(),
            beaconed: 0,
            held: 0,
            recent: VecDeque::new(),
            rng: seed | 1,
            effects: VecDeque::new(),
            stats: CoreStats::default(),
        }
    }

    /// This node.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Jobs running here now: this node's and peers'.
    pub fn running(&self) -> usize {
        self.scheduler.running() + self.stolen.len()
    }

    /// This node's jobs queued and ready.
    pub fn queued(&self) -> usize {
        self.scheduler.queued()
    }

    /// Whether any build of this node's runs.
    pub fn is_building(&self) -> bool {
        self.scheduler.is_building()
    }

    /// Tells the core about tools this node has gained (found on `PATH`).
    pub fn add_tools(&mut self, tools: impl IntoIterator<Item = Digest>) {
        self.tools.extend(tools);
    }

    /// Tells the core whether the machine is otherwise idle (for [`SharePolicy::Idle`]).
    pub fn set_system_idle(&mut self, now: Time, idle: bool) {
        self.system_idle = idle;
        self.after_event(now);
    }

    /// The next thing to do, if any. Call after every event until `None`.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        if let Some(effect) = self.effects.pop_front() {
            return Some(effect);
        }
        let effect = self.scheduler.poll_effect()?;
        Some(self.complete(effect))
    }

    /// When [`Core::tick`] should be called next.
    pub fn next_timeout(&self) -> Time {
        let mut next = self.beacon_due;
        if let Some(due) = self.have_due {
            next = next.min(due);
        }
        if let Some(deadline) = self.lease_deadlines.first_time() {
            next = next.min(deadline);
        }
        if let Some(due) = self.renewals.first_time() {
            next = next.min(due);
        }
        if self.steal_pending.is_none() && self.may_steal() {
            // When the first busy peer may be asked: after its backoff, and after the time
            // it is avoided (a peer avoided for a minute is no reason to wake up now).
            if let Some(ready) = self.busy_ready {
                next = next.min(ready.max(self.steal_gate));
            }
        }
        if let Some((_, sent)) = self.steal_pending {
            next = next.min(sent + STEAL_TIMEOUT);
        }
        if self.held > 0
            && let Some(expiry) = self.scheduler.hold_expiry()
        {
            next = next.min(expiry);
        }
        next
    }

    // ---- builds -------------------------------------------------------------------------

    /// Starts a build.
    pub fn add_build(
        &mut self,
        now: Time,
        build: BuildId,
        jobs: Vec<PlannedJob>,
        options: BuildOptions,
    ) -> Result<(), PlanError> {
        // The tools this node's builds use are tools it has.
        for planned in &jobs {
            self.tools
                .extend(planned.job.toolchain.tools.values().copied());
        }
        self.scheduler.add_build(now, build, jobs, options)?;
        self.after_event(now);
        Ok(())
    }

    /// Cancels a build: nothing new starts, running jobs are stopped, and jobs out on
    /// peers are let go (their late reports are ignored).
    pub fn cancel_build(&mut self, now: Time, build: BuildId) {
        self.scheduler.cancel_build(now, build);
        let out: Vec<JobId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.build == build)
            .map(|(id, _)| *id)
            .collect();
        for job in out {
            self.remove_lease(&job);
            self.scheduler.requeue(now, build, job);
        }
        self.after_event(now);
    }

    /// The driver's answer to [`BuildEffect::LookupCache`]: a hit, with where its outputs
    /// are, or a miss.
    pub fn on_local_cache(&mut self, now: Time, build: BuildId, job: JobId, hit: Option<Made>) {
        if let Some(made) = hit {
            self.stats.local_cache_hits += 1;
            self.scheduler.on_cache_lookup(now, build, job, Some(made));
        } else if !self.ask_next_holder(build, job) {
            self.scheduler.on_cache_lookup(now, build, job, None);
        }
        self.after_event(now);
    }

    /// The driver's answer to [`Effect::QueryPeer`]: a hit only when the result's signature
    /// checked out and its blobs can be had (and, `with_outputs`, are here).
    pub fn on_peer_cache(
        &mut self,
        now: Time,
        build: BuildId,
        job: JobId,
        peer: NodeId,
        hit: Option<Made>,
    ) {
        if !self
            .queries
            .get(&(build, job))
            .is_some_and(|asked| asked.contains(&peer))
        {
            return;
        }
        if let Some(made) = hit {
            self.queries.remove(&(build, job));
            self.stats.peer_cache_hits += 1;
            self.scheduler.on_cache_lookup(now, build, job, Some(made));
        } else if !self.ask_next_holder(build, job) {
            self.queries.remove(&(build, job));
            self.scheduler.on_cache_lookup(now, build, job, None);
        }
        self.after_event(now);
    }

    /// The driver's answer to [`BuildEffect::Start`] or [`BuildEffect::Cancel`]; a success
    /// says where the outputs are (here: this node made them).
    pub fn on_job_finished(&mut self, now: Time, build: BuildId, job: JobId, outcome: JobOutcome) {
        let ran_here = self.scheduler.runner(build, job).is_none();
        self.scheduler.on_job_finished(now, build, job, outcome);
        if ran_here && matches!(outcome, JobOutcome::Succeeded(_)) {
            self.announce(now, job);
        }
        self.after_event(now);
    }

    /// A job of this node's could not start: the outputs of `lost` (some of its deps) cannot
    /// be had any more. Those deps run again first.
    pub fn on_deps_lost(&mut self, now: Time, build: BuildId, job: JobId, lost: &[JobId]) {
        self.scheduler.on_deps_lost(now, build, job, lost);
        self.after_event(now);
    }

    // ---- peers --------------------------------------------------------------------------

    /// A peer was admitted to the mesh. Returns the `Have` messages to send it, one per
    /// element: the latest results this node made (at most [`CoreConfig::have_snapshot`],
    /// newest first); later ones reach it by gossip.
    #[must_use = "the newcomer is told what this node holds"]
    pub fn on_peer_up(&mut self, now: Time, peer: NodeId) -> Vec<Vec<JobId>> {
        self.peers.entry(peer).or_insert_with(|| PeerState {
            beacon: None,
            beacon_at: None,
            failures: 0,
            avoid_until: None,
            steal_backoff_until: now,
            steal_backoff: Duration::ZERO,
            leased: 0,
        });
        self.holders.peer_up(peer);
        // A busy node lets the newcomer know soon (one beacon for a burst of newcomers); an
        // idle one has nothing to tell it.
        if self.scheduler.queued() > 0 {
            self.beacon_due = self.beacon_due.min(now + PEER_UP_BEACON_DELAY);
        }
        self.after_event(now);
        let newest_first: Vec<JobId> = self.recent.iter().rev().copied().collect();
        newest_first
            .chunks(HAVE_SNAPSHOT_CHUNK)
            .map(<[JobId]>::to_vec)
            .collect()
    }

    /// Results this node's store held before this core started (a restart that kept the
    /// store), oldest first: listed in newcomers' first `Have` like those made since.
    pub fn restore_results(&mut self, jobs: impl IntoIterator<Item = JobId>) {
        for job in jobs {
            self.remember(job);
        }
    }

    /// How long a job that ran for `duration` on `peer` would have run here, by this node's
    /// speed and the one the peer's last beacon gave (the same, when that is unknown).
    pub fn local_duration(&self, peer: &NodeId, duration: Duration) -> Duration {
        let here = f64::from(self.config.speed.max(1));
        let there = self.peer_speed(peer).map_or(here, f64::from);
        duration.mul_f64(there / here)
    }

    /// A peer left, or its connection dropped: what it held is gone, and the jobs it ran for
    /// this node go back to the queue.
    pub fn on_peer_down(&mut self, now: Time, peer: NodeId) {
        if self.peers.remove(&peer).is_some_and(|p| p.beacon.is_some()) {
            self.beaconed -= 1;
        }
        self.fast_peers.remove(&peer);
        self.set_busy(peer, None);
        self.holders.peer_down(peer);
        let lost: Vec<(JobId, BuildId)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.thief == peer)
            .map(|(id, l)| (*id, l.build))
            .collect();
        for (job, build) in lost {
            self.remove_lease(&job);
            if self.scheduler.requeue(now, build, job) {
                self.stats.leases_requeued += 1;
                self.effects
                    .push_back(Effect::Returned { build, job, peer });
            }
        }
        if self.steal_pending.is_some_and(|(victim, _)| victim == peer) {
            self.steal_pending = None;
        }
        // Lookups waiting on it move on, in a fixed order (not the hash map's).
        let mut waiting: Vec<(BuildId, JobId)> = self
            .queries
            .iter()
            .filter(|(_, asked)| asked.last() == Some(&peer))
            .map(|(key, _)| *key)
            .collect();
        waiting.sort_unstable();
        for (build, job) in waiting {
            if !self.ask_next_holder(build, job) {
                self.queries.remove(&(build, job));
                self.scheduler.on_cache_lookup(now, build, job, None);
            }
        }
        self.after_event(now);
    }

    /// A peer's beacon.
    pub fn on_beacon(&mut self, now: Time, peer: NodeId, beacon: &LoadBeacon) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let speed = self.config.speed;
        let before = state.beacon.as_ref().map_or(0, |b| open_queue(b, speed));
        let queue_len = open_queue(beacon, speed);
        if queue_len > 0 && (before == 0 || state.steal_backoff_until > now) {
            // Newly busy, or busy again since it turned this node away: ask again at once.
            state.steal_backoff_until = now;
            state.steal_backoff = Duration::ZERO;
        }
        if queue_len > before && self.steal_turn {
            // More work than when this node drew its turn: draw again, with the new odds.
            self.steal_gate = self.steal_gate.min(now);
            self.steal_turn = false;
        }
        let busy = (queue_len > 0 && beacon.platform == self.platform).then(|| state.steal_ready());
        if state.beacon.is_none() {
            self.beaconed += 1;
        }
        // Most beacons repeat the last one (an idle node's, every so often): keep it.
        if state.beacon.as_ref() != Some(beacon) {
            state.beacon = Some(beacon.clone());
        }
        state.beacon_at = Some(now);
        self.set_busy(peer, busy);
        self.note_speed(peer, beacon.speed);
        self.after_event(now);
    }

    /// A peer announced results it holds.
    pub fn on_have(&mut self, now: Time, peer: NodeId, jobs: &[JobId]) {
        if !self
            .holders
            .announced(jobs, peer, self.config.max_holder_entries)
        {
            return;
        }
        debug_assert!(self.peers.contains_key(&peer));
        self.after_event(now);
    }

    /// A hint that [`Core::on_have`] with this peer and these jobs comes soon: asks the CPU
    /// to load the memory it reads first. Changes nothing else. netsim calls it a few
    /// deliveries ahead, so that the loads of many cores overlap.
    pub fn prefetch_have(&self, peer: &NodeId, jobs: &[JobId]) {
        if let Some(job) = jobs.first() {
            self.holders.prefetch(peer, job);
        }
    }

    /// A peer's speed, as its last beacon said.
    pub fn peer_speed(&self, peer: &NodeId) -> Option<u32> {
        Some(self.peers.get(peer)?.beacon.as_ref()?.speed)
    }

    /// The peers known to hold a job's result.
    pub fn holders(&self, job: &JobId) -> &[NodeId] {
        self.holders.get(job)
    }

    /// What this node knows of its peers.
    pub fn peers(&self) -> Vec<PeerView> {
        let mut peers: Vec<(&NodeId, &PeerState)> = self.peers.iter().collect();
        peers.sort_unstable_by_key(|(node, _)| **node);
        peers
            .into_iter()
            .map(|(node, state)| PeerView {
                node: *node,
                beacon: state.beacon.clone(),
                beacon_at: state.beacon_at,
                n_results: self.holders.count(node),
                n_leased: state.leased as usize,
                failures: state.failures,
                avoided_until: state.avoid_until,
            })
            .collect()
    }

    // ---- victim side --------------------------------------------------------------------

    /// A thief asks for work: up to its `max_jobs` queued jobs whose toolchain it has, each
    /// under a lease. Jobs whose deps' results the thief holds go first among the best.
    pub fn on_steal_request(
        &mut self,
        now: Time,
        peer: NodeId,
        request: &StealRequest,
    ) -> Vec<Lease> {
        let avoided = |p: &PeerState| p.avoid_until.is_some_and(|until| until > now);
        if self.peers.get(&peer).is_none_or(avoided) {
            // Unknown, or it kept failing jobs for reasons of its own: nothing for now.
            return Vec::new();
        }
        let tools: BTreeSet<Digest> = request.tools.iter().copied().collect();
        let max = (request.max_jobs as usize).min(64);
        // The most critical jobs wait a moment for a peer much faster than this thief.
        let thief_speed = self
            .peers
            .get(&peer)
            .and_then(|p| p.beacon.as_ref())
            .map_or(self.slowest_speed, |b| b.speed);
        let hold = self.hold_for(now, thief_speed, Some(peer));
        // A thief that jobs are kept back for takes the most critical ones, wherever their
        // inputs are; others take what they hold the inputs of first.
        let critical_first = self.fast_peers.contains(&peer);
        let holders = &self.holders;
        let leased = &self.leases;
        let given = self.scheduler.take_for_peer(peer, max, hold, |id, job| {
            let runnable = job.toolchain.platform == request.platform
                && job
                    .toolchain
                    .tools
                    .values()
                    .all(|digest| tools.contains(digest));
            if !runnable || leased.contains_key(&id) {
                return None;
            }
            if critical_first {
                return Some(0);
            }
            let local_deps = job
                .deps
                .iter()
                .filter(|dep| holders.holds(dep, peer))
                .count();
            Some(local_deps as i64)
        });
        if given.is_empty() && hold.count == 0 {
            // Say so when more jobs queue up. Not when jobs were kept back for a faster
            // peer: this thief would be turned away again, and with it every slow peer that
            // the beacon wakes (netsim: eight times the steal requests on a farm of 500
            // fast and 500 slow machines).
            self.turned_away = Some(self.scheduler.queued());
        }
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut leases = Vec::with_capacity(given.len());
        for (build, id, job, queued_at) in given {
            self.insert_lease(
                id,
                LeaseOut {
                    build,
                    thief: peer,
                    deadline: now + self.config.lease_ttl,
                },
            );
            self.stats.jobs_given += 1;
            self.effects.push_back(Effect::GivenAway {
                build,
                job: id,
                peer,
                waited: now.since(queued_at),
            });
            let mut deps = self.scheduler.dep_outputs(build, &job);
            self.add_holders(&mut deps);
            leases.push(Lease {
                job: (*job).clone(),
                ttl_ms,
                deps,
            });
        }
        self.after_event(now);
        leases
    }

    /// A thief still runs these jobs; returns those it no longer holds a lease for.
    pub fn on_renew(&mut self, now: Time, peer: NodeId, jobs: &[JobId]) -> Vec<JobId> {
        let mut lost = Vec::new();
        let deadline = now + self.config.lease_ttl;
        for job in jobs {
            match self.leases.get_mut(job) {
                Some(lease) if lease.thief == peer => {
                    self.lease_deadlines.remove(lease.deadline, *job);
                    lease.deadline = deadline;
                    self.lease_deadlines.insert(deadline, *job);
                }
                _ => lost.push(*job),
            }
        }
        lost
    }

    /// A thief reports that it ran `job`, and that its outputs are the tree `tree`. The
    /// driver has checked the result's signature. When a build here publishes the job's
    /// outputs, they come first: the answer is [`Report::FetchOutputs`], and the lease stays
    /// alive until [`Core::on_thief_outputs`].
    pub fn on_thief_done(&mut self, now: Time, peer: NodeId, job: JobId, tree: Digest) -> Report {
        if self.scheduler.is_wanted_anywhere(job) {
            self.on_renew(now, peer, &[job]);
            return Report::FetchOutputs;
        }
        self.thief_report(
            now,
            peer,
            job,
            ThiefOutcome::Succeeded(Made { tree, by: peer }),
        )
    }

    /// The outputs of a thief's job, which [`Report::FetchOutputs`] asked for, were fetched
    /// (or could not be: then the job runs elsewhere).
    pub fn on_thief_outputs(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        tree: Digest,
        fetched: bool,
    ) -> Report {
        let outcome = if fetched {
            ThiefOutcome::Succeeded(Made { tree, by: peer })
        } else {
            ThiefOutcome::Infrastructure
        };
        self.thief_report(now, peer, job, outcome)
    }

    /// A thief reports that `job` failed: the job itself (a compile error, say), or
    /// (`infrastructure`) the thief's means to run it (a missing input, another tool, a full
    /// disk), which counts against the thief.
    pub fn on_thief_failed(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        infrastructure: bool,
    ) -> Report {
        let outcome = if infrastructure {
            ThiefOutcome::Infrastructure
        } else {
            ThiefOutcome::Failed
        };
        self.thief_report(now, peer, job, outcome)
    }

    fn thief_report(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        outcome: ThiefOutcome,
    ) -> Report {
        if let ThiefOutcome::Succeeded(made) = outcome {
            // Every build with the job takes its outputs from the thief from now on.
            self.scheduler.set_made(job, made);
        }
        let lease = self.leases.get(&job).copied();
        let report = match (lease, outcome) {
            (Some(lease), _) if lease.thief == peer => {
                self.remove_lease(&job);
                match outcome {
                    ThiefOutcome::Succeeded(made) => {
                        self.reset_failures(peer);
                        self.holders.add(job, peer, self.config.max_holder_entries);
                        self.scheduler.on_job_finished(
                            now,
                            lease.build,
                            job,
                            JobOutcome::Succeeded(made),
                        );
                    }
                    ThiefOutcome::Failed => {
                        self.reset_failures(peer);
                        self.scheduler
                            .on_job_finished(now, lease.build, job, JobOutcome::Failed);
                    }
                    ThiefOutcome::Infrastructure => {
                        self.count_failure(now, peer);
                        if self.scheduler.requeue(now, lease.build, job) {
                            self.stats.leases_requeued += 1;
                        }
                    }
                }
                Report::Accepted
            }
            (_, ThiefOutcome::Succeeded(made)) => {
                // A late report: the lease ran out, or went to another thief. The result is
                // as good as any; settle the job if it is still open anywhere.
                self.holders.add(job, peer, self.config.max_holder_entries);
                let builds = self.scheduler.builds_with(job);
                if builds.is_empty() {
                    self.stats.duplicates += 1;
                    Report::Duplicate
                } else {
                    for build in builds {
                        if let Some(lease) = self.leases.get(&job).copied()
                            && lease.build == build
                        {
                            // Out again, with another thief: that one's report will be a
                            // duplicate.
                            self.remove_lease(&job);
                            self.scheduler.on_job_finished(
                                now,
                                build,
                                job,
                                JobOutcome::Succeeded(made),
                            );
                        } else {
                            self.scheduler.on_returned_job_done(now, build, job, made);
                        }
                    }
                    Report::Accepted
                }
            }
            _ => Report::Unknown,
        };
        self.after_event(now);
        report
    }

    // ---- thief side ---------------------------------------------------------------------

    /// The victim's answer to [`Effect::SendSteal`].
    pub fn on_granted(&mut self, now: Time, peer: NodeId, leases: Vec<Lease>) {
        if self.steal_pending.is_some_and(|(victim, _)| victim == peer) {
            self.steal_pending = None;
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            if leases.is_empty() {
                state.steal_backoff = (state.steal_backoff * 2)
                    .max(self.config.steal_backoff)
                    .min(Duration::from_secs(1));
                state.steal_backoff_until = now + state.steal_backoff;
            } else {
                state.steal_backoff = Duration::ZERO;
                state.steal_backoff_until = now;
            }
        }
        self.refresh_busy(&peer);
        if !leases.is_empty() {
            self.stats.steal_successes += 1;
        }
        for lease in leases {
            let id = lease.job.id();
            if self.stolen.contains_key(&id) {
                continue;
            }
            let renew_every = Duration::from_millis(lease.ttl_ms / 3).max(Duration::from_millis(1));
            self.stolen.insert(
                id,
                Stolen {
                    origin: peer,
                    next_renew: now + renew_every,
                },
            );
            self.renewals.insert(now + renew_every, id);
            self.stats.jobs_stolen += 1;
            self.effects.push_back(Effect::RunStolen {
                origin: peer,
                id,
                job: Arc::new(lease.job),
                deps: lease.deps,
            });
        }
        self.scheduler.set_reserved(self.stolen.len());
        self.after_event(now);
    }

    /// [`Effect::SendSteal`] failed (no answer, a refusal, a dropped connection).
    pub fn on_steal_failed(&mut self, now: Time, peer: NodeId) {
        self.on_granted(now, peer, Vec::new());
    }

    /// The victim's answer to [`Effect::SendRenew`]: jobs whose lease is gone are stopped.
    pub fn on_renewed(&mut self, now: Time, lost: &[JobId]) {
        for job in lost {
            if self.stolen.contains_key(job) {
                self.effects.push_back(Effect::CancelStolen { id: *job });
            }
        }
        self.after_event(now);
    }

    /// The driver's answer to [`Effect::RunStolen`] or [`Effect::CancelStolen`].
    pub fn on_stolen_finished(&mut self, now: Time, id: JobId, outcome: StolenOutcome) {
        let Some(stolen) = self.end_stolen(id) else {
            return;
        };
        if outcome == StolenOutcome::Succeeded {
            self.announce(now, id);
        }
        if outcome != StolenOutcome::Cancelled {
            self.effects.push_back(Effect::SendDone {
                origin: stolen.origin,
                id,
                outcome,
            });
        }
        self.after_event(now);
    }

    /// A stolen job cannot run here: nobody served the outputs of the deps in `lost`. The
    /// origin hears which, so that it runs them again instead of lending the job out anew to
    /// someone who will fail the same way.
    pub fn on_stolen_deps_lost(&mut self, now: Time, id: JobId, lost: Vec<JobId>) {
        let Some(stolen) = self.end_stolen(id) else {
            return;
        };
        self.effects.push_back(Effect::SendDepsLost {
            origin: stolen.origin,
            id,
            lost,
        });
        self.after_event(now);
    }

    /// A thief's report that it could not run `job`: none of the holders it was given served
    /// the outputs of the deps in `lost`. Those deps run again (here or on a peer), and the
    /// job waits for them. The thief is not blamed: the holders failed, not it.
    pub fn on_thief_deps_lost(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        lost: &[JobId],
    ) -> Report {
        let report = match self.leases.get(&job).copied() {
            Some(lease) if lease.thief == peer => {
                self.remove_lease(&job);
                self.stats.deps_lost_by_thieves += 1;
                self.scheduler.on_deps_lost(now, lease.build, job, lost);
                Report::Accepted
            }
            _ => Report::Unknown,
        };
        self.after_event(now);
        report
    }

    // ---- time ---------------------------------------------------------------------------

    /// Time passes: beacons, announcements, lease renewals and expiries, steal attempts.
    pub fn tick(&mut self, now: Time) {
        // Leases that ran out go back to the queue, in the order of their ids.
        let mut expired: Vec<JobId> = Vec::new();
        while let Some(&(deadline, job)) = self.lease_deadlines.first() {
            if deadline > now {
                break;
            }
            self.lease_deadlines.pop_first();
            expired.push(job);
        }
        expired.sort_unstable();
        for job in expired {
            let Some(lease) = self.leases.remove(&job) else {
                continue;
            };
            self.count_lease(lease.thief, false);
            if self.scheduler.requeue(now, lease.build, job) {
                self.stats.leases_requeued += 1;
                self.effects.push_back(Effect::Returned {
                    build: lease.build,
                    job,
                    peer: lease.thief,
                });
            }
        }
        // Renew what runs here for peers, one message per origin, jobs in id order.
        let mut due: Vec<JobId> = Vec::new();
        while let Some(&(at, id)) = self.renewals.first() {
            if at > now {
                break;
            }
            self.renewals.pop_first();
            due.push(id);
        }
        due.sort_unstable();
        let mut renewals: BTreeMap<NodeId, Vec<JobId>> = BTreeMap::new();
        for id in due {
            if let Some(stolen) = self.stolen.get_mut(&id) {
                renewals.entry(stolen.origin).or_default().push(id);
                stolen.next_renew = now + self.config.lease_ttl / 3;
                self.renewals.insert(stolen.next_renew, id);
            }
        }
        for (origin, jobs) in renewals {
            self.effects.push_back(Effect::SendRenew { origin, jobs });
        }
        if let Some((victim, sent)) = self.steal_pending
            && now >= sent + STEAL_TIMEOUT
        {
            self.on_steal_failed(now, victim);
        }
        self.after_event(now);
    }

    // ---- internals ----------------------------------------------------------------------

    /// What every event ends with: beacons and announcements when due, and a steal attempt
    /// when this node has room.
    fn after_event(&mut self, now: Time) {
        if let Some(due) = self.have_due
            && due <= now
        {
            self.have_due = None;
            let jobs = std::mem::take(&mut self.pending_have);
            if !jobs.is_empty() {
                self.effects.push_back(Effect::Publish(Gossip::Have(jobs)));
            }
        }
        // Only a node with jobs queued has anything to keep back (most nodes of a large mesh
        // have none, and would otherwise count the fast peers at every gossip message).
        if self.held > 0 || (!self.fast_peers.is_empty() && self.scheduler.queued() > 0) {
            let hold = self.hold_for(now, self.config.speed, None);
            self.held = hold.count;
            self.scheduler.set_hold(hold);
        }
        self.maybe_beacon(now);
        self.maybe_steal(now);
    }

    /// Records a peer's speed: whether it is one of the fast peers jobs are kept back for.
    fn note_speed(&mut self, peer: NodeId, speed: u32) {
        if speed < self.slowest_speed {
            // A new slowest machine: peers that were not fast before may be now.
            self.slowest_speed = speed;
            let slowest = speed;
            self.fast_peers = self
                .peers
                .iter()
                .filter(|(_, p)| p.beacon.as_ref().is_some_and(|b| faster(b.speed, slowest)))
                .map(|(node, _)| *node)
                .collect();
        } else if faster(speed, self.slowest_speed) {
            self.fast_peers.insert(peer);
        } else {
            self.fast_peers.remove(&peer);
        }
    }

    /// Which queued jobs a node of `speed` (this one, or the thief `except`) should leave for
    /// faster peers: as many as those peers have slots free, as far as this node knows, and
    /// at least one each. A peer counts while its last beacon said it had nothing queued (so
    /// it is looking for work), it shares, it is on this platform and it is not avoided; its
    /// free slots are those of that beacon less the jobs this node has leased to it since.
    ///
    /// One job is kept back even for a fast peer that looks full: one of its slots frees
    /// soon, and the critical path gains more from waiting for it (at most
    /// [`CoreConfig::speed_hold`]) than from a slow start now. Beacons are not sent when only
    /// free slots change, so "full" is often stale too. In netsim's office LAN, with a build
    /// box at 1.5×, builds took 1.41× their bound with nothing kept back; keeping back only
    /// for free slots gave 1.24× (50 ms hold); with this rule, about 1.04× (50 or 100 ms);
    /// believing a beacon that said "no free slot", 1.20× (100 ms).
    fn hold_for(&self, now: Time, speed: u32, except: Option<NodeId>) -> Hold {
        if self.fast_peers.is_empty() {
            return Hold::NONE;
        }
        let mut count = 0usize;
        for node in &self.fast_peers {
            if Some(*node) == except {
                continue;
            }
            let Some(state) = self.peers.get(node) else {
                continue;
            };
            let Some(beacon) = state.beacon.as_ref() else {
                continue;
            };
            let looking = beacon.queue_len == 0
                && beacon.share != SharePolicy::Never
                && beacon.platform == self.platform
                && state.avoid_until.is_none_or(|until| until <= now);
            if !looking || !faster(beacon.speed, speed) {
                continue;
            }
            count += beacon.free_slots.saturating_sub(state.leased).max(1) as usize;
        }
        if count == 0 {
            return Hold::NONE;
        }
        Hold {
            count,
            now,
            window: self.config.speed_hold,
            min_estimate: self.config.speed_hold.saturating_mul(MIN_HELD_JOB_IN_HOLDS),
        }
    }

    fn announce(&mut self, now: Time, job: JobId) {
        self.remember(job);
        self.pending_have.push(job);
        if self.have_due.is_none() {
            self.have_due = Some(now + self.config.have_delay);
        }
        if self.pending_have.len() >= MAX_HAVE_BATCH {
            self.have_due = Some(now);
        }
    }

    /// Keeps a result this node holds for newcomers' first `Have`.
    fn remember(&mut self, job: JobId) {
        self.recent.push_back(job);
        if self.recent.len() > self.config.have_snapshot {
            self.recent.pop_front();
        }
    }

    /// Forgets a stolen job that ended here: no more renewals, its slot free again.
    fn end_stolen(&mut self, id: JobId) -> Option<Stolen> {
        let stolen = self.stolen.remove(&id)?;
        self.renewals.remove(stolen.next_renew, id);
        self.scheduler.set_reserved(self.stolen.len());
        Some(stolen)
    }

    fn insert_lease(&mut self, job: JobId, lease: LeaseOut) {
        self.count_lease(lease.thief, true);
        if let Some(old) = self.leases.insert(job, lease) {
            self.count_lease(old.thief, false);
            self.lease_deadlines.remove(old.deadline, job);
        }
        self.lease_deadlines.insert(lease.deadline, job);
    }

    /// Keeps [`PeerState::leased`] up to date as a lease to `thief` comes or goes.
    fn count_lease(&mut self, thief: NodeId, added: bool) {
        if let Some(state) = self.peers.get_mut(&thief) {
            state.leased = if added {
                state.leased.saturating_add(1)
            } else {
                state.leased.saturating_sub(1)
            };
        }
    }

    fn remove_lease(&mut self, job: &JobId) -> Option<LeaseOut> {
        let lease = self.leases.remove(job)?;
        self.count_lease(lease.thief, false);
        self.lease_deadlines.remove(lease.deadline, *job);
        Some(lease)
    }

    fn share_allowed(&self) -> bool {
        match self.config.share {
            SharePolicy::Always => true,
            SharePolicy::Idle => self.system_idle && !self.scheduler.is_building(),
            SharePolicy::Never => false,
        }
    }

    /// Slots free for peers' jobs.
    fn shared_slots_free(&self) -> usize {
        if !self.share_allowed() {
            return 0;
        }
        let free = self.scheduler.free_slots();
        let shared_left = self
            .config
            .max_shared_slots
            .saturating_sub(self.stolen.len());
        free.min(shared_left)
    }

    fn may_steal(&self) -> bool {
        self.shared_slots_free() > 0 && self.scheduler.queued() == 0
    }

    fn maybe_beacon(&mut self, now: Time) {
        let busy = self.scheduler.queued() > 0;
        let queued = self.scheduler.queued();
        let grew = self.turned_away.is_some_and(|at| queued > at);
        let mut changed = self.last_beacon != Some(busy) || grew;
        if busy {
            self.emptied_at = None;
        } else if self.last_beacon == Some(true) {
            // A queue that empties often refills at once (thieves drain it, then the next
            // jobs turn ready): say "idle" only once it stays empty a while, rather than
            // send every node two beacons per refill.
            let since = *self.emptied_at.get_or_insert(now);
            if now < since + IDLE_GRACE {
                changed = false;
                self.beacon_due = self.beacon_due.min(since + IDLE_GRACE);
            }
        }
        let interval = if busy {
            self.config.beacon_interval
        } else {
            // Every idle beacon goes to every node: on a large mesh, space them out so that
            // a node receives about ten a second, whatever the mesh's size.
            let per_peer = IDLE_BEACON_SPACING.saturating_mul(self.peers.len() as u32);
            self.config.idle_beacon_interval.max(per_peer)
        };
        if !changed && now < self.beacon_due {
            return;
        }
        if self.peers.is_empty() && !changed {
            self.beacon_due = now + interval;
            return;
        }
        self.last_beacon = Some(busy);
        self.turned_away = None;
        // The hold `after_event` just gave the scheduler, as far as the queue goes.
        let held = if self.held > 0 {
            self.held.min(self.scheduler.queued())
        } else {
            0
        };
        self.beacon_due = now + interval;
        let beacon = LoadBeacon {
            free_slots: u32::try_from(self.shared_slots_free()).unwrap_or(u32::MAX),
            queue_len: u32::try_from(self.scheduler.queued()).unwrap_or(u32::MAX),
            platform: self.platform.clone(),
            tools: self.tools.iter().copied().collect(),
            share: self.config.share,
            max_shared_slots: u32::try_from(self.config.max_shared_slots).unwrap_or(u32::MAX),
            speed: self.config.speed,
            held: u32::try_from(held).unwrap_or(u32::MAX),
        };
        self.effects
            .push_back(Effect::Publish(Gossip::Beacon(beacon)));
    }

    fn maybe_steal(&mut self, now: Time) {
        if self.steal_pending.is_some() || now < self.steal_gate || !self.may_steal() {
            return;
        }
        // Victims: busy peers on this platform, not avoided, not backing off; picked at
        // random with odds in proportion to their queue, so thieves spread out. (Counted
        // and picked in two passes: this runs after every event, most often to find no
        // victim or to be turned away by the odds below.)
        let total: u64 = self
            .busy_peers
            .keys()
            .filter_map(|node| self.steal_weight(node, now))
            .sum();
        if total == 0 {
            return;
        }
        // Many idle nodes, few queued jobs: ask with odds that make about `steal_fanout`
        // requests per queued job, and roll again after `steal_backoff`. Every peer not
        // known to be busy counts as a competitor, and so does this node.
        // Rather than roll every `steal_backoff` (a wake-up each time, on every idle node),
        // draw how many rolls it takes, and sleep until then: about idle / wanted of them.
        // A node that victims keep jobs back for competes only with the other fast peers
        // (a build box among laptops asks at once rather than wait its turn behind them),
        // and with every peer whose speed it does not know yet: on a large mesh beacons are
        // sparse, and 500 fast machines that each thought itself one of few made twelve
        // times the steal requests (netsim).
        let idle = if faster(self.config.speed, self.slowest_speed) {
            let unknown = self.peers.len().saturating_sub(self.beaconed);
            (self.fast_peers.len() + unknown) as u64 + 1
        } else {
            (self.peers.len() - self.busy_peers.len().min(self.peers.len()) + 1) as u64
        };
        let wanted = total.saturating_mul(u64::from(self.config.steal_fanout.max(1)));
        if wanted < idle && !std::mem::take(&mut self.steal_turn) {
            let rolls = self.next_random() % (2 * idle / wanted + 1);
            if rolls > 0 {
                let backoff = self.config.steal_backoff.max(Duration::from_millis(1));
                let wait = backoff.saturating_mul(u32::try_from(rolls).unwrap_or(u32::MAX));
                self.steal_gate = now + wait.min(MAX_STEAL_TURN_WAIT);
                self.steal_turn = true;
                return;
            }
        }
        self.steal_turn = false;
        let mut pick = self.next_random() % total;
        let mut victim = None;
        for node in self.busy_peers.keys() {
            let Some(queue) = self.steal_weight(node, now) else {
                continue;
            };
            if victim.is_none() || pick < queue {
                victim = Some(*node);
            }
            if pick < queue {
                break;
            }
            pick -= queue;
        }
        let Some(victim) = victim else { return };
        let max_jobs = self.shared_slots_free().min(self.config.steal_batch).max(1);
        self.steal_pending = Some((victim, now));
        self.stats.steal_requests += 1;
        self.effects.push_back(Effect::SendSteal {
            peer: victim,
            request: StealRequest {
                max_jobs: u32::try_from(max_jobs).unwrap_or(u32::MAX),
                platform: self.platform.clone(),
                tools: self.tools.iter().copied().collect(),
            },
        });
    }

    /// A busy peer's queue, when it may be asked for work now.
    fn steal_weight(&self, node: &NodeId, now: Time) -> Option<u64> {
        let p = self.peers.get(node)?;
        if p.avoid_until.is_some_and(|until| until > now) || p.steal_backoff_until > now {
            return None;
        }
        let beacon = p.beacon.as_ref()?;
        let queue_len = open_queue(beacon, self.config.speed);
        (queue_len > 0 && beacon.platform == self.platform).then_some(u64::from(queue_len))
    }

    /// Asks the next peer that announced the job's result; false when none is left.
    fn ask_next_holder(&mut self, build: BuildId, job: JobId) -> bool {
        let asked = self.queries.entry((build, job)).or_default();
        if asked.len() >= MAX_CACHE_QUERIES {
            return false;
        }
        let next = self.holders.get(&job).iter().copied().find(|peer| {
            !asked.contains(peer)
                && self
                    .peers
                    .get(peer)
                    .is_some_and(|p| p.avoid_until.is_none())
        });
        match next {
            Some(peer) => {
                asked.push(peer);
                let with_outputs = self.scheduler.is_wanted(build, job);
                self.effects.push_back(Effect::QueryPeer {
                    build,
                    job,
                    peer,
                    with_outputs,
                });
                true
            }
            None => false,
        }
    }

    fn count_failure(&mut self, now: Time, peer: NodeId) {
        let limit = self.config.max_peer_failures;
        let avoid_for = self.config.avoid_for;
        if let Some(state) = self.peers.get_mut(&peer) {
            state.failures += 1;
            if state.failures >= limit {
                state.avoid_until = Some(now + avoid_for);
                state.failures = 0;
            }
        }
        self.refresh_busy(&peer);
    }

    fn reset_failures(&mut self, peer: NodeId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.failures = 0;
            if state.avoid_until.is_some() {
                state.avoid_until = None;
            }
        }
        self.refresh_busy(&peer);
    }

    /// Brings a busy peer's [`Core::busy_peers`] entry up to date after its backoff or
    /// avoidance changed.
    fn refresh_busy(&mut self, peer: &NodeId) {
        if self.busy_peers.contains_key(peer)
            && let Some(state) = self.peers.get(peer)
        {
            let ready = state.steal_ready();
            self.set_busy(*peer, Some(ready));
        }
    }

    /// Makes `peer` a busy peer that may be asked from `ready` on, or (`None`) not a busy
    /// peer, keeping [`Core::busy_ready`] the earliest time.
    fn set_busy(&mut self, peer: NodeId, ready: Option<Time>) {
        let old = match ready {
            Some(ready) => self.busy_peers.insert(peer, ready),
            None => self.busy_peers.remove(&peer),
        };
        if old.is_some() && old == self.busy_ready {
            // The earliest may have moved later.
            self.busy_ready = self.busy_peers.values().min().copied();
        } else if let Some(ready) = ready
            && self.busy_ready.is_none_or(|earliest| ready < earliest)
        {
            self.busy_ready = Some(ready);
        }
    }

    /// A scheduler effect, made complete: a start lists every place its deps' outputs may
    /// be had; a build's end forgets its lookups.
    fn complete(&mut self, mut effect: BuildEffect) -> Effect {
        match &mut effect {
            BuildEffect::Start { deps, .. } => self.add_holders(deps),
            BuildEffect::BuildDone { build, .. } => {
                let build = *build;
                self.queries.retain(|(b, _), _| *b != build);
            }
            BuildEffect::LookupCache { .. }
            | BuildEffect::Cancel { .. }
            | BuildEffect::Skipped { .. } => {}
        }
        Effect::Build(effect)
    }

    /// Adds to each dep's holders (the node that made it) the peers that announced it, and
    /// last this node: the order in which a runner asks for the outputs.
    fn add_holders(&self, deps: &mut [LeaseDep]) {
        for dep in deps {
            for peer in self.holders.get(&dep.job) {
                if !dep.holders.contains(peer) {
                    dep.holders.push(*peer);
                }
            }
            if !dep.holders.contains(&self.local) {
                dep.holders.push(self.local);
            }
        }
    }

    /// splitmix64: deterministic, seeded from the node's id.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// How much faster than another a node must be to be given the jobs that other would take
/// (`faster`): a quarter, so that two machines of one kind, whose measured speeds differ by a
/// few percent, never wait for each other.
const FASTER: (u32, u32) = (5, 4);

/// The jobs in a peer's beacon that a node of `speed` may be given: those it keeps back for
/// faster peers are left out unless this node is one of them.
fn open_queue(beacon: &LoadBeacon, speed: u32) -> u32 {
    if faster(speed, beacon.speed) {
        beacon.queue_len
    } else {
        beacon.queue_len.saturating_sub(beacon.held)
    }
}

/// Whether `speed` is at least [`FASTER`] times `than`.
fn faster(speed: u32, than: u32) -> bool {
    u64::from(speed) * u64::from(FASTER.1) >= u64::from(than) * u64::from(FASTER.0)
}

/// Jobs expected to run less than this many [`CoreConfig::speed_hold`]s are never kept back
/// for a faster peer: the wait could cost more than the faster run saves.
const MIN_HELD_JOB_IN_HOLDS: u32 = 10;

/// How soon after a peer comes up a busy node beacons (peers that come up together get one
/// beacon).
const PEER_UP_BEACON_DELAY: Duration = Duration::from_millis(50);

/// How long a steal request may go unanswered before the thief tries elsewhere.
const STEAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The most ids in one `Have` announcement.
const MAX_HAVE_BATCH: usize = 512;

/// The longest an idle node sleeps before its turn to ask a busy peer for work (a peer that
/// turns busy ends the wait at once).
const MAX_STEAL_TURN_WAIT: Duration = Duration::from_secs(10);

/// How long the queue must stay empty before a busy node says it is idle.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// The idle beacon interval per peer, once that exceeds
/// [`CoreConfig::idle_beacon_interval`].
const IDLE_BEACON_SPACING: Duration = Duration::from_millis(100);

/// The most results in one `Have` message of a newcomer's first snapshot.
const HAVE_SNAPSHOT_CHUNK: usize = 8192;

/// The most peers asked for one job's result.
const MAX_CACHE_QUERIES: usize = 3;
