//! Publishing: the files a build puts into `weft-out/` (and a graph run into its out
//! directory), what tells that one is still as it was placed, and the second link the daemon
//! keeps of each.
//!
//! A build publishes each requested target's declared outs at `weft-out/<dir>/<out>`, where
//! `<dir>` is the target's directory in the workspace ([`output_dir`]); two requested targets
//! that would publish the same file are refused before the build runs
//! ([`check_output_collisions`]). A no-op build publishes again only what changed or went
//! ([`intact`], [`republish`]).
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

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weft_protocol::{ActionResult, Digest, Job, JobId, Label};
use weft_store::{Store, StoreError};

use super::lower::Lowered;
use crate::frontend::{TargetGraph, Workspace};
use crate::stat::{DirStat, par_map};

/// A file that cannot be published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// A requested target's out cannot be copied out of the store.
    #[error("cannot publish `{shown}` of `{name}`: {source}")]
    Export {
        /// Where it goes, relative to the workspace.
        shown: String,
        /// The target.
        name: String,
        /// What went wrong.
        source: Box<StoreError>,
    },
    /// A graph job's old output directory cannot be removed.
    #[error("cannot replace `{}`: {source}", dir.display())]
    Replace {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A graph job's output tree cannot be copied out of the store.
    #[error("cannot publish the outputs of `{job}`: {source}")]
    Tree {
        /// The job's ID in the graph.
        job: String,
        /// What went wrong.
        source: Box<StoreError>,
    },
    /// A graph job's stdout or stderr cannot be copied out of the store.
    #[error("cannot publish the {stream} of `{job}`: {source}")]
    Stream {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The job's ID in the graph.
        job: String,
        /// What went wrong.
        source: Box<StoreError>,
    },
}

/// Two requested targets would publish the same file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{first}` and `{second}` both declare the out `{out}`, and both would be published as \
     `{}`; rename one of them",
    shown.display()
)]
pub(crate) struct OutputCollision {
    /// The target that claimed the file first.
    first: String,
    /// The other one.
    second: String,
    /// The out both declare.
    out: String,
    /// The file, relative to the workspace.
    shown: PathBuf,
}

/// One file published into `weft-out/`.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// Where it is.
    dest: PathBuf,
    /// Its target.
    pub(crate) name: String,
    /// `dest`, relative to the workspace, as events show it.
    pub(crate) shown: String,
    /// What it holds.
    digest: Digest,
    executable: bool,
    /// Its inode, size, mtime and ctime as published: while they are the same, so is the
    /// file (an edit changes the ctime even when it puts the mtime back).
    stamp: Option<FileStamp>,
}

#[cfg(test)]
impl Published {
    /// A published file of target `name` shown as `shown`, for tests of what is said of it.
    pub(crate) fn for_test(name: &str, shown: &str) -> Published {
        Published {
            dest: PathBuf::from(shown),
            name: name.to_owned(),
            shown: shown.to_owned(),
            digest: Digest::of(b""),
            executable: false,
            stamp: None,
        }
    }
}

/// The path of a target's outputs under `weft-out/`: the target's directory in the workspace.
pub(crate) fn output_dir(workspace: &Workspace, label: &Label) -> Option<PathBuf> {
    let dir = workspace.dir_of(label.package_path()).ok()?;
    Some(workspace.root.join("weft-out").join(Path::new(&dir)))
}

