//! `weft`: the command line. It parses arguments, sets up logging, finds or starts the
//! daemon, and shows what the daemon reports. Everything else lives in `weft-node`.

mod args;
mod config;
mod demo;
mod launch;
mod render;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use weft_node::daemon::client::Client;
use weft_node::daemon::{DaemonConfig, Home, MeshSettings};
use weft_node::frontend::Workspace;
use weft_protocol::wire::{
    BuildRequest, CacheReport, ClientMessage, DaemonMessage, GraphRunRequest, MeshStatus,
    PeerReport, QueryRequest, SharePolicy, StoreReport,
};

use crate::args::{
    BuildArgs, CacheCommand, Cli, Command, DaemonArgs, GraphCommand, QueryCommand, RunArgs,
    TeamCommand,
};
use crate::render::Renderer;

/// Exit code of a build whose jobs failed.
const EXIT_BUILD_FAILED: u8 = 1;
/// Exit code of a request the daemon refused (a bad label, a broken BUILD file, a busy
/// workspace with `--no-block-for-lock`) or that could not be made.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Daemon(_)));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Logs go to stderr: for the daemon that is its log file, for a client the terminal.
/// `WEFT_LOG` sets the filter (default `info` for the daemon, `warn` for a client).
fn init_tracing(daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    // An empty `WEFT_LOG` means the default, not "log nothing".
    let filter = std::env::var("WEFT_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| tracing_subscriber::EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if daemon {
        builder.init();
    } else {
        builder.without_time().with_target(false).init();
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // `--home` is relative to where `weft` was started, not to `-C`'s directory.
    let home = launch::resolve_home(cli.home.as_deref())?;
    if let Some(dir) = &cli.directory {
        std::env::set_current_dir(dir)
            .with_context(|| format!("cannot change to `{}`", dir.display()))?;
    }
    if let Command::Daemon(args) = &cli.command {
        return run_daemon(&home, cli.max_idle_secs, args);
    }
    if let Command::Clean = &cli.command {
        return clean();
    }
    if let Command::Team(command) = &cli.command {
        return team(&home, command);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_client(cli, home))
}

async fn run_client(cli: Cli, home: Home) -> Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build(&home, cli.max_idle_secs, args).await,
        Command::Graph(GraphCommand::Run {
            file,
            source_dir,
            out,
            run,
        }) => {
            let request = GraphRunRequest {
                graph: absolute(&file)?,
                source_dir: absolute(&source_dir)?,
                out_dir: absolute(&out)?,
                jobs: run.jobs,
                keep_going: run.keep_going,
                job_timeout_secs: run.job_timeout,
            };
            let client = launch::connect(&home, cli.max_idle_secs).await?;
            stream_build(client, ClientMessage::GraphRun(request), &run).await
        }
        Command::Query(query) => {
            let workspace = Workspace::find(&std::env::current_dir()?)?;
            let root = workspace.root.display().to_string();
            let request = match query {
                QueryCommand::Targets { pattern } => QueryRequest::Targets {
                    workspace: root,
                    pattern: resolve_pattern(&workspace, pattern.as_deref().unwrap_or("..."))?,
                },
                QueryCommand::Deps { label } => QueryRequest::Deps {
                    workspace: root,
                    label: resolve_pattern(&workspace, &label)?,
                },
            };
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&ClientMessage::Query(request)).await?;
            match client.recv().await? {
                Some(DaemonMessage::Lines(lines)) => {
                    for line in lines {
                        println!("{line}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Status => {
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&ClientMessage::Status).await?;
            match client.recv().await? {
                Some(DaemonMessage::Status(status)) => {
                    println!(
                        "daemon pid {} ({}), up {}s",
                        status.pid, status.binary_id, status.uptime_secs
                    );
                    println!("home        {}", status.home);
                    println!("slots       {}", status.slots);
                    print_mesh(status.mesh.as_ref());
                    if status.building.is_empty() {
                        println!("building    nothing");
                    }
                    for workspace in &status.building {
                        println!("building    {workspace}");
                    }
                    print_store(&status.store);
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Info => {
            println!("weft {}", env!("CARGO_PKG_VERSION"));
            println!("binary      {}", launch::binary_id());
            println!("home        {}", home.root().display());
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&ClientMessage::Status).await?;
            match client.recv().await? {
                Some(DaemonMessage::Status(status)) => {
                    print_store(&status.store);
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Shutdown => {
            let Ok(mut client) = Client::connect(&home.socket(), &launch::binary_id()).await else {
                println!("no daemon is running");
                return Ok(ExitCode::SUCCESS);
            };
            let pid = client.daemon_pid;
            client.send(&ClientMessage::Shutdown).await?;
            match client.recv().await? {
                Some(DaemonMessage::ShuttingDown) => {
                    wait_for_exit(pid).await;
                    println!("daemon (pid {pid}) stopped");
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Cache(command) => {
            let request = match command {
                CacheCommand::Stats => ClientMessage::CacheStats,
                CacheCommand::Gc { max_size } => ClientMessage::CacheGc {
                    max_bytes: max_size,
                },
                CacheCommand::Verify => ClientMessage::CacheVerify,
            };
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&request).await?;
            match client.recv().await? {
                Some(DaemonMessage::Cache(CacheReport::Stats(store))) => print_store(&store),
                Some(DaemonMessage::Cache(CacheReport::Gc {
                    n_removed,
                    bytes_freed,
                    after,
                })) => {
                    println!(
                        "removed {n_removed} blobs, freed {}",
                        human_bytes(bytes_freed)
                    );
                    print_store(&after);
                }
                Some(DaemonMessage::Cache(CacheReport::Verify {
                    n_checked,
                    n_corrupt,
                    n_index_fixed,
                })) => {
                    println!(
                        "checked {n_checked} blobs: {n_corrupt} corrupt (removed), {n_index_fixed} \
                         index entries fixed"
                    );
                }
                other => return unexpected(other),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Peers => {
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&ClientMessage::Peers).await?;
            match client.recv().await? {
                Some(DaemonMessage::Peers(peers)) => {
                    print_peers(&peers);
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Demo(args) => demo::run(&args).await,
        Command::Clean | Command::Daemon(_) | Command::Team(_) => Ok(ExitCode::SUCCESS),
    }
}

async fn build(home: &Home, max_idle_secs: u64, args: BuildArgs) -> Result<ExitCode> {
    let workspace = Workspace::find(&std::env::current_dir()?)?;
    let patterns = if args.targets.is_empty() {
        vec!["...".to_owned()]
    } else {
        args.targets.clone()
    };
    let targets = patterns
        .iter()
        .map(|p| resolve_pattern(&workspace, p))
        .collect::<Result<Vec<_>>>()?;
    let request = BuildRequest {
        workspace: workspace.root.display().to_string(),
        targets,
        jobs: args.run.jobs,
        keep_going: args.run.keep_going,
        block_for_lock: !args.no_block_for_lock,
        job_timeout_secs: args.run.job_timeout,
        every_event: args.run.events.is_some(),
    };
    let client = launch::connect(home, max_idle_secs).await?;
    stream_build(client, ClientMessage::Build(request), &args.run).await
}

/// Sends a build-like request and shows its events until the build is over.
pub(crate) async fn stream_build(
    mut client: Client,
    request: ClientMessage,
    run: &RunArgs,
) -> Result<ExitCode> {
    let mut renderer = Renderer::new(run.events.as_deref())?;
    client.send(&request).await?;
    let mut code = None;
    loop {
        match client.recv().await? {
            Some(DaemonMessage::Event(event)) => {
                if let weft_protocol::wire::BuildEvent::Done(summary) = &event {
                    code = Some(if summary.success {
                        0
                    } else {
                        EXIT_BUILD_FAILED
                    });
                }
                renderer.event(&event)?;
            }
            Some(DaemonMessage::Error(report)) => {
                renderer.close()?;
                eprintln!("error: {}", report.message);
                if code.is_none() {
                    return Ok(ExitCode::from(EXIT_ERROR));
                }
            }
            Some(other) => return unexpected(Some(other)),
            None => break,
        }
    }
    renderer.close()?;
    match code {
        Some(code) => Ok(ExitCode::from(code)),
        None => bail!("the daemon closed the connection before the build finished; see its log"),
    }
}

/// Turns a pattern written relative to the current directory into one relative to the
/// workspace root: in `src/`, `:lib` is `//src:lib` and `...` is `//src/...`.
fn resolve_pattern(workspace: &Workspace, pattern: &str) -> Result<String> {
    if pattern.starts_with("//") || pattern.starts_with('@') {
        return Ok(pattern.to_owned());
    }
    let cwd = std::env::current_dir()?;
    let rel = cwd.strip_prefix(&workspace.root).unwrap_or(Path::new(""));
    let rel = rel.to_string_lossy();
    Ok(match (rel.is_empty(), pattern.starts_with(':')) {
        (true, _) => format!("//{pattern}"),
        (false, true) => format!("//{rel}{pattern}"),
        (false, false) => format!("//{rel}/{pattern}"),
    })
}

fn absolute(path: &Path) -> Result<String> {
    Ok(std::path::absolute(path)
        .with_context(|| format!("cannot resolve `{}`", path.display()))?
        .display()
        .to_string())
}

fn unexpected(message: Option<DaemonMessage>) -> Result<ExitCode> {
    match message {
        Some(DaemonMessage::Error(report)) => {
            eprintln!("error: {}", report.message);
            Ok(ExitCode::from(EXIT_ERROR))
        }
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => bail!("the daemon closed the connection; see its log"),
    }
}

fn print_mesh(mesh: Option<&MeshStatus>) {
    let Some(mesh) = mesh else {
        println!(
            "mesh        off: this node has joined no team (`weft team create`, `weft team join`)"
        );
        return;
    };
    println!("mesh        team {} as {}", mesh.team, mesh.peer_id);
    for addr in &mesh.listen {
        println!("  listen    {addr}");
    }
    println!("  peers     {} admitted", mesh.n_peers);
    println!(
        "  speed     {:.2}× the reference machine (peers give the critical path to one a quarter faster)",
        f64::from(mesh.speed) / 1000.0
    );
    println!(
        "  jobs      {} lent, {} taken, {} results from peers' caches, {} leases requeued",
        mesh.jobs_given, mesh.jobs_stolen, mesh.peer_cache_hits, mesh.leases_requeued
    );
    println!(
        "  trouble   {} corrupt blobs rejected, {} failed admissions, {} nondeterministic jobs",
        mesh.corrupt_blobs, mesh.admissions_failed, mesh.nondeterministic
    );
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "  data      {:.1} MB in, {:.1} MB out; {} large blobs over the bulk lane (TLS on TCP)",
        mb(mesh.bytes_in),
        mb(mesh.bytes_out),
        mesh.bulk_blobs
    );
    let ms = |us: u64| us as f64 / 1000.0;
    if let Some((p50, p99)) = mesh.steal_wait_us {
        println!(
            "  stealing  jobs waited {:.1} ms (p50), {:.1} ms (p99) before a thief took them",
            ms(p50),
            ms(p99)
        );
    }
    if let Some((p50, p99)) = mesh.peer_hit_us {
        println!(
            "  peer hits {:.2} ms (p50), {:.2} ms (p99) from query to checked answer",
            ms(p50),
            ms(p99)
        );
    }
}

fn print_peers(peers: &[PeerReport]) {
    if peers.is_empty() {
        println!(
            "no peers yet. With no team there is no mesh (see `weft team`); on a network \
             without multicast, list peers in `config.toml` or pass `--peer`"
        );
        return;
    }
    for peer in peers {
        let rtt = peer
            .rtt_us
            .map_or("-".to_owned(), |us| format!("{:.2}ms", us as f64 / 1000.0));
        let share = match peer.share {
            Some(SharePolicy::Always) => "always",
            Some(SharePolicy::Idle) => "idle",
            Some(SharePolicy::Never) => "never",
            None => "-",
        };
        let num = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
        println!("{}", peer.peer_id);
        println!(
            "  admission {}{}",
            peer.admission,
            if peer.avoided { ", avoided" } else { "" }
        );
        println!(
            "  address   {}",
            peer.addrs.first().map_or("-", String::as_str)
        );
        println!("  rtt       {rtt}");
        println!(
            "  load      {} free slots, {} queued; sharing {share} (at most {} slots)",
            num(peer.free_slots),
            num(peer.queue_len),
            num(peer.max_shared_slots)
        );
        println!(
            "  tools     {} on {}; speed {}",
            num(peer.n_tools),
            peer.platform.as_deref().unwrap_or("-"),
            peer.speed
                .map_or("-".to_owned(), |s| format!("{:.2}×", f64::from(s) / 1000.0))
        );
        println!(
            "  results   {} announced; {} of our jobs running there; {} corrupt blobs",
            peer.n_results, peer.n_leased, peer.corrupt_blobs
        );
    }
}

/// `weft team create|join|show`: the team file of this home.
fn team(home: &Home, command: &TeamCommand) -> Result<ExitCode> {
    use weft_node::mesh::team;
    home.create()
        .with_context(|| format!("cannot create the home `{}`", home.root().display()))?;
    match command {
        TeamCommand::Create => {
            if let Some(existing) = team::load(home.root())? {
                bail!(
                    "this node is already in team {}; its token is in `{}`",
                    existing.team_id(),
                    team::path(home.root()).display()
                );
            }
            let (secret, token) = team::create();
            team::store(home.root(), &secret)?;
            println!(
                "created team {} and joined it; on each teammate's machine run:",
                secret.team_id()
            );
            println!();
            println!("    weft team join {token}");
            println!();
            println!("keep the token secret: anyone with it can join the mesh");
            restart_daemon(home);
        }
        TeamCommand::Join { token } => {
            let secret = team::parse_token(token)?;
            team::store(home.root(), &secret)?;
            println!("joined team {}", secret.team_id());
            restart_daemon(home);
        }
        TeamCommand::Show => {
            let keypair = home.load_or_create_identity()?;
            let peer = keypair.public().to_peer_id();
            match team::load(home.root())? {
                Some(secret) => println!("team        {}", secret.team_id()),
                None => println!("team        none (`weft team create` or `weft team join TOKEN`)"),
            }
            println!("node        {peer}");
            let key = weft_protocol::Digest::from_bytes(weft_node::daemon::node_id(&keypair).0);
            println!("node key    {key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops a running daemon, so that the next command starts one with the new team.
fn restart_daemon(home: &Home) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let Ok(mut client) = Client::connect(&home.socket(), &launch::binary_id()).await else {
            return;
        };
        let pid = client.daemon_pid;
        if client.send(&ClientMessage::Shutdown).await.is_ok() {
            let _ = client.recv().await;
            wait_for_exit(pid).await;
            println!("the daemon stopped; the next command starts it in the mesh");
        }
    });
}

fn print_store(store: &StoreReport) {
    println!("store       {}", store.path);
    println!(
        "  blobs     {} ({})",
        store.n_blobs,
        human_bytes(store.bytes)
    );
    println!("  actions   {}", store.n_actions);
    println!("  pinned    {}", store.n_pinned);
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

async fn wait_for_exit(pid: u32) {
    launch::wait_for_exit(pid, Duration::from_secs(10)).await;
}

/// `weft clean`: removes `weft-out/` of the current workspace.
fn clean() -> Result<ExitCode> {
    let workspace = Workspace::find(&std::env::current_dir()?)?;
    let out = workspace.root.join("weft-out");
    match std::fs::remove_dir_all(&out) {
        Ok(()) => println!("removed `{}`", out.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("nothing to clean"),
        Err(e) => return Err(e).with_context(|| format!("cannot remove `{}`", out.display())),
    }
    Ok(ExitCode::SUCCESS)
}

/// `weft daemon`: runs the daemon in the foreground until it is told to stop, is idle for
/// `--max-idle-secs`, or gets SIGINT or SIGTERM.
fn run_daemon(home: &Home, max_idle_secs: u64, args: &DaemonArgs) -> Result<ExitCode> {
    home.create()
        .with_context(|| format!("cannot create the home `{}`", home.root().display()))?;
    // First of all, so that a client arriving while this daemon sets up waits for it rather
    // than starting another.
    let _pid_lock = home.lock_pid_file()?;
    let mut file = config::load(&home.root().join("config.toml"))?;
    file.peers.extend(args.peers.iter().cloned());
    if !args.listen.is_empty() {
        file.listen = args.listen.clone();
    }
    if let Some(share) = &args.share {
        file.share = config::parse_share(share)?;
    }
    if args.no_mdns {
        file.mdns = false;
    }
    let socket = home.socket();
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove `{}`", socket.display())),
    }
    let config = DaemonConfig {
        home: home.root().to_path_buf(),
        binary_id: launch::binary_id(),
        max_idle: Duration::from_secs(max_idle_secs.max(1)),
        slots: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        job_path: std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
        mesh: MeshSettings {
            share: file.share,
            max_shared_slots: file.max_shared_slots,
            idle_load: file.idle_load,
            peers: file.peers,
            listen: file.listen,
            mdns: file.mdns,
            speed: file.speed,
        },
        test_corrupt_blobs: args.test_corrupt_blobs,
        strict_sandbox: file.strict_sandbox || args.strict,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("cannot listen on `{}`", socket.display()))?;
        weft_node::daemon::run(config, listener, stop_signal()).await?;
        anyhow::Ok(())
    });
    let _ = std::fs::remove_file(&socket);
    // Stop stragglers (jobs being cancelled) without waiting for them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.map(|()| ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
