//! The files a build publishes into `weft-out/`: what tells that one is still as it was
//! placed, and the second link the daemon keeps of each.
//!
//! `weft-out/` holds copies, never links into the store: people edit and run what is there,
//! and a write through a link would change a blob. But making a file is what costs most when
//! a cached build publishes thousands (on ext4 without a journal, creating files right after
//! as many were deleted, as `weft clean` then `weft build` does, is quadratic). So the daemon
//! keeps a second hard link of each published copy under its home ([`KeptOutputs`]), one per
//! destination path. When that destination must be published again with the same content and
//! the kept link still has the stamp the copy was published with, the kept link is linked
//! back: no data is copied and no inode is made. A copy edited in place changed the kept link
//! with it, so its stamp no longer matches and a fresh copy is made from the store instead. The
//! store's own blobs are never linked anywhere.
//!
//! A workspace on another file system than the daemon's home gets plain copies: the kept
//! link cannot be made there, and nothing else changes.

use std::io;
use std::path::{Path, PathBuf};

use weft_protocol::Digest;

use crate::stat::DirStat;

/// What tells that a published file is still the one weft put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The stamp of the file at `path` (not following a final symlink), or none when there
    /// is nothing there.
    pub(crate) fn of(stats: &mut DirStat, path: &Path) -> Option<FileStamp> {
        let meta = stats.lstat(path).ok()?;
        Some(FileStamp {
            ino: meta.ino,
            size: meta.size,
            mtime_ns: i128::from(meta.mtime) * 1_000_000_000 + i128::from(meta.mtime_nsec),
        })
    }
}

/// Second links of published files; see the module documentation.
#[derive(Debug)]
pub(crate) struct KeptOutputs {
    dir: PathBuf,
}

impl KeptOutputs {
    pub(crate) fn new(dir: PathBuf) -> KeptOutputs {
        KeptOutputs { dir }
    }

    /// Where the kept link of `dest` is: named by the digest of its path.
    fn kept_path(&self, dest: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.dir
            .join(Digest::of(dest.as_os_str().as_bytes()).to_string())
    }

    /// Links the kept copy of `dest` back at `dest` when it still has `stamp`, the stamp it
    /// was published with, replacing whatever is at `dest`. False when there is no such kept
    /// copy (none kept, or changed since), or it cannot be linked: then `dest` must be copied.
    pub(crate) fn restore(&self, stats: &mut DirStat, dest: &Path, stamp: FileStamp) -> bool {
        let kept = self.kept_path(dest);
        if FileStamp::of(stats, &kept) != Some(stamp) {
            return false;
        }
        if let Some(parent) = dest.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            return false;
        }
        if remove_if_present(dest).is_err() {
            return false;
        }
        // Between the check and the link, an edit through `dest`'s old link would show as a
        // changed stamp on the next build, like any edit after publishing.
        std::fs::hard_link(&kept, dest).is_ok() && FileStamp::of(stats, dest) == Some(stamp)
    }

    /// Keeps a second link of the copy just published at `dest`, replacing the kept link of
    /// an earlier copy. Best effort: without it, the next publish of `dest` copies.
    pub(crate) fn keep(&self, dest: &Path) {
        let kept = self.kept_path(dest);
        let linked = remove_if_present(&kept).and_then(|()| {
            match std::fs::hard_link(dest, &kept) {
                // The first kept link: the directory is made on demand.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&self.dir)?;
                    std::fs::hard_link(dest, &kept)
                }
                linked => linked,
            }
        });
        if let Err(e) = linked {
            tracing::debug!(dest = %dest.display(), error = %e, "no kept link of a published file");
        }
    }

    /// Removes every kept link whose published copy is gone (link count 1), and says how many.
    pub(crate) fn prune(&self) -> usize {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| entry.metadata().is_ok_and(|m| m.nlink() == 1))
            .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
            .count()
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        removed => removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, KeptOutputs, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = KeptOutputs::new(dir.path().join("kept"));
        let dest = dir.path().join("ws/weft-out/pkg/out.txt");
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::write(&dest, b"published").expect("write");
        (dir, kept, dest)
    }

    #[test]
    fn a_removed_copy_is_linked_back() {
        let (_dir, kept, dest) = setup();
        let mut stats = DirStat::default();
        kept.keep(&dest);
        let stamp = FileStamp::of(&mut stats, &dest).expect("stamp");
        std::fs::remove_dir_all(dest.parent().expect("parent")).expect("clean");
        assert!(kept.restore(&mut stats, &dest, stamp));
        assert_eq!(std::fs::read(&dest).expect("read"), b"published");
        assert_eq!(FileStamp::of(&mut stats, &dest), Some(stamp));
    }

    #[test]
    fn an_edited_copy_is_not_linked_back() {
        let (_dir, kept, dest) = setup();
        let mut stats = DirStat::default();
        kept.keep(&dest);
        let stamp = FileStamp::of(&mut stats, &dest).expect("stamp");
        // An edit in place goes through both links.
        std::fs::write(&dest, b"edited by hand, and longer").expect("edit");
        std::fs::remove_file(&dest).expect("clean");
        assert!(!kept.restore(&mut stats, &dest, stamp));
        assert!(!dest.exists());
    }

    #[test]
    fn nothing_kept_means_nothing_restored_and_prune_drops_orphans() {
        let (_dir, kept, dest) = setup();
        let mut stats = DirStat::default();
        let stamp = FileStamp::of(&mut stats, &dest).expect("stamp");
        let other = dest.with_file_name("other.txt");
        assert!(!kept.restore(&mut stats, &other, stamp));
        kept.keep(&dest);
        assert_eq!(kept.prune(), 0, "the published copy is still there");
        std::fs::remove_file(&dest).expect("clean");
        assert_eq!(kept.prune(), 1);
        assert!(!kept.restore(&mut stats, &dest, stamp));
    }
}
