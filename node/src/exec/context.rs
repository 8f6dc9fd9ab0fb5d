//! [`ExecConfig`], how the executor runs jobs, and [`RunContext`], what every run of one
//! executor shares.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_store::Store;

use super::error::ExecError;
use super::hermetic::Hermetic;
use super::limits::JobLimits;
use super::sandbox::{self, SlotPool};
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
    /// What one job may use (wall time, memory, processes, output size). Default:
    /// [`JobLimits::default`].
    pub limits: JobLimits,
    /// Test-only: run jobs in the weak sandbox even where the hermetic one works, to test that
    /// path. Default: `false`.
    #[doc(hidden)]
    pub test_weak_sandbox: bool,
}

impl ExecConfig {
    /// The defaults, with the two settings that have none.
    pub fn new(sandbox_root: PathBuf, path_env: String) -> ExecConfig {
        ExecConfig {
            sandbox_root,
            path_env,
            keep_failed_sandboxes: false,
            limits: JobLimits::default(),
            test_weak_sandbox: false,
        }
    }
}

/// How this executor's jobs are sandboxed, as the probe at start found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// Every job that runs a process gets its own user, mount, pid, network, IPC and UTS
    /// namespaces and a root of its own (see ARCHITECTURE.md, "The sandbox"). Peers' jobs are
    /// taken.
    Hermetic,
    /// The kernel forbids namespaces here (or a test asked for this): jobs run as plain
    /// processes of the daemon's user in a sandbox directory, which is only a convention; they
    /// can read what the daemon's user can and use the network. Peers' jobs are refused.
    Weak {
        /// Why the hermetic sandbox could not be had.
        reason: String,
    },
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
    /// The hermetic sandbox, when this machine gives it.
    pub(crate) hermetic: Option<Hermetic>,
    /// What the probe found.
    pub(crate) mode: SandboxMode,
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
        let probed = if config.test_weak_sandbox {
            Err("the daemon was started with `--test-weak-sandbox`".to_owned())
        } else {
            Hermetic::probe(&config.sandbox_root, &config.path_env, &config.limits)
        };
        let (hermetic, mode) = match probed {
            Ok(hermetic) => {
                tracing::debug!(
                    counts_processes = hermetic.counts_processes(),
                    "the hermetic sandbox works"
                );
                (Some(hermetic), SandboxMode::Hermetic)
            }
            Err(reason) => {
                tracing::warn!(%reason, "no hermetic sandbox: jobs run without namespaces, and peers' jobs are refused");
                (None, SandboxMode::Weak { reason })
            }
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
            hermetic,
            mode,
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
