//! Many threads at once: overlapping puts (including the same digest at the same moment),
//! reads, deletes, pins and GC passes. Reads never see wrong bytes, pinned blobs are never
//! evicted, and afterwards the store is consistent.

mod common;

use std::collections::HashMap;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{bytes, count_files, temp_store};
use weft_protocol::Digest;
use weft_store::{StoreError, Verify};

#[test]
fn same_digest_written_by_many_threads_at_once() {
    let (_dir, store) = temp_store();
    for len in [1000, 3 << 20] {
        let content = bytes(len as u64, len);
        let n_threads = 4;
        let barrier = Barrier::new(n_threads);
        let digests: Vec<Digest> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n_threads)
                .map(|i| {
                    let (store, barrier, content) = (&store, &barrier, &content);
                    scope.spawn(move || {
                        barrier.wait();
                        if i % 2 == 0 {
                            store.put(content).expect("put")
                        } else {
                            store.put_reader(&content[..], None).expect("put_reader").0
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(digests.iter().all(|d| *d == Digest::of(&content)));
        assert_eq!(store.read(&digests[0], Verify::Yes).expect("read"), content);
    }
    assert_eq!(store.stats().n_blobs, 2);
    assert_eq!(count_files(&store.root().join("cas")), 2);
    assert_eq!(count_files(&store.root().join("tmp")), 0);
}

#[test]
fn readers_writers_and_gc_together() {
    let (_dir, store) = temp_store();
    // 48 contents; some share a first digest byte, so stripes are shared too.
    let contents: Vec<Vec<u8>> = (0..48)
        .map(|i| {
            bytes(
                i,
                if i % 16 == 0 {
                    (1 << 20) + 7
                } else {
                    100 + 37 * i as usize
                },
            )
        })
        .collect();
    let by_digest: HashMap<Digest, &Vec<u8>> =
        contents.iter().map(|c| (Digest::of(c), c)).collect();
    let digests: Vec<Digest> = contents.iter().map(|c| Digest::of(c)).collect();

    // One blob is pinned for the whole test: GC must never take it.
    let pinned = store.put(b"pinned for the whole test").expect("put");
    store.pin(&pinned).expect("pin");

    let done = AtomicBool::new(false);
    let n_writers = 3;
    let iterations = 1500;
    std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for writer in 0..n_writers {
            let (store, contents, digests, by_digest) = (&store, &contents, &digests, &by_digest);
            writers.push(scope.spawn(move || {
                for i in 0..iterations {
                    let pick = (i * 7 + writer * 13) % contents.len();
                    match i % 6 {
                        0..=2 => {
                            assert_eq!(store.put(&contents[pick]).expect("put"), digests[pick]);
                        }
                        3 => {
                            let put = store.put_reader(&contents[pick][..], Some(digests[pick]));
                            assert_eq!(put.expect("put_reader").0, digests[pick]);
                        }
                        4 => match store.read(&digests[pick], Verify::Yes) {
                            Ok(read) => assert_eq!(&read, by_digest[&digests[pick]]),
                            Err(StoreError::NotFound { .. }) => {}
                            Err(err) => panic!("read: {err}"),
                        },
                        _ => {
                            if i % 12 == 5 {
                                store.delete(&digests[pick]).expect("delete");
                            } else {
                                store.pin(&digests[pick]).expect("pin");
                                store.unpin(&digests[pick]).expect("unpin");
                            }
                        }
                    }
                }
            }));
        }
        // Unverified readers check the bytes themselves: a read is the right bytes or nothing.
        {
            let (store, digests, by_digest, done) = (&store, &digests, &by_digest, &done);
            scope.spawn(move || {
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let digest = &digests[i % digests.len()];
                    match store.read(digest, Verify::No) {
                        Ok(read) => assert_eq!(&read, by_digest[digest], "wrong bytes"),
                        Err(StoreError::NotFound { .. }) => {}
                        Err(err) => panic!("read: {err}"),
                    }
                    match store.read(&pinned, Verify::No) {
                        Ok(read) => assert_eq!(read, b"pinned for the whole test"),
                        Err(err) => panic!("the pinned blob went away: {err}"),
                    }
                    i += 1;
                }
            });
        }
        // A collector that keeps the store small.
        let collector = {
            let (store, done) = (&store, &done);
            scope.spawn(move || {
                let mut n_evicted = 0;
                while !done.load(Ordering::Relaxed) {
                    n_evicted += store.gc(20_000).expect("gc").n_evicted;
                    std::thread::yield_now();
                }
                n_evicted
            })
        };
        // When the writers are done, stop the reader and the collector.
        for writer in writers {
            if let Err(panic) = writer.join() {
                done.store(true, Ordering::Relaxed);
                std::panic::resume_unwind(panic);
            }
        }
        done.store(true, Ordering::Relaxed);
        let n_evicted = collector.join().expect("collector");
        assert!(n_evicted > 0, "the collector had work to do");
    });

    let report = store.verify().expect("verify");
    assert!(report.no_corruption(), "{report:?}");
    assert_eq!(
        (report.n_index_added, report.n_index_removed),
        (0, 0),
        "{report:?}"
    );
    let stats = store.stats();
    assert_eq!(
        stats.n_blobs as usize,
        count_files(&store.root().join("cas"))
    );
    assert_eq!(count_files(&store.root().join("tmp")), 0);
    assert!(store.has(&pinned));
}
