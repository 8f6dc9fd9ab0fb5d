//! Driving the cores: each [`Effect`] carried out with the simulated links and stores in place
//! of QUIC and disks. Every decision is the core's, as in the daemon's engine; this only moves
//! (simulated) bytes and time.
//!
//! Protocol flow, as the daemon has it and as simulated here:
//!
//! - `LookupCache`: answered at once from the node's action cache (results it ran).
//! - `QueryPeer`: a `CacheQuery` rpc; for a query `with_outputs`, a hit's outputs are fetched
//!   from that peer (unless the store has them) before it counts; a failed rpc is a miss.
//! - `Start`: the outputs of the job's deps that are not in the store are fetched, one dep at
//!   a time, each from the first of the start's holders that serves it; then the job runs for
//!   its duration divided by the node's speed. A dep nobody can serve makes the run end with
//!   `on_deps_lost`.
//! - `SendSteal`: a `Steal` rpc; the victim's `on_steal_request` gives the leases, each with
//!   where its deps' outputs are; a failed rpc is `on_steal_failed`.
//! - `RunStolen`: the thief fetches the job's inputs from the origin and its deps' outputs
//!   from the lease's holders, then runs it; a missing input is an infrastructure failure
//!   (`on_stolen_finished`), deps' outputs nobody serves go to `on_stolen_deps_lost`.
//! - `SendRenew`: a `Renew` rpc, answered by `on_renew`; the answer goes to `on_renewed`.
//! - `SendDone`: a `Done` rpc; when the origin's core answers `FetchOutputs`, the origin
//!   fetches the outputs from the thief (unless its store has them) and tells
//!   `on_thief_outputs`.
//! - `Publish`: gossip (see [`super::gossip`]).
//! - On a new connection each side sends the other the `Have` rpcs its core's `on_peer_up`
//!   returned.

use weft_node::core::{
    BuildEffect, BuildId, Effect, Finished, Report, Reported, StolenOutcome, Time,
};
use weft_protocol::wire::{Lease, LeaseDep};
use weft_protocol::{Digest, JobId, NodeId};

use super::metrics::short;
use super::net::micros;
use super::state::{Ev, FetchFor, Item, Reply, RpcKind, Run, RunKind, Step};
use super::world::{Sim, kind};

/// Trace record kinds for effects.
mod effect {
    pub(super) const LOOKUP: u8 = 1;
    pub(super) const QUERY: u8 = 2;
    pub(super) const START: u8 = 3;
    pub(super) const GIVEN: u8 = 4;
    pub(super) const CANCEL: u8 = 5;
    pub(super) const SKIPPED: u8 = 6;
    pub(super) const BUILD_DONE: u8 = 7;
    pub(super) const RUN_STOLEN: u8 = 8;
    pub(super) const CANCEL_STOLEN: u8 = 9;
    pub(super) const STEAL: u8 = 10;
    pub(super) const RENEW: u8 = 11;
    pub(super) const DONE: u8 = 12;
    pub(super) const BEACON: u8 = 13;
    pub(super) const HAVE: u8 = 14;
    pub(super) const RETURNED: u8 = 15;
    pub(super) const DEPS_LOST: u8 = 16;
    pub(super) const NONDETERMINISTIC: u8 = 17;
    pub(super) const QUARANTINED: u8 = 18;
    pub(super) const VERIFY: u8 = 19;
}

