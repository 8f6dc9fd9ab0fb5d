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
use weft_protocol::Verdict;
use weft_protocol::wire::{
    BuildEvent, BuildRequest, ClientMessage, DaemonMessage, GraphRunRequest, QueryRequest,
    VerdictRequest,
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
            eprint!("{}", render::error_text(&e));
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
    if let Command::Team(command) = &cli.command
        && !matches!(
            command,
            TeamCommand::Distrust { .. } | TeamCommand::Trust { .. }
        )
    {
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
                graph: launch::absolute(&file)?.display().to_string(),
                source_dir: launch::absolute(&source_dir)?.display().to_string(),
                out_dir: launch::absolute(&out)?.display().to_string(),
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
                    print!("{}", render::status_text(&status));
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Info => {
            print!(
                "{}",
                render::info_text(env!("CARGO_PKG_VERSION"), &launch::binary_id(), home.root())
            );
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&ClientMessage::Status).await?;
            match client.recv().await? {
                Some(DaemonMessage::Status(status)) => {
                    print!("{}", render::store_text(&status.store));
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
                    launch::wait_for_exit(pid, launch::STOP_TIMEOUT).await;
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
                CacheCommand::Forget { target } => {
                    let workspace = Workspace::find(&std::env::current_dir()?)?;
                    ClientMessage::CacheForget {
                        workspace: workspace.root.display().to_string(),
                        target: resolve_pattern(&workspace, &target)?,
                    }
                }
            };
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&request).await?;
            loop {
                match client.recv().await? {
                    Some(DaemonMessage::Cache(report)) => {
                        print!("{}", render::cache_text(&report));
                        return Ok(ExitCode::SUCCESS);
                    }
                    // `forget` takes the workspace's build lock, as a build does.
                    Some(DaemonMessage::Event(BuildEvent::WaitingForLock { holder_pid })) => {
                        eprintln!("waiting for the build of client pid {holder_pid} to end");
                    }
                    other => return unexpected(other),
                }
            }
        }
        Command::Team(TeamCommand::Distrust { node, reason }) => {
            verdict(&home, cli.max_idle_secs, node, Verdict::Distrust, reason).await
        }
        Command::Team(TeamCommand::Trust { node }) => {
            verdict(
                &home,
                cli.max_idle_secs,
                node,
                Verdict::Trust,
                String::new(),
            )
            .await
        }
        Command::Peers => {
            let mut client = launch::connect(&home, cli.max_idle_secs).await?;
            client.send(&ClientMessage::Peers).await?;
            match client.recv().await? {
                Some(DaemonMessage::Peers(peers)) => {
                    print!("{}", render::peers_text(&peers));
                    Ok(ExitCode::SUCCESS)
                }
                other => unexpected(other),
            }
        }
        Command::Demo(args) => demo::run(&args).await,
        Command::Clean | Command::Daemon(_) | Command::Team(_) => Ok(ExitCode::SUCCESS),
    }
}

/// `weft team distrust` and `weft team trust`: the daemon carries them out (it holds the
/// store and the mesh).
async fn verdict(
    home: &Home,
    max_idle_secs: u64,
    node: String,
    verdict: Verdict,
    reason: String,
) -> Result<ExitCode> {
    let mut client = launch::connect(home, max_idle_secs).await?;
    client
        .send(&ClientMessage::Verdict(VerdictRequest {
            node,
            verdict,
            reason,
        }))
        .await?;
    match client.recv().await? {
        Some(DaemonMessage::Verdict(report)) => {
            print!("{}", render::verdict_text(&report));
            Ok(ExitCode::SUCCESS)
        }
        other => unexpected(other),
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
                eprint!("{}", render::refusal_text(&report));
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

fn unexpected(message: Option<DaemonMessage>) -> Result<ExitCode> {
    match message {
        Some(DaemonMessage::Error(report)) => {
            eprint!("{}", render::refusal_text(&report));
            Ok(ExitCode::from(EXIT_ERROR))
        }
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => bail!("the daemon closed the connection; see its log"),
    }
}

/// `weft team create|join|share|show|rotate`: the team file of this home.
fn team(home: &Home, command: &TeamCommand) -> Result<ExitCode> {
    use weft_node::mesh::team;
    home.create()
        .with_context(|| format!("cannot create the home `{}`", home.root().display()))?;
    match command {
        TeamCommand::Create { share } => {
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
            println!();
            choose_share(home, share.as_deref())?;
            restart_daemon(home);
        }
        TeamCommand::Join { token, share } => {
            let secret = team::parse_token(token)?;
            team::store(home.root(), &secret)?;
            println!("joined team {}", secret.team_id());
            println!();
            choose_share(home, share.as_deref())?;
            restart_daemon(home);
        }
        TeamCommand::Share { policy } => {
            choose_share(home, Some(policy))?;
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
        TeamCommand::Rotate => {
            let Some(old) = team::load(home.root())? else {
                bail!(
                    "this node is in no team, so it has no secret to rotate; `weft team create` \
                     makes a team"
                );
            };
            let (secret, token) = team::create();
            team::store(home.root(), &secret)?;
            print!(
                "{}",
                render::rotate_text(
                    &old.team_id().to_string(),
                    &secret.team_id().to_string(),
                    &token
                )
            );
            restart_daemon(home);
        }
        TeamCommand::Distrust { .. } | TeamCommand::Trust { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Records the sharing policy when one is given, and says in plain words what sharing means
/// and what this machine does now.
fn choose_share(home: &Home, policy: Option<&str>) -> Result<()> {
    let path = home.root().join("config.toml");
    if let Some(policy) = policy {
        config::set_share(&path, config::parse_share(policy)?)?;
    }
    let chosen = config::load(&path)?.share;
    print!("{}", render::share_text(chosen, &path));
    Ok(())
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
            launch::wait_for_exit(pid, launch::STOP_TIMEOUT).await;
            println!("the daemon stopped; the next command starts it in the mesh");
        }
    });
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
        file.share = Some(config::parse_share(share)?);
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
            accept_tools: file.accept_tools,
            verify_fraction: file.verify_fraction,
            follow_distrust: file.follow_distrust,
        },
        eval: file.eval,
        test_corrupt_blobs: args.test_corrupt_blobs,
        test_weak_sandbox: args.test_weak_sandbox,
        job_limits: file.job_limits,
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
