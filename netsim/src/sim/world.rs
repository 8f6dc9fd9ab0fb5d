//! [`Sim`]: the event loop, and nodes' lives (joins, leaves, crashes, partitions).

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;
use std::time::Duration;
use weft_node::core::{IdMap, IdSet};

use weft_node::core::{BuildOptions, Core, CoreStats, PlannedJob, Time};
use weft_protocol::{Digest, JobId, NodeId};

use super::metrics::{Metrics, Trace};
use super::state::{
    BuildState, Ev, GossipMsg, NodeBuild, NodeSet, NodeSpec, Rpc, SimBuild, SimNode, Store,
};
use crate::queue::EventQueue;
use crate::report::Report;
use crate::rng::Rng;
use crate::scenario::{ChurnAction, GossipConfig, Network, StoreFate};
use crate::workload::{CC, Instance, JobInfo, PLATFORM};

/// Trace record kinds for what the simulator itself does.
pub(crate) mod kind {
    pub(crate) const JOIN: u8 = 100;
    pub(crate) const CRASH: u8 = 101;
    pub(crate) const LEAVE: u8 = 102;
    pub(crate) const CONNECT: u8 = 103;
    pub(crate) const DISCONNECT: u8 = 104;
    pub(crate) const SPLIT: u8 = 105;
    pub(crate) const HEAL: u8 = 106;
    pub(crate) const BUILD: u8 = 107;
    pub(crate) const RUN_DONE: u8 = 108;
    pub(crate) const RPC_FAIL: u8 = 109;
}

/// How many events ahead a gossip delivery's memory is asked for (see
/// [`Sim::prefetch_gossip`]): far enough that the loads arrive before the delivery runs,
/// near enough that they are still in cache then.
const PREFETCH_DISTANCE: usize = 8;

/// A deterministic simulation of a weft mesh: [`Sim::new`] with a seed, nodes, builds,
/// churn and partitions, then [`Sim::run_until_idle`].
///
/// Everything that happens is a function of the seed and the inputs: the virtual clock
/// only moves from event to event, there are no threads, every random draw comes from a
/// stream seeded from the seed, and every collection that is iterated is ordered.
pub struct Sim {
    pub(crate) seed: u64,
    pub(crate) name: String,
    pub(crate) now: Time,
    pub(crate) until: Time,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) network: Network,
    pub(crate) gossip: GossipConfig,
    pub(crate) rng_net: Rng,
    pub(crate) rng_gossip: Rng,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) by_id: IdMap<NodeId, u32>,
    pub(crate) jobs: IdMap<JobId, JobInfo>,
    pub(crate) builds: Vec<SimBuild>,
    pub(crate) rpcs: IdMap<u64, Rpc>,
    pub(crate) next_rpc: u64,
    pub(crate) next_token: u64,
    pub(crate) next_build_id: u64,
    pub(crate) messages: Vec<Option<GossipMsg>>,
    pub(crate) free_messages: Vec<u32>,
    /// Each node's side of the current partition, if any.
    pub(crate) sides: Option<Arc<Vec<u16>>>,
    pub(crate) n_up: usize,
    pub(crate) started: bool,
    pub(crate) metrics: Metrics,
    pub(crate) trace: Trace,
}

impl Sim {
    /// An empty simulation: no nodes yet, the default network and gossip.
    pub fn new(seed: u64) -> Sim {
        Sim {
            seed,
            name: "simulation".into(),
            now: Time::ZERO,
            until: Time::from_millis(24 * 3600 * 1000),
            queue: EventQueue::new(),
            network: Network::default(),
            gossip: GossipConfig::default(),
            rng_net: Rng::fork(seed, "network"),
            rng_gossip: Rng::fork(seed, "gossip"),
            nodes: Vec::new(),
            by_id: IdMap::default(),
            jobs: IdMap::default(),
            builds: Vec::new(),
            rpcs: IdMap::default(),
            next_rpc: 0,
            next_token: 0,
            next_build_id: 0,
            messages: Vec::new(),
            free_messages: Vec::new(),
            sides: None,
            n_up: 0,
            started: false,
            metrics: Metrics::default(),
            trace: Trace::new(seed),
        }
    }

