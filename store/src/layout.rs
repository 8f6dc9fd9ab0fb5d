//! Where things live under the store's root directory.
//!
//! ```text
//! <root>/lock                  held (flock) by the one process that has the store open
//! <root>/cas/<2 hex>/<64 hex>  immutable blob files, mode 0444, named by their blake3 digest
//! <root>/tmp/<2 hex>/<pid>.<n> blobs being written; emptied on open
//! <root>/index/                the sled index (rebuildable)
//! ```
//!
//! The `<2 hex>` directories are created on first use.

use std::path::{Path, PathBuf};

use weft_protocol::Digest;

/// The paths of one store.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The store's root directory.
    pub(crate) root: PathBuf,
    /// `<root>/cas`: the blob files, fanned out by their first digest byte.
    pub(crate) cas_dir: PathBuf,
    /// `<root>/tmp`: blobs being written.
    pub(crate) tmp_dir: PathBuf,
    /// `<root>/index`: the sled database.
    pub(crate) index_dir: PathBuf,
    /// `<root>/lock`: the lock file.
    pub(crate) lock_file: PathBuf,
}

impl Layout {
    /// The layout of the store at `root`.
    pub(crate) fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
            cas_dir: root.join("cas"),
            tmp_dir: root.join("tmp"),
            index_dir: root.join("index"),
            lock_file: root.join("lock"),
        }
    }

    /// The fan-out directory of blobs whose digest starts with `first_byte`.
    pub(crate) fn fanout_dir(&self, first_byte: u8) -> PathBuf {
        self.cas_dir.join(fanout_name(first_byte))
    }

    /// One of the 256 directories tmp files are spread over, so that concurrent creates do
    /// not all contend for one directory's lock.
    pub(crate) fn tmp_subdir(&self, spread: u8) -> PathBuf {
        self.tmp_dir.join(fanout_name(spread))
    }

    /// The file that holds the blob `digest`.
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        let mut path = self.cas_dir.clone();
        path.push(&hex[..2]);
        path.push(&hex);
        path
    }
}

/// The name of a fan-out directory: the first digest byte in two lower-case hex digits.
pub(crate) fn fanout_name(first_byte: u8) -> String {
    format!("{first_byte:02x}")
}

/// The digest a blob file is named after, if `name` is a blob name that belongs in the fan-out
/// directory for `first_byte`.
pub(crate) fn parse_blob_name(first_byte: u8, name: &str) -> Option<Digest> {
    if name.len() != Digest::HEX_LEN || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let digest: Digest = name.parse().ok()?;
    (digest.as_bytes()[0] == first_byte).then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_fan_out_by_the_first_byte() {
        let layout = Layout::new(Path::new("/s"));
        let digest = Digest::of(b"weft");
        let hex = digest.to_hex();
        assert_eq!(
            layout.blob_path(&digest),
            PathBuf::from(format!("/s/cas/{}/{hex}", &hex[..2]))
        );
        assert_eq!(
            parse_blob_name(digest.as_bytes()[0], &hex),
            Some(digest),
            "a blob's own name parses"
        );
        assert_eq!(
            parse_blob_name(digest.as_bytes()[0].wrapping_add(1), &hex),
            None
        );
        assert_eq!(
            parse_blob_name(digest.as_bytes()[0], &hex.to_uppercase()),
            None
        );
        assert_eq!(parse_blob_name(digest.as_bytes()[0], "1.tmp"), None);
        assert_eq!(fanout_name(0x0a), "0a");
    }
}
