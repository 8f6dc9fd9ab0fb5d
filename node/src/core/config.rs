//! [`CoreConfig`]: how a node takes part in the mesh. `bench/RESULTS.md` has why each tuned
//! default is what it is (the netsim runs that chose it).

use std::path::Path;
use std::time::Duration;

use weft_protocol::wire::SharePolicy;

/// How a node takes part in the mesh. Every field names its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Jobs that run here at once, own and stolen together. Default: the number of cores.
    pub slots: usize,
    /// When this node runs peers' jobs. Default: [`SharePolicy::Idle`].
    pub share: SharePolicy,
    /// At most this many slots run peers' jobs. Default: all of them.
    pub max_shared_slots: usize,
    /// Whether this node lends its queued jobs to peers that ask. Default: true (the daemon
    /// lends nothing until its owner has chosen a `share` policy).
    pub lend: bool,
    /// At most this many jobs per steal request. Default: 4.
    pub steal_batch: usize,
    /// How long a lease lasts without renewal. Default: 10 s.
    pub lease_ttl: Duration,
    /// How often a beacon goes out while this node has jobs queued and nothing changes.
    /// Default: 1 s.
    pub beacon_interval: Duration,
    /// How often a beacon goes out while this node has nothing queued (it only repairs a lost
    /// "idle" beacon: nobody steals from an idle node). Default: 10 s; on a mesh of more
    /// than 100 nodes, 100 ms per peer (a node then receives about ten idle beacons a
    /// second).
    pub idle_beacon_interval: Duration,
    /// How long new results wait to be announced together. Default: 50 ms.
    pub have_delay: Duration,
    /// The first wait after a steal request came back empty; it doubles up to 1 s.
    /// Default: 100 ms.
    pub steal_backoff: Duration,
    /// About how many steal requests should chase each queued job. When the idle nodes
    /// outnumber the queued jobs by more than this, a node asks only with odds of
    /// `steal_fanout * queued / idle` each `steal_backoff`, rather than every idle node at
    /// once whenever a victim's queue turns non-empty. Default: 2.
    pub steal_fanout: u32,
    /// A peer that fails this many jobs in a row for infrastructure reasons is avoided.
    /// Default: 3.
    pub max_peer_failures: u32,
    /// How long such a peer is avoided. Default: 60 s.
    pub avoid_for: Duration,
    /// The most job-to-holder entries kept; the oldest go first. Default: 1,000,000.
    pub max_holder_entries: usize,
    /// How fast one slot of this node runs a job, in thousandths of the reference speed (see
    /// [`LoadBeacon::speed`](weft_protocol::wire::LoadBeacon::speed)). A peer at least a
    /// quarter faster than the node about to take a job gets the first pick of the jobs worth
    /// moving: the most critical queued jobs are reserved for it for up to
    /// [`CoreConfig::reserve_for`]. Default: 1000.
    pub speed: u32,
    /// The longest a queued job is reserved for a faster peer that has free slots (then
    /// whoever comes takes it). Jobs expected to run less than ten times as long are never
    /// reserved. Default: 100 ms.
    pub reserve_for: Duration,
    /// The most results listed in the first `Have` a newly admitted peer is sent (the latest
    /// this node made). Default: 50,000.
    pub have_snapshot: usize,
    /// The tools that peers' jobs may run here, each a name (`gcc`: a tool the job names
    /// `gcc`, or `…/gcc`) or an absolute path (the binary a name resolves to). Only these are
    /// advertised to peers, and a lent job that names another tool is refused before anything
    /// runs ([`CoreConfig::accepts_tool`]). Default: [`CoreConfig::DEFAULT_ACCEPT_TOOLS`],
    /// compilers, assemblers, archivers and linkers; no shells or interpreters.
    pub accept_tools: Vec<String>,
    /// A job whose worker died this many times while it ran (a daemon, this one or a thief,
    /// that died with its machine still up: the record of runs in progress says so when it
    /// starts again) is quarantined: it fails its build instead of running again, and each
    /// later build gives it one more try. A thief that goes away or goes quiet is no job's
    /// fault and does not count. Default: 3.
    pub max_job_losses: u32,
    /// Of the results taken from peers' caches, about this many in a million are also run
    /// here, beside the build, and compared: a difference flags the job as nondeterministic.
    /// Default: 0 (`verify_fraction` in `config.toml`).
    pub verify_per_million: u32,
}

impl CoreConfig {
    /// The defaults, with `slots` slots.
    pub fn new(slots: usize) -> CoreConfig {
        CoreConfig {
            slots: slots.max(1),
            share: SharePolicy::Idle,
            max_shared_slots: slots.max(1),
            lend: true,
            steal_batch: 4,
            lease_ttl: Duration::from_secs(10),
            beacon_interval: Duration::from_secs(1),
            idle_beacon_interval: Duration::from_secs(10),
            have_delay: Duration::from_millis(50),
            steal_backoff: Duration::from_millis(100),
            steal_fanout: 2,
            max_peer_failures: 3,
            avoid_for: Duration::from_secs(60),
            max_holder_entries: 1_000_000,
            speed: 1000,
            reserve_for: Duration::from_millis(100),
            have_snapshot: 50_000,
            accept_tools: CoreConfig::DEFAULT_ACCEPT_TOOLS
                .iter()
                .map(|tool| (*tool).to_owned())
                .collect(),
            max_job_losses: 3,
            verify_per_million: 0,
        }
    }

    /// The tools a node runs for peers by default: C and C++ compilers and their
    /// preprocessor, assemblers, archivers and linkers, and the Rust and Go compilers. A job
    /// that needs a shell or an interpreter runs where it was asked for, unless the owner
    /// adds one.
    pub const DEFAULT_ACCEPT_TOOLS: &[&str] = &[
        "cc", "c++", "gcc", "g++", "cpp", "clang", "clang++", "as", "ar", "ranlib", "ld", "ld.bfd",
        "ld.gold", "ld.lld", "lld", "strip", "nm", "objcopy", "rustc", "go",
    ];

    /// Whether a peer's job may run the tool it names `name`, which resolves here to
    /// `resolved`: an entry without a `/` matches the last component of the name, an entry
    /// with one matches the resolved path.
    pub fn accepts_tool(&self, name: &str, resolved: &Path) -> bool {
        let base = name.rsplit('/').next().unwrap_or(name);
        self.accept_tools.iter().any(|entry| {
            if entry.contains('/') {
                Path::new(entry) == resolved
            } else {
                entry == base
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_accepted_by_name_or_by_resolved_path() {
        let mut config = CoreConfig::new(1);
        let gcc = Path::new("/usr/bin/gcc");
        assert!(config.accepts_tool("gcc", gcc));
        assert!(config.accepts_tool("/usr/bin/gcc", gcc));
        assert!(!config.accepts_tool("sh", Path::new("/usr/bin/sh")));
        assert!(!config.accepts_tool("bash", Path::new("/usr/bin/bash")));
        assert!(!config.accepts_tool("python3", Path::new("/usr/bin/python3")));
        config.accept_tools = vec!["/opt/bin/sh".into()];
        assert!(config.accepts_tool("sh", Path::new("/opt/bin/sh")));
        assert!(!config.accepts_tool("sh", Path::new("/usr/bin/sh")));
        assert!(!config.accepts_tool("gcc", gcc));
    }
}
