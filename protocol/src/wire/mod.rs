//! Everything that crosses a process boundary, and how it is framed and encoded.
//!
//! Protocol flow, on every connection (client↔daemon over a Unix socket, peer↔peer over a QUIC
//! stream):
//!
//! 1. each side writes its 12-byte [`Handshake`] and reads the other's; a different magic or
//!    [`PROTOCOL_VERSION`] ends the connection with a clear error, before any message is
//!    decoded;
//! 2. then each message travels as one frame: a 4-byte big-endian length, then the message
//!    encoded by [`encode`];
//! 3. blob bytes never travel inside frames: a frame announces a blob, and its bytes follow
//!    raw on the stream, checked against the digest as they arrive.

mod client;
mod codec;
mod frame;
mod handshake;
mod peer;

pub use client::{
    BuildEvent, BuildRequest, BuildSummary, CacheReport, CacheSource, ClientMessage, DaemonMessage,
    DaemonStatus, ErrorReport, FailureReport, ForgotEntry, GraphRunRequest, MeshStatus, PeerReport,
    QueryRequest, StoreReport, VerdictReport, VerdictRequest,
};
pub use codec::{CodecError, decode, encode};
pub use frame::{FrameError, WireError, decode_frame, encode_frame, read_message, write_message};
pub use frame::{LENGTH_PREFIX, MAX_FRAME};
pub use handshake::{HANDSHAKE_LEN, Handshake, HandshakeError, MAGIC, PROTOCOL_VERSION, Role};
pub use peer::{
    GossipMessage, InlineBlob, Lease, LeaseDep, LoadBeacon, PeerMessage, SharePolicy, StealRequest,
};
