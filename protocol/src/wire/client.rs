//! Messages between the `weft` command and its daemon, over the daemon's Unix socket.
//!
//! Protocol flow:
//!
//! 1. handshake ([`Role::Client`](super::Role::Client) / [`Role::Daemon`](super::Role::Daemon));
//! 2. the client sends [`ClientMessage::Hello`] with its binary id, and the daemon answers
//!    [`DaemonMessage::Hello`] with its own; when they differ, the client asks the daemon to
//!    shut down and starts one from its own binary;
//! 3. the client sends one request; a build is answered by a stream of
//!    [`DaemonMessage::Event`]s ending in [`BuildEvent::Done`], other requests by one message;
//! 4. a client that closes the connection mid-build cancels the build.

use serde::{Deserialize, Serialize};

use super::SharePolicy;
use crate::{JobId, NodeId, Verdict};

/// What the client says.
///
/// Compatibility: a client meets daemons of other builds whenever weft is upgraded, and must
/// be able to greet one and ask it to stop. So `Hello` and `Shutdown` (and the daemon's
/// `Hello` and `ShuttingDown`) keep their positions in these enums for good, and new
/// variants go at the end; `protocol/tests/hostile.rs` pins their encodings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message: who the client is.
    Hello {
        /// Identifies the client's binary (version and build); a daemon with another id is
        /// replaced.
        binary_id: String,
    },
    /// Build targets in a workspace.
    Build(BuildRequest),
    /// Run a distbuild JSON graph.
    GraphRun(GraphRunRequest),
    /// Answer a question about a workspace's targets.
    Query(QueryRequest),
    /// Report the daemon's state.
    Status,
    /// Report the store's size and contents.
    CacheStats,
    /// Shrink the store to at most `max_bytes`, least recently used first.
    CacheGc {
        /// The size cap, in bytes.
        max_bytes: u64,
    },
    /// Rehash every blob, drop the corrupt ones and rebuild the index.
    CacheVerify,
    /// Stop the daemon once running builds are cancelled.
    Shutdown,
    /// Report every peer of the mesh.
    Peers,
    /// Disown a node (`weft team distrust`), or take it back (`weft team trust`).
    Verdict(VerdictRequest),
    /// Drop the action-cache entries of targets (`weft cache forget`).
    CacheForget {
        /// The workspace root, an absolute path.
        workspace: String,
        /// A target's label (or a pattern), relative to the root.
        target: String,
    },
}

/// `weft team distrust` or `weft team trust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRequest {
    /// The node as the user wrote it: a node key, a PeerId, or a prefix of a known node's key.
    pub node: String,
    /// Disown it, or take it back.
    pub verdict: Verdict,
    /// Why (may be empty).
    pub reason: String,
}

/// A build request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRequest {
    /// The workspace root, an absolute path.
    pub workspace: String,
    /// Target patterns, such as `//...` or `//src:lib`.
    pub targets: Vec<String>,
    /// How many jobs run at once; `None` means the number of cores.
    pub jobs: Option<u32>,
    /// Keep building what does not depend on a failure.
    pub keep_going: bool,
    /// Wait for another build in the same workspace to finish, rather than fail at once.
    pub block_for_lock: bool,
    /// Kill a job that runs longer than this many seconds.
    pub job_timeout_secs: Option<u64>,
    /// Send every cache hit and every output as an event of its own (for `--events`);
    /// otherwise they may come counted in [`BuildEvent::Counted`].
    pub every_event: bool,
}

/// Run a distbuild graph (a JSON object `{"Jobs": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphRunRequest {
    /// The graph file, an absolute path.
    pub graph: String,
    /// The directory that the jobs' `Inputs` are relative to, absolute.
    pub source_dir: String,
    /// Where each job's outputs land, as `OUT/<ID>/`, absolute.
    pub out_dir: String,
    /// How many jobs run at once; `None` means the number of cores.
    pub jobs: Option<u32>,
    /// Keep going after a failure.
    pub keep_going: bool,
    /// Kill a job that runs longer than this many seconds.
    pub job_timeout_secs: Option<u64>,
}

/// A question about a workspace's targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryRequest {
    /// Every target matching a pattern.
    Targets {
        /// The workspace root, an absolute path.
        workspace: String,
        /// A target pattern such as `//...`.
        pattern: String,
    },
    /// The transitive dependencies of a target.
    Deps {
        /// The workspace root, an absolute path.
        workspace: String,
        /// The target's label.
        label: String,
    },
}

