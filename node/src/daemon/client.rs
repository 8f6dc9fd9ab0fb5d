//! The client side of the local API, for the `weft` binary.
//!
//! Finding, starting and replacing the daemon is the binary's business; this only speaks the
//! protocol once a socket is connected.

use std::path::Path;

use tokio::net::UnixStream;
use weft_protocol::wire::{ClientMessage, DaemonMessage, Role};

use super::conn::{self, ConnError, ConnReader, ConnWriter};

/// A connection to a daemon, after the greeting.
#[derive(Debug)]
pub struct Client {
    reader: ConnReader,
    writer: ConnWriter,
    /// The daemon's binary id.
    pub daemon_binary_id: String,
    /// The daemon's pid.
    pub daemon_pid: u32,
}

impl Client {
    /// Connects to the daemon at `socket` and exchanges greetings.
    pub async fn connect(socket: &Path, binary_id: &str) -> Result<Client, ConnError> {
        let stream = UnixStream::connect(socket).await?;
        let (mut reader, mut writer) = conn::handshake(stream, Role::Client, Role::Daemon).await?;
        writer
            .send(&ClientMessage::Hello {
                binary_id: binary_id.to_owned(),
            })
            .await?;
        match reader.recv::<DaemonMessage>().await? {
            Some(DaemonMessage::Hello { binary_id, pid }) => Ok(Client {
                reader,
                writer,
                daemon_binary_id: binary_id,
                daemon_pid: pid,
            }),
            Some(_) => Err(ConnError::Io(std::io::Error::other(
                "the daemon answered the greeting with something else",
            ))),
            None => Err(ConnError::Truncated),
        }
    }

    /// Sends a request.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ConnError> {
        self.writer.send(message).await
    }

    /// The daemon's next message, or `None` when it closed the connection.
    pub async fn recv(&mut self) -> Result<Option<DaemonMessage>, ConnError> {
        self.reader.recv().await
    }
}
