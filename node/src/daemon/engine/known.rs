//! [`KnownResults`]: successful results checked against the store since its last removal, so
//! that a no-op build, which looks up every job, needs no index read and no `stat`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weft_protocol::{ActionResult, JobId, NodeId};
use weft_store::{Store, StoreError};

/// Successful results whose blobs were seen in the store since its last removal
/// ([`Store::removals`]): a lookup of one of them needs no index read and no `stat`.
#[derive(Default)]
pub(super) struct KnownResults {
    results: HashMap<JobId, (ActionResult, Instant)>,
    removals: u64,
    to_touch: Vec<JobId>,
}

impl KnownResults {
    /// At most this many results are remembered; then the memory starts over.
    const CAPACITY: usize = 100_000;

    /// A result served from memory is recorded as a use in the store at most this often: GC's
    /// least-recently-used order needs minutes, not microseconds.
    const TOUCH_EVERY: Duration = Duration::from_secs(300);

    pub(super) fn remember(&mut self, job: JobId, result: &ActionResult) {
        if self.results.len() >= Self::CAPACITY {
            self.results.clear();
        }
        self.results
            .entry(job)
            .or_insert_with(|| (result.clone(), Instant::now()));
    }

    /// Forgets the result of `job` (its entry was removed).
    pub(super) fn forget(&mut self, job: &JobId) {
        self.results.remove(job);
    }

    /// Forgets every result `node` made (it is disowned).
    pub(super) fn forget_made_by(&mut self, node: &NodeId) {
        self.results
            .retain(|_, (result, _)| result.executed_by != *node);
    }

    pub(super) fn get(&self, job: &JobId) -> Option<&ActionResult> {
        self.results.get(job).map(|(result, _)| result)
    }

    /// The result of `job` in `store`'s action cache: from memory when the store has removed
    /// nothing since it was checked, else from the store.
    pub(super) fn look_up(
        &mut self,
        store: &Store,
        job: JobId,
    ) -> Result<Option<ActionResult>, StoreError> {
        let removals = store.removals();
        if self.removals != removals {
            // A blob may have gone: forget what was checked.
            self.results.clear();
            self.removals = removals;
        }
        match self.use_result(job) {
            Some(result) => Ok(Some(result)),
            None => store.get_action(job),
        }
    }

    /// The results served from memory whose use is due to be recorded in the store.
    pub(super) fn take_uses(&mut self) -> Vec<JobId> {
        std::mem::take(&mut self.to_touch)
    }

    /// The result of `job`, noting a use to record in the store when one is due.
    fn use_result(&mut self, job: JobId) -> Option<ActionResult> {
        let (result, touched) = self.results.get_mut(&job)?;
        if touched.elapsed() >= Self::TOUCH_EVERY {
            *touched = Instant::now();
            self.to_touch.push(job);
        }
        Some(result.clone())
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::Tree;

    use super::*;

    /// A store holding one successful result of `job`, with its blobs.
    fn store_with_result(dir: &std::path::Path, job: JobId) -> (Store, ActionResult) {
        let store = Store::open(&dir.join("store")).expect("a store");
        let empty = store.put(b"").expect("put");
        let tree = store.put(&Tree::default().encode()).expect("put");
        let result = ActionResult {
            exit_code: 0,
            outputs: vec![],
            output_tree: tree,
            stdout: empty,
            stderr: empty,
            duration_ms: 1,
            executed_by: NodeId([1; 32]),
            signature: None,
        };
        store.put_action(job, &result).expect("put_action");
        (store, result)
    }

    #[test]
    fn a_result_is_served_from_memory_until_the_store_removes_something() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = JobId(weft_protocol::Digest::of(b"job"));
        let (store, result) = store_with_result(dir.path(), job);
        let mut known = KnownResults::default();
        assert_eq!(
            known.look_up(&store, job).expect("look up"),
            Some(result.clone())
        );
        known.remember(job, &result);
        // Gone from the index, but the store removed no blob: memory still answers.
        store.remove_action(job).expect("remove");
        assert_eq!(
            known.look_up(&store, job).expect("look up"),
            Some(result.clone())
        );
        // A blob goes: what was checked is forgotten, and the store answers (a miss).
        store.delete(&result.stdout).expect("delete");
        assert_eq!(known.look_up(&store, job).expect("look up"), None);
        assert!(known.get(&job).is_none());
    }

    #[test]
    fn a_forgotten_result_or_one_a_disowned_node_made_is_asked_of_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = JobId(weft_protocol::Digest::of(b"job"));
        let (store, result) = store_with_result(dir.path(), job);
        let mut known = KnownResults::default();
        known.remember(job, &result);
        store.remove_action(job).expect("remove");
        known.forget(&job);
        assert_eq!(known.look_up(&store, job).expect("look up"), None);

        store.put_action(job, &result).expect("put");
        known.remember(job, &result);
        known.forget_made_by(&NodeId([2; 32]));
        assert!(known.get(&job).is_some(), "another node's results stay");
        known.forget_made_by(&result.executed_by);
        assert!(known.get(&job).is_none());
    }
}