    /// Names the run, for the report.
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    /// The links' properties.
    pub fn set_network(&mut self, network: Network) {
        self.network = network;
    }

    /// How gossip spreads.
    pub fn set_gossip(&mut self, gossip: GossipConfig) {
        self.gossip = gossip;
    }

    /// Stops the run at this simulated time, finished or not.
    pub fn set_until(&mut self, until: Time) {
        self.until = until;
    }

    /// Adds a node; returns its index.
    pub fn add_node(&mut self, spec: NodeSpec) -> usize {
        let index = self.nodes.len() as u32;
        let digest = Digest::of(format!("weft-netsim/{}/node/{index}", self.seed).as_bytes());
        let id = NodeId(*digest.as_bytes());
        self.by_id.insert(id, index);
        let n = self.nodes.len() + 1;
        for node in &mut self.nodes {
            node.conn.grow(n);
            node.conn_from.grow(n);
        }
        if let Some(at) = spec.join_at {
            self.queue.push(
                at,
                Ev::Churn {
                    node: index,
                    action: ChurnAction::Join,
                    store_kept: true,
                },
            );
        }
        let future_joins = usize::from(spec.join_at.is_some());
        self.nodes.push(SimNode {
            id,
            spec,
            core: None,
            life: 0,
            store: Store::default(),
            builds: BTreeMap::new(),
            runs: IdMap::default(),
            own_runs: IdMap::default(),
            stolen: IdMap::default(),
            finished_at: IdMap::default(),
            up_free: Time::ZERO,
            down_free: Time::ZERO,
            conn: NodeSet::with_capacity(n),
            conn_from: NodeSet::with_capacity(n),
            mesh: Vec::new(),
            timer_due: None,
            timer_gen: 0,
            pending: BTreeSet::new(),
            past_stats: CoreStats::default(),
            future_joins,
            busy_us: 0,
            executed: 0,
        });
        index as usize
    }

    /// The id of node `index`.
    pub fn node_id(&self, index: usize) -> Option<NodeId> {
        self.nodes.get(index).map(|n| n.id)
    }

    /// Adds a build of `instance` from node `origin` at `at`; returns its index.
    pub fn add_build(
        &mut self,
        origin: usize,
        at: Time,
        instance: Instance,
        estimates: bool,
        restart: bool,
    ) -> usize {
        for (id, _, info) in &instance.jobs {
            self.jobs.insert(*id, *info);
        }
        let index = self.builds.len();
        self.builds.push(SimBuild {
            origin: origin as u32,
            instance: Arc::new(instance),
            estimates,
            restart,
            state: BuildState::Pending,
            first_start: None,
            end: None,
            outcome: None,
            attempts: 0,
            left_path_us: 0,
            left_jobs: Vec::new(),
            capacity: 0.0,
            top_speed: 1.0,
        });
        self.queue.push(at, Ev::BuildStart { build: index });
        index
    }

    /// Schedules a crash, leave or join of node `node`.
    pub fn churn(&mut self, at: Time, node: usize, action: ChurnAction, store: StoreFate) {
        if action == ChurnAction::Join
            && let Some(n) = self.nodes.get_mut(node)
        {
            n.future_joins += 1;
        }
        self.queue.push(
            at,
            Ev::Churn {
                node: node as u32,
                action,
                store_kept: store == StoreFate::Kept,
            },
        );
    }

