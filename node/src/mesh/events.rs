//! The mesh's vocabulary, below every task that speaks it: what it reports to the daemon
//! ([`MeshEvent`], [`PeerInfo`], [`Admission`], [`MeshStats`]) and what the stream tasks and
//! the handle ask of the swarm task ([`Command`]).

use std::time::{Duration, SystemTime};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use weft_protocol::NodeId;
use weft_protocol::wire::{GossipMessage, PeerMessage};

/// Something that happened in the mesh, for the daemon to act on.
// Events move once, through a channel; boxing the large messages would cost an allocation
// each and make them clumsier to match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum MeshEvent {
    /// A peer proved team membership; from now on it may be asked anything.
    PeerAdmitted {
        /// The peer.
        peer: PeerId,
        /// The address of our connection to it, when known.
        addr: Option<Multiaddr>,
    },
    /// An admitted peer's last connection closed.
    PeerLost {
        /// The peer.
        peer: PeerId,
    },
    /// A peer failed admission (or broke it off); it has been disconnected, and when its proof
    /// was wrong, blocked for a while.
    AdmissionFailed {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// A gossip message from an admitted team member.
    Gossip {
        /// The message's author (which may not be the peer that forwarded it).
        peer: PeerId,
        /// The message.
        msg: GossipMessage,
    },
    /// A request from an admitted peer. Send the answer on `reply`; dropping `reply` closes
    /// the stream without an answer, which the requester sees at once as an error.
    Request {
        /// The requester.
        peer: PeerId,
        /// The request.
        msg: PeerMessage,
        /// Where the answer goes.
        reply: oneshot::Sender<PeerMessage>,
    },
}

/// One peer, as [`Mesh::peers`](super::Mesh::peers) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its PeerId.
    pub peer: PeerId,
    /// Its node id (its ed25519 public key), when its PeerId holds one.
    pub node: Option<NodeId>,
    /// Our connections' remote addresses, then the addresses it says it listens on.
    pub addrs: Vec<Multiaddr>,
    /// The last round-trip time measured by ping.
    pub rtt: Option<Duration>,
    /// Where it stands in team admission.
    pub admission: Admission,
    /// When its current first connection was made; `None` when it is not connected.
    pub connected_since: Option<SystemTime>,
    /// How many corrupt blobs it served us.
    pub n_corrupt: u64,
    /// How many malformed messages it sent us.
    pub n_malformed: u64,
}

/// A peer's standing in team admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Connected; admission is running.
    Pending,
    /// It proved team membership.
    Admitted,
    /// It failed admission; it is refused for `remaining` more.
    Blocked {
        /// How long the block lasts still.
        remaining: Duration,
    },
}

/// The mesh's counters, for `weft status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Blobs fetched from peers that did not match their digest, and were rejected.
    pub corrupt_blobs: u64,
    /// Blobs fetched over the bulk lane (TLS on TCP) rather than QUIC.
    pub bulk_blobs: u64,
    /// Peers admitted.
    pub admissions_ok: u64,
    /// Admissions that failed (a wrong proof, a refusal, or one that broke off).
    pub admissions_failed: u64,
    /// Bytes received on weft's own streams (blobs and rpc answers).
    pub bytes_in: u64,
    /// Bytes sent on weft's own streams.
    pub bytes_out: u64,
    /// Malformed messages received from peers.
    pub malformed_messages: u64,
    /// Streams refused because their peer was not admitted.
    pub refused_streams: u64,
    /// Events dropped because the daemon did not drain the event channel.
    pub events_dropped: u64,
}

/// What the stream tasks and the handle ask of the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish a gossip message.
    Publish(GossipMessage),
    /// Report the listen addresses.
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    /// Dial an address once.
    Dial(Multiaddr),
    /// We checked `peer`'s proof: stop gossipsub ignoring it, then ack.
    Accepted {
        peer: PeerId,
        ack: oneshot::Sender<()>,
    },
    /// Admission with `peer` completed on both sides.
    Admitted { peer: PeerId },
    /// Admission with `peer` failed; `block` when its proof was wrong or it refused ours.
    AdmissionFailed {
        peer: PeerId,
        reason: String,
        block: bool,
    },
}