/// What the daemon says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DaemonMessage {
    /// The answer to [`ClientMessage::Hello`].
    Hello {
        /// The daemon's binary id.
        binary_id: String,
        /// The daemon's process id.
        pid: u32,
    },
    /// One event of a running build.
    Event(BuildEvent),
    /// The answer to [`ClientMessage::Status`].
    Status(Box<DaemonStatus>),
    /// Lines of text: the answer to a query.
    Lines(Vec<String>),
    /// The answer to the cache commands.
    Cache(CacheReport),
    /// The request failed.
    Error(ErrorReport),
    /// The answer to [`ClientMessage::Shutdown`].
    ShuttingDown,
    /// The answer to [`ClientMessage::Peers`].
    Peers(Vec<PeerReport>),
    /// The answer to [`ClientMessage::Verdict`].
    Verdict(VerdictReport),
}

/// What `weft team distrust` or `weft team trust` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictReport {
    /// The node, resolved.
    pub node: NodeId,
    /// What this node holds of it now.
    pub verdict: Verdict,
    /// Whether it held otherwise before.
    pub changed: bool,
    /// Action-cache entries it signed that were removed.
    pub n_removed: u64,
    /// Whether the statement was gossiped to a team (false with no team).
    pub gossiped: bool,
}

/// One step of a build, streamed to the client as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildEvent {
    /// Another build holds the workspace; this one waits.
    WaitingForLock {
        /// The process id of the client whose build holds the lock.
        holder_pid: u32,
    },
    /// The graph is known.
    Planned {
        /// How many jobs the build needs.
        n_jobs: u64,
    },
    /// A job's result came from a cache.
    CacheHit {
        /// The job.
        job: JobId,
        /// Its name.
        name: String,
        /// Where the result came from.
        source: CacheSource,
    },
    /// A job started.
    Started {
        /// The job.
        job: JobId,
        /// Its name.
        name: String,
        /// The node that runs it.
        node: NodeId,
    },
    /// A job succeeded.
    Finished {
        /// The job.
        job: JobId,
        /// Its name.
        name: String,
        /// The node that ran it.
        node: NodeId,
        /// How long it ran.
        duration_ms: u64,
    },
    /// A job failed.
    Failed(FailureReport),
    /// A requested output landed in the workspace.
    Output {
        /// The target, or the graph job's ID.
        name: String,
        /// Where it landed, relative to the workspace (or to the graph's out dir).
        path: String,
    },
    /// Something the user should know that is not a job's doing, such as running local-only.
    Notice(String),
    /// The build is over.
    Done(BuildSummary),
    /// Cache hits and published outputs, counted rather than listed (when the client did not
    /// ask for every event).
    Counted {
        /// Jobs whose results came from a cache.
        cache_hits: u64,
        /// Outputs published.
        outputs: u64,
    },
}

/// Where a cached result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheSource {
    /// This node's action cache.
    Local,
    /// A team member's action cache.
    Peer(NodeId),
}

/// What the user needs to see about a failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    /// The job.
    pub job: JobId,
    /// Its name (the target's label for jobs from BUILD files).
    pub name: String,
    /// The command line that failed, when a command failed.
    pub command: Vec<String>,
    /// Its exit code, or `None` when it did not exit (killed, timed out, could not start).
    pub exit_code: Option<i32>,
    /// Why, in words, when there is more to say than the exit code.
    pub message: String,
    /// The last lines of its stderr.
    pub stderr_tail: String,
}

/// The end of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSummary {
    /// Whether every requested target was built.
    pub success: bool,
    /// Jobs that ran.
    pub n_ran: u64,
    /// Jobs whose results came from a cache.
    pub n_cached: u64,
    /// Jobs that failed.
    pub n_failed: u64,
    /// Wall time of the build.
    pub duration_ms: u64,
}

/// The daemon's state, for `weft status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// The daemon's process id.
    pub pid: u32,
    /// Its binary id.
    pub binary_id: String,
    /// Its home directory.
    pub home: String,
    /// How long it has run, in seconds.
    pub uptime_secs: u64,
    /// Workspaces with a build running now.
    pub building: Vec<String>,
    /// How many jobs run at once.
    pub slots: u32,
    /// `None` when jobs run in the hermetic sandbox (their own namespaces); otherwise why they
    /// cannot here, and so run in the weak one while peers' jobs are refused.
    pub weak_sandbox: Option<String>,
    /// The store's contents.
    pub store: StoreReport,
    /// The mesh; `None` when this node has joined no team.
    pub mesh: Option<MeshStatus>,
}

