//! What every connection of a running daemon shares ([`Shared`]): its configuration, home,
//! store, engine and mesh, the front end's warm [`Loader`], and what it remembers of each
//! workspace between builds ([`LastBuild`], the lowering memo).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use weft_protocol::wire::StoreReport;
use weft_protocol::{ActionResult, JobId};
use weft_store::Store;

use super::config::DaemonConfig;
use super::engine::Engine;
use super::home::Home;
use super::locks::WorkspaceLocks;
use super::lower::{LowerMemo, Lowered};
use super::outputs::{KeptOutputs, Published};
use crate::core::BuildId;
use crate::exec::{SandboxMode, SourceDigests, Toolchains};
use crate::frontend::{Loader, TargetGraph};
use crate::mesh::Mesh;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: DaemonConfig,
    pub(crate) home: Home,
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    /// The front end's warm loader of each workspace: one workspace's evaluation never waits
    /// for another's.
    loaders: Mutex<HashMap<PathBuf, Arc<Mutex<Loader>>>>,
    /// The last successful build of each workspace, for replaying no-op builds.
    pub(crate) last_builds: Mutex<HashMap<PathBuf, LastBuild>>,
    /// The last lowering of each workspace's graph.
    pub(crate) lowered: Mutex<HashMap<PathBuf, Option<LowerMemo>>>,
    pub(crate) digests: Arc<SourceDigests>,
    pub(crate) toolchains: Arc<Toolchains>,
    /// The mesh, when this node has a team.
    pub(crate) mesh: Option<Mesh>,
    pub(crate) locks: WorkspaceLocks,
    /// Second links of the files published into `weft-out/`.
    pub(crate) kept: KeptOutputs,
    /// This machine's speed in thousandths, as its beacons say.
    pub(crate) speed: u32,
    /// How jobs are sandboxed here, as the executor's probe found (`weft status`, and a notice
    /// in every build when it is the weak sandbox).
    pub(crate) sandbox: SandboxMode,
    /// When the daemon started.
    pub(crate) started: Instant,
    /// Told when a client asks the daemon to stop.
    pub(crate) stop: Notify,
    next_build: AtomicU64,
    activity: Mutex<Activity>,
}

impl Shared {
    /// The state of a daemon that starts now.
    #[allow(clippy::too_many_arguments)] // each is a part of the daemon made by `server::run`
    pub(crate) fn new(
        config: DaemonConfig,
        home: Home,
        store: Store,
        engine: Engine,
        toolchains: Arc<Toolchains>,
        digests: Arc<SourceDigests>,
        mesh: Option<Mesh>,
        speed: u32,
        sandbox: SandboxMode,
    ) -> Shared {
        Shared {
            kept: KeptOutputs::new(home.kept_outputs()),
            digests,
            loaders: Mutex::new(HashMap::new()),
            lowered: Mutex::new(HashMap::new()),
            last_builds: Mutex::new(HashMap::new()),
            locks: WorkspaceLocks::default(),
            next_build: AtomicU64::new(1),
            started: Instant::now(),
            activity: Mutex::new(Activity::new(Instant::now())),
            stop: Notify::new(),
            config,
            home,
            store,
            engine,
            toolchains,
            mesh,
            speed,
            sandbox,
        }
    }

    /// The loader of the workspace at `root`, new when none has loaded it yet.
    pub(crate) fn loader(&self, root: &Path) -> Arc<Mutex<Loader>> {
        let mut loaders = self.loaders.lock().unwrap_or_else(|p| p.into_inner());
        loaders
            .entry(root.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Loader::with_limits(self.config.eval))))
            .clone()
    }

    /// A build id no other build of this daemon has.
    pub(crate) fn next_build_id(&self) -> BuildId {
        BuildId(self.next_build.fetch_add(1, Ordering::Relaxed))
    }

    /// Counts a connection that opens (`delta` 1) or closes (-1).
    pub(crate) fn touch(&self, delta: isize) {
        let mut activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        activity.touch(delta, Instant::now());
    }

    /// How long no connection has been open; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        activity.idle_for(Instant::now())
    }

    /// The store's figures, as `weft status` and the cache commands show them.
    pub(crate) fn store_report(&self) -> StoreReport {
        let stats = self.store.stats();
        StoreReport {
            path: self.store.root().display().to_string(),
            n_blobs: stats.n_blobs,
            bytes: stats.total_bytes,
            n_actions: stats.n_actions,
            n_pinned: stats.n_pinned,
        }
    }
}

