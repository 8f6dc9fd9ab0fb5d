//! [`Store`]: the handle, its shared state, opening, and the bookkeeping every operation uses.
//!
//! The operations themselves are spread over sibling modules, each adding an `impl Store`
//! block: `put` (writing blobs), `read`, `materialize`, `tree`, `action`, `gc` and `verify`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use weft_protocol::Digest;

use crate::error::StoreError;
use crate::index::{BlobEntry, Index, IndexSummary};
use crate::layout::Layout;

/// The number of stripe locks; a digest's stripe is its first byte.
const N_STRIPES: usize = 256;

/// Names of the statistics counters persisted in the index.
const COUNTER_ACTION_HITS: &str = "action_hits";
const COUNTER_ACTION_MISSES: &str = "action_misses";

/// The local content-addressed store: blob files, the action cache, pins and GC.
///
/// A `Store` is a cheap handle (an `Arc`): clone it to share one open store between threads.
/// Only one process may have a store directory open at a time; a second
/// [`Store::open`] of the same directory fails with [`StoreError::Locked`], also within one
/// process, so share clones instead of opening twice.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.layout.root)
            .field("durable", &self.inner.options.durable)
            .finish_non_exhaustive()
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Fsync every blob file and its directory before a put returns, and flush the index after
    /// every action-cache write. Makes puts survive power loss, at the cost of one or more disk
    /// flushes per put. Default: `false` (puts survive a process kill, not a power loss; see the
    /// crate documentation).
    pub durable: bool,
}

/// A snapshot of the store's size and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The number of blobs the index knows.
    pub n_blobs: u64,
    /// Their total size in bytes.
    pub total_bytes: u64,
    /// The number of action-cache entries.
    pub n_actions: u64,
    /// The number of pinned digests (counting them walks the pins, so it is O(pins)).
    pub n_pinned: u64,
    /// Action-cache lookups that found a usable result, since the index was created.
    pub action_hits: u64,
    /// Action-cache lookups that found nothing usable, since the index was created.
    pub action_misses: u64,
}

/// The state all clones of a [`Store`] share.
pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) options: StoreOptions,
    pub(crate) index: Index,
    /// Stripe locks: held while a blob's file and index entry change together, so that put, GC,
    /// delete and pin see each other's changes whole.
    stripes: Vec<Mutex<()>>,
    /// The last-use clock: a logical counter, advanced by every use of a blob.
    clock: AtomicU64,
    /// The sequence number of the next tmp file.
    tmp_seq: AtomicU64,
    /// This process's id, which tmp file names start with.
    pid: u32,
    /// The number of blob entries in the index.
    pub(crate) n_blobs: AtomicU64,
    /// The sum of their sizes.
    pub(crate) total_bytes: AtomicU64,
    /// The number of action-cache entries.
    pub(crate) n_actions: AtomicU64,
    pub(crate) action_hits: AtomicU64,
    pub(crate) action_misses: AtomicU64,
    /// Bumped whenever a blob may have gone: see [`Store::removals`].
    pub(crate) removals: AtomicU64,
    /// Serializes GC passes.
    pub(crate) gc_lock: Mutex<()>,
    /// Held open for its lock for as long as the store is open.
    _lock_file: File,
}

