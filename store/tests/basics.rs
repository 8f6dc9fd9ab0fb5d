//! The store's operations one by one: put, read, ranges, materialize, delete, pins, GC,
//! stats, locking and reopening.

mod common;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{blob_path, bytes, count_files, temp_store};
use weft_protocol::Digest;
use weft_store::{Store, StoreError, StoreOptions, Verify};

#[test]
fn put_then_read_back() {
    let (_dir, store) = temp_store();
    let content = bytes(1, 5000);
    let digest = store.put(&content).expect("put");
    assert_eq!(digest, Digest::of(&content));
    assert!(store.has(&digest));
    assert_eq!(store.read(&digest, Verify::Yes).expect("read"), content);
    assert_eq!(store.read(&digest, Verify::No).expect("read"), content);
    let blob = store.open_blob(&digest).expect("open");
    assert_eq!(blob.size, 5000);

    let path = blob_path(store.root(), &digest);
    let mode = fs::metadata(&path).expect("stat blob").permissions().mode();
    assert_eq!(mode & 0o777, 0o444, "blob files are read-only");

    let empty = store.put(b"").expect("put empty");
    assert_eq!(store.read(&empty, Verify::Yes).expect("read empty"), b"");

    let stats = store.stats();
    assert_eq!((stats.n_blobs, stats.total_bytes), (2, 5000));
}

#[test]
fn putting_twice_stores_once() {
    let (_dir, store) = temp_store();
    let content = bytes(2, 100);
    assert_eq!(
        store.put(&content).expect("put"),
        store.put(&content).expect("put")
    );
    assert_eq!(store.stats().n_blobs, 1);
    assert_eq!(count_files(&store.root().join("cas")), 1);
    assert_eq!(count_files(&store.root().join("tmp")), 0);
}

#[test]
fn missing_blobs_are_not_found() {
    let (dir, store) = temp_store();
    let digest = Digest::of(b"never stored");
    assert!(!store.has(&digest));
    for result in [
        store.read(&digest, Verify::Yes).map(drop),
        store.open_blob(&digest).map(drop),
        store.read_range(&digest, 0, 1).map(drop),
        store.materialize(&digest, &dir.path().join("x"), false),
    ] {
        match result {
            Err(StoreError::NotFound { digest: d }) => assert_eq!(d, digest),
            other => panic!("expected not found, got {other:?}"),
        }
    }
    assert_eq!(
        store
            .read(&digest, Verify::No)
            .map(drop)
            .expect_err("must fail")
            .to_string(),
        format!("blob `{digest}` is not in the store")
    );
}

#[test]
fn ranges() {
    let (_dir, store) = temp_store();
    let content = bytes(3, 1000);
    let digest = store.put(&content).expect("put");
    let cases: &[(u64, u64, std::ops::Range<usize>)] = &[
        (0, 10, 0..10),
        (990, 10, 990..1000),
        (990, 100, 990..1000),
        (1000, 5, 1000..1000),
        (0, u64::MAX, 0..1000),
        (500, 0, 500..500),
    ];
    for (offset, len, expected) in cases {
        let got = store.read_range(&digest, *offset, *len).expect("range");
        assert_eq!(got, content[expected.clone()], "offset {offset} len {len}");
    }
    match store.read_range(&digest, 1001, 1) {
        Err(StoreError::RangeOutOfBounds { offset, size, .. }) => {
            assert_eq!((offset, size), (1001, 1000));
        }
        other => panic!("expected out of bounds, got {other:?}"),
    }
}

