//! Driving the cores: each [`Effect`] carried out the way the daemon's engine carries it out
//! (`node/src/daemon/engine/{task,peers,work}.rs`), with the simulated links and stores in
//! place of QUIC and disks.
//!
//! Protocol flow, as the daemon has it and as simulated here:
//!
//! - `LookupCache`: answered at once from the node's action cache (results it ran).
//! - `QueryPeer`: a `CacheQuery` rpc; a hit on a job whose outputs the build wants is fetched
//!   before it counts; a failed rpc is a miss.
//! - `Start`: the outputs of the job's deps that are not in the store are fetched, one dep at
//!   a time, each from the first holder that serves it (the node that made it, then those
//!   that announced it); then the job runs for its duration divided by the node's speed. A
//!   dep nobody can serve makes the run end with `on_deps_lost`.
//! - `SendSteal`: a `Steal` rpc; the victim's `on_steal_request` picks the leases and the
//!   engine adds where each dep's outputs are; a failed rpc is `on_steal_failed`.
//! - `RunStolen`: the thief fetches the job's inputs from the origin and its deps' outputs
//!   from their holders, then runs it; a missing input or dep is an infrastructure failure.
//! - `SendRenew`: a `Renew` rpc, answered by `on_renew`; the answer goes to `on_renewed`.
//! - `SendDone`: a `Done` rpc; for a job whose outputs the origin wants, the origin keeps the
//!   lease alive, fetches the outputs from the thief, and only then reports the success to
//!   its core (or an infrastructure failure when the fetch fails).
//! - `Publish`: gossip (see [`super::gossip`]).
//! - On a new connection each side sends the other a `Have` rpc with its recent results.

use weft_node::core::{BuildId, Effect, JobOutcome, StolenOutcome, Time};
use weft_protocol::wire::{Lease, LeaseDep};
use weft_protocol::{Digest, JobId, NodeId};