impl Store {
    /// Opens the store at `root`, creating it if needed, with default [`StoreOptions`].
    ///
    /// Stale tmp files are deleted. If the index is missing, unreadable or makes sled fail or
    /// panic, it is discarded and rebuilt from the blob files (the action cache and pins are
    /// lost then; no blob is).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, StoreOptions::default())
    }

    /// Opens the store at `root` with `options`. See [`Store::open`].
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        let lock_file = lock_store(&layout)?;
        create_dir(&layout.cas_dir)?;
        create_dir(&layout.tmp_dir)?;
        clean_tmp(&layout.tmp_dir)?;

        let (index, summary) = open_index(&layout)?;
        let complete = summary.complete;
        let (n_blobs, total_bytes) = if complete {
            (summary.n_blobs, summary.total_bytes)
        } else {
            index.clear_blobs()?;
            (0, 0)
        };
        let inner = Inner {
            action_hits: AtomicU64::new(index.counter(COUNTER_ACTION_HITS)?),
            removals: AtomicU64::new(0),
            action_misses: AtomicU64::new(index.counter(COUNTER_ACTION_MISSES)?),
            layout,
            options,
            index,
            stripes: (0..N_STRIPES).map(|_| Mutex::new(())).collect(),
            clock: AtomicU64::new(summary.max_last_use + 1),
            tmp_seq: AtomicU64::new(0),
            pid: std::process::id(),
            n_blobs: AtomicU64::new(n_blobs),
            total_bytes: AtomicU64::new(total_bytes),
            n_actions: AtomicU64::new(summary.n_actions),
            gc_lock: Mutex::new(()),
            _lock_file: lock_file,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        if !complete {
            let n_found = store.rebuild_blob_index()?;
            if n_found == 0 {
                tracing::debug!(root = %root.display(), "a new, empty store");
            } else {
                tracing::info!(
                    root = %root.display(),
                    n_blobs = n_found,
                    "rebuilt the store index from the blob files"
                );
            }
        }
        tracing::debug!(
            root = %root.display(),
            n_blobs = store.inner.n_blobs.load(Ordering::Relaxed),
            n_actions = summary.n_actions,
            "opened store"
        );
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Whether the blob `digest` is in the store. Does not count as a use for GC.
    pub fn has(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.inner.layout.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// A counter that changes whenever a blob may have left the store (deleted, evicted,
    /// found corrupt or missing, or a scrub ran). While it stays the same, every blob seen
    /// present is still present: callers may remember what they checked.
    pub fn removals(&self) -> u64 {
        self.inner.removals.load(Ordering::Relaxed)
    }

    /// Deletes the blob `digest`, pinned or not; true when it was there.
    pub fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let _stripe = self.lock_stripe(digest);
        let path = self.inner.layout.blob_path(digest);
        let removed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => return Err(StoreError::io(&path, err)),
        };
        self.index_remove(digest)?;
        tracing::debug!(%digest, removed, "deleted blob");
        Ok(removed)
    }

    /// Pins `digest`: GC never evicts a pinned blob. Pins are counted (each `pin` needs an
    /// `unpin`) and may name a blob that is not here yet, so pin first and then check
    /// [`Store::has`] or fetch. Pins live in the index: they are lost when it is rebuilt.
    /// Returns the new pin count.
    pub fn pin(&self, digest: &Digest) -> Result<u64, StoreError> {
        let _stripe = self.lock_stripe(digest);
        let count = self.inner.index.pin_count(digest)?.saturating_add(1);
        self.inner.index.set_pin_count(digest, count)?;
        Ok(count)
    }

    /// Removes one pin of `digest`; returns the pin count left (zero: unpinned).
    pub fn unpin(&self, digest: &Digest) -> Result<u64, StoreError> {
        let _stripe = self.lock_stripe(digest);
        let count = self.inner.index.pin_count(digest)?.saturating_sub(1);
        self.inner.index.set_pin_count(digest, count)?;
        Ok(count)
    }

    /// How many times `digest` is pinned.
    pub fn pin_count(&self, digest: &Digest) -> Result<u64, StoreError> {
        self.inner.index.pin_count(digest)
    }

    /// The store's size and counters.
    pub fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        StoreStats {
            n_blobs: inner.n_blobs.load(Ordering::Relaxed),
            total_bytes: inner.total_bytes.load(Ordering::Relaxed),
            n_actions: inner.n_actions.load(Ordering::Relaxed),
            n_pinned: inner.index.n_pinned(),
            action_hits: inner.action_hits.load(Ordering::Relaxed),
            action_misses: inner.action_misses.load(Ordering::Relaxed),
        }
    }

    /// Writes the index (last use, action cache, pins, counters) to disk. Blob files need no
    /// flush to survive a process kill; see the crate documentation.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.save_counters()?;
        self.inner.index.flush()
    }

    /// Takes the stripe lock of `digest`.
    pub(crate) fn lock_stripe(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        let stripe = &self.inner.stripes[usize::from(digest.as_bytes()[0])];
        // The guarded value is `()`: a panic while holding the lock cannot leave it in a bad
        // state, so a poisoned lock is taken as it is.
        stripe
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next value of the last-use clock. Every call returns a new, larger value.
    pub(crate) fn tick(&self) -> u64 {
        self.inner.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets the index entry of `digest`, keeping the blob counters in step. Call with the
    /// stripe lock held.
    pub(crate) fn index_set(&self, digest: &Digest, entry: BlobEntry) -> Result<(), StoreError> {
        let inner = &self.inner;
        match inner.index.insert_blob(digest, entry)? {
            Some(old) => {
                if old.size != entry.size {
                    sub(&inner.total_bytes, old.size);
                    inner.total_bytes.fetch_add(entry.size, Ordering::Relaxed);
                }
            }
            None => {
                inner.n_blobs.fetch_add(1, Ordering::Relaxed);
                inner.total_bytes.fetch_add(entry.size, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Removes the index entry of `digest`, keeping the blob counters in step. Call with the
    /// stripe lock held.
    pub(crate) fn index_remove(&self, digest: &Digest) -> Result<Option<BlobEntry>, StoreError> {
        self.inner.removals.fetch_add(1, Ordering::Relaxed);
        let old = self.inner.index.remove_blob(digest)?;
        if let Some(old) = old {
            sub(&self.inner.n_blobs, 1);
            sub(&self.inner.total_bytes, old.size);
        }
        Ok(old)
    }

    /// Records a use of `digest` if its file exists, and returns its size; removes a stale
    /// index entry if it does not.
    pub(crate) fn touch_path(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.inner.layout.blob_path(digest);
        let _stripe = self.lock_stripe(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                let entry = BlobEntry {
                    size: meta.len(),
                    last_use: self.tick(),
                };
                self.index_set(digest, entry)?;
                Ok(Some(meta.len()))
            }
            Ok(_) => Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.index_remove(digest)?;
                Ok(None)
            }
            Err(err) => Err(StoreError::io(&path, err)),
        }
    }

    /// Records a use of the blob `digest`, open as `file`, and returns its size. Leaves the
    /// index alone when the file has been unlinked since it was opened (by GC or delete):
    /// the open file still reads fine, but the blob is gone.
    pub(crate) fn touch_open(&self, digest: &Digest, file: &File) -> Result<u64, StoreError> {
        let _stripe = self.lock_stripe(digest);
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io(&self.inner.layout.blob_path(digest), e))?;
        if meta.nlink() > 0 {
            let entry = BlobEntry {
                size: meta.len(),
                last_use: self.tick(),
            };
            self.index_set(digest, entry)?;
        }
        Ok(meta.len())
    }

    /// Deletes the blob `digest` after its bytes, read from `file`, failed to hash to its name,
    /// unless the name now holds another file (a good copy that a put has just renamed in).
    pub(crate) fn discard_corrupt(&self, digest: &Digest, file: &File) -> Result<(), StoreError> {
        let path = self.inner.layout.blob_path(digest);
        let _stripe = self.lock_stripe(digest);
        let bad = file.metadata().map_err(|e| StoreError::io(&path, e))?;
        match fs::symlink_metadata(&path) {
            Ok(current) if current.dev() == bad.dev() && current.ino() == bad.ino() => {
                remove_file_if_present(&path)?;
                self.index_remove(digest)?;
                tracing::warn!(%digest, path = %path.display(), "deleted a corrupt blob");
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(StoreError::io(&path, err)),
        }
        Ok(())
    }

    /// A new, unique tmp file, open for writing, with the blob mode (read-only for everyone).
    pub(crate) fn create_tmp(&self) -> Result<TmpFile, StoreError> {
        let inner = &self.inner;
        let seq = inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        // Spread tmp files round-robin over the tmp subdirectories (the low byte of `seq`).
        let subdir = inner.layout.tmp_subdir(seq.to_le_bytes()[0]);
        let path = subdir.join(format!("{}.{seq}", inner.pid));
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&path)
        };
        let file = match create() {
            Ok(file) => file,
            // Subdirectories are made on first use.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                create_dir(&subdir)?;
                create().map_err(|e| StoreError::io(&path, e))?
            }
            Err(err) => return Err(StoreError::io(&path, err)),
        };
        Ok(TmpFile {
            path,
            file: Some(file),
            installed: false,
        })
    }

    /// Whether the blob file at `path` is present with `size` bytes. A file of another size
    /// (truncated by a power loss, say) counts as absent, so that a put replaces it.
    pub(crate) fn present_with_size(&self, path: &Path, size: u64) -> Result<bool, StoreError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() && meta.len() == size => Ok(true),
            Ok(meta) => {
                tracing::warn!(
                    path = %path.display(),
                    size,
                    present = meta.len(),
                    "replacing a blob file of the wrong size"
                );
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::io(path, err)),
        }
    }

    /// Moves a fully written tmp file holding the blob `digest` of `size` bytes into place,
    /// and records it in the index. When a complete copy is already there, the tmp file is
    /// dropped and the copy counts as used.
    pub(crate) fn install(
        &self,
        tmp: TmpFile,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let _stripe = self.lock_stripe(digest);
        let path = self.inner.layout.blob_path(digest);
        if self.present_with_size(&path, size)? {
            drop(tmp);
            return self.index_set(
                digest,
                BlobEntry {
                    size,
                    last_use: self.tick(),
                },
            );
        }
        self.install_locked(tmp, &path, digest, size)
    }

    /// Renames the tmp file to `path`, the blob file of `digest`, and records it in the index.
    /// Call with the stripe lock held, after checking that no complete copy is there.
    pub(crate) fn install_locked(
        &self,
        mut tmp: TmpFile,
        path: &Path,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        if let Some(file) = tmp.file.take()
            && self.inner.options.durable
        {
            file.sync_all().map_err(|e| StoreError::io(&tmp.path, e))?;
        }
        self.rename_into_place(&tmp.path, path, digest)?;
        tmp.installed = true;
        self.index_set(
            digest,
            BlobEntry {
                size,
                last_use: self.tick(),
            },
        )
    }

    fn rename_into_place(
        &self,
        tmp: &Path,
        path: &Path,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let fanout = self.inner.layout.fanout_dir(digest.as_bytes()[0]);
        if let Err(err) = fs::rename(tmp, path) {
            if err.kind() != io::ErrorKind::NotFound {
                return Err(StoreError::io(path, err));
            }
            // Fan-out directories are made on first use (and again if someone removed one).
            create_dir(&fanout)?;
            fs::rename(tmp, path).map_err(|e| StoreError::io(path, e))?;
        }
        if self.inner.options.durable {
            File::open(&fanout)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| StoreError::io(&fanout, e))?;
        }
        Ok(())
    }
}

