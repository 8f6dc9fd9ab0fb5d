//! [`Scenario`]: a TOML file that says which nodes, links, workload and churn to simulate.
//!
//! Every table and key is described in `netsim/README.md`. Parsing is strict: an unknown key
//! is an error naming it, and every check after parsing names the field (`builds[1].origin`)
//! and says what to write instead. Nothing here panics on bad input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weft_protocol::wire::SharePolicy;

use crate::units::{Dist, Rate, Size, Time, Value};

/// A simulation scenario, as read from a TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario models, for the report.
    pub name: String,
    /// The seed, unless the command line gives another.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time after which the run stops, finished or not. Default: 24 h.
    #[serde(default = "default_until")]
    pub until: Value<Time>,
    /// The links between nodes.
    #[serde(default)]
    pub network: Network,
    /// How gossip spreads.
    #[serde(default)]
    pub gossip: GossipConfig,
    /// `CoreConfig` values for every node (a node group may override some).
    #[serde(default)]
    pub core: CoreOverrides,
    /// The nodes, in groups; node indices count through the groups in order, from 0.
    pub nodes: Vec<NodeGroup>,
    /// Random layered job graphs.
    #[serde(default)]
    pub dags: Vec<DagSpec>,
    /// Job graphs rebuilt from a real build's `--events` log.
    #[serde(default)]
    pub replays: Vec<ReplaySpec>,
    /// The builds to run.
    pub builds: Vec<BuildSpec>,
    /// Joins, leaves and crashes at chosen times.
    #[serde(default)]
    pub churn: Vec<ChurnSpec>,
    /// Crashes and leaves at random times.
    #[serde(default)]
    pub random_churn: Option<RandomChurn>,
    /// Network partitions that start and heal.
    #[serde(default)]
    pub partitions: Vec<PartitionSpec>,
    /// The directory relative paths (replay files) are resolved against; set by
    /// [`Scenario::load`].
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_seed() -> u64 {
    1
}

fn default_until() -> Value<Time> {
    Value::new(24.0 * 3600e6)
}

/// The links: every node has one link to a switch, with the same properties unless its group
/// says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency between two nodes, per message. Default: `{ uniform = ["0.8ms",
    /// "1.2ms"] }`.
    #[serde(default = "default_latency")]
    pub latency: Dist<Time>,
    /// Each node's link, each direction. Default: `1Gbit`.
    #[serde(default = "default_bandwidth")]
    pub bandwidth: Value<Rate>,
    /// Probability that one message (an rpc's request or response, or one gossip
    /// transmission) is lost. A lost rpc fails at the sender after `rpc_timeout`.
    /// Default: 0.
    #[serde(default)]
    pub loss: f64,
    /// How long an rpc may go unanswered (the daemon's request timeout). Default: `10s`.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout: Value<Time>,
    /// Discovery, QUIC handshake and team admission, after a join or a healed partition.
    /// Default: `{ uniform = ["20ms", "80ms"] }`.
    #[serde(default = "default_connect")]
    pub connect: Dist<Time>,
    /// How long peers take to notice that a node crashed or a link was cut (QUIC's idle
    /// timeout; the daemon sets 30 s). Default: `30s`.
    #[serde(default = "default_detect")]
    pub detect: Dist<Time>,
}

fn default_latency() -> Dist<Time> {
    Dist::uniform(800.0, 1200.0)
}
fn default_bandwidth() -> Value<Rate> {
    Value::new(125e6)
}
fn default_rpc_timeout() -> Value<Time> {
    Value::new(10e6)
}
fn default_connect() -> Dist<Time> {
    Dist::uniform(20e3, 80e3)
}
fn default_detect() -> Dist<Time> {
    Dist::constant(30e6)
}

impl Default for Network {
    fn default() -> Network {
        Network {
            latency: default_latency(),
            bandwidth: default_bandwidth(),
            loss: 0.0,
            rpc_timeout: default_rpc_timeout(),
            connect: default_connect(),
            detect: default_detect(),
        }
    }
}

