//! A framed connection on the daemon's Unix socket: the handshake, then one message per frame.

use std::io;

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use weft_protocol::wire::{self, HANDSHAKE_LEN, Handshake, HandshakeError, Role, WireError};

/// The reading half of a connection.
#[derive(Debug)]
pub(crate) struct ConnReader {
    stream: OwnedReadHalf,
    buf: BytesMut,
}

/// The writing half of a connection.
#[derive(Debug)]
pub(crate) struct ConnWriter {
    stream: OwnedWriteHalf,
    buf: BytesMut,
}

/// A connection that failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed.
    #[error("connection to the daemon failed: {0}")]
    Io(#[from] io::Error),
    /// The other side is not a weft of our version.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The other side sent a bad frame or message.
    #[error("the other side sent a bad message: {0}")]
    Wire(#[from] WireError),
    /// The other side closed the connection in the middle of a frame.
    #[error("the connection closed in the middle of a message")]
    Truncated,
}

/// Opens a connection: sends our handshake as `ours`, and checks that the other side is
/// `theirs` of the same protocol version.
pub(crate) async fn handshake(
    stream: UnixStream,
    ours: Role,
    theirs: Role,
) -> Result<(ConnReader, ConnWriter), ConnError> {
    let (mut read, mut write) = stream.into_split();
    write.write_all(&Handshake::ours(ours).encode()).await?;
    let mut head = [0u8; HANDSHAKE_LEN];
    read.read_exact(&mut head).await?;
    Handshake::decode_expecting(&head, theirs)?;
    Ok((
        ConnReader {
            stream: read,
            buf: BytesMut::with_capacity(8 * 1024),
        },
        ConnWriter {
            stream: write,
            buf: BytesMut::with_capacity(8 * 1024),
        },
    ))
}

impl ConnReader {
    /// The next message, or `None` when the other side closed the connection cleanly.
    pub(crate) async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ConnError> {
        loop {
            if let Some(message) = wire::read_message(&mut self.buf)? {
                return Ok(Some(message));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnError::Truncated)
                };
            }
        }
    }
}

impl ConnWriter {
    /// Sends one message.
    pub(crate) async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ConnError> {
        self.queue(message)?;
        self.flush().await
    }

    /// Adds a message to the outgoing buffer without writing it yet.
    pub(crate) fn queue<T: Serialize>(&mut self, message: &T) -> Result<(), ConnError> {
        wire::write_message(message, &mut self.buf)?;
        Ok(())
    }

    /// Writes every queued message.
    pub(crate) async fn flush(&mut self) -> Result<(), ConnError> {
        self.stream.write_all(&self.buf).await?;
        self.buf.clear();
        Ok(())
    }
}
