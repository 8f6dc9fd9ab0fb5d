//! The model test: random sequences of store operations, checked step by step against a
//! reference model built on `BTreeMap`s, including exact LRU eviction order, pins, the action
//! cache's miss rules and reopening.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::bytes;
use proptest::prelude::*;
use weft_protocol::{ActionResult, Digest, JobId};
use weft_store::{Store, StoreError, Verify};

/// The sizes of the blobs operations pick from; one is above the streaming threshold.
const SIZES: [usize; 10] = [
    0,
    1,
    7,
    100,
    1000,
    4096,
    10_000,
    50_000,
    (1 << 20) + 17,
    300,
];

struct Pool {
    contents: Vec<Vec<u8>>,
    digests: Vec<Digest>,
    /// The same contents as files, for `put_file`.
    files: Vec<PathBuf>,
}

impl Pool {
    fn new(dir: &Path) -> Pool {
        let contents: Vec<Vec<u8>> = SIZES
            .iter()
            .enumerate()
            .map(|(i, len)| bytes(i as u64, *len))
            .collect();
        let files = contents
            .iter()
            .enumerate()
            .map(|(i, content)| {
                let path = dir.join(format!("input-{i}"));
                std::fs::write(&path, content).expect("write input");
                path
            })
            .collect();
        Pool {
            digests: contents.iter().map(|c| Digest::of(c)).collect(),
            contents,
            files,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize),
    PutFile(usize),
    PutReader {
        blob: usize,
        wrong_expected: bool,
    },
    Delete(usize),
    Has(usize),
    Read {
        blob: usize,
        verify: bool,
    },
    ReadRange {
        blob: usize,
        offset: u64,
        len: u64,
    },
    PutAction {
        job: u8,
        outputs: Vec<usize>,
        other: usize,
    },
    GetAction(u8),
    Pin(usize),
    Unpin(usize),
    Gc(u64),
    Reopen,
    Verify,
}

fn op() -> impl Strategy<Value = Op> {
    let blob = 0..SIZES.len();
    prop_oneof![
        6 => blob.clone().prop_map(Op::Put),
        2 => blob.clone().prop_map(Op::PutFile),
        2 => (blob.clone(), any::<bool>())
            .prop_map(|(blob, wrong_expected)| Op::PutReader { blob, wrong_expected }),
        2 => blob.clone().prop_map(Op::Delete),
        2 => blob.clone().prop_map(Op::Has),
        3 => (blob.clone(), any::<bool>()).prop_map(|(blob, verify)| Op::Read { blob, verify }),
        1 => (blob.clone(), 0..12_000u64, 0..5000u64)
            .prop_map(|(blob, offset, len)| Op::ReadRange { blob, offset, len }),
        3 => (0..4u8, prop::collection::vec(blob.clone(), 0..3), blob.clone())
            .prop_map(|(job, outputs, other)| Op::PutAction { job, outputs, other }),
        3 => (0..4u8).prop_map(Op::GetAction),
        2 => blob.clone().prop_map(Op::Pin),
        2 => blob.prop_map(Op::Unpin),
        2 => prop_oneof![Just(0u64), 0..70_000u64, Just(u64::MAX)].prop_map(Op::Gc),
        1 => Just(Op::Reopen),
        1 => Just(Op::Verify),
    ]
}

/// What the store should hold.
#[derive(Default)]
struct Model {
    /// Present blobs (by pool index) and the model clock value of their last use.
    blobs: BTreeMap<usize, u64>,
    pins: BTreeMap<usize, u64>,
    /// Action-cache entries: the job, the output blobs and the blob used for tree/stdout/stderr.
    actions: BTreeMap<u8, (Vec<usize>, usize)>,
    clock: u64,
}

impl Model {
    fn touch(&mut self, blob: usize) {
        self.clock += 1;
        self.blobs.insert(blob, self.clock);
    }

