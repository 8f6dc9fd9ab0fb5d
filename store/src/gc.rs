//! [`Store::gc`]: evict least-recently-used blobs down to a size cap.
//!
//! A pass takes a snapshot of the index, sorts it by last use (oldest first, then by digest)
//! and deletes blobs in that order until the total is under the cap. Each delete happens under
//! the blob's stripe lock, after checking again that the blob is not pinned and has not been
//! used since the pass began (its last use is older than the clock value the pass started at
//! and unchanged since the snapshot). Puts, reads and pins take the same lock, so a blob that
//! another thread puts, reads or pins while the pass runs is kept. A reader that already has a
//! blob open keeps reading it: deleting only unlinks the file.

use std::fs;
use std::io;
use std::sync::atomic::Ordering;

use weft_protocol::Digest;

use crate::error::StoreError;
use crate::index::BlobEntry;
use crate::store::Store;

/// What a [`Store::gc`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// How many blobs were deleted.
    pub n_evicted: u64,
    /// Their total size.
    pub bytes_evicted: u64,
    /// How many eviction candidates were kept because they are pinned.
    pub n_pinned_kept: u64,
    /// How many eviction candidates were kept because they were used during the pass.
    pub n_used_kept: u64,
    /// The store's total size after the pass.
    pub total_bytes: u64,
    /// Whether the total is now at or under the cap (false when pinned or recently used blobs
    /// hold more than the cap).
    pub under_cap: bool,
}

impl Store {
    /// Deletes least-recently-used blobs until the store holds at most `max_bytes`, never a
    /// pinned one. Safe to run while other threads read and write; one pass runs at a time.
    pub fn gc(&self, max_bytes: u64) -> Result<GcReport, StoreError> {
        let _pass = self
            .inner
            .gc_lock
            .lock()
            // The guarded value is `()`, so a poisoned lock is as good as any.
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let started_at = self.tick();
        let mut report = GcReport::default();
        if self.total_bytes() > max_bytes {
            let mut candidates: Vec<(BlobEntry, Digest)> = Vec::new();
            for item in self.inner.index.blobs() {
                let (digest, entry) = item?;
                candidates.push((entry, digest));
            }
            candidates.sort_by_key(|(entry, digest)| (entry.last_use, *digest));
            for (seen, digest) in candidates {
                if self.total_bytes() <= max_bytes {
                    break;
                }
                match self.evict(&digest, seen, started_at)? {
                    Eviction::Evicted(size) => {
                        report.n_evicted += 1;
                        report.bytes_evicted += size;
                    }
                    Eviction::Pinned => report.n_pinned_kept += 1,
                    Eviction::Used => report.n_used_kept += 1,
                    Eviction::Gone => {}
                }
            }
        }
        report.total_bytes = self.total_bytes();
        report.under_cap = report.total_bytes <= max_bytes;
        tracing::info!(
            max_bytes,
            n_evicted = report.n_evicted,
            bytes_evicted = report.bytes_evicted,
            n_pinned_kept = report.n_pinned_kept,
            n_used_kept = report.n_used_kept,
            total_bytes = report.total_bytes,
            "gc pass done"
        );
        Ok(report)
    }

    fn total_bytes(&self) -> u64 {
        self.inner.total_bytes.load(Ordering::Relaxed)
    }

    /// Deletes `digest` if it is still the unpinned, unused blob the snapshot saw.
    fn evict(
        &self,
        digest: &Digest,
        seen: BlobEntry,
        started_at: u64,
    ) -> Result<Eviction, StoreError> {
        let _stripe = self.lock_stripe(digest);
        let Some(entry) = self.inner.index.blob(digest)? else {
            return Ok(Eviction::Gone);
        };
        if entry.last_use >= started_at || entry.last_use != seen.last_use {
            return Ok(Eviction::Used);
        }
        if self.inner.index.pin_count(digest)? > 0 {
            return Ok(Eviction::Pinned);
        }
        let path = self.inner.layout.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(StoreError::io(&path, err)),
        }
        self.index_remove(digest)?;
        tracing::trace!(%digest, size = entry.size, "evicted blob");
        Ok(Eviction::Evicted(entry.size))
    }
}

/// What happened to one eviction candidate.
enum Eviction {
    Evicted(u64),
    Pinned,
    Used,
    Gone,
}
