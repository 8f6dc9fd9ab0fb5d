//! The sandbox directory of one run: its layout, how it is filled, checked and removed.
//!
//! ```text
//! <sandbox_root>/<pid>.<executor>.<seq>/   one run; the name is unique within the root
//!     src/            {{SOURCE_DIR}}: the declared inputs, read-only (only jobs that exec)
//!     out/            {{OUTPUT_DIR}}: everything here afterwards is the job's output
//!     deps/<job id>/  {{DEP:<job id>}}: a dependency's output tree (only jobs that exec)
//!     tmp/            TMPDIR and HOME (only jobs that exec)
//!     stdout, stderr  the commands' streams, appended in command order (only jobs that exec)
//! ```
//!
//! A job made only of `cat` commands runs no process and reads nothing, so it gets `out/` and
//! nothing else.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use weft_protocol::path::check_relative_path;
use weft_protocol::{Digest, Input};
use weft_store::Store;

use super::error::{ExecError, is_disk_full};

/// The most stderr bytes a failure report quotes.
const TAIL_BYTES: u64 = 4096;
/// The most stderr lines a failure report quotes.
const TAIL_LINES: usize = 20;

/// The paths of one sandbox, as the strings templates render to.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: String,
    pub(crate) src: String,
    pub(crate) out: String,
    pub(crate) tmp: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Layout {
    pub(crate) fn new(root: String) -> Layout {
        Layout {
            src: format!("{root}/src"),
            out: format!("{root}/out"),
            tmp: format!("{root}/tmp"),
            stdout: format!("{root}/stdout"),
            stderr: format!("{root}/stderr"),
            root,
        }
    }

    /// Where the output tree of the dependency `hex` is materialized.
    pub(crate) fn dep_dir(&self, hex: &str) -> String {
        format!("{}/deps/{hex}", self.root)
    }
}

/// One sandbox directory, shared by the run and the blocking tasks working in it. It is
/// removed by [`Sandbox::remove`], or else when the last holder drops it (a cancelled run),
/// unless it was kept.
#[derive(Debug)]
pub(crate) struct Sandbox {
    path: PathBuf,
    /// Set once the directory is gone or must stay.
    settled: AtomicBool,
    /// Directories made read-only, to make writable again before removal.
    read_only_dirs: Mutex<Vec<PathBuf>>,
}

impl Sandbox {
    pub(crate) fn new(path: PathBuf) -> Sandbox {
        Sandbox {
            path,
            settled: AtomicBool::new(false),
            read_only_dirs: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place, for someone to look into.
    pub(crate) fn keep(&self) {
        self.settled.store(true, Ordering::Relaxed);
    }

    /// Removes the directory (once; later calls do nothing). Best effort: a failure is logged.
    pub(crate) fn remove(&self) {
        if self.settled.swap(true, Ordering::Relaxed) {
            return;
        }
        let read_only = std::mem::take(
            &mut *self
                .read_only_dirs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for dir in read_only {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
        }
        if let Err(err) = remove_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "cannot remove a sandbox");
        }
    }

    fn note_read_only(&self, dirs: Vec<PathBuf>) {
        self.read_only_dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(dirs);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What a sandbox is filled with before the commands run.
pub(crate) struct Filling {
    pub(crate) inputs: Vec<Input>,
    /// Each dependency's hex id and output tree.
    pub(crate) deps: Vec<(String, Digest)>,
    /// Whether a process runs: then `src/`, `deps/`, `tmp/` and the stream files are made.
    pub(crate) runs_processes: bool,
    /// Whether to make `src/` read-only (pointless for root, who ignores modes).
    pub(crate) read_only_src: bool,
}

/// The open stream files that every process of the run appends to.
#[derive(Debug)]
pub(crate) struct Streams {
    pub(crate) stdout: File,
    pub(crate) stderr: File,
}

/// Creates the sandbox directories and materializes inputs and deps.
pub(crate) fn fill(
    store: &Store,
    sandbox: &Sandbox,
    layout: &Layout,
    filling: &Filling,
) -> Result<Option<Streams>, ExecError> {
    let mkdir = |path: &str| {
        fs::create_dir(path)
            .map_err(|e| ExecError::io("create the sandbox directory", Path::new(path), e))
    };
    mkdir(&layout.root)?;
    mkdir(&layout.out)?;
    if !filling.runs_processes {
        return Ok(None);
    }
    mkdir(&layout.src)?;
    mkdir(&layout.tmp)?;
    let mut dirs = BTreeSet::new();
    for input in &filling.inputs {
        let dest = PathBuf::from(format!("{}/{}", layout.src, input.path));
        store
            .materialize(&input.digest, &dest, input.executable)
            .map_err(|e| ExecError::store("materialize an input at", &dest, e))?;
        let mut rel = input.path.as_str();
        while let Some((parent, _)) = rel.rsplit_once('/') {
            if !dirs.insert(parent) {
                break;
            }
            rel = parent;
        }
    }
    for (hex, tree) in &filling.deps {
        let dest = PathBuf::from(layout.dep_dir(hex));
        store
            .materialize_tree(tree, &dest)
            .map_err(|e| ExecError::store("materialize a dependency's outputs at", &dest, e))?;
    }
    if filling.read_only_src {
        let read_only: Vec<PathBuf> = dirs
            .iter()
            .map(|rel| PathBuf::from(format!("{}/{rel}", layout.src)))
            .chain([PathBuf::from(&layout.src)])
            .collect();
        for dir in &read_only {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555))
                .map_err(|e| ExecError::io("make read-only", dir, e))?;
        }
        sandbox.note_read_only(read_only);
    }
    let open = |path: &str| {
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| ExecError::io("create the stream file", Path::new(path), e))
    };
    Ok(Some(Streams {
        stdout: open(&layout.stdout)?,
        stderr: open(&layout.stderr)?,
    }))
}