/// How gossip spreads (gossipsub, as the daemon configures it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipConfig {
    /// The mesh degree each node keeps. Default: 4 (the daemon's `mesh_n`).
    #[serde(default = "default_mesh_n")]
    pub mesh_n: usize,
    /// Whether a node's own messages go to every connected peer, not only its mesh.
    /// Default: `true` (the daemon's setting).
    #[serde(default = "default_true")]
    pub flood_publish: bool,
    /// How often lost messages are repaired by lazy gossip (IHAVE/IWANT). Default: `500ms`.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Value<Time>,
    /// Bytes of gossipsub framing, signature and ids per message. Default: `160B`.
    #[serde(default = "default_overhead")]
    pub overhead: Value<Size>,
}

fn default_mesh_n() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_heartbeat() -> Value<Time> {
    Value::new(500e3)
}
fn default_overhead() -> Value<Size> {
    Value::new(160.0)
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig {
            mesh_n: default_mesh_n(),
            flood_publish: true,
            heartbeat: default_heartbeat(),
            overhead: default_overhead(),
        }
    }
}

/// Values of `weft_node::core::CoreConfig`; a missing one keeps `CoreConfig::new`'s default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreOverrides {
    /// `steal_batch`.
    pub steal_batch: Option<usize>,
    /// `lease_ttl`.
    pub lease_ttl: Option<Value<Time>>,
    /// `beacon_interval`.
    pub beacon_interval: Option<Value<Time>>,
    /// `idle_beacon_interval`.
    pub idle_beacon_interval: Option<Value<Time>>,
    /// `have_delay`.
    pub have_delay: Option<Value<Time>>,
    /// `steal_backoff`.
    pub steal_backoff: Option<Value<Time>>,
    /// `steal_fanout`.
    pub steal_fanout: Option<u32>,
    /// `max_peer_failures`.
    pub max_peer_failures: Option<u32>,
    /// `avoid_for`.
    pub avoid_for: Option<Value<Time>>,
    /// `max_holder_entries`.
    pub max_holder_entries: Option<usize>,
    /// `max_shared_slots`.
    pub max_shared_slots: Option<usize>,
    /// `reserve_for`.
    pub reserve_for: Option<Value<Time>>,
}

impl CoreOverrides {
    /// `self`, with `other`'s values where it has them.
    pub fn overlaid(&self, other: &CoreOverrides) -> CoreOverrides {
        CoreOverrides {
            steal_batch: other.steal_batch.or(self.steal_batch),
            lease_ttl: other.lease_ttl.or(self.lease_ttl),
            beacon_interval: other.beacon_interval.or(self.beacon_interval),
            idle_beacon_interval: other.idle_beacon_interval.or(self.idle_beacon_interval),
            have_delay: other.have_delay.or(self.have_delay),
            steal_backoff: other.steal_backoff.or(self.steal_backoff),
            steal_fanout: other.steal_fanout.or(self.steal_fanout),
            max_peer_failures: other.max_peer_failures.or(self.max_peer_failures),
            avoid_for: other.avoid_for.or(self.avoid_for),
            max_holder_entries: other.max_holder_entries.or(self.max_holder_entries),
            max_shared_slots: other.max_shared_slots.or(self.max_shared_slots),
            reserve_for: other.reserve_for.or(self.reserve_for),
        }
    }
}

/// When a node runs its peers' jobs, as written in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// Whenever it has free slots.
    Always,
    /// Only while it builds nothing itself.
    Idle,
    /// Never.
    Never,
}

impl From<Share> for SharePolicy {
    fn from(share: Share) -> SharePolicy {
        match share {
            Share::Always => SharePolicy::Always,
            Share::Idle => SharePolicy::Idle,
            Share::Never => SharePolicy::Never,
        }
    }
}