impl Inner {
    fn save_counters(&self) -> Result<(), StoreError> {
        let hits = self.action_hits.load(Ordering::Relaxed);
        let misses = self.action_misses.load(Ordering::Relaxed);
        self.index.set_counter(COUNTER_ACTION_HITS, hits)?;
        self.index.set_counter(COUNTER_ACTION_MISSES, misses)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(err) = self.save_counters().and_then(|()| self.index.flush()) {
            tracing::warn!(root = %self.layout.root.display(), %err, "cannot flush the store index on close");
        }
    }
}

/// A tmp file being written. Deleted on drop unless it has been renamed into place.
pub(crate) struct TmpFile {
    pub(crate) path: PathBuf,
    /// The open file; taken when writing is done.
    pub(crate) file: Option<File>,
    installed: bool,
}

impl TmpFile {
    /// The open file. Writing code calls this before `install` takes it away.
    pub(crate) fn file(&mut self) -> Result<&mut File, StoreError> {
        let path = &self.path;
        self.file.as_mut().ok_or_else(|| StoreError::Io {
            path: path.clone(),
            source: io::Error::other("tmp file used after it was closed (a store bug)"),
        })
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.installed
            && let Err(err) = fs::remove_file(&self.path)
        {
            tracing::debug!(path = %self.path.display(), %err, "cannot remove tmp file");
        }
    }
}

