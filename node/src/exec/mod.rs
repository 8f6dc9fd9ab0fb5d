//! Source digests, toolchain fingerprints and the sandboxed executor.
//!
//! - [`SourceDigests`]: workspace files' digests, cached by path and stat stamp, so that a
//!   no-op build reads no file.
//! - [`Toolchains`]: which binary each command runs on the configured `PATH`, and its digest,
//!   for the toolchain part of a [`JobId`](weft_protocol::JobId).
//! - [`Executor`]: runs one job in a fresh sandbox directory and collects its outputs into the
//!   store; by default in the hermetic sandbox (its own namespaces and root, see
//!   [`SandboxMode`]), with [`JobLimits`].
//!
//! Architecture invariant: nothing here reads the daemon's environment. The `PATH` of jobs
//! and tool lookups comes from [`ExecConfig::path_env`] and [`Toolchains::new`].

mod cat_tree;
mod context;
mod error;
mod executor;
mod hermetic;
mod limits;
mod process;
mod request;
mod run;
mod sandbox;
mod sources;
mod toolchain;

pub use context::{ExecConfig, SandboxMode};
pub use error::ExecError;
pub use executor::Executor;
pub use hermetic::TOOLCHAIN_DIRS;
pub use limits::JobLimits;
pub use request::{CmdFailure, RunOutcome, RunRequest};
pub use sources::{DEFAULT_RACY_WINDOW, SourceDigests, SourceStats};
pub(crate) use sources::{SourceStamp, Stamped};
pub use toolchain::Toolchains;
