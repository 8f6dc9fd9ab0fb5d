//! `weft demo`: three daemons on loopback, one team, the example built across them.
//!
//! 1. make three homes and a workspace under a temporary directory, and one team for all;
//! 2. start three `weft daemon`s listening on loopback, each dialing the other two;
//! 3. wait until the first has admitted both others;
//! 4. build the workspace through the first (one slot of its own, so the others steal);
//! 5. print which node ran which job, and stop the daemons.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weft_node::daemon::client::Client;
use weft_node::daemon::{Home, node_id};
use weft_node::mesh::team;
use weft_protocol::NodeId;
use weft_protocol::wire::{BuildRequest, ClientMessage, DaemonMessage};

use crate::args::{DemoArgs, RunArgs};
use crate::launch;

/// The bundled example, written into the demo's workspace when none is given.
const EXAMPLE: &[(&str, &str)] = &[
    ("weft.toml", include_str!("../../examples/hello/weft.toml")),
    ("lib/BUILD", include_str!("../../examples/hello/lib/BUILD")),
    (
        "lib/greet.h",
        include_str!("../../examples/hello/lib/greet.h"),
    ),
    (
        "lib/greet.c",
        include_str!("../../examples/hello/lib/greet.c"),
    ),
    (
        "lib/shout.c",
        include_str!("../../examples/hello/lib/shout.c"),
    ),
    ("app/BUILD", include_str!("../../examples/hello/app/BUILD")),
    (
        "app/main.c",
        include_str!("../../examples/hello/app/main.c"),
    ),
];

const N_NODES: usize = 3;

struct Node {
    name: String,
    home: Home,
    id: NodeId,
    port: u16,
    child: Option<Child>,
}

pub(crate) async fn run(args: &DemoArgs) -> Result<ExitCode> {
    let root = tempfile::Builder::new()
        .prefix("weft-demo")
        .tempdir_in("/tmp")?;
    let result = demo(root.path(), args).await;
    if args.keep {
        let kept = root.keep();
        eprintln!(
            "kept the demo's homes and workspace in `{}`",
            kept.display()
        );
    }
    result
}

async fn demo(root: &Path, args: &DemoArgs) -> Result<ExitCode> {
    let workspace = match &args.workspace {
        Some(dir) => std::path::absolute(dir)?,
        None => {
            let dir = root.join("hello");
            for (path, text) in EXAMPLE {
                let path = dir.join(path);
                std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
                std::fs::write(&path, text)?;
            }
            dir
        }
    };
    let (secret, _) = team::create();
    let mut nodes = Vec::new();
    for i in 0..N_NODES {
        let home = Home::new(root.join(format!("node{}", i + 1)));
        home.create()?;
        team::store(home.root(), &secret)?;
        let id = node_id(&home.load_or_create_identity()?);
        nodes.push(Node {
            name: format!("node{}", i + 1),
            home,
            id,
            port: free_udp_port()?,
            child: None,
        });
    }
    println!(
        "weft demo: team {}, three nodes on loopback",
        secret.team_id()
    );
    let outcome = run_nodes(&mut nodes, &workspace).await;
    for node in &mut nodes {
        stop(node).await;
    }
    outcome
}

async fn run_nodes(nodes: &mut [Node], workspace: &Path) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the weft executable")?;
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        let log = std::fs::File::create(node.home.log())?;
        let mut command = Command::new(&exe);
        command
            .arg("--home")
            .arg(node.home.root())
            .args([
                "--max-idle-secs",
                "300",
                "daemon",
                "--no-mdns",
                "--share",
                "always",
            ])
            // The origin keeps one slot, so its peers have work to take.
            .args(["-j", if i == 0 { "1" } else { "2" }])
            .arg("--listen")
            .arg(format!("/ip4/127.0.0.1/udp/{}/quic-v1", node.port));
        for (j, port) in ports.iter().enumerate() {
            if j != i {
                command
                    .arg("--peer")
                    .arg(format!("/ip4/127.0.0.1/udp/{port}/quic-v1"));
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the daemon of {}", node.name))?;
        node.child = Some(child);
    }
    for node in nodes.iter_mut() {
        wait_for_socket(node).await?;
    }
    println!("waiting for the nodes to admit each other...");
    wait_for_peers(&nodes[0], N_NODES - 1).await?;

    let events = nodes[0].home.root().join("demo-events.jsonl");
    let request = BuildRequest {
        workspace: workspace.display().to_string(),
        targets: vec!["//...".to_owned()],
        jobs: None,
        keep_going: false,
        block_for_lock: true,
        job_timeout_secs: None,
        every_event: true,
    };
    let client = Client::connect(&nodes[0].home.socket(), &launch::binary_id()).await?;
    let run = RunArgs {
        jobs: None,
        keep_going: false,
        job_timeout: None,
        events: Some(events.clone()),
    };
    let code = crate::stream_build(client, ClientMessage::Build(request), &run).await?;
    print_who_ran_what(nodes, &events)?;
    Ok(code)
}

/// A UDP port on loopback that was free a moment ago.
fn free_udp_port() -> Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot find a free UDP port")?;
    Ok(socket.local_addr()?.port())
}

async fn wait_for_socket(node: &mut Node) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Client::connect(&node.home.socket(), &launch::binary_id())
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(child) = &mut node.child
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "the daemon of {} exited ({status}); see `{}`",
                node.name,
                node.home.log().display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon of {} did not start; see `{}`",
                node.name,
                node.home.log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_peers(node: &Node, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut client = Client::connect(&node.home.socket(), &launch::binary_id()).await?;
        client.send(&ClientMessage::Peers).await?;
        if let Some(DaemonMessage::Peers(peers)) = client.recv().await?
            && peers.iter().filter(|p| p.admission == "admitted").count() >= n
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not admit each other within 30 s; see `{}`",
                node.home.log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_who_ran_what(nodes: &[Node], events: &PathBuf) -> Result<()> {
    let names: BTreeMap<String, &str> = nodes
        .iter()
        .map(|n| {
            (
                weft_protocol::Digest::from_bytes(n.id.0).to_string(),
                n.name.as_str(),
            )
        })
        .collect();
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let mut ran: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cached = 0;
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(started) = event.get("Started") {
            let node = started["node"].as_str().unwrap_or_default();
            let name = started["name"].as_str().unwrap_or_default().to_owned();
            let who = names.get(node).copied().unwrap_or("a peer");
            ran.entry(who.to_owned()).or_default().push(name);
        }
        if event.get("CacheHit").is_some() {
            cached += 1;
        }
    }
    println!();
    println!("who ran what:");
    for node in nodes {
        let jobs = ran.get(&node.name).cloned().unwrap_or_default();
        println!(
            "  {} ({} jobs){}",
            node.name,
            jobs.len(),
            if node.name == "node1" {
                ", the origin"
            } else {
                ""
            }
        );
        for job in jobs {
            println!("    {job}");
        }
    }
    if cached > 0 {
        println!("  ({cached} jobs came from a cache)");
    }
    Ok(())
}

async fn stop(node: &mut Node) {
    if let Ok(mut client) = Client::connect(&node.home.socket(), &launch::binary_id()).await
        && client.send(&ClientMessage::Shutdown).await.is_ok()
    {
        let _ = client.recv().await;
    }
    if let Some(mut child) = node.child.take() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
