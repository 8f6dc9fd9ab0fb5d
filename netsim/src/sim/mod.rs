//! The simulator: [`Sim`] and its parts.
//!
//! - [`world`]: the event loop, nodes' lives, partitions, builds;
//! - [`net`]: links and rpcs;
//! - [`gossip`]: gossipsub over the links;
//! - [`driver`]: each core effect carried out as the daemon carries it out;
//! - [`setup`]: a [`Sim`] from a [`Scenario`](crate::Scenario);
//! - [`state`] and [`metrics`]: the data.

pub(crate) mod driver;
pub(crate) mod gossip;
pub(crate) mod metrics;
pub(crate) mod net;
pub(crate) mod setup;
pub(crate) mod state;
pub(crate) mod world;

pub use state::NodeSpec;
pub use world::Sim;
