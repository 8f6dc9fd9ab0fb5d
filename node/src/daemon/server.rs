//! The daemon's main loop: accept clients, serve their requests, and stop when told to or
//! when idle for too long.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};
use weft_protocol::wire::{
    ClientMessage, DaemonMessage, DaemonStatus, ErrorReport, MeshStatus, PeerReport, Role,
    StoreReport,
};
use weft_store::Store;

use super::config::DaemonConfig;
use super::conn::{self, ConnError, ConnReader, ConnWriter};
use super::engine::Engine;
use super::engine::{EngineConfig, EngineContext};
use super::home::Home;
use super::locks::WorkspaceLocks;
use super::outputs::KeptOutputs;
use super::session;
use crate::core::CoreConfig;
use crate::exec::{ExecConfig, Executor, SourceDigests, Toolchains};
use crate::frontend::Loader;
use crate::mesh::{Admission, Keypair, Mesh, MeshConfig, MeshEvent, Multiaddr, team};

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store cannot be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] weft_store::StoreError),
    /// The identity key cannot be loaded.
    #[error(transparent)]
    Identity(#[from] super::home::IdentityError),
    /// The executor cannot be set up.
    #[error("cannot set up job sandboxes: {0}")]
    Exec(#[from] crate::exec::ExecError),
    /// A blocking task died.
    #[error("internal error: {0}")]
    Internal(String),
    /// The team file cannot be read.
    #[error(transparent)]
    Team(#[from] crate::mesh::TeamError),
    /// The mesh cannot start.
    #[error("cannot start the mesh: {0}")]
    Mesh(#[from] crate::mesh::MeshError),
    /// The configuration is wrong.
    #[error("{0}")]
    Config(String),
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: DaemonConfig,
    pub(crate) home: Home,
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    pub(crate) loader: Mutex<Loader>,
    /// The last successful build of each workspace, for replaying no-op builds.
    pub(crate) last_builds: Mutex<HashMap<PathBuf, super::session::LastBuild>>,
    /// The last lowering of each workspace's graph.
    pub(crate) lowered: Mutex<HashMap<PathBuf, Option<super::lower::LowerMemo>>>,
    pub(crate) digests: SourceDigests,
    pub(crate) toolchains: Arc<Toolchains>,
    /// The mesh, when this node has a team.
    pub(crate) mesh: Option<Mesh>,
    pub(crate) locks: WorkspaceLocks,
    /// Second links of the files published into `weft-out/`.
    pub(crate) kept: KeptOutputs,
    /// This machine's speed in thousandths, as its beacons say.
    speed: u32,
    next_build: AtomicU64,
    started: Instant,
    activity: Mutex<Activity>,
    stop: Notify,
}

struct Activity {
    connections: usize,
    last: Instant,
}

impl Shared {
    pub(crate) fn next_build_id(&self) -> crate::core::BuildId {
        crate::core::BuildId(self.next_build.fetch_add(1, Ordering::Relaxed))
    }

    fn touch(&self, delta: isize) {
        let mut activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        activity.connections = activity.connections.saturating_add_signed(delta);
        activity.last = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        (activity.connections == 0).then(|| activity.last.elapsed())
    }

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

/// Starts the mesh when this node has joined a team.
async fn start_mesh(
    home: &Home,
    config: &DaemonConfig,
    keypair: &Keypair,
    store: &Store,
) -> Result<(Option<Mesh>, Option<mpsc::Receiver<MeshEvent>>), DaemonError> {
    let Some(team) = team::load(home.root())? else {
        info!("this node has joined no team: no mesh");
        return Ok((None, None));
    };
    let parse = |text: &String, what: &str| {
        text.parse::<Multiaddr>().map_err(|e| {
            DaemonError::Config(format!(
                "the {what} address `{text}` is not a multiaddr: {e}"
            ))
        })
    };
    let team_id = team.team_id();
    let mut mesh_config = MeshConfig::new(keypair.clone(), team);
    mesh_config.listen = config
        .mesh
        .listen
        .iter()
        .map(|a| parse(a, "listen"))
        .collect::<Result<_, _>>()?;
    mesh_config.static_peers = config
        .mesh
        .peers
        .iter()
        .map(|a| parse(a, "peer"))
        .collect::<Result<_, _>>()?;
    mesh_config.mdns = config.mesh.mdns;
    mesh_config.test_hooks.corrupt_served_blobs = config.test_corrupt_blobs;
    let (mesh, events) = crate::mesh::start(mesh_config, store.clone()).await?;
    info!(peer = %mesh.local_peer(), team = %team_id, "mesh started");
    Ok((Some(mesh), Some(events)))
}

/// Runs the daemon on `listener` until `shutdown` resolves, a client asks it to stop, or it
/// has been idle for [`DaemonConfig::max_idle`].
pub async fn run(
    config: DaemonConfig,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let home = Home::new(&config.home);
    let store_dir = home.store();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_dir))
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))??;
    let keypair = home.load_or_create_identity()?;
    let executor = Executor::new(
        store.clone(),
        ExecConfig {
            sandbox_root: home.sandboxes(),
            path_env: config.job_path.clone(),
            keep_failed_sandboxes: false,
            strict: config.strict_sandbox,
        },
    )?;
    let toolchains = Arc::new(Toolchains::new(config.job_path.clone()));
    let (mesh, mesh_events) = start_mesh(&home, &config, &keypair, &store).await?;
    let mut core = CoreConfig::new(config.slots);
    // Only peers care how fast this machine is: measured only when there are any.
    core.speed = match config.mesh.speed {
        Some(speed) => (speed * 1000.0).round().clamp(1.0, 1_000_000.0) as u32,
        None if mesh.is_some() => tokio::task::spawn_blocking(super::speed::measure)
            .await
            .unwrap_or(1000),
        None => 1000,
    };
    let speed = core.speed;
    core.share = config.mesh.share;
    core.max_shared_slots = config
        .mesh
        .max_shared_slots
        .unwrap_or(config.slots)
        .min(config.slots);
    let engine = Engine::spawn(
        EngineContext {
            store: store.clone(),
            executor,
            toolchains: toolchains.clone(),
            keypair,
            mesh: mesh.clone(),
        },
        EngineConfig {
            core,
            idle_load: config.mesh.idle_load,
            durations: Some(home.durations()),
        },
        mesh_events,
    );
    let shared = Arc::new(Shared {
        kept: KeptOutputs::new(home.kept_outputs()),
        speed,
        home,
        digests: SourceDigests::new(store.clone()),
        toolchains,
        mesh,
        store,
        engine,
        loader: Mutex::new(Loader::new()),
        lowered: Mutex::new(HashMap::new()),
        last_builds: Mutex::new(HashMap::new()),
        locks: WorkspaceLocks::default(),
        next_build: AtomicU64::new(1),
        started: Instant::now(),
        activity: Mutex::new(Activity {
            connections: 0,
            last: Instant::now(),
        }),
        stop: Notify::new(),
        config,
    });
    info!(home = %shared.home.root().display(), slots = shared.config.slots, "daemon ready");

    tokio::pin!(shutdown);
    let mut idle_check = tokio::time::interval(Duration::from_secs(1).min(shared.config.max_idle));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    shared.touch(1);
                    tokio::spawn(async move {
                        if let Err(e) = serve(&shared, stream).await {
                            warn!(error = %e, "client connection ended with an error");
                        }
                        shared.touch(-1);
                    });
                }
                Err(e) => warn!(error = %e, "accept failed"),
            },
            () = &mut shutdown => {
                info!("shutting down: signal");
                break;
            }
            () = shared.stop.notified() => {
                info!("shutting down: asked by a client");
                break;
            }
            _ = idle_check.tick() => {
                if shared.idle_for().is_some_and(|idle| idle >= shared.config.max_idle) {
                    info!(max_idle_secs = shared.config.max_idle.as_secs(), "shutting down: idle");
                    break;
                }
            }
        }
    }
    let _ = shared.store.flush();
    Ok(())
}

