//! netsim: a deterministic discrete-event simulator of weft meshes.
//!
//! It runs many instances of the very `weft_node::core` state machines the daemon runs
//! (scheduling, stealing, leases, the peer table, cache lookups, gossip views) over simulated
//! links with latency, bandwidth, loss and partitions, under churn, on a virtual clock and a
//! seeded RNG, so that the same seed always gives the same trace. It depends on `weft-node`
//! without the `shell` feature: no tokio, no sockets, no store.
//!
//! - [`Scenario`]: a TOML file (nodes, links, gossip, workload, churn, partitions);
//! - [`Sim`]: `Sim::new(seed)` or [`Sim::from_scenario`], then [`Sim::run_until_idle`];
//! - [`Report`]: makespan and its lower bound, jobs executed, duplicated and lost, bytes,
//!   stealing, cache hits, gossip convergence, the trace hash.
//!
//! # What is deterministic, and why
//!
//! A run is a pure function of its scenario and seed: the clock is virtual and moves only
//! from event to event; events at the same time are taken in the order they were scheduled;
//! every random draw comes from [`Rng`] streams forked from the seed (one each for the
//! workload, the links, gossip and churn); every collection that is iterated is a `BTreeMap`,
//! a sorted vector or a bitset (hash maps are only looked up); there are no threads; and the
//! cores themselves take their randomness from their node ids, which derive from the seed.
//! The wall clock is read only by the binary, to say how long a run took.

#![warn(missing_docs, unreachable_pub)]

mod queue;
mod report;
mod rng;
mod scenario;
mod sim;
mod units;
mod workload;

pub use report::{BuildReport, GroupReport, Report};
pub use rng::Rng;
pub use scenario::{
    BuildSpec, ChurnAction, ChurnSpec, CoreOverrides, DagSpec, GossipConfig, Network, NodeGroup,
    PartitionSpec, RandomChurn, ReplaySpec, Scenario, ScenarioError, Share, StoreFate,
};
pub use sim::{NodeSpec, Sim};
pub use units::{Dist, Quantity, Rate, Size, Time, Value};
pub use workload::{CC, Graph, GraphJob, Instance, JobInfo, PLATFORM, instantiate};
