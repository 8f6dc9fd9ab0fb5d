//! The weft daemon, as a library, in two layers.
//!
//! - [`core`] is sans-IO: the scheduler and the mesh state machines. It takes events with a
//!   time and returns effects, and never reads the clock, the network or the disk. Every
//!   decision about who runs what, and when, lives there, so that netsim can drive it.
//! - The shell (feature `shell`, on by default) wires the core to the world:
//!   - [`frontend`]: the workspace, BUILD files in Starlark, labels, the target graph, and the
//!     distbuild JSON graph format;
//!   - [`exec`]: source digests, toolchain fingerprints and the sandboxed executor;
//!   - [`daemon`]: the local API on a Unix socket, build sessions, workspace locks, and the
//!     client side of that API;
//!   - [`mesh`]: libp2p, team admission, gossip, and the QUIC request and blob protocols.
//!
//! Architecture invariant: nothing here prints to a terminal or reads environment variables;
//! the `weft` binary hands everything down as typed configuration.

#![warn(missing_docs, unreachable_pub)]

pub mod core;
#[cfg(feature = "shell")]
pub mod daemon;
#[cfg(feature = "shell")]
pub mod exec;
#[cfg(feature = "shell")]
pub mod frontend;
#[cfg(feature = "shell")]
mod fs;
#[cfg(feature = "shell")]
pub mod mesh;
#[cfg(feature = "shell")]
mod stat;
