//! [`MeshConfig`], and the libp2p settings derived from it.
//!
//! # Gossipsub, for teams of 2 to 50 nodes
//!
//! The defaults of libp2p's gossipsub assume large public networks (a mesh degree of 6, a first
//! heartbeat after 5 s), and on a two-node team publish fails for lack of mesh peers. weft's
//! values:
//!
//! | parameter | value | why |
//! | --- | --- | --- |
//! | `mesh_n` / `mesh_n_low` / `mesh_n_high` | 4 / 2 / 8 | a degree a 5-node team can fill; with 50 nodes, 4 mesh links still reach everyone in a few hops |
//! | `mesh_outbound_min` | 1 | must be at most `mesh_n_low` and half of `mesh_n` |
//! | `gossip_lazy` | 4 | IHAVE to 4 non-mesh peers per heartbeat, to repair what the mesh missed |
//! | `flood_publish` | on | our own messages go to *every* subscribed admitted peer, whatever the mesh: this is what makes publish work with 2 nodes, and on a LAN a beacon to 49 peers costs nothing |
//! | `heartbeat_interval` | 500 ms | mesh repair within a second after churn; the cost is a few control messages |
//! | `heartbeat_initial_delay` | 100 ms | the default 5 s leaves a new node without a mesh for 5 s |
//! | `validation_mode` | `Strict`, signed | the author of every message is its signer, so a [`MeshEvent::Gossip`](super::MeshEvent) names it truthfully |
//! | `validate_messages` | on | every message waits for our check: its sender must be admitted and it must decode, or it is rejected and not forwarded |
//! | `max_transmit_size` | 1 MiB | a `Have` batch of ~30 000 job ids |
//! | peer scoring | app weight 1, IP colocation off, default thresholds | a peer not (yet) admitted gets an application score of −1000, under the graylist threshold (−80): nothing is published or gossiped to it and everything it sends is dropped; IP colocation is off because tests and `weft demo` run many nodes on one address |
//!
//! A publish with no subscribed admitted peer is not an error: the message is kept for a few
//! seconds and published again when a peer is admitted (see the swarm task).

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, gossipsub};

use super::team::TeamSecret;

/// How the mesh runs. Built with [`MeshConfig::new`] and adjusted field by field.
#[derive(Clone)]
pub struct MeshConfig {
    /// This node's identity; its PeerId is derived from it.
    pub keypair: Keypair,
    /// The team secret that admission proves knowledge of.
    pub team: TeamSecret,
    /// The addresses to listen on. Default: `/ip4/0.0.0.0/udp/0/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Peers dialed at start and re-dialed with backoff (1 s doubling to 60 s) whenever not
    /// connected. Default: none.
    pub static_peers: Vec<Multiaddr>,
    /// Whether to discover peers with mDNS on the LAN. Default: `true`.
    pub mdns: bool,
    /// Test-only behaviour; leave it at its default.
    #[doc(hidden)]
    pub test_hooks: TestHooks,
}

impl MeshConfig {
    /// The default configuration for `keypair` in the team `team`.
    pub fn new(keypair: Keypair, team: TeamSecret) -> MeshConfig {
        MeshConfig {
            keypair,
            team,
            listen: vec![default_listen()],
            static_peers: Vec::new(),
            mdns: true,
            test_hooks: TestHooks::default(),
        }
    }
}

impl std::fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConfig")
            .field("peer", &self.keypair.public().to_peer_id())
            .field("team", &self.team.team_id())
            .field("listen", &self.listen)
            .field("static_peers", &self.static_peers)
            .field("mdns", &self.mdns)
            .finish_non_exhaustive()
    }
}

/// `/ip4/0.0.0.0/udp/0/quic-v1`: every IPv4 interface, a port the system picks.
pub fn default_listen() -> Multiaddr {
    let mut addr = Multiaddr::empty();
    addr.push(libp2p::multiaddr::Protocol::Ip4(
        std::net::Ipv4Addr::UNSPECIFIED,
    ));
    addr.push(libp2p::multiaddr::Protocol::Udp(0));
    addr.push(libp2p::multiaddr::Protocol::QuicV1);
    addr
}

/// Behaviour that only tests want.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Flip one byte of every blob served, to play a corrupting peer.
    pub corrupt_served_blobs: bool,
    /// Never start admission, and take the other side's admission streams without ever
    /// answering: a peer that never proves anything.
    pub skip_admission: bool,
    /// Skip our own "is the peer admitted" check before opening rpc and blob streams, to see
    /// what the other side does with a stream from a peer it has not admitted.
    pub skip_local_checks: bool,
    /// How long a connected peer may take to be admitted. Default: [`ADMISSION_DEADLINE`].
    pub admission_deadline: Option<Duration>,
    /// How long a peer that failed admission stays blocked. Default: [`BLOCK_DURATION`].
    pub block_duration: Option<Duration>,
}

/// How long a connected peer has to pass admission before it is disconnected and blocked.
pub const ADMISSION_DEADLINE: Duration = Duration::from_secs(20);
/// How long a peer that failed admission stays blocked; then it may try again.
pub const BLOCK_DURATION: Duration = Duration::from_secs(60);
/// The application score of a peer that is not admitted: below the graylist threshold.
pub(crate) const UNADMITTED_SCORE: f64 = -1000.0;

/// gossipsub's configuration for teams of 2 to 50 nodes; see the module documentation.
pub(crate) fn gossipsub_config() -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .mesh_n(4)
        .mesh_n_low(2)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .gossip_lazy(4)
        .flood_publish(true)
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_initial_delay(Duration::from_millis(100))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// gossipsub's peer-score parameters and thresholds; see the module documentation.
pub(crate) fn gossipsub_scoring() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let params = gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    (params, gossipsub::PeerScoreThresholds::default())
}

/// The QUIC transport's settings (public for the transfer benchmark).
///
/// Receive windows: the defaults (10 MB per stream, 15 MB per connection) already exceed the
/// bandwidth-delay product of a LAN (1.25 MB at 10 Gbit/s and 1 ms). See `bench/RESULTS.md`
/// for the throughput measured with these settings.
pub fn quic_config(mut config: libp2p::quic::Config) -> libp2p::quic::Config {
    config.handshake_timeout = Duration::from_secs(10);
    config.max_idle_timeout = 30_000;
    config.keep_alive_interval = Duration::from_secs(5);
    config
}
