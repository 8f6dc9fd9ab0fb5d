//! The daemon's main loop: start the store, the engine and (with a team) the mesh, accept
//! clients and serve each on its own task, and stop when told to, when a client asks, or
//! when idle for too long.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinError;
use tracing::{debug, info, warn};
use weft_protocol::wire::SharePolicy;
use weft_store::Store;

use super::config::DaemonConfig;
use super::engine::Engine;
use super::engine::{EngineConfig, EngineContext};
use super::home::Home;
use super::request;
use super::shared::Shared;
use crate::core::{CoreConfig, Statements};
use crate::exec::{ExecConfig, Executor, SandboxMode, SourceDigests, SystemConfig, Toolchains};
use crate::mesh::{Keypair, Mesh, MeshConfig, MeshEvent, Multiaddr, team};

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
    /// The task opening the store died: a bug.
    #[error("internal error: {0}")]
    Internal(JoinError),
    /// The team file cannot be read.
    #[error(transparent)]
    Team(#[from] crate::mesh::TeamError),
    /// The file of disowned nodes cannot be read, or is damaged.
    #[error(transparent)]
    Distrusted(#[from] super::disown::DistrustFileError),
    /// The mesh cannot start.
    #[error("cannot start the mesh: {0}")]
    Mesh(#[from] crate::mesh::MeshError),
    /// A mesh address of the configuration does not parse.
    #[error("the {what} address `{text}` is not a multiaddr: {source}")]
    BadAddress {
        /// Which address: `listen` or `peer`.
        what: &'static str,
        /// The address as configured.
        text: String,
        /// What is wrong with it.
        source: libp2p::multiaddr::Error,
    },
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
    let parse = |text: &String, what: &'static str| {
        text.parse::<Multiaddr>()
            .map_err(|source| DaemonError::BadAddress {
                what,
                text: text.clone(),
                source,
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
        .map_err(DaemonError::Internal)??;
    let keypair = home.load_or_create_identity()?;
    let executor = Executor::new(
        store.clone(),
        ExecConfig {
            sandbox_root: home.sandboxes(),
            path_env: config.job_path.clone(),
            keep_failed_sandboxes: false,
            limits: config.job_limits.clone(),
            test_weak_sandbox: config.test_weak_sandbox,
        },
    )?;
    let sandbox = executor.sandbox_mode().clone();
    let toolchains = Arc::new(Toolchains::with_system(
        config.job_path.clone(),
        SystemConfig {
            cache_file: Some(home.system_digests()),
            ..SystemConfig::host()
        },
    ));
    // The nodes disowned before, read before any peer can be admitted.
    let mut statements = Statements::new(super::node_id(&keypair), config.mesh.follow_distrust);
    for statement in super::disown::load(&home.distrusted())? {
        let subject = statement.subject;
        if let Err(ignored) = statements.record(statement, u64::MAX) {
            debug!(node = %subject, %ignored, "a kept statement changes nothing");
        }
    }
    let distrusted = statements.distrusted();
    if !distrusted.is_empty() {
        info!(
            n_distrusted = distrusted.len(),
            "nodes disowned before are kept out"
        );
    }
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
    // The system digest is computed (or checked against the cache file) while the daemon
    // starts serving; the first build that needs it waits for it. After the speed
    // measurement, which its hashing threads would slow down.
    let warming = toolchains.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let stats = warming.prepare();
        info!(
            millis = started.elapsed().as_millis() as u64,
            n_roots = stats.n_roots,
            n_dirs = stats.n_dirs,
            n_files = stats.n_cached,
            n_hashed = stats.n_hashed,
            mib_hashed = stats.bytes_hashed >> 20,
            n_compilers = stats.n_probed,
            watching = stats.watching,
            "toolchain system digest ready"
        );
    });
    // Until the owner has chosen, nothing is lent or taken.
    core.share = config.mesh.share.unwrap_or(SharePolicy::Never);
    core.lend = config.mesh.share.is_some();
    core.verify_per_million = (config.mesh.verify_fraction.clamp(0.0, 1.0) * 1e6).round() as u32;
    if let Some(tools) = &config.mesh.accept_tools {
        core.accept_tools.clone_from(tools);
    }
    // Peers' jobs run only in the hermetic sandbox: without it this node takes none.
    if let SandboxMode::Weak { reason } = &sandbox {
        if core.share != SharePolicy::Never {
            warn!(%reason, "no hermetic sandbox: this node takes no jobs from peers");
        }
        core.share = SharePolicy::Never;
    }
    core.max_shared_slots = config
        .mesh
        .max_shared_slots
        .unwrap_or(config.slots)
        .min(config.slots);
    let digests = Arc::new(SourceDigests::new(store.clone()));
    let engine = Engine::spawn(
        EngineContext {
            store: store.clone(),
            executor,
            toolchains: toolchains.clone(),
            sources: digests.clone(),
            keypair,
            mesh: mesh.clone(),
        },
        EngineConfig {
            core,
            idle_load: config.mesh.idle_load,
            durations: Some(home.durations()),
            journal: Some(home.running_journal()),
            statements,
            statements_file: Some(home.distrusted()),
        },
        mesh_events,
    );
    let shared = Arc::new(Shared::new(
        config, home, store, engine, toolchains, digests, mesh, speed, sandbox,
    ));
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
                        if let Err(e) = request::serve(&shared, stream).await {
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
    // Peers hear that this node leaves (its connections closed) rather than time it out.
    if let Some(mesh) = shared.mesh.clone() {
        let _ = tokio::time::timeout(Duration::from_secs(2), mesh.shutdown()).await;
    }
    let _ = shared.store.flush();
    Ok(())
}
