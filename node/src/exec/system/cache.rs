//! The cache file: the digests of the covered files, by path and stamp, kept across restarts
//! so that a restarted daemon reads no file whose stamp is unchanged.
//!
//! JSON, written whole ([`crate::fs::write_replacing`]): `{"version": 1, "files": [[path,
//! [dev, ino, size, mode, mtime, mtime_nsec, ctime, ctime_nsec], digest], ...]}`. Only
//! entries whose stamp was old enough to trust when they were hashed are in it (the racy
//! window). A file that cannot be read or parsed, or of another version, is a cache miss for
//! every file: they are hashed again, and the daemon says so once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_protocol::Digest;

use super::tree::CachedDigest;
use crate::stat::FileStat;

const VERSION: u32 = 1;

/// Why the cache file was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// It cannot be read.
    #[error("cannot read the toolchain digest cache `{}`: {source}", path.display())]
    Read {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// It is not a cache file of this version.
    #[error("the toolchain digest cache `{}` is damaged or of another version: {reason}", path.display())]
    Damaged {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// It cannot be written.
    #[error("cannot write the toolchain digest cache `{}`: {source}", path.display())]
    Write {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

type Stamp = (u64, u64, u64, u32, i64, i64, i64, i64);

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    files: Vec<(PathBuf, Stamp, Digest)>,
}

/// The digests in the cache file at `path`; none when there is no file yet.
pub(crate) fn load(path: &Path) -> Result<HashMap<PathBuf, CachedDigest>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => {
            return Err(CacheError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let damaged = |reason: String| CacheError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if file.version != VERSION {
        return Err(damaged(format!("version {}", file.version)));
    }
    Ok(file
        .files
        .into_iter()
        .map(|(path, stamp, digest)| {
            let (dev, ino, size, mode, mtime, mtime_nsec, ctime, ctime_nsec) = stamp;
            let stamp = FileStat {
                dev,
                ino,
                size,
                mode,
                mtime,
                mtime_nsec,
                ctime,
                ctime_nsec,
            };
            (path, CachedDigest { stamp, digest })
        })
        .collect())
}

/// Writes `files` to the cache file at `path`, replacing it. Paths that are not UTF-8 are left
/// out (JSON cannot hold them): those files are hashed again after a restart.
pub(crate) fn save(path: &Path, files: &[(PathBuf, CachedDigest)]) -> Result<(), CacheError> {
    let file = CacheFile {
        version: VERSION,
        files: files
            .iter()
            .filter(|(path, _)| path.to_str().is_some())
            .map(|(path, cached)| {
                let s = &cached.stamp;
                let stamp = (
                    s.dev,
                    s.ino,
                    s.size,
                    s.mode,
                    s.mtime,
                    s.mtime_nsec,
                    s.ctime,
                    s.ctime_nsec,
                );
                (path.clone(), stamp, cached.digest)
            })
            .collect(),
    };
    let write_error = |source| CacheError::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| write_error(io::Error::other(e)))?;
    crate::fs::write_replacing(path, &bytes, crate::fs::Contents::Rebuildable).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(n: u8) -> CachedDigest {
        CachedDigest {
            stamp: FileStat {
                dev: 1,
                ino: u64::from(n),
                size: 3,
                mode: 0o100644,
                mtime: 1_700_000_000,
                mtime_nsec: 5,
                ctime: 1_700_000_001,
                ctime_nsec: 6,
            },
            digest: Digest::of(&[n]),
        }
    }

    #[test]
    fn a_cache_round_trips_and_a_damaged_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("system-digests.json");
        assert!(load(&path).expect("no file yet").is_empty());
        let files = vec![
            (PathBuf::from("/usr/include/a.h"), cached(1)),
            (PathBuf::from("/usr/include/b.h"), cached(2)),
        ];
        save(&path, &files).expect("save");
        let loaded = load(&path).expect("load");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[Path::new("/usr/include/b.h")], cached(2));

        for damage in [
            &b"{\"version\": 1, \"files\": [["[..],
            b"\0\0\0",
            b"{\"version\":9,\"files\":[]}",
        ] {
            std::fs::write(&path, damage).expect("write");
            let err = load(&path).expect_err("damaged");
            assert!(
                err.to_string().starts_with(&format!(
                    "the toolchain digest cache `{}` is damaged",
                    path.display()
                )),
                "{err}"
            );
        }
    }
}
