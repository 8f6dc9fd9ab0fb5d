//! Handshakes and frames on a QUIC stream: the async edge of `protocol::wire`.
//!
//! Frames are read exactly (the 4-byte length, then that many bytes), never past their end,
//! because raw blob bytes may follow a frame on the same stream. The length is checked against
//! the frame limit before anything is buffered for it.

use std::io;

use bytes::BytesMut;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_protocol::wire::{
    self, FrameError, HANDSHAKE_LEN, Handshake, HandshakeError, LENGTH_PREFIX, MAX_FRAME, Role,
    WireError,
};

use super::error::NetError;

/// What can go wrong reading or writing one stream.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The stream ended cleanly where a message could have started.
    Eof,
    /// The stream failed, or ended inside a message.
    Io(io::Error),
    /// The other side is not a weft peer of our version.
    Handshake(HandshakeError),
    /// A frame or the message in it is malformed.
    Wire(WireError),
}

impl StreamError {
    /// The error as a [`NetError`] about `peer`.
    pub(crate) fn into_net(self, peer: PeerId) -> NetError {
        match self {
            StreamError::Eof => NetError::NoReply { peer },
            StreamError::Io(source) => NetError::Io { peer, source },
            StreamError::Handshake(source) => NetError::Handshake { peer, source },
            StreamError::Wire(source) => NetError::Malformed { peer, source },
        }
    }

    /// Whether the peer broke the protocol (as opposed to the stream failing or ending).
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, StreamError::Handshake(_) | StreamError::Wire(_))
    }
}

impl From<io::Error> for StreamError {
    fn from(err: io::Error) -> StreamError {
        StreamError::Io(err)
    }
}

/// Appends our peer handshake and then `message`, as one frame, to `buf`.
pub(crate) fn encode_opening<T: Serialize>(
    message: &T,
    buf: &mut BytesMut,
) -> Result<(), WireError> {
    buf.extend_from_slice(&Handshake::ours(Role::Peer).encode());
    wire::write_message(message, buf)
}

/// Writes `bytes` and flushes.
pub(crate) async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Reads the other side's handshake and checks that it is a weft peer of our version. A stream
/// that ends before its first byte is [`StreamError::Eof`].
pub(crate) async fn read_handshake<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(), StreamError> {
    let mut bytes = [0u8; HANDSHAKE_LEN];
    read_exact_or_eof(stream, &mut bytes).await?;
    Handshake::decode_expecting(&bytes, Role::Peer).map_err(StreamError::Handshake)?;
    Ok(())
}

/// Reads exactly one frame and decodes the message in it. A stream that ends before the
/// frame's first byte is [`StreamError::Eof`].
pub(crate) async fn read_frame<T: DeserializeOwned, S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<T, StreamError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    read_exact_or_eof(stream, &mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(StreamError::Wire(WireError::Frame(FrameError::TooLarge {
            len: len as u64,
        })));
    }
    let mut buf = BytesMut::with_capacity(LENGTH_PREFIX + len);
    buf.extend_from_slice(&prefix);
    buf.resize(LENGTH_PREFIX + len, 0);
    stream.read_exact(&mut buf[LENGTH_PREFIX..]).await?;
    match wire::read_message(&mut buf) {
        Ok(Some(message)) => Ok(message),
        // The buffer holds the whole frame, so "need more bytes" cannot happen; treat it as
        // the malformed input it would be.
        Ok(None) => Err(StreamError::Wire(WireError::Frame(FrameError::TooLarge {
            len: len as u64,
        }))),
        Err(err) => Err(StreamError::Wire(err)),
    }
}

/// Fills `buf`, or fails with [`StreamError::Eof`] when the stream ends before the first
/// byte and with an IO error when it ends later.
async fn read_exact_or_eof<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> Result<(), StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                StreamError::Eof
            } else {
                StreamError::Io(io::ErrorKind::UnexpectedEof.into())
            });
        }
        filled += n;
    }
    Ok(())
}
