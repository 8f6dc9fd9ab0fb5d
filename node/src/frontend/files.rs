//! Reading the workspace during one load: directory listings and file digests, each read at
//! most once per load, so that globs, BUILD-file lookups and cache checks share the work.
//!
//! Listings are also kept from one load to the next, each with its directory's stamp (inode,
//! mtime and ctime): adding, removing or renaming an entry changes the directory's mtime, so
//! while the stamp is the same, so is the listing, and a warm `//...` load costs one `stat`
//! per directory instead of reading every entry. As with source digests, a directory changed
//! within [`RACY_WINDOW`] of being listed is not kept, since a second change within the same
//! timestamp tick would leave its stamp as it was; nor is a listing with a symbolic link,
//! whose kind follows its target.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use weft_protocol::Digest;

use crate::stat::{self, FileStat, RACY_WINDOW};

/// The names a BUILD file may have, in order of preference: `BUILD.weft` wins over `BUILD`
/// when a directory has both (useful where a `build/` directory clashes with `BUILD` on a
/// case-insensitive file system).
pub const BUILD_FILE_NAMES: [&str; 2] = ["BUILD.weft", "BUILD"];

/// What a directory entry is. Symbolic links count as what they point to, except that a link
/// to a directory is never followed (it is [`EntryKind::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) kind: EntryKind,
}

/// A directory's entries, sorted by name; empty when the directory cannot be read.
pub(crate) type Listing = Arc<Vec<Entry>>;

/// Above this many directories, the kept listings are dropped and gathered again.
const MAX_KEPT: usize = 200_000;

/// Listings kept between loads, by absolute directory path.
pub(crate) type KeptListings = HashMap<PathBuf, (FileStat, Listing)>;

/// A file's digest and content, or why it could not be read.
type ReadResult = Rc<Result<(Digest, Rc<str>), std::io::ErrorKind>>;

/// Listings and digests read during one load, and the listings kept from earlier ones.
#[derive(Default)]
pub(crate) struct FsCache {
    listings: RefCell<HashMap<PathBuf, Listing>>,
    digests: RefCell<HashMap<PathBuf, ReadResult>>,
    kept: RefCell<KeptListings>,
}

impl FsCache {
    /// A cache for one load, starting from the listings `kept` by earlier ones.
    pub(crate) fn with_kept(kept: KeptListings) -> FsCache {
        FsCache {
            kept: RefCell::new(kept),
            ..FsCache::default()
        }
    }

    /// The listings to keep for the next load.
    pub(crate) fn take_kept(&self) -> KeptListings {
        std::mem::take(&mut *self.kept.borrow_mut())
    }

    /// The entries of `dir`, sorted by name. Entries whose names are not UTF-8 are left out.
    pub(crate) fn list(&self, dir: &Path) -> Listing {
        if let Some(listing) = self.listings.borrow().get(dir) {
            return listing.clone();
        }
        let stamp = stat::stat(dir).ok();
        let kept = match (stamp, self.kept.borrow().get(dir)) {
            (Some(now), Some((then, listing))) if now == *then => Some(listing.clone()),
            _ => None,
        };
        let listing = kept.unwrap_or_else(|| {
            let (listing, has_links) = read_listing(dir);
            let mut kept = self.kept.borrow_mut();
            match stamp {
                Some(stamp)
                    if !has_links && !stamp.changed_within(RACY_WINDOW, SystemTime::now()) =>
                {
                    if kept.len() >= MAX_KEPT {
                        kept.clear();
                    }
                    kept.insert(dir.to_owned(), (stamp, listing.clone()));
                }
                _ => {
                    kept.remove(dir);
                }
            }
            listing
        });
        self.listings
            .borrow_mut()
            .insert(dir.to_owned(), listing.clone());
        listing
    }

    /// The BUILD file of `dir` (its file name), if it has one.
    pub(crate) fn build_file_name(&self, dir: &Path) -> Option<&'static str> {
        let listing = self.list(dir);
        BUILD_FILE_NAMES.into_iter().find(|name| {
            listing
                .binary_search_by(|e| e.name.as_str().cmp(name))
                .is_ok_and(|i| listing[i].kind == EntryKind::File)
        })
    }

    /// The content of the file at `path` and its digest, read once per load.
    pub(crate) fn read(&self, path: &Path) -> Result<(Digest, Rc<str>), std::io::Error> {
        let cached = self.digests.borrow().get(path).cloned();
        let result = match cached {
            Some(result) => result,
            None => {
                let result = Rc::new(match std::fs::read_to_string(path) {
                    Ok(text) => Ok((Digest::of(text.as_bytes()), Rc::from(text))),
                    Err(e) => Err(e.kind()),
                });
                self.digests
                    .borrow_mut()
                    .insert(path.to_owned(), result.clone());
                result
            }
        };
        match &*result {
            Ok((digest, text)) => Ok((*digest, text.clone())),
            Err(kind) => Err(std::io::Error::from(*kind)),
        }
    }
}

/// Reads `dir`'s listing, and whether it has a symbolic link.
fn read_listing(dir: &Path) -> (Listing, bool) {
    let mut entries = Vec::new();
    let mut has_links = false;
    if let Ok(read) = std::fs::read_dir(dir) {
        for entry in read.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => EntryKind::Dir,
                Ok(t) if t.is_file() => EntryKind::File,
                Ok(t) if t.is_symlink() => {
                    has_links = true;
                    match std::fs::metadata(entry.path()) {
                        Ok(m) if m.is_file() => EntryKind::File,
                        _ => EntryKind::Other,
                    }
                }
                _ => EntryKind::Other,
            };
            entries.push(Entry { name, kind });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    (Arc::new(entries), has_links)
}
