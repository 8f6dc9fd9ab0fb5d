//! [`Tree`]: a directory listing stored as a blob, so that a whole directory is one digest.
//!
//! A tree lists one directory's entries, sorted by name. A subdirectory entry holds the digest
//! of the subdirectory's own tree blob, which makes the whole thing a Merkle tree: the root
//! digest names every byte below it.

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::path::{PathError, check_file_name};
use crate::wire::{self, CodecError};

/// One directory: its entries, sorted by name, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries, sorted by name.
    pub entries: Vec<TreeEntry>,
}

/// One entry of a [`Tree`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The entry's name: one path segment.
    pub name: String,
    /// What the entry is.
    pub node: TreeNode,
}

/// What a [`TreeEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeNode {
    /// A regular file.
    File {
        /// The digest of its content.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// Whether it is executable.
        executable: bool,
    },
    /// A subdirectory, by the digest of its own tree blob.
    Dir {
        /// The digest of the subdirectory's tree blob.
        digest: Digest,
    },
    /// A symbolic link that stays inside the tree.
    Symlink {
        /// The link's target, relative to the link's directory.
        target: String,
    },
}

impl Tree {
    /// Encodes the tree as the bytes of its blob. Sorts the entries first.
    pub fn encode(&mut self) -> Vec<u8> {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
        // A tree's fields are all encodable and a real directory listing stays far below the
        // codec's limit; a listing that did not would already have failed on the disk.
        wire::encode(self).unwrap_or_default()
    }

    /// Decodes and checks a tree blob: names are single path segments, sorted and unique.
    pub fn decode(bytes: &[u8]) -> Result<Tree, TreeError> {
        let tree: Tree = wire::decode(bytes)?;
        for (i, entry) in tree.entries.iter().enumerate() {
            check_file_name(&entry.name)?;
            if i > 0 && tree.entries[i - 1].name >= entry.name {
                return Err(TreeError::Unsorted(crate::path::shorten(&entry.name)));
            }
            if let TreeNode::Symlink { target } = &entry.node
                && (target.is_empty() || target.starts_with('/') || target.contains('\0'))
            {
                return Err(TreeError::BadSymlink(crate::path::shorten(target)));
            }
        }
        Ok(tree)
    }
}

/// A tree blob that does not decode, or breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The bytes are not a tree.
    #[error("not a tree blob: {0}")]
    Codec(#[from] CodecError),
    /// An entry name is not a single path segment.
    #[error("bad entry name in tree: {0}")]
    Name(#[from] PathError),
    /// Entries are out of order or repeated.
    #[error("tree entries are not sorted and unique at `{0}`")]
    Unsorted(String),
    /// A symlink target is empty, absolute or holds NUL.
    #[error("tree symlink target `{0}` must be relative and non-empty")]
    BadSymlink(String),
}
