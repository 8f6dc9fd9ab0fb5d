//! Helpers shared by the store's integration tests.

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use weft_protocol::{ActionResult, Digest, NodeId};
use weft_store::Store;

/// A store in a fresh temporary directory; the directory lives as long as the first value.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let store = Store::open(&dir.path().join("store")).expect("open a fresh store");
    (dir, store)
}

/// `len` pseudo-random bytes, different for each `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(len as u64)
        | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Where the store keeps the blob `digest`.
pub fn blob_path(store_root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.to_hex();
    store_root.join("cas").join(&hex[..2]).join(hex)
}

/// Makes a blob file writable, so a test can damage it.
pub fn make_writable(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod blob");
}

/// Flips one bit of the file at `path`, at `offset`.
pub fn flip_byte(path: &Path, offset: usize) {
    make_writable(path);
    let mut content = fs::read(path).expect("read blob");
    content[offset] ^= 0x01;
    fs::write(path, content).expect("write blob");
}

/// Cuts the file at `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    make_writable(path);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open blob");
    file.set_len(len).expect("truncate blob");
}

/// An action result that names `outputs` and uses `other` as its tree, stdout and stderr.
pub fn action_result(outputs: &[Digest], other: Digest, exit_code: i32) -> ActionResult {
    ActionResult {
        exit_code,
        outputs: outputs
            .iter()
            .enumerate()
            .map(|(i, digest)| weft_protocol::OutputFile {
                path: format!("out/{i}"),
                digest: *digest,
                size: 0,
                executable: false,
            })
            .collect(),
        output_tree: other,
        stdout: other,
        stderr: other,
        duration_ms: 42,
        executed_by: NodeId([3; 32]),
        signature: None,
    }
}

/// The number of files below `dir`, recursively.
pub fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_dir() {
            n += count_files(&entry.path());
        } else {
            n += 1;
        }
    }
    n
}
