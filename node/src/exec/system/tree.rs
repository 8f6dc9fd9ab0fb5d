//! [`Covered`]: the directories a system digest covers, each listed once, digested from its
//! files' contents, and kept current.
//!
//! # What a root's digest is made of
//!
//! A [`Root`] is a directory covered [`Coverage::Whole`] (every entry below it, at any depth)
//! or [`Coverage::Linker`] (only the entries directly in it that a linker reads: see
//! [`is_linker_file`]). Its digest is blake3 over its path and its entries, in a fixed order
//! (each directory's entries sorted by name, then its subdirectories' in the same order), each
//! entry as its path relative to the root and what it is:
//! - a regular file: the blake3 of its contents and whether it is executable;
//! - a symlink: its target as written (not followed: the target is an entry of its own when it
//!   is covered);
//! - a directory (whole roots only): its name, then its entries.
//!
//! A root that does not exist reads as an empty directory. Other kinds of entry (sockets,
//! FIFOs, devices) are left out, and so is a file or directory that cannot be read (with one
//! warning naming it). Owners, times and inode numbers are not part
//! of it: two machines with the same files agree, and a `touch` changes nothing.
//!
//! # Kept current
//!
//! A file's digest is cached under its path and `lstat` stamp (device, inode, size, mode,
//! mtime and ctime); a stamp within the racy window of the clock when the file is read is not
//! cached (as for sources: see `exec/sources.rs`), nor is one that changed while being read.
//! Every listed directory is watched with inotify ([`Watcher`]) before it is read, so a change
//! made after its listing is queued as an event. [`Covered::refresh`] reads the queued events
//! and lists again only the directories they name, then digests again only the roots that
//! hold them; with no event it costs one `read` that finds nothing. Where inotify is
//! unavailable (no instance, or the watch limit reached), every refresh lists every covered
//! directory again and compares stamps: one `lstat` per covered file, with no file read
//! unless its stamp changed.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use weft_protocol::{Digest, DigestHasher};

use super::watch::Watcher;
use crate::stat::{DirStat, FileStat};

/// How much of a covered directory is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Coverage {
    /// Every entry below the directory, at any depth: header directories, a compiler's own
    /// directories.
    Whole,
    /// The files directly in the directory that a linker reads ([`is_linker_file`]): the
    /// library directories it searches.
    Linker,
}

/// A covered directory: an absolute path, and how much below it counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    pub(crate) coverage: Coverage,
}

/// A file's digest and the stamp it was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachedDigest {
    pub(crate) stamp: FileStat,
    pub(crate) digest: Digest,
}

/// Whether a linker can read the file `name` from a directory it searches: a shared library
/// (`libz.so`, `libc.so.6`; `libc.so` is a linker script, also read), a static library
/// (`.a`) or an object (`crt1.o`).
pub(crate) fn is_linker_file(name: &[u8]) -> bool {
    name.ends_with(b".so")
        || name.ends_with(b".a")
        || name.ends_with(b".o")
        || name.windows(4).any(|w| w == b".so.")
}

/// Counters of a [`Covered`], for logs and the start-up measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CoveredStats {
    /// Files whose contents were read.
    pub(crate) n_hashed: u64,
    /// Bytes read to hash them.
    pub(crate) bytes_hashed: u64,
    /// Directory listings made.
    pub(crate) n_listed: u64,
    /// Directories listed now (and watched, when watching).
    pub(crate) n_dirs: usize,
    /// Files with a cached digest.
    pub(crate) n_cached: usize,
    /// Whether changes are watched (else every refresh lists everything again).
    pub(crate) watching: bool,
}

/// One directory's entries as last listed.
#[derive(Debug)]
struct Listing {
    /// The directory's device and inode: another directory at the same path is listed anew.
    id: (u64, u64),
    /// Its inotify watch.
    wd: Option<i32>,
    /// Sorted by name.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: OsString,
    /// `lstat` of the entry.
    stat: FileStat,
    /// A symlink's target.
    target: Option<OsString>,
}

/// One entry of a root, in digest order.
enum Item {
    Dir {
        rel: Vec<u8>,
    },
    File {
        rel: Vec<u8>,
        path: PathBuf,
        stat: FileStat,
    },
    Link {
        rel: Vec<u8>,
        target: OsString,
    },
}