#[test]
fn put_file_small_and_streamed() {
    let (dir, store) = temp_store();
    for (seed, len) in [
        (4, 0),
        (5, 777),
        (6, (1 << 20) - 1),
        (7, 1 << 20),
        (8, 3 * (1 << 20) + 5),
    ] {
        let content = bytes(seed, len);
        let path = dir.path().join(format!("input-{seed}"));
        fs::write(&path, &content).expect("write input");
        let (digest, size) = store.put_file(&path).expect("put_file");
        assert_eq!((digest, size), (Digest::of(&content), len as u64));
        assert_eq!(store.read(&digest, Verify::Yes).expect("read"), content);
    }
    assert_eq!(count_files(&store.root().join("tmp")), 0);
    let missing = dir.path().join("missing");
    match store.put_file(&missing) {
        Err(StoreError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected an io error, got {other:?}"),
    }
}

#[test]
fn put_reader_checks_the_expected_digest() {
    let (_dir, store) = temp_store();
    for len in [10, 3 * (1 << 20) + 1] {
        let content = bytes(9, len);
        let right = Digest::of(&content);
        let wrong = Digest::of(b"something else");
        match store.put_reader(&content[..], Some(wrong)) {
            Err(StoreError::Mismatch { expected, actual }) => {
                assert_eq!((expected, actual), (wrong, right));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(!store.has(&right), "mismatched bytes are not stored");
        assert_eq!(
            count_files(&store.root().join("tmp")),
            0,
            "no tmp file left"
        );
        assert_eq!(
            store.put_reader(&content[..], Some(right)).expect("put"),
            (right, len as u64)
        );
        assert_eq!(store.read(&right, Verify::Yes).expect("read"), content);
    }
}

/// A reader that fails after some bytes.
struct FailingReader(usize);

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("peer went away"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn put_reader_reports_read_errors_and_leaves_nothing() {
    let (_dir, store) = temp_store();
    for len in [100, 5 << 20] {
        let err = store
            .put_reader(FailingReader(len), None)
            .expect_err("must fail");
        assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot read the bytes to store: peer went away"
        );
    }
    assert_eq!(store.stats().n_blobs, 0);
    assert_eq!(count_files(&store.root().join("tmp")), 0);
    assert_eq!(count_files(&store.root().join("cas")), 0);
}

#[test]
fn materialize_links_or_copies() {
    let (dir, store) = temp_store();
    let content = bytes(10, 3000);
    let digest = store.put(&content).expect("put");
    let blob_ino = fs::metadata(blob_path(store.root(), &digest))
        .expect("stat")
        .ino();

    // Not executable: a hard link to the blob, in a directory that is created.
    let plain = dir.path().join("sandbox/src/a/plain.txt");
    store
        .materialize(&digest, &plain, false)
        .expect("materialize");
    let meta = fs::metadata(&plain).expect("stat");
    assert_eq!(meta.ino(), blob_ino, "hard-linked");
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(fs::read(&plain).expect("read"), content);

    // Executable: a copy, so that the blob keeps its mode.
    let tool = dir.path().join("sandbox/bin/tool");
    store
        .materialize(&digest, &tool, true)
        .expect("materialize");
    let meta = fs::metadata(&tool).expect("stat");
    assert_ne!(meta.ino(), blob_ino, "copied");
    assert_eq!(meta.permissions().mode() & 0o111, 0o111, "executable");
    assert_eq!(fs::read(&tool).expect("read"), content);
    let blob_mode = fs::metadata(blob_path(store.root(), &digest))
        .expect("stat")
        .permissions();
    assert_eq!(
        blob_mode.mode() & 0o777,
        0o444,
        "the blob is not executable"
    );

    // A big executable goes through the streaming copy.
    let big = bytes(11, 3 << 20);
    let big_digest = store.put(&big).expect("put");
    store
        .materialize(&big_digest, &tool, true)
        .expect("replace with a big one");
    assert_eq!(fs::read(&tool).expect("read"), big);

    // Replacing an existing file, and a symlink (not its target).
    let other = store.put(b"other").expect("put");
    store
        .materialize(&other, &plain, false)
        .expect("replace file");
    assert_eq!(fs::read(&plain).expect("read"), b"other");
    let target = dir.path().join("target.txt");
    fs::write(&target, b"keep me").expect("write");
    let link = dir.path().join("sandbox/link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    store
        .materialize(&other, &link, true)
        .expect("replace symlink");
    assert_eq!(fs::read(&target).expect("read"), b"keep me");
    assert_eq!(fs::read(&link).expect("read"), b"other");

    // A directory in the way is an error, and is left alone.
    let in_the_way = dir.path().join("sandbox/src");
    let err = store
        .materialize(&other, &in_the_way, false)
        .expect_err("must fail");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(in_the_way.join("a/plain.txt").exists());
}

#[test]
fn delete_and_stats() {
    let (_dir, store) = temp_store();
    let a = store.put(&bytes(12, 100)).expect("put");
    let b = store.put(&bytes(13, 200)).expect("put");
    assert_eq!(store.stats().total_bytes, 300);
    assert!(store.delete(&a).expect("delete"));
    assert!(!store.delete(&a).expect("delete again"));
    assert!(!store.has(&a));
    assert!(store.has(&b));
    let stats = store.stats();
    assert_eq!((stats.n_blobs, stats.total_bytes), (1, 200));
}

#[test]
fn pins_are_counted() {
    let (_dir, store) = temp_store();
    let digest = store.put(b"pinned").expect("put");
    assert_eq!(store.pin(&digest).expect("pin"), 1);
    assert_eq!(store.pin(&digest).expect("pin"), 2);
    assert_eq!(store.stats().n_pinned, 1);
    assert_eq!(store.unpin(&digest).expect("unpin"), 1);
    assert_eq!(store.pin_count(&digest).expect("count"), 1);
    assert_eq!(store.unpin(&digest).expect("unpin"), 0);
    assert_eq!(store.unpin(&digest).expect("unpin"), 0, "no negative pins");
    assert_eq!(store.stats().n_pinned, 0);
}

#[test]
fn gc_evicts_least_recently_used_first_and_never_pinned() {
    let (_dir, store) = temp_store();
    let digests: Vec<Digest> = (0..5)
        .map(|i| store.put(&bytes(20 + i, 1000)).expect("put"))
        .collect();
    // Use 0 and 2 again; pin 1. Least recently used now: 3, 4, 1 (pinned), 0, 2.
    store.read(&digests[0], Verify::No).expect("read");
    store.put(&bytes(22, 1000)).expect("put again");
    store.pin(&digests[1]).expect("pin");
    // `has` is not a use.
    assert!(store.has(&digests[3]));

    let report = store.gc(3000).expect("gc");
    assert_eq!((report.n_evicted, report.bytes_evicted), (2, 2000));
    assert!(report.under_cap);
    assert_eq!(report.total_bytes, 3000);
    let present: Vec<bool> = digests.iter().map(|d| store.has(d)).collect();
    assert_eq!(present, [true, true, true, false, false]);

    let report = store.gc(0).expect("gc to nothing");
    assert_eq!(report.n_evicted, 2);
    assert_eq!(report.n_pinned_kept, 1);
    assert!(!report.under_cap);
    assert!(store.has(&digests[1]), "pinned blobs survive");
    store.unpin(&digests[1]).expect("unpin");
    assert_eq!(store.gc(0).expect("gc").n_evicted, 1);
    assert_eq!(store.stats().n_blobs, 0);
    assert_eq!(count_files(&store.root().join("cas")), 0);
}

#[test]
fn a_store_is_opened_by_one_owner_at_a_time_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open");
    let digest = store.put(b"persisted").expect("put");
    store.pin(&digest).expect("pin");
    match Store::open(&root) {
        Err(StoreError::Locked { path }) => assert_eq!(path, root),
        Err(other) => panic!("expected locked, got {other:?}"),
        Ok(_) => panic!("a second open succeeded"),
    }
    let clone = store.clone();
    drop(store);
    assert!(clone.has(&digest), "clones share the open store");
    drop(clone);

    let store = Store::open(&root).expect("reopen");
    assert_eq!(
        store.read(&digest, Verify::Yes).expect("read"),
        b"persisted"
    );
    assert_eq!(
        store
            .pin_count(&digest)
            .expect("pins survive a clean close"),
        1
    );
    assert_eq!(store.stats().n_blobs, 1);
}

#[test]
fn open_removes_unfinished_tmp_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    drop(Store::open(&root).expect("open"));
    fs::create_dir_all(root.join("tmp/00")).expect("mkdir");
    fs::create_dir_all(root.join("tmp/ff")).expect("mkdir");
    fs::write(root.join("tmp/00/123.4"), b"half a blob").expect("write");
    fs::write(root.join("tmp/ff/123.5"), b"half a blob").expect("write");
    fs::write(root.join("tmp/stray"), b"?").expect("write");
    let store = Store::open(&root).expect("reopen");
    assert_eq!(count_files(&root.join("tmp")), 0);
    assert_eq!(store.stats().n_blobs, 0);
}

#[test]
fn durable_stores_work_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open_with(&dir.path().join("store"), StoreOptions { durable: true }).expect("open");
    let digest = store.put(b"durable").expect("put");
    let input = dir.path().join("input");
    fs::write(&input, bytes(30, 2 << 20)).expect("write");
    store.put_file(&input).expect("put_file");
    store
        .put_action(
            weft_protocol::JobId(digest),
            &common::action_result(&[digest], digest, 0),
        )
        .expect("put action");
    assert_eq!(store.read(&digest, Verify::Yes).expect("read"), b"durable");
    store.flush().expect("flush");
}

#[test]
fn put_replaces_a_blob_file_of_the_wrong_size() {
    let (_dir, store) = temp_store();
    let content = bytes(31, 4096);
    let digest = store.put(&content).expect("put");
    // As after a power loss: the name is there, the bytes are not.
    common::truncate(&blob_path(store.root(), &digest), 0);
    store.put(&content).expect("put again");
    assert_eq!(store.read(&digest, Verify::Yes).expect("read"), content);
    assert_eq!(store.stats().total_bytes, 4096);
}

#[test]
fn removals_change_whenever_a_blob_may_have_gone() {
    let (dir, store) = temp_store();
    let a = store.put(&bytes(40, 100)).expect("put");
    let b = store.put(&bytes(41, 100)).expect("put");
    let before = store.removals();
    assert!(store.has(&a));
    store.read(&a, Verify::Yes).expect("read");
    let dest = dir.path().join("out/a");
    store.materialize(&a, &dest, false).expect("materialize");
    assert!(store.is_materialized(&a, &dest));
    assert!(!store.is_materialized(&b, &dest));
    assert_eq!(store.removals(), before, "reads and puts remove nothing");
    store.delete(&b).expect("delete");
    let after_delete = store.removals();
    assert_ne!(after_delete, before);
    store.gc(0).expect("gc");
    assert_ne!(store.removals(), after_delete, "gc evicted `a`");
    let after_gc = store.removals();
    store.verify().expect("verify");
    assert_ne!(store.removals(), after_gc, "a scrub may remove anything");
}

#[test]
fn exported_copies_share_nothing_with_the_store() {
    let (dir, store) = temp_store();
    let content = bytes(42, 5000);
    let digest = store.put(&content).expect("put");
    let dest = dir.path().join("out/file");
    store.export(&digest, &dest, false).expect("export");
    assert_ne!(
        fs::metadata(&dest).expect("stat").ino(),
        fs::metadata(blob_path(store.root(), &digest))
            .expect("stat")
            .ino()
    );
    // An edit of the copy (root ignores its read-only mode) leaves the blob alone.
    let mut perms = fs::metadata(&dest).expect("stat").permissions();
    perms.set_mode(0o644);
    fs::set_permissions(&dest, perms).expect("chmod");
    fs::write(&dest, b"edited").expect("edit the copy");
    assert_eq!(store.read(&digest, Verify::Yes).expect("read"), content);
    let tree_dir = dir.path().join("tree");
    fs::create_dir_all(tree_dir.join("sub")).expect("mkdir");
    fs::write(tree_dir.join("sub/x"), b"x").expect("write");
    let tree = store.put_tree(&tree_dir).expect("put_tree");
    let exported = dir.path().join("exported");
    store
        .export_tree(&tree.digest, &exported)
        .expect("export_tree");
    assert_eq!(fs::read(exported.join("sub/x")).expect("read"), b"x");
}
