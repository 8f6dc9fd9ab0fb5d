//! `weft cache forget TARGET`: drops the action-cache entries of the targets a label or
//! pattern names, here only (each target's own job, not its deps'). The engine forgets
//! them too, and no build replays the last one's results afterwards.
//!
//! The targets are loaded and lowered as for a build, under the workspace's build lock, so
//! the job ids are the ones a build would look up.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinError;
use tracing::info;
use weft_protocol::wire::{CacheReport, DaemonMessage, ForgotEntry};
use weft_store::StoreError;

use super::super::conn::{ConnError, ConnReader, ConnWriter};
use super::super::shared::Shared;
use super::build::{BuildError, plan_build};
use super::lock::lock;
use super::reply::send_error;
use crate::frontend::{LoadCancel, Workspace};

/// A forget that cannot be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForgetError {
    /// The targets cannot be loaded or lowered.
    #[error(transparent)]
    Plan(BuildError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command died.
    #[error("internal error: {0}")]
    Panicked(JoinError),
}

/// Serves `weft cache forget`: one entry of the report per target named.
pub(crate) async fn forget(
    shared: &Arc<Shared>,
    workspace: String,
    target: String,
    pid: u32,
    mut reader: ConnReader,
    mut writer: ConnWriter,
) -> Result<(), ConnError> {
    let workspace = match Workspace::open(Path::new(&workspace)) {
        Ok(workspace) => workspace,
        Err(e) => return send_error(&mut writer, &BuildError::Workspace(e)).await,
    };
    let Some(_guard) = lock(shared, &workspace.root, pid, true, &mut reader, &mut writer).await?
    else {
        return Ok(());
    };
    let answer = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || forget_targets(&shared, &workspace, target)).await
    };
    match answer.unwrap_or_else(|e| Err(ForgetError::Panicked(e))) {
        Ok(entries) => {
            writer
                .send(&DaemonMessage::Cache(CacheReport::Forgot(entries)))
                .await
        }
        Err(e) => send_error(&mut writer, &e).await,
    }
}

/// Loads the targets, removes their jobs' entries, and tells the engine; on a blocking
/// thread.
fn forget_targets(
    shared: &Shared,
    workspace: &Workspace,
    target: String,
) -> Result<Vec<ForgotEntry>, ForgetError> {
    let (graph, lowered) =
        plan_build(shared, workspace, &[target], &LoadCancel::new()).map_err(ForgetError::Plan)?;
    let mut entries = Vec::with_capacity(graph.requested.len());
    for label in &graph.requested {
        let Some(job) = lowered.ids.get(label).copied() else {
            continue;
        };
        let removed = shared.store.remove_action(job)?;
        entries.push(ForgotEntry {
            label: label.to_string(),
            job,
            removed,
        });
    }
    let jobs: Vec<_> = entries
        .iter()
        .filter(|e| e.removed)
        .map(|e| e.job)
        .collect();
    if !jobs.is_empty() {
        shared.store.flush()?;
        info!(n_removed = jobs.len(), "forgot action-cache entries");
        shared.engine.forget(jobs);
    }
    Ok(entries)
}
