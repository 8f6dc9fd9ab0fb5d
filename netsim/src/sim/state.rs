//! The simulator's state: nodes with their store and engine-side bookkeeping, runs, rpcs in
//! flight, builds and events. Plain data; the behaviour is in the sibling modules.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;
use weft_node::core::{IdMap, IdSet};

use weft_node::core::{BuildId, BuildOutcome, Core, CoreConfig, CoreStats, Gossip, Reported, Time};
use weft_protocol::wire::{Lease, SharePolicy, StealRequest};
use weft_protocol::{JobId, NodeId};

use crate::units::{Dist, Time as TimeUnit};
use crate::workload::Instance;

/// A node's fixed properties.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The group it belongs to, for reports.
    pub group: String,
    /// Its core's configuration (slots included).
    pub core: CoreConfig,
    /// Relative CPU speed.
    pub speed: f64,
    /// Whether it has the workload's toolchain.
    pub toolchain: bool,
    /// Its link's bandwidth, each direction, in bytes per second.
    pub bandwidth: f64,
    /// Latency added to every message to or from it.
    pub extra_latency: Option<Dist<TimeUnit>>,
    /// Loss on its link.
    pub loss: f64,
    /// When it first joins; `None`: at the start.
    pub join_at: Option<Time>,
}

impl NodeSpec {
    /// A node with `slots` slots, sharing always, speed 1, the toolchain, and a 1 Gbit/s link.
    pub fn new(slots: usize) -> NodeSpec {
        let mut core = CoreConfig::new(slots);
        core.share = SharePolicy::Always;
        NodeSpec {
            group: "nodes".into(),
            core,
            speed: 1.0,
            toolchain: true,
            bandwidth: 125e6,
            extra_latency: None,
            loss: 0.0,
            join_at: None,
        }
    }
}

/// A fixed-size set of node indices.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeSet {
    words: Vec<u64>,
}

impl NodeSet {
    pub(crate) fn with_capacity(n: usize) -> NodeSet {
        NodeSet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    pub(crate) fn grow(&mut self, n: usize) {
        let words = n.div_ceil(64);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    pub(crate) fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, i: u32) -> bool {
        self.grow(i as usize + 1);
        let word = &mut self.words[i as usize / 64];
        let bit = 1 << (i % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    pub(crate) fn remove(&mut self, i: u32) -> bool {
        let Some(word) = self.words.get_mut(i as usize / 64) else {
            return false;
        };
        let bit = 1 << (i % 64);
        let had = *word & bit != 0;
        *word &= !bit;
        had
    }

    pub(crate) fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// The members, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, word)| {
            let mut w = *word;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }
}

/// What a node's store holds.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Action-cache entries: results of jobs run here.
    pub(crate) results: IdSet<JobId>,
    /// Output trees: of jobs run here, and fetched ones.
    pub(crate) trees: IdSet<JobId>,
    /// Jobs whose own inputs (sources) are here.
    pub(crate) inputs: IdSet<JobId>,
    /// Results made here, in the order they were made (what a restarted core is told its
    /// store holds).
    pub(crate) made: Vec<JobId>,
}

impl Store {
    pub(crate) fn clear(&mut self) {
        *self = Store::default();
    }
}

/// A build as its origin's engine sees it.
#[derive(Debug)]
pub(crate) struct NodeBuild {
    /// The simulator's build.
    pub(crate) sim_build: usize,
}

/// Something a run fetches before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A job's output tree.
    Output(JobId),
    /// A job's own inputs.
    Input(JobId),
}

/// One fetch of a run's preparation: an item, its size, and who may have it, best first.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) item: Item,
    pub(crate) bytes: u64,
    pub(crate) holders: Vec<u32>,
}

/// Whose job a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    /// One of this node's builds' jobs.
    Own { build: BuildId },
    /// A job stolen from `origin`.
    Stolen { origin: u32 },
}

/// A job being prepared (its deps fetched) or running on a node.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) kind: RunKind,
    pub(crate) job: JobId,
    pub(crate) steps: Vec<Step>,
    pub(crate) step: usize,
    pub(crate) next_holder: usize,
    /// Deps nobody could serve.
    pub(crate) lost: Vec<JobId>,
    /// When it started running (after its preparation).
    pub(crate) running_since: Option<Time>,
}

impl Run {
    /// A run that has yet to fetch its first missing item.
    pub(crate) fn new(kind: RunKind, job: JobId, steps: Vec<Step>) -> Run {
        Run {
            kind,
            job,
            steps,
            step: 0,
            next_holder: 0,
            lost: Vec::new(),
            running_since: None,
        }
    }
}

