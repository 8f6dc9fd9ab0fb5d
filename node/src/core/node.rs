//! [`Core`]: one node's whole decision-making. It orchestrates its parts, each of which owns
//! its state: the [`Scheduler`] of this node's builds, the [`PeerTable`], the [`Holders`] of
//! announced results, the [`Lent`] and [`Borrowed`] leases, [`Stealing`], the
//! [`PeerLookups`] of the peer cache, and the [`Announcer`].
//!
//! Protocol flow, as this state machine sees it:
//!
//! - **Beacons**: [`Effect::Publish`] a [`LoadBeacon`] at once when this node turns busy (jobs
//!   queued) or idle; while busy, every [`CoreConfig::beacon_interval`]; while idle, every
//!   [`CoreConfig::idle_beacon_interval`]; and shortly after a peer comes up while busy, so the
//!   newcomer can steal. Peers' beacons come in through [`Core::on_beacon`]. Only the queue
//!   decides who is a steal victim, so a change in free slots alone is not announced: on a
//!   large mesh every beacon goes to every node.
//! - **Results**: each result this node makes is announced in a batched [`Gossip::Have`];
//!   peers' announcements ([`Core::on_have`]) fill the map from job to holders. A newly
//!   admitted peer is sent the latest ones ([`Core::on_peer_up`] returns them).
//! - **Cache**: a ready job is looked up here first ([`BuildEffect::LookupCache`]); on a miss,
//!   a peer that announced it is asked ([`Effect::QueryPeer`]); the shell checks the answer's
//!   signature before reporting a hit with [`Core::on_peer_cache`].
//! - **Where outputs are**: every settled job comes with a [`Made`] (its output tree and who
//!   made it). A [`BuildEffect::Start`] and every lease list each dep's holders, best first:
//!   the node that made it, the peers that announced it, then the node that lists them.
//! - **Stealing**: a node with free slots, nothing of its own to run and sharing allowed asks
//!   a busy peer for work ([`Effect::SendSteal`]); the victim ([`Core::on_steal_request`])
//!   grants queued jobs whose toolchain the thief has, preferring those whose deps' results the
//!   thief already holds, each under a lease. The thief runs them ([`Effect::RunStolen`]),
//!   renews the leases while they run ([`Effect::SendRenew`]) and reports back
//!   ([`Effect::SendDone`]); the victim takes the report with [`Core::on_thief_done`] and its
//!   siblings. The victim requeues a job whose lease runs out or whose thief goes away.
//!
//! Everything is decided from the events and their times; the only randomness is a
//! generator seeded from the node's id, so a run is a pure function of its inputs.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use weft_protocol::wire::{Lease, LeaseDep, LoadBeacon, SharePolicy, StealRequest};
use weft_protocol::{Digest, JobId, NodeId};

use super::Time;
use super::announce::Announcer;
use super::config::CoreConfig;
use super::effect::{Effect, Finished, Gossip, Report, Reported, StolenOutcome};
use super::holders::Holders;
use super::leases::{Borrowed, LeaseOut, Lent};
use super::lookups::PeerLookups;
use super::peers::{PeerTable, PeerView};
use super::rng::Rng;
use super::scheduler::{
    BuildEffect, BuildId, BuildOptions, JobOutcome, Made, PlanError, PlannedJob, Reserve, Scheduler,
};
use super::steal::{Draw, Stealing};
use super::trust::Trust;

/// How a stolen job ended, as its thief reports it (the victim's side of
/// [`StolenOutcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThiefOutcome {
    Succeeded(Made),
    Failed,
    Infrastructure,
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
    /// Jobs found to make different outputs on different runs (each counted once).
    pub nondeterministic: u64,
    /// Jobs that failed their build because they kept losing their worker.
    pub quarantined: u64,
}

