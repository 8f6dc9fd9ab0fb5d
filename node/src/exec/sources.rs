//! [`SourceDigests`]: the digests of workspace files, cached across builds.
//!
//! A file's digest is cached under its path together with its stat "stamp": device, inode,
//! size, mode, mtime and ctime, both with nanoseconds. A lookup is one `stat` and one map
//! lookup; when the stamp matches, nothing is read. A miss puts the file into the store (one
//! streaming pass that hashes and writes), so that a sandbox can materialize it later.
//!
//! # Racy files
//!
//! File systems stamp times from a coarse clock (one kernel tick, up to 10 ms; whole seconds on
//! some file systems). A file hashed in the same tick as it was written may be written again
//! within that tick with the same size, leaving every field of its stamp unchanged: a cached
//! digest would then be stale for good. So a file whose mtime or ctime is within
//! [`DEFAULT_RACY_WINDOW`] of the clock when it is hashed is not cached; it is hashed again
//! on its next lookup, until its stamp is old enough. This is git's "racy clean" problem, solved
//! the same way. A file that changes while it is hashed is not cached either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use weft_protocol::Digest;
use weft_store::Store;

use super::error::ExecError;
use crate::stat::{DirStat, FileStat, RACY_WINDOW, par_map};

/// How recent a file's mtime or ctime may be for its digest to be cached; see the module
/// documentation.
pub const DEFAULT_RACY_WINDOW: Duration = RACY_WINDOW;

/// Source file digests, cached by path and stat stamp. `Send + Sync`: share one per daemon.
pub struct SourceDigests {
    store: Store,
    racy_window: Duration,
    entries: RwLock<HashMap<PathBuf, SourceEntry>>,
    n_hits: AtomicU64,
    n_misses: AtomicU64,
}

/// Counters of a [`SourceDigests`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Lookups answered from the cache, without reading the file.
    pub n_hits: u64,
    /// Lookups that read and stored the file.
    pub n_misses: u64,
    /// Files in the cache.
    pub n_entries: usize,
}

#[derive(Debug, Clone, Copy)]
struct SourceEntry {
    /// What must not change for the digest to stay valid: device, inode, size, mode, mtime
    /// and ctime.
    stamp: FileStat,
    digest: Digest,
    /// The store's [`Store::removals`] when the blob was last known to be there: while that
    /// counter stays the same, the blob is still there. After a `gc`, a hit checks the blob
    /// and stores the file again if it went (a sandbox needs it).
    present_at: u64,
}

/// A source's digest, whether it is executable, and the stamp its digest is cached under
/// (none while the file is too recent to cache; see the module documentation).
pub(crate) type Stamped = (Digest, bool, Option<SourceStamp>);

/// The stamp a source's digest is cached under: while a file's stamp is the same, so is its
/// digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceStamp(FileStat);

impl SourceDigests {
    /// A cache that puts missed files into `store`, with [`DEFAULT_RACY_WINDOW`].
    pub fn new(store: Store) -> SourceDigests {
        SourceDigests::with_racy_window(store, DEFAULT_RACY_WINDOW)
    }

    /// A cache with another racy window. A window shorter than the file system's timestamp
    /// granularity can miss an edit; zero is for tests that control their files' timestamps.
    pub fn with_racy_window(store: Store, racy_window: Duration) -> SourceDigests {
        SourceDigests {
            store,
            racy_window,
            entries: RwLock::new(HashMap::new()),
            n_hits: AtomicU64::new(0),
            n_misses: AtomicU64::new(0),
        }
    }

    /// The digest of the file at `path` (symlinks followed) and whether it is executable.
    ///
    /// A cache hit costs one `stat`. A miss stores the file's content in the store, so that
    /// the blob is there when a sandbox needs it.
    pub fn digest(&self, path: &Path) -> Result<(Digest, bool), ExecError> {
        let (digest, executable, _) = self.digest_with(&mut DirStat::default(), path)?;
        Ok((digest, executable))
    }

    /// [`SourceDigests::digest`] of every path, on several threads (see [`par_map`]), each
    /// with the stamp under which its digest is cached, if it is.
    pub(crate) fn digest_all(&self, paths: &[PathBuf]) -> Vec<Result<Stamped, ExecError>> {
        par_map(paths, |stats, path| self.digest_with(stats, path))
    }

