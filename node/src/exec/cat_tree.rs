//! The outputs of a job made only of `cat` commands, built in memory.
//!
//! Such a job runs no process and reads nothing, so it needs no sandbox: its writes are
//! applied to a directory tree in memory, with the same rules the disk would impose (a later
//! write to the same path replaces the earlier one; a file where a directory is needed, or the
//! other way round, fails the job), and the tree is stored exactly as
//! [`Store::put_tree`] would store the same files written into `out/`: each file a blob,
//! not executable, and each directory a [`Tree`] blob. A test checks that the two agree.

use std::collections::BTreeMap;
use std::path::Path;

use weft_protocol::{Digest, OutputFile, Tree, TreeEntry, TreeNode};
use weft_store::{Store, TreeSummary};

use super::error::ExecError;
use super::sandbox::{in_the_way, is_a_directory};

/// One entry of a directory in memory.
enum Node<'a> {
    File(&'a str),
    Dir(BTreeMap<&'a str, Node<'a>>),
}

/// The directory tree that a sequence of `cat` writes leaves.
#[derive(Default)]
pub(crate) struct CatTree<'a> {
    root: BTreeMap<&'a str, Node<'a>>,
}

impl<'a> CatTree<'a> {
    /// Writes `text` at `rel`, a normalized relative path. `Err` is the job's failure message.
    pub(crate) fn write(&mut self, rel: &'a str, text: &'a str) -> Result<(), String> {
        let mut dir = &mut self.root;
        let mut segments = rel.split('/').peekable();
        let mut prefix_len = 0;
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                return match dir.get(segment) {
                    Some(Node::Dir(_)) => Err(is_a_directory(rel)),
                    _ => {
                        dir.insert(segment, Node::File(text));
                        Ok(())
                    }
                };
            }
            prefix_len += segment.len() + usize::from(prefix_len > 0);
            let node = dir
                .entry(segment)
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            dir = match node {
                Node::Dir(sub) => sub,
                Node::File(_) => return Err(in_the_way(rel, &rel[..prefix_len])),
            };
        }
        Ok(())
    }

    /// Stores every file and directory; returns what [`Store::put_tree`] would.
    pub(crate) fn store(&self, store: &Store) -> Result<Result<TreeSummary, String>, ExecError> {
        let mut files = Vec::new();
        let digest = match store_dir(store, &self.root, "", &mut files)? {
            Ok(digest) => digest,
            Err(message) => return Ok(Err(message)),
        };
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Ok(TreeSummary { digest, files }))
    }
}

fn store_dir(
    store: &Store,
    dir: &BTreeMap<&str, Node<'_>>,
    rel: &str,
    files: &mut Vec<OutputFile>,
) -> Result<Result<Digest, String>, ExecError> {
    let mut tree = Tree::default();
    for (name, node) in dir {
        let path = if rel.is_empty() {
            (*name).to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let node = match node {
            Node::File(text) => {
                let digest = store
                    .put(text.as_bytes())
                    .map_err(|e| ExecError::store("store the cat output", Path::new(&path), e))?;
                let size = text.len() as u64;
                files.push(OutputFile {
                    path,
                    digest,
                    size,
                    executable: false,
                });
                TreeNode::File {
                    digest,
                    size,
                    executable: false,
                }
            }
            Node::Dir(sub) => match store_dir(store, sub, &path, files)? {
                Ok(digest) => TreeNode::Dir { digest },
                Err(message) => return Ok(Err(message)),
            },
        };
        tree.entries.push(TreeEntry {
            name: (*name).to_owned(),
            node,
        });
    }
    let bytes = tree.encode();
    if bytes.is_empty() {
        // `Tree::encode` yields nothing only for a listing beyond the codec's limit.
        let shown = if rel.is_empty() { "." } else { rel };
        return Ok(Err(format!(
            "the output directory `{shown}` has too many entries ({}) to store",
            tree.entries.len()
        )));
    }
    let digest = store
        .put(&bytes)
        .map_err(|e| ExecError::store("store the output tree", Path::new(rel), e))?;
    Ok(Ok(digest))
}
