//! [`StoreError`]: everything that can go wrong in the store, and the one place IO errors are
//! turned into it.

use std::io;
use std::path::{Path, PathBuf};

use weft_protocol::{Digest, JobId, TreeError};

/// What went wrong in a store operation.
///
/// Bad bytes on disk (a flipped bit, a truncated blob, a garbled index entry, a hostile tree)
/// are reported through these variants and never panic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in the store.
    #[error("blob `{digest}` is not in the store")]
    NotFound {
        /// The digest that was asked for.
        digest: Digest,
    },
    /// The blob's bytes do not hash to its name. The bad copy has been deleted; fetch or
    /// rebuild it again.
    #[error("blob `{digest}` was corrupt on disk and has been deleted; fetch or rebuild it again")]
    Corrupt {
        /// The blob's name.
        digest: Digest,
    },
    /// Incoming bytes did not hash to the digest the caller expected; nothing was stored.
    #[error("bytes hash to `{actual}`, not the expected `{expected}`; they were not stored")]
    Mismatch {
        /// The digest the caller announced.
        expected: Digest,
        /// The digest of the bytes that arrived.
        actual: Digest,
    },
    /// A file system operation failed on `path`.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading the caller's stream failed (in [`Store::put_reader`](crate::Store::put_reader)).
    #[error("cannot read the bytes to store: {source}")]
    Read {
        /// The underlying error.
        source: io::Error,
    },
    /// The disk (or the user's quota) is full.
    #[error("the disk holding `{}` is full; free space, or lower the store's size cap and run gc", path.display())]
    DiskFull {
        /// The file that could not be written.
        path: PathBuf,
    },
    /// The sled index failed. The index holds nothing that cannot be rebuilt.
    #[error(
        "store index error: {0}; reopening the store or running `verify` rebuilds it from the blob files"
    )]
    Index(String),
    /// An action result cannot be encoded for the action cache (it exceeds the codec's limit).
    #[error("cannot cache the result of job `{job}`: {reason}")]
    BadAction {
        /// The job whose result it is.
        job: JobId,
        /// Why it cannot be stored.
        reason: String,
    },
    /// Another process holds the store's lock file.
    #[error("the store at `{}` is in use by another process; stop it, or use another store directory", path.display())]
    Locked {
        /// The store's root directory.
        path: PathBuf,
    },
    /// A range read starts past the end of the blob.
    #[error("offset {offset} is past the end of blob `{digest}`, which has {size} bytes")]
    RangeOutOfBounds {
        /// The blob.
        digest: Digest,
        /// The requested offset.
        offset: u64,
        /// The blob's size.
        size: u64,
    },
    /// A tree blob does not decode or breaks the tree rules (a hostile or garbled tree).
    #[error("tree blob `{digest}` is malformed: {source}")]
    BadTree {
        /// The tree blob.
        digest: Digest,
        /// What is wrong with it.
        source: TreeError,
    },
    /// A tree (or a directory being stored) is too large or too deep to handle.
    #[error("tree `{}` is larger than the store handles ({what}); split the directory", path.display())]
    TreeTooLarge {
        /// The directory, relative to the tree's root (empty for the root).
        path: PathBuf,
        /// Which limit was hit.
        what: String,
    },
    /// A symlink in a tree points outside the tree (absolute, or `..` out of its root).
    #[error("symlink `{}` points to `{target}`, outside the tree; only links that stay inside the directory can be stored", path.display())]
    SymlinkEscapes {
        /// The symlink, relative to the tree's root.
        path: PathBuf,
        /// Its target.
        target: String,
    },
    /// A symlink in a tree cannot be resolved within the hop limit.
    #[error("symlink `{}` (to `{target}`) has too many levels of symbolic links", path.display())]
    SymlinkLoop {
        /// The symlink, relative to the tree's root.
        path: PathBuf,
        /// Its target.
        target: String,
    },
    /// A directory entry is neither a regular file, a directory nor a symlink.
    #[error("`{}` is a {kind}; a tree holds only regular files, directories and symlinks", path.display())]
    UnsupportedFileType {
        /// The offending entry.
        path: PathBuf,
        /// What it is (`fifo`, `socket`, ...).
        kind: &'static str,
    },
    /// A file name or symlink target cannot be stored (not UTF-8, or not a valid name).
    #[error("`{}` cannot be stored in a tree: {reason}", path.display())]
    BadName {
        /// The offending entry.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The path given as a tree root is not a directory.
    #[error("`{}` is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
}

impl StoreError {
    /// Wraps an IO error on `path`, turning a full disk or quota into [`StoreError::DiskFull`].
    pub(crate) fn io(path: &Path, source: io::Error) -> StoreError {
        if is_disk_full(&source) {
            return StoreError::DiskFull {
                path: path.to_owned(),
            };
        }
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Whether `err` means that no space is left: `ENOSPC` or `EDQUOT`. The one definition of a
/// full disk, for the store's [`StoreError::DiskFull`] and for callers that write files of
/// their own.
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn enospc_and_edquot_become_disk_full() {
        for errno in [libc_enospc(), libc_edquot()] {
            let err = StoreError::io(Path::new("/x"), io::Error::from_raw_os_error(errno));
            assert!(
                matches!(&err, StoreError::DiskFull { path } if path == Path::new("/x")),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                "the disk holding `/x` is full; free space, or lower the store's size cap and run gc"
            );
        }
        let other = StoreError::io(Path::new("/x"), io::Error::from_raw_os_error(13));
        assert!(matches!(other, StoreError::Io { .. }), "{other:?}");
        assert!(other.to_string().starts_with("cannot access `/x`: "));
    }

    #[test]
    fn writing_to_dev_full_is_disk_full() {
        let path = Path::new("/dev/full");
        let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) else {
            // Not every container has /dev/full; the errno mapping is tested above.
            return;
        };
        let err = file
            .write_all(&[0u8; 4096])
            .and_then(|()| file.flush())
            .map_err(|e| StoreError::io(path, e))
            .expect_err("/dev/full accepts no bytes");
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    }

    /// `ENOSPC` on Linux.
    fn libc_enospc() -> i32 {
        28
    }

    /// `EDQUOT` on Linux.
    fn libc_edquot() -> i32 {
        122
    }
}
