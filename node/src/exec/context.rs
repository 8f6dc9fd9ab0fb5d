//! [`ExecConfig`], how the executor runs jobs, and [`RunContext`], what every run of one
//! executor shares.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_store::Store;

use super::error::ExecError;
use super::sandbox::{self, SlotPool};
use super::strict;
use super::toolchain::find_on_path;

/// How the executor runs jobs.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The directory that holds the sandboxes: one per running job, plus emptied ones kept
    /// for reuse. It must be on the store's file system, so that inputs can be hard-linked.
    /// Created when missing. No default: the daemon puts it next to its store.
    pub sandbox_root: PathBuf,
    /// The `PATH` of every command, and where programs are looked up. The daemon's own
    /// environment is never passed on. No default: the daemon's configuration names it.
    pub path_env: String,
    /// Keep the sandbox of a failed job for inspection (its path is in the failure message).
    /// Default: `false`.
    pub keep_failed_sandboxes: bool,
    /// The strict sandbox: run every process in its own user, network, mount and pid
    /// namespaces, through util-linux `unshare` (found on `path_env`, else in `/usr/bin`), so
    /// that a job has no network and sees no other process. [`Executor::new`](super::Executor::new) fails when the
    /// kernel does not allow it. Default: `false`.
    pub strict: bool,
}

/// The most emptied sandboxes kept for reuse; more than the jobs that run at once is waste.
const MAX_IDLE_SANDBOXES: usize = 32;

/// Numbers the executors of this process, so that their sandbox names never collide.
static N_EXECUTORS: AtomicU64 = AtomicU64::new(0);

/// What every run of an executor needs, shared by all clones of its [`Executor`]: the store,
/// the configuration, the sandbox root and pool, and how processes are started.
///
/// [`Executor`]: super::Executor
pub(crate) struct RunContext {
    pub(crate) store: Store,
    pub(crate) config: ExecConfig,
    /// The canonical sandbox root, as templates render it.
    pub(crate) root: String,
    /// `<pid>.<executor number>.`: the start of every sandbox name of this executor.
    name_prefix: String,
    seq: AtomicU64,
    /// Whether the daemon runs as root, who ignores file modes: then `src/` is not made
    /// read-only, which would protect nothing.
    pub(crate) is_root: bool,
    /// Emptied sandboxes for the next runs.
    pub(crate) pool: Arc<SlotPool>,
    /// In strict mode, the `unshare` binary every process is started through.
    pub(crate) unshare: Option<PathBuf>,
}

impl RunContext {
    /// The context of a new executor that stores into `store`. Creates `config.sandbox_root`
    /// and removes the sandboxes that processes no longer alive left in it (after a crash).
    pub(crate) fn new(store: Store, mut config: ExecConfig) -> Result<RunContext, ExecError> {
        let root = &config.sandbox_root;
        fs::create_dir_all(root).map_err(|e| ExecError::io("create the sandbox root", root, e))?;
        let root = fs::canonicalize(root)
            .map_err(|e| ExecError::io("resolve the sandbox root", root, e))?;
        let root_text = root
            .to_str()
            .ok_or_else(|| ExecError::NonUtf8Path { path: root.clone() })?
            .to_owned();
        let n_stale = sandbox::remove_stale(&root)?;
        if n_stale > 0 {
            tracing::info!(root = %root.display(), n_stale, "removed stale sandboxes");
        }
        config.sandbox_root = root;
        let unshare = if config.strict {
            Some(strict::probe(&config.path_env)?)
        } else {
            None
        };
        let is_root = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        let name_prefix = format!(
            "{}.{}.",
            std::process::id(),
            N_EXECUTORS.fetch_add(1, Ordering::Relaxed)
        );
        Ok(RunContext {
            store,
            config,
            root: root_text,
            name_prefix,
            seq: AtomicU64::new(0),
            is_root,
            pool: Arc::new(SlotPool::new(MAX_IDLE_SANDBOXES)),
            unshare,
        })
    }

    /// The path of a new sandbox (not created yet), as a string.
    pub(crate) fn next_sandbox(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}/{}{seq}", self.root, self.name_prefix)
    }

    /// The program `name` (without `/`) runs: looked up on `PATH` for every command (one
    /// `stat` per directory tried), so that it is the binary [`Toolchains`] fingerprints.
    ///
    /// [`Toolchains`]: super::Toolchains
    pub(crate) fn program(&self, name: &str) -> Option<PathBuf> {
        find_on_path(name, &self.config.path_env).map(|(path, _)| path)
    }
}
