//! [`Store::materialize`]: put a blob at a path, for a sandbox or the workspace.
//!
//! Policy:
//! - a non-executable blob is hard-linked: blob files are mode 0444, so the link is read-only
//!   and costs no space;
//! - an executable blob is copied, because setting the executable bit on a hard link would set
//!   it on the shared blob file too; the copy is mode 0555;
//! - when a hard link is impossible (another file system, the inode's link limit, a file
//!   system without links) the blob is copied, mode 0444;
//! - the blob is verified on the way out: a hard-linked blob is rehashed first, a copy is
//!   hashed while it is written. A corrupt blob is deleted and the destination is left absent.
//!
//! Parent directories are created, and an existing file or symlink at the destination is
//! replaced (an existing directory is an error).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use weft_protocol::Digest;

use crate::error::StoreError;
use crate::put::{CHUNK, StreamError, stream_to_file};
use crate::read::{Blob, PositionedReader};
use crate::store::{Store, remove_file_if_present};

/// The mode of a materialized executable copy.
const EXECUTABLE_MODE: u32 = 0o555;
/// The mode of a materialized non-executable copy, the same as a blob file's.
const READ_ONLY_MODE: u32 = 0o444;

impl Store {
    /// Makes `dest` a verified, read-only copy of the blob `digest`, executable or not: a hard
    /// link when possible, else a copy (see the module documentation for the policy).
    pub fn materialize(
        &self,
        digest: &Digest,
        dest: &Path,
        executable: bool,
    ) -> Result<(), StoreError> {
        let blob = self.open_blob(digest)?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        }
        if !executable {
            self.check_open_blob(digest, &blob.file)?;
            match self.hard_link(digest, dest)? {
                Linked::Yes => return Ok(()),
                Linked::No(reason) => {
                    tracing::debug!(%digest, dest = %dest.display(), %reason, "copying instead of hard-linking");
                }
            }
        }
        self.copy_out(&blob, dest, executable)
    }

    /// Whether `dest` is already a hard link of the blob `digest` (the same file), as
    /// [`Store::materialize`] leaves a non-executable blob. Two `stat` calls; no hashing.
    pub fn is_materialized(&self, digest: &Digest, dest: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(placed), Ok(blob)) = (
            fs::symlink_metadata(dest),
            fs::metadata(self.inner.layout.blob_path(digest)),
        ) else {
            return false;
        };
        placed.dev() == blob.dev() && placed.ino() == blob.ino()
    }

    /// Makes `dest` a verified, read-only copy of the blob `digest` that shares nothing with
    /// the store: for files people may edit (`weft-out/`), where a hard link would let an edit
    /// (by root, whom modes do not stop) change the blob itself.
    pub fn export(&self, digest: &Digest, dest: &Path, executable: bool) -> Result<(), StoreError> {
        let blob = self.open_blob(digest)?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        }
        self.copy_out(&blob, dest, executable)
    }

    /// Hard-links the blob file at `dest`, replacing what is there.
    fn hard_link(&self, digest: &Digest, dest: &Path) -> Result<Linked, StoreError> {
        let path = self.inner.layout.blob_path(digest);
        let mut replaced = false;
        loop {
            let err = match fs::hard_link(&path, dest) {
                Ok(()) => return Ok(Linked::Yes),
                Err(err) => err,
            };
            match err.kind() {
                io::ErrorKind::AlreadyExists if !replaced => {
                    remove_file_if_present(dest)?;
                    replaced = true;
                }
                // The blob was unlinked after it was opened: copy from the open file.
                io::ErrorKind::NotFound
                | io::ErrorKind::CrossesDevices
                | io::ErrorKind::TooManyLinks
                | io::ErrorKind::PermissionDenied
                | io::ErrorKind::Unsupported => return Ok(Linked::No(err)),
                _ => return Err(StoreError::io(dest, err)),
            }
        }
    }

    /// Copies the open blob to `dest`, hashing while it copies.
    fn copy_out(&self, blob: &Blob, dest: &Path, executable: bool) -> Result<(), StoreError> {
        remove_file_if_present(dest)?;
        let mode = if executable {
            EXECUTABLE_MODE
        } else {
            READ_ONLY_MODE
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dest)
            .map_err(|e| StoreError::io(dest, e))?;
        let blob_path = self.inner.layout.blob_path(&blob.digest);
        let copied = if blob.size < CHUNK as u64 {
            copy_small(&blob.file, blob.size, &mut out).map_err(|err| match err {
                StreamError::Read(e) => StoreError::io(&blob_path, e),
                StreamError::Write(e) => StoreError::io(dest, e),
            })
        } else {
            let mut reader = PositionedReader::new(&blob.file);
            stream_to_file(&mut reader, Vec::new(), &mut out).map_err(|err| match err {
                StreamError::Read(e) => StoreError::io(&blob_path, e),
                StreamError::Write(e) => StoreError::io(dest, e),
            })
        };
        drop(out);
        let result = copied.and_then(|(actual, _)| {
            if actual == blob.digest {
                return Ok(());
            }
            self.discard_corrupt(&blob.digest, &blob.file)?;
            Err(StoreError::Corrupt {
                digest: blob.digest,
            })
        });
        if result.is_err() {
            // Leave no partial or bad copy behind.
            let _ = fs::remove_file(dest);
        }
        result
    }
}

/// Whether a hard link was made, and if not, why.
enum Linked {
    Yes,
    No(io::Error),
}

/// Copies a small blob through memory; returns the digest of the bytes written.
fn copy_small(file: &File, size: u64, out: &mut File) -> Result<(Digest, u64), StreamError> {
    // The caller checked that `size` is below `CHUNK`, so it fits in a `usize`.
    let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(CHUNK)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(StreamError::Read)?;
    out.write_all(&bytes).map_err(StreamError::Write)?;
    Ok((Digest::of(&bytes), size))
}
