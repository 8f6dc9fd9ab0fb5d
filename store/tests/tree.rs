//! Directory trees: put_tree / materialize_tree round trips, symlinks that stay inside or
//! escape, unsupported file types, and hostile tree blobs.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::{bytes, temp_store};
use weft_protocol::{Digest, Tree, TreeEntry, TreeNode, wire};
use weft_store::{Store, StoreError};

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A directory with nested dirs, an empty dir, an executable, a big file and internal links.
fn sample_dir(root: &Path) {
    write(&root.join("top.txt"), b"top", 0o644);
    write(&root.join("a/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("a/b/deep.bin"), &bytes(1, (1 << 20) + 3), 0o600);
    write(&root.join("a/b/same.txt"), b"top", 0o444);
    fs::create_dir_all(root.join("empty/inner")).expect("mkdir");
    symlink("b/deep.bin", root.join("a/link")).expect("symlink");
    symlink("a/../top.txt", root.join("up")).expect("symlink");
    symlink("a", root.join("dir_link")).expect("symlink");
    symlink("does-not-exist", root.join("dangling")).expect("symlink");
}

#[test]
fn put_and_materialize_round_trip() {
    let (dir, store) = temp_store();
    let src = dir.path().join("src");
    sample_dir(&src);
    let summary = store.put_tree(&src).expect("put_tree");
    let paths: Vec<(&str, bool)> = summary
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.executable))
        .collect();
    assert_eq!(
        paths,
        [
            ("a/b/deep.bin", false),
            ("a/b/same.txt", false),
            ("a/run.sh", true),
            ("top.txt", false),
        ]
    );
    assert_eq!(summary.files[0].size, (1 << 20) + 3);
    assert_eq!(summary.files[1].digest, Digest::of(b"top"));
    assert_eq!(
        store.tree_files(&summary.digest).expect("tree_files"),
        summary.files
    );

    // The same directory is the same tree.
    assert_eq!(store.put_tree(&src).expect("again").digest, summary.digest);

    let dest = dir.path().join("out/dest");
    for _ in 0..2 {
        // The second time, `dest` exists and is replaced.
        store
            .materialize_tree(&summary.digest, &dest)
            .expect("materialize_tree");
        assert_eq!(fs::read(dest.join("top.txt")).expect("read"), b"top");
        assert_eq!(
            fs::read(dest.join("a/b/deep.bin")).expect("read"),
            bytes(1, (1 << 20) + 3)
        );
        let mode = |p: &str| {
            fs::metadata(dest.join(p))
                .expect("stat")
                .permissions()
                .mode()
        };
        assert_eq!(mode("a/run.sh") & 0o111, 0o111);
        assert_eq!(mode("top.txt") & 0o111, 0);
        assert_eq!(
            fs::read_link(dest.join("a/link")).expect("link"),
            Path::new("b/deep.bin")
        );
        assert_eq!(
            fs::read(dest.join("a/link")).expect("through link").len(),
            (1 << 20) + 3
        );
        assert_eq!(fs::read(dest.join("up")).expect("through link"), b"top");
        assert!(dest.join("dir_link/run.sh").exists());
        assert!(dest.join("empty/inner").is_dir());
        assert_eq!(
            fs::read_link(dest.join("dangling")).expect("link"),
            Path::new("does-not-exist")
        );
    }
    // The materialized copy stores as the same tree.
    assert_eq!(
        store.put_tree(&dest).expect("put copy").digest,
        summary.digest
    );
}

#[test]
fn an_empty_directory_is_a_tree() {
    let (dir, store) = temp_store();
    let src = dir.path().join("empty");
    fs::create_dir(&src).expect("mkdir");
    let summary = store.put_tree(&src).expect("put_tree");
    assert!(summary.files.is_empty());
    let dest = dir.path().join("dest");
    store
        .materialize_tree(&summary.digest, &dest)
        .expect("materialize");
    assert_eq!(fs::read_dir(&dest).expect("read dir").count(), 0);
}

