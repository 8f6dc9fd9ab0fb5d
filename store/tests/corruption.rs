//! Damage on disk: flipped bits and truncated blobs are caught by verified reads, materialize
//! and `verify()`, and never handed out as good; a lost or garbled index is rebuilt from the
//! blob files without losing a blob.

mod common;

use std::fs;

use common::{blob_path, bytes, count_files, flip_byte, temp_store, truncate};
use weft_protocol::{Digest, JobId};
use weft_store::{Store, StoreError, Verify};

/// Puts three blobs, flips a byte in the first and truncates the second.
fn damaged_store() -> (tempfile::TempDir, Store, [Vec<u8>; 3], [Digest; 3]) {
    let (dir, store) = temp_store();
    let contents = [bytes(1, 100_000), bytes(2, 200_000), bytes(3, 3000)];
    let digests = [
        store.put(&contents[0]).expect("put"),
        store.put(&contents[1]).expect("put"),
        store.put(&contents[2]).expect("put"),
    ];
    flip_byte(&blob_path(store.root(), &digests[0]), 77_777);
    truncate(&blob_path(store.root(), &digests[1]), 150_000);
    (dir, store, contents, digests)
}

fn assert_corrupt(result: Result<impl std::fmt::Debug, StoreError>, digest: Digest) {
    match result {
        Err(StoreError::Corrupt { digest: d }) => assert_eq!(d, digest),
        other => panic!("expected corrupt `{digest}`, got {other:?}"),
    }
}

#[test]
fn verified_reads_catch_flipped_and_truncated_blobs() {
    let (_dir, store, contents, digests) = damaged_store();
    for digest in &digests[..2] {
        let err = store.read(digest, Verify::Yes);
        assert_corrupt(err, *digest);
        // The bad copy is gone: it can never be handed out later.
        assert!(!store.has(digest));
        assert!(matches!(
            store.read(digest, Verify::No),
            Err(StoreError::NotFound { .. })
        ));
    }
    assert_eq!(
        store.read(&digests[2], Verify::Yes).expect("intact"),
        contents[2]
    );
    let stats = store.stats();
    assert_eq!((stats.n_blobs, stats.total_bytes), (1, 3000));

    // Putting the right bytes again repairs the store.
    store.put(&contents[0]).expect("put again");
    assert_eq!(
        store.read(&digests[0], Verify::Yes).expect("read"),
        contents[0]
    );
}

#[test]
fn verify_catches_flipped_and_truncated_blobs() {
    let (_dir, store, contents, digests) = damaged_store();
    let report = store.verify().expect("verify");
    assert_eq!(report.n_checked, 3);
    let mut corrupt = report.corrupt.clone();
    corrupt.sort();
    let mut expected = digests[..2].to_vec();
    expected.sort();
    assert_eq!(corrupt, expected);
    assert!(!report.no_corruption());
    for digest in &digests[..2] {
        assert!(!store.has(digest));
    }
    assert_eq!(
        store.read(&digests[2], Verify::Yes).expect("intact"),
        contents[2]
    );
    assert_eq!(store.stats().n_blobs, 1);

    let again = store.verify().expect("verify again");
    assert!(again.no_corruption());
    assert_eq!(again.n_checked, 1);
}

#[test]
fn materialize_never_hands_out_a_corrupt_blob() {
    let (dir, store, _contents, digests) = damaged_store();
    let linked = dir.path().join("out/linked");
    assert_corrupt(store.materialize(&digests[0], &linked, false), digests[0]);
    assert!(!linked.exists());
    let copied = dir.path().join("out/copied");
    assert_corrupt(store.materialize(&digests[1], &copied, true), digests[1]);
    assert!(!copied.exists());
    assert!(!store.has(&digests[0]) && !store.has(&digests[1]));
}

