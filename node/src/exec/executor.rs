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

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::Instrument;
use weft_protocol::{ActionResult, Digest, Job, JobId, NodeId};
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
    /// that a job has no network and sees no other process. [`Executor::new`] fails when the
    /// kernel does not allow it. Default: `false`.
    pub strict: bool,
}

/// Runs jobs in sandboxes. A cheap handle: clones share one executor. `Send + Sync`.
#[derive(Clone)]
pub struct Executor {
    pub(crate) inner: Arc<Inner>,
}

/// What all clones of an [`Executor`] share.
pub(crate) struct Inner {
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

/// One job to run.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    /// The job's id.
    pub id: JobId,
    /// The job.
    pub job: &'a Job,
    /// The output tree (`ActionResult::output_tree`) of each of the job's deps; every dep of
    /// the job must be here, and its tree in the store.
    pub deps: &'a [(JobId, Digest)],
    /// The longest the commands may run together; the whole process group of the running
    /// command is killed when it is over.
    pub timeout: Option<Duration>,
    /// This node, recorded as the result's `executed_by`.
    pub node: NodeId,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The result, unsigned (the caller signs it):
    /// - `exit_code`: that of the last command that ran (0 for `cat`); -1 when a signal or the
    ///   executor ended the job (timeout, missing tool, missing out, escaping output);
    /// - `outputs` and `output_tree`: what was left under `out/` (empty for a job whose
    ///   command failed: its outputs are not collected);
    /// - `stdout` and `stderr`: the digests of the blobs holding the commands' streams;
    /// - `duration_ms`: the time the commands ran, without sandbox set-up and collection.
    pub result: ActionResult,
    /// Why the job failed; `None` when it succeeded.
    pub failure: Option<CmdFailure>,
}

impl RunOutcome {
    /// Whether the job succeeded.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdFailure {
    /// The command that failed, as an index into `Job::cmds`; `cmds.len()` for a failure found
    /// after all commands ran (a missing or escaping output).
    pub cmd_index: usize,
    /// The failing `exec` command's argv, rendered; empty for `cat` and for failures after
    /// the commands.
    pub argv: Vec<String>,
    /// The process's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// What went wrong, such as `exited with code 1`, `killed by signal 9`,
    /// `timed out after 5s`, ``declared out `x` is missing`` or
    /// ``cannot start `cc`: not found on PATH (/usr/bin:/bin)``.
    pub message: String,
    /// The last lines of the job's stderr (at most 20 lines and 4 KiB).
    pub stderr_tail: String,
}

impl std::fmt::Display for CmdFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.argv.is_empty() {
            write!(f, "command {}: {}", self.cmd_index, self.message)
        } else {
            write!(
                f,
                "command {} (`{}`): {}",
                self.cmd_index,
                self.argv.join(" "),
                self.message
            )
        }
    }
}

/// The most emptied sandboxes kept for reuse; more than the jobs that run at once is waste.
const MAX_IDLE_SANDBOXES: usize = 32;

/// Numbers the executors of this process, so that their sandbox names never collide.
static N_EXECUTORS: AtomicU64 = AtomicU64::new(0);

impl Executor {
    /// An executor that stores into `store`. Creates `config.sandbox_root` and removes the
    /// sandboxes that processes no longer alive left in it (after a crash).
    pub fn new(store: Store, mut config: ExecConfig) -> Result<Executor, ExecError> {
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
        Ok(Executor {
            inner: Arc::new(Inner {
                store,
                config,
                root: root_text,
                name_prefix,
                seq: AtomicU64::new(0),
                is_root,
                pool: Arc::new(SlotPool::new(MAX_IDLE_SANDBOXES)),
                unshare,
            }),
        })
    }

    /// The configuration, with `sandbox_root` made canonical.
    pub fn config(&self) -> &ExecConfig {
        &self.inner.config
    }

    /// Runs `req.job` in a fresh sandbox. A job's own failure is an `Ok` outcome with
    /// `failure` set; an `Err` means the machine could not run it. Dropping the future cancels
    /// the run: the processes are killed and the sandbox is removed.
    pub async fn run(&self, req: RunRequest<'_>) -> Result<RunOutcome, ExecError> {
        let span = tracing::debug_span!("exec", id = %req.id.short(12), job = %req.job.name);
        super::run::run(&self.inner, req).instrument(span).await
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
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