#[test]
fn escaping_symlinks_are_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        ("a/out", "../../etc/passwd"),
        ("out", "/etc/passwd"),
        ("a/b/out", "../../.."),
        // `self` points at the root, so `self/..` is outside it.
        ("out", "self/.."),
    ];
    for (link, target) in cases {
        let (dir, store) = temp_store();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("a/b")).expect("mkdir");
        symlink(".", src.join("self")).expect("symlink");
        symlink(target, src.join(link)).expect("symlink");
        match store.put_tree(&src) {
            Err(StoreError::SymlinkEscapes { path, target: t }) => {
                assert_eq!(path, src.join(link));
                assert_eq!(t, *target);
            }
            other => panic!("link {link} -> {target}: expected an escape, got {other:?}"),
        }
        assert_eq!(
            store.stats().n_blobs,
            0,
            "nothing is stored from a refused tree"
        );
    }
}

#[test]
fn symlink_loops_are_refused() {
    let (dir, store) = temp_store();
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    symlink("b/x", src.join("a")).expect("symlink");
    symlink("a/x", src.join("b")).expect("symlink");
    let err = store.put_tree(&src).expect_err("must fail");
    assert!(matches!(err, StoreError::SymlinkLoop { .. }), "{err:?}");
}

#[test]
fn sockets_and_fifos_are_unsupported() {
    let (dir, store) = temp_store();
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let socket = src.join("daemon.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    match store.put_tree(&src) {
        Err(StoreError::UnsupportedFileType { path, kind }) => {
            assert_eq!((path, kind), (socket, "socket"));
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn only_directories_are_trees() {
    let (dir, store) = temp_store();
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("write");
    let link = dir.path().join("link");
    fs::create_dir(dir.path().join("real")).expect("mkdir");
    symlink(dir.path().join("real"), &link).expect("symlink");
    for path in [file, link] {
        let err = store.put_tree(&path).expect_err("must fail");
        assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
    }
}

/// Stores a tree blob exactly as given (unsorted or invalid entries included).
fn put_raw_tree(store: &Store, entries: Vec<TreeEntry>) -> Digest {
    let bytes = wire::encode(&Tree { entries }).expect("encode");
    store.put(&bytes).expect("put tree blob")
}

fn file_entry(name: &str, digest: Digest) -> TreeEntry {
    TreeEntry {
        name: name.to_owned(),
        node: TreeNode::File {
            digest,
            size: 1,
            executable: false,
        },
    }
}

#[test]
fn hostile_trees_are_rejected_before_anything_is_written() {
    let (dir, store) = temp_store();
    let content = store.put(b"x").expect("put");
    let symlink_entry = |name: &str, target: &str| TreeEntry {
        name: name.to_owned(),
        node: TreeNode::Symlink {
            target: target.to_owned(),
        },
    };
    let hostile: Vec<(&str, Vec<TreeEntry>)> = vec![
        ("dot-dot name", vec![file_entry("..", content)]),
        ("dot name", vec![file_entry(".", content)]),
        ("slash in name", vec![file_entry("a/b", content)]),
        ("empty name", vec![file_entry("", content)]),
        ("absolute name", vec![file_entry("/etc", content)]),
        (
            "unsorted",
            vec![file_entry("b", content), file_entry("a", content)],
        ),
        (
            "duplicate",
            vec![file_entry("a", content), file_entry("a", content)],
        ),
        ("absolute symlink", vec![symlink_entry("l", "/etc/passwd")]),
        (
            "escaping symlink",
            vec![symlink_entry("l", "../../etc/passwd")],
        ),
        ("empty symlink", vec![symlink_entry("l", "")]),
    ];
    let dest = dir.path().join("dest");
    for (what, entries) in hostile {
        let tree = put_raw_tree(&store, entries);
        let err = store.materialize_tree(&tree, &dest).expect_err("must fail");
        assert!(
            matches!(
                err,
                StoreError::BadTree { .. } | StoreError::SymlinkEscapes { .. }
            ),
            "{what}: {err:?}"
        );
        assert!(!dest.exists(), "{what}: nothing written");
        assert!(
            store.tree_files(&tree).is_err() || what.contains("symlink"),
            "{what}"
        );
    }

    // A hostile tree one level down.
    let inner = put_raw_tree(&store, vec![file_entry("..", content)]);
    let outer = put_raw_tree(
        &store,
        vec![TreeEntry {
            name: "sub".to_owned(),
            node: TreeNode::Dir { digest: inner },
        }],
    );
    let err = store
        .materialize_tree(&outer, &dest)
        .expect_err("must fail");
    assert!(
        matches!(err, StoreError::BadTree { digest, .. } if digest == inner),
        "{err:?}"
    );

    // Bytes that are not a tree at all.
    let garbage = store.put(&bytes(3, 100)).expect("put");
    let err = store
        .materialize_tree(&garbage, &dest)
        .expect_err("must fail");
    assert!(matches!(err, StoreError::BadTree { .. }), "{err:?}");
    assert!(!dest.exists());
}

#[test]
fn missing_parts_of_a_tree_are_not_found() {
    let (dir, store) = temp_store();
    let dest = dir.path().join("dest");
    let absent = Digest::of(b"absent");
    let err = store
        .materialize_tree(&absent, &dest)
        .expect_err("must fail");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let tree = put_raw_tree(&store, vec![file_entry("f", absent)]);
    let err = store.materialize_tree(&tree, &dest).expect_err("must fail");
    assert!(
        matches!(err, StoreError::NotFound { digest } if digest == absent),
        "{err:?}"
    );
    // Listing needs only the tree blobs.
    assert_eq!(store.tree_files(&tree).expect("list").len(), 1);

    let subtree = put_raw_tree(
        &store,
        vec![TreeEntry {
            name: "d".to_owned(),
            node: TreeNode::Dir { digest: absent },
        }],
    );
    let err = store.tree_files(&subtree).expect_err("must fail");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

#[test]
fn a_small_tree_travels_whole_within_a_budget() {
    let (dir, store) = temp_store();
    let src = dir.path().join("src");
    sample_dir(&src);
    let tree = store.put_tree(&src).expect("put_tree").digest;

    // Everything fits: another store given these blobs, and nothing else, has the whole tree.
    let all = store.tree_blobs_within(&tree, 4 << 20).expect("blobs");
    let (_dir2, other) = temp_store();
    for (digest, bytes) in &all {
        other.put_verified(bytes, *digest).expect("put_verified");
    }
    other
        .materialize_tree(&tree, &dir.path().join("out"))
        .expect("the whole tree came along");
    assert_eq!(all[0].0, tree, "the root tree comes first");

    // A small budget: the trees and the small files, not the 1 MiB one; never over budget.
    let small = store.tree_blobs_within(&tree, 4096).expect("blobs");
    let used: usize = small.iter().map(|(_, bytes)| bytes.len()).sum();
    assert!(used <= 4096, "{used} bytes over a 4096-byte budget");
    assert!(small.iter().any(|(d, _)| *d == Digest::of(b"top")));
    assert!(small.iter().all(|(_, bytes)| bytes.len() < 1 << 20));
    assert!(small.len() < all.len());

    // The root tree blob alone, or the trees without a file, is not the whole tree.
    let (_dir3, partial) = temp_store();
    assert!(!partial.has_tree(&tree));
    for (digest, bytes) in &small {
        partial.put_verified(bytes, *digest).expect("put_verified");
    }
    assert!(partial.has(&tree));
    assert!(!partial.has_tree(&tree), "the 1 MiB file is missing");
    assert!(other.has_tree(&tree));

    // No room even for the root tree: nothing.
    assert!(
        store
            .tree_blobs_within(&tree, 10)
            .expect("blobs")
            .is_empty()
    );
}

#[test]
fn put_verified_refuses_bytes_that_do_not_match() {
    let (_dir, store) = temp_store();
    let claimed = Digest::of(b"the real bytes");
    let err = store
        .put_verified(b"something else", claimed)
        .expect_err("a mismatch");
    assert!(matches!(err, StoreError::Mismatch { .. }), "{err:?}");
    assert!(!store.has(&claimed));
    assert!(!store.has(&Digest::of(b"something else")));
    assert_eq!(
        store.put_verified(b"the real bytes", claimed).expect("put"),
        claimed
    );
    assert!(store.has(&claimed));
}
