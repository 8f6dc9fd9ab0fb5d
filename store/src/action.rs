//! The action cache: [`Store::get_action`] and [`Store::put_action`], from [`JobId`] to
//! [`ActionResult`].
//!
//! Entries live in the index, encoded with `weft_protocol::wire::encode`. An entry is only a
//! hint: one that does not decode, or that names a blob the store no longer has, is removed
//! and reported as a miss, never as an error.

use std::sync::atomic::Ordering;

use weft_protocol::{ActionResult, JobId, NodeId, wire};

use crate::error::StoreError;
use crate::store::Store;

/// What [`Store::put_new_action`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutAction {
    /// The result is the job's entry now.
    Stored,
    /// The job had an entry with the same outputs; it stays.
    Same,
    /// The job had an entry with other outputs; it stays, and this is it.
    Differs(Box<ActionResult>),
}

impl Store {
    /// The cached result of `job`, if there is one whose blobs are all present. A hit counts
    /// as a use of each of those blobs for GC.
    pub fn get_action(&self, job: JobId) -> Result<Option<ActionResult>, StoreError> {
        let result = self.lookup_action(job);
        let counter = match &result {
            Ok(Some(_)) => &self.inner.action_hits,
            _ => &self.inner.action_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Records `result` as the result of `job`, replacing any earlier one.
    pub fn put_action(&self, job: JobId, result: &ActionResult) -> Result<(), StoreError> {
        let encoded = wire::encode(result).map_err(|e| StoreError::BadAction {
            job,
            reason: e.to_string(),
        })?;
        if self.inner.index.insert_action(&job, &encoded)? {
            self.inner.n_actions.fetch_add(1, Ordering::Relaxed);
        }
        if self.inner.options.durable {
            self.inner.index.flush()?;
        }
        tracing::trace!(%job, "put action result");
        Ok(())
    }

    /// Records `result` as the result of `job` unless the cache has one already: results are
    /// write-once. A valid entry with the same outputs (the same output tree) stays as it is
    /// ([`PutAction::Same`]); one with other outputs stays too, and comes back
    /// ([`PutAction::Differs`]): the job is nondeterministic. An entry that does not decode
    /// or names a missing blob is no result, and is replaced.
    pub fn put_new_action(
        &self,
        job: JobId,
        result: &ActionResult,
    ) -> Result<PutAction, StoreError> {
        let encoded = wire::encode(result).map_err(|e| StoreError::BadAction {
            job,
            reason: e.to_string(),
        })?;
        // Twice at most: a put between the lookup and the swap is looked at as an entry.
        for _ in 0..2 {
            if let Some(existing) = self.lookup_action(job)? {
                return Ok(if existing.output_tree == result.output_tree {
                    PutAction::Same
                } else {
                    PutAction::Differs(Box::new(existing))
                });
            }
            if self
                .inner
                .index
                .insert_new_action(&job, &encoded)?
                .is_none()
            {
                self.inner.n_actions.fetch_add(1, Ordering::Relaxed);
                if self.inner.options.durable {
                    self.inner.index.flush()?;
                }
                tracing::trace!(%job, "put action result");
                return Ok(PutAction::Stored);
            }
        }
        // An entry came and went twice meanwhile: leave whatever is there.
        Ok(PutAction::Same)
    }

    /// The jobs of up to `limit` action-cache entries (for telling peers what this store
    /// holds; an entry whose blobs are gone is a miss when they ask).
    pub fn cached_jobs(&self, limit: usize) -> Result<Vec<JobId>, StoreError> {
        self.inner.index.action_ids(limit)
    }

    /// Removes the cached result of `job`; true when there was one.
    pub fn remove_action(&self, job: JobId) -> Result<bool, StoreError> {
        let removed = self.inner.index.remove_action(&job)?;
        if removed {
            crate::store::sub(&self.inner.n_actions, 1);
        }
        Ok(removed)
    }

    /// Removes every action-cache entry that `node` made (its `executed_by`), for a node
    /// that is disowned; returns their jobs. The blobs stay, until GC finds them unused. An
    /// entry that does not decode is left for its lookup to drop.
    pub fn remove_actions_by(&self, node: NodeId) -> Result<Vec<JobId>, StoreError> {
        let mut made = Vec::new();
        for entry in self.inner.index.actions() {
            let (job, encoded) = entry?;
            if let Ok(result) = wire::decode::<ActionResult>(&encoded)
                && result.executed_by == node
            {
                made.push(job);
            }
        }
        let mut removed = Vec::with_capacity(made.len());
        for job in made {
            if self.remove_action(job)? {
                removed.push(job);
            }
        }
        if !removed.is_empty() && self.inner.options.durable {
            self.inner.index.flush()?;
        }
        tracing::debug!(%node, n_removed = removed.len(), "removed a node's action results");
        Ok(removed)
    }

    fn lookup_action(&self, job: JobId) -> Result<Option<ActionResult>, StoreError> {
        let Some(encoded) = self.inner.index.action(&job)? else {
            return Ok(None);
        };
        let result: ActionResult = match wire::decode(&encoded) {
            Ok(result) => result,
            Err(err) => {
                tracing::warn!(%job, %err, "dropping an action-cache entry that does not decode");
                self.remove_action(job)?;
                return Ok(None);
            }
        };
        for digest in result.blobs() {
            if self.touch_path(&digest)?.is_none() {
                tracing::debug!(%job, missing = %digest, "action-cache entry names a missing blob");
                self.remove_action(job)?;
                return Ok(None);
            }
        }
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::{Digest, OutputFile};

    use super::*;

    fn result(outputs: &[Digest], other: Digest) -> ActionResult {
        ActionResult {
            exit_code: 0,
            outputs: outputs
                .iter()
                .map(|digest| OutputFile {
                    path: format!("out/{}", digest.short(8)),
                    digest: *digest,
                    size: 1,
                    executable: false,
                })
                .collect(),
            output_tree: other,
            stdout: other,
            stderr: other,
            duration_ms: 5,
            executed_by: NodeId([1; 32]),
            signature: None,
        }
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("open");
        (dir, store)
    }

    #[test]
    fn the_cached_jobs_are_listed() {
        let (_dir, store) = temp_store();
        let log = store.put(b"").expect("put");
        let jobs: Vec<JobId> = (0..5u8).map(|i| JobId(Digest::of(&[i]))).collect();
        for job in &jobs {
            store
                .put_action(*job, &result(&[], log))
                .expect("put action");
        }
        let mut listed = store.cached_jobs(10).expect("list");
        listed.sort();
        let mut wanted = jobs.clone();
        wanted.sort();
        assert_eq!(listed, wanted);
        assert_eq!(store.cached_jobs(2).expect("list").len(), 2);
    }

    #[test]
    fn a_nodes_results_are_removed_and_their_blobs_stay() {
        let (_dir, store) = temp_store();
        let out = store.put(b"out").expect("put");
        let log = store.put(b"").expect("put");
        let jobs: Vec<JobId> = (0..6u8).map(|i| JobId(Digest::of(&[i]))).collect();
        for (i, job) in jobs.iter().enumerate() {
            let maker = NodeId([if i % 2 == 0 { 7 } else { 8 }; 32]);
            let made = ActionResult {
                executed_by: maker,
                ..result(&[out], log)
            };
            store.put_action(*job, &made).expect("put action");
        }
        store
            .inner
            .index
            .insert_action(&JobId(Digest::of(b"junk")), b"junk")
            .expect("insert");
        let mut removed = store.remove_actions_by(NodeId([7; 32])).expect("remove");
        removed.sort();
        let mut wanted = vec![jobs[0], jobs[2], jobs[4]];
        wanted.sort();
        assert_eq!(removed, wanted);
        for (i, job) in jobs.iter().enumerate() {
            assert_eq!(
                store.get_action(*job).expect("get").is_some(),
                i % 2 == 1,
                "job {i}"
            );
        }
        assert!(
            store.has(&out) && store.has(&log),
            "the blobs stay until gc"
        );
        assert!(
            store
                .remove_actions_by(NodeId([7; 32]))
                .expect("again")
                .is_empty()
        );
    }

    #[test]
    fn results_are_write_once() {
        let (_dir, store) = temp_store();
        let a = store.put(b"a").expect("put");
        let b = store.put(b"b").expect("put");
        let log = store.put(b"").expect("put");
        let job = JobId(Digest::of(b"job"));
        let first = ActionResult {
            output_tree: a,
            ..result(&[a], log)
        };
        assert_eq!(
            store.put_new_action(job, &first).expect("put"),
            PutAction::Stored
        );
        // The same outputs from another node: the first entry stays.
        let again = ActionResult {
            executed_by: NodeId([2; 32]),
            ..first.clone()
        };
        assert_eq!(
            store.put_new_action(job, &again).expect("put"),
            PutAction::Same
        );
        // Other outputs: refused, and the entry there comes back.
        let other = ActionResult {
            output_tree: b,
            ..result(&[b], log)
        };
        assert_eq!(
            store.put_new_action(job, &other).expect("put"),
            PutAction::Differs(Box::new(first.clone()))
        );
        assert_eq!(store.get_action(job).expect("get"), Some(first));
        assert_eq!(store.stats().n_actions, 1);
        // An entry whose blobs are gone is no result: it is replaced.
        store.delete(&a).expect("delete");
        assert_eq!(
            store.put_new_action(job, &other).expect("put"),
            PutAction::Stored
        );
        assert_eq!(store.get_action(job).expect("get"), Some(other));
    }

    #[test]
    fn hits_round_trip_and_count() {
        let (_dir, store) = temp_store();
        let out = store.put(b"out").expect("put");
        let log = store.put(b"").expect("put");
        let job = JobId(Digest::of(b"job"));
        assert_eq!(store.get_action(job).expect("get"), None);
        let expected = result(&[out], log);
        store.put_action(job, &expected).expect("put action");
        assert_eq!(store.get_action(job).expect("get"), Some(expected.clone()));
        let stats = store.stats();
        assert_eq!(
            (stats.n_actions, stats.action_hits, stats.action_misses),
            (1, 1, 1)
        );
        // Replacing keeps one entry.
        store.put_action(job, &expected).expect("put again");
        assert_eq!(store.stats().n_actions, 1);
    }

    #[test]
    fn a_result_naming_a_missing_blob_is_a_miss() {
        let (_dir, store) = temp_store();
        let out = store.put(b"out").expect("put");
        let log = store.put(b"log").expect("put");
        let job = JobId(Digest::of(b"job"));
        store
            .put_action(job, &result(&[out], log))
            .expect("put action");
        store.delete(&log).expect("delete");
        assert_eq!(store.get_action(job).expect("a miss, not an error"), None);
        assert_eq!(store.stats().n_actions, 0, "the stale entry is dropped");

        let never_stored = JobId(Digest::of(b"other job"));
        let missing_output = Digest::of(b"never stored");
        store
            .put_action(never_stored, &result(&[out, missing_output], out))
            .expect("put action");
        assert_eq!(store.get_action(never_stored).expect("get"), None);
    }

    #[test]
    fn a_garbage_entry_is_a_miss_and_is_removed() {
        let (_dir, store) = temp_store();
        let job = JobId(Digest::of(b"job"));
        for garbage in [&b""[..], b"\xff\xff\xff\xff\xff\xff", &[0u8; 300]] {
            store
                .inner
                .index
                .insert_action(&job, garbage)
                .expect("insert");
            store.inner.n_actions.fetch_add(1, Ordering::Relaxed);
            assert_eq!(store.get_action(job).expect("a miss, not an error"), None);
            assert_eq!(store.inner.index.action(&job).expect("lookup"), None);
            assert_eq!(store.stats().n_actions, 0);
        }
        // `verify` drops undecodable entries too.
        store
            .inner
            .index
            .insert_action(&job, b"junk")
            .expect("insert");
        assert_eq!(store.verify().expect("verify").n_actions_removed, 1);
    }

    #[test]
    fn a_hit_counts_as_a_use_of_its_blobs() {
        let (_dir, store) = temp_store();
        let old = store.put(&[1u8; 100]).expect("put");
        let newer = store.put(&[2u8; 100]).expect("put");
        let job = JobId(Digest::of(b"job"));
        store
            .put_action(job, &result(&[old], old))
            .expect("put action");
        assert!(store.get_action(job).expect("get").is_some());
        // `old` was used by the hit after `newer` was put: `newer` goes first.
        store.gc(100).expect("gc");
        assert!(store.has(&old));
        assert!(!store.has(&newer));
    }
}