/// Fails when two requested targets would publish the same file: targets of one directory
/// publish into one directory of `weft-out/`.
pub(crate) fn check_output_collisions(
    workspace: &Workspace,
    requested: &[Label],
    lowered: &Lowered,
) -> Result<(), OutputCollision> {
    let jobs: HashMap<JobId, &Arc<Job>> = lowered.jobs.iter().map(|(id, job)| (*id, job)).collect();
    let mut owners: HashMap<PathBuf, &Label> = HashMap::new();
    for label in requested {
        let (Some(id), Some(dir)) = (lowered.ids.get(label), output_dir(workspace, label)) else {
            continue;
        };
        let Some(job) = jobs.get(id) else { continue };
        for out in &job.outs {
            let dest = dir.join(out);
            if let Some(other) = owners.insert(dest.clone(), label) {
                let shown = dest.strip_prefix(&workspace.root).unwrap_or(&dest);
                return Err(OutputCollision {
                    first: other.to_string(),
                    second: label.to_string(),
                    out: out.clone(),
                    shown: shown.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Publishes each requested target's declared outs at `weft-out/<dir>/<out>`. `previous` is
/// what the last build of the workspace published: a file it placed with the same content
/// and nobody touched since is left as it is, one that went is linked back from its kept
/// link when that still matches.
pub(crate) fn publish_outputs(
    store: &Store,
    kept: &KeptOutputs,
    workspace: &Workspace,
    graph: &TargetGraph,
    lowered: &Lowered,
    results: &HashMap<JobId, ActionResult>,
    previous: &[Published],
) -> Result<Arc<Vec<Published>>, PublishError> {
    let jobs: HashMap<JobId, &Arc<Job>> = lowered.jobs.iter().map(|(id, job)| (*id, job)).collect();
    let outputs = graph
        .requested
        .iter()
        .filter_map(|label| lowered.ids.get(label).map(|id| (label, *id)));
    let mut previous: HashMap<&Path, &Published> =
        previous.iter().map(|p| (p.dest.as_path(), p)).collect();
    // Each file to publish, with what the last build put at its place: cheap, in order.
    let mut planned: Vec<(Published, Option<&Published>)> = Vec::new();
    for (label, id) in outputs {
        let (Some(job), Some(result)) = (jobs.get(&id), results.get(&id)) else {
            continue;
        };
        let Some(dir) = output_dir(workspace, label) else {
            continue;
        };
        for out in &job.outs {
            let Some(file) = result.outputs.iter().find(|f| &f.path == out) else {
                continue;
            };
            let dest = dir.join(out);
            let earlier = previous.remove(dest.as_path());
            let shown = dest
                .strip_prefix(&workspace.root)
                .unwrap_or(&dest)
                .display()
                .to_string();
            let entry = Published {
                name: label.to_string(),
                shown,
                digest: file.digest,
                executable: file.executable,
                stamp: None,
                dest,
            };
            planned.push((entry, earlier));
        }
    }
    // A `stat` each, and a copy for each that is not there yet: on several threads.
    let published = par_map(
        &planned,
        |stats, (entry, earlier)| -> Result<_, PublishError> {
            let mut entry = entry.clone();
            // How the last build placed the same content here, if it did.
            let earlier = earlier
                .filter(|e| e.digest == entry.digest && e.executable == entry.executable)
                .and_then(|e| e.stamp);
            if earlier.is_some() && FileStamp::of(stats, &entry.dest) == earlier {
                // The last build put these very bytes there, and nobody touched them.
                entry.stamp = earlier;
            } else {
                // Its kept link may do.
                place(store, kept, stats, &mut entry, earlier)?;
            }
            Ok(entry)
        },
    );
    Ok(Arc::new(published.into_iter().collect::<Result<_, _>>()?))
}

/// Whether each published file is still as it was placed: one `lstat` each.
pub(crate) fn intact(published: &[Published]) -> Vec<bool> {
    par_map(published, |stats, entry| {
        entry.stamp.is_some() && FileStamp::of(stats, &entry.dest) == entry.stamp
    })
}

/// Publishes again what the last build published, given which files are [`intact`] (looked
/// at now when not given): one that changed or went is placed again.
pub(crate) fn republish(
    store: &Store,
    kept: &KeptOutputs,
    published: Arc<Vec<Published>>,
    intact: Option<Vec<bool>>,
) -> Result<Arc<Vec<Published>>, PublishError> {
    let intact = match intact {
        Some(intact) if intact.len() == published.len() => intact,
        _ => self::intact(&published),
    };
    if intact.iter().all(|&intact| intact) {
        return Ok(published);
    }
    let entries: Vec<(&Published, bool)> = published.iter().zip(intact).collect();
    let placed = par_map(
        &entries,
        |stats, &(entry, intact)| -> Result<_, PublishError> {
            let mut entry = entry.clone();
            if !intact {
                let earlier = entry.stamp;
                place(store, kept, stats, &mut entry, earlier)?;
            }
            Ok(entry)
        },
    );
    Ok(Arc::new(placed.into_iter().collect::<Result<_, _>>()?))
}

/// Places one output: a copy, not a link into the store, since people may edit it. When the
/// same content was published there before with the stamp `earlier`, the daemon's kept link
/// of that copy is linked back instead, if it is unchanged (see the module documentation).
fn place(
    store: &Store,
    kept: &KeptOutputs,
    stats: &mut DirStat,
    entry: &mut Published,
    earlier: Option<FileStamp>,
) -> Result<(), PublishError> {
    if let Some(stamp) = earlier
        && let Some(restored) = kept.restore(stats, &entry.dest, stamp, &entry.digest)
    {
        entry.stamp = Some(restored);
        return Ok(());
    }
    store
        .export(&entry.digest, &entry.dest, entry.executable)
        .map_err(|source| PublishError::Export {
            shown: entry.shown.clone(),
            name: entry.name.clone(),
            source: Box::new(source),
        })?;
    kept.keep(&entry.dest);
    entry.stamp = FileStamp::of(stats, &entry.dest);
    Ok(())
}

/// Publishes a graph run: each job's outputs at `out_dir/<ID>/` (replacing what was there),
/// its stdout and stderr at `out_dir/<ID>.stdout` and `out_dir/<ID>.stderr`. Says, for each
/// job with a result, its ID and its output directory.
pub(crate) fn publish_graph(
    store: &Store,
    out_dir: &Path,
    names: &[(String, JobId)],
    results: &HashMap<JobId, ActionResult>,
) -> Result<Vec<(String, String)>, PublishError> {
    let mut published = Vec::new();
    for (name, id) in names {
        let Some(result) = results.get(id) else {
            continue;
        };
        let dir = out_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| PublishError::Replace {
                dir: dir.clone(),
                source,
            })?;
        }
        store
            .export_tree(&result.output_tree, &dir)
            .map_err(|source| PublishError::Tree {
                job: name.clone(),
                source: Box::new(source),
            })?;
        for (stream, digest) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
            let path = out_dir.join(format!("{name}.{stream}"));
            store
                .export(digest, &path, false)
                .map_err(|source| PublishError::Stream {
                    stream,
                    job: name.clone(),
                    source: Box::new(source),
                })?;
        }
        published.push((name.clone(), dir.display().to_string()));
    }
    Ok(published)
}

/// What tells that a published file is still the one weft put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    /// Changed by any write or metadata change (nobody can set it back), and also by a link
    /// being made or removed: a kept link's ctime moves when `weft clean` removes its copy.
    ctime_ns: i128,
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
            ctime_ns: i128::from(meta.ctime) * 1_000_000_000 + i128::from(meta.ctime_nsec),
        })
    }

    /// The same file, as far as its inode, size and mtime go (not its ctime, which a link
    /// made or removed moves).
    fn same_file(&self, other: &FileStamp) -> bool {
        (self.ino, self.size, self.mtime_ns) == (other.ino, other.size, other.mtime_ns)
    }
}

