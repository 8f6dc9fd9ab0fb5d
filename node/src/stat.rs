//! `stat` for long runs of paths that share directories, shared by the front end's listings,
//! the source digests and the daemon's published files.
//!
//! A no-op build stats every source and every published output: tens of thousands of files,
//! a few hundred directories. `stat("/long/workspace/path/pkg/file")` walks every component of
//! the path each time; [`DirStat`] keeps the last directory open and stats each file by name
//! relative to it (`fstatat`), which walks one component. On a 10,000-file no-op build that
//! is about a third of the kernel's time for the pass.
//!
//! std has no `fstatat`, so this module calls libc; each `unsafe` block says why it holds.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How recently a file or directory may have changed for a stamp of it to be trusted later:
/// file systems stamp times from a coarse clock (one kernel tick, up to 10 ms; whole seconds
/// on some), so a second change within the tick of the first leaves the stamp as it was. A
/// stamp taken within this window of the change is not kept (git's "racy clean" problem).
pub(crate) const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What a `stat` says about a file, in the fields weft's stamps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mode: u32,
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: i64,
    pub(crate) ctime: i64,
    pub(crate) ctime_nsec: i64,
}

impl FileStat {
    pub(crate) fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// Whether the mtime or the ctime is later than `now - window`.
    pub(crate) fn changed_within(&self, window: Duration, now: SystemTime) -> bool {
        let Some(limit) = now
            .checked_sub(window)
            .and_then(|limit| limit.duration_since(UNIX_EPOCH).ok())
        else {
            return true;
        };
        let limit = (limit.as_secs() as i64, i64::from(limit.subsec_nanos()));
        (self.mtime, self.mtime_nsec) >= limit || (self.ctime, self.ctime_nsec) >= limit
    }

    fn from_raw(raw: &libc::stat) -> FileStat {
        FileStat {
            dev: raw.st_dev,
            ino: raw.st_ino,
            size: u64::try_from(raw.st_size).unwrap_or(0),
            mode: raw.st_mode,
            mtime: raw.st_mtime,
            mtime_nsec: raw.st_mtime_nsec,
            ctime: raw.st_ctime,
            ctime_nsec: raw.st_ctime_nsec,
        }
    }
}

/// Stats files relative to the directory of the previous one; see the module documentation.
/// One per thread.
#[derive(Debug, Default)]
pub(crate) struct DirStat {
    /// The directory of the last path, open with `O_PATH`.
    dir: Option<(PathBuf, OwnedFd)>,
}

impl DirStat {
    /// `stat` of `path`, following a final symlink.
    pub(crate) fn stat(&mut self, path: &Path) -> io::Result<FileStat> {
        self.stat_at(path, 0)
    }

    /// `lstat` of `path`: a final symlink is described, not followed.
    pub(crate) fn lstat(&mut self, path: &Path) -> io::Result<FileStat> {
        self.stat_at(path, libc::AT_SYMLINK_NOFOLLOW)
    }

    fn stat_at(&mut self, path: &Path, flags: libc::c_int) -> io::Result<FileStat> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return stat_path(path, flags);
        };
        if parent.as_os_str().is_empty() {
            return stat_path(path, flags);
        }
        if self.dir.as_ref().is_none_or(|(dir, _)| dir != parent) {
            self.dir = None;
            match open_dir(parent) {
                Ok(fd) => self.dir = Some((parent.to_owned(), fd)),
                // The directory's own error (gone, not a directory, no permission) is the
                // file's too; the full path walk reports it as for any single file.
                Err(_) => return stat_path(path, flags),
            }
        }
        let Some((_, fd)) = &self.dir else {
            return stat_path(path, flags);
        };
        let name = c_string(name.as_bytes())?;
        let mut raw = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fd` is an open directory, `name` a NUL-terminated string, and `raw` a
        // buffer of the right size that `fstatat` fills when it returns 0.
        let rc = unsafe { libc::fstatat(fd.as_raw_fd(), name.as_ptr(), raw.as_mut_ptr(), flags) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fstatat` returned 0, so it filled `raw`.
        Ok(FileStat::from_raw(unsafe { raw.assume_init_ref() }))
    }
}