async fn serve(shared: &Arc<Shared>, stream: UnixStream) -> Result<(), ConnError> {
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let (mut reader, mut writer) = conn::handshake(stream, Role::Daemon, Role::Client).await?;
    match reader.recv::<ClientMessage>().await? {
        Some(ClientMessage::Hello { .. }) => {
            writer
                .send(&DaemonMessage::Hello {
                    binary_id: shared.config.binary_id.clone(),
                    pid: std::process::id(),
                })
                .await?;
        }
        Some(_) => return error(&mut writer, "the first message must be `Hello`").await,
        None => return Ok(()),
    }
    let Some(request) = reader.recv::<ClientMessage>().await? else {
        return Ok(());
    };
    respond(shared, request, pid.unwrap_or(0), reader, writer).await
}

async fn respond(
    shared: &Arc<Shared>,
    request: ClientMessage,
    pid: u32,
    reader: ConnReader,
    mut writer: ConnWriter,
) -> Result<(), ConnError> {
    match request {
        ClientMessage::Hello { .. } => error(&mut writer, "`Hello` was already sent").await,
        ClientMessage::Build(request) => session::build(shared, request, pid, reader, writer).await,
        ClientMessage::GraphRun(request) => {
            session::graph_run(shared, request, pid, reader, writer).await
        }
        ClientMessage::Query(query) => {
            let shared = shared.clone();
            let answer = tokio::task::spawn_blocking(move || session::query(&shared, &query)).await;
            match answer {
                Ok(Ok(lines)) => writer.send(&DaemonMessage::Lines(lines)).await,
                Ok(Err(message)) => error(&mut writer, &message).await,
                Err(e) => error(&mut writer, &format!("internal error: {e}")).await,
            }
        }
        ClientMessage::Status => {
            let building = shared
                .locks
                .busy()
                .into_iter()
                .map(|p| p.display().to_string())
                .collect();
            let status = DaemonStatus {
                pid: std::process::id(),
                binary_id: shared.config.binary_id.clone(),
                home: shared.home.root().display().to_string(),
                uptime_secs: shared.started.elapsed().as_secs(),
                building,
                slots: u32::try_from(shared.config.slots).unwrap_or(u32::MAX),
                store: shared.store_report(),
                mesh: mesh_status(shared).await,
            };
            writer.send(&DaemonMessage::Status(Box::new(status))).await
        }
        ClientMessage::Peers => {
            writer
                .send(&DaemonMessage::Peers(peer_reports(shared).await))
                .await
        }
        ClientMessage::CacheStats | ClientMessage::CacheGc { .. } | ClientMessage::CacheVerify => {
            let shared = shared.clone();
            let answer =
                tokio::task::spawn_blocking(move || session::cache(&shared, &request)).await;
            match answer {
                Ok(Ok(report)) => writer.send(&DaemonMessage::Cache(report)).await,
                Ok(Err(message)) => error(&mut writer, &message).await,
                Err(e) => error(&mut writer, &format!("internal error: {e}")).await,
            }
        }
        ClientMessage::Shutdown => {
            writer.send(&DaemonMessage::ShuttingDown).await?;
            shared.stop.notify_one();
            Ok(())
        }
    }
}

