//! Reading blobs: [`Store::open_blob`], [`Store::read`] and [`Store::read_range`].
//!
//! Every read counts as a use of the blob for GC. A verified read rehashes the bytes before
//! handing them out; bytes that do not match their name are deleted, never returned.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use weft_protocol::{Digest, DigestHasher};

use crate::error::StoreError;
use crate::put::{CHUNK, read_full};
use crate::store::Store;

/// The most [`Store::read`] reserves before reading; bigger blobs grow the buffer as they go.
const MAX_READ_RESERVE: u64 = 64 << 20;

/// Whether a read rehashes the blob before returning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Rehash, and fail with [`StoreError::Corrupt`] (deleting the blob) on a mismatch. Use it
    /// for bytes handed to a build or to a peer.
    Yes,
    /// Trust the file.
    No,
}

/// An open blob file.
///
/// Blob files are immutable, and GC or a delete only unlinks them: an open `Blob` keeps
/// reading the same bytes to its end.
#[derive(Debug)]
pub struct Blob {
    /// The blob's name.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The open file, positioned at the start.
    pub file: File,
}

impl Store {
    /// Opens the blob `digest` for reading, without verifying it.
    pub fn open_blob(&self, digest: &Digest) -> Result<Blob, StoreError> {
        let path = self.inner.layout.blob_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { digest: *digest });
            }
            Err(err) => return Err(StoreError::io(&path, err)),
        };
        let size = self.touch_open(digest, &file)?;
        Ok(Blob {
            digest: *digest,
            size,
            file,
        })
    }

    /// Reads the whole blob `digest` into memory, verified or not. For big blobs prefer
    /// [`Store::open_blob`] and stream.
    pub fn read(&self, digest: &Digest, verify: Verify) -> Result<Vec<u8>, StoreError> {
        let mut blob = self.open_blob(digest)?;
        // Reserve up front only up to a bound: the file's size is on the disk, not checked.
        let reserve = blob.size.min(MAX_READ_RESERVE);
        let mut bytes = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        blob.file
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(&self.inner.layout.blob_path(digest), e))?;
        if verify == Verify::Yes && Digest::of(&bytes) != *digest {
            self.discard_corrupt(digest, &blob.file)?;
            return Err(StoreError::Corrupt { digest: *digest });
        }
        Ok(bytes)
    }

    /// Reads up to `len` bytes of the blob `digest` from `offset` on: fewer when the blob ends
    /// first, none when `offset` is its size. Not verified: a range cannot be checked without
    /// the whole blob (use [`Store::verify`] to scrub).
    pub fn read_range(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let blob = self.open_blob(digest)?;
        if offset > blob.size {
            return Err(StoreError::RangeOutOfBounds {
                digest: *digest,
                offset,
                size: blob.size,
            });
        }
        let len = len.min(blob.size - offset);
        let path = self.inner.layout.blob_path(digest);
        let len = usize::try_from(len).map_err(|_| StoreError::Io {
            path: path.clone(),
            source: io::Error::other("range does not fit in memory"),
        })?;
        let mut bytes = vec![0u8; len];
        blob.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(bytes)
    }

    /// Rehashes the open blob `file` from its start; on a mismatch deletes the blob and returns
    /// [`StoreError::Corrupt`].
    pub(crate) fn check_open_blob(&self, digest: &Digest, file: &File) -> Result<(), StoreError> {
        let path = self.inner.layout.blob_path(digest);
        let (actual, _) = hash_file(file).map_err(|e| StoreError::io(&path, e))?;
        if actual != *digest {
            self.discard_corrupt(digest, file)?;
            return Err(StoreError::Corrupt { digest: *digest });
        }
        Ok(())
    }
}

/// The digest and size of everything in `file`, read from its start (with positioned reads, so
/// the file's cursor is not moved).
pub(crate) fn hash_file(file: &File) -> io::Result<(Digest, u64)> {
    let mut hasher = DigestHasher::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let mut reader = PositionedReader::new(file);
    loop {
        let n = read_full(&mut reader, &mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    Ok((hasher.finalize(), offset))
}

/// Reads a file from its start with `pread`, leaving its cursor alone.
pub(crate) struct PositionedReader<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> PositionedReader<'a> {
    /// A reader of `file` from its start.
    pub(crate) fn new(file: &'a File) -> PositionedReader<'a> {
        PositionedReader { file, offset: 0 }
    }
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}