    fn total_bytes(&self) -> u64 {
        self.blobs.keys().map(|b| SIZES[*b] as u64).sum()
    }
}

fn job_id(job: u8) -> JobId {
    JobId(Digest::of(&[b'j', job]))
}

fn action_result(pool: &Pool, outputs: &[usize], other: usize) -> ActionResult {
    let digests: Vec<Digest> = outputs.iter().map(|b| pool.digests[*b]).collect();
    common::action_result(&digests, pool.digests[other], 0)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Pool::new(dir.path());
    let root = dir.path().join("store");
    let mut store = Some(Store::open(&root).expect("open"));
    let mut model = Model::default();

    for (step, op) in ops.into_iter().enumerate() {
        let real = store.as_ref().expect("store is open");
        let context = format!("step {step}: {op:?}");
        match op {
            Op::Put(blob) => {
                prop_assert_eq!(
                    real.put(&pool.contents[blob]).expect("put"),
                    pool.digests[blob]
                );
                model.touch(blob);
            }
            Op::PutFile(blob) => {
                let put = real.put_file(&pool.files[blob]).expect("put_file");
                prop_assert_eq!(put, (pool.digests[blob], SIZES[blob] as u64));
                model.touch(blob);
            }
            Op::PutReader {
                blob,
                wrong_expected,
            } => {
                let expected = if wrong_expected {
                    pool.digests[(blob + 1) % SIZES.len()]
                } else {
                    pool.digests[blob]
                };
                let put = real.put_reader(&pool.contents[blob][..], Some(expected));
                if wrong_expected {
                    let is_mismatch = matches!(put, Err(StoreError::Mismatch { .. }));
                    prop_assert!(is_mismatch, "{}: {:?}", context, put);
                } else {
                    prop_assert_eq!(put.expect("put_reader").0, pool.digests[blob]);
                    model.touch(blob);
                }
            }
            Op::Delete(blob) => {
                let deleted = real.delete(&pool.digests[blob]).expect("delete");
                prop_assert_eq!(deleted, model.blobs.remove(&blob).is_some(), "{}", context);
            }
            Op::Has(blob) => {
                let has = real.has(&pool.digests[blob]);
                prop_assert_eq!(has, model.blobs.contains_key(&blob), "{}", context);
            }
            Op::Read { blob, verify } => {
                let verify = if verify { Verify::Yes } else { Verify::No };
                let read = real.read(&pool.digests[blob], verify);
                if model.blobs.contains_key(&blob) {
                    prop_assert_eq!(&read.expect("read"), &pool.contents[blob]);
                    model.touch(blob);
                } else {
                    let not_found = matches!(read, Err(StoreError::NotFound { .. }));
                    prop_assert!(not_found, "{}: {:?}", context, read.map(|b| b.len()));
                }
            }
            Op::ReadRange { blob, offset, len } => {
                let read = real.read_range(&pool.digests[blob], offset, len);
                let size = SIZES[blob] as u64;
                if !model.blobs.contains_key(&blob) {
                    let not_found = matches!(read, Err(StoreError::NotFound { .. }));
                    prop_assert!(not_found, "{}", context);
                } else {
                    model.touch(blob);
                    if offset > size {
                        let out_of_bounds =
                            matches!(read, Err(StoreError::RangeOutOfBounds { .. }));
                        prop_assert!(out_of_bounds, "{}", context);
                    } else {
                        let end = (offset + len).min(size) as usize;
                        prop_assert_eq!(
                            &read.expect("range")[..],
                            &pool.contents[blob][offset as usize..end]
                        );
                    }
                }
            }
            Op::PutAction {
                job,
                outputs,
                other,
            } => {
                let result = action_result(&pool, &outputs, other);
                real.put_action(job_id(job), &result).expect("put_action");
                model.actions.insert(job, (outputs, other));
            }
            Op::GetAction(job) => {
                let got = real.get_action(job_id(job)).expect("get_action");
                let expected = match model.actions.get(&job).cloned() {
                    None => None,
                    Some((outputs, other)) => {
                        let mut hit = true;
                        for blob in outputs.iter().chain([&other, &other, &other]) {
                            if model.blobs.contains_key(blob) {
                                model.touch(*blob);
                            } else {
                                hit = false;
                                break;
                            }
                        }
                        if hit {
                            Some(action_result(&pool, &outputs, other))
                        } else {
                            model.actions.remove(&job);
                            None
                        }
                    }
                };
                prop_assert_eq!(got, expected, "{}", context);
            }
            Op::Pin(blob) => {
                let count = model.pins.entry(blob).or_insert(0);
                *count += 1;
                prop_assert_eq!(real.pin(&pool.digests[blob]).expect("pin"), *count);
            }
            Op::Unpin(blob) => {
                let count = model.pins.entry(blob).or_insert(0);
                *count = count.saturating_sub(1);
                let expected = *count;
                if expected == 0 {
                    model.pins.remove(&blob);
                }
                prop_assert_eq!(real.unpin(&pool.digests[blob]).expect("unpin"), expected);
            }
            Op::Gc(max_bytes) => {
                let report = real.gc(max_bytes).expect("gc");
                let mut total = model.total_bytes();
                let (mut n_evicted, mut bytes_evicted, mut n_pinned_kept) = (0, 0, 0);
                if total > max_bytes {
                    let mut by_age: Vec<(u64, usize)> = model
                        .blobs
                        .iter()
                        .map(|(blob, used)| (*used, *blob))
                        .collect();
                    by_age.sort();
                    for (_, blob) in by_age {
                        if total <= max_bytes {
                            break;
                        }
                        if model.pins.contains_key(&blob) {
                            n_pinned_kept += 1;
                            continue;
                        }
                        model.blobs.remove(&blob);
                        n_evicted += 1;
                        bytes_evicted += SIZES[blob] as u64;
                        total -= SIZES[blob] as u64;
                    }
                }
                prop_assert_eq!(
                    (report.n_evicted, report.bytes_evicted, report.n_pinned_kept),
                    (n_evicted, bytes_evicted, n_pinned_kept),
                    "{}",
                    context
                );
                prop_assert_eq!(report.n_used_kept, 0);
                prop_assert_eq!(report.total_bytes, total);
                prop_assert_eq!(report.under_cap, total <= max_bytes);
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open(&root).expect("reopen"));
            }
            Op::Verify => {
                let report = real.verify().expect("verify");
                prop_assert!(report.no_corruption(), "{:?}", report);
                prop_assert_eq!(report.n_checked, model.blobs.len() as u64);
                prop_assert_eq!((report.n_index_added, report.n_index_removed), (0, 0));
            }
        }

        let real = store.as_ref().expect("store is open");
        let stats = real.stats();
        prop_assert_eq!(stats.n_blobs, model.blobs.len() as u64, "{}", context);
        prop_assert_eq!(stats.total_bytes, model.total_bytes(), "{}", context);
        prop_assert_eq!(stats.n_actions, model.actions.len() as u64, "{}", context);
        prop_assert_eq!(stats.n_pinned, model.pins.len() as u64, "{}", context);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
