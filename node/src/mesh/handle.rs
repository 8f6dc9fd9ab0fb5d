//! [`Mesh`], the handle the daemon holds, and the types it hands out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{oneshot, watch};
use weft_protocol::wire::{GossipMessage, InlineBlob, PeerMessage};
use weft_protocol::{Digest, NodeId};

use super::error::{FetchError, NetError};
use super::state::Shared;
use super::swarm::Command;
use super::{blob, rpc};

/// A running mesh node. Cheap to clone; every clone drives the same node.
///
/// The node stops when [`Mesh::shutdown`] is called or when the last clone is dropped.
#[derive(Clone)]
pub struct Mesh {
    pub(crate) shared: Arc<Shared>,
    pub(crate) guard: Arc<ShutdownGuard>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("local_peer", &self.shared.local)
            .finish_non_exhaustive()
    }
}

/// Stops the node's tasks when the last [`Mesh`] clone goes.
pub(crate) struct ShutdownGuard {
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) stopped: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

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

/// One peer, as [`Mesh::peers`] shows it.
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

impl Mesh {
    /// This node's PeerId.
    pub fn local_peer(&self) -> PeerId {
        self.shared.local
    }

    /// The addresses this node listens on.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if !self.shared.command(Command::ListenAddrs(tx)) {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Publishes `msg` to the team, fire and forget. With no admitted peer to send it to, it is
    /// kept for a few seconds and published when one is admitted.
    pub fn publish(&self, msg: GossipMessage) {
        self.shared.command(Command::Publish(msg));
    }

    /// Sends `msg` to the admitted `peer` and waits up to `timeout` for its answer.
    pub async fn request(
        &self,
        peer: PeerId,
        msg: PeerMessage,
        timeout: Duration,
    ) -> Result<PeerMessage, NetError> {
        rpc::request(&self.shared, peer, msg, timeout).await
    }

    /// Fetches the blob `digest` from the admitted `peer` into the store, verified; returns its
    /// size.
    pub async fn fetch_blob(&self, peer: PeerId, digest: Digest) -> Result<u64, FetchError> {
        blob::fetch_blob(&self.shared, peer, digest, None).await
    }

    /// Fetches the blob `digest` of `size` bytes from the admitted `peer`, verified; a large
    /// one goes over the bulk lane when both sides have it.
    pub async fn fetch_blob_sized(
        &self,
        peer: PeerId,
        digest: Digest,
        size: u64,
    ) -> Result<u64, FetchError> {
        blob::fetch_blob(&self.shared, peer, digest, Some(size)).await
    }

    /// Fetches the tree `tree` from the admitted `peer`: its tree blobs and every file blob
    /// the store lacks, several at a time.
    pub async fn fetch_tree(&self, peer: PeerId, tree: Digest) -> Result<(), FetchError> {
        blob::fetch_tree(&self.shared, peer, tree).await
    }

    /// Up to `budget` bytes of the stored tree `tree` (tree blobs first, then the small files
    /// that fit), to send inside a message. Blocking: it reads the store.
    pub fn inline_blobs(&self, tree: &Digest, budget: usize) -> Vec<InlineBlob> {
        blob::inline_blobs(&self.shared, tree, budget)
    }

    /// Stores the blobs `peer` sent inline (at most `limit` bytes in all), each verified
    /// against its digest. More bytes than that, or a blob that does not match, is the
    /// peer's fault: nothing unverified is stored.
    pub async fn store_inline(
        &self,
        peer: PeerId,
        blobs: Vec<InlineBlob>,
        limit: usize,
    ) -> Result<(), FetchError> {
        blob::store_inline(&self.shared, peer, blobs, limit).await
    }

    /// Every peer connected, or blocked, sorted by PeerId.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peer_infos()
    }

    /// Dials `addr` once (static peers are re-dialed by themselves).
    pub async fn dial(&self, addr: Multiaddr) {
        self.shared.command(Command::Dial(addr));
    }

    /// The mesh's counters.
    pub fn stats(&self) -> MeshStats {
        self.shared.counters.snapshot()
    }

    /// Stops the node: closes every connection and ends its tasks. Other clones of this
    /// handle fail from then on with [`NetError::Shutdown`] or similar.
    pub async fn shutdown(self) {
        let _ = self.guard.stop.send(true);
        let stopped = self
            .guard
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(stopped) = stopped {
            let _ = stopped.await;
        }
    }

    /// Opens a raw stream of `protocol` to `peer`, whatever its admission: for tests that
    /// speak a protocol badly on purpose.
    #[doc(hidden)]
    pub async fn open_raw_stream(
        &self,
        peer: PeerId,
        protocol: &'static str,
    ) -> Result<libp2p::Stream, NetError> {
        rpc::open(&self.shared, peer, libp2p::StreamProtocol::new(protocol)).await
    }

    /// Whether `peer` has passed admission on our side.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        self.shared.is_admitted(peer)
    }
}

/// The name of the gossip topic of the team `team`.
pub(crate) fn topic_name(team: &super::team::TeamId) -> String {
    format!("weft/{team}/v2")
}
