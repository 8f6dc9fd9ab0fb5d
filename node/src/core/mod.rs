//! The sans-IO core: the scheduler and, with the mesh, the peer table, stealing, leases and
//! the peer cache.
//!
//! Architecture invariant: nothing here reads a clock, touches a file or a socket, or spawns
//! anything. Events come in with a [`Time`], and effects are polled out. The daemon and netsim
//! drive the very same code, and decide nothing themselves.
//!
//! The files, each a part that owns its state, with [`Core`] (`node.rs`) orchestrating them:
//! - `config`: [`CoreConfig`];
//! - `effect`: what the core asks of its driver ([`Effect`], [`Report`]);
//! - `scheduler`: this node's builds ([`Scheduler`]);
//! - `peers`: what is known of each peer (`PeerTable`);
//! - `holders` (over `job_table`): which peers announced which results;
//! - `leases`: jobs lent to peers and borrowed from them;
//! - `steal`: when and whom this node asks for work, and the jobs reserved for fast peers;
//! - `lookups`: peer-cache lookups in flight;
//! - `announce`: beacons, `Have` batches and the newcomer's snapshot;
//! - `trust`: disowned peers, nondeterministic jobs and lost workers; `statements`: the signed
//!   statements on who is disowned, and which of them this node follows ([`Statements`]);
//! - `deadlines`, `id_hash`, `prefetch`, `time`: the small pieces they share.

mod announce;
#[cfg(test)]
mod cluster_tests;
mod config;
mod deadlines;
mod effect;
mod holders;
mod id_hash;
mod job_table;
mod leases;
mod lookups;
mod node;
#[cfg(test)]
mod node_tests;
mod peers;
mod prefetch;
mod rng;
mod scheduler;
mod statements;
mod steal;
mod time;
mod trust;

pub use config::CoreConfig;
pub use effect::{Effect, Finished, Gossip, Report, Reported, StolenOutcome};
pub use id_hash::{IdBuildHasher, IdHasher, IdMap, IdSet};
pub use node::{Core, CoreStats};
pub use peers::PeerView;
pub use scheduler::{
    BuildEffect, BuildId, BuildOptions, BuildOutcome, JobOutcome, Made, PlanError, PlannedJob,
    Reserve, Scheduler,
};
pub use statements::{Change, FollowDistrust, Ignored, Statements};
pub use time::Time;
