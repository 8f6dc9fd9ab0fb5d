//! [`KnownResults`]: successful results checked against the store since its last removal, so
//! that a no-op build, which looks up every job, needs no index read and no `stat`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weft_protocol::{ActionResult, JobId};
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
