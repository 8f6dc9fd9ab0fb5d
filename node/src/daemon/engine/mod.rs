//! The engine: the one task that owns the node's [`Core`](crate::core::Core) and carries out
//! its effects.
//!
//! Sessions hand it whole job graphs; it looks jobs up in the action cache, runs the misses
//! in sandboxes (or lends them to peers), records results, and streams build events back to
//! each build's session. With a team, it also answers peers and gossips. Every decision of
//! who runs what, and when, is the core's; the engine only does the IO.
//!
//! - `task`: the loop, the commands, and this node's builds;
//! - `work`: running jobs: this node's own (after fetching deps' outputs that live on peers)
//!   and peers' stolen ones;
//! - `peers`: the mesh: requests from peers, and the requests the core sends to them.

mod durations;
mod peers;
mod task;
mod work;

pub(crate) use task::{BuildPlan, Engine, EngineConfig, EngineContext, EngineEvent};
