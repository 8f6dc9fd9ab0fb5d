//! Small files written whole or not at all: the team file, the identity key, the job durations,
//! the disowned nodes.
//!
//! Each is written under a temporary name beside its final one (`<path>.<pid>.<n>.tmp`, so two
//! writers never share one), then renamed over the final name ([`write_replacing`]) or linked
//! to it only when it is absent ([`write_new`]). A reader, or a process that dies midway,
//! sees the old file or the new one, never half of one.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a file holds, which decides who may read it and whether it reaches the disk before it
/// takes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contents {
    /// A key or a secret: readable by its owner only (mode 0600), and synced to disk before it
    /// takes its name, so that a power loss does not leave it empty.
    Secret,
    /// A record that cannot be rebuilt but is no secret (the disowned nodes): mode 0666
    /// less the umask, and synced to disk before it takes its name.
    Record,
    /// Something that can be rebuilt: mode 0666 less the umask (as `File::create` makes
    /// files), and not synced, so after a power loss it may be old or empty, which its reader
    /// must survive.
    Rebuildable,
}

/// Writes `bytes` to `path`, replacing the file there, if any.
pub(crate) fn write_replacing(path: &Path, bytes: &[u8], contents: Contents) -> io::Result<()> {
    let temp = write_temp(path, bytes, contents)?;
    let renamed = std::fs::rename(&temp, path);
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    renamed
}

/// Writes `bytes` to `path` when no file is there. Fails with
/// [`io::ErrorKind::AlreadyExists`] when there is one (another process got there first), and
/// leaves that file as it is.
pub(crate) fn write_new(path: &Path, bytes: &[u8], contents: Contents) -> io::Result<()> {
    let temp = write_temp(path, bytes, contents)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    linked
}

/// Writes `bytes` to a new temporary file beside `path`, and returns its path. Nothing is left
/// behind when it fails.
fn write_temp(path: &Path, bytes: &[u8], contents: Contents) -> io::Result<PathBuf> {
    static N_TEMPS: AtomicU64 = AtomicU64::new(0);
    let n = N_TEMPS.fetch_add(1, Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let temp = PathBuf::from(name);
    let mode = match contents {
        Contents::Secret => 0o600,
        Contents::Record | Contents::Rebuildable => 0o666,
    };
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        if contents != Contents::Rebuildable {
            file.sync_all()?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replacing_writes_and_replaces_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("team.toml");
        for contents in [Contents::Secret, Contents::Rebuildable] {
            write_replacing(&path, b"first", contents).expect("write");
            write_replacing(&path, b"second", contents).expect("replace");
            assert_eq!(std::fs::read(&path).expect("read"), b"second");
            assert_eq!(names_in(dir.path()), ["team.toml"]);
            std::fs::remove_file(&path).expect("remove");
        }
    }

    #[test]
    fn secrets_are_private_and_the_rest_as_file_create_makes_them() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("identity.key");
        write_new(&secret, b"key", Contents::Secret).expect("write");
        assert_eq!(mode(&secret), 0o600);
        let replaced = dir.path().join("team.toml");
        write_replacing(&replaced, b"token", Contents::Secret).expect("write");
        assert_eq!(mode(&replaced), 0o600);

        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").expect("write");
        let rebuildable = dir.path().join("durations.json");
        write_replacing(&rebuildable, b"{}", Contents::Rebuildable).expect("write");
        assert_eq!(mode(&rebuildable), mode(&plain));
    }

    #[test]
    fn a_new_file_does_not_replace_one_that_is_there() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("identity.key");
        write_new(&path, b"first", Contents::Secret).expect("write");
        let err = write_new(&path, b"second", Contents::Secret).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"first");
        assert_eq!(names_in(dir.path()), ["identity.key"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("missing-dir").join("team.toml");
        assert!(write_replacing(&path, b"x", Contents::Secret).is_err());
        assert!(write_new(&path, b"x", Contents::Secret).is_err());
        // A directory where the file belongs: the rename fails, and the temporary file goes.
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).expect("mkdir");
        std::fs::write(taken.join("inside"), b"x").expect("write");
        assert!(write_replacing(&taken, b"x", Contents::Rebuildable).is_err());
        assert_eq!(names_in(dir.path()), ["taken"]);
    }
}
