//! [`ExecError`]: the executor's infrastructure trouble.
//!
//! A job that fails on its own (a command exits non-zero, a declared out is missing, a tool is
//! not installed) is not an error here: it is a [`CmdFailure`](super::CmdFailure) in the run's
//! outcome. An `ExecError` means the machine could not run the job at all: the sandbox cannot
//! be made, the store fails, the disk is full.

use std::io;
use std::path::{Path, PathBuf};

use weft_protocol::{Digest, JobId};
use weft_store::{StoreError, is_disk_full};

/// What kept the executor from running a job, or from digesting a file.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A file system operation failed on `path`.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done, such as `create the sandbox directory`.
        action: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The disk holding `path` is full.
    #[error(
        "the disk holding `{}` is full; free space, or lower the store's size cap and run `weft cache gc`",
        path.display()
    )]
    DiskFull {
        /// The file that could not be written.
        path: PathBuf,
    },
    /// The store failed while working on `path`.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Store {
        /// What was being done, such as `materialize an input at`.
        action: &'static str,
        /// The sandbox or source path it was done for.
        path: PathBuf,
        /// The store's error.
        source: StoreError,
    },
    /// A source file to digest is not a regular file.
    #[error("source `{}` is not a regular file; only files can be job inputs", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A tool is not on the configured `PATH`.
    #[error(
        "tool `{tool}` was not found on PATH (`{path_env}`); install it, or add its directory to the daemon's PATH"
    )]
    ToolNotFound {
        /// The tool as the command names it.
        tool: String,
        /// The `PATH` that was searched.
        path_env: String,
    },
    /// The caller did not hand over the output tree of one of the job's deps.
    #[error(
        "job `{job}` depends on `{dep}`, but its run request carries no output tree for it; \
         finish or fetch the dependency first"
    )]
    MissingDep {
        /// The job's name.
        job: String,
        /// The dependency.
        dep: JobId,
    },
    /// The sandbox root's path is not UTF-8, so commands cannot name files in it.
    #[error("the sandbox root `{}` is not valid UTF-8; choose another directory", path.display())]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// The hermetic sandbox could not be set up for a job.
    #[error("cannot set up the job's sandbox: cannot {what}; {fix}")]
    Sandbox {
        /// What failed, such as ``bind `/usr` at `<root>/usr`: Permission denied``.
        what: String,
        /// What to do about it.
        fix: &'static str,
    },
    /// A peer's job that this node must not run.
    #[error("refused a peer's job: {reason}")]
    PeerJobRefused {
        /// Why.
        reason: String,
    },
    /// A bug in the executor: a blocking task panicked or was lost.
    #[error("internal executor error: {0}")]
    Internal(String),
}

impl ExecError {
    /// Wraps an IO error on `path`, turning a full disk or quota into [`ExecError::DiskFull`].
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> ExecError {
        if is_disk_full(&source) {
            return ExecError::DiskFull {
                path: path.to_owned(),
            };
        }
        ExecError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// The blob found corrupt (and removed from the store) when this error was met, if it is
    /// such an error: the job can run again once the blob is there again.
    pub(crate) fn corrupt_blob(&self) -> Option<Digest> {
        match self {
            ExecError::Store {
                source: StoreError::Corrupt { digest },
                ..
            } => Some(*digest),
            _ => None,
        }
    }

    /// Wraps a store error met while working on `path`.
    pub(crate) fn store(action: &'static str, path: &Path, source: StoreError) -> ExecError {
        ExecError::Store {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
