//! Writing blobs: [`Store::put`], [`Store::put_file`] and [`Store::put_reader`].
//!
//! Small blobs (under [`CHUNK`] bytes) are hashed in memory first, so that a blob that is
//! already present costs one `stat` and no write; a new one costs one tmp file written with a
//! single `write`, a `rename` and an index insert.
//!
//! Larger blobs stream: the calling thread reads a chunk and hashes it while a second thread
//! writes the previous chunks to the tmp file, so a put runs at the speed of the slower of the
//! two rather than their sum. The bytes that are hashed are exactly the bytes that are written,
//! so a source that changes while it is read cannot produce a blob that does not match its
//! name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc;

use weft_protocol::{Digest, DigestHasher};

use crate::error::StoreError;
use crate::index::BlobEntry;
use crate::store::Store;

/// The size of one streaming chunk, and the size below which a blob is put from memory.
pub(crate) const CHUNK: usize = 1 << 20;
/// How many chunks may be in flight between the reading and the writing thread.
const N_CHUNKS_IN_FLIGHT: usize = 4;

impl Store {
    /// Stores `bytes` and returns their digest. Storing bytes that are already present only
    /// records a use.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        self.put_bytes(bytes, None)
    }

    /// Stores `bytes` only if they hash to `expected`: for small blobs from a peer, held in
    /// memory. Anything else is [`StoreError::Mismatch`] and nothing is written.
    pub fn put_verified(&self, bytes: &[u8], expected: Digest) -> Result<Digest, StoreError> {
        self.put_bytes(bytes, Some(expected))
    }

    /// Stores the content of the file at `path`, streamed (it is never held in memory whole),
    /// and returns its digest and size.
    pub fn put_file(&self, path: &Path) -> Result<(Digest, u64), StoreError> {
        let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let size_hint = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        self.ingest(&mut file, Some(path), None, size_hint)
    }

    /// Stores everything `reader` yields, streamed, and returns its digest and size.
    ///
    /// With `expected`, bytes that hash to anything else are discarded before anyone can see
    /// them and [`StoreError::Mismatch`] is returned: use it for bytes from a peer. The reader
    /// is always read to its end.
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        expected: Option<Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        self.ingest(&mut reader, None, expected, 0)
    }

    /// Hashes `bytes` in memory and stores them unless a complete copy is present. The stripe
    /// lock is held throughout: one `stat`, and for a new blob one tmp file written with one
    /// `write`, one `rename` and one index insert.
    fn put_bytes(&self, bytes: &[u8], expected: Option<Digest>) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        check_expected(expected, digest)?;
        let size = bytes.len() as u64;
        let path = self.inner.layout.blob_path(&digest);
        let _stripe = self.lock_stripe(&digest);
        if self.present_with_size(&path, size)? {
            let last_use = self.tick();
            self.index_set(&digest, BlobEntry { size, last_use })?;
            return Ok(digest);
        }
        let mut tmp = self.create_tmp()?;
        let tmp_path = tmp.path.clone();
        tmp.file()?
            .write_all(bytes)
            .map_err(|e| StoreError::io(&tmp_path, e))?;
        self.install_locked(tmp, &path, &digest, size)?;
        tracing::trace!(%digest, size, "put blob");
        Ok(digest)
    }

    /// Reads `reader` to its end and stores what it yields. Errors reading it name `source`
    /// when there is one. `size_hint` sizes the first buffer.
    fn ingest(
        &self,
        reader: &mut dyn Read,
        source: Option<&Path>,
        expected: Option<Digest>,
        size_hint: u64,
    ) -> Result<(Digest, u64), StoreError> {
        let read_error = |err: io::Error| match source {
            Some(path) => StoreError::io(path, err),
            None => StoreError::Read { source: err },
        };
        let limit = CHUNK as u64;
        let mut first = Vec::with_capacity(size_hint.min(limit) as usize + 1);
        reader
            .take(limit)
            .read_to_end(&mut first)
            .map_err(read_error)?;
        if first.len() < CHUNK {
            let digest = self.put_bytes(&first, expected)?;
            return Ok((digest, first.len() as u64));
        }
        let mut tmp = self.create_tmp()?;
        let tmp_path = tmp.path.clone();
        let streamed = stream_to_file(reader, first, tmp.file()?);
        let (digest, size) = match streamed {
            Ok(done) => done,
            Err(StreamError::Read(err)) => return Err(read_error(err)),
            Err(StreamError::Write(err)) => return Err(StoreError::io(&tmp_path, err)),
        };
        check_expected(expected, digest)?;
        self.install(tmp, &digest, size)?;
        tracing::debug!(%digest, size, "put streamed blob");
        Ok((digest, size))
    }
}