/// Subtracts without wrapping below zero.
pub(crate) fn sub(counter: &AtomicU64, amount: u64) {
    // The closure always returns `Some`, so `fetch_update` cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
        Some(value.saturating_sub(amount))
    });
}

/// Creates and locks `<root>/lock`, so that one process at a time has the store open.
fn lock_store(layout: &Layout) -> Result<File, StoreError> {
    let path = &layout.lock_file;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: layout.root.clone(),
        }),
        Err(fs::TryLockError::Error(err)) => Err(StoreError::io(path, err)),
    }
}

/// Opens the index. Waits a little for a sled instance of this process that is still shutting
/// down; discards an index that sled cannot open, or that makes it panic, and starts afresh.
fn open_index(layout: &Layout) -> Result<(Index, IndexSummary), StoreError> {
    const N_LOCK_RETRIES: u32 = 50;
    let dir = &layout.index_dir;
    let mut n_retries = 0;
    loop {
        match Index::open(dir) {
            Ok(opened) => return Ok(opened),
            Err(err) if err.lock_busy && n_retries < N_LOCK_RETRIES => {
                n_retries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(err) if err.lock_busy => {
                return Err(StoreError::Index(format!(
                    "the index at `{}` stays locked: {}",
                    dir.display(),
                    err.reason
                )));
            }
            Err(err) => {
                tracing::warn!(
                    path = %dir.display(),
                    reason = %err.reason,
                    "store index is unreadable; discarding it and rebuilding it from the blob files"
                );
                discard_path(dir)?;
                return Index::open(dir).map_err(|err| StoreError::Index(err.reason));
            }
        }
    }
}

/// Creates `dir` if it is missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::io(dir, err)),
    }
}

