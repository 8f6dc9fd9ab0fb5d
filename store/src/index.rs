//! The sled index: blob sizes and last use, the action cache, pins and statistics.
//!
//! Everything here can be rebuilt or lost: blob entries are rebuilt from the files, a lost
//! action-cache entry is a cache miss, and lost pins and counters only weaken what GC and
//! `stats` know. No sled type leaves this module.
//!
//! Keys and values (all integers little-endian):
//!
//! | tree      | key               | value                                   |
//! |-----------|-------------------|-----------------------------------------|
//! | `blobs`   | digest (32 bytes) | size `u64`, last use `u64` (16 bytes)   |
//! | `actions` | job id (32 bytes) | `wire::encode(ActionResult)`            |
//! | `pins`    | digest (32 bytes) | pin count `u64`                         |
//! | `meta`    | name (UTF-8)      | `u64`                                   |

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use weft_protocol::{Digest, JobId};

use crate::error::{StoreError, is_disk_full};

/// The format of the index. A different number in `meta` makes `open` rebuild the index.
const FORMAT_VERSION: u64 = 1;
/// `meta` key: the format version, written once the blob entries are complete.
const META_FORMAT: &str = "index.format";
/// `meta` key prefix of persisted statistics counters.
const META_COUNTER_PREFIX: &str = "stats.";

/// sled's page cache size: enough for millions of blob entries' hot part.
const CACHE_CAPACITY: u64 = 64 << 20;

/// The open sled database and its trees.
pub(crate) struct Index {
    /// The index directory, named in errors.
    dir: PathBuf,
    db: sled::Db,
    blobs: sled::Tree,
    actions: sled::Tree,
    pins: sled::Tree,
    meta: sled::Tree,
}

/// What the index knows about one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobEntry {
    /// The blob's size in bytes.
    pub(crate) size: u64,
    /// The logical clock value of the blob's last use (see `Store`'s last-use clock).
    pub(crate) last_use: u64,
}

impl BlobEntry {
    fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.size.to_le_bytes());
        bytes[8..].copy_from_slice(&self.last_use.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<BlobEntry> {
        let size = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let last_use = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(BlobEntry { size, last_use })
    }
}

/// Why the index could not be opened.
#[derive(Debug)]
pub(crate) struct IndexOpenError {
    /// sled's error or panic message.
    pub(crate) reason: String,
    /// Whether sled's own lock file was held: not a sign of damage, so the index must not be
    /// discarded. (The store's lock file keeps other processes out, so only a sled instance of
    /// this process that is still shutting down can hold it.)
    pub(crate) lock_busy: bool,
}

/// What a scan of the index found at open.
#[derive(Debug, Default)]
pub(crate) struct IndexSummary {
    /// Whether the blob entries are known to be complete (written by a finished rebuild).
    pub(crate) complete: bool,
    /// The number of blob entries.
    pub(crate) n_blobs: u64,
    /// The sum of their sizes.
    pub(crate) total_bytes: u64,
    /// The largest last-use value.
    pub(crate) max_last_use: u64,
    /// The number of action-cache entries.
    pub(crate) n_actions: u64,
}

