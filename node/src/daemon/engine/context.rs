//! What the engine works with, and how it runs: [`EngineContext`] (the store, the executor,
//! the toolchains, the node's key and the mesh, shared with the tasks it spawns) and
//! [`EngineConfig`].

use std::path::PathBuf;
use std::sync::Arc;

use libp2p_identity::Keypair;
use weft_protocol::{NodeId, Signature};
use weft_store::Store;

use crate::core::{CoreConfig, Statements};
use crate::exec::{Executor, SourceDigests, Toolchains};
use crate::mesh::Mesh;

/// What the engine works with.
#[derive(Clone)]
pub(crate) struct EngineContext {
    pub(crate) store: Store,
    pub(crate) executor: Executor,
    pub(crate) toolchains: Arc<Toolchains>,
    /// The workspace files' digests (shared with the daemon's lowering): where a source
    /// blob found corrupt is stored again from.
    pub(crate) sources: Arc<SourceDigests>,
    pub(crate) keypair: Keypair,
    /// The mesh, when this node has a team.
    pub(crate) mesh: Option<Mesh>,
}

impl EngineContext {
    pub(crate) fn node(&self) -> NodeId {
        crate::daemon::node_id(&self.keypair)
    }

    /// Signs with the node's ed25519 key.
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Signature> {
        let bytes = self.keypair.sign(message).ok()?;
        <[u8; 64]>::try_from(bytes.as_slice()).ok().map(Signature)
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// The core's settings: slots, sharing, leases, the tools offered to peers.
    pub(crate) core: CoreConfig,
    /// Under this 1-minute load average (and with no build here), the machine is idle.
    pub(crate) idle_load: f64,
    /// Where job durations are kept across restarts; `None` keeps them in memory.
    pub(crate) durations: Option<PathBuf>,
    /// Where the jobs running now are written down, so that a restarted daemon knows which
    /// runs it died in; `None` keeps no record.
    pub(crate) journal: Option<PathBuf>,
    /// The statements on disowned nodes known at start (from `distrusted.toml`), with this
    /// node's `follow_distrust` policy: applied before any peer counts.
    pub(crate) statements: Statements,
    /// Where those statements are kept across restarts; `None` keeps them in memory.
    pub(crate) statements_file: Option<PathBuf>,
}