/// The digest of the file at `path`'s content.
fn file_digest(path: &Path) -> io::Result<Digest> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = weft_protocol::DigestHasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
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

    /// Links the kept copy of `dest` back at `dest` when it is still the file published with
    /// `stamp` and still holds `digest`, replacing whatever is at `dest`, and returns its
    /// stamp now. `None` when there is no such kept copy (none kept, changed since, even with
    /// its mtime put back), or it cannot be linked: then `dest` must be copied.
    ///
    /// The content is hashed: its ctime cannot tell an edit from `weft clean` removing the
    /// other link, and hashing costs a read, where a copy costs a read, a write and a new
    /// file.
    pub(crate) fn restore(
        &self,
        stats: &mut DirStat,
        dest: &Path,
        stamp: FileStamp,
        digest: &Digest,
    ) -> Option<FileStamp> {
        let kept = self.kept_path(dest);
        if !FileStamp::of(stats, &kept).is_some_and(|now| now.same_file(&stamp)) {
            return None;
        }
        if file_digest(&kept).ok().as_ref() != Some(digest) {
            tracing::info!(dest = %dest.display(), "a published copy was edited in place: it is copied again");
            return None;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).ok()?;
        }
        remove_if_present(dest).ok()?;
        // Between the check and the link, an edit through `dest`'s old link would show as a
        // changed stamp on the next build, like any edit after publishing.
        std::fs::hard_link(&kept, dest).ok()?;
        FileStamp::of(stats, dest).filter(|now| now.same_file(&stamp))
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
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    use weft_protocol::{NodeId, OutputFile};

    use super::*;

    fn setup() -> (tempfile::TempDir, KeptOutputs, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = KeptOutputs::new(dir.path().join("kept"));
        let dest = dir.path().join("ws/weft-out/pkg/out.txt");
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::write(&dest, b"published").expect("write");
        (dir, kept, dest)
    }

    const PUBLISHED: &[u8] = b"published";

    #[test]
    fn a_removed_copy_is_linked_back() {
        let (_dir, kept, dest) = setup();
        let mut stats = DirStat::default();
        kept.keep(&dest);
        let stamp = FileStamp::of(&mut stats, &dest).expect("stamp");
        std::fs::remove_dir_all(dest.parent().expect("parent")).expect("clean");
        let restored = kept.restore(&mut stats, &dest, stamp, &Digest::of(PUBLISHED));
        assert!(restored.is_some_and(|now| now.same_file(&stamp)));
        assert_eq!(std::fs::read(&dest).expect("read"), PUBLISHED);
        assert_eq!(FileStamp::of(&mut stats, &dest), restored);
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
        assert!(
            kept.restore(&mut stats, &dest, stamp, &Digest::of(PUBLISHED))
                .is_none()
        );
        assert!(!dest.exists());
    }

    #[test]
    fn an_edit_of_the_same_size_with_its_mtime_put_back_is_seen() {
        let (_dir, kept, dest) = setup();
        let mut stats = DirStat::default();
        kept.keep(&dest);
        let stamp = FileStamp::of(&mut stats, &dest).expect("stamp");
        let mtime = std::fs::metadata(&dest)
            .expect("stat")
            .modified()
            .expect("mtime");
        std::fs::write(&dest, b"PUBLISHED").expect("edit");
        let file = std::fs::File::options()
            .write(true)
            .open(&dest)
            .expect("open");
        file.set_modified(mtime).expect("put the mtime back");
        drop(file);
        // Still in place: not intact (its ctime moved).
        let now = FileStamp::of(&mut stats, &dest).expect("stamp");
        assert!(now.same_file(&stamp));
        assert_ne!(now, stamp);
        // After `weft clean`: not linked back (its content differs).
        std::fs::remove_file(&dest).expect("clean");
        assert!(
            kept.restore(&mut stats, &dest, stamp, &Digest::of(PUBLISHED))
                .is_none()
        );
    }

    #[test]
    fn nothing_kept_means_nothing_restored_and_prune_drops_orphans() {
        let (_dir, kept, dest) = setup();
        let mut stats = DirStat::default();
        let stamp = FileStamp::of(&mut stats, &dest).expect("stamp");
        let digest = Digest::of(PUBLISHED);
        let other = dest.with_file_name("other.txt");
        assert!(kept.restore(&mut stats, &other, stamp, &digest).is_none());
        kept.keep(&dest);
        assert_eq!(kept.prune(), 0, "the published copy is still there");
        std::fs::remove_file(&dest).expect("clean");
        assert_eq!(kept.prune(), 1);
        assert!(kept.restore(&mut stats, &dest, stamp, &digest).is_none());
    }

    /// A workspace, a store, kept links, and two requested targets `//:a` (out `a.out`,
    /// "A") and `//pkg:b` (out `b.out`, "B") that have run.
    struct Built {
        _dir: tempfile::TempDir,
        store: Store,
        kept: KeptOutputs,
        workspace: Workspace,
        graph: TargetGraph,
        lowered: Lowered,
        results: HashMap<JobId, ActionResult>,
    }

    fn job(name: &str, outs: &[&str]) -> Job {
        Job {
            name: name.to_owned(),
            inputs: Vec::new(),
            deps: Vec::new(),
            cmds: Vec::new(),
            env: Default::default(),
            outs: outs.iter().map(|o| (*o).to_owned()).collect(),
            toolchain: Default::default(),
            network: false,
        }
    }

    fn result(store: &Store, outputs: &[(&str, &[u8])]) -> ActionResult {
        let empty = store.put(b"").expect("put");
        ActionResult {
            exit_code: 0,
            outputs: outputs
                .iter()
                .map(|(path, bytes)| OutputFile {
                    path: (*path).to_owned(),
                    digest: store.put(bytes).expect("put"),
                    size: bytes.len() as u64,
                    executable: false,
                })
                .collect(),
            output_tree: empty,
            stdout: empty,
            stderr: empty,
            duration_ms: 0,
            executed_by: NodeId([0; 32]),
            signature: None,
        }
    }

    fn lowered(jobs: Vec<(&str, Job)>) -> Lowered {
        let mut lowered = Lowered::default();
        for (label, job) in jobs {
            let id = JobId(Digest::of(label.as_bytes()));
            lowered.ids.insert(Label::parse(label).expect("label"), id);
            lowered.jobs.push((id, Arc::new(job)));
        }
        lowered
    }

    fn built() -> Built {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ws");
        std::fs::create_dir_all(&root).expect("mkdir");
        let workspace = Workspace {
            root,
            packages: BTreeMap::new(),
        };
        let store = Store::open(&dir.path().join("store")).expect("store");
        let kept = KeptOutputs::new(dir.path().join("kept"));
        let lowered = lowered(vec![
            ("//:a", job("//:a", &["a.out"])),
            ("//pkg:b", job("//pkg:b", &["b.out"])),
        ]);
        let results = [(&b"A"[..], "a.out"), (b"B", "b.out")]
            .into_iter()
            .zip(&lowered.jobs)
            .map(|((bytes, out), (id, _))| (*id, result(&store, &[(out, bytes)])))
            .collect();
        let graph = TargetGraph {
            requested: lowered.ids.keys().cloned().collect(),
            targets: BTreeMap::new(),
        };
        Built {
            _dir: dir,
            store,
            kept,
            workspace,
            graph,
            lowered,
            results,
        }
    }

    impl Built {
        fn publish(&self, previous: &[Published]) -> Arc<Vec<Published>> {
            publish_outputs(
                &self.store,
                &self.kept,
                &self.workspace,
                &self.graph,
                &self.lowered,
                &self.results,
                previous,
            )
            .expect("publish")
        }

        fn out(&self, path: &str) -> PathBuf {
            self.workspace.root.join("weft-out").join(path)
        }
    }

    #[test]
    fn outputs_land_under_the_targets_directories() {
        let built = built();
        let published = built.publish(&[]);
        let shown: Vec<(&str, &str)> = published
            .iter()
            .map(|p| (p.name.as_str(), p.shown.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("//:a", "weft-out/a.out"),
                ("//pkg:b", "weft-out/pkg/b.out")
            ]
        );
        assert_eq!(std::fs::read(built.out("a.out")).expect("a"), b"A");
        assert_eq!(std::fs::read(built.out("pkg/b.out")).expect("b"), b"B");
        assert_eq!(intact(&published), [true, true]);
        // Publishing the same again leaves the very files in place.
        let inode = std::fs::metadata(built.out("a.out")).expect("stat").ino();
        let again = built.publish(&published);
        assert_eq!(
            std::fs::metadata(built.out("a.out")).expect("stat").ino(),
            inode
        );
        assert_eq!(intact(&again), [true, true]);
    }

    #[test]
    fn republish_places_again_only_what_went_or_changed() {
        let built = built();
        let published = built.publish(&[]);
        assert!(Arc::ptr_eq(
            &republish(&built.store, &built.kept, published.clone(), None).expect("republish"),
            &published
        ));
        let inode = std::fs::metadata(built.out("a.out")).expect("stat").ino();
        std::fs::remove_file(built.out("a.out")).expect("rm");
        // Edited in place: the kept link changes with it, so it cannot be linked back.
        std::fs::write(built.out("pkg/b.out"), b"edited").expect("edit");
        assert_eq!(intact(&published), [false, false]);
        let placed = republish(&built.store, &built.kept, published, None).expect("republish");
        assert_eq!(intact(&placed), [true, true]);
        let a = std::fs::metadata(built.out("a.out")).expect("stat");
        assert_eq!(a.ino(), inode, "linked back from the kept link");
        assert_eq!(std::fs::read(built.out("a.out")).expect("a"), b"A");
        assert_eq!(std::fs::read(built.out("pkg/b.out")).expect("b"), b"B");
    }

    #[test]
    fn a_missing_blob_fails_the_publish_naming_the_file_and_target() {
        let built = built();
        let (id, _) = &built.lowered.jobs[0];
        let mut results = built.results.clone();
        let gone = Digest::of(b"never stored");
        if let Some(result) = results.get_mut(id) {
            result.outputs[0].digest = gone;
        }
        let err = publish_outputs(
            &built.store,
            &built.kept,
            &built.workspace,
            &built.graph,
            &built.lowered,
            &results,
            &[],
        )
        .expect_err("no blob");
        assert_eq!(
            err.to_string(),
            format!("cannot publish `weft-out/a.out` of `//:a`: blob `{gone}` is not in the store")
        );
    }

    #[test]
    fn two_requested_targets_publishing_one_file_collide() {
        let built = built();
        let requested = |labels: &[&str]| -> Vec<Label> {
            labels
                .iter()
                .map(|l| Label::parse(l).expect("label"))
                .collect()
        };
        let apart = lowered(vec![
            ("//:a", job("//:a", &["o"])),
            ("//pkg:b", job("//pkg:b", &["o"])),
        ]);
        let labels = requested(&["//:a", "//pkg:b"]);
        assert_eq!(
            check_output_collisions(&built.workspace, &labels, &apart),
            Ok(())
        );
        let together = lowered(vec![
            ("//:a", job("//:a", &["x", "o"])),
            ("//:b", job("//:b", &["o"])),
        ]);
        // Only requested targets publish.
        let labels = requested(&["//:a"]);
        assert_eq!(
            check_output_collisions(&built.workspace, &labels, &together),
            Ok(())
        );
        let labels = requested(&["//:a", "//:b"]);
        let err =
            check_output_collisions(&built.workspace, &labels, &together).expect_err("collision");
        assert_eq!(
            err.to_string(),
            "`//:a` and `//:b` both declare the out `o`, and both would be published as \
             `weft-out/o`; rename one of them"
        );
    }

    #[test]
    fn a_graph_run_replaces_each_jobs_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let made = dir.path().join("made");
        std::fs::create_dir_all(&made).expect("mkdir");
        std::fs::write(made.join("f"), b"new").expect("write");
        let tree = store.put_tree(&made).expect("tree").digest;
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("gen")).expect("mkdir");
        std::fs::write(out.join("gen/stale"), b"old").expect("write");
        let id = JobId(Digest::of(b"gen"));
        let mut result = result(&store, &[]);
        result.output_tree = tree;
        result.stdout = store.put(b"said").expect("put");
        let results = HashMap::from([(id, result)]);
        let names = [
            ("gen".to_owned(), id),
            ("failed".to_owned(), JobId(Digest::of(b"failed"))),
        ];
        let published = publish_graph(&store, &out, &names, &results).expect("publish");
        assert_eq!(
            published,
            [("gen".to_owned(), out.join("gen").display().to_string())]
        );
        assert_eq!(std::fs::read(out.join("gen/f")).expect("f"), b"new");
        assert!(!out.join("gen/stale").exists());
        assert_eq!(
            std::fs::read(out.join("gen.stdout")).expect("stdout"),
            b"said"
        );
        assert_eq!(std::fs::read(out.join("gen.stderr")).expect("stderr"), b"");
        assert!(!out.join("failed").exists());
    }
}
