//! Whole directories as Merkle trees: [`Store::put_tree`], [`Store::materialize_tree`] and
//! [`Store::tree_files`].
//!
//! Each directory is stored as one blob, its [`Tree`] listing (names, sorted), and a
//! subdirectory entry names the subdirectory's own tree blob, so one digest names every byte
//! below it.
//!
//! Symlinks are stored only when they stay inside the tree: the target must be relative, and
//! resolving it from the link's directory, following the tree's own symlinks on the way (at
//! most 40 of them, as Linux does), must never climb above the root. The same check runs on
//! trees read back from the store, because a tree blob may come from a peer: together with
//! [`Tree::decode`], which refuses names such as `..` or `a/b`, it keeps a hostile tree from
//! writing or pointing outside the destination.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use weft_protocol::path::check_file_name;
use weft_protocol::{Digest, OutputFile, Tree, TreeEntry, TreeNode};

use crate::error::StoreError;
use crate::read::Verify;
use crate::store::{Store, discard_path};

/// The deepest directory nesting a tree may have.
pub const MAX_TREE_DEPTH: usize = 256;
/// The most entries (files, directories and symlinks, counted along every path) a tree may
/// have.
pub const MAX_TREE_ENTRIES: usize = 1_000_000;
/// The most symlinks followed while checking where one symlink leads.
const MAX_SYMLINK_HOPS: usize = 40;

/// What [`Store::put_tree`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSummary {
    /// The digest of the root directory's tree blob.
    pub digest: Digest,
    /// Every regular file in the tree, with its path relative to the root, sorted by path.
    pub files: Vec<OutputFile>,
}

/// A directory in memory: its entries by name.
type DirNode<F> = BTreeMap<String, Node<F>>;

/// One entry of a directory in memory; `F` is what is known about a file.
enum Node<F> {
    File(F),
    Dir(DirNode<F>),
    Symlink(String),
}

/// A regular file found while walking a directory.
struct WalkedFile {
    path: PathBuf,
    executable: bool,
}

/// A regular file as a tree names it.
#[derive(Clone, Copy)]
struct StoredFile {
    digest: Digest,
    size: u64,
    executable: bool,
}