    /// Schedules a partition: `sides[i]` is node `i`'s side (missing: side 0).
    pub fn partition(&mut self, at: Time, heal: Option<Time>, sides: Vec<u16>) {
        let mut sides = sides;
        sides.resize(self.nodes.len().max(sides.len()), 0);
        self.queue.push(
            at,
            Ev::Split {
                sides: Arc::new(sides),
            },
        );
        if let Some(heal) = heal {
            self.queue.push(heal, Ev::Heal);
        }
    }

    /// Runs until every build is over (done or abandoned for good), or until the time limit.
    pub fn run_until_idle(&mut self) -> Report {
        if !self.started {
            self.start();
        }
        while !self.all_builds_over() {
            let Some(at) = self.queue.peek_time() else {
                break;
            };
            if at > self.until {
                break;
            }
            let Some((at, event)) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(at);
            self.metrics.events += 1;
            if let Some(&Ev::Gossip { node, msg }) = self.queue.peek_ahead(PREFETCH_DISTANCE) {
                self.prefetch_gossip(node, msg);
            }
            self.dispatch(event);
        }
        // Builds that can never finish now.
        for build in &mut self.builds {
            if build.state == BuildState::Interrupted {
                build.state = BuildState::Abandoned;
            }
        }
        Report::from_sim(self)
    }

    fn all_builds_over(&self) -> bool {
        self.builds
            .iter()
            .all(|b| matches!(b.state, BuildState::Done | BuildState::Abandoned))
    }

