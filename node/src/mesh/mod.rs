//! The mesh's IO layer: libp2p (QUIC, mDNS, identify, ping, gossipsub), team admission, and
//! weft's own stream protocols for requests and blobs.
//!
//! This module makes no scheduling decision: it moves bytes and reports what happened, and the
//! sans-IO [`core`](crate::core) decides who runs what. A daemon with no team does not start a
//! mesh at all.
//!
//! - [`team`]: the team secret, its join token, its id, and `<home>/team.toml`;
//! - [`start`] returns a [`Mesh`] handle and a channel of [`MeshEvent`]s;
//! - the protocols, each documented with its flow: admission (`/weft/admit/1`), requests
//!   (`/weft/rpc/1`) and blobs (`/weft/blob/1`), all on QUIC streams of one connection per
//!   peer; gossip on the gossipsub topic `weft/<team id>/v2` (parameters in [`MeshConfig`]'s
//!   module);
//! - the bulk lane (`bulk`, its TLS in `bulk_tls`): blobs of 4 MiB and more over TLS 1.3 on
//!   TCP, at the QUIC listener's port number, authenticated with the same libp2p identity and
//!   served only to admitted peers; QUIC remains the fallback.
//!
//! The files form one stack, each using only those below it: at the bottom `team`, `ids`,
//! `error`, `frames`, `config`, `events` (what the mesh reports, and the commands its tasks
//! send the swarm task) and `bulk_tls`; then `state` (what the tasks share); the protocols
//! `admit`, `rpc`, `bulk` and `blob`; `handle` ([`Mesh`]); and `swarm`, the task that owns
//! libp2p and [`start`]s it all.
//!
//! Architecture invariant: until a peer has passed admission it gets nothing: no gossip (it is
//! graylisted in gossipsub), no rpc answer and no blob (those streams are reset). A peer that
//! fails admission is disconnected and blocked for a while.

mod admit;
mod blob;
mod bulk;
mod bulk_tls;
mod config;
mod error;
mod events;
mod frames;
mod handle;
mod ids;
mod rpc;
mod state;
mod swarm;
pub mod team;

#[doc(hidden)]
pub use config::quic_config as quic_transport_config;
pub use config::{ADMISSION_DEADLINE, BLOCK_DURATION, MeshConfig, TestHooks, default_listen};
pub use error::{FetchError, MeshError, NetError};
pub use events::{Admission, MeshEvent, MeshStats, PeerInfo};
pub use handle::Mesh;
pub use ids::{node_id_of, peer_of};
pub use swarm::start;
pub use team::{TeamError, TeamId, TeamSecret};
pub use weft_protocol::wire::GossipMessage;

/// The libp2p types the mesh's API uses.
pub use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr};
