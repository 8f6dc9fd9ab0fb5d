//! Requests between admitted peers, `/weft/rpc/1`: one request, one response, one stream.
//!
//! Protocol flow:
//!
//! 1. the client opens a stream and sends its [`Handshake`](weft_protocol::wire::Handshake)
//!    and one [`PeerMessage`] frame;
//! 2. the server serves the stream only when the client is admitted (waiting a moment when its
//!    admission is still running); otherwise it drops the stream without a word;
//! 3. the server sends its handshake at once: from then on the request counts as taken. The
//!    client opens a new stream and sends again (up to [`MAX_ATTEMPTS`] times) only when no
//!    handshake came back: libp2p-stream drops inbound streams that arrive faster than they
//!    are accepted, and such a stream was never seen by the server;
//! 4. the server reads the client's handshake and frame, and hands the message to the daemon
//!    as a [`MeshEvent::Request`] with a one-shot reply channel;
//! 5. when the daemon replies, the server sends the reply frame and finishes the stream; when
//!    the daemon drops the reply channel, the server finishes the stream without an answer,
//!    which the client sees as [`NetError::NoReply`] at once.
//!
//! The client gives up after the caller's timeout. A malformed handshake or frame closes the
//! stream and is counted against the peer; it never panics the node.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::AsyncWriteExt;
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::oneshot;
use tracing::Instrument;
use weft_protocol::wire::{self, Handshake, PeerMessage, Role};

use super::error::NetError;
use super::events::MeshEvent;
use super::frames::{self, StreamError};
use super::state::{Counters, Gate, Shared};

/// The rpc protocol's name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/rpc/1");

/// How long the server waits for a request frame after the stream opens.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for the daemon's reply before giving up on a request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a stream from a peer whose admission is still running waits for the outcome.
pub(crate) const GATE_WAIT: Duration = Duration::from_secs(5);
/// How many streams a client opens for one request whose streams the server never took.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// Sends `message` to `peer` and waits up to `timeout` for its answer.
pub(crate) async fn request(
    shared: &Shared,
    peer: PeerId,
    message: PeerMessage,
    timeout: Duration,
) -> Result<PeerMessage, NetError> {
    if !shared.hooks.skip_local_checks && !shared.is_admitted(&peer) {
        return Err(NetError::NotAdmitted { peer });
    }
    let mut opening = BytesMut::new();
    frames::encode_opening(&message, &mut opening)
        .map_err(|source| NetError::Malformed { peer, source })?;
    let exchange = async {
        let mut stream = open_exchange(shared, peer, PROTOCOL, &opening).await?;
        let answer: PeerMessage = frames::read_frame(&mut stream).await.map_err(|e| {
            if e.is_malformed() {
                shared.penalise_malformed(&peer);
            }
            e.into_net(peer)
        })?;
        Ok(answer)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(NetError::Timeout {
            peer,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Opens a stream of `protocol` to `peer`, sends `opening` (our handshake and request) and
/// reads the server's handshake; opens another stream when the server never took this one.
/// Returns the stream, positioned at the server's answer.
pub(crate) async fn open_exchange(
    shared: &Shared,
    peer: PeerId,
    protocol: StreamProtocol,
    opening: &[u8],
) -> Result<Stream, NetError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut stream = open(shared, peer, protocol.clone()).await?;
        let sent = frames::write_all(&mut stream, opening).await;
        let taken = match sent {
            // Our side of the stream is not finished here: libp2p-quic reports end-of-stream
            // on every read after a finish that failed (the server may already have answered
            // and stopped reading), hiding the answer. The server reads exactly one frame.
            Ok(()) => frames::read_handshake(&mut stream).await,
            Err(err) => Err(StreamError::Io(err)),
        };
        match taken {
            Ok(()) => {
                Counters::bump(&shared.counters.bytes_out, opening.len() as u64);
                return Ok(stream);
            }
            Err(err @ (StreamError::Eof | StreamError::Io(_))) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(%peer, %protocol, attempt, error = ?err, "stream not taken; again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            Err(err) => {
                if err.is_malformed() {
                    shared.penalise_malformed(&peer);
                }
                return Err(err.into_net(peer));
            }
        }
    }
}

/// Opens a stream of `protocol` to `peer`.
pub(crate) async fn open(
    shared: &Shared,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<Stream, NetError> {
    shared
        .control
        .clone()
        .open_stream(peer, protocol)
        .await
        .map_err(|e| NetError::Open {
            peer,
            reason: e.to_string(),
        })
}

/// Lets a stream from `peer` through when it is admitted, and says so with our handshake.
/// Returns `false` (and the stream should be dropped) otherwise.
pub(crate) async fn take_stream(shared: &Shared, peer: PeerId, stream: &mut Stream) -> bool {
    if shared.gate(&peer, GATE_WAIT).await == Gate::Refused {
        Counters::bump(&shared.counters.refused_streams, 1);
        tracing::info!(%peer, "refused a stream from a peer that is not admitted");
        return false;
    }
    frames::write_all(stream, &Handshake::ours(Role::Peer).encode())
        .await
        .is_ok()
}

/// Serves one rpc stream from `peer`.
pub(crate) async fn serve(shared: Arc<Shared>, peer: PeerId, mut stream: Stream) {
    let span = tracing::debug_span!("rpc", %peer);
    async {
        if !take_stream(&shared, peer, &mut stream).await {
            return;
        }
        let read = async {
            frames::read_handshake(&mut stream).await?;
            frames::read_frame::<PeerMessage, _>(&mut stream).await
        };
        let message = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(message)) => message,
            Ok(Err(err)) => {
                if err.is_malformed() {
                    shared.penalise_malformed(&peer);
                    tracing::warn!(%peer, error = ?err, "malformed rpc request");
                } else if !matches!(err, StreamError::Eof) {
                    tracing::debug!(%peer, error = ?err, "rpc stream failed");
                }
                let _ = stream.close().await;
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "rpc request did not arrive in time");
                return;
            }
        };
        let (reply, answer) = oneshot::channel();
        let event = MeshEvent::Request {
            peer,
            msg: message,
            reply,
        };
        if shared.events.send(event).await.is_err() {
            return;
        }
        match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
            Ok(Ok(answer)) => {
                let mut bytes = BytesMut::new();
                if let Err(err) = wire::write_message(&answer, &mut bytes) {
                    tracing::error!(%peer, %err, "cannot encode an rpc answer");
                } else if frames::write_all(&mut stream, &bytes).await.is_ok() {
                    Counters::bump(&shared.counters.bytes_out, bytes.len() as u64);
                }
            }
            Ok(Err(_)) => tracing::debug!(%peer, "the request's handler dropped its reply"),
            Err(_) => tracing::warn!(%peer, "the request's handler did not reply in time"),
        }
        let _ = stream.close().await;
    }
    .instrument(span)
    .await;
}