/// `stat` of one path, following a final symlink.
pub(crate) fn stat(path: &Path) -> io::Result<FileStat> {
    stat_path(path, 0)
}

fn stat_path(path: &Path, flags: libc::c_int) -> io::Result<FileStat> {
    let path = c_string(path.as_os_str().as_bytes())?;
    let mut raw = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: as in `DirStat::stat_at`, with `AT_FDCWD` for a path taken as it is.
    let rc = unsafe { libc::fstatat(libc::AT_FDCWD, path.as_ptr(), raw.as_mut_ptr(), flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fstatat` returned 0, so it filled `raw`.
    Ok(FileStat::from_raw(unsafe { raw.assume_init_ref() }))
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let dir = c_string(dir.as_os_str().as_bytes())?;
    // SAFETY: `dir` is NUL-terminated; the returned descriptor, when valid, is ours to own.
    let fd = unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

/// `f` over every item, on up to [`MAX_STAT_THREADS`] threads, results in the items' order;
/// each thread passes `f` its own [`DirStat`], for items next to each other that share a
/// directory.
///
/// For passes that are mostly `stat` calls or small file operations over thousands of paths
/// (a no-op build's source and output checks): on one thread they wait on the kernel one file
/// at a time. Short lists run on the calling thread.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&mut DirStat, &T) -> R + Sync,
) -> Vec<R> {
    /// Below this many items a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 512;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_STAT_THREADS)
        .min(items.len() / MIN_PER_THREAD);
    let run = |part: &[T]| {
        let mut stats = DirStat::default();
        part.iter()
            .map(|item| f(&mut stats, item))
            .collect::<Vec<R>>()
    };
    if threads <= 1 {
        return run(items);
    }
    let chunk = items.len().div_ceil(threads);
    let run = &run;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        // The calling thread takes the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks.map(|part| scope.spawn(move || run(part))).collect();
        let mut all = run(first);
        all.reserve(items.len() - all.len());
        for handle in others {
            match handle.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// The most threads [`par_map`] uses.
const MAX_STAT_THREADS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn agrees_with_std_metadata() {
        let dir = tempfile::tempdir().expect("test setup");
        let a = dir.path().join("a.txt");
        let sub = dir.path().join("sub");
        std::fs::write(&a, b"hello").expect("test setup");
        std::fs::create_dir(&sub).expect("test setup");
        std::fs::write(sub.join("b.txt"), b"hi").expect("test setup");
        std::os::unix::fs::symlink(&a, sub.join("link")).expect("test setup");

        let mut stats = DirStat::default();
        for path in [a.clone(), sub.join("b.txt"), sub.join("link"), a.clone()] {
            let ours = stats.stat(&path).expect("test setup");
            let std = std::fs::metadata(&path).expect("test setup");
            assert_eq!(
                (ours.ino, ours.size, ours.mode),
                (std.ino(), std.size(), std.mode())
            );
            assert_eq!(
                (ours.mtime, ours.mtime_nsec),
                (std.mtime(), std.mtime_nsec())
            );
            assert!(ours.is_file());
        }
        let link = stats.lstat(&sub.join("link")).expect("test setup");
        assert!(!link.is_file(), "lstat describes the symlink itself");
        assert!(!stats.stat(&sub).expect("test setup").is_file());
        let missing = stats.stat(&sub.join("missing")).expect_err("an error");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let no_dir = stats
            .stat(&dir.path().join("nope/x"))
            .expect_err("an error");
        assert_eq!(no_dir.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_replaced_file_is_seen_through_the_open_directory() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").expect("test setup");
        let mut stats = DirStat::default();
        let before = stats.stat(&path).expect("test setup");
        std::fs::remove_file(&path).expect("test setup");
        std::fs::write(dir.path().join("g"), b"x").expect("test setup");
        std::fs::write(&path, b"three").expect("test setup");
        let after = stats.stat(&path).expect("test setup");
        assert_eq!(after.size, 5);
        assert_ne!(before, after);
    }
}
