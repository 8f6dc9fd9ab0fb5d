//! The cache commands: the store's figures (`weft cache stats`), a gc that also prunes the
//! kept links of published files (`weft cache gc`), and a scrub (`weft cache verify`).

use std::sync::Arc;

use tokio::task::JoinError;
use tracing::info;
use weft_protocol::wire::{CacheReport, DaemonMessage};
use weft_store::StoreError;

use super::super::conn::{ConnError, ConnWriter};
use super::super::shared::Shared;
use super::reply::send_error;

/// A cache command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheCommand {
    /// The store's figures.
    Stats,
    /// Shrink the store to at most `max_bytes`.
    Gc {
        /// The size cap, in bytes.
        max_bytes: u64,
    },
    /// Rehash every blob and rebuild the index.
    Verify,
}

/// A cache command that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command died.
    #[error("internal error: {0}")]
    Panicked(JoinError),
}

/// Serves a cache command: its report, or an error.
pub(crate) async fn cache(
    shared: &Arc<Shared>,
    command: CacheCommand,
    writer: &mut ConnWriter,
) -> Result<(), ConnError> {
    let shared = shared.clone();
    let answer = tokio::task::spawn_blocking(move || run(&shared, command)).await;
    match answer.unwrap_or_else(|e| Err(CacheError::Panicked(e))) {
        Ok(report) => writer.send(&DaemonMessage::Cache(report)).await,
        Err(e) => send_error(writer, &e).await,
    }
}

/// Runs a cache command, on a blocking thread.
fn run(shared: &Shared, command: CacheCommand) -> Result<CacheReport, CacheError> {
    match command {
        CacheCommand::Gc { max_bytes } => {
            // Kept links of copies no longer in any `weft-out/` hold space only the daemon
            // can free: `gc` frees it.
            let n_kept = shared.kept.prune();
            info!(
                n_kept,
                "removed the kept links of published files that are gone"
            );
            let report = shared.store.gc(max_bytes)?;
            Ok(CacheReport::Gc {
                n_removed: report.n_evicted,
                bytes_freed: report.bytes_evicted,
                after: shared.store_report(),
            })
        }
        CacheCommand::Verify => {
            let report = shared.store.verify()?;
            Ok(CacheReport::Verify {
                n_checked: report.n_checked,
                n_corrupt: report.corrupt.len() as u64,
                n_index_fixed: report.n_index_added + report.n_index_removed,
            })
        }
        CacheCommand::Stats => Ok(CacheReport::Stats(shared.store_report())),
    }
}
