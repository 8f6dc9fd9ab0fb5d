//! [`DaemonConfig`]: everything the daemon is told at start, as typed values.

use std::path::PathBuf;
use std::time::Duration;

/// How a daemon runs. The `weft` binary fills it from flags, the environment and defaults.
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
    /// How many jobs run at once over all builds. Default: the number of cores.
    pub slots: usize,
    /// The `PATH` jobs get, and where tools are looked up. Default: the daemon's own `PATH`
    /// when it starts.
    pub job_path: String,
}
