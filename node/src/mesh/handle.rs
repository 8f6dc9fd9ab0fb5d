//! [`Mesh`], the handle the daemon holds.

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{oneshot, watch};
use weft_protocol::Digest;
use weft_protocol::wire::{GossipMessage, InlineBlob, PeerMessage};

use super::error::{FetchError, NetError};
use super::events::{Command, MeshStats, PeerInfo};
use super::state::Shared;
use super::team::TeamId;
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
}

/// The name of the gossip topic of the team `team`.
pub(crate) fn topic_name(team: &TeamId) -> String {
    format!("weft/{team}/v2")
}