    /// Brings up every node present from the start, and connects them.
    fn start(&mut self) {
        self.started = true;
        let present: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|i| self.nodes[*i as usize].spec.join_at.is_none())
            .collect();
        for node in &present {
            self.bring_up(*node);
        }
        for (k, a) in present.iter().enumerate() {
            for b in &present[k + 1..] {
                let delay = self.network.connect.sample(&mut self.rng_net);
                self.queue.push(
                    self.now + Duration::from_micros(delay as u64),
                    Ev::Connect { a: *a, b: *b },
                );
            }
        }
    }

    fn dispatch(&mut self, event: Ev) {
        match event {
            Ev::Timer { node, generation } => self.on_timer(node, generation),
            Ev::RunDone { node, token } => self.on_run_done(node, token),
            Ev::Request { rpc } => self.on_request(rpc),
            Ev::Response { rpc } => self.on_response(rpc),
            Ev::Fail { rpc } => self.on_rpc_failed(rpc),
            Ev::Gossip { node, msg } => self.on_gossip(node, msg),
            Ev::Connect { a, b } => self.connect(a, b),
            Ev::Detect {
                observer,
                peer,
                peer_life,
            } => self.on_detect(observer, peer, peer_life),
            Ev::Churn {
                node,
                action,
                store_kept,
            } => match action {
                ChurnAction::Join => {
                    if let Some(n) = self.nodes.get_mut(node as usize) {
                        n.future_joins = n.future_joins.saturating_sub(1);
                    }
                    self.join(node);
                }
                ChurnAction::Crash | ChurnAction::Leave => {
                    self.go_down(node, action == ChurnAction::Crash, store_kept)
                }
            },
            Ev::Split { sides } => self.split(sides),
            Ev::Heal => self.heal(),
            Ev::BuildStart { build } => self.start_build(build),
        }
    }

    // ---- timers -------------------------------------------------------------------------

    /// After anything happened at a node: schedules its core's timer if it is due earlier
    /// than the one scheduled.
    pub(crate) fn reschedule(&mut self, node: u32) {
        let now = self.now;
        let n = &mut self.nodes[node as usize];
        let Some(core) = &n.core else { return };
        let due = core.next_timeout().max(now + Duration::from_micros(1));
        if n.timer_due
            .is_some_and(|scheduled| scheduled <= due && scheduled > now)
        {
            return;
        }
        n.timer_gen += 1;
        n.timer_due = Some(due);
        let generation = n.timer_gen;
        self.queue.push(due, Ev::Timer { node, generation });
    }

    fn on_timer(&mut self, node: u32, generation: u64) {
        let now = self.now;
        let n = &mut self.nodes[node as usize];
        if n.timer_gen != generation {
            return;
        }
        n.timer_due = None;
        let Some(core) = &mut n.core else { return };
        core.tick(now);
        self.metrics.ticks += 1;
        self.drain(node);
    }

    // ---- lives --------------------------------------------------------------------------

    fn bring_up(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        let tools = if n.spec.toolchain {
            BTreeSet::from([CC])
        } else {
            BTreeSet::new()
        };
        let mut core = Core::new(n.id, PLATFORM.into(), tools, n.spec.core.clone());
        core.restore_results(n.store.made.iter().copied());
        n.core = Some(core);
        n.life += 1;
        n.timer_due = None;
        n.up_free = self.now;
        n.down_free = self.now;
        self.n_up += 1;
        self.trace.record(self.now, node, kind::JOIN, 0);
        self.reschedule(node);
    }

    /// A node joins (or comes back): it connects to every node it can reach, and its
    /// interrupted builds start again.
    fn join(&mut self, node: u32) {
        if self.nodes.get(node as usize).is_none_or(|n| n.is_up()) {
            return;
        }
        self.bring_up(node);
        for other in 0..self.nodes.len() as u32 {
            if other != node && self.nodes[other as usize].is_up() && self.reachable(node, other) {
                let delay = self.network.connect.sample(&mut self.rng_net);
                self.queue.push(
                    self.now + Duration::from_micros(delay as u64),
                    Ev::Connect { a: node, b: other },
                );
            }
        }
        for index in 0..self.builds.len() {
            let build = &self.builds[index];
            if build.origin == node && build.state == BuildState::Interrupted {
                self.start_build(index);
            }
        }
    }

    /// A node crashes (silently: peers notice after `network.detect`) or leaves (peers
    /// notice at once). Its runs are lost; its store stays or goes.
    fn go_down(&mut self, node: u32, crash: bool, store_kept: bool) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return;
        };
        let Some(core) = n.core.take() else { return };
        let stats = core.stats();
        add_stats(&mut n.past_stats, &stats);
        self.n_up -= 1;
        let old_life = n.life;
        n.life += 1;
        self.metrics.lost_runs += n.runs.len() as u64;
        // Leases it held as a thief: the victims must run those jobs again.
        let orphaned: Vec<(u32, JobId)> = n
            .runs
            .values()
            .filter_map(|run| match run.kind {
                super::state::RunKind::Stolen { origin } => Some((origin, run.job)),
                super::state::RunKind::Own { .. } => None,
            })
            .collect();
        n.runs.clear();
        n.own_runs.clear();
        n.stolen.clear();
        n.finished_at.clear();
        n.builds.clear();
        n.mesh.clear();
        n.timer_due = None;
        let pending = std::mem::take(&mut n.pending);
        let peers: Vec<u32> = n.conn.iter().collect();
        n.conn.clear();
        for peer in &peers {
            self.nodes[*peer as usize].conn_from.remove(node);
        }
        let n = &mut self.nodes[node as usize];
        if !store_kept {
            n.store.clear();
        }
        let future_joins = n.future_joins;
        for rpc in pending {
            self.rpcs.remove(&rpc);
        }
        if crash {
            for (victim, job) in orphaned {
                if let Some(deadline) = self.metrics.lease_deadlines.get(&(victim, job)) {
                    self.metrics
                        .orphaned_leases
                        .insert((victim, job), *deadline);
                }
            }
        }
        self.trace
            .record(now, node, if crash { kind::CRASH } else { kind::LEAVE }, 0);
        for peer in peers {
            let delay = if crash {
                self.network.detect.sample(&mut self.rng_net)
            } else {
                self.network.latency.sample(&mut self.rng_net)
            };
            self.queue.push(
                now + Duration::from_micros(delay as u64),
                Ev::Detect {
                    observer: peer,
                    peer: node,
                    peer_life: old_life,
                },
            );
        }
        for build in &mut self.builds {
            if build.origin == node && matches!(build.state, BuildState::Running(_)) {
                build.state = if build.restart && future_joins > 0 {
                    BuildState::Interrupted
                } else {
                    BuildState::Abandoned
                };
            }
        }
    }

    /// Two nodes connect: both cores learn of each other, and each tells the other what it
    /// holds.
    pub(crate) fn connect(&mut self, a: u32, b: u32) {
        if a == b
            || !self.nodes[a as usize].is_up()
            || !self.nodes[b as usize].is_up()
            || !self.reachable(a, b)
        {
            return;
        }
        let a_has = self.nodes[a as usize].conn.contains(b);
        let b_has = self.nodes[b as usize].conn.contains(a);
        if a_has && b_has {
            return;
        }
        // A stale one-sided connection (the other side restarted) is replaced.
        if a_has {
            self.disconnect(a, b);
        }
        if b_has {
            self.disconnect(b, a);
        }
        let now = self.now;
        self.nodes[a as usize].conn.insert(b);
        self.nodes[b as usize].conn.insert(a);
        self.nodes[a as usize].conn_from.insert(b);
        self.nodes[b as usize].conn_from.insert(a);
        self.graft(a, b);
        self.trace.record(now, a, kind::CONNECT, u64::from(b));
        let mut snapshots = Vec::with_capacity(2);
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.nodes[y as usize].id;
            if let Some(core) = &mut self.nodes[x as usize].core {
                snapshots.push((x, y, core.on_peer_up(now, peer)));
            }
            self.drain(x);
        }
        // Each side tells the other what it holds once both know each other.
        for (x, y, snapshot) in snapshots {
            self.send_have_snapshot(x, y, snapshot);
        }
    }

    /// `observer` drops its connection to `peer`: its core hears `on_peer_down`, and its
    /// rpcs to the peer fail.
    pub(crate) fn disconnect(&mut self, observer: u32, peer: u32) {
        let now = self.now;
        let o = &mut self.nodes[observer as usize];
        if !o.conn.remove(peer) {
            return;
        }
        self.nodes[peer as usize].conn_from.remove(observer);
        let o = &mut self.nodes[observer as usize];
        o.mesh.retain(|p| *p != peer);
        let failing: Vec<u64> = o
            .pending
            .iter()
            .copied()
            .filter(|rpc| self.rpcs.get(rpc).is_some_and(|r| r.server == peer))
            .collect();
        self.trace
            .record(now, observer, kind::DISCONNECT, u64::from(peer));
        let peer_id = self.nodes[peer as usize].id;
        if let Some(core) = &mut self.nodes[observer as usize].core {
            core.on_peer_down(now, peer_id);
        }
        self.drain(observer);
        for rpc in failing {
            self.fail_rpc(rpc);
        }
        self.regraft(observer);
    }

    fn on_detect(&mut self, observer: u32, peer: u32, peer_life: u32) {
        if !self.nodes[observer as usize].is_up()
            || !self.nodes[observer as usize].conn.contains(peer)
        {
            return;
        }
        let p = &self.nodes[peer as usize];
        let gone = p.life != peer_life || !p.is_up() || !self.reachable(observer, peer);
        if gone {
            self.disconnect(observer, peer);
        }
    }

    /// Whether two nodes are on the same side of the current partition.
    pub(crate) fn reachable(&self, a: u32, b: u32) -> bool {
        match &self.sides {
            None => true,
            Some(sides) => sides.get(a as usize) == sides.get(b as usize),
        }
    }

    fn split(&mut self, sides: Arc<Vec<u16>>) {
        let now = self.now;
        self.sides = Some(sides);
        self.trace.record(now, 0, kind::SPLIT, 0);
        for a in 0..self.nodes.len() as u32 {
            let cut: Vec<u32> = self.nodes[a as usize]
                .conn
                .iter()
                .filter(|b| !self.reachable(a, *b))
                .collect();
            for b in cut {
                let delay = self.network.detect.sample(&mut self.rng_net);
                let peer_life = self.nodes[b as usize].life;
                self.queue.push(
                    now + Duration::from_micros(delay as u64),
                    Ev::Detect {
                        observer: a,
                        peer: b,
                        peer_life,
                    },
                );
            }
        }
    }

    fn heal(&mut self) {
        let now = self.now;
        self.sides = None;
        self.trace.record(now, 0, kind::HEAL, 0);
        let n = self.nodes.len() as u32;
        for a in 0..n {
            if !self.nodes[a as usize].is_up() {
                continue;
            }
            for b in a + 1..n {
                if !self.nodes[b as usize].is_up() {
                    continue;
                }
                let both = self.nodes[a as usize].conn.contains(b)
                    && self.nodes[b as usize].conn.contains(a);
                if !both {
                    let delay = self.network.connect.sample(&mut self.rng_net);
                    self.queue.push(
                        now + Duration::from_micros(delay as u64),
                        Ev::Connect { a, b },
                    );
                }
            }
        }
    }

    // ---- builds -------------------------------------------------------------------------

    fn start_build(&mut self, index: usize) {
        let now = self.now;
        let build = &self.builds[index];
        if matches!(
            build.state,
            BuildState::Done | BuildState::Abandoned | BuildState::Running(_)
        ) {
            return;
        }
        let origin = build.origin;
        if !self.nodes[origin as usize].is_up() {
            // It starts when its origin comes up.
            let state = if self.nodes[origin as usize].future_joins > 0 {
                BuildState::Interrupted
            } else {
                BuildState::Abandoned
            };
            self.builds[index].state = state;
            return;
        }
        let build_id = weft_node::core::BuildId(self.next_build_id);
        self.next_build_id += 1;
        let instance = self.builds[index].instance.clone();
        let estimates = self.builds[index].estimates;
        let wanted: IdSet<JobId> = instance.wanted.iter().copied().collect();
        let planned: Vec<PlannedJob> = instance
            .jobs
            .iter()
            .map(|(id, job, info)| PlannedJob {
                id: *id,
                job: job.clone(),
                estimate: if estimates {
                    Duration::from_micros(info.duration_us)
                } else {
                    Duration::ZERO
                },
                wanted: wanted.contains(id),
            })
            .collect();
        if self.builds[index].first_start.is_none() {
            let (capacity, top_speed) = self
                .nodes
                .iter()
                .filter(|n| n.is_up() && n.spec.toolchain)
                .fold((0.0, 0.0f64), |(c, s), n| {
                    (
                        c + n.spec.core.slots as f64 * n.spec.speed,
                        s.max(n.spec.speed),
                    )
                });
            let origin_spec = &self.nodes[origin as usize].spec;
            let build = &mut self.builds[index];
            build.first_start = Some(now);
            // The origin runs its own jobs whatever its toolchain.
            build.capacity = if origin_spec.toolchain {
                capacity
            } else {
                capacity + origin_spec.core.slots as f64 * origin_spec.speed
            };
            build.top_speed = top_speed.max(origin_spec.speed);
            // What is left to do: a result that exists somewhere may come from a cache.
            let mut longest: IdMap<JobId, u64> = IdMap::default();
            let (mut path, mut left) = (0, Vec::new());
            for (id, job, info) in &build.instance.jobs {
                let own = if self.metrics.completed.contains(id) {
                    0
                } else {
                    left.push(*id);
                    info.duration_us
                };
                let before = job
                    .deps
                    .iter()
                    .filter_map(|d| longest.get(d))
                    .max()
                    .copied()
                    .unwrap_or(0);
                longest.insert(*id, before + own);
                path = path.max(before + own);
            }
            build.left_path_us = path;
            build.left_jobs = left;
        }
        let build = &mut self.builds[index];
        build.attempts += 1;
        build.state = BuildState::Running(build_id);
        let n = &mut self.nodes[origin as usize];
        let slots = n.spec.core.slots;
        n.builds.insert(build_id, NodeBuild { sim_build: index });
        n.store
            .inputs
            .extend(instance.jobs.iter().map(|(id, _, _)| *id));
        self.trace.record(now, origin, kind::BUILD, build_id.0);
        let Some(core) = &mut n.core else { return };
        let options = BuildOptions {
            keep_going: false,
            max_parallel: slots,
        };
        if core.add_build(now, build_id, planned, options).is_err() {
            // Generated graphs are acyclic and closed; a refusal ends the build as failed.
            n.builds.remove(&build_id);
            let build = &mut self.builds[index];
            build.state = BuildState::Done;
            build.end = Some(now);
        }
        self.drain(origin);
    }

    /// A build's `BuildDone` reached its origin.
    pub(crate) fn build_done(
        &mut self,
        node: u32,
        build_id: weft_node::core::BuildId,
        outcome: weft_node::core::BuildOutcome,
    ) {
        let Some(state) = self.nodes[node as usize].builds.remove(&build_id) else {
            return;
        };
        let build = &mut self.builds[state.sim_build];
        if build.state == BuildState::Running(build_id) {
            build.state = BuildState::Done;
            build.end = Some(self.now);
            build.outcome = Some(outcome);
        }
    }
}

