//! [`Watcher`]: inotify watches on the covered directories, so that a build learns which of
//! them changed since the last one without a `stat` of every file under them.
//!
//! A watch on a directory reports every change to an entry of it: a file written in place
//! (`IN_MODIFY`, `IN_CLOSE_WRITE`), its mode or times changed (`IN_ATTRIB`), an entry created,
//! deleted or renamed in or out, and the directory itself deleted or moved. Directory mtimes
//! would see only the last three: `cp new.h /usr/include/old.h` writes in place and leaves the
//! directory as it was. The kernel queues events until they are read; when its queue
//! overflows it says so ([`Changes::overflow`]) and everything counts as changed.
//!
//! std has no inotify, so this module calls libc; each `unsafe` block says why it holds.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An inotify instance, non-blocking.
#[derive(Debug)]
pub(super) struct Watcher {
    fd: File,
}

/// What a [`Watcher::drain`] read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// The watches that reported something, each once.
    pub(super) watches: Vec<i32>,
    /// The kernel dropped events: anything may have changed.
    pub(super) overflow: bool,
}

/// Every change to a directory's entries, and to the directory itself.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW
    | libc::IN_EXCL_UNLINK;

/// The fixed part of a `struct inotify_event`: `wd`, `mask`, `cookie`, `len`.
const EVENT_HEADER: usize = 16;

impl Watcher {
    /// A new inotify instance.
    #[allow(unsafe_code)]
    pub(super) fn new() -> io::Result<Watcher> {
        // SAFETY: `inotify_init1` takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `inotify_init1` returned a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Watcher {
            fd: File::from(owned),
        })
    }

    /// Watches the directory `dir` (not following a symlink). Watching the same directory
    /// again gives the same watch.
    #[allow(unsafe_code)]
    pub(super) fn add(&self, dir: &Path) -> io::Result<i32> {
        let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte")
        })?;
        // SAFETY: the descriptor is an open inotify instance and `path` is NUL-terminated.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Stops watch `wd`. One that is gone already (its directory was deleted) is no error.
    #[allow(unsafe_code)]
    pub(super) fn remove(&self, wd: i32) {
        // SAFETY: the descriptor is an open inotify instance; a stale `wd` only makes the call
        // fail with EINVAL, which is ignored on purpose.
        let _ = unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    /// Reads every event queued so far, without waiting.
    pub(super) fn drain(&mut self) -> io::Result<Changes> {
        let mut changes = Changes::default();
        // Room for many events; each is at least 16 bytes and at most 16 + NAME_MAX + 1.
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match self.fd.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            parse_events(&buffer[..n], &mut changes);
        }
        changes.watches.sort_unstable();
        changes.watches.dedup();
        Ok(changes)
    }
}

/// Adds the events in `bytes` (whole `struct inotify_event`s, as `read` returns them) to
/// `changes`.
fn parse_events(bytes: &[u8], changes: &mut Changes) {
    let mut rest = bytes;
    while rest.len() >= EVENT_HEADER {
        let field = |at: usize| [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
        let wd = i32::from_ne_bytes(field(0));
        let mask = u32::from_ne_bytes(field(4));
        let name_len = u32::from_ne_bytes(field(12)) as usize;
        if mask & libc::IN_Q_OVERFLOW != 0 {
            changes.overflow = true;
        } else if wd >= 0 {
            changes.watches.push(wd);
        }
        rest = rest.get(EVENT_HEADER + name_len..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(wd.to_ne_bytes());
        bytes.extend(mask.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        let padded = name.len().div_ceil(16) * 16;
        bytes.extend((padded as u32).to_ne_bytes());
        bytes.extend(name);
        bytes.resize(bytes.len() + padded - name.len(), 0);
        bytes
    }

    #[test]
    fn events_name_their_watch_and_an_overflow_is_seen() {
        let mut bytes = event(3, libc::IN_MODIFY, b"stdio.h");
        bytes.extend(event(1, libc::IN_CREATE, b""));
        bytes.extend(event(-1, libc::IN_Q_OVERFLOW, b""));
        let mut changes = Changes::default();
        parse_events(&bytes, &mut changes);
        assert_eq!(changes.watches, [3, 1]);
        assert!(changes.overflow);
    }

    #[test]
    fn a_write_in_place_is_reported_on_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let file = sub.join("a.h");
        std::fs::write(&file, "one").expect("write");
        let mut watcher = Watcher::new().expect("inotify");
        let top = watcher.add(dir.path()).expect("watch");
        let inner = watcher.add(&sub).expect("watch");
        assert_eq!(watcher.drain().expect("drain"), Changes::default());
        // Opened and truncated, not replaced: the directory's own mtime stays.
        std::fs::write(&file, "two").expect("write");
        let changes = watcher.drain().expect("drain");
        assert_eq!(changes.watches, [inner], "only the file's own directory");
        std::fs::write(dir.path().join("b.h"), "new").expect("write");
        assert_eq!(watcher.drain().expect("drain").watches, [top]);
        watcher.remove(inner);
        watcher.remove(inner);
        assert!(watcher.add(&file).is_err(), "only directories are watched");
    }
}
