//! The mesh's errors: one enum per operation.

use std::io;

use libp2p::PeerId;
use weft_protocol::Digest;
use weft_protocol::wire::{HandshakeError, WireError};
use weft_store::StoreError;

/// The mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The QUIC transport or the behaviours could not be set up.
    #[error("cannot set up libp2p: {0}")]
    Setup(String),
    /// A listen address is not one we can listen on.
    #[error("cannot listen on `{addr}`: {reason}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// Why not.
        reason: String,
    },
}

/// A request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The peer has not passed team admission (or failed it), so we talk to it about nothing.
    #[error("peer `{peer}` is not an admitted team member")]
    NotAdmitted {
        /// The peer.
        peer: PeerId,
    },
    /// No stream to the peer could be opened.
    #[error("cannot open a stream to peer `{peer}`: {reason}")]
    Open {
        /// The peer.
        peer: PeerId,
        /// Why not.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("peer `{peer}` did not answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The time allowed.
        timeout_ms: u64,
    },
    /// The peer closed the stream without an answer (its handler dropped the request, or it
    /// refused us).
    #[error("peer `{peer}` closed the stream without an answer")]
    NoReply {
        /// The peer.
        peer: PeerId,
    },
    /// The stream failed.
    #[error("stream to peer `{peer}` failed: {source}")]
    Io {
        /// The peer.
        peer: PeerId,
        /// The underlying error.
        source: io::Error,
    },
    /// The peer sent something that is not a weft message of our version.
    #[error("peer `{peer}` sent a bad handshake: {source}")]
    Handshake {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        source: HandshakeError,
    },
    /// The peer sent a malformed frame.
    #[error("peer `{peer}` sent a malformed message: {source}")]
    Malformed {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        source: WireError,
    },
    /// The mesh has shut down.
    #[error("the mesh has shut down")]
    Shutdown,
}

/// A blob or tree fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer does not hold the blob.
    #[error("peer `{peer}` does not hold blob `{digest}`")]
    Missing {
        /// The peer.
        peer: PeerId,
        /// The blob.
        digest: Digest,
    },
    /// The bytes the peer sent do not hash to the digest (or are not the size it announced);
    /// nothing was stored and the peer has been penalised.
    #[error("peer `{peer}` sent corrupt bytes for blob `{digest}`; they were rejected")]
    Corrupt {
        /// The peer.
        peer: PeerId,
        /// The blob.
        digest: Digest,
    },
    /// A tree blob does not decode, or the tree is too deep or too large.
    #[error("tree blob `{digest}` from peer `{peer}` is not a valid tree: {reason}")]
    BadTree {
        /// The peer.
        peer: PeerId,
        /// The tree blob.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// Talking to the peer failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The local store failed.
    #[error("cannot store blob `{digest}`: {source}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The underlying error.
        source: StoreError,
    },
}
