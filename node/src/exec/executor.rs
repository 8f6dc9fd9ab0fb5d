//! [`Executor`]: runs one job in a fresh sandbox and collects its outputs into the store.
//!
//! Run flow:
//!
//! 1. A sandbox is taken from the pool of emptied ones, or made, and filled (see the `sandbox`
//!    module for its layout and reuse): inputs are materialized from the store (hard links,
//!    else copies) with their executable bits, `src/` is made read-only, each dep's output
//!    tree is materialized.
//! 2. The commands run in order; the first failure stops the job. `exec` starts a process in
//!    its own process group with a cleared environment (see the `run` module for the exact
//!    rules); `cat` writes rendered text under `out/`.
//! 3. Everything under `out/` is put into the store as one tree (symlinks are not followed, and
//!    one that leads out of `out/` fails the job), the declared outs are checked, and stdout
//!    and stderr are stored as blobs.
//! 4. A successful job's sandbox is emptied and pooled; a failed job's is deleted, or kept
//!    when so configured.
//!
//! A job made only of `cat` commands skips all of this: it runs no process and reads
//! nothing, so its outputs are built in memory and stored as the same tree.
//!
//! Filesystem work runs on tokio's blocking pool, in two steps per job (set-up, collection).
//! Dropping the future of [`Executor::run`] cancels the run: the running command's whole
//! process group is killed and the sandbox is deleted.

use std::sync::Arc;

use tracing::Instrument;
use weft_store::Store;

use super::context::{ExecConfig, RunContext, SandboxMode};
use super::error::ExecError;
use super::request::{RunOutcome, RunRequest};

/// Runs jobs in sandboxes. A cheap handle: clones share one executor. `Send + Sync`.
#[derive(Clone)]
pub struct Executor {
    context: Arc<RunContext>,
}

impl Executor {
    /// An executor that stores into `store`. Creates `config.sandbox_root` and removes the
    /// sandboxes that processes no longer alive left in it (after a crash).
    pub fn new(store: Store, config: ExecConfig) -> Result<Executor, ExecError> {
        Ok(Executor {
            context: Arc::new(RunContext::new(store, config)?),
        })
    }

    /// The configuration, with `sandbox_root` made canonical.
    pub fn config(&self) -> &ExecConfig {
        &self.context.config
    }

    /// How jobs are sandboxed here, as the probe at start found.
    pub fn sandbox_mode(&self) -> &SandboxMode {
        &self.context.mode
    }

    /// Whether jobs run in the hermetic sandbox (their own namespaces and root). When false,
    /// jobs run in the weak one, and peers' jobs are refused: the daemon must not take them.
    pub fn hermetic(&self) -> bool {
        self.context.hermetic.is_some()
    }

    /// Runs `req.job` in a fresh sandbox. A job's own failure is an `Ok` outcome with
    /// `failure` set; an `Err` means the machine could not run it. Dropping the future cancels
    /// the run: the processes are killed and the sandbox is removed.
    pub async fn run(&self, req: RunRequest<'_>) -> Result<RunOutcome, ExecError> {
        let span = tracing::debug_span!("exec", id = %req.id.short(12), job = %req.job.name);
        super::run::run(&self.context, req).instrument(span).await
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.context.config)
            .finish_non_exhaustive()
    }
}