/// A group of identical nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    /// A name for the group, for the report. Default: `group<i>`.
    #[serde(default)]
    pub name: Option<String>,
    /// How many nodes. Default: 1.
    #[serde(default = "default_count")]
    pub count: usize,
    /// Job slots per node.
    pub slots: usize,
    /// Relative CPU speed: a job of 1 s takes `1/speed` s. Default: 1.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// When the node runs peers' jobs. Default: `idle` (the daemon's default).
    #[serde(default = "default_share")]
    pub share: Share,
    /// Whether the node has the workload's toolchain (otherwise it gets no stolen jobs).
    /// Default: `true`.
    #[serde(default = "default_true")]
    pub toolchain: bool,
    /// This group's link bandwidth, instead of `network.bandwidth`.
    #[serde(default)]
    pub bandwidth: Option<Value<Rate>>,
    /// Latency added to every message to or from these nodes (Wi-Fi). Default: none.
    #[serde(default)]
    pub extra_latency: Option<Dist<Time>>,
    /// Loss on this group's link, on top of `network.loss`. Default: 0.
    #[serde(default)]
    pub loss: f64,
    /// When the group's nodes join; absent: at the start. With `join_spread`, the joins
    /// are spread evenly over that span.
    #[serde(default)]
    pub join_at: Option<Value<Time>>,
    /// See `join_at`. Default: 0.
    #[serde(default)]
    pub join_spread: Option<Value<Time>>,
    /// `CoreConfig` values for this group, over the scenario's `[core]`.
    #[serde(default)]
    pub core: CoreOverrides,
}

fn default_count() -> usize {
    1
}
fn default_speed() -> f64 {
    1.0
}
fn default_share() -> Share {
    Share::Idle
}

/// A random layered job graph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagSpec {
    /// The name builds refer to.
    pub name: String,
    /// How many jobs.
    pub jobs: usize,
    /// How many layers (the depth); jobs are spread evenly over them.
    pub layers: usize,
    /// The number of deps of a job outside the first layer: `[min, max]`, uniform.
    /// Default: `[1, 3]`.
    #[serde(default = "default_fan_in")]
    pub fan_in: [usize; 2],
    /// The probability that a dep comes from the layer right above (else from any earlier
    /// one). Default: 0.7.
    #[serde(default = "default_locality")]
    pub locality: f64,
    /// How far a dep in the layer above lies from the job's own position, as a fraction of
    /// that layer's width: small values make clusters (a library's objects feed its link),
    /// 1 picks anywhere. Default: 0.1.
    #[serde(default = "default_spread")]
    pub spread: f64,
    /// How long a job runs at speed 1.
    pub duration: Dist<Time>,
    /// The size of a job's outputs. Default: `100KB`.
    #[serde(default = "default_output")]
    pub output: Dist<Size>,
    /// The size of a job's own inputs (sources), fetched by a thief from the origin.
    /// Default: `20KB`.
    #[serde(default = "default_input")]
    pub input: Dist<Size>,
}

fn default_fan_in() -> [usize; 2] {
    [1, 3]
}
fn default_locality() -> f64 {
    0.7
}
fn default_spread() -> f64 {
    0.1
}
fn default_output() -> Dist<Size> {
    Dist::constant(100e3)
}
fn default_input() -> Dist<Size> {
    Dist::constant(20e3)
}

/// A job graph rebuilt from a `weft build --events FILE` log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// The name builds refer to.
    pub name: String,
    /// The JSON-lines file, relative to the scenario file.
    pub file: PathBuf,
    /// At most this many deps per job (the latest finishes before it started). Default: 4.
    #[serde(default = "default_max_deps")]
    pub max_deps: usize,
    /// The size of a job's outputs (the log does not say). Default: `100KB`.
    #[serde(default = "default_output")]
    pub output: Dist<Size>,
    /// The size of a job's inputs. Default: `20KB`.
    #[serde(default = "default_input")]
    pub input: Dist<Size>,
    /// Every recorded duration is multiplied by this. Default: 1.
    #[serde(default = "default_speed")]
    pub scale: f64,
}

