//! [`Store::verify`], the scrub, and the rebuild of the blob index from the files.
//!
//! The files are the truth: a blob exists when `cas/<2 hex>/<64 hex>` exists and hashes to its
//! name. The scrub rehashes every blob file, deletes the ones that do not match (flipped bits,
//! truncation), deletes stray files in the fan-out directories, then makes the index agree with
//! what is left: entries added for files it lacks, removed for files that are gone. It also
//! drops action-cache entries that do not decode.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;

use weft_protocol::{ActionResult, Digest, wire};

use crate::error::StoreError;
use crate::index::BlobEntry;
use crate::layout::parse_blob_name;
use crate::read::hash_file;
use crate::store::{Store, remove_file_if_present};

/// What [`Store::verify`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many blob files were rehashed.
    pub n_checked: u64,
    /// Their total size.
    pub bytes_checked: u64,
    /// Blobs whose bytes did not hash to their name (corrupt or truncated); all deleted.
    pub corrupt: Vec<Digest>,
    /// Files in the blob directories that are not blobs; deleted.
    pub n_stray_removed: u64,
    /// Index entries added or corrected for blob files the index did not know right.
    pub n_index_added: u64,
    /// Index entries removed because their blob file is gone.
    pub n_index_removed: u64,
    /// Action-cache entries removed because they do not decode.
    pub n_actions_removed: u64,
}

impl VerifyReport {
    /// Whether every blob was intact (index repairs do not count: the index is only a cache).
    pub fn no_corruption(&self) -> bool {
        self.corrupt.is_empty()
    }
}

impl Store {
    /// Rehashes every blob, deletes corrupt ones and rebuilds the index from the files; see the
    /// module documentation. Runs while other threads use the store, and reads every byte, so
    /// it takes about as long as hashing the whole store.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner
            .removals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut report = VerifyReport::default();
        for first_byte in 0..=u8::MAX {
            self.verify_fanout_dir(first_byte, &mut report)?;
        }

        let mut indexed = Vec::new();
        for item in self.inner.index.blobs() {
            indexed.push(item?.0);
        }
        for digest in indexed {
            let _stripe = self.lock_stripe(&digest);
            let path = self.inner.layout.blob_path(&digest);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => continue,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io(&path, err)),
            }
            if self.index_remove(&digest)?.is_some() {
                report.n_index_removed += 1;
            }
        }

        let mut undecodable = Vec::new();
        for item in self.inner.index.actions() {
            let (job, encoded) = item?;
            if wire::decode::<ActionResult>(&encoded).is_err() {
                undecodable.push(job);
            }
        }
        for job in undecodable {
            if self.remove_action(job)? {
                report.n_actions_removed += 1;
            }
        }
        self.inner.index.mark_complete()?;

        if report.no_corruption() {
            tracing::info!(
                n_checked = report.n_checked,
                bytes_checked = report.bytes_checked,
                n_index_added = report.n_index_added,
                n_index_removed = report.n_index_removed,
                "verified store"
            );
        } else {
            tracing::warn!(
                n_checked = report.n_checked,
                n_corrupt = report.corrupt.len(),
                "verified store: deleted corrupt blobs"
            );
        }
        Ok(report)
    }

    fn verify_fanout_dir(
        &self,
        first_byte: u8,
        report: &mut VerifyReport,
    ) -> Result<(), StoreError> {
        let dir = self.inner.layout.fanout_dir(first_byte);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Fan-out directories are made on first use.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(StoreError::io(&dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let path = entry.path();
            let is_file = entry
                .file_type()
                .map_err(|e| StoreError::io(&path, e))?
                .is_file();
            let digest = entry
                .file_name()
                .to_str()
                .and_then(|name| parse_blob_name(first_byte, name));
            let Some(digest) = digest.filter(|_| is_file) else {
                if is_file {
                    remove_file_if_present(&path)?;
                    report.n_stray_removed += 1;
                    tracing::warn!(path = %path.display(), "removed a stray file from the blob directory");
                } else {
                    tracing::warn!(path = %path.display(), "left a non-file in the blob directory alone");
                }
                continue;
            };
            let file = match File::open(&path) {
                Ok(file) => file,
                // Deleted since the directory was listed.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(StoreError::io(&path, err)),
            };
            let (actual, size) = hash_file(&file).map_err(|e| StoreError::io(&path, e))?;
            report.n_checked += 1;
            report.bytes_checked += size;
            if actual != digest {
                self.discard_corrupt(&digest, &file)?;
                report.corrupt.push(digest);
                continue;
            }
            let _stripe = self.lock_stripe(&digest);
            let linked = file
                .metadata()
                .map_err(|e| StoreError::io(&path, e))?
                .nlink()
                > 0;
            let known = self.inner.index.blob(&digest)?;
            if linked && known.is_none_or(|entry| entry.size != size) {
                let last_use = known.map_or_else(|| self.tick(), |entry| entry.last_use);
                self.index_set(&digest, BlobEntry { size, last_use })?;
                report.n_index_added += 1;
            }
        }
        Ok(())
    }

    /// Fills an empty blob index from the files, without rehashing them (that is
    /// [`Store::verify`]'s job), and marks it complete. Returns the number of blobs found.
    pub(crate) fn rebuild_blob_index(&self) -> Result<u64, StoreError> {
        let mut n_found = 0;
        for first_byte in 0..=u8::MAX {
            let dir = self.inner.layout.fanout_dir(first_byte);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(StoreError::io(&dir, err)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
                let path = entry.path();
                let Some(digest) = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| parse_blob_name(first_byte, name))
                else {
                    continue;
                };
                let meta = match entry.metadata() {
                    Ok(meta) if meta.is_file() => meta,
                    Ok(_) => continue,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(StoreError::io(&path, err)),
                };
                let _stripe = self.lock_stripe(&digest);
                let entry = BlobEntry {
                    size: meta.len(),
                    last_use: self.tick(),
                };
                self.index_set(&digest, entry)?;
                n_found += 1;
            }
        }
        self.inner.index.mark_complete()?;
        Ok(n_found)
    }
}