fn check_expected(expected: Option<Digest>, actual: Digest) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::Mismatch { expected, actual }),
        _ => Ok(()),
    }
}

/// A failure while streaming: on the reading side or the writing side.
#[derive(Debug)]
pub(crate) enum StreamError {
    Read(io::Error),
    Write(io::Error),
}

/// Writes `first` and then everything `reader` yields to `file`, hashing it on the way, and
/// returns the digest and the size. The calling thread reads and hashes; a scoped thread writes.
pub(crate) fn stream_to_file(
    reader: &mut dyn Read,
    first: Vec<u8>,
    file: &mut File,
) -> Result<(Digest, u64), StreamError> {
    let mut hasher = DigestHasher::new();
    let mut size = first.len() as u64;
    hasher.update(&first);
    std::thread::scope(|scope| {
        // Full chunks go to the writer, as (buffer, number of valid bytes); the writer hands
        // each buffer back when it is done with it.
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(N_CHUNKS_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        let writer = scope.spawn(move || -> io::Result<()> {
            for (buffer, len) in full_rx {
                file.write_all(&buffer[..len])?;
                // The reader may have finished and dropped its end; then nobody needs it back.
                let _ = empty_tx.send(buffer);
            }
            Ok(())
        });

        let first_len = first.len();
        let mut read_result = Ok(());
        let mut n_buffers = 1;
        if full_tx.send((first, first_len)).is_ok() {
            loop {
                let mut buffer = match empty_rx.try_recv() {
                    Ok(buffer) => buffer,
                    Err(_) if n_buffers < N_CHUNKS_IN_FLIGHT + 2 => {
                        n_buffers += 1;
                        vec![0u8; CHUNK]
                    }
                    Err(_) => match empty_rx.recv() {
                        Ok(buffer) => buffer,
                        // The writer stopped: its error is reported below.
                        Err(_) => break,
                    },
                };
                buffer.resize(CHUNK, 0);
                let len = match read_full(reader, &mut buffer) {
                    Ok(len) => len,
                    Err(err) => {
                        read_result = Err(err);
                        break;
                    }
                };
                if len == 0 {
                    break;
                }
                hasher.update(&buffer[..len]);
                size += len as u64;
                if full_tx.send((buffer, len)).is_err() || len < CHUNK {
                    break;
                }
            }
        }
        drop(full_tx);
        let write_result = match writer.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        write_result.map_err(StreamError::Write)?;
        read_result.map_err(StreamError::Read)
    })?;
    Ok((hasher.finalize(), size))
}

/// Reads until `buffer` is full or the reader is at its end; returns the number of bytes read.
pub(crate) fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields `len` pseudo-random bytes in odd-sized pieces, then maybe fails.
    struct Choppy {
        state: u64,
        left: usize,
        fail_at_end: bool,
    }

    impl Read for Choppy {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return if self.fail_at_end {
                    Err(io::Error::other("boom"))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(self.left).min(7919);
            for byte in &mut buf[..n] {
                self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1);
                *byte = (self.state >> 33) as u8;
            }
            self.left -= n;
            Ok(n)
        }
    }

    fn choppy(len: usize, fail_at_end: bool) -> Choppy {
        Choppy {
            state: len as u64,
            left: len,
            fail_at_end,
        }
    }

    #[test]
    fn streaming_hashes_exactly_what_it_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [CHUNK, CHUNK + 1, 3 * CHUNK + 12345, 9 * CHUNK] {
            let mut expected = Vec::new();
            choppy(len, false).read_to_end(&mut expected).expect("read");
            let path = dir.path().join(format!("f{len}"));
            let mut file = File::create(&path).expect("create");
            let mut reader = choppy(len, false);
            let mut first = vec![0u8; CHUNK];
            let n = read_full(&mut reader, &mut first).expect("read first");
            first.truncate(n);
            let (digest, size) = stream_to_file(&mut reader, first, &mut file).expect("stream");
            drop(file);
            assert_eq!(size, len as u64);
            assert_eq!(digest, Digest::of(&expected));
            assert_eq!(std::fs::read(&path).expect("read back"), expected);
        }
    }

    #[test]
    fn streaming_reports_read_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = File::create(dir.path().join("f")).expect("create");
        let mut reader = choppy(3 * CHUNK, true);
        let result = stream_to_file(&mut reader, Vec::new(), &mut file);
        assert!(matches!(result, Err(StreamError::Read(_))), "{result:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn streaming_into_a_full_disk_is_a_write_error() {
        let Ok(mut full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let mut reader = choppy(3 * CHUNK, false);
        let result = stream_to_file(&mut reader, Vec::new(), &mut full);
        match result {
            Err(StreamError::Write(err)) => assert!(crate::error::is_disk_full(&err), "{err}"),
            other => panic!("expected a write error, got {other:?}"),
        }
    }
}