impl Index {
    /// Opens (or creates) the index at `dir` and scans it. A sled error or a sled panic, at
    /// open or during the scan, is returned as an [`IndexOpenError`]: unless sled's own lock
    /// was busy, the caller discards the directory and starts a new index.
    pub(crate) fn open(dir: &Path) -> Result<(Index, IndexSummary), IndexOpenError> {
        let opened = catch_unwind(AssertUnwindSafe(|| -> Result<_, sled::Error> {
            let db = sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_CAPACITY)
                .mode(sled::Mode::HighThroughput)
                .open()?;
            let index = Index {
                dir: dir.to_owned(),
                blobs: db.open_tree("blobs")?,
                actions: db.open_tree("actions")?,
                pins: db.open_tree("pins")?,
                meta: db.open_tree("meta")?,
                db,
            };
            let summary = index.scan()?;
            Ok((index, summary))
        }));
        match opened {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(err)) => {
                let reason = err.to_string();
                // sled reports a busy `flock` on its `db` file only through this message.
                let lock_busy = reason.contains("could not acquire lock");
                Err(IndexOpenError { reason, lock_busy })
            }
            Err(panic) => Err(IndexOpenError {
                reason: format!("sled panicked: {}", panic_message(&*panic)),
                lock_busy: false,
            }),
        }
    }

    /// Counts the entries, dropping blob entries that do not parse.
    fn scan(&self) -> Result<IndexSummary, sled::Error> {
        let mut summary = IndexSummary {
            complete: self.meta_u64(META_FORMAT)? == Some(FORMAT_VERSION),
            ..IndexSummary::default()
        };
        for item in self.blobs.iter() {
            let (key, value) = item?;
            match (parse_digest(&key), BlobEntry::from_bytes(&value)) {
                (Some(_), Some(entry)) => {
                    summary.n_blobs += 1;
                    summary.total_bytes += entry.size;
                    summary.max_last_use = summary.max_last_use.max(entry.last_use);
                }
                _ => {
                    tracing::warn!(key_len = key.len(), "dropping malformed blob index entry");
                    self.blobs.remove(key)?;
                }
            }
        }
        for item in self.actions.iter() {
            let (key, _) = item?;
            if parse_digest(&key).is_some() {
                summary.n_actions += 1;
            } else {
                self.actions.remove(key)?;
            }
        }
        Ok(summary)
    }

    /// Empties the blob entries, before a rebuild from the files.
    pub(crate) fn clear_blobs(&self) -> Result<(), StoreError> {
        self.meta.remove(META_FORMAT).map_err(|e| self.error(e))?;
        self.blobs.clear().map_err(|e| self.error(e))
    }

    /// Records that the blob entries are complete (after a rebuild from the files).
    pub(crate) fn mark_complete(&self) -> Result<(), StoreError> {
        self.set_meta_u64(META_FORMAT, FORMAT_VERSION)
    }

    /// The entry of `digest`; a malformed entry reads as none.
    pub(crate) fn blob(&self, digest: &Digest) -> Result<Option<BlobEntry>, StoreError> {
        let value = self
            .blobs
            .get(digest.as_bytes())
            .map_err(|e| self.error(e))?;
        Ok(value.and_then(|v| BlobEntry::from_bytes(&v)))
    }

    /// Sets the entry of `digest`, returning the one it replaces.
    pub(crate) fn insert_blob(
        &self,
        digest: &Digest,
        entry: BlobEntry,
    ) -> Result<Option<BlobEntry>, StoreError> {
        let old = self
            .blobs
            .insert(digest.as_bytes(), &entry.to_bytes())
            .map_err(|e| self.error(e))?;
        Ok(old.and_then(|v| BlobEntry::from_bytes(&v)))
    }

    /// Removes the entry of `digest`, returning it.
    pub(crate) fn remove_blob(&self, digest: &Digest) -> Result<Option<BlobEntry>, StoreError> {
        let old = self
            .blobs
            .remove(digest.as_bytes())
            .map_err(|e| self.error(e))?;
        Ok(old.and_then(|v| BlobEntry::from_bytes(&v)))
    }

    /// Every well-formed blob entry, in digest order.
    pub(crate) fn blobs(
        &self,
    ) -> impl Iterator<Item = Result<(Digest, BlobEntry), StoreError>> + '_ {
        self.blobs.iter().filter_map(|item| match item {
            Err(err) => Some(Err(self.error(err))),
            Ok((key, value)) => Some(Ok((parse_digest(&key)?, BlobEntry::from_bytes(&value)?))),
        })
    }

    /// The encoded action result stored for `job`.
    pub(crate) fn action(&self, job: &JobId) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .actions
            .get(job.digest().as_bytes())
            .map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Stores an encoded action result; true when `job` had no entry before.
    pub(crate) fn insert_action(&self, job: &JobId, encoded: &[u8]) -> Result<bool, StoreError> {
        let old = self
            .actions
            .insert(job.digest().as_bytes(), encoded)
            .map_err(|e| self.error(e))?;
        Ok(old.is_none())
    }

    /// Stores an encoded action result only if `job` has no entry; returns the entry that is
    /// there instead.
    pub(crate) fn insert_new_action(
        &self,
        job: &JobId,
        encoded: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let swapped = self
            .actions
            .compare_and_swap(job.digest().as_bytes(), None::<&[u8]>, Some(encoded))
            .map_err(|e| self.error(e))?;
        Ok(swapped.err().and_then(|e| e.current.map(|v| v.to_vec())))
    }

    /// Removes the entry of `job`; true when there was one.
    pub(crate) fn remove_action(&self, job: &JobId) -> Result<bool, StoreError> {
        let old = self
            .actions
            .remove(job.digest().as_bytes())
            .map_err(|e| self.error(e))?;
        Ok(old.is_some())
    }

    /// The job ids of up to `limit` action-cache entries, in the index's order.
    pub(crate) fn action_ids(&self, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let mut ids = Vec::new();
        for key in self.actions.iter().keys().take(limit) {
            let key = key.map_err(|e| self.error(e))?;
            if let Some(digest) = parse_digest(&key) {
                ids.push(JobId(digest));
            }
        }
        Ok(ids)
    }

    /// Every action-cache entry: the job id and the encoded result.
    pub(crate) fn actions(
        &self,
    ) -> impl Iterator<Item = Result<(JobId, Vec<u8>), StoreError>> + '_ {
        self.actions.iter().filter_map(|item| match item {
            Err(err) => Some(Err(self.error(err))),
            Ok((key, value)) => Some(Ok((JobId(parse_digest(&key)?), value.to_vec()))),
        })
    }

    /// How many times `digest` is pinned.
    pub(crate) fn pin_count(&self, digest: &Digest) -> Result<u64, StoreError> {
        let value = self
            .pins
            .get(digest.as_bytes())
            .map_err(|e| self.error(e))?;
        Ok(value.and_then(|v| parse_u64(&v)).unwrap_or(0))
    }

    /// Sets the pin count of `digest`; zero removes the pin.
    pub(crate) fn set_pin_count(&self, digest: &Digest, count: u64) -> Result<(), StoreError> {
        let result = if count == 0 {
            self.pins.remove(digest.as_bytes())
        } else {
            self.pins.insert(digest.as_bytes(), &count.to_le_bytes())
        };
        result.map(drop).map_err(|e| self.error(e))
    }

    /// The number of pinned digests.
    pub(crate) fn n_pinned(&self) -> u64 {
        self.pins.len() as u64
    }

    /// A persisted statistics counter.
    pub(crate) fn counter(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .meta_u64(&format!("{META_COUNTER_PREFIX}{name}"))
            .map_err(|e| self.error(e))?
            .unwrap_or(0))
    }

    /// Persists a statistics counter.
    pub(crate) fn set_counter(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.set_meta_u64(&format!("{META_COUNTER_PREFIX}{name}"), value)
    }

    /// Writes everything to disk.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.error(e))
    }

    /// A sled error as a store error: a full disk is [`StoreError::DiskFull`], anything else
    /// [`StoreError::Index`].
    fn error(&self, err: sled::Error) -> StoreError {
        match err {
            sled::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull {
                path: self.dir.clone(),
            },
            other => StoreError::Index(other.to_string()),
        }
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, sled::Error> {
        Ok(self.meta.get(key)?.and_then(|v| parse_u64(&v)))
    }

    fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.meta
            .insert(key, &value.to_le_bytes())
            .map(drop)
            .map_err(|e| self.error(e))
    }
}

fn parse_digest(bytes: &[u8]) -> Option<Digest> {
    Some(Digest::from_bytes(bytes.try_into().ok()?))
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_entries_round_trip_and_reject_bad_lengths() {
        let entry = BlobEntry {
            size: 1 << 40,
            last_use: 7,
        };
        assert_eq!(BlobEntry::from_bytes(&entry.to_bytes()), Some(entry));
        assert_eq!(BlobEntry::from_bytes(&[0; 15]), None);
        assert_eq!(BlobEntry::from_bytes(&[0; 17]), None);
        assert_eq!(parse_u64(&[1, 0, 0, 0, 0, 0, 0, 0]), Some(1));
        assert_eq!(parse_u64(&[1]), None);
        assert_eq!(parse_digest(&[0; 31]), None);
    }
}