/// The mesh as `weft status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// The team's id.
    pub team: String,
    /// This node's PeerId.
    pub peer_id: String,
    /// The addresses this node listens on.
    pub listen: Vec<String>,
    /// Peers admitted now.
    pub n_peers: u32,
    /// Jobs of this node's running on peers now, and peers' jobs running here.
    pub n_running: u32,
    /// Blobs from peers that did not match their digest, and were rejected.
    pub corrupt_blobs: u64,
    /// Peers that failed team admission.
    pub admissions_failed: u64,
    /// Jobs lent to peers.
    pub jobs_given: u64,
    /// Jobs taken from peers.
    pub jobs_stolen: u64,
    /// Results found in peers' caches.
    pub peer_cache_hits: u64,
    /// Leases that ran out or whose thief went away.
    pub leases_requeued: u64,
    /// Jobs for which two different results were seen.
    pub nondeterministic: u64,
    /// Jobs that failed their build because their worker kept dying with them.
    pub quarantined: u64,
    /// Peers this node has disowned.
    pub distrusted: Vec<String>,
    /// When teammates' jobs run here: `always`, `idle`, `never`, or `not chosen` (then this
    /// node neither runs theirs nor lends its own).
    pub share: String,
    /// How long lent jobs waited in the queue before a thief took them, in microseconds:
    /// (p50, p99) of the latest ones.
    pub steal_wait_us: Option<(u64, u64)>,
    /// How long peer cache hits took, query to checked answer, in microseconds: (p50, p99).
    pub peer_hit_us: Option<(u64, u64)>,
    /// Bytes received from peers on weft's own streams and the bulk lane.
    pub bytes_in: u64,
    /// Bytes sent to peers.
    pub bytes_out: u64,
    /// Blobs fetched over the bulk lane (TLS on TCP) rather than QUIC.
    pub bulk_blobs: u64,
    /// How fast this machine runs a job, in thousandths of the reference machine's speed.
    pub speed: u32,
}

/// One peer, as `weft peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its PeerId.
    pub peer_id: String,
    /// Its addresses.
    pub addrs: Vec<String>,
    /// The last round-trip time, in microseconds.
    pub rtt_us: Option<u64>,
    /// `admitted`, `pending` or `blocked (Ns)`.
    pub admission: String,
    /// From its last beacon: slots free for others' jobs.
    pub free_slots: Option<u32>,
    /// From its last beacon: jobs queued.
    pub queue_len: Option<u32>,
    /// From its last beacon: its platform.
    pub platform: Option<String>,
    /// From its last beacon: how many tool binaries it has.
    pub n_tools: Option<u32>,
    /// From its last beacon: its sharing policy.
    pub share: Option<SharePolicy>,
    /// From its last beacon: at most this many slots for others.
    pub max_shared_slots: Option<u32>,
    /// From its last beacon: how fast it runs a job, in thousandths of the reference.
    pub speed: Option<u32>,
    /// Results it announced.
    pub n_results: u64,
    /// Jobs of this node's it runs now.
    pub n_leased: u64,
    /// Whether it is avoided after failing jobs for reasons of its own.
    pub avoided: bool,
    /// Corrupt blobs it served.
    pub corrupt_blobs: u64,
}

/// The store's size and contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReport {
    /// The store's directory.
    pub path: String,
    /// Blobs held.
    pub n_blobs: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Action results held.
    pub n_actions: u64,
    /// Pinned blobs.
    pub n_pinned: u64,
}

/// What a cache command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheReport {
    /// The store's contents.
    Stats(StoreReport),
    /// What garbage collection removed.
    Gc {
        /// Blobs removed.
        n_removed: u64,
        /// Bytes freed.
        bytes_freed: u64,
        /// The store afterwards.
        after: StoreReport,
    },
    /// What a scrub found.
    Verify {
        /// Blobs checked.
        n_checked: u64,
        /// Corrupt or truncated blobs removed.
        n_corrupt: u64,
        /// Index entries fixed (added or removed).
        n_index_fixed: u64,
    },
    /// What `weft cache forget` dropped: one line per target named.
    Forgot(Vec<ForgotEntry>),
}

/// One target of `weft cache forget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgotEntry {
    /// The target's label.
    pub label: String,
    /// Its job.
    pub job: JobId,
    /// Whether the action cache had an entry for it (now removed).
    pub removed: bool,
}

/// A request that failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// What went wrong, where, and what to do about it.
    pub message: String,
}