/// The covered directories and what is known of them; see the module documentation.
#[derive(Debug)]
pub(crate) struct Covered {
    listings: HashMap<PathBuf, Listing>,
    files: HashMap<PathBuf, CachedDigest>,
    /// Every covered root and its digest.
    roots: HashMap<Root, Digest>,
    watcher: Option<Watcher>,
    /// Which listings each watch belongs to.
    wds: HashMap<i32, Vec<PathBuf>>,
    /// Listed directories with events since.
    dirty: HashSet<PathBuf>,
    /// Whether every listing must be made again (no watcher, or the event queue overflowed).
    all_dirty: bool,
    /// Listings made again during this refresh.
    relisted: HashSet<PathBuf>,
    /// Paths already warned about.
    warned: HashSet<PathBuf>,
    racy_window: Duration,
    stats: CoveredStats,
    /// Whether a digest was cached since [`Covered::take_cache_changed`].
    cache_changed: bool,
}

impl Covered {
    /// Nothing covered yet, with the digests of `files` known (a previous run's cache), and
    /// with changes watched when `watch` is true and inotify is available.
    pub(crate) fn new(
        files: HashMap<PathBuf, CachedDigest>,
        racy_window: Duration,
        watch: bool,
    ) -> Covered {
        let watcher = if watch {
            match Watcher::new() {
                Ok(watcher) => Some(watcher),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "cannot watch the toolchain's system directories: every build lists \
                         them again"
                    );
                    None
                }
            }
        } else {
            None
        };
        Covered {
            listings: HashMap::new(),
            files,
            roots: HashMap::new(),
            all_dirty: watcher.is_none(),
            watcher,
            wds: HashMap::new(),
            dirty: HashSet::new(),
            relisted: HashSet::new(),
            warned: HashSet::new(),
            racy_window,
            stats: CoveredStats::default(),
            cache_changed: false,
        }
    }

    /// The digest of `root`, covering it from now on.
    pub(crate) fn cover(&mut self, root: &Root) -> Digest {
        if let Some(digest) = self.roots.get(root) {
            return *digest;
        }
        let digest = self.compute(root);
        self.relisted.clear();
        self.roots.insert(root.clone(), digest);
        digest
    }

    /// How many roots are covered.
    pub(crate) fn n_roots(&self) -> usize {
        self.roots.len()
    }

    /// Brings every covered root's digest up to date with what changed since the last
    /// refresh (see the module documentation). Returns whether any digest changed.
    pub(crate) fn refresh(&mut self) -> bool {
        self.read_events();
        let absent: Vec<PathBuf> = self
            .roots
            .keys()
            .filter(|root| !self.listings.contains_key(&root.path))
            .map(|root| root.path.clone())
            .collect();
        // A root that did not exist may exist now; nothing watched it.
        for path in absent {
            if std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
                self.dirty.insert(path);
            }
        }
        if !self.all_dirty && self.dirty.is_empty() {
            return false;
        }
        let mut affected: Vec<Root> = self
            .roots
            .keys()
            .filter(|root| self.all_dirty || self.dirty.iter().any(|dir| holds(root, dir)))
            .cloned()
            .collect();
        affected.sort();
        let mut changed = false;
        for root in affected {
            let digest = self.compute(&root);
            if self.roots.insert(root, digest) != Some(digest) {
                changed = true;
            }
        }
        // What is left names directories no root holds any more.
        let gone: Vec<PathBuf> = self
            .dirty
            .drain()
            .filter(|dir| !self.relisted.contains(dir))
            .collect();
        for dir in gone {
            self.forget_below(&dir);
        }
        self.relisted.clear();
        self.all_dirty = self.watcher.is_none();
        changed
    }

    /// Every cached digest of a file that is covered now, for the cache file.
    pub(crate) fn cached_files(&self) -> Vec<(PathBuf, CachedDigest)> {
        let mut files: Vec<(PathBuf, CachedDigest)> = self
            .files
            .iter()
            .filter(|(path, cached)| self.is_listed_with(path, &cached.stamp))
            .map(|(path, cached)| (path.clone(), *cached))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    /// Whether a digest was cached since the last call.
    pub(crate) fn take_cache_changed(&mut self) -> bool {
        std::mem::take(&mut self.cache_changed)
    }

    /// Counters.
    pub(crate) fn stats(&self) -> CoveredStats {
        CoveredStats {
            n_dirs: self.listings.len(),
            n_cached: self.files.len(),
            watching: self.watcher.is_some(),
            ..self.stats
        }
    }

    /// Marks the directories named by queued events as dirty.
    fn read_events(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            self.all_dirty = true;
            return;
        };
        match watcher.drain() {
            Ok(changes) => {
                if changes.overflow {
                    self.all_dirty = true;
                }
                for wd in changes.watches {
                    if let Some(dirs) = self.wds.get(&wd) {
                        self.dirty.extend(dirs.iter().cloned());
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the toolchain directories' watch");
                self.stop_watching();
            }
        }
    }

    /// Falls back to listing everything on every refresh.
    fn stop_watching(&mut self) {
        self.watcher = None;
        self.wds.clear();
        for listing in self.listings.values_mut() {
            listing.wd = None;
        }
        self.all_dirty = true;
    }

    /// Whether `path` is an entry of its directory's listing with `stamp`.
    fn is_listed_with(&self, path: &Path, stamp: &FileStat) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        self.listings.get(dir).is_some_and(|listing| {
            listing
                .entries
                .binary_search_by(|entry| entry.name.as_bytes().cmp(name.as_bytes()))
                .is_ok_and(|at| listing.entries[at].stat == *stamp)
        })
    }

    /// The digest of `root` as it is now, listing what needs it and hashing what is not
    /// cached.
    fn compute(&mut self, root: &Root) -> Digest {
        let mut encoder = Encoder::new("weft.system.root.v1");
        encoder.bytes(root.path.as_os_str().as_bytes());
        encoder.tag(match root.coverage {
            Coverage::Whole => b'w',
            Coverage::Linker => b'l',
        });
        // A root that is not there reads as an empty one: to a compiler they are the same, and
        // two machines that differ only so share their results.
        let items = self.collect(root).unwrap_or_default();
        let (digests, unreadable) = self.file_digests(&items);
        for (item, digest) in items.iter().zip(digests) {
            match item {
                Item::Dir { rel } => {
                    encoder.tag(b'd');
                    encoder.bytes(rel);
                }
                Item::File { rel, stat, .. } => {
                    // Left out: unreadable, or gone since it was listed (its directory's
                    // event is queued).
                    if let Some(digest) = digest {
                        encoder.tag(b'f');
                        encoder.bytes(rel);
                        encoder.digest(&digest);
                        encoder.tag(u8::from(stat.mode & 0o111 != 0));
                    }
                }
                Item::Link { rel, target } => {
                    encoder.tag(b's');
                    encoder.bytes(rel);
                    encoder.bytes(target.as_bytes());
                }
            }
        }
        self.warn_once(
            "cannot read files in the toolchain's system directories; they are left out of \
             job ids",
            unreadable,
        );
        encoder.finish()
    }

    /// `root`'s entries in digest order, or `None` when it is no directory.
    fn collect(&mut self, root: &Root) -> Option<Vec<Item>> {
        let meta = match std::fs::symlink_metadata(&root.path) {
            Ok(meta) if meta.is_dir() => meta,
            _ => {
                self.forget_below(&root.path);
                return None;
            }
        };
        let whole = root.coverage == Coverage::Whole;
        let mut items = Vec::new();
        let mut stack = vec![(root.path.clone(), Vec::new(), (meta.dev(), meta.ino()))];
        while let Some((dir, rel, id)) = stack.pop() {
            let Some(listing) = self.listed(&dir, id) else {
                continue;
            };
            let mut subdirs = Vec::new();
            for entry in &listing.entries {
                let name = entry.name.as_bytes();
                let mut entry_rel = rel.clone();
                if !entry_rel.is_empty() {
                    entry_rel.push(b'/');
                }
                entry_rel.extend_from_slice(name);
                let kind = entry.stat.mode & libc::S_IFMT;
                // A linker directory: only its library files, no subdirectory.
                let counts = whole || (kind != libc::S_IFDIR && is_linker_file(name));
                if !counts {
                    continue;
                }
                match kind {
                    libc::S_IFDIR => {
                        items.push(Item::Dir {
                            rel: entry_rel.clone(),
                        });
                        subdirs.push((
                            dir.join(&entry.name),
                            entry_rel,
                            (entry.stat.dev, entry.stat.ino),
                        ));
                    }
                    libc::S_IFREG => items.push(Item::File {
                        rel: entry_rel,
                        path: dir.join(&entry.name),
                        stat: entry.stat,
                    }),
                    libc::S_IFLNK => {
                        if let Some(target) = &entry.target {
                            items.push(Item::Link {
                                rel: entry_rel,
                                target: target.clone(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Some(items)
    }

    /// The listing of `dir`, whose device and inode are `id`, made again when it is dirty or
    /// of another directory; `None` when it cannot be listed.
    fn listed(&mut self, dir: &Path, id: (u64, u64)) -> Option<&Listing> {
        let fresh = self
            .listings
            .get(dir)
            .is_some_and(|listing| listing.id == id)
            && (self.relisted.contains(dir) || !(self.all_dirty || self.dirty.contains(dir)));
        if !fresh {
            self.list(dir, id);
        }
        self.listings.get(dir)
    }

    /// Lists `dir` (watching it first), replacing its listing; forgets it when it cannot be
    /// listed.
    fn list(&mut self, dir: &Path, id: (u64, u64)) {
        self.relisted.insert(dir.to_owned());
        self.dirty.remove(dir);
        self.stats.n_listed += 1;
        let old = self.listings.remove(dir);
        let reused = old
            .as_ref()
            .filter(|old| old.id == id)
            .and_then(|old| old.wd);
        let added = match (reused, &self.watcher) {
            (Some(wd), _) => Ok(Some(wd)),
            (None, Some(watcher)) => watcher.add(dir).map(Some),
            (None, None) => Ok(None),
        };
        let wd = match added {
            Ok(wd) => wd,
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(
                    dir = %dir.display(),
                    %error,
                    "cannot watch a toolchain directory: every build lists the toolchain's \
                     system directories again (raise `fs.inotify.max_user_watches`?)"
                );
                self.stop_watching();
                None
            }
        };
        let now = read_entries(dir);
        if let Some(old) = &old {
            if old.wd.is_some() && old.wd != wd {
                self.unwatch(dir, old.wd);
            }
            // Subdirectories that went, or are other directories now, are forgotten.
            let kept: HashSet<(&[u8], u64)> = match &now {
                Ok(entries) => entries
                    .iter()
                    .map(|e| (e.name.as_bytes(), e.stat.ino))
                    .collect(),
                Err(_) => HashSet::new(),
            };
            let gone: Vec<PathBuf> = old
                .entries
                .iter()
                .filter(|e| e.stat.mode & libc::S_IFMT == libc::S_IFDIR)
                .filter(|e| !kept.contains(&(e.name.as_bytes(), e.stat.ino)))
                .map(|e| dir.join(&e.name))
                .collect();
            for sub in gone {
                self.forget_below(&sub);
            }
        }
        self.store_listing(dir, id, wd, now);
    }

    fn store_listing(
        &mut self,
        dir: &Path,
        id: (u64, u64),
        wd: Option<i32>,
        entries: io::Result<Vec<Entry>>,
    ) {
        let entries = match entries {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.unwatch(dir, wd);
                return;
            }
            Err(error) => {
                if self.warned.insert(dir.to_owned()) {
                    tracing::warn!(
                        dir = %dir.display(),
                        %error,
                        "cannot list a toolchain directory; it is left out of job ids"
                    );
                }
                Vec::new()
            }
        };
        if let Some(wd) = wd {
            let dirs = self.wds.entry(wd).or_default();
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }
        self.listings
            .insert(dir.to_owned(), Listing { id, wd, entries });
    }

    /// Forgets the listings of `dir` and of every directory below it.
    fn forget_below(&mut self, dir: &Path) {
        let below: Vec<PathBuf> = self
            .listings
            .keys()
            .filter(|path| path.starts_with(dir))
            .cloned()
            .collect();
        for path in below {
            if let Some(listing) = self.listings.remove(&path) {
                self.unwatch(&path, listing.wd);
            }
        }
    }

    /// Drops `dir` from watch `wd`, and the watch when no listing is left on it.
    fn unwatch(&mut self, dir: &Path, wd: Option<i32>) {
        let Some(wd) = wd else { return };
        let Some(dirs) = self.wds.get_mut(&wd) else {
            return;
        };
        dirs.retain(|d| d != dir);
        if dirs.is_empty() {
            self.wds.remove(&wd);
            if let Some(watcher) = &self.watcher {
                watcher.remove(wd);
            }
        }
    }

    /// The digest of each file item (`None` for other items and for files that cannot be
    /// read), hashing the files whose stamp has no cached digest, on several threads; and the
    /// files that could not be read for another reason than being gone.
    fn file_digests(&mut self, items: &[Item]) -> (Vec<Option<Digest>>, Vec<PathBuf>) {
        let mut digests: Vec<Option<Digest>> = Vec::with_capacity(items.len());
        let mut misses: Vec<(usize, &Path, FileStat)> = Vec::new();
        for (at, item) in items.iter().enumerate() {
            let cached = match item {
                Item::File { path, stat, .. } => match self.files.get(path) {
                    Some(cached) if cached.stamp == *stat => Some(cached.digest),
                    _ => {
                        misses.push((at, path, *stat));
                        None
                    }
                },
                _ => None,
            };
            digests.push(cached);
        }
        let mut unreadable = Vec::new();
        if misses.is_empty() {
            return (digests, unreadable);
        }
        let now = SystemTime::now();
        let hashed = hash_all(&misses);
        for ((at, path, stamp), result) in misses.iter().zip(hashed) {
            match result {
                Ok(Hashed {
                    digest,
                    stable,
                    bytes,
                }) => {
                    self.stats.n_hashed += 1;
                    self.stats.bytes_hashed += bytes;
                    digests[*at] = Some(digest);
                    if stable && !stamp.changed_within(self.racy_window, now) {
                        self.files.insert(
                            path.to_path_buf(),
                            CachedDigest {
                                stamp: *stamp,
                                digest,
                            },
                        );
                        self.cache_changed = true;
                    } else {
                        self.files.remove(*path);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    // Gone since it was listed: its directory's event is queued.
                    self.files.remove(*path);
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "unreadable toolchain file");
                    self.files.remove(*path);
                    unreadable.push(path.to_path_buf());
                }
            }
        }
        (digests, unreadable)
    }

    /// One warning naming the paths not warned about before.
    fn warn_once(&mut self, message: &'static str, paths: Vec<PathBuf>) {
        let new: Vec<PathBuf> = paths
            .into_iter()
            .filter(|path| self.warned.insert(path.clone()))
            .collect();
        if new.is_empty() {
            return;
        }
        const SHOWN: usize = 20;
        let mut files: Vec<String> = new
            .iter()
            .take(SHOWN)
            .map(|p| format!("`{}`", p.display()))
            .collect();
        if new.len() > SHOWN {
            files.push(format!("and {} more", new.len() - SHOWN));
        }
        tracing::warn!(n_files = new.len(), files = %files.join(", "), "{message}");
    }
}

/// Roots of `dirs`, in their order: each after symlinks, once (a directory given both ways is
/// covered whole), none inside one covered whole. A directory that does not exist is kept as
/// written when `keep_absent` (it may appear; until then it reads as an empty one), else left
/// out.
pub(crate) fn normalize_roots(
    dirs: impl IntoIterator<Item = (PathBuf, Coverage)>,
    keep_absent: bool,
) -> Vec<Root> {
    let mut roots: Vec<Root> = Vec::new();
    for (path, coverage) in dirs {
        let path = match std::fs::canonicalize(&path) {
            Ok(canonical) if canonical.is_dir() => canonical,
            Ok(_) => continue,
            Err(_) if keep_absent && path.is_absolute() => path,
            Err(_) => continue,
        };
        match roots.iter_mut().find(|root| root.path == path) {
            Some(root) if coverage == Coverage::Whole => root.coverage = Coverage::Whole,
            Some(_) => {}
            None => roots.push(Root { path, coverage }),
        }
    }
    let whole: Vec<PathBuf> = roots
        .iter()
        .filter(|root| root.coverage == Coverage::Whole)
        .map(|root| root.path.clone())
        .collect();
    roots.retain(|root| {
        !whole
            .iter()
            .any(|other| root.path != *other && root.path.starts_with(other))
    });
    roots
}

/// Whether a change in directory `dir` can change `root`'s digest.
fn holds(root: &Root, dir: &Path) -> bool {
    match root.coverage {
        Coverage::Whole => dir.starts_with(&root.path),
        Coverage::Linker => dir == root.path,
    }
}

/// The entries of `dir`, sorted by name, each with its `lstat` and a symlink's target.
/// Entries that vanish while being read are left out.
fn read_entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut stats = DirStat::default();
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let stat = match stats.lstat(&path) {
            Ok(stat) => stat,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let target = if stat.mode & libc::S_IFMT == libc::S_IFLNK {
            match std::fs::read_link(&path) {
                Ok(target) => Some(target.into_os_string()),
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
        } else {
            None
        };
        entries.push(Entry {
            name: entry.file_name(),
            stat,
            target,
        });
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(entries)
}

/// A hashed file.
struct Hashed {
    digest: Digest,
    /// Whether the file had the expected stamp before and after it was read.
    stable: bool,
    bytes: u64,
}

/// Hashes every file, on up to four threads that take the next file as they finish one (a
/// few libraries are a hundred times the size of most headers).
fn hash_all(files: &[(usize, &Path, FileStat)]) -> Vec<io::Result<Hashed>> {
    const MAX_THREADS: usize = 4;
    let n_threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS)
        .min(files.len());
    if n_threads <= 1 {
        let mut buffer = vec![0u8; BUFFER];
        return files
            .iter()
            .map(|(_, path, stamp)| hash_file(path, stamp, &mut buffer))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<io::Result<Hashed>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..n_threads {
            scope.spawn(|| {
                let mut buffer = vec![0u8; BUFFER];
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, path, stamp)) = files.get(at) else {
                        break;
                    };
                    let result = hash_file(path, stamp, &mut buffer);
                    *results[at].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(io::Error::other("not hashed")))
        })
        .collect()
}

/// The read size for hashing.
const BUFFER: usize = 256 * 1024;

/// blake3 of the file at `path`, which was listed with `stamp`. Opened without following a
/// symlink and without blocking (a FIFO put in its place neither hangs nor is read).
fn hash_file(path: &Path, stamp: &FileStat, buffer: &mut [u8]) -> io::Result<Hashed> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let before = file_stat(&file.metadata()?);
    if !before.is_file() {
        return Err(io::Error::other("no longer a regular file"));
    }
    let mut hasher = DigestHasher::new();
    let mut bytes = 0u64;
    loop {
        match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                bytes += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let after = file_stat(&file.metadata()?);
    Ok(Hashed {
        digest: hasher.finalize(),
        stable: before == *stamp && after == before,
        bytes,
    })
}

/// The stamp fields of `meta`.
pub(crate) fn file_stat(meta: &Metadata) -> FileStat {
    FileStat {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mode: meta.mode(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec(),
    }
}

/// The canonical encoding system digests are hashed from: a domain string, then tags (one
/// byte), length-prefixed byte strings (the length as 8 bytes little-endian) and digests (32
/// bytes).
pub(crate) struct Encoder(DigestHasher);

impl Encoder {
    pub(crate) fn new(domain: &str) -> Encoder {
        let mut encoder = Encoder(DigestHasher::new());
        encoder.bytes(domain.as_bytes());
        encoder
    }

    pub(crate) fn tag(&mut self, tag: u8) {
        self.0.update(&[tag]);
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    pub(crate) fn digest(&mut self, digest: &Digest) {
        self.0.update(digest.as_bytes());
    }

    pub(crate) fn finish(&self) -> Digest {
        self.0.finalize()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::time::UNIX_EPOCH;

    use super::*;

    /// A tree with a few headers, a subdirectory and a symlink.
    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("sys")).expect("mkdir");
        std::fs::write(root.join("stdio.h"), "int printf();\n").expect("write");
        std::fs::write(root.join("sys/types.h"), "typedef int pid_t;\n").expect("write");
        symlink("stdio.h", root.join("cstdio")).expect("symlink");
    }

    fn whole(path: &Path) -> Root {
        Root {
            path: path.to_owned(),
            coverage: Coverage::Whole,
        }
    }

    fn covered(watch: bool) -> Covered {
        Covered::new(HashMap::new(), Duration::ZERO, watch)
    }

    #[test]
    fn every_change_to_what_a_job_can_read_changes_the_digest_and_a_touch_does_not() {
        type Change = fn(&Path);
        let cases: [(&str, Change, bool); 9] = [
            (
                "a file added",
                |r| std::fs::write(r.join("new.h"), "x").expect("write"),
                true,
            ),
            (
                "a file changed in place, same size",
                |r| std::fs::write(r.join("sys/types.h"), "typedef int pid_x;\n").expect("write"),
                true,
            ),
            (
                "a file removed",
                |r| std::fs::remove_file(r.join("stdio.h")).expect("rm"),
                true,
            ),
            (
                "a file made executable",
                |r| {
                    std::fs::set_permissions(r.join("stdio.h"), PermissionsExt::from_mode(0o755))
                        .expect("chmod")
                },
                true,
            ),
            (
                "a symlink retargeted",
                |r| {
                    std::fs::remove_file(r.join("cstdio")).expect("rm");
                    symlink("sys/types.h", r.join("cstdio")).expect("symlink");
                },
                true,
            ),
            (
                "a directory added",
                |r| std::fs::create_dir(r.join("net")).expect("mkdir"),
                true,
            ),
            (
                "a file added in a new directory",
                |r| {
                    std::fs::create_dir(r.join("net")).expect("mkdir");
                    std::fs::write(r.join("net/if.h"), "x").expect("write");
                },
                true,
            ),
            (
                "mtime touched, contents the same",
                |r| {
                    let file = File::options()
                        .write(true)
                        .open(r.join("sys/types.h"))
                        .expect("open");
                    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000))
                        .expect("touch");
                },
                false,
            ),
            (
                "rewritten with the same bytes",
                |r| std::fs::write(r.join("stdio.h"), "int printf();\n").expect("write"),
                false,
            ),
        ];
        for watch in [true, false] {
            for (what, change, changes) in cases {
                let dir = tempfile::tempdir().expect("tempdir");
                let root = dir.path().join("include");
                tree(&root);
                let mut covered = covered(watch);
                let before = covered.cover(&whole(&root));
                assert!(!covered.refresh(), "{what}: nothing changed yet");
                let n_hashed = covered.stats().n_hashed;
                change(&root);
                assert_eq!(covered.refresh(), changes, "{what} (watching: {watch})");
                let after = covered.cover(&whole(&root));
                assert_eq!(after != before, changes, "{what} (watching: {watch})");
                // The same files from scratch give the same digest.
                assert_eq!(self::covered(watch).cover(&whole(&root)), after, "{what}");
                if !changes && watch {
                    assert!(
                        covered.stats().n_hashed <= n_hashed + 1,
                        "{what}: only the touched file is read again"
                    );
                }
            }
        }
    }

    #[test]
    fn a_quiet_refresh_reads_nothing_and_lists_nothing_when_watching() {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(dir.path());
        let mut covered = covered(true);
        covered.cover(&whole(dir.path()));
        let stats = covered.stats();
        assert_eq!((stats.n_hashed, stats.n_listed, stats.n_dirs), (2, 2, 2));
        assert!(stats.watching);
        for _ in 0..3 {
            assert!(!covered.refresh());
        }
        assert_eq!(covered.stats(), stats);
        // A change lists only its own directory again, and reads only the changed file.
        std::fs::write(dir.path().join("sys/types.h"), "typedef long pid_t;\n").expect("write");
        assert!(covered.refresh());
        let now = covered.stats();
        assert_eq!((now.n_hashed, now.n_listed), (3, 3));
    }

    #[test]
    fn files_cached_at_the_last_start_are_not_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(dir.path());
        let mut first = covered(true);
        let digest = first.cover(&whole(dir.path()));
        assert!(first.take_cache_changed());
        let files: HashMap<PathBuf, CachedDigest> = first.cached_files().into_iter().collect();
        assert_eq!(files.len(), 2);
        let mut second = Covered::new(files, Duration::ZERO, true);
        assert_eq!(second.cover(&whole(dir.path())), digest);
        assert_eq!(second.stats().n_hashed, 0);
        assert!(!second.take_cache_changed());
        // A file changed while the daemon was down has another stamp: read again.
        std::fs::write(dir.path().join("stdio.h"), "int puts();\n").expect("write");
        let files: HashMap<PathBuf, CachedDigest> = first.cached_files().into_iter().collect();
        let mut third = Covered::new(files, Duration::ZERO, true);
        assert_ne!(third.cover(&whole(dir.path())), digest);
        assert_eq!(third.stats().n_hashed, 1);
    }

    #[test]
    fn recent_files_are_digested_but_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(dir.path());
        let mut covered = Covered::new(HashMap::new(), Duration::from_secs(3600), true);
        let digest = covered.cover(&whole(dir.path()));
        assert!(covered.cached_files().is_empty());
        assert_eq!(self::covered(true).cover(&whole(dir.path())), digest);
    }

    #[test]
    fn a_linker_directory_covers_only_what_a_linker_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path();
        std::fs::write(lib.join("libz.so.1.2"), "elf").expect("write");
        symlink("libz.so.1.2", lib.join("libz.so")).expect("symlink");
        let linker = Root {
            path: lib.to_owned(),
            coverage: Coverage::Linker,
        };
        let mut covered = covered(true);
        let before = covered.cover(&linker);
        std::fs::write(lib.join("libz.la"), "libtool").expect("write");
        std::fs::create_dir(lib.join("python3")).expect("mkdir");
        std::fs::write(lib.join("python3/libpy.so"), "elf").expect("write");
        assert!(!covered.refresh(), "not what a linker reads");
        assert_eq!(covered.stats().n_dirs, 1, "subdirectories are not listed");
        for name in ["crt1.o", "libc.a", "libm.so.6"] {
            std::fs::write(lib.join(name), "x").expect("write");
            assert!(covered.refresh(), "{name}");
        }
        assert_ne!(covered.cover(&linker), before);
        // The same directory covered whole is another digest.
        assert_ne!(covered.cover(&whole(lib)), covered.cover(&linker));
    }

    #[test]
    fn a_root_that_appears_is_covered_and_an_absent_one_reads_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("local/include");
        let mut covered = covered(true);
        let absent = covered.cover(&whole(&root));
        assert!(!covered.refresh());
        std::fs::create_dir_all(&root).expect("mkdir");
        assert!(!covered.refresh(), "an empty directory reads as none");
        assert_eq!(covered.cover(&whole(&root)), absent);
        assert_eq!(
            covered.stats().n_dirs,
            1,
            "but it is listed (and watched) now"
        );
        std::fs::write(root.join("a.h"), "x").expect("write");
        assert!(covered.refresh(), "a file in it counts");
        assert_ne!(covered.cover(&whole(&root)), absent);
        std::fs::remove_dir_all(dir.path().join("local")).expect("rm");
        assert!(covered.refresh(), "it went");
        assert_eq!(covered.cover(&whole(&root)), absent);
        assert_eq!(covered.stats().n_dirs, 0);
    }

    #[test]
    fn a_replaced_directory_is_listed_anew_and_the_old_one_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("include");
        tree(&root);
        let mut covered = covered(true);
        let before = covered.cover(&whole(&root));
        let n_listed = covered.stats().n_listed;
        let sys = root.join("sys");
        let moved = dir.path().join("moved");
        std::fs::rename(&sys, &moved).expect("mv");
        std::fs::create_dir(&sys).expect("mkdir");
        std::fs::write(sys.join("types.h"), "typedef int pid_t;\n").expect("write");
        assert!(!covered.refresh(), "another directory, the same contents");
        assert_eq!(
            covered.stats().n_listed,
            n_listed + 2,
            "the parent and the new one"
        );
        assert_eq!(covered.cover(&whole(&root)), before);
        // The moved-away directory is not watched any more.
        std::fs::write(moved.join("types.h"), "changed").expect("write");
        assert!(!covered.refresh());
        assert_eq!(covered.stats().n_listed, n_listed + 2);
        std::fs::write(sys.join("types.h"), "changed").expect("write");
        assert!(covered.refresh());
    }

    #[test]
    fn special_files_are_left_out_and_never_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        tree(dir.path());
        let mut covered = covered(true);
        let before = covered.cover(&whole(dir.path()));
        let fifo = dir.path().join("pipe.h");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        covered.refresh();
        assert_eq!(covered.cover(&whole(dir.path())), before);
    }

    #[test]
    fn roots_are_canonical_once_and_not_inside_a_whole_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir_all(real.join("usr/include/x86_64-linux-gnu")).expect("mkdir");
        std::fs::create_dir_all(real.join("usr/lib")).expect("mkdir");
        symlink("usr/lib", real.join("lib")).expect("symlink");
        let roots = normalize_roots(
            [
                (real.join("usr/include"), Coverage::Whole),
                (real.join("usr/include/x86_64-linux-gnu"), Coverage::Whole),
                (real.join("lib"), Coverage::Linker),
                (real.join("usr/lib"), Coverage::Linker),
                (real.join("usr/include/x86_64-linux-gnu"), Coverage::Linker),
                (real.join("missing"), Coverage::Linker),
            ],
            true,
        );
        assert_eq!(
            roots,
            [
                whole(&real.join("usr/include")),
                Root {
                    path: real.join("usr/lib"),
                    coverage: Coverage::Linker
                },
                Root {
                    path: real.join("missing"),
                    coverage: Coverage::Linker
                },
            ]
        );
    }
}