use super::metrics::short;
use super::net::micros;
use super::state::{
    Ev, FetchFor, Item, RECENT_RESULTS, Reply, RpcKind, Run, RunKind, Step, StolenJob,
};
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
            Effect::LookupCache { job, .. } => (effect::LOOKUP, short(job)),
            Effect::QueryPeer { job, .. } => (effect::QUERY, short(job)),
            Effect::Start { job, .. } => (effect::START, short(job)),
            Effect::GivenAway { job, .. } => (effect::GIVEN, short(job)),
            Effect::Returned { job, .. } => (effect::RETURNED, short(job)),
            Effect::Cancel { job, .. } => (effect::CANCEL, short(job)),
            Effect::Skipped { job, .. } => (effect::SKIPPED, short(job)),
            Effect::BuildDone { build, .. } => (effect::BUILD_DONE, build.0),
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
        };
        self.trace.record(self.now, node, tag, detail);
    }

    fn handle(&mut self, node: u32, effect: Effect) {
        let now = self.now;
        match effect {
            Effect::LookupCache { build, job } => {
                let n = &mut self.nodes[node as usize];
                let hit = n.store.results.contains(&job);
                if hit {
                    set_maker(n, build, job, node);
                }
                if let Some(core) = &mut n.core {
                    core.on_local_cache(now, build, job, hit);
                }
            }
            Effect::QueryPeer { build, job, peer } => match self.index_of(&peer) {
                Some(server) => {
                    self.send_rpc(node, server, RpcKind::Query { build, job });
                }
                None => {
                    if let Some(core) = &mut self.nodes[node as usize].core {
                        core.on_peer_cache(now, build, job, peer, false);
                    }
                }
            },
            Effect::Start { build, job } => self.start_own(node, build, job),
            Effect::GivenAway { .. } | Effect::Returned { .. } | Effect::Skipped { .. } => {}
            Effect::Cancel { build, job } => {
                let n = &mut self.nodes[node as usize];
                if let Some(token) = n.own_runs.remove(&(build, job)) {
                    if let Some(run) = n.runs.remove(&token) {
                        count_busy(n, &run, now);
                    }
                    self.metrics.cancelled_runs += 1;
                }
                if let Some(core) = &mut self.nodes[node as usize].core {
                    core.on_job_finished(now, build, job, JobOutcome::Cancelled);
                }
            }
            Effect::BuildDone { build, outcome } => self.build_done(node, build, outcome),
            Effect::RunStolen { origin, id, .. } => {
                let origin = self.index_of(&origin).unwrap_or(node);
                self.start_stolen(node, origin, id);
            }
            Effect::CancelStolen { id } => {
                let n = &mut self.nodes[node as usize];
                if let Some(stolen) = n.stolen.remove(&id) {
                    if let Some(token) = stolen.token
                        && let Some(run) = n.runs.remove(&token)
                    {
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

    /// Who may hold a dep's outputs, best first (the daemon's `holders_of`): the node that
    /// made it, those that announced it, and `node` itself.
    fn holders_of(&self, node: u32, dep: &JobId) -> Vec<u32> {
        let n = &self.nodes[node as usize];
        let mut holders = Vec::new();
        let maker = n
            .builds
            .values()
            .find_map(|b| b.makers.get(dep).copied().flatten());
        if let Some(maker) = maker {
            holders.push(maker);
        }
        if let Some(core) = &n.core {
            for peer in core.holders(dep) {
                if let Some(p) = self.index_of(peer)
                    && !holders.contains(&p)
                {
                    holders.push(p);
                }
            }
        }
        if !holders.contains(&node) {
            holders.push(node);
        }
        holders
    }

    fn new_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn start_own(&mut self, node: u32, build: BuildId, job: JobId) {
        // A victim running a job itself is a re-run too.
        self.note_rerun(node, job);
        let Some(spec) = self.nodes[node as usize]
            .core
            .as_ref()
            .and_then(|c| c.job(build, job))
            .cloned()
        else {
            return;
        };
        let mut steps = Vec::new();
        for dep in &spec.deps {
            // Only deps whose result is known (the daemon skips the others).
            let known = self.nodes[node as usize]
                .builds
                .get(&build)
                .is_some_and(|b| b.makers.contains_key(dep));
            if !known {
                continue;
            }
            let bytes = self.jobs.get(dep).map_or(0, |i| i.output_bytes);
            steps.push(Step {
                item: Item::Output(*dep),
                bytes,
                holders: self.holders_of(node, dep),
            });
        }
        let token = self.new_token();
        let n = &mut self.nodes[node as usize];
        n.own_runs.insert((build, job), token);
        n.runs
            .insert(token, Run::new(RunKind::Own { build }, job, steps));
        self.advance_run(node, token);
    }

    fn start_stolen(&mut self, node: u32, origin: u32, id: JobId) {
        let input_bytes = self.jobs.get(&id).map_or(0, |i| i.input_bytes);
        let mut steps = vec![Step {
            item: Item::Input(id),
            bytes: input_bytes,
            holders: vec![origin],
        }];
        let token = self.new_token();
        let n = &mut self.nodes[node as usize];
        let stolen = n.stolen.entry(id).or_default();
        stolen.token = Some(token);
        for (dep, holders) in &stolen.deps {
            steps.push(Step {
                item: Item::Output(*dep),
                bytes: 0,
                holders: holders.clone(),
            });
        }
        for step in &mut steps[1..] {
            if let Item::Output(dep) = step.item {
                step.bytes = self.jobs.get(&dep).map_or(0, |i| i.output_bytes);
            }
        }
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
                None => {
                    // Nobody can serve it.
                    let missing = match step.item {
                        Item::Output(job) | Item::Input(job) => job,
                    };
                    run.lost.push(missing);
                    run.step += 1;
                    run.next_holder = 0;
                }
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
        n.store.recent.push_back(job);
        if n.store.recent.len() > RECENT_RESULTS {
            n.store.recent.pop_front();
        }
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
                set_maker(n, build, job, node);
                if let Some(core) = &mut n.core {
                    core.on_job_finished(now, build, job, JobOutcome::Succeeded);
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
                let mut leases = core.on_steal_request(now, client_id, request);
                let ttl = core.config().lease_ttl;
                for lease in &mut leases {
                    let id = lease.job.id();
                    self.metrics.lease_deadlines.insert((server, id), now + ttl);
                    self.note_rerun(server, id);
                    for dep in lease.job.deps.clone() {
                        let known = self.nodes[server as usize]
                            .builds
                            .values()
                            .any(|b| b.makers.get(&dep).copied().flatten().is_some());
                        if !known {
                            continue;
                        }
                        let holders: Vec<NodeId> = self
                            .holders_of(server, &dep)
                            .into_iter()
                            .map(|i| self.nodes[i as usize].id)
                            .collect();
                        lease.deps.push(LeaseDep {
                            job: dep,
                            tree: Digest::from_bytes(*dep.0.as_bytes()),
                            holders,
                        });
                    }
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
                    core.on_deps_lost_report(now, client_id, *job, lost);
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
    fn on_thief_report(&mut self, origin: u32, thief: u32, job: JobId, outcome: StolenOutcome) {
        let now = self.now;
        let thief_id = self.nodes[thief as usize].id;
        let n = &mut self.nodes[origin as usize];
        match outcome {
            StolenOutcome::Succeeded => {
                let wanted = n.builds.values().any(|b| b.wanted.contains(&job));
                if wanted && !n.store.trees.contains(&job) {
                    // Fetch the outputs first, and keep the lease alive meanwhile.
                    if let Some(core) = &mut n.core {
                        core.on_renew(now, thief_id, &[job]);
                        let ttl = core.config().lease_ttl;
                        self.metrics
                            .lease_deadlines
                            .insert((origin, job), now + ttl);
                    }
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
                self.accept_thief_result(origin, thief, job);
            }
            StolenOutcome::Failed | StolenOutcome::Infrastructure => {
                if let Some(core) = &mut n.core {
                    core.on_stolen_report(now, thief_id, job, outcome);
                }
                self.drain(origin);
            }
            StolenOutcome::Cancelled => {}
        }
    }

    fn accept_thief_result(&mut self, origin: u32, thief: u32, job: JobId) {
        let now = self.now;
        let thief_id = self.nodes[thief as usize].id;
        let n = &mut self.nodes[origin as usize];
        for build in n.builds.values_mut() {
            if let Some(maker) = build.makers.get_mut(&job) {
                *maker = Some(thief);
            }
        }
        if let Some(core) = &mut n.core {
            core.on_stolen_report(now, thief_id, job, StolenOutcome::Succeeded);
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
            (RpcKind::Query { build, job }, Reply::Answer { hit }) => {
                let n = &mut self.nodes[client as usize];
                let wanted = n
                    .builds
                    .get(&build)
                    .is_some_and(|b| b.wanted.contains(&job));
                if hit && wanted && !n.store.trees.contains(&job) {
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
                if hit {
                    set_maker(n, build, job, server);
                }
                if let Some(core) = n.core.as_mut() {
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
            RpcKind::Query { build, job } => {
                if let Some(core) = self.nodes[client as usize].core.as_mut() {
                    core.on_peer_cache(now, build, job, server_id, false);
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
        for lease in &leases {
            let deps = lease
                .deps
                .iter()
                .map(|d| {
                    let holders = d
                        .holders
                        .iter()
                        .filter_map(|h| self.by_id.get(h).copied())
                        .collect();
                    (d.job, holders)
                })
                .collect();
            n.stolen
                .insert(lease.job.id(), StolenJob { deps, token: None });
        }
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
                if ok {
                    self.accept_thief_result(client, thief, job);
                } else {
                    let thief_id = self.nodes[thief as usize].id;
                    if let Some(core) = self.nodes[client as usize].core.as_mut() {
                        core.on_stolen_report(now, thief_id, job, StolenOutcome::Infrastructure);
                    }
                    self.drain(client);
                }
            }
            FetchFor::CacheHit { build, job, peer } => {
                let peer_id = self.nodes[peer as usize].id;
                let n = &mut self.nodes[client as usize];
                if ok {
                    set_maker(n, build, job, peer);
                }
                if let Some(core) = n.core.as_mut() {
                    core.on_peer_cache(now, build, job, peer_id, ok);
                }
                self.drain(client);
            }
        }
    }

    /// Tells a newly connected peer what this node holds (its recent results, newest first,
    /// in chunks of 8192).
    pub(crate) fn send_have_snapshot(&mut self, from: u32, to: u32) {
        let recent: Vec<JobId> = self.nodes[from as usize]
            .store
            .recent
            .iter()
            .rev()
            .copied()
            .collect();
        for chunk in recent.chunks(8192) {
            self.send_rpc(
                from,
                to,
                RpcKind::Have {
                    jobs: chunk.to_vec(),
                },
            );
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

fn set_maker(n: &mut super::state::SimNode, build: BuildId, job: JobId, maker: u32) {
    if let Some(b) = n.builds.get_mut(&build)
        && let Some(m) = b.makers.get_mut(&job)
    {
        *m = Some(maker);
    }
}

fn count_busy(n: &mut super::state::SimNode, run: &Run, now: Time) {
    if let Some(since) = run.running_since {
        n.busy_us += now.since(since).as_micros();
    }
}