/// Removes `path` if it exists.
pub(crate) fn remove_file_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io(path, err)),
    }
}

/// Removes `path`, a file or a whole directory, if it exists.
pub(crate) fn discard_path(path: &Path) -> Result<(), StoreError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    };
    result.map_err(|e| StoreError::io(path, e))
}

/// Deletes what an earlier process left in `tmp/`: writes it never finished. The tmp
/// subdirectories stay; anything else goes.
fn clean_tmp(tmp_dir: &Path) -> Result<(), StoreError> {
    let mut n_removed = 0u64;
    for entry in fs::read_dir(tmp_dir).map_err(|e| StoreError::io(tmp_dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(tmp_dir, e))?;
        let path = entry.path();
        let is_subdir = entry.file_type().is_ok_and(|t| t.is_dir())
            && entry.file_name().to_str().is_some_and(is_fanout_name);
        if !is_subdir {
            discard_path(&path)?;
            n_removed += 1;
            continue;
        }
        for file in fs::read_dir(&path).map_err(|e| StoreError::io(&path, e))? {
            let file = file.map_err(|e| StoreError::io(&path, e))?;
            discard_path(&file.path())?;
            n_removed += 1;
        }
    }
    if n_removed > 0 {
        tracing::info!(path = %tmp_dir.display(), n_removed, "removed unfinished tmp files");
    }
    Ok(())
}

/// Whether `name` is two lower-case hex digits.
fn is_fanout_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