/// The open connections, and when one last opened or closed.
#[derive(Debug)]
struct Activity {
    connections: usize,
    last: Instant,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            connections: 0,
            last: now,
        }
    }

    fn touch(&mut self, delta: isize, now: Instant) {
        self.connections = self.connections.saturating_add_signed(delta);
        self.last = now;
    }

    fn idle_for(&self, now: Instant) -> Option<Duration> {
        (self.connections == 0).then(|| now.saturating_duration_since(self.last))
    }
}

/// The last successful build of a workspace: the very jobs it ran (the same `Lowered` means
/// the same graph, sources and tools), their results, and what it published. While the store
/// removes nothing, building the same jobs again changes nothing: it is replayed.
pub(crate) struct LastBuild {
    pub(crate) lowered: Arc<Lowered>,
    /// The graph it was lowered from: the same graph means the same requested targets.
    pub(crate) graph: Arc<TargetGraph>,
    pub(crate) results: Arc<HashMap<JobId, ActionResult>>,
    /// The store's removal counter after it published.
    pub(crate) removals: u64,
    /// The engine's [`Engine::verdicts`] when it started: a result found nondeterministic
    /// since is not replayed.
    pub(crate) verdicts: u64,
    /// Each published file, as published.
    pub(crate) published: Arc<Vec<Published>>,
}

impl LastBuild {
    /// Whether it built these very jobs for these very targets.
    pub(crate) fn planned(&self, lowered: &Arc<Lowered>, graph: &Arc<TargetGraph>) -> bool {
        Arc::ptr_eq(&self.lowered, lowered) && Arc::ptr_eq(&self.graph, graph)
    }

    /// Whether a build of `lowered` for `graph` can replay it: the same jobs and targets,
    /// the store has removed nothing since (`removals` is its counter now), so every
    /// result's outputs are still there, and the engine has doubted no result since
    /// (`verdicts` is its count now).
    pub(crate) fn replays(
        &self,
        lowered: &Arc<Lowered>,
        graph: &Arc<TargetGraph>,
        removals: u64,
        verdicts: u64,
    ) -> bool {
        self.planned(lowered, graph) && self.removals == removals && self.verdicts == verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_only_without_connections_and_counted_from_the_last_change() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut activity = Activity::new(t0);
        assert_eq!(activity.idle_for(at(5)), Some(Duration::from_millis(5)));
        activity.touch(1, at(10));
        activity.touch(1, at(20));
        assert_eq!(activity.idle_for(at(100)), None);
        activity.touch(-1, at(30));
        assert_eq!(activity.idle_for(at(100)), None, "one is still open");
        activity.touch(-1, at(40));
        assert_eq!(activity.idle_for(at(100)), Some(Duration::from_millis(60)));
        // A close that was never opened does not wrap around.
        activity.touch(-1, at(50));
        assert_eq!(activity.idle_for(at(50)), Some(Duration::ZERO));
    }

    #[test]
    fn a_last_build_replays_the_same_plan_while_the_store_removed_nothing() {
        let lowered = Arc::new(Lowered::default());
        let graph = Arc::new(TargetGraph::default());
        let last = LastBuild {
            lowered: lowered.clone(),
            graph: graph.clone(),
            results: Arc::default(),
            removals: 3,
            verdicts: 1,
            published: Arc::default(),
        };
        assert!(last.replays(&lowered, &graph, 3, 1));
        assert!(!last.replays(&lowered, &graph, 4, 1), "a gc ran");
        assert!(
            !last.replays(&lowered, &graph, 3, 2),
            "a result was doubted"
        );
        // Equal but not the same: lowered again, so something may have changed.
        let other = Arc::new(Lowered::default());
        assert!(!last.planned(&other, &graph));
        assert!(!last.planned(&lowered, &Arc::new(TargetGraph::default())));
    }
}