/// The mesh part of `weft status`; `None` without a team.
async fn mesh_status(shared: &Shared) -> Option<MeshStatus> {
    let mesh = shared.mesh.as_ref()?;
    let report = shared.engine.report().await;
    let stats = mesh.stats();
    let team = team::load(shared.home.root())
        .ok()
        .flatten()
        .map(|t| t.team_id().to_string());
    Some(MeshStatus {
        team: team.unwrap_or_default(),
        peer_id: mesh.local_peer().to_string(),
        listen: mesh
            .listen_addrs()
            .await
            .iter()
            .map(|a| a.to_string())
            .collect(),
        n_peers: u32::try_from(report.peers.len()).unwrap_or(u32::MAX),
        n_running: u32::try_from(report.running).unwrap_or(u32::MAX),
        corrupt_blobs: stats.corrupt_blobs,
        admissions_failed: stats.admissions_failed,
        jobs_given: report.stats.jobs_given,
        jobs_stolen: report.stats.jobs_stolen,
        peer_cache_hits: report.stats.peer_cache_hits,
        leases_requeued: report.stats.leases_requeued,
        nondeterministic: report.nondeterministic,
        steal_wait_us: report.steal_wait.map(micros_pair),
        peer_hit_us: report.peer_hit.map(micros_pair),
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        bulk_blobs: stats.bulk_blobs,
        speed: shared.speed,
    })
}

fn micros_pair((a, b): (Duration, Duration)) -> (u64, u64) {
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    (micros(a), micros(b))
}

/// `weft peers`: every peer the mesh knows, with what the core knows of it.
async fn peer_reports(shared: &Shared) -> Vec<PeerReport> {
    let Some(mesh) = &shared.mesh else {
        return Vec::new();
    };
    let views = shared.engine.report().await.peers;
    let mut reports: Vec<PeerReport> = mesh
        .peers()
        .await
        .into_iter()
        .map(|info| {
            let view = info
                .node
                .and_then(|node| views.iter().find(|v| v.node == node));
            let beacon = view.and_then(|v| v.beacon.as_ref());
            PeerReport {
                peer_id: info.peer.to_string(),
                addrs: info.addrs.iter().map(|a| a.to_string()).collect(),
                rtt_us: info
                    .rtt
                    .map(|rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                admission: match info.admission {
                    Admission::Admitted => "admitted".to_owned(),
                    Admission::Pending => "pending".to_owned(),
                    Admission::Blocked { remaining } => {
                        format!("blocked ({}s)", remaining.as_secs())
                    }
                },
                free_slots: beacon.map(|b| b.free_slots),
                queue_len: beacon.map(|b| b.queue_len),
                platform: beacon.map(|b| b.platform.clone()),
                n_tools: beacon.map(|b| u32::try_from(b.tools.len()).unwrap_or(u32::MAX)),
                share: beacon.map(|b| b.share),
                max_shared_slots: beacon.map(|b| b.max_shared_slots),
                speed: beacon.map(|b| b.speed),
                n_results: view.map_or(0, |v| v.n_results as u64),
                n_leased: view.map_or(0, |v| v.n_leased as u64),
                avoided: view.is_some_and(|v| v.avoided_until.is_some()),
                corrupt_blobs: info.n_corrupt,
            }
        })
        .collect();
    reports.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    reports
}

/// Sends an error report.
pub(crate) async fn error(writer: &mut ConnWriter, message: &str) -> Result<(), ConnError> {
    writer
        .send(&DaemonMessage::Error(ErrorReport {
            message: message.to_owned(),
        }))
        .await
}