impl Sim {
    fn index_of(&self, id: &NodeId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Carries out every effect `node`'s core has, then schedules its timer.
    pub(crate) fn drain(&mut self, node: u32) {
        loop {
            let Some(core) = self.nodes[node as usize].core.as_mut() else {
                return;
            };
            let Some(effect) = core.poll_effect() else {
                break;
            };
            self.record_effect(node, &effect);
            self.handle(node, effect);
        }
        self.reschedule(node);
    }

    fn record_effect(&mut self, node: u32, effect: &Effect) {
        let (tag, detail) = match effect {
            Effect::Build(BuildEffect::LookupCache { job, .. }) => (effect::LOOKUP, short(job)),
            Effect::QueryPeer { job, .. } => (effect::QUERY, short(job)),
            Effect::Build(BuildEffect::Start { id, .. }) => (effect::START, short(id)),
            Effect::GivenAway { job, .. } => (effect::GIVEN, short(job)),
            Effect::Returned { job, .. } => (effect::RETURNED, short(job)),
            Effect::Build(BuildEffect::Cancel { job, .. }) => (effect::CANCEL, short(job)),
            Effect::Build(BuildEffect::Skipped { job, .. }) => (effect::SKIPPED, short(job)),
            Effect::Build(BuildEffect::BuildDone { build, .. }) => (effect::BUILD_DONE, build.0),
            Effect::RunStolen { id, .. } => (effect::RUN_STOLEN, short(id)),
            Effect::CancelStolen { id } => (effect::CANCEL_STOLEN, short(id)),
            Effect::SendSteal { peer, .. } => (
                effect::STEAL,
                self.index_of(peer).map_or(u64::MAX, u64::from),
            ),
            Effect::SendRenew { jobs, .. } => (effect::RENEW, jobs.len() as u64),
            Effect::SendDone { id, .. } => (effect::DONE, short(id)),
            Effect::SendDepsLost { id, .. } => (effect::DEPS_LOST, short(id)),
            Effect::Publish(weft_node::core::Gossip::Beacon(b)) => {
                (effect::BEACON, u64::from(b.queue_len))
            }
            Effect::Publish(weft_node::core::Gossip::Have(jobs)) => {
                (effect::HAVE, jobs.len() as u64)
            }
            Effect::Nondeterministic { job, .. } => (effect::NONDETERMINISTIC, short(job)),
            Effect::Quarantined { job, .. } => (effect::QUARANTINED, short(job)),
            Effect::Verify { id, .. } => (effect::VERIFY, short(id)),
        };
        self.trace.record(self.now, node, tag, detail);
    }

    fn handle(&mut self, node: u32, effect: Effect) {
        let now = self.now;
        match effect {
            Effect::Build(BuildEffect::LookupCache { build, job }) => {
                let n = &mut self.nodes[node as usize];
                let hit = n.store.results.contains(&job).then_some(tree_of(job));
                if let Some(core) = &mut n.core {
                    core.on_local_cache(now, build, job, hit);
                }
            }
            Effect::QueryPeer {
                build,
                job,
                peer,
                with_outputs,
            } => match self.index_of(&peer) {
                Some(server) => {
                    let query = RpcKind::Query {
                        build,
                        job,
                        with_outputs,
                    };
                    self.send_rpc(node, server, query);
                }
                None => {
                    if let Some(core) = &mut self.nodes[node as usize].core {
                        core.on_peer_cache(now, build, job, peer, None);
                    }
                }
            },
            Effect::Build(BuildEffect::Start {
                build, id, deps, ..
            }) => self.start_own(node, build, id, &deps),
            Effect::GivenAway { .. }
            | Effect::Returned { .. }
            | Effect::Build(BuildEffect::Skipped { .. }) => {}
            // Simulated results never differ.
            Effect::Nondeterministic { .. } => {}
            Effect::Quarantined { .. } => self.metrics.quarantined += 1,
            // Scenarios do not check peers' results (`verify_per_million` stays 0); one that
            // did would learn nothing from a simulated result, which never differs.
            Effect::Verify { id, .. } => {
                if let Some(core) = &mut self.nodes[node as usize].core {
                    core.on_verified(now, id, None);
                }
            }
            Effect::Build(BuildEffect::Cancel { build, job }) => {
                let n = &mut self.nodes[node as usize];
                if let Some(token) = n.own_runs.remove(&(build, job)) {
                    if let Some(run) = n.runs.remove(&token) {
                        count_busy(n, &run, now);
                    }
                    self.metrics.cancelled_runs += 1;
                }
                if let Some(core) = &mut self.nodes[node as usize].core {
                    core.on_job_finished(now, build, job, Finished::Cancelled);
                }
            }
            Effect::Build(BuildEffect::BuildDone { build, outcome }) => {
                self.build_done(node, build, outcome)
            }
            Effect::RunStolen {
                origin, id, deps, ..
            } => {
                let origin = self.index_of(&origin).unwrap_or(node);
                self.start_stolen(node, origin, id, &deps);
            }
            Effect::CancelStolen { id } => {
                let n = &mut self.nodes[node as usize];
                if let Some(token) = n.stolen.remove(&id) {
                    if let Some(run) = n.runs.remove(&token) {
                        count_busy(n, &run, now);
                        self.metrics.cancelled_runs += 1;
                    }
                    if let Some(core) = &mut self.nodes[node as usize].core {
                        core.on_stolen_finished(now, id, StolenOutcome::Cancelled);
                    }
                }
            }
            Effect::SendSteal { peer, request } => match self.index_of(&peer) {
                Some(server) => {
                    self.send_rpc(node, server, RpcKind::Steal { request });
                }
                None => {
                    if let Some(core) = &mut self.nodes[node as usize].core {
                        core.on_steal_failed(now, peer);
                    }
                }
            },
            Effect::SendRenew { origin, jobs } => {
                if let Some(server) = self.index_of(&origin) {
                    self.send_rpc(node, server, RpcKind::Renew { jobs });
                }
            }
            Effect::SendDone {
                origin,
                id,
                outcome,
            } => {
                if let Some(server) = self.index_of(&origin) {
                    self.send_rpc(node, server, RpcKind::Done { job: id, outcome });
                }
            }
            Effect::SendDepsLost { origin, id, lost } => {
                if let Some(server) = self.index_of(&origin) {
                    self.send_rpc(node, server, RpcKind::DepsLost { job: id, lost });
                }
            }
            Effect::Publish(gossip) => self.publish(node, gossip),
        }
    }

    // ---- runs ---------------------------------------------------------------------------

    fn new_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The fetches that bring `deps`' outputs here, each from its holders in order.
    fn dep_steps(&self, deps: &[LeaseDep]) -> Vec<Step> {
        deps.iter()
            .map(|dep| Step {
                item: Item::Output(dep.job),
                bytes: self.jobs.get(&dep.job).map_or(0, |i| i.output_bytes),
                holders: dep
                    .holders
                    .iter()
                    .filter_map(|h| self.index_of(h))
                    .collect(),
            })
            .collect()
    }

    fn start_own(&mut self, node: u32, build: BuildId, job: JobId, deps: &[LeaseDep]) {
        // A victim running a job itself is a re-run too.
        self.note_rerun(node, job);
        let steps = self.dep_steps(deps);
        let token = self.new_token();
        let n = &mut self.nodes[node as usize];
        n.own_runs.insert((build, job), token);
        n.runs
            .insert(token, Run::new(RunKind::Own { build }, job, steps));
        self.advance_run(node, token);
    }

    fn start_stolen(&mut self, node: u32, origin: u32, id: JobId, deps: &[LeaseDep]) {
        let input_bytes = self.jobs.get(&id).map_or(0, |i| i.input_bytes);
        let mut steps = vec![Step {
            item: Item::Input(id),
            bytes: input_bytes,
            holders: vec![origin],
        }];
        steps.extend(self.dep_steps(deps));
        let token = self.new_token();
        let n = &mut self.nodes[node as usize];
        n.stolen.insert(id, token);
        n.runs
            .insert(token, Run::new(RunKind::Stolen { origin }, id, steps));
        self.advance_run(node, token);
    }

    /// Moves a run's preparation on: fetches the next missing item from its next holder, or
    /// starts the run, or ends it when something cannot be had.
    fn advance_run(&mut self, node: u32, token: u64) {
        let now = self.now;
        loop {
            let n = &mut self.nodes[node as usize];
            let Some(run) = n.runs.get_mut(&token) else {
                return;
            };
            if run.step >= run.steps.len() {
                break;
            }
            let step = &run.steps[run.step];
            let present = match step.item {
                Item::Output(job) => n.store.trees.contains(&job),
                Item::Input(job) => n.store.inputs.contains(&job),
            };
            if present || step.bytes == 0 && matches!(step.item, Item::Input(_)) {
                run.step += 1;
                run.next_holder = 0;
                continue;
            }
            let mut target = None;
            while run.next_holder < step.holders.len() {
                let holder = step.holders[run.next_holder];
                run.next_holder += 1;
                if holder != node && n.conn.contains(holder) {
                    target = Some(holder);
                    break;
                }
            }
            match target {
                Some(holder) => {
                    let (item, bytes) = (step.item, step.bytes);
                    self.send_rpc(
                        node,
                        holder,
                        RpcKind::Fetch {
                            item,
                            bytes,
                            why: FetchFor::Run { token },
                        },
                    );
                    return;
                }
                None => match step.item {
                    // Nobody can serve it: a dep's outputs are lost (more may be), ...
                    Item::Output(dep) => {
                        run.lost.push(dep);
                        run.step += 1;
                        run.next_holder = 0;
                    }
                    // ... while a stolen job whose own inputs cannot be had stops there, as
                    // the daemon's does: the thief could not run it.
                    Item::Input(_) => {
                        let job = run.job;
                        n.runs.remove(&token);
                        n.stolen.remove(&job);
                        self.metrics.stolen_infra_failures += 1;
                        if let Some(core) = &mut self.nodes[node as usize].core {
                            core.on_stolen_finished(now, job, StolenOutcome::Infrastructure);
                        }
                        self.drain(node);
                        return;
                    }
                },
            }
        }
        // Prepared.
        let n = &mut self.nodes[node as usize];
        let Some(run) = n.runs.get_mut(&token) else {
            return;
        };
        let (kind, job) = (run.kind, run.job);
        if !run.lost.is_empty() {
            let lost = std::mem::take(&mut run.lost);
            n.runs.remove(&token);
            match kind {
                RunKind::Own { build } => {
                    n.own_runs.remove(&(build, job));
                    self.metrics.deps_lost += 1;
                    if let Some(core) = &mut self.nodes[node as usize].core {
                        core.on_deps_lost(now, build, job, &lost);
                    }
                }
                RunKind::Stolen { .. } => {
                    n.stolen.remove(&job);
                    self.metrics.stolen_infra_failures += 1;
                    if let Some(core) = &mut self.nodes[node as usize].core {
                        core.on_stolen_deps_lost(now, job, lost);
                    }
                }
            }
            self.drain(node);
            return;
        }
        run.running_since = Some(now);
        let duration = self.jobs.get(&job).map_or(0, |i| i.duration_us) as f64 / n.spec.speed;
        self.queue
            .push(now + micros(duration), Ev::RunDone { node, token });
    }

    /// A run finished running: the result is stored, and the core hears of it.
    pub(crate) fn on_run_done(&mut self, node: u32, token: u64) {
        let now = self.now;
        let n = &mut self.nodes[node as usize];
        let Some(run) = n.runs.remove(&token) else {
            return;
        };
        count_busy(n, &run, now);
        let job = run.job;
        n.store.results.insert(job);
        n.store.trees.insert(job);
        n.store.made.push(job);
        n.finished_at.insert(job, now);
        n.executed += 1;
        self.metrics.executed += 1;
        if !self.metrics.completed.insert(job) {
            self.metrics.duplicated += 1;
        }
        self.trace.record(now, node, kind::RUN_DONE, short(&job));
        match run.kind {
            RunKind::Own { build } => {
                n.own_runs.remove(&(build, job));
                let outcome = Finished::Succeeded(tree_of(job));
                if let Some(core) = &mut n.core {
                    core.on_job_finished(now, build, job, outcome);
                }
            }
            RunKind::Stolen { .. } => {
                if n.stolen.remove(&job).is_some()
                    && let Some(core) = &mut n.core
                {
                    core.on_stolen_finished(now, job, StolenOutcome::Succeeded);
                }
            }
        }
        self.drain(node);
    }

    // ---- rpcs, server side --------------------------------------------------------------

    /// `server` answers `client`'s request.
    pub(crate) fn serve(&mut self, server: u32, client: u32, kind: RpcKind) -> (RpcKind, Reply) {
        let now = self.now;
        let client_id = self.nodes[client as usize].id;
        let reply = match &kind {
            RpcKind::Steal { request } => {
                let Some(core) = self.nodes[server as usize].core.as_mut() else {
                    return (kind, Reply::Granted(Vec::new()));
                };
                let leases = core.on_steal_request(now, client_id, request);
                let ttl = core.config().lease_ttl;
                for lease in &leases {
                    let id = lease.job.id();
                    self.metrics.lease_deadlines.insert((server, id), now + ttl);
                    self.note_rerun(server, id);
                }
                self.drain(server);
                Reply::Granted(leases)
            }
            RpcKind::Renew { jobs } => {
                let Some(core) = self.nodes[server as usize].core.as_mut() else {
                    let lost = jobs.clone();
                    return (kind, Reply::Renewed(lost));
                };
                let lost = core.on_renew(now, client_id, jobs);
                let ttl = core.config().lease_ttl;
                for job in jobs {
                    if !lost.contains(job) {
                        self.metrics
                            .lease_deadlines
                            .insert((server, *job), now + ttl);
                    }
                }
                self.drain(server);
                Reply::Renewed(lost)
            }
            RpcKind::Done { job, outcome } => {
                self.on_thief_report(server, client, *job, *outcome);
                Reply::Ack
            }
            RpcKind::DepsLost { job, lost } => {
                if let Some(core) = self.nodes[server as usize].core.as_mut() {
                    core.on_thief_deps_lost(now, client_id, *job, lost);
                }
                self.drain(server);
                Reply::Ack
            }
            RpcKind::Query { job, .. } => Reply::Answer {
                hit: self.nodes[server as usize].store.results.contains(job),
            },
            RpcKind::Fetch { item, .. } => {
                let store = &self.nodes[server as usize].store;
                Reply::Data {
                    ok: match item {
                        Item::Output(job) => store.trees.contains(job),
                        Item::Input(job) => store.inputs.contains(job),
                    },
                }
            }
            RpcKind::Have { jobs } => {
                if let Some(core) = self.nodes[server as usize].core.as_mut() {
                    core.on_have(now, client_id, jobs);
                }
                self.drain(server);
                Reply::Ack
            }
        };
        (kind, reply)
    }

    /// A thief's report reached its victim (the daemon's `on_request` for `Done` and
    /// `JobFailed`).
    fn on_thief_report(&mut self, origin: u32, thief: u32, job: JobId, outcome: Reported) {
        let now = self.now;
        let thief_id = self.nodes[thief as usize].id;
        let n = &mut self.nodes[origin as usize];
        let Some(core) = &mut n.core else { return };
        match outcome {
            Reported::Succeeded => {
                if core.on_thief_done(now, thief_id, job, tree_of(job)) == Report::FetchOutputs {
                    if n.store.trees.contains(&job) {
                        core.on_thief_outputs(now, thief_id, job, tree_of(job), true);
                    } else {
                        let ttl = core.config().lease_ttl;
                        self.metrics
                            .lease_deadlines
                            .insert((origin, job), now + ttl);
                        let bytes = self.jobs.get(&job).map_or(0, |i| i.output_bytes);
                        self.send_rpc(
                            origin,
                            thief,
                            RpcKind::Fetch {
                                item: Item::Output(job),
                                bytes,
                                why: FetchFor::Report { thief, job },
                            },
                        );
                        return;
                    }
                }
            }
            Reported::Failed | Reported::Infrastructure | Reported::Refused => {
                let infrastructure = outcome != Reported::Failed;
                core.on_thief_failed(now, thief_id, job, infrastructure);
            }
        }
        self.drain(origin);
    }

    // ---- rpcs, client side --------------------------------------------------------------

    /// An rpc's reply reached `client`.
    pub(crate) fn on_reply(&mut self, client: u32, server: u32, kind: RpcKind, reply: Reply) {
        let now = self.now;
        let server_id = self.nodes[server as usize].id;
        match (kind, reply) {
            (RpcKind::Steal { .. }, Reply::Granted(leases)) => {
                self.granted(client, server, leases);
            }
            (RpcKind::Renew { .. }, Reply::Renewed(lost)) => {
                if let Some(core) = self.nodes[client as usize].core.as_mut() {
                    core.on_renewed(now, &lost);
                }
                self.drain(client);
            }
            (
                RpcKind::Query {
                    build,
                    job,
                    with_outputs,
                },
                Reply::Answer { hit },
            ) => {
                let n = &mut self.nodes[client as usize];
                if hit && with_outputs && !n.store.trees.contains(&job) {
                    let bytes = self.jobs.get(&job).map_or(0, |i| i.output_bytes);
                    self.send_rpc(
                        client,
                        server,
                        RpcKind::Fetch {
                            item: Item::Output(job),
                            bytes,
                            why: FetchFor::CacheHit {
                                build,
                                job,
                                peer: server,
                            },
                        },
                    );
                    return;
                }
                if let Some(core) = n.core.as_mut() {
                    let hit = hit.then_some(tree_of(job));
                    core.on_peer_cache(now, build, job, server_id, hit);
                }
                self.drain(client);
            }
            (RpcKind::Fetch { item, why, .. }, Reply::Data { ok }) => {
                if ok {
                    let store = &mut self.nodes[client as usize].store;
                    match item {
                        Item::Output(job) => store.trees.insert(job),
                        Item::Input(job) => store.inputs.insert(job),
                    };
                }
                self.fetched(client, why, ok);
            }
            _ => {}
        }
    }

    /// An rpc of `client`'s failed.
    pub(crate) fn on_failure(&mut self, client: u32, server: u32, kind: RpcKind) {
        let now = self.now;
        let server_id = self.nodes[server as usize].id;
        match kind {
            RpcKind::Steal { .. } => {
                if let Some(core) = self.nodes[client as usize].core.as_mut() {
                    core.on_steal_failed(now, server_id);
                }
                self.drain(client);
            }
            RpcKind::Query { build, job, .. } => {
                if let Some(core) = self.nodes[client as usize].core.as_mut() {
                    core.on_peer_cache(now, build, job, server_id, None);
                }
                self.drain(client);
            }
            RpcKind::Fetch { why, .. } => self.fetched(client, why, false),
            RpcKind::Renew { .. }
            | RpcKind::Done { .. }
            | RpcKind::DepsLost { .. }
            | RpcKind::Have { .. } => {}
        }
    }

    /// The victim granted leases (perhaps none).
    fn granted(&mut self, thief: u32, victim: u32, leases: Vec<Lease>) {
        let now = self.now;
        let victim_id = self.nodes[victim as usize].id;
        let n = &mut self.nodes[thief as usize];
        if let Some(core) = n.core.as_mut() {
            core.on_granted(now, victim_id, leases);
        }
        self.drain(thief);
    }

    /// A fetch ended, well or not.
    fn fetched(&mut self, client: u32, why: FetchFor, ok: bool) {
        let now = self.now;
        match why {
            FetchFor::Run { token } => self.advance_run(client, token),
            FetchFor::Report { thief, job } => {
                let thief_id = self.nodes[thief as usize].id;
                if let Some(core) = self.nodes[client as usize].core.as_mut() {
                    core.on_thief_outputs(now, thief_id, job, tree_of(job), ok);
                }
                self.drain(client);
            }
            FetchFor::CacheHit { build, job, peer } => {
                let peer_id = self.nodes[peer as usize].id;
                if let Some(core) = self.nodes[client as usize].core.as_mut() {
                    core.on_peer_cache(now, build, job, peer_id, ok.then_some(tree_of(job)));
                }
                self.drain(client);
            }
        }
    }

    /// Tells a newly connected peer what this node holds: one `Have` rpc per message its
    /// core's `on_peer_up` gave.
    pub(crate) fn send_have_snapshot(&mut self, from: u32, to: u32, snapshot: Vec<Vec<JobId>>) {
        for jobs in snapshot {
            self.send_rpc(from, to, RpcKind::Have { jobs });
        }
    }

    /// A victim gave out `job` again: if a crashed thief's lease on it was orphaned, record
    /// how late after its deadline that was.
    fn note_rerun(&mut self, victim: u32, job: JobId) {
        if let Some(deadline) = self.metrics.orphaned_leases.remove(&(victim, job)) {
            self.metrics.orphans_rerun += 1;
            let lateness = self.now.as_micros() as i64 - deadline.as_micros() as i64;
            let worst = self.metrics.orphan_worst_lateness.get_or_insert(lateness);
            *worst = (*worst).max(lateness);
        }
    }
}

/// A result's output tree in the simulation: the job's id stands for it.
fn tree_of(job: JobId) -> Digest {
    job.0
}

fn count_busy(n: &mut super::state::SimNode, run: &Run, now: Time) {
    if let Some(since) = run.running_since {
        n.busy_us += now.since(since).as_micros();
    }
}
