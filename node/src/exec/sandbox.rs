//! The sandbox directory of one run: its layout, how it is filled, checked, emptied and reused.
//!
//! ```text
//! <sandbox_root>/<pid>.<executor>.<seq>/   one run at a time; the name is unique in the root
//!     src/            {{SOURCE_DIR}}: the declared inputs, read-only
//!     out/            {{OUTPUT_DIR}}: everything here afterwards is the job's output
//!     deps/<job id>/  {{DEP:<job id>}}: a dependency's output tree
//!     tmp/            TMPDIR and HOME
//!     stdout, stderr  the commands' streams, appended in command order
//! ```
//!
//! # Reuse
//!
//! Creating and deleting directories is the dearest part of a tiny job (on ext4, allocating
//! an inode gets slower the more inodes were freed recently). So a sandbox whose job is done
//! is emptied and kept in a [`SlotPool`] for the next run instead of being deleted: `out/` and
//! `tmp/` are emptied, `src/` keeps only its (emptied) directories, all without following
//! symlinks and with their modes reset; every other entry of the sandbox directory is deleted,
//! and the stream files are truncated. The next run removes the directories of `src/` that its
//! inputs do not need before it materializes them, so a reused sandbox holds exactly what a new
//! one would. One that cannot be emptied cleanly is deleted instead, and so is the sandbox of
//! a failed or cancelled run.
//!
//! Every process of a job is dead before its sandbox is reused (the executor kills each
//! command's process group when the command ends); a process that left its group on purpose
//! (`setsid`) is beyond the reach of a sandbox without namespaces.
//!
//! `src/` is made read-only (mode 0555, its files are 0444 or 0555 from the store) unless the
//! daemon runs as root, who ignores modes anyway.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use weft_protocol::path::check_relative_path;
use weft_protocol::{Digest, Input};
use weft_store::{Store, is_disk_full};

use super::error::ExecError;

/// The most stderr bytes a failure report quotes.
const TAIL_BYTES: u64 = 4096;
/// The most stderr lines a failure report quotes.
const TAIL_LINES: usize = 20;
/// The mode of the sandbox's own directories.
const DIR_MODE: u32 = 0o755;
/// The mode of `src/` and its subdirectories while a job runs (for a daemon that is not root).
const READ_ONLY_DIR_MODE: u32 = 0o555;

/// The paths of one sandbox, as the strings templates render to.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: String,
    pub(crate) src: String,
    pub(crate) out: String,
    pub(crate) tmp: String,
}

impl Layout {
    pub(crate) fn new(root: String) -> Layout {
        Layout {
            src: format!("{root}/src"),
            out: format!("{root}/out"),
            tmp: format!("{root}/tmp"),
            root,
        }
    }

    /// Where the output tree of the dependency `hex` is materialized.
    pub(crate) fn dep_dir(&self, hex: &str) -> String {
        format!("{}/deps/{hex}", self.root)
    }
}

/// The open stream files that every process of a run appends to.
#[derive(Debug)]
pub(crate) struct Streams {
    pub(crate) stdout: File,
    pub(crate) stderr: File,
}

impl Streams {
    fn create(layout: &Layout) -> Result<Streams, ExecError> {
        let open = |name: &str| {
            let path = format!("{}/{name}", layout.root);
            OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| ExecError::io("create the stream file", Path::new(&path), e))
        };
        Ok(Streams {
            stdout: open("stdout")?,
            stderr: open("stderr")?,
        })
    }

    /// Stores one stream as a blob, read from its open file.
    pub(crate) fn store(
        store: &Store,
        file: &File,
        empty: &mut Option<Digest>,
        sandbox: &Path,
    ) -> Result<Digest, ExecError> {
        let error = |e| ExecError::io("read a stream file of", sandbox, e);
        if file.metadata().map_err(error)?.len() == 0 {
            return store_empty(store, empty, sandbox);
        }
        let mut reader = file;
        reader.seek(SeekFrom::Start(0)).map_err(error)?;
        store
            .put_reader(reader, None)
            .map(|(digest, _)| digest)
            .map_err(|e| ExecError::store("store a stream of", sandbox, e))
    }
}

/// Stores the empty blob once per run and returns its digest.
pub(crate) fn store_empty(
    store: &Store,
    empty: &mut Option<Digest>,
    sandbox: &Path,
) -> Result<Digest, ExecError> {
    if let Some(digest) = empty {
        return Ok(*digest);
    }
    let digest = store
        .put(b"")
        .map_err(|e| ExecError::store("store an empty stream for", sandbox, e))?;
    *empty = Some(digest);
    Ok(digest)
}

