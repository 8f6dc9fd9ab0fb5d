//! [`DaemonConfig`]: everything the daemon is told at start, as typed values.

use std::path::PathBuf;
use std::time::Duration;

use weft_protocol::wire::SharePolicy;

use crate::core::FollowDistrust;
use crate::exec::JobLimits;
use crate::frontend::EvalLimits;

/// How a daemon runs. The `weft` binary fills it from flags, the environment, the daemon's
/// `config.toml` and defaults.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The daemon's home (socket, pid file, log, store, identity). Default: `$WEFT_HOME`, else
    /// `$XDG_STATE_HOME/weft`, else `~/.local/state/weft`.
    pub home: PathBuf,
    /// Identifies the binary the daemon runs from; a client from another binary replaces the
    /// daemon. Default: the version and the executable's size and modification time.
    pub binary_id: String,
    /// Shut down after this long with no client connected and no build running.
    /// Default: 3 hours (`--max-idle-secs 10800`).
    pub max_idle: Duration,
    /// How many jobs run at once over all builds, own and peers'. Default: the number of
    /// cores.
    pub slots: usize,
    /// The `PATH` jobs get, and where tools are looked up. Default: the daemon's own `PATH`
    /// when it starts.
    pub job_path: String,
    /// What evaluating one BUILD or `.star` file may spend (time, memory). Default:
    /// [`EvalLimits::default`] (5 s, 512 MiB; `eval_time_limit_secs` and
    /// `eval_memory_limit_mib` in `config.toml`).
    pub eval: EvalLimits,
    /// What one job may use: wall time, memory, processes, output size. Default:
    /// [`JobLimits::default`] (`[job_limits]` of `config.toml`).
    pub job_limits: JobLimits,
    /// How this node takes part in its team's mesh (when it has joined a team).
    pub mesh: MeshSettings,
    /// Test-only: serve corrupt blobs to peers, to play a faulty node. Default: false.
    #[doc(hidden)]
    pub test_corrupt_blobs: bool,
    /// Test-only: run jobs in the weak sandbox even where the hermetic one works (and so take
    /// no peers' jobs), to test that path. Default: false.
    #[doc(hidden)]
    pub test_weak_sandbox: bool,
}

/// The mesh part of [`DaemonConfig`]; see `cli/src/config.rs` for the file it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSettings {
    /// When peers may run jobs here; `None` until the owner has chosen, and then this node
    /// neither runs peers' jobs nor lends its own. Default: `None`.
    pub share: Option<SharePolicy>,
    /// At most this many slots run peers' jobs. Default: every slot.
    pub max_shared_slots: Option<usize>,
    /// Under this 1-minute load average (and with no build here), the machine is idle.
    /// Default: 1.0.
    pub idle_load: f64,
    /// Peers to dial at start, as multiaddrs. Default: none.
    pub peers: Vec<String>,
    /// Addresses to listen on, as multiaddrs. Default: `/ip4/0.0.0.0/udp/0/quic-v1`.
    pub listen: Vec<String>,
    /// Whether to find peers on the LAN with mDNS. Default: true.
    pub mdns: bool,
    /// How fast this machine runs a job, relative to the reference machine (1.0); peers give
    /// the critical path to a machine a quarter faster than the others. Default: measured
    /// at start.
    pub speed: Option<f64>,
    /// The tools peers' jobs may run here, by name or by absolute path. Default:
    /// [`CoreConfig::DEFAULT_ACCEPT_TOOLS`](crate::core::CoreConfig::DEFAULT_ACCEPT_TOOLS)
    /// (compilers, assemblers, archivers, linkers; no shells or interpreters).
    pub accept_tools: Option<Vec<String>>,
    /// The share of results taken from peers' caches that are also run here, beside the
    /// build, and compared (0.05: one in twenty). Default: 0.
    pub verify_fraction: f64,
    /// Whose `weft team distrust` applies here: any team member's, or only this node's own.
    /// Default: [`FollowDistrust::Any`].
    pub follow_distrust: FollowDistrust,
}

impl Default for MeshSettings {
    fn default() -> MeshSettings {
        MeshSettings {
            share: None,
            max_shared_slots: None,
            idle_load: 1.0,
            peers: Vec::new(),
            listen: vec!["/ip4/0.0.0.0/udp/0/quic-v1".to_owned()],
            mdns: true,
            speed: None,
            accept_tools: None,
            verify_fraction: 0.0,
            follow_distrust: FollowDistrust::Any,
        }
    }
}
