//! The sans-IO core: the scheduler (and, with the mesh, the peer table, stealing and leases).
//!
//! Architecture invariant: nothing here reads a clock, touches a file or a socket, or spawns
//! anything. Events come in with a [`Time`], and effects are polled out. The daemon and netsim
//! drive the very same code.

mod deadlines;
mod holders;
mod id_hash;
mod job_table;
mod mesh;
#[cfg(test)]
mod mesh_tests;
mod prefetch;
mod scheduler;
mod time;

pub use id_hash::{IdBuildHasher, IdHasher, IdMap, IdSet};
pub use mesh::{Core, CoreConfig, CoreStats, Effect, Gossip, PeerView, Report, StolenOutcome};
pub use scheduler::{
    BuildEffect, BuildId, BuildOptions, BuildOutcome, Hold, JobOutcome, Made, PlanError,
    PlannedJob, Scheduler,
};
pub use time::Time;