fn default_max_deps() -> usize {
    4
}

/// One build.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// The graph: a `dags` or `replays` name.
    pub graph: String,
    /// The node the build runs from (the origin), by index.
    pub origin: usize,
    /// When it starts. Default: `0s`.
    #[serde(default)]
    pub at: Option<Value<Time>>,
    /// The fraction of the graph's final jobs requested (with everything they need).
    /// Default: 1.
    #[serde(default = "default_one")]
    pub targets: f64,
    /// The fraction of jobs whose sources changed since the graph was first built: they and
    /// everything after them get new ids. Default: 0.
    #[serde(default)]
    pub changed: f64,
    /// Whether the origin knows how long each job takes (from earlier runs) when it plans.
    /// Default: `true`.
    #[serde(default = "default_true")]
    pub estimates: bool,
    /// Whether the build starts again when its origin comes back after a crash or leave.
    /// Default: `true`.
    #[serde(default = "default_true")]
    pub restart: bool,
}

fn default_one() -> f64 {
    1.0
}

/// What happens to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChurnAction {
    /// It stops without a word; peers notice after `network.detect`.
    Crash,
    /// It says goodbye; peers notice at once.
    Leave,
    /// It comes (back) up and connects to every node it can reach.
    Join,
}

/// Whether a node's store survives until it joins again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFate {
    /// The store is still there: its results can be served again.
    Kept,
    /// The store is gone (a wiped machine).
    Lost,
}

/// A churn event at a chosen time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSpec {
    /// When.
    pub at: Value<Time>,
    /// Which nodes, by index.
    pub nodes: Vec<usize>,
    /// What happens.
    pub action: ChurnAction,
    /// For `crash` and `leave`: the store's fate. Default: `kept`.
    #[serde(default = "default_store")]
    pub store: StoreFate,
}

fn default_store() -> StoreFate {
    StoreFate::Kept
}

/// Crashes or leaves at random: each node not spared goes down after an exponential time
/// with mean `mean_up`, stays down for `down`, and comes back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomChurn {
    /// From when. Default: `0s`.
    #[serde(default)]
    pub from: Option<Value<Time>>,
    /// Until when (no node goes down after this). Default: the scenario's `until`.
    #[serde(default)]
    pub until: Option<Value<Time>>,
    /// Mean time a node stays up.
    pub mean_up: Value<Time>,
    /// How long a node stays down. Default: `{ uniform = ["5s", "30s"] }`.
    #[serde(default = "default_down")]
    pub down: Dist<Time>,
    /// What going down is. Default: `crash`.
    #[serde(default = "default_action")]
    pub action: ChurnAction,
    /// The store's fate. Default: `kept`.
    #[serde(default = "default_store")]
    pub store: StoreFate,
    /// Nodes never churned, by index. Default: the builds' origins.
    #[serde(default)]
    pub spare: Option<Vec<usize>>,
}

fn default_down() -> Dist<Time> {
    Dist::uniform(5e6, 30e6)
}
fn default_action() -> ChurnAction {
    ChurnAction::Crash
}

/// A network partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// When the network splits.
    pub at: Value<Time>,
    /// When it heals; absent: never.
    #[serde(default)]
    pub heal: Option<Value<Time>>,
    /// The sides, as lists of node indices; nodes in no list are on the first side.
    #[serde(default)]
    pub groups: Option<Vec<Vec<usize>>>,
    /// Instead of `groups`: this fraction of the nodes, chosen at random (never a build's
    /// origin), is cut off from the rest.
    #[serde(default)]
    pub isolate: Option<f64>,
}