/// An empty sandbox waiting in the pool, with its stream files open and empty.
#[derive(Debug)]
pub(crate) struct Slot {
    layout: Layout,
    streams: Streams,
    /// The empty directories left in `src/`, relative to it.
    src_dirs: BTreeSet<String>,
}

/// Emptied sandboxes, ready for the next run. Dropping the pool deletes them.
#[derive(Debug)]
pub(crate) struct SlotPool {
    idle: Mutex<Vec<Slot>>,
    max_idle: usize,
}

impl SlotPool {
    pub(crate) fn new(max_idle: usize) -> SlotPool {
        SlotPool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A slot is pushed or popped whole: a panic elsewhere cannot leave the list half
        // changed, so a poisoned lock is taken as it is.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<Slot> {
        self.lock().pop()
    }

    fn has_room(&self) -> bool {
        self.lock().len() < self.max_idle
    }

    /// Keeps `slot`, or hands it back when the pool is full.
    fn put(&self, slot: Slot) -> Option<Slot> {
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            return Some(slot);
        }
        idle.push(slot);
        None
    }
}

impl Drop for SlotPool {
    fn drop(&mut self) {
        for slot in self.lock().drain(..) {
            let path = PathBuf::from(&slot.layout.root);
            drop(slot.streams);
            if let Err(err) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), %err, "cannot remove an idle sandbox");
            }
        }
    }
}

/// What a sandbox is filled with before the commands run.
pub(crate) struct Filling {
    pub(crate) inputs: Vec<Input>,
    /// Each dependency's hex id and output tree.
    pub(crate) deps: Vec<(String, Digest)>,
    /// Whether to make `src/` read-only (pointless for root, who ignores modes).
    pub(crate) read_only_src: bool,
    /// Directories of `src/` that commands run in, relative to it: made even when no input
    /// lies in them (an archive job in `lib/` whose inputs all come from deps, say).
    pub(crate) work_dirs: Vec<String>,
}

/// The sandbox of one run. Dropping it (a cancelled or failed run) deletes the directory;
/// [`Sandbox::recycle`] empties it for the next run, [`Sandbox::keep`] leaves it as it is.
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub(crate) layout: Layout,
    pub(crate) streams: Streams,
    /// The directories made read-only, to make writable again before emptying.
    read_only_dirs: Vec<PathBuf>,
    /// The directories in `src/`, relative to it.
    src_dirs: BTreeSet<String>,
    /// Set when the directory was recycled or kept: nothing is left to do on drop.
    settled: bool,
}

impl Sandbox {
    /// Takes an empty sandbox from `pool`, or makes one at `<root>/<name>`, and fills it.
    pub(crate) fn prepare(
        store: &Store,
        pool: &SlotPool,
        new_root: impl FnOnce() -> String,
        filling: &Filling,
    ) -> Result<Sandbox, ExecError> {
        let mut sandbox = match pool.take() {
            Some(slot) => Sandbox {
                layout: slot.layout,
                streams: slot.streams,
                read_only_dirs: Vec::new(),
                src_dirs: slot.src_dirs,
                settled: false,
            },
            None => Sandbox::create(Layout::new(new_root()))?,
        };
        sandbox.fill(store, filling)?;
        Ok(sandbox)
    }

    fn create(layout: Layout) -> Result<Sandbox, ExecError> {
        let mkdir = |path: &str| {
            fs::create_dir(path)
                .map_err(|e| ExecError::io("create the sandbox directory", Path::new(path), e))
        };
        mkdir(&layout.root)?;
        let made = [&layout.src, &layout.out, &layout.tmp]
            .into_iter()
            .try_for_each(|dir| mkdir(dir))
            .and_then(|()| Streams::create(&layout));
        match made {
            Ok(streams) => Ok(Sandbox {
                layout,
                streams,
                read_only_dirs: Vec::new(),
                src_dirs: BTreeSet::new(),
                settled: false,
            }),
            Err(err) => {
                let _ = remove_tree(Path::new(&layout.root));
                Err(err)
            }
        }
    }

