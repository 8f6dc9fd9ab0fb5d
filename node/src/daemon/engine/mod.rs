//! The engine: the one task that owns the node's [`Core`](crate::core::Core) and carries out
//! its effects.
//!
//! Sessions hand it whole job graphs; it looks jobs up in the action cache, runs the misses
//! in sandboxes (or lends them to peers), records results, and streams build events back to
//! each build's session. With a team, it also answers peers and gossips. Every decision of
//! who runs what, when, and with which inputs from where, is the core's; the engine only does
//! the IO.
//!
//! The files, from the bottom up:
//! - `api`: what sessions hand in and get back (plans, events, the mesh report);
//! - `context`: what the engine works with (store, executor, key, mesh) and its settings;
//! - `command`: what reaches the loop from sessions and from the tasks it spawned;
//! - `durations`, `journal`, `known`, `latencies`: what the engine remembers (job durations
//!   across restarts, the runs in progress, results checked against the store, latency
//!   samples);
//! - `work`: running jobs, this node's own and peers' stolen ones, after fetching their deps'
//!   outputs;
//! - `task`: the loop, and this node's builds;
//! - `peers`: the mesh side of the loop: requests from peers, and those the core sends;
//! - `disown`: the owner's verdicts on nodes and teammates' statements, carried out.

mod api;
mod command;
mod context;
mod disown;
mod durations;
mod journal;
mod known;
mod latencies;
mod peers;
mod task;
mod work;

pub(crate) use api::{AddBuildError, BuildPlan, EngineEvent};
pub(crate) use context::{EngineConfig, EngineContext};
pub(crate) use task::Engine;