/// One simulated node.
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) spec: NodeSpec,
    /// The state machine, while the node is up.
    pub(crate) core: Option<Core>,
    /// Bumped whenever the node goes down or up, so that events meant for an earlier life
    /// are dropped.
    pub(crate) life: u32,
    pub(crate) store: Store,
    pub(crate) builds: BTreeMap<BuildId, NodeBuild>,
    pub(crate) runs: IdMap<u64, Run>,
    pub(crate) own_runs: IdMap<(BuildId, JobId), u64>,
    /// Peers' jobs running here, by the token of their run.
    pub(crate) stolen: IdMap<JobId, u64>,
    /// When each result made here was finished, until it is announced (for convergence).
    pub(crate) finished_at: IdMap<JobId, Time>,
    /// When this node's link is free again, each direction.
    pub(crate) up_free: Time,
    pub(crate) down_free: Time,
    /// Peers this node is connected to (its core had `on_peer_up` for them).
    pub(crate) conn: NodeSet,
    /// The nodes whose `conn` holds this node: the receivers of its gossip test membership
    /// here, in the publisher's set, which stays in cache while its message is delivered
    /// to every node (each receiver's own set would be a cache miss per delivery).
    pub(crate) conn_from: NodeSet,
    /// Its gossipsub mesh peers.
    pub(crate) mesh: Vec<u32>,
    /// The timer event scheduled for its core, and its generation.
    pub(crate) timer_due: Option<Time>,
    pub(crate) timer_gen: u64,
    /// Rpcs this node sent that are not answered yet.
    pub(crate) pending: BTreeSet<u64>,
    /// Counters of the cores this node had in earlier lives.
    pub(crate) past_stats: CoreStats,
    /// Joins scheduled for this node that have not happened yet.
    pub(crate) future_joins: usize,
    /// Slot-microseconds spent running jobs (for utilisation).
    pub(crate) busy_us: u128,
    /// Runs it completed.
    pub(crate) executed: u64,
}

impl SimNode {
    pub(crate) fn is_up(&self) -> bool {
        self.core.is_some()
    }
}

/// What an rpc asks.
#[derive(Debug)]
pub(crate) enum RpcKind {
    Steal {
        request: StealRequest,
    },
    Renew {
        jobs: Vec<JobId>,
    },
    Done {
        job: JobId,
        outcome: Reported,
    },
    Query {
        build: BuildId,
        job: JobId,
        with_outputs: bool,
    },
    Fetch {
        item: Item,
        bytes: u64,
        why: FetchFor,
    },
    Have {
        jobs: Vec<JobId>,
    },
    DepsLost {
        job: JobId,
        lost: Vec<JobId>,
    },
}

/// What an rpc's answer says.
#[derive(Debug)]
pub(crate) enum Reply {
    Granted(Vec<Lease>),
    Renewed(Vec<JobId>),
    Ack,
    Answer { hit: bool },
    Data { ok: bool },
}

/// What a fetch is for: what to do when it succeeds or fails.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FetchFor {
    /// A run's preparation.
    Run { token: u64 },
    /// A thief's report on a wanted job: its outputs come here before the job counts.
    Report { thief: u32, job: JobId },
    /// A peer's cache hit on a wanted job.
    CacheHit {
        build: BuildId,
        job: JobId,
        peer: u32,
    },
}

/// An rpc in flight.
#[derive(Debug)]
pub(crate) struct Rpc {
    pub(crate) client: u32,
    pub(crate) client_life: u32,
    pub(crate) server: u32,
    pub(crate) kind: RpcKind,
    pub(crate) reply: Option<Reply>,
}

/// A gossip message on its way to its receivers.
#[derive(Debug)]
pub(crate) struct GossipMsg {
    pub(crate) from: u32,
    pub(crate) gossip: Gossip,
    /// Deliveries still scheduled.
    pub(crate) remaining: usize,
}

/// Where a simulated build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuildState {
    /// Not started yet.
    Pending,
    /// Running as `BuildId` on its origin.
    Running(BuildId),
    /// Its origin went down; it starts again when the origin comes back.
    Interrupted,
    /// Over.
    Done,
    /// Its origin went down for good (or it cannot restart).
    Abandoned,
}

/// A build of the scenario.
#[derive(Debug)]
pub(crate) struct SimBuild {
    pub(crate) origin: u32,
    pub(crate) instance: Arc<Instance>,
    pub(crate) estimates: bool,
    pub(crate) restart: bool,
    pub(crate) state: BuildState,
    pub(crate) first_start: Option<Time>,
    pub(crate) end: Option<Time>,
    pub(crate) outcome: Option<BuildOutcome>,
    pub(crate) attempts: u32,
    /// Slot-speed of the nodes with the toolchain up at its first start.
    pub(crate) capacity: f64,
    /// The fastest such node's speed.
    pub(crate) top_speed: f64,
    /// The build's longest chain at its first start, in microseconds at speed 1, counting a
    /// job whose result existed somewhere then as free.
    pub(crate) left_path_us: u64,
    /// The jobs whose results existed nowhere at its first start: its work.
    pub(crate) left_jobs: Vec<JobId>,
}

/// A scheduled happening.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A core's timer.
    Timer { node: u32, generation: u64 },
    /// A run finished running.
    RunDone { node: u32, token: u64 },
    /// An rpc's request reached its server.
    Request { rpc: u64 },
    /// An rpc's reply reached its client.
    Response { rpc: u64 },
    /// An rpc failed: a timeout, a lost message, a dropped connection.
    Fail { rpc: u64 },
    /// A gossip message reached a node.
    Gossip { node: u32, msg: u32 },
    /// Two nodes connect.
    Connect { a: u32, b: u32 },
    /// `observer` notices that its connection to `peer` (in the life `peer_life`) is dead.
    Detect {
        observer: u32,
        peer: u32,
        peer_life: u32,
    },
    /// A node crashes, leaves or joins.
    Churn {
        node: u32,
        action: crate::scenario::ChurnAction,
        store_kept: bool,
    },
    /// A partition begins: each node's side.
    Split { sides: Arc<Vec<u16>> },
    /// The partition heals.
    Heal,
    /// A build starts.
    BuildStart { build: usize },
}