    /// Materializes the inputs and the deps. The directories of `src/` that the inputs need
    /// and an earlier run left are reused; the others are removed first.
    fn fill(&mut self, store: &Store, filling: &Filling) -> Result<(), ExecError> {
        let layout = &self.layout;
        let mut needed = BTreeSet::new();
        for work_dir in &filling.work_dirs {
            // The directory itself, then its parents: `a/b/c` as if it held a file.
            let mut rel = work_dir.as_str();
            if needed.insert(rel) {
                while let Some((parent, _)) = rel.rsplit_once('/') {
                    if !needed.insert(parent) {
                        break;
                    }
                    rel = parent;
                }
            }
        }
        for input in &filling.inputs {
            let mut rel = input.path.as_str();
            while let Some((parent, _)) = rel.rsplit_once('/') {
                if !needed.insert(parent) {
                    break;
                }
                rel = parent;
            }
        }
        // Children sort after their parents, so this removes them first. A directory that is
        // not needed has no needed directory below it.
        for stale in self.src_dirs.iter().rev() {
            if !needed.contains(stale.as_str()) {
                let dir = PathBuf::from(format!("{}/{stale}", layout.src));
                fs::remove_dir(&dir)
                    .or_else(|_| remove_tree(&dir))
                    .map_err(|e| ExecError::io("empty the sandbox directory", &dir, e))?;
            }
        }
        self.src_dirs = needed.iter().map(|dir| (*dir).to_owned()).collect();
        for work_dir in &filling.work_dirs {
            let dir = PathBuf::from(format!("{}/{work_dir}", layout.src));
            fs::create_dir_all(&dir)
                .map_err(|e| ExecError::io("create the working directory", &dir, e))?;
        }
        for input in &filling.inputs {
            let dest = PathBuf::from(format!("{}/{}", layout.src, input.path));
            store
                .materialize(&input.digest, &dest, input.executable)
                .map_err(|e| ExecError::store("materialize an input at", &dest, e))?;
        }
        for (hex, tree) in &filling.deps {
            let dest = PathBuf::from(layout.dep_dir(hex));
            store
                .materialize_tree(tree, &dest)
                .map_err(|e| ExecError::store("materialize a dependency's outputs at", &dest, e))?;
        }
        if filling.read_only_src {
            let read_only: Vec<PathBuf> = needed
                .iter()
                .map(|rel| PathBuf::from(format!("{}/{rel}", layout.src)))
                .chain([PathBuf::from(&layout.src)])
                .collect();
            for dir in &read_only {
                fs::set_permissions(dir, fs::Permissions::from_mode(READ_ONLY_DIR_MODE))
                    .map_err(|e| ExecError::io("make read-only", dir, e))?;
            }
            self.read_only_dirs = read_only;
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        Path::new(&self.layout.root)
    }

    /// Leaves the directory in place, for someone to look into.
    pub(crate) fn keep(mut self) {
        self.settled = true;
    }

    /// Empties the sandbox and puts it into `pool` for the next run; deletes it when the pool
    /// is full or the sandbox cannot be emptied cleanly.
    pub(crate) fn recycle(mut self, pool: &SlotPool) {
        if !pool.has_room() || !self.empty() {
            return; // dropped: deleted
        }
        let slot = Slot {
            layout: self.layout.clone(),
            streams: match self.take_streams() {
                Some(streams) => streams,
                None => return,
            },
            src_dirs: std::mem::take(&mut self.src_dirs),
        };
        self.settled = true;
        if let Some(slot) = pool.put(slot) {
            let path = PathBuf::from(&slot.layout.root);
            drop(slot);
            if let Err(err) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), %err, "cannot remove a sandbox");
            }
        }
    }

    /// The stream files, truncated, unless that fails.
    fn take_streams(&mut self) -> Option<Streams> {
        let truncated =
            self.streams.stdout.set_len(0).is_ok() && self.streams.stderr.set_len(0).is_ok();
        if !truncated {
            return None;
        }
        let reopen = |file: &File| file.try_clone().ok();
        Some(Streams {
            stdout: reopen(&self.streams.stdout)?,
            stderr: reopen(&self.streams.stderr)?,
        })
    }

    /// Brings the sandbox back to its new state, but for empty directories in `src/` that the
    /// next run may reuse (it removes those it does not need); false when that did not fully
    /// work.
    fn empty(&mut self) -> bool {
        for dir in self.read_only_dirs.drain(..) {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE));
        }
        let layout = &self.layout;
        let root = Path::new(&layout.root);
        let keep = ["src", "out", "tmp", "stdout", "stderr"];
        let mut src_dirs = BTreeSet::new();
        let clean = reset_dir_mode(root)
            && remove_entries(root, |name| keep.contains(&name))
            && reset_dir_mode(Path::new(&layout.src))
            && remove_files(Path::new(&layout.src), "", &mut src_dirs)
            && [&layout.out, &layout.tmp].into_iter().all(|dir| {
                let dir = Path::new(dir);
                reset_dir_mode(dir) && remove_entries(dir, |_| false)
            });
        self.src_dirs = src_dirs;
        clean
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        for dir in &self.read_only_dirs {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE));
        }
        if let Err(err) = remove_tree(self.path()) {
            tracing::warn!(path = %self.path().display(), %err, "cannot remove a sandbox");
        }
    }
}

