//! weft's local content-addressed store: immutable blob files named by their blake3 digest,
//! whole directories as Merkle trees, the action cache, pins and LRU garbage collection.
//!
//! # Layout
//!
//! ```text
//! <root>/lock                  flock-ed by the one process that has the store open
//! <root>/cas/<2 hex>/<64 hex>  blob files, mode 0444, never modified once in place
//! <root>/tmp/<2 hex>/<pid>.<n> blobs being written; emptied when the store is opened
//! <root>/index/                sled: blob sizes and last use, action cache, pins, counters
//! ```
//!
//! A blob is written to a tmp file, hashed while it is written, and renamed into place under
//! its digest. Tmp files are spread round-robin over 256 subdirectories, because creating files
//! in one directory from many threads serializes on that directory's lock. Fan-out and tmp
//! subdirectories are created on first use: a rename or create that fails for want of one makes
//! it and retries, so a put never checks for directories.
//!
//! # Invariants
//!
//! - **The files are the truth.** A blob exists exactly when its file exists. The sled index
//!   holds nothing that cannot be rebuilt or lost: blob entries are rebuilt from the files
//!   ([`Store::verify`], or at open when the index is missing or broken), a lost action-cache
//!   entry is a cache miss, lost pins and counters only weaken GC and [`Store::stats`].
//! - **A blob file is whole or absent.** Only a `rename` of a fully written and hashed tmp file
//!   creates one; nothing writes to a blob file afterwards.
//! - **Bad data is never handed out as good.** Verified reads, [`Store::materialize`] and
//!   [`Store::verify`] rehash; a blob that does not match its name is deleted and reported as
//!   [`StoreError::Corrupt`]. Bad bytes on disk (blobs, index entries, tree blobs) are errors or
//!   cache misses, never panics.
//! - **No networking here, and sled never leaks**: no sled type appears in the public API.
//!
//! # Durability
//!
//! - **Process kill** (crash, `SIGKILL`, OOM): every blob whose `put` returned survives whole,
//!   and a blob being written is absent (its tmp file is deleted at the next open). Index
//!   writes of the last ~0.5 s may be lost (sled flushes in the background): a blob without an
//!   entry gets it back when it is next used or by [`Store::verify`], and a lost action-cache
//!   entry is a miss. If sled itself is left unreadable, the next [`Store::open`] discards the
//!   index and rebuilds the blob entries from the files: no blob is lost, the action cache and
//!   pins are.
//! - **Power loss or kernel crash**: by default nothing is fsynced, for speed. Blobs written in
//!   the last seconds before the loss may be missing, empty or truncated under their final
//!   name. A put of the same bytes replaces a file of the wrong size; verified reads,
//!   materialize and [`Store::verify`] catch any other damage and delete it. Run
//!   [`Store::verify`] after an unclean shutdown. With [`StoreOptions::durable`] each blob file
//!   and its directory are fsynced before the put returns, and the index is flushed after each
//!   action-cache write.
//!
//! # Concurrency and GC
//!
//! A [`Store`] is `Clone + Send + Sync`; clones share one open store. 256 stripe locks, chosen
//! by a digest's first byte, make the changes of one blob's file and index entry atomic with
//! respect to each other: put (also when the blob is already there), reads that record a use,
//! pin, delete and GC's eviction of one blob. Two writers of the same bytes both succeed: each
//! writes its own tmp file, and the second finds the first's copy in place and drops its own.
//!
//! Last use is a logical clock, not wall time: a counter kept in memory, restarted at open
//! from the largest value in the index, and advanced by every put, read, materialize and
//! action-cache hit of a blob. [`Store::has`] does not count as a use. GC evicts in ascending
//! last-use order, skips pinned blobs, and skips blobs used after the pass began (see
//! [`Store::gc`]).

#![warn(missing_docs, unreachable_pub)]

mod action;
mod error;
mod gc;
mod index;
mod layout;
mod materialize;
mod put;
mod read;
mod store;
mod tree;
mod verify;

pub use action::PutAction;
pub use error::{StoreError, is_disk_full};
pub use gc::GcReport;
pub use read::{Blob, Verify};
pub use store::{Store, StoreOptions, StoreStats};
pub use tree::{MAX_TREE_DEPTH, MAX_TREE_ENTRIES, TreeSummary};
pub use verify::VerifyReport;