/// Adds one core's counters to another's.
pub(crate) fn add_stats(total: &mut CoreStats, more: &CoreStats) {
    total.steal_requests += more.steal_requests;
    total.steal_successes += more.steal_successes;
    total.jobs_stolen += more.jobs_stolen;
    total.jobs_given += more.jobs_given;
    total.leases_requeued += more.leases_requeued;
    total.duplicates += more.duplicates;
    total.peer_cache_hits += more.peer_cache_hits;
    total.local_cache_hits += more.local_cache_hits;
}

impl Sim {
    /// What every node with an unfinished build is doing: for failure messages.
    pub fn diagnose(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (i, build) in self.builds.iter().enumerate() {
            if matches!(build.state, BuildState::Done) {
                continue;
            }
            let node = &self.nodes[build.origin as usize];
            let _ = writeln!(
                out,
                "build {i} ({:?}) on node {}: up {}",
                build.state,
                build.origin,
                node.is_up()
            );
            let Some(core) = &node.core else { continue };
            let _ = writeln!(
                out,
                "  core: queued {}, running {}, building {}, next timeout {:?}, now {:?}",
                core.queued(),
                core.running(),
                core.is_building(),
                core.next_timeout(),
                self.now
            );
            for peer in core.peers() {
                if peer.n_leased > 0 || peer.failures > 0 || peer.avoided_until.is_some() {
                    let _ = writeln!(
                        out,
                        "  peer {}: leased {}, failures {}, avoided until {:?}",
                        self.by_id.get(&peer.node).copied().unwrap_or(u32::MAX),
                        peer.n_leased,
                        peer.failures,
                        peer.avoided_until
                    );
                }
            }
            let mut runs: Vec<_> = node.runs.values().collect();
            runs.sort_by_key(|r| r.job);
            for run in runs {
                let _ = writeln!(
                    out,
                    "  run {:?} {}: step {}/{} holder {} running {:?}",
                    run.kind,
                    run.job.short(8),
                    run.step,
                    run.steps.len(),
                    run.next_holder,
                    run.running_since
                );
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.runs.is_empty() || !node.stolen.is_empty() {
                let _ = writeln!(
                    out,
                    "node {i}: up {}, {} runs, {} stolen, conn {:?}",
                    node.is_up(),
                    node.runs.len(),
                    node.stolen.len(),
                    node.conn.iter().collect::<Vec<_>>()
                );
            }
        }
        out
    }
}