    /// Puts the blob `digest` back into the store from the workspace file it was last seen in,
    /// after the store found its copy corrupt and removed it. False when no file known here
    /// has that content any more (it was edited since, say).
    pub fn restore(&self, digest: &Digest) -> bool {
        let paths: Vec<PathBuf> = self
            .read_entries()
            .iter()
            .filter(|(_, entry)| entry.digest == *digest)
            .map(|(path, _)| path.clone())
            .collect();
        paths
            .iter()
            .any(|path| self.digest(path).is_ok_and(|(now, _)| now == *digest))
            || self.store.has(digest)
    }

    /// The store's removal counter ([`Store::removals`]); see
    /// [`SourceDigests::unchanged`].
    pub(crate) fn removals(&self) -> u64 {
        self.store.removals()
    }

    /// Whether every file still has the stamp it had when [`SourceDigests::digest_all`] gave
    /// it, and no blob can have left the store since the store's removal counter read
    /// `removals`, before that call: then each file has the digest it had, and its blob is
    /// there for a sandbox. One `stat` per file and no lookup, on several threads.
    pub(crate) fn unchanged(
        &self,
        paths: &[PathBuf],
        stamps: &[SourceStamp],
        removals: u64,
    ) -> bool {
        self.store.removals() == removals
            && paths.len() == stamps.len()
            && par_map(paths, |stats, path| stats.stat(path).ok().map(SourceStamp))
                .into_iter()
                .zip(stamps)
                .all(|(now, then)| now.as_ref() == Some(then))
    }

    fn digest_with(&self, stats: &mut DirStat, path: &Path) -> Result<Stamped, ExecError> {
        let stamp = stat(stats, path)?;
        // Copied out, so that the read lock is released before a write below.
        let cached = self.read_entries().get(path).copied();
        if let Some(entry) = cached
            && entry.stamp == stamp
        {
            let removals = self.store.removals();
            let present = entry.present_at == removals || self.store.has(&entry.digest);
            if present {
                if entry.present_at != removals {
                    self.write_entries().insert(
                        path.to_owned(),
                        SourceEntry {
                            present_at: removals,
                            ..entry
                        },
                    );
                }
                self.n_hits.fetch_add(1, Ordering::Relaxed);
                return Ok((entry.digest, executable(&stamp), Some(SourceStamp(stamp))));
            }
        }
        self.n_misses.fetch_add(1, Ordering::Relaxed);
        // Read before the put: a removal meanwhile makes the next hit check the blob.
        let present_at = self.store.removals();
        let (digest, _size) = self
            .store
            .put_file(path)
            .map_err(|e| ExecError::store("store the source", path, e))?;
        let after = stat(stats, path)?;
        let now = SystemTime::now();
        if after == stamp && !stamp.changed_within(self.racy_window, now) {
            self.write_entries().insert(
                path.to_owned(),
                SourceEntry {
                    stamp,
                    digest,
                    present_at,
                },
            );
            Ok((digest, executable(&after), Some(SourceStamp(stamp))))
        } else {
            tracing::trace!(path = %path.display(), "not caching a recently changed source");
            Ok((digest, executable(&after), None))
        }
    }

    /// Forgets every cached digest.
    pub fn clear(&self) {
        self.write_entries().clear();
    }

    /// Hits, misses and the number of cached files.
    pub fn stats(&self) -> SourceStats {
        SourceStats {
            n_hits: self.n_hits.load(Ordering::Relaxed),
            n_misses: self.n_misses.load(Ordering::Relaxed),
            n_entries: self.read_entries().len(),
        }
    }

    // The map holds plain values, each inserted whole: a panic elsewhere cannot leave it
    // half-changed, so a poisoned lock is taken as it is.
    fn read_entries(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PathBuf, SourceEntry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_entries(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PathBuf, SourceEntry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for SourceDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceDigests")
            .field("racy_window", &self.racy_window)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn executable(meta: &FileStat) -> bool {
    meta.mode & 0o111 != 0
}

fn stat(stats: &mut DirStat, path: &Path) -> Result<FileStat, ExecError> {
    let meta = stats
        .stat(path)
        .map_err(|e| ExecError::io("read the source", path, e))?;
    if !meta.is_file() {
        return Err(ExecError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok(meta)
}