/// One node's decisions: its builds and its part in the mesh.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    local: NodeId,
    platform: String,
    /// The tools this node advertises to peers, by digest.
    tools: BTreeSet<Digest>,
    scheduler: Scheduler,
    peers: PeerTable,
    holders: Holders,
    lent: Lent,
    borrowed: Borrowed,
    stealing: Stealing,
    /// The only randomness: seeded from this node's id.
    rng: Rng,
    lookups: PeerLookups,
    announcer: Announcer,
    trust: Trust,
    system_idle: bool,
    /// How many jobs the reserve last given to the scheduler keeps back (what beacons call
    /// `reserved`). With no fast peer and none reserved, neither the reserve nor its expiry
    /// is looked at: on a large mesh every event would otherwise touch the scheduler's memory
    /// for nothing.
    reserved: usize,
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
        Core {
            scheduler: Scheduler::new(config.slots),
            peers: PeerTable::new(config.speed, platform.clone()),
            holders: Holders::default(),
            lent: Lent::default(),
            borrowed: Borrowed::default(),
            stealing: Stealing::new(),
            rng: Rng::new(local),
            lookups: PeerLookups::default(),
            announcer: Announcer::new(&config),
            trust: Trust::default(),
            config,
            local,
            platform,
            tools,
            system_idle: true,
            reserved: 0,
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
        self.scheduler.running() + self.borrowed.len()
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

    /// When [`Core::tick`] should be called next: the earliest time any part has something
    /// due.
    pub fn next_timeout(&self) -> Time {
        let mut next = self.announcer.next_time();
        let due = [
            self.lent.next_deadline(),
            self.borrowed.next_renewal(),
            // When the first busy peer may be asked: after its backoff, and after the time
            // it is avoided (a peer avoided for a minute is no reason to wake up now).
            self.stealing
                .next_time(self.may_steal(), self.peers.busy_ready()),
            if self.reserved > 0 {
                self.scheduler.reserve_expiry()
            } else {
                None
            },
        ];
        for time in due.into_iter().flatten() {
            next = next.min(time);
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
        self.scheduler.add_build(now, build, jobs, options)?;
        self.after_event(now);
        Ok(())
    }

    /// Cancels a build: nothing new starts, running jobs are stopped, and jobs out on
    /// peers are let go (their late reports are ignored).
    pub fn cancel_build(&mut self, now: Time, build: BuildId) {
        self.scheduler.cancel_build(now, build);
        for job in self.lent.of_build(build) {
            self.lent.remove(&job);
            self.scheduler.requeue(now, build, job);
        }
        self.after_event(now);
    }

    /// The driver's answer to [`BuildEffect::LookupCache`]: a hit, with its output tree (in
    /// this node's store), or a miss.
    ///
    /// A nondeterministic job takes no hit (it is built here), and neither it nor a job that
    /// may use the network is asked of peers.
    pub fn on_local_cache(&mut self, now: Time, build: BuildId, job: JobId, hit: Option<Digest>) {
        let flagged = self.trust.is_flagged(&job);
        let by = self.local;
        if let Some(made) = hit.filter(|_| !flagged).map(|tree| Made { tree, by }) {
            self.stats.local_cache_hits += 1;
            self.scheduler.on_cache_lookup(now, build, job, Some(made));
        } else if flagged || self.is_network(build, job) || !self.ask_next_holder(build, job) {
            self.missed(now, build, job);
        }
        self.after_event(now);
    }

    /// The driver's answer to [`Effect::QueryPeer`]: a hit (with its output tree, which
    /// `peer` holds) only when the result's signature checked out and its blobs can be had
    /// (and, `with_outputs`, are here).
    pub fn on_peer_cache(
        &mut self,
        now: Time,
        build: BuildId,
        job: JobId,
        peer: NodeId,
        hit: Option<Digest>,
    ) {
        let hit = hit.map(|tree| Made { tree, by: peer });
        if !self.lookups.was_asked(build, job, &peer) {
            return;
        }
        if hit.is_some() && (self.trust.is_flagged(&job) || self.trust.is_distrusted(&peer)) {
            // Flagged or disowned since it was asked: not from a cache after all.
            self.lookups.end(build, job);
            self.missed(now, build, job);
        } else if let Some(made) = hit {
            self.lookups.end(build, job);
            self.stats.peer_cache_hits += 1;
            self.maybe_verify(build, job, made);
            self.scheduler.on_cache_lookup(now, build, job, Some(made));
        } else if !self.ask_next_holder(build, job) {
            self.missed(now, build, job);
        }
        self.after_event(now);
    }

    /// The driver's answer to [`BuildEffect::Start`] or [`BuildEffect::Cancel`]; a success
    /// comes with its output tree.
    pub fn on_job_finished(&mut self, now: Time, build: BuildId, job: JobId, finished: Finished) {
        let outcome = match finished {
            Finished::Succeeded(tree) => JobOutcome::Succeeded(Made {
                tree,
                by: self.local,
            }),
            Finished::Failed => JobOutcome::Failed,
            Finished::Cancelled => JobOutcome::Cancelled,
        };
        let ran_here = self.scheduler.runner(build, job).is_none();
        self.scheduler.on_job_finished(now, build, job, outcome);
        if let JobOutcome::Succeeded(made) = outcome {
            self.trust.succeeded(&job);
            if ran_here {
                self.announcer.announce(now, job);
                self.trust.ran_here(job, made.tree);
            }
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
        if self.trust.is_distrusted(&peer) {
            return Vec::new();
        }
        self.peers.up(now, peer);
        self.holders.peer_up(peer);
        self.announcer.peer_up(now, self.scheduler.queued());
        self.after_event(now);
        self.announcer.snapshot()
    }

    /// Results this node's store held before this core started (a restart that kept the
    /// store), oldest first: listed in newcomers' first `Have` like those made since.
    pub fn restore_results(&mut self, jobs: impl IntoIterator<Item = JobId>) {
        for job in jobs {
            self.announcer.remember(job);
        }
    }

    /// A peer left, or its connection dropped: what it held is gone, and the jobs it ran for
    /// this node go back to the queue.
    pub fn on_peer_down(&mut self, now: Time, peer: NodeId) {
        self.peers.down(&peer);
        self.holders.peer_down(peer);
        for (job, build) in self.lent.of_thief(&peer) {
            self.lent.remove(&job);
            // Gone with its machine or its network, or left: the job goes back to the queue,
            // and is not blamed (a thief whose daemon died says so when it is back).
            if self.scheduler.requeue(now, build, job) {
                self.stats.leases_requeued += 1;
                self.effects
                    .push_back(Effect::Returned { build, job, peer });
            }
        }
        self.stealing.answered(&peer);
        // Lookups waiting on it move on.
        for (build, job) in self.lookups.waiting_on(&peer) {
            if !self.ask_next_holder(build, job) {
                self.missed(now, build, job);
            }
        }
        self.after_event(now);
    }

    /// A peer's beacon.
    pub fn on_beacon(&mut self, now: Time, peer: NodeId, beacon: &LoadBeacon) {
        let Some(grew) = self.peers.beacon(now, peer, beacon) else {
            return;
        };
        if grew {
            self.stealing.more_work(now);
        }
        self.after_event(now);
    }

    /// A peer announced results it holds.
    pub fn on_have(&mut self, now: Time, peer: NodeId, jobs: &[JobId]) {
        if self.trust.is_distrusted(&peer) {
            return;
        }
        if !self
            .holders
            .announced(jobs, peer, self.config.max_holder_entries)
        {
            return;
        }
        debug_assert!(self.peers.contains(&peer));
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

    /// How long a job that ran for `duration` on `peer` would have run here, by this node's
    /// speed and the one the peer's last beacon gave (the same, when that is unknown).
    pub fn local_duration(&self, peer: &NodeId, duration: Duration) -> Duration {
        let here = f64::from(self.config.speed.max(1));
        let there = self.peers.speed_of(peer).map_or(here, f64::from);
        duration.mul_f64(there / here)
    }

    /// The peers known to hold a job's result.
    #[cfg(test)]
    pub(crate) fn holders(&self, job: &JobId) -> &[NodeId] {
        self.holders.get(job)
    }

    /// What this node knows of its peers.
    pub fn peers(&self) -> Vec<PeerView> {
        self.peers
            .sorted()
            .into_iter()
            .map(|(node, state)| PeerView {
                node: *node,
                beacon: state.beacon.clone(),
                beacon_at: state.beacon_at,
                n_results: self.holders.count(node),
                n_leased: self.lent.count(node) as usize,
                failures: state.failures,
                avoided_until: state.avoid_until,
            })
            .collect()
    }

    // ---- victim side --------------------------------------------------------------------

    /// A thief asks for work: up to its `max_jobs` queued jobs whose toolchain it has, each
    /// under a lease that lists where the job's deps' outputs are. Jobs whose deps' results
    /// the thief holds go first among the best.
    pub fn on_steal_request(
        &mut self,
        now: Time,
        peer: NodeId,
        request: &StealRequest,
    ) -> Vec<Lease> {
        if !self.config.lend || self.peers.get(&peer).is_none_or(|p| p.is_avoided(now)) {
            // Not lending, an unknown thief, or one that kept failing jobs for reasons of its
            // own: nothing for now.
            return Vec::new();
        }
        let tools: BTreeSet<Digest> = request.tools.iter().copied().collect();
        let max = (request.max_jobs as usize).min(64);
        // The most critical jobs wait a moment for a peer much faster than this thief.
        let thief_speed = self
            .peers
            .speed_of(&peer)
            .unwrap_or(self.peers.slowest_speed());
        let reserve = self.reserve_against(now, thief_speed, Some(peer));
        // A thief that jobs are reserved for takes the most critical ones, wherever their
        // inputs are; others take what they hold the inputs of first.
        let critical_first = self.peers.fast().contains(&peer);
        let holders = &self.holders;
        let lent = &self.lent;
        let trust = &self.trust;
        let given = self.scheduler.take_for_peer(peer, max, reserve, |id, job| {
            // A job that may use the network runs where it was asked for, and a
            // nondeterministic one is built here until it agrees with itself.
            if job.network || trust.is_flagged(&id) {
                return None;
            }
            let runnable = job.toolchain.platform == request.platform
                && job
                    .toolchain
                    .tools
                    .values()
                    .all(|digest| tools.contains(digest));
            if !runnable || lent.contains(&id) {
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
        if given.is_empty() && reserve.count == 0 {
            // Say so when more jobs queue up. Not when jobs were reserved for a faster peer:
            // this thief would be turned away again, and with it every slow peer that the
            // beacon wakes (`bench/RESULTS.md`).
            self.announcer.turned_away(self.scheduler.queued());
        }
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut leases = Vec::with_capacity(given.len());
        for (build, id, job, queued_at) in given {
            self.lent.insert(
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
        let deadline = now + self.config.lease_ttl;
        jobs.iter()
            .copied()
            .filter(|job| !self.lent.renew(*job, peer, deadline))
            .collect()
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
        let report = match self.lent.get(&job) {
            Some(lease) if lease.thief == peer => {
                self.lent.remove(&job);
                self.stats.deps_lost_by_thieves += 1;
                self.scheduler.on_deps_lost(now, lease.build, job, lost);
                Report::Accepted
            }
            _ => Report::Unknown,
        };
        self.after_event(now);
        report
    }

    fn thief_report(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        outcome: ThiefOutcome,
    ) -> Report {
        if self.trust.is_distrusted(&peer) {
            // Its leases went back to the queue when it was disowned; nothing it says counts.
            return Report::Unknown;
        }
        if let ThiefOutcome::Succeeded(made) = outcome {
            if let Some(known) = self.scheduler.made_of(job)
                && known.tree != made.tree
            {
                self.nondeterministic(job, known.by, made.by);
            }
            self.trust.succeeded(&job);
            // Every build with the job takes its outputs from the thief from now on.
            self.scheduler.set_made(job, made);
        }
        let report = match (self.lent.get(&job), outcome) {
            (Some(lease), _) if lease.thief == peer => {
                self.lent.remove(&job);
                match outcome {
                    ThiefOutcome::Succeeded(made) => {
                        self.peers.reset_failures(peer);
                        self.holders.add(job, peer, self.config.max_holder_entries);
                        self.scheduler.on_job_finished(
                            now,
                            lease.build,
                            job,
                            JobOutcome::Succeeded(made),
                        );
                    }
                    ThiefOutcome::Failed => {
                        self.peers.reset_failures(peer);
                        self.scheduler
                            .on_job_finished(now, lease.build, job, JobOutcome::Failed);
                    }
                    ThiefOutcome::Infrastructure => {
                        let (limit, avoid_for) =
                            (self.config.max_peer_failures, self.config.avoid_for);
                        self.peers.count_failure(now, peer, limit, avoid_for);
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
                        if let Some(lease) = self.lent.get(&job)
                            && lease.build == build
                        {
                            // Out again, with another thief: that one's report will be a
                            // duplicate.
                            self.lent.remove(&job);
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
        let leases = if self.trust.is_distrusted(&peer) {
            Vec::new()
        } else {
            leases
        };
        self.stealing.answered(&peer);
        self.peers
            .steal_answered(now, peer, leases.is_empty(), self.config.steal_backoff);
        if !leases.is_empty() {
            self.stats.steal_successes += 1;
        }
        for lease in leases {
            let id = lease.job.id();
            if self.borrowed.contains(&id) {
                continue;
            }
            let tools = &self.tools;
            let acceptable = !lease.job.network
                && lease
                    .job
                    .toolchain
                    .tools
                    .values()
                    .all(|digest| tools.contains(digest));
            if !acceptable {
                // A victim lends only what the thief's request said it runs: this one did not
                // listen. Nothing runs; it runs the job elsewhere.
                self.effects.push_back(Effect::SendDone {
                    origin: peer,
                    id,
                    outcome: Reported::Refused,
                });
                continue;
            }
            let renew_every = Duration::from_millis(lease.ttl_ms / 3).max(Duration::from_millis(1));
            self.borrowed.insert(now, id, peer, renew_every);
            self.stats.jobs_stolen += 1;
            self.effects.push_back(Effect::RunStolen {
                origin: peer,
                id,
                job: Arc::new(lease.job),
                deps: lease.deps,
            });
        }
        self.scheduler
            .set_slots_for_peers(self.borrowed.len() + self.trust.n_verifying());
        self.after_event(now);
    }

    /// [`Effect::SendSteal`] failed (no answer, a refusal, a dropped connection).
    pub fn on_steal_failed(&mut self, now: Time, peer: NodeId) {
        self.on_granted(now, peer, Vec::new());
    }

    /// The victim's answer to [`Effect::SendRenew`]: jobs whose lease is gone are stopped.
    pub fn on_renewed(&mut self, now: Time, lost: &[JobId]) {
        for job in lost {
            if self.borrowed.contains(job) {
                self.effects.push_back(Effect::CancelStolen { id: *job });
            }
        }
        self.after_event(now);
    }

    /// The driver's answer to [`Effect::RunStolen`] or [`Effect::CancelStolen`].
    pub fn on_stolen_finished(&mut self, now: Time, id: JobId, outcome: StolenOutcome) {
        let Some(origin) = self.end_stolen(id) else {
            return;
        };
        let reported = match outcome {
            StolenOutcome::Succeeded => {
                self.announcer.announce(now, id);
                Some(Reported::Succeeded)
            }
            StolenOutcome::Failed => Some(Reported::Failed),
            StolenOutcome::Infrastructure => Some(Reported::Infrastructure),
            StolenOutcome::Cancelled => None,
        };
        if let Some(outcome) = reported {
            self.effects.push_back(Effect::SendDone {
                origin,
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
        let Some(origin) = self.end_stolen(id) else {
            return;
        };
        self.effects
            .push_back(Effect::SendDepsLost { origin, id, lost });
        self.after_event(now);
    }

    // ---- time ---------------------------------------------------------------------------

    /// Time passes: beacons, announcements, lease renewals and expiries, steal attempts.
    pub fn tick(&mut self, now: Time) {
        // Leases that ran out go back to the queue, in the order of their ids.
        for (job, lease) in self.lent.expire(now) {
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
        for (origin, jobs) in self.borrowed.due(now, self.config.lease_ttl / 3) {
            self.effects.push_back(Effect::SendRenew { origin, jobs });
        }
        if let Some(victim) = self.stealing.timed_out(now) {
            self.on_steal_failed(now, victim);
        }
        self.after_event(now);
    }

    // ---- trust --------------------------------------------------------------------------

    /// The driver's answer to [`Effect::Verify`]: the output tree the run here made, or
    /// `None` when it could not run (then nothing is concluded).
    pub fn on_verified(&mut self, now: Time, job: JobId, tree: Option<Digest>) {
        let Some((peer, expected)) = self.trust.verified(&job) else {
            return;
        };
        self.scheduler
            .set_slots_for_peers(self.borrowed.len() + self.trust.n_verifying());
        if let Some(tree) = tree {
            if tree == expected {
                tracing::debug!(%job, %peer, "a peer's cached result checked out");
            } else {
                self.nondeterministic(job, peer, self.local);
            }
        }
        self.after_event(now);
    }

    /// The driver found two different results of `job` (a local run against the action
    /// cache's entry, a peer's against one seen before), made by `first` and `second`.
    pub fn on_nondeterministic(&mut self, now: Time, job: JobId, first: NodeId, second: NodeId) {
        self.nondeterministic(job, first, second);
        self.after_event(now);
    }

    /// Whether `job` is flagged as nondeterministic (its results are not served to peers).
    pub fn is_nondeterministic(&self, job: &JobId) -> bool {
        self.trust.is_flagged(job)
    }

    /// The jobs flagged as nondeterministic, sorted.
    pub fn nondeterministic_jobs(&self) -> Vec<JobId> {
        self.trust.flagged()
    }

    /// Disowns `peer` (by its owner's word, or because it served corrupt bytes): no result,
    /// job or lookup goes to or comes from it any more; what it ran for this node goes back
    /// to the queue, and what this node runs for it stops.
    pub fn distrust(&mut self, now: Time, peer: NodeId) {
        if !self.trust.distrust(peer) {
            return;
        }
        self.peers.down(&peer);
        self.holders.peer_down(peer);
        for (job, build) in self.lent.of_thief(&peer) {
            self.lent.remove(&job);
            if self.scheduler.requeue(now, build, job) {
                self.stats.leases_requeued += 1;
                self.effects
                    .push_back(Effect::Returned { build, job, peer });
            }
        }
        self.stealing.answered(&peer);
        for id in self.borrowed.from(&peer) {
            self.effects.push_back(Effect::CancelStolen { id });
        }
        for (build, job) in self.lookups.waiting_on(&peer) {
            if !self.ask_next_holder(build, job) {
                self.missed(now, build, job);
            }
        }
        self.after_event(now);
    }

    /// Trusts `peer` again. It counts from its next admission on (the driver reports it
    /// with [`Core::on_peer_up`] when it is connected now).
    pub fn trust(&mut self, peer: &NodeId) -> bool {
        self.trust.trust(peer)
    }

    /// How many times `job` lost its worker (for the driver's record of runs in progress).
    pub fn losses(&self, job: &JobId) -> u32 {
        self.trust.losses(job)
    }

    /// Whether `peer` is disowned.
    pub fn is_distrusted(&self, peer: &NodeId) -> bool {
        self.trust.is_distrusted(peer)
    }

    /// The disowned peers, sorted.
    pub fn distrusted(&self) -> Vec<NodeId> {
        self.trust.distrusted()
    }

    /// A thief that came back says its daemon died while it ran these jobs of this node's
    /// (its machine did not restart, so they are the likely cause). Each counts towards
    /// quarantine; one that has lost its worker once too often and waits in a queue fails its
    /// build now.
    pub fn on_worker_died(&mut self, now: Time, peer: NodeId, jobs: &[JobId]) {
        if self.trust.is_distrusted(&peer) {
            return;
        }
        for job in jobs {
            let losses = self.trust.lost(*job);
            if losses < self.config.max_job_losses {
                continue;
            }
            for build in self.scheduler.builds_with(*job) {
                if self.scheduler.fail_queued(now, build, *job) {
                    self.stats.quarantined += 1;
                    self.effects.push_back(Effect::Quarantined {
                        build,
                        job: *job,
                        losses,
                        last: peer,
                    });
                }
            }
        }
        self.after_event(now);
    }

    /// Runs that lost their worker before this core started (this daemon died while they
    /// ran), by job: they count towards quarantine.
    pub fn restore_losses(&mut self, losses: impl IntoIterator<Item = (JobId, u32)>) {
        for (job, n) in losses {
            self.trust.restore_losses(job, n);
        }
    }

    // ---- internals ----------------------------------------------------------------------

    /// Whether `job` of `build` may use the network (so it runs only here).
    fn is_network(&self, build: BuildId, job: JobId) -> bool {
        self.scheduler.job(build, job).is_some_and(|j| j.network)
    }

    /// Picks, at the odds of [`CoreConfig::verify_per_million`], a peer's cache hit to run
    /// here too, beside the build.
    fn maybe_verify(&mut self, build: BuildId, job: JobId, made: Made) {
        if self.config.verify_per_million == 0
            || self.trust.is_verifying(&job)
            || !self.rng.chance(self.config.verify_per_million)
        {
            return;
        }
        let Some(spec) = self.scheduler.job(build, job).cloned() else {
            return;
        };
        let mut deps = self.scheduler.dep_outputs(build, &spec);
        self.add_holders(&mut deps);
        self.trust.verify(job, made.by, made.tree);
        self.scheduler
            .set_slots_for_peers(self.borrowed.len() + self.trust.n_verifying());
        self.effects.push_back(Effect::Verify {
            id: job,
            job: spec,
            deps,
            peer: made.by,
        });
    }

    /// No cache has `job`: it is queued, unless its worker died once too often with it, and
    /// this build is one that does not try it (every other one does).
    fn missed(&mut self, now: Time, build: BuildId, job: JobId) {
        self.scheduler.on_cache_lookup(now, build, job, None);
        let losses = self.trust.losses(&job);
        if losses >= self.config.max_job_losses
            && self.trust.sit_out(job)
            && self.scheduler.fail_queued(now, build, job)
        {
            self.stats.quarantined += 1;
            self.effects.push_back(Effect::Quarantined {
                build,
                job,
                losses,
                last: self.local,
            });
        }
    }

    /// Flags `job`: two of its results differ.
    fn nondeterministic(&mut self, job: JobId, first: NodeId, second: NodeId) {
        if self.trust.flag(job) {
            self.stats.nondeterministic += 1;
            self.effects
                .push_back(Effect::Nondeterministic { job, first, second });
        }
    }

    /// What every event ends with: beacons and announcements when due, and a steal attempt
    /// when this node has room.
    fn after_event(&mut self, now: Time) {
        if let Some(jobs) = self.announcer.due_have(now) {
            self.effects.push_back(Effect::Publish(Gossip::Have(jobs)));
        }
        // Only a node with jobs queued has anything to reserve (most nodes of a large mesh
        // have none, and would otherwise count the fast peers at every gossip message).
        if self.reserved > 0 || (!self.peers.fast().is_empty() && self.scheduler.queued() > 0) {
            let reserve = self.reserve_against(now, self.config.speed, None);
            self.reserved = reserve.count;
            self.scheduler.set_reserve(reserve);
        }
        self.maybe_beacon(now);
        self.maybe_steal(now);
    }

    /// Which queued jobs a taker of `speed` (this node, or the thief `except`) leaves for
    /// faster peers.
    fn reserve_against(&self, now: Time, speed: u32, except: Option<NodeId>) -> Reserve {
        self.peers
            .reserve(now, &self.lent, speed, except, self.config.reserve_for)
    }

    /// How many slots may run peers' jobs now: none when the sharing policy says no (`Idle`
    /// means only while the machine is otherwise idle and this node builds nothing), else the
    /// free slots, at most `max_shared_slots` with those already running peers' jobs counted.
    fn shared_slots_free(&self) -> usize {
        let allowed = match self.config.share {
            SharePolicy::Always => true,
            SharePolicy::Idle => self.system_idle && !self.scheduler.is_building(),
            SharePolicy::Never => false,
        };
        if !allowed {
            return 0;
        }
        let left = self
            .config
            .max_shared_slots
            .saturating_sub(self.borrowed.len());
        self.scheduler.free_slots().min(left)
    }

    fn may_steal(&self) -> bool {
        self.shared_slots_free() > 0 && self.scheduler.queued() == 0
    }

    fn maybe_beacon(&mut self, now: Time) {
        let queued = self.scheduler.queued();
        let due = self.announcer.beacon_now(now, queued, self.peers.len());
        if !due {
            return;
        }
        // The reserve `after_event` just gave the scheduler, as far as the queue goes.
        let reserved = if self.reserved > 0 {
            self.reserved.min(queued)
        } else {
            0
        };
        let beacon = LoadBeacon {
            free_slots: u32::try_from(self.shared_slots_free()).unwrap_or(u32::MAX),
            queue_len: u32::try_from(queued).unwrap_or(u32::MAX),
            platform: self.platform.clone(),
            tools: self.tools.iter().copied().collect(),
            share: self.config.share,
            max_shared_slots: u32::try_from(self.config.max_shared_slots).unwrap_or(u32::MAX),
            speed: self.config.speed,
            reserved: u32::try_from(reserved).unwrap_or(u32::MAX),
        };
        self.effects
            .push_back(Effect::Publish(Gossip::Beacon(beacon)));
    }

    fn maybe_steal(&mut self, now: Time) {
        if !self.stealing.may_try(now) || !self.may_steal() {
            return;
        }
        let draw = Draw {
            fanout: self.config.steal_fanout,
            backoff: self.config.steal_backoff,
        };
        let Some(victim) = self.stealing.draw(now, &self.peers, draw, &mut self.rng) else {
            return;
        };
        let max_jobs = self.shared_slots_free().min(self.config.steal_batch).max(1);
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

    /// Asks the next peer that announced the job's result; false when none is left.
    fn ask_next_holder(&mut self, build: BuildId, job: JobId) -> bool {
        let holders = self.holders.get(&job);
        let trust = &self.trust;
        let trusted = |peer: &NodeId| !trust.is_distrusted(peer);
        let Some(peer) = self.lookups.next(build, job, holders, &self.peers, trusted) else {
            return false;
        };
        let with_outputs = self.scheduler.is_wanted(build, job);
        self.effects.push_back(Effect::QueryPeer {
            build,
            job,
            peer,
            with_outputs,
        });
        true
    }

    /// Forgets a stolen job that ended here: no more renewals, its slot free again. Returns
    /// its origin.
    fn end_stolen(&mut self, id: JobId) -> Option<NodeId> {
        let stolen = self.borrowed.end(id)?;
        self.scheduler
            .set_slots_for_peers(self.borrowed.len() + self.trust.n_verifying());
        Some(stolen.origin)
    }

    /// A scheduler effect, made complete: a start lists every place its deps' outputs may
    /// be had; a build's end forgets its lookups.
    fn complete(&mut self, mut effect: BuildEffect) -> Effect {
        match &mut effect {
            BuildEffect::Start { deps, .. } => self.add_holders(deps),
            BuildEffect::BuildDone { build, .. } => self.lookups.forget_build(*build),
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
}