/// The part of the rendered path `path` below `base`, when it is a normalized relative path
/// (no `.`, `..` or empty segment). A relative `path` is taken relative to `base`.
pub(crate) fn inside<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    let rel = if path.starts_with('/') {
        path.strip_prefix(base)?.strip_prefix('/')?
    } else {
        path
    };
    check_relative_path(rel).ok().map(|()| rel)
}

/// Why a `cat` could not write its output.
pub(crate) enum CatError {
    /// The job's own doing (a symlink or a file in the way): a job failure.
    Job(String),
    /// The machine's (disk full): an executor error.
    Exec(ExecError),
}

/// Writes `text` to `out/<rel>`, creating parent directories, following no symlink on the way:
/// a process that ran before may have put one into `out/` to make the write land elsewhere.
pub(crate) fn write_cat(out: &str, rel: &str, text: &str) -> Result<(), CatError> {
    let mut path = PathBuf::from(out);
    let mut segments = rel.split('/').peekable();
    while let Some(segment) = segments.next() {
        path.push(segment);
        if segments.peek().is_none() {
            break;
        }
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    return Err(CatError::Job(format!(
                        "cannot write `{rel}`: `{}` is in the way and is not a directory",
                        path.display()
                    )));
                }
            }
            Err(err) => return Err(cat_io_error(rel, &path, err)),
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|err| cat_io_error(rel, &path, err))?;
    file.write_all(text.as_bytes())
        .map_err(|err| cat_io_error(rel, &path, err))
}

fn cat_io_error(rel: &str, path: &Path, err: io::Error) -> CatError {
    if is_disk_full(&err) {
        return CatError::Exec(ExecError::io("write", path, err));
    }
    if err.raw_os_error() == Some(libc::ELOOP) {
        return CatError::Job(format!("cannot write `{rel}`: it is a symlink"));
    }
    CatError::Job(format!("cannot write `{rel}`: {err}"))
}

/// The last lines of the file at `path` (at most [`TAIL_LINES`] lines and [`TAIL_BYTES`]
/// bytes), lossily decoded. Empty when it cannot be read.
pub(crate) fn tail(path: &Path) -> String {
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if start > 0 {
            // Drop the partial first line, unless it is all there is.
            if let Some(newline) = bytes.iter().position(|&b| b == b'\n')
                && newline + 1 < bytes.len()
            {
                bytes.drain(..=newline);
            }
        }
        Ok(bytes)
    };
    let Ok(bytes) = read() else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_end_matches('\n');
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Removes the directory `path` and everything in it; nothing there is fine. Directories a
/// job made read-only are made writable first, for a daemon that does not run as root.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let first = match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => err,
    };
    tracing::debug!(path = %path.display(), err = %first, "retrying the removal of a sandbox");
    make_writable(path);
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Gives the owner full access to every directory under `dir`, not following symlinks.
fn make_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path());
            }
        }
    }
}

/// Whether `name` has the shape of a sandbox directory name: `<pid>.<n>.<n>`. Returns the pid.
pub(crate) fn sandbox_pid(name: &str) -> Option<u32> {
    let mut parts = name.split('.');
    let pid = parts.next()?.parse().ok()?;
    let all_numbers = parts.clone().count() == 2 && parts.all(|p| p.parse::<u64>().is_ok());
    all_numbers.then_some(pid)
}

/// Removes the sandboxes under `root` left by processes that are gone (a crash, a kill); those
/// of live processes, this one included, are left alone. Returns how many were removed.
pub(crate) fn remove_stale(root: &Path) -> Result<usize, ExecError> {
    let proc_works = Path::new("/proc/self").exists();
    let own_pid = std::process::id();
    let mut n_removed = 0;
    let entries =
        fs::read_dir(root).map_err(|e| ExecError::io("list the sandbox root", root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ExecError::io("list the sandbox root", root, e))?;
        let Some(pid) = entry.file_name().to_str().and_then(sandbox_pid) else {
            continue;
        };
        let alive = pid == own_pid || (proc_works && Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            continue;
        }
        let path = entry.path();
        remove_tree(&path).map_err(|e| ExecError::io("remove the stale sandbox", &path, e))?;
        n_removed += 1;
    }
    Ok(n_removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_a_base() {
        let cases = [
            ("/s/out/a.h", Some("a.h")),
            ("/s/out/x/y", Some("x/y")),
            ("a/b", Some("a/b")),
            ("/s/out", None),
            ("/s/out/", None),
            ("/s/outside/a", None),
            ("/s/out/../a", None),
            ("/s/out/./a", None),
            ("/s/out//a", None),
            ("../a", None),
            ("/etc/passwd", None),
        ];
        for (path, expected) in cases {
            assert_eq!(inside(path, "/s/out"), expected, "{path}");
        }
    }

    #[test]
    fn sandbox_names() {
        assert_eq!(sandbox_pid("123.0.45"), Some(123));
        for bad in [
            "123",
            "123.0",
            "123.0.x",
            "x.0.1",
            "123.0.1.2",
            "lost+found",
        ] {
            assert_eq!(sandbox_pid(bad), None, "{bad}");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, text).expect("write");
        let tail = tail(&path);
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(
            tail.starts_with("line 80\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        let long = "x".repeat(10_000);
        fs::write(&path, &long).expect("write");
        assert_eq!(super::tail(&path).len(), TAIL_BYTES as usize);
        assert_eq!(super::tail(&dir.path().join("none")), "");
    }
}
