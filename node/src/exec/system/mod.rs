//! The system part of a toolchain fingerprint (`Toolchain::system`): what a job's commands
//! can read from the toolchain directories besides the tool binaries, and that can change
//! what they make.
//!
//! - `config`: [`SystemConfig`], the system directories covered (header directories whole,
//!   library directories as the linker reads them) and the cache file;
//! - `probe`: which of a job's tools are C and C++ compilers, and what each says its own files
//!   are (`-print-search-dirs`, `-print-prog-name`, `-print-file-name=include`,
//!   `-print-resource-dir`);
//! - `tree`: the covered directories, listed, digested by content, and kept current;
//! - `watch`: inotify watches on them, so that a build looks only at what changed;
//! - `cache`: the covered files' digests kept across restarts;
//! - `digests`: `SystemDigests`, which ties them together for [`Toolchains`](super::Toolchains).

mod cache;
mod config;
mod digests;
mod probe;
mod tree;
mod watch;

pub use config::SystemConfig;
pub use digests::SystemStats;
pub(crate) use digests::{SystemDigests, SystemView};
pub(crate) use probe::is_compiler;
pub(crate) use tree::Encoder;
