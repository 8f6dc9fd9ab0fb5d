//! Source digests, toolchain fingerprints and the sandboxed executor.
//!
//! - [`SourceDigests`]: workspace files' digests, cached by path and stat stamp, so that a
//!   no-op build reads no file.
//! - [`Toolchains`]: which binary each command runs on the configured `PATH`, and its digest,
//!   for the toolchain part of a [`JobId`](weft_protocol::JobId).
//! - [`Executor`]: runs one job in a fresh sandbox directory and collects its outputs into the
//!   store.
//!
//! Architecture invariant: nothing here reads the daemon's environment. The `PATH` of jobs
//! and tool lookups comes from [`ExecConfig::path_env`] and [`Toolchains::new`].

mod cat_tree;
mod error;
mod executor;
mod process;
mod run;
mod sandbox;
mod sources;
mod stat;
mod strict;
mod toolchain;

pub use error::ExecError;
pub use executor::{CmdFailure, ExecConfig, Executor, RunOutcome, RunRequest};
pub use sources::{DEFAULT_RACY_WINDOW, SourceDigests, SourceStats};
pub(crate) use sources::{SourceStamp, Stamped};
pub use toolchain::Toolchains;

pub(crate) use stat::{DirStat, FileStat};

/// `f` over every item, on up to [`MAX_STAT_THREADS`] threads, results in the items' order;
/// each thread passes `f` its own [`DirStat`], for items next to each other that share a
/// directory.
///
/// For passes that are mostly `stat` calls or small file operations over thousands of paths
/// (a no-op build's source and output checks): on one thread they wait on the kernel one file
/// at a time. Short lists run on the calling thread.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&mut DirStat, &T) -> R + Sync,
) -> Vec<R> {
    /// Below this many items a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 512;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_STAT_THREADS)
        .min(items.len() / MIN_PER_THREAD);
    let run = |part: &[T]| {
        let mut stats = DirStat::default();
        part.iter()
            .map(|item| f(&mut stats, item))
            .collect::<Vec<R>>()
    };
    if threads <= 1 {
        return run(items);
    }
    let chunk = items.len().div_ceil(threads);
    let run = &run;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        // The calling thread takes the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks.map(|part| scope.spawn(move || run(part))).collect();
        let mut all = run(first);
        all.reserve(items.len() - all.len());
        for handle in others {
            match handle.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// The most threads [`par_map`] uses.
const MAX_STAT_THREADS: usize = 8;