#[test]
fn a_deleted_index_is_rebuilt_without_losing_a_blob() {
    let (dir, store) = temp_store();
    let root = store.root().to_owned();
    let digests: Vec<Digest> = (0..50)
        .map(|i| store.put(&bytes(i, 10 * i as usize)).expect("put"))
        .collect();
    let job = JobId(digests[1]);
    store
        .put_action(job, &common::action_result(&digests[..3], digests[0], 0))
        .expect("put action");
    let total = store.stats().total_bytes;
    drop(store);

    fs::remove_dir_all(root.join("index")).expect("delete the index");
    let store = Store::open(&root).expect("reopen");
    let stats = store.stats();
    assert_eq!((stats.n_blobs, stats.total_bytes), (50, total));
    for (i, digest) in digests.iter().enumerate() {
        assert_eq!(
            store.read(digest, Verify::Yes).expect("read"),
            bytes(i as u64, 10 * i)
        );
    }
    assert_eq!(
        store.get_action(job).expect("lookup"),
        None,
        "the action cache is lost"
    );
    assert!(store.verify().expect("verify").no_corruption());
    drop(dir);
}

#[test]
fn a_garbage_index_is_rebuilt_without_losing_a_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let mut digests = Vec::new();
    {
        let store = Store::open(&root).expect("open");
        for i in 0..30 {
            digests.push(store.put(&bytes(100 + i, 1000)).expect("put"));
        }
    }
    let index = root.join("index");
    // Every file sled wrote, overwritten with noise of the same length.
    for entry in walk(&index) {
        let len = fs::metadata(&entry).expect("stat").len() as usize;
        fs::write(&entry, bytes(len as u64, len.max(64))).expect("garble");
    }
    fs::write(index.join("snap.0000000000000000"), bytes(5, 4096)).expect("garble");
    check_all_blobs(&root, &digests);

    // The index path holding a plain file of garbage.
    fs::remove_dir_all(&index).expect("remove index");
    fs::write(&index, bytes(6, 10_000)).expect("garbage file");
    check_all_blobs(&root, &digests);

    // An empty index directory (sled starts afresh, and the store notices it knows nothing).
    fs::remove_dir_all(&index).expect("remove index");
    fs::create_dir(&index).expect("empty index");
    check_all_blobs(&root, &digests);
}

fn check_all_blobs(root: &std::path::Path, digests: &[Digest]) {
    let store = Store::open(root).expect("reopen over a broken index");
    assert_eq!(store.stats().n_blobs, digests.len() as u64);
    for digest in digests {
        store
            .read(digest, Verify::Yes)
            .expect("every blob is still there");
    }
    let report = store.verify().expect("verify");
    assert!(report.no_corruption());
    assert_eq!((report.n_index_added, report.n_index_removed), (0, 0));
    // And the store still works.
    let new = store.put(b"after the rebuild").expect("put");
    assert!(store.has(&new));
    store.delete(&new).expect("delete");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn verify_repairs_the_index_and_removes_strays() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let kept = store.put(&bytes(7, 500)).expect("put");
    let removed_behind_its_back = store.put(&bytes(8, 600)).expect("put");
    fs::remove_file(blob_path(&root, &removed_behind_its_back)).expect("rm");
    // A blob file the index does not know (copied in by hand).
    let foreign = bytes(9, 700);
    let foreign_digest = Digest::of(&foreign);
    let foreign_path = blob_path(&root, &foreign_digest);
    fs::create_dir_all(foreign_path.parent().expect("fan-out dir")).expect("mkdir");
    fs::write(&foreign_path, &foreign).expect("write");
    // Junk in a fan-out directory.
    fs::create_dir_all(root.join("cas/00")).expect("mkdir");
    fs::write(root.join("cas/00/not-a-blob"), b"junk").expect("write");

    let report = store.verify().expect("verify");
    assert!(report.no_corruption());
    assert_eq!(report.n_checked, 2);
    assert_eq!(report.n_index_added, 1);
    assert_eq!(report.n_index_removed, 1);
    assert_eq!(report.n_stray_removed, 1);
    let stats = store.stats();
    assert_eq!((stats.n_blobs, stats.total_bytes), (2, 1200));
    assert!(store.has(&kept) && store.has(&foreign_digest));
    assert_eq!(count_files(&root.join("cas")), 2);
}