impl Store {
    /// Stores the directory `dir` and everything below it, without following symlinks, and
    /// returns the root tree's digest and the list of files.
    ///
    /// A symlink is stored when it stays inside `dir` (see the module documentation); one that
    /// escapes is [`StoreError::SymlinkEscapes`]. A fifo, socket or device is
    /// [`StoreError::UnsupportedFileType`]. Nothing is stored until the whole directory has been
    /// walked and checked.
    pub fn put_tree(&self, dir: &Path) -> Result<TreeSummary, StoreError> {
        let meta = fs::symlink_metadata(dir).map_err(|e| StoreError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let mut n_entries = 0;
        let root = walk(dir, 0, &mut n_entries)?;
        check_symlinks(&root, dir)?;
        let mut files = Vec::new();
        let digest = self.store_dir(&root, "", &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        tracing::debug!(%digest, dir = %dir.display(), n_files = files.len(), "put tree");
        Ok(TreeSummary { digest, files })
    }

    /// Recreates the tree `tree` at `dest`: directories, files (verified, with their
    /// executable bits, see [`Store::materialize`]) and symlinks.
    ///
    /// The whole tree is read and checked before anything is written; a malformed or hostile
    /// tree is an error and leaves `dest` alone. An existing `dest` (file, symlink or whole
    /// directory) is removed first.
    pub fn materialize_tree(&self, tree: &Digest, dest: &Path) -> Result<(), StoreError> {
        self.place_tree(tree, dest, false)
    }

    /// Like [`Store::materialize_tree`], but every file is a copy of its own
    /// ([`Store::export`]): for directories that people may edit.
    pub fn export_tree(&self, tree: &Digest, dest: &Path) -> Result<(), StoreError> {
        self.place_tree(tree, dest, true)
    }

    fn place_tree(&self, tree: &Digest, dest: &Path, copy: bool) -> Result<(), StoreError> {
        let mut n_entries = 0;
        let root = self.load_tree(tree, Path::new(""), 0, &mut n_entries)?;
        check_symlinks(&root, dest)?;
        discard_path(dest)?;
        fs::create_dir_all(dest).map_err(|e| StoreError::io(dest, e))?;
        self.write_dir(&root, dest, copy)?;
        tracing::debug!(%tree, dest = %dest.display(), n_entries, "materialized tree");
        Ok(())
    }

    /// Every regular file in the tree `tree`, with paths relative to its root, sorted by path.
    pub fn tree_files(&self, tree: &Digest) -> Result<Vec<OutputFile>, StoreError> {
        let mut n_entries = 0;
        let root = self.load_tree(tree, Path::new(""), 0, &mut n_entries)?;
        let mut files = Vec::new();
        collect_files(&root, "", &mut files);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Whether the tree `tree` is here whole: its tree blobs and every file below them. The
    /// root tree blob alone says nothing, since a fetch stores it first and may still be
    /// fetching its files, or may have failed to.
    pub fn has_tree(&self, tree: &Digest) -> bool {
        self.tree_files(tree)
            .is_ok_and(|files| files.iter().all(|file| self.has(&file.digest)))
    }

    /// The blobs of the tree `tree` that fit in `budget` bytes together, with their bytes:
    /// its tree blobs, top down, and then its files, smallest first, until the next one would
    /// not fit. For sending small output trees in one message; what is left out is fetched as
    /// usual. Blobs are read unverified: whoever receives them checks them anyway.
    pub fn tree_blobs_within(
        &self,
        tree: &Digest,
        budget: usize,
    ) -> Result<Vec<(Digest, Vec<u8>)>, StoreError> {
        let mut blobs = Vec::new();
        let mut used = 0usize;
        let mut files: Vec<(u64, Digest)> = Vec::new();
        let mut level = vec![*tree];
        let mut n_entries = 0usize;
        'trees: for _ in 0..=MAX_TREE_DEPTH {
            let mut next = Vec::new();
            for digest in level {
                let bytes = self.read(&digest, Verify::No)?;
                if used + bytes.len() > budget {
                    break 'trees;
                }
                used += bytes.len();
                let tree = Tree::decode(&bytes)
                    .map_err(|source| StoreError::BadTree { digest, source })?;
                blobs.push((digest, bytes));
                for entry in tree.entries {
                    n_entries += 1;
                    if n_entries > MAX_TREE_ENTRIES {
                        break 'trees;
                    }
                    match entry.node {
                        TreeNode::File { digest, size, .. } => files.push((size, digest)),
                        TreeNode::Dir { digest } => next.push(digest),
                        TreeNode::Symlink { .. } => {}
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        files.sort_unstable();
        files.dedup();
        for (size, digest) in files {
            if used as u64 + size > budget as u64 {
                break;
            }
            let bytes = self.read(&digest, Verify::No)?;
            if used + bytes.len() > budget {
                // The file on disk is not the size the tree says: leave it to a normal fetch.
                break;
            }
            used += bytes.len();
            blobs.push((digest, bytes));
        }
        Ok(blobs)
    }

    /// Stores the files of `dir` and then its tree blob; returns the tree's digest.
    fn store_dir(
        &self,
        dir: &DirNode<WalkedFile>,
        rel: &str,
        files: &mut Vec<OutputFile>,
    ) -> Result<Digest, StoreError> {
        let mut tree = Tree::default();
        for (name, node) in dir {
            let path = join(rel, name);
            let node = match node {
                Node::File(walked) => {
                    let (digest, size) = self.put_file(&walked.path)?;
                    files.push(OutputFile {
                        path,
                        digest,
                        size,
                        executable: walked.executable,
                    });
                    TreeNode::File {
                        digest,
                        size,
                        executable: walked.executable,
                    }
                }
                Node::Dir(sub) => TreeNode::Dir {
                    digest: self.store_dir(sub, &path, files)?,
                },
                Node::Symlink(target) => TreeNode::Symlink {
                    target: target.clone(),
                },
            };
            tree.entries.push(TreeEntry {
                name: name.clone(),
                node,
            });
        }
        let bytes = tree.encode();
        if bytes.is_empty() {
            // `Tree::encode` yields no bytes only when the listing exceeds the codec's limit.
            return Err(StoreError::TreeTooLarge {
                path: PathBuf::from(rel),
                what: format!("a listing of {} entries", tree.entries.len()),
            });
        }
        self.put(&bytes)
    }

    /// Reads and checks the tree `digest` and everything below it.
    fn load_tree(
        &self,
        digest: &Digest,
        rel: &Path,
        depth: usize,
        n_entries: &mut usize,
    ) -> Result<DirNode<StoredFile>, StoreError> {
        if depth > MAX_TREE_DEPTH {
            return Err(StoreError::TreeTooLarge {
                path: rel.to_owned(),
                what: format!("deeper than {MAX_TREE_DEPTH} directories"),
            });
        }
        let bytes = self.read(digest, Verify::Yes)?;
        let tree = Tree::decode(&bytes).map_err(|source| StoreError::BadTree {
            digest: *digest,
            source,
        })?;
        let mut dir = DirNode::new();
        for entry in tree.entries {
            *n_entries += 1;
            if *n_entries > MAX_TREE_ENTRIES {
                return Err(StoreError::TreeTooLarge {
                    path: rel.to_owned(),
                    what: format!("more than {MAX_TREE_ENTRIES} entries"),
                });
            }
            let node = match entry.node {
                TreeNode::File {
                    digest,
                    size,
                    executable,
                } => Node::File(StoredFile {
                    digest,
                    size,
                    executable,
                }),
                TreeNode::Dir { digest } => Node::Dir(self.load_tree(
                    &digest,
                    &rel.join(&entry.name),
                    depth + 1,
                    n_entries,
                )?),
                TreeNode::Symlink { target } => Node::Symlink(target),
            };
            dir.insert(entry.name, node);
        }
        Ok(dir)
    }

    /// Writes the entries of `dir` into the existing directory `dest`.
    fn write_dir(
        &self,
        dir: &DirNode<StoredFile>,
        dest: &Path,
        copy: bool,
    ) -> Result<(), StoreError> {
        for (name, node) in dir {
            let path = dest.join(name);
            match node {
                Node::File(file) if copy => self.export(&file.digest, &path, file.executable)?,
                Node::File(file) => self.materialize(&file.digest, &path, file.executable)?,
                Node::Dir(sub) => {
                    fs::create_dir(&path).map_err(|e| StoreError::io(&path, e))?;
                    self.write_dir(sub, &path, copy)?;
                }
                Node::Symlink(target) => std::os::unix::fs::symlink(target, &path)
                    .map_err(|e| StoreError::io(&path, e))?,
            }
        }
        Ok(())
    }
}

/// Reads the directory `dir` and everything below it into memory, without following symlinks.
fn walk(
    dir: &Path,
    depth: usize,
    n_entries: &mut usize,
) -> Result<DirNode<WalkedFile>, StoreError> {
    if depth > MAX_TREE_DEPTH {
        return Err(StoreError::TreeTooLarge {
            path: dir.to_owned(),
            what: format!("deeper than {MAX_TREE_DEPTH} directories"),
        });
    }
    let mut node = DirNode::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let path = entry.path();
        *n_entries += 1;
        if *n_entries > MAX_TREE_ENTRIES {
            return Err(StoreError::TreeTooLarge {
                path: dir.to_owned(),
                what: format!("more than {MAX_TREE_ENTRIES} entries"),
            });
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| StoreError::BadName {
                path: path.clone(),
                reason: "the name is not valid UTF-8".to_owned(),
            })?;
        check_file_name(&name).map_err(|e| StoreError::BadName {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // `DirEntry::metadata` does not follow symlinks.
        let meta = entry.metadata().map_err(|e| StoreError::io(&path, e))?;
        let file_type = meta.file_type();
        let child = if file_type.is_file() {
            Node::File(WalkedFile {
                executable: meta.permissions().mode() & 0o111 != 0,
                path,
            })
        } else if file_type.is_dir() {
            Node::Dir(walk(&path, depth + 1, n_entries)?)
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| StoreError::io(&path, e))?;
            let target =
                target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| StoreError::BadName {
                        path: path.clone(),
                        reason: "the symlink's target is not valid UTF-8".to_owned(),
                    })?;
            Node::Symlink(target)
        } else {
            return Err(StoreError::UnsupportedFileType {
                path,
                kind: file_type_name(&file_type),
            });
        };
        node.insert(name, child);
    }
    Ok(node)
}

fn file_type_name(file_type: &fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "file of unknown type"
    }
}

/// Checks that every symlink in the tree `root` stays inside it. Errors name the link as a path
/// under `base`.
fn check_symlinks<F>(root: &DirNode<F>, base: &Path) -> Result<(), StoreError> {
    let mut stack: Vec<(Vec<&str>, &DirNode<F>)> = vec![(Vec::new(), root)];
    while let Some((dir_path, dir)) = stack.pop() {
        for (name, node) in dir {
            match node {
                Node::File(_) => {}
                Node::Dir(sub) => {
                    let mut sub_path = dir_path.clone();
                    sub_path.push(name);
                    stack.push((sub_path, sub));
                }
                Node::Symlink(target) => {
                    let link_path = || {
                        let mut path = base.to_owned();
                        path.extend(&dir_path);
                        path.push(name);
                        path
                    };
                    match resolve_inside(root, &dir_path, target) {
                        Resolved::Inside => {}
                        Resolved::Escapes => {
                            return Err(StoreError::SymlinkEscapes {
                                path: link_path(),
                                target: target.clone(),
                            });
                        }
                        Resolved::Loop => {
                            return Err(StoreError::SymlinkLoop {
                                path: link_path(),
                                target: target.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a symlink leads.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    Inside,
    Escapes,
    Loop,
}

/// Resolves `target`, a symlink's target, from the directory `link_dir` of the tree `root`,
/// following the tree's symlinks on the way as the kernel would.
fn resolve_inside<F>(root: &DirNode<F>, link_dir: &[&str], target: &str) -> Resolved {
    if target.starts_with('/') {
        return Resolved::Escapes;
    }
    let mut current: Vec<&str> = link_dir.to_vec();
    let mut pending: VecDeque<&str> = target.split('/').collect();
    let mut n_hops = 0;
    while let Some(component) = pending.pop_front() {
        match component {
            "" | "." => {}
            ".." => {
                if current.pop().is_none() {
                    return Resolved::Escapes;
                }
            }
            name => match lookup(root, &current, name) {
                // A symlink in the middle of the path is followed; a final one is a link to a
                // link, which is checked on its own.
                Some(Node::Symlink(next)) if !pending.is_empty() => {
                    n_hops += 1;
                    if n_hops > MAX_SYMLINK_HOPS {
                        return Resolved::Loop;
                    }
                    if next.starts_with('/') {
                        return Resolved::Escapes;
                    }
                    for part in next.split('/').rev() {
                        pending.push_front(part);
                    }
                }
                _ => current.push(name),
            },
        }
    }
    Resolved::Inside
}

/// The entry at `dir`/`name` of the tree `root`, if there is one.
fn lookup<'a, F>(root: &'a DirNode<F>, dir: &[&str], name: &str) -> Option<&'a Node<F>> {
    let mut node = root;
    for component in dir {
        match node.get(*component)? {
            Node::Dir(sub) => node = sub,
            _ => return None,
        }
    }
    node.get(name)
}

fn collect_files(dir: &DirNode<StoredFile>, rel: &str, files: &mut Vec<OutputFile>) {
    for (name, node) in dir {
        let path = join(rel, name);
        match node {
            Node::File(file) => files.push(OutputFile {
                path,
                digest: file.digest,
                size: file.size,
                executable: file.executable,
            }),
            Node::Dir(sub) => collect_files(sub, &path, files),
            Node::Symlink(_) => {}
        }
    }
}

/// `rel/name`, or `name` at the root.
fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree in memory from (path, symlink target or "" for a file or "/" for a directory).
    fn tree(entries: &[(&str, &str)]) -> DirNode<()> {
        let mut root = DirNode::new();
        for (path, what) in entries {
            let parts: Vec<&str> = path.split('/').collect();
            let mut dir = &mut root;
            for part in &parts[..parts.len() - 1] {
                let node = dir
                    .entry((*part).to_owned())
                    .or_insert_with(|| Node::Dir(DirNode::new()));
                dir = match node {
                    Node::Dir(sub) => sub,
                    _ => panic!("{part} is not a directory"),
                };
            }
            let node = match *what {
                "" => Node::File(()),
                "/" => Node::Dir(DirNode::new()),
                target => Node::Symlink(target.to_owned()),
            };
            dir.insert(parts[parts.len() - 1].to_owned(), node);
        }
        root
    }

    #[test]
    fn symlinks_resolve_inside_or_not() {
        let root = tree(&[
            ("a/f", ""),
            ("a/b/g", ""),
            ("self", "."),
            ("up", "a/.."),
            ("a/b/deep", "../../a/f"),
            ("a/b/to_a", ".."),
            ("loop1", "loop2/x"),
            ("loop2", "loop1/x"),
            ("empty", "/"),
        ]);
        let cases: &[(&[&str], &str, Resolved)] = &[
            (&[], "a/f", Resolved::Inside),
            (&["a", "b"], "../../a/f", Resolved::Inside),
            (&["a", "b"], "../../../etc", Resolved::Escapes),
            (&[], "..", Resolved::Escapes),
            (&[], "/etc/passwd", Resolved::Escapes),
            (&[], "missing/../a", Resolved::Inside),
            (&[], "./a//b/", Resolved::Inside),
            // `self` is the root, so `self/..` is the root's parent.
            (&[], "self/..", Resolved::Escapes),
            (&[], "self", Resolved::Inside),
            // `a/b/to_a` is `a`, so going up twice from it leaves the root.
            (&[], "a/b/to_a/../..", Resolved::Escapes),
            (&[], "a/b/to_a/..", Resolved::Inside),
            (&[], "loop1/y", Resolved::Loop),
        ];
        for (dir, target, expected) in cases {
            assert_eq!(
                resolve_inside(&root, dir, target),
                *expected,
                "{target} from {dir:?}"
            );
        }
    }
}