/// A scenario that cannot be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read the scenario `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong form.
    #[error("scenario `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and the key.
        message: String,
    },
    /// A value is well-formed but wrong.
    #[error("scenario `{path}`: `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending field, such as `builds[1].origin`.
        field: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// A replay's events log cannot be used.
    #[error("scenario `{path}`: replay `{replay}`: {message}")]
    Replay {
        /// The scenario file.
        path: PathBuf,
        /// The replay's name.
        replay: String,
        /// What is wrong (with the log's path and line).
        message: String,
    },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        Scenario::parse(&text, path, &base)
    }

    /// Parses and checks scenario text; `path` names it in errors, `base_dir` resolves
    /// replay files.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        scenario.base_dir = base_dir.to_owned();
        scenario
            .check()
            .map_err(|(field, message)| ScenarioError::Invalid {
                path: path.to_owned(),
                field,
                message,
            })?;
        Ok(scenario)
    }

    /// How many nodes the scenario has.
    pub fn n_nodes(&self) -> usize {
        self.nodes.iter().map(|g| g.count).sum()
    }

    /// The builds' origins.
    pub fn origins(&self) -> BTreeSet<usize> {
        self.builds.iter().map(|b| b.origin).collect()
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: String, message: String| Err((field, message));
        let n = self.n_nodes();
        if self.nodes.is_empty() || n == 0 {
            return bad(
                "nodes".into(),
                "the scenario has no nodes; add a `[[nodes]]` table with `count` and `slots`"
                    .into(),
            );
        }
        if n > 100_000 {
            return bad(
                "nodes".into(),
                format!("{n} nodes is more than the 100000 the simulator supports"),
            );
        }
        let node_range = format!("the scenario has {n} nodes, 0 to {}", n - 1);
        let check_node = |field: String, node: usize| -> Result<(), (String, String)> {
            if node >= n {
                return Err((
                    field,
                    format!("node {node} does not exist ({node_range}); name a node in range"),
                ));
            }
            Ok(())
        };
        let probability = |field: String, p: f64| -> Result<(), (String, String)> {
            if !(0.0..=1.0).contains(&p) {
                return Err((
                    field,
                    format!("{p} is not a probability; write a number from 0 to 1"),
                ));
            }
            Ok(())
        };
        probability("network.loss".into(), self.network.loss)?;
        if self.network.loss >= 1.0 {
            return bad(
                "network.loss".into(),
                "with a loss of 1 nothing ever arrives; write less than 1".into(),
            );
        }
        if self.network.rpc_timeout.base < 1.0 {
            return bad(
                "network.rpc_timeout".into(),
                "must be positive, such as `10s`".into(),
            );
        }
        if !(1..=64).contains(&self.gossip.mesh_n) {
            return bad(
                "gossip.mesh_n".into(),
                format!(
                    "{} is not a mesh degree; write 1 to 64 (the daemon uses 4)",
                    self.gossip.mesh_n
                ),
            );
        }
        if self.gossip.heartbeat.base < 1.0 {
            return bad(
                "gossip.heartbeat".into(),
                "must be positive, such as `500ms`".into(),
            );
        }
        check_core("core", &self.core)?;
        for (i, group) in self.nodes.iter().enumerate() {
            let field = |name: &str| format!("nodes[{i}].{name}");
            if group.slots == 0 || group.slots > 1024 {
                return bad(
                    field("slots"),
                    format!("{} slots: write 1 to 1024", group.slots),
                );
            }
            if !(group.speed.is_finite() && group.speed > 0.0) {
                return bad(
                    field("speed"),
                    "write a positive number, such as 1 or 0.5".into(),
                );
            }
            probability(field("loss"), group.loss)?;
            if group.loss >= 1.0 {
                return bad(field("loss"), "write less than 1".into());
            }
            check_core(&field("core"), &group.core)?;
        }
        let mut graphs = BTreeSet::new();
        for (i, dag) in self.dags.iter().enumerate() {
            let field = |name: &str| format!("dags[{i}].{name}");
            if !graphs.insert(dag.name.as_str()) {
                return bad(
                    field("name"),
                    format!("the graph name `{}` is used twice", dag.name),
                );
            }
            if dag.jobs == 0 || dag.jobs > 5_000_000 {
                return bad(
                    field("jobs"),
                    format!("{} jobs: write 1 to 5000000", dag.jobs),
                );
            }
            if dag.layers == 0 || dag.layers > dag.jobs {
                return bad(
                    field("layers"),
                    format!(
                        "{} layers for {} jobs: write 1 to the number of jobs",
                        dag.layers, dag.jobs
                    ),
                );
            }
            let [low, high] = dag.fan_in;
            if low > high || high > 64 {
                return bad(
                    field("fan_in"),
                    format!("[{low}, {high}]: write `[min, max]` with min <= max <= 64"),
                );
            }
            probability(field("locality"), dag.locality)?;
            probability(field("spread"), dag.spread)?;
        }
        for (i, replay) in self.replays.iter().enumerate() {
            let field = |name: &str| format!("replays[{i}].{name}");
            if !graphs.insert(replay.name.as_str()) {
                return bad(
                    field("name"),
                    format!("the graph name `{}` is used twice", replay.name),
                );
            }
            if replay.max_deps > 64 {
                return bad(field("max_deps"), "write at most 64".into());
            }
            if !(replay.scale.is_finite() && replay.scale > 0.0) {
                return bad(field("scale"), "write a positive number, such as 1".into());
            }
        }
        if self.builds.is_empty() {
            return bad(
                "builds".into(),
                "the scenario runs no build; add a `[[builds]]` table with `graph` and `origin`"
                    .into(),
            );
        }
        for (i, build) in self.builds.iter().enumerate() {
            let field = |name: &str| format!("builds[{i}].{name}");
            if !graphs.contains(build.graph.as_str()) {
                let known: Vec<&str> = graphs.iter().copied().collect();
                return bad(
                    field("graph"),
                    format!(
                        "no graph is named `{}`; the scenario's graphs are: {}",
                        build.graph,
                        if known.is_empty() {
                            "none (add a `[[dags]]` table)".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            check_node(field("origin"), build.origin)?;
            probability(field("targets"), build.targets)?;
            if build.targets <= 0.0 {
                return bad(
                    field("targets"),
                    "a build requests something: write more than 0".into(),
                );
            }
            probability(field("changed"), build.changed)?;
        }
        for (i, churn) in self.churn.iter().enumerate() {
            if churn.nodes.is_empty() {
                return bad(format!("churn[{i}].nodes"), "name at least one node".into());
            }
            for node in &churn.nodes {
                check_node(format!("churn[{i}].nodes"), *node)?;
            }
        }
        if let Some(random) = &self.random_churn {
            if random.mean_up.base < 1e3 {
                return bad(
                    "random_churn.mean_up".into(),
                    "must be at least `1ms`, such as `60s`".into(),
                );
            }
            if random.action == ChurnAction::Join {
                return bad(
                    "random_churn.action".into(),
                    "nodes come back on their own; write `crash` or `leave`".into(),
                );
            }
            for node in random.spare.iter().flatten() {
                check_node("random_churn.spare".into(), *node)?;
            }
        }
        let mut spans: Vec<(f64, f64, usize)> = Vec::new();
        for (i, partition) in self.partitions.iter().enumerate() {
            let field = |name: &str| format!("partitions[{i}].{name}");
            let end = partition.heal.map_or(f64::INFINITY, |h| h.base);
            if end <= partition.at.base {
                return bad(
                    field("heal"),
                    "the partition must heal after it starts".into(),
                );
            }
            match (&partition.groups, partition.isolate) {
                (Some(groups), None) => {
                    let mut seen = BTreeSet::new();
                    for group in groups {
                        for node in group {
                            check_node(field("groups"), *node)?;
                            if !seen.insert(*node) {
                                return bad(
                                    field("groups"),
                                    format!("node {node} is on two sides"),
                                );
                            }
                        }
                    }
                }
                (None, Some(fraction)) => {
                    probability(field("isolate"), fraction)?;
                }
                _ => {
                    return bad(
                        field("groups"),
                        "write either `groups = [[0, 1], [2, 3]]` or `isolate = 0.3`".into(),
                    );
                }
            }
            for (start, stop, j) in &spans {
                if partition.at.base < *stop && *start < end {
                    return bad(
                        field("at"),
                        format!("overlaps `partitions[{j}]`; one partition at a time"),
                    );
                }
            }
            spans.push((partition.at.base, end, i));
        }
        Ok(())
    }
}

fn check_core(field: &str, core: &CoreOverrides) -> Result<(), (String, String)> {
    if core.steal_batch == Some(0) {
        return Err((format!("{field}.steal_batch"), "write at least 1".into()));
    }
    if core.max_holder_entries == Some(0) {
        return Err((
            format!("{field}.max_holder_entries"),
            "write at least 1".into(),
        ));
    }
    if core.lease_ttl.is_some_and(|t| t.base < 3e3) {
        return Err((
            format!("{field}.lease_ttl"),
            "a lease shorter than 3ms cannot be renewed in time; write, say, `10s`".into(),
        ));
    }
    if core.beacon_interval.is_some_and(|t| t.base < 1e3) {
        return Err((
            format!("{field}.beacon_interval"),
            "write at least `1ms`, such as `1s`".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "t"
        [[nodes]]
        count = 3
        slots = 2
        [[dags]]
        name = "g"
        jobs = 10
        layers = 2
        duration = "1s"
        [[builds]]
        graph = "g"
        origin = 0
    "#;

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(text, Path::new("s.toml"), Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let s = parse(MINIMAL).expect("valid");
        assert_eq!(s.n_nodes(), 3);
        assert_eq!(s.gossip.mesh_n, 4);
        assert!(s.gossip.flood_publish);
        assert_eq!(s.nodes[0].share, Share::Idle);
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "origin = 0",
                "origin = 7",
                &["builds[0].origin", "node 7 does not exist", "0 to 2"],
            ),
            (
                "graph = \"g\"",
                "graph = \"h\"",
                &["builds[0].graph", "`h`", "g"],
            ),
            (
                "layers = 2",
                "layers = 20",
                &["dags[0].layers", "20 layers for 10 jobs"],
            ),
            (
                "slots = 2",
                "slots = 0",
                &["nodes[0].slots", "write 1 to 1024"],
            ),
            (
                "slots = 2",
                "slots = 2\nspeed = -1",
                &["nodes[0].speed", "positive"],
            ),
            (
                "duration = \"1s\"",
                "duration = \"1 fortnight\"",
                &["duration", "fortnight", "1.5ms"],
            ),
            (
                "count = 3",
                "count = 3\ncolour = \"red\"",
                &["unknown field `colour`"],
            ),
            (
                "count = 3",
                "count = 3\nshare = \"sometimes\"",
                &["sometimes", "always"],
            ),
        ];
        for (from, to, wanted) in cases {
            let text = MINIMAL.replace(from, to);
            let err = parse(&text).expect_err(to);
            for w in *wanted {
                assert!(err.contains(w), "{to}: `{err}` lacks `{w}`");
            }
        }
    }

    #[test]
    fn partitions_must_make_sense() {
        let text = format!(
            "{MINIMAL}\n[[partitions]]\nat = \"10s\"\nheal = \"5s\"\ngroups = [[0], [1]]\n"
        );
        assert!(
            parse(&text)
                .expect_err("heal first")
                .contains("partitions[0].heal")
        );
        let text = format!("{MINIMAL}\n[[partitions]]\nat = \"10s\"\n");
        assert!(parse(&text).expect_err("no sides").contains("isolate"));
        let text = format!("{MINIMAL}\n[[partitions]]\nat = \"1s\"\ngroups = [[0, 1], [1]]\n");
        assert!(parse(&text).expect_err("twice").contains("two sides"));
    }
}
