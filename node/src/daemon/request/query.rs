//! `weft query`: the targets a pattern names, or what they depend on, one label a line.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinError;
use weft_protocol::wire::{ClientMessage, DaemonMessage, QueryRequest};

use super::super::conn::{ConnError, ConnReader, ConnWriter};
use super::super::shared::Shared;
use super::reply::send_error;
use crate::frontend::{FrontendError, LoadCancel, Workspace};

/// A query that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    /// The workspace's `weft.toml` cannot be read.
    #[error(transparent)]
    Workspace(FrontendError),
    /// The targets do not load.
    #[error(transparent)]
    Load(FrontendError),
    /// The query died.
    #[error("internal error: {0}")]
    Panicked(JoinError),
}

/// Serves a query: the answer's lines, or an error. A client that goes away cancels the
/// evaluation its query started.
pub(crate) async fn query(
    shared: &Arc<Shared>,
    query: QueryRequest,
    reader: &mut ConnReader,
    writer: &mut ConnWriter,
) -> Result<(), ConnError> {
    let cancel = LoadCancel::new();
    let mut answer = {
        let (shared, cancel) = (shared.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || answer(&shared, &query, &cancel))
    };
    let answer = tokio::select! {
        answer = &mut answer => answer,
        // A client says nothing while it waits; anything, or the end of the stream, means it
        // is gone.
        _ = reader.recv::<ClientMessage>() => {
            cancel.cancel();
            return Ok(());
        }
    };
    match answer.unwrap_or_else(|e| Err(QueryError::Panicked(e))) {
        Ok(lines) => writer.send(&DaemonMessage::Lines(lines)).await,
        Err(e) => send_error(writer, &e).await,
    }
}

/// Answers a query about a workspace's targets, on a blocking thread.
fn answer(
    shared: &Shared,
    query: &QueryRequest,
    cancel: &LoadCancel,
) -> Result<Vec<String>, QueryError> {
    let workspace = match query {
        QueryRequest::Targets { workspace, .. } | QueryRequest::Deps { workspace, .. } => {
            Workspace::open(Path::new(workspace)).map_err(QueryError::Workspace)?
        }
    };
    let loader = shared.loader(&workspace.root);
    let mut loader = loader.lock().unwrap_or_else(|p| p.into_inner());
    let labels = match query {
        QueryRequest::Targets { pattern, .. } => {
            loader.query_targets(&workspace, std::slice::from_ref(pattern), cancel)
        }
        QueryRequest::Deps { label, .. } => loader.query_deps(&workspace, label, cancel),
    }
    .map_err(QueryError::Load)?;
    Ok(labels.iter().map(ToString::to_string).collect())
}
