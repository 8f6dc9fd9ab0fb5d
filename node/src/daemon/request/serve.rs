//! One connection: the handshake, `Hello` both ways, then one request, handed to the file
//! that serves its kind.

use std::sync::Arc;

use tokio::net::UnixStream;
use weft_protocol::wire::{ClientMessage, DaemonMessage, Role};

use super::super::conn::{self, ConnError, ConnReader, ConnWriter};
use super::super::shared::Shared;
use super::cache::CacheCommand;
use super::reply::send_error;
use super::{build, cache, forget, graph, query, status, team};

/// A client that does not follow the local API's flow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FlowError {
    /// Something else came before `Hello`.
    #[error("the first message must be `Hello`")]
    NoHello,
    /// A second `Hello`.
    #[error("`Hello` was already sent")]
    HelloTwice,
}

/// Serves one connection, from the handshake to the end of its request.
pub(crate) async fn serve(shared: &Arc<Shared>, stream: UnixStream) -> Result<(), ConnError> {
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let (mut reader, mut writer) = conn::handshake(stream, Role::Daemon, Role::Client).await?;
    match reader.recv::<ClientMessage>().await? {
        Some(ClientMessage::Hello { .. }) => {
            writer
                .send(&DaemonMessage::Hello {
                    binary_id: shared.config.binary_id.clone(),
                    pid: std::process::id(),
                })
                .await?;
        }
        Some(_) => return send_error(&mut writer, &FlowError::NoHello).await,
        None => return Ok(()),
    }
    let Some(request) = reader.recv::<ClientMessage>().await? else {
        return Ok(());
    };
    respond(shared, request, pid.unwrap_or(0), reader, writer).await
}

async fn respond(
    shared: &Arc<Shared>,
    request: ClientMessage,
    pid: u32,
    mut reader: ConnReader,
    mut writer: ConnWriter,
) -> Result<(), ConnError> {
    match request {
        ClientMessage::Hello { .. } => send_error(&mut writer, &FlowError::HelloTwice).await,
        ClientMessage::Build(request) => build::build(shared, request, pid, reader, writer).await,
        ClientMessage::GraphRun(request) => {
            graph::graph_run(shared, request, pid, reader, writer).await
        }
        ClientMessage::Query(request) => {
            query::query(shared, request, &mut reader, &mut writer).await
        }
        ClientMessage::Status => status::status(shared, &mut writer).await,
        ClientMessage::Peers => status::peers(shared, &mut writer).await,
        ClientMessage::CacheStats => cache::cache(shared, CacheCommand::Stats, &mut writer).await,
        ClientMessage::CacheGc { max_bytes } => {
            cache::cache(shared, CacheCommand::Gc { max_bytes }, &mut writer).await
        }
        ClientMessage::CacheVerify => cache::cache(shared, CacheCommand::Verify, &mut writer).await,
        ClientMessage::CacheForget { workspace, target } => {
            forget::forget(shared, workspace, target, pid, reader, writer).await
        }
        ClientMessage::Verdict(request) => team::verdict(shared, request, &mut writer).await,
        ClientMessage::Shutdown => {
            writer.send(&DaemonMessage::ShuttingDown).await?;
            shared.stop.notify_one();
            Ok(())
        }
    }
}