/// Checks that `dir` is a real directory (not a symlink) and gives it [`DIR_MODE`].
fn reset_dir_mode(dir: &Path) -> bool {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            meta.permissions().mode() & 0o7777 == DIR_MODE
                || fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).is_ok()
        }
        _ => false,
    }
}

/// Deletes every entry of `dir` but those `keep` accepts, following no symlink; false when
/// something could not be deleted.
fn remove_entries(dir: &Path, keep: impl Fn(&str) -> bool) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        if entry.file_name().to_str().is_some_and(&keep) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            // `remove_dir_all` does not follow symlinks, at the top or below.
            Ok(file_type) if file_type.is_dir() => remove_tree(&path),
            Ok(_) => fs::remove_file(&path),
            Err(err) => Err(err),
        };
        if removed.is_err() {
            return false;
        }
    }
    true
}

/// Deletes every entry under `dir` but directories, following no symlink; records the
/// directories (as `rel/name`) in `dirs` and gives them [`DIR_MODE`]. False when something
/// could not be deleted.
fn remove_files(dir: &Path, rel: &str, dirs: &mut BTreeSet<String>) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(file_type) if file_type.is_dir() => {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    // Not a name an input can have: no run will reuse it.
                    if remove_tree(&path).is_err() {
                        return false;
                    }
                    continue;
                };
                let sub = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if !(reset_dir_mode(&path) && remove_files(&path, &sub, dirs)) {
                    return false;
                }
                dirs.insert(sub);
                Ok(())
            }
            Ok(_) => fs::remove_file(&path),
            Err(err) => Err(err),
        };
        if removed.is_err() {
            return false;
        }
    }
    true
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

/// The failure message for a `cat` to `rel` that finds the non-directory `prefix` in the way.
pub(crate) fn in_the_way(rel: &str, prefix: &str) -> String {
    format!("cannot write `{rel}`: `{prefix}` is in the way and is not a directory")
}

/// The failure message for a `cat` to `rel`, which is a directory.
pub(crate) fn is_a_directory(rel: &str) -> String {
    format!("cannot write `{rel}`: it is a directory")
}

/// Writes `text` to `out/<rel>`, creating parent directories, following no symlink on the way:
/// a process that ran before may have put one into `out/` to make the write land elsewhere.
pub(crate) fn write_cat(out: &str, rel: &str, text: &str) -> Result<(), CatError> {
    let mut path = PathBuf::from(out);
    let mut prefix_len = 0;
    let mut segments = rel.split('/').peekable();
    while let Some(segment) = segments.next() {
        path.push(segment);
        if segments.peek().is_none() {
            break;
        }
        prefix_len += segment.len() + usize::from(prefix_len > 0);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    return Err(CatError::Job(in_the_way(rel, &rel[..prefix_len])));
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
    match err.raw_os_error() {
        Some(libc::ELOOP) => CatError::Job(format!("cannot write `{rel}`: it is a symlink")),
        Some(libc::EISDIR) => CatError::Job(is_a_directory(rel)),
        _ => CatError::Job(format!("cannot write `{rel}`: {err}")),
    }
}

/// The last lines of `file` (at most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes), lossily
/// decoded. Empty when it cannot be read.
pub(crate) fn tail(file: &File) -> String {
    let read = || -> io::Result<Vec<u8>> {
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        let mut bytes = vec![0u8; usize::try_from(len - start).unwrap_or(0)];
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read_at(&mut bytes[filled..], start + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        bytes.truncate(filled);
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

/// Removes the directory `path` and everything in it, following no symlink; nothing there is
/// fine. Directories a job made read-only are made writable first, for a daemon that does not
/// run as root.
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
        let open = || File::open(&path).expect("open");
        let tail = tail(&open());
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(
            tail.starts_with("line 80\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        fs::write(&path, "x".repeat(10_000)).expect("write");
        assert_eq!(super::tail(&open()).len(), TAIL_BYTES as usize);
        fs::write(&path, "").expect("write");
        assert_eq!(super::tail(&open()), "");
    }
}
