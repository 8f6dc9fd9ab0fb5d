//! The mesh on a LAN made of network namespaces: three hosts, each a namespace with a veth pair
//! into one Linux bridge, each running a `weft daemon`. The daemons find each other by mDNS
//! alone (no static peers), a build through one of them spreads over the hosts, and the link of
//! a host running a stolen job is cut mid-build: the build must still complete, with every job
//! accounted for and the right outputs.
//!
//! Making namespaces needs root and iproute2 (`.ci/deps` installs it; CI runs as root). Where
//! they cannot be made, the test prints why on stderr and passes as skipped.
//!
//! Everything it makes is named after its pid (namespaces `weftlan-<pid>-h<i>`, the bridge
//! `wftbr<pid>`, veths `wftv<pid>h<i>`, homes and workspace `/tmp/weftlan-<pid>-*`), so
//! parallel runs do not collide, and it removes what a crashed run of a dead pid left behind
//! (killing the daemons still running in its namespaces) before making its own.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_tests::{
    TestNode, events_of, new_team_token, read_events, started_nodes, status_count, tail_of, text,
    wait_until, weft_bin,
};

const NS_PREFIX: &str = "weftlan-";
const BRIDGE_PREFIX: &str = "wftbr";
const VETH_PREFIX: &str = "wftv";

/// How many hosts the LAN has.
const HOSTS: usize = 3;

/// Twelve independent jobs of `sleep 2`, long enough for a link to be cut while one runs, and
/// one that gathers them all (the shape of `mesh_loopback`'s fan-in).
const BUILD: &str = r#"
[job(
    name = "w" + str(i),
    outs = ["o" + str(i)],
    cmds = [exec(["sh", "-c", "sleep 2; echo " + str(i) + " > {{OUTPUT_DIR}}/o" + str(i)])],
) for i in range(12)]

job(
    name = "gather",
    deps = [":w" + str(i) for i in range(12)],
    outs = ["all.txt"],
    cmds = [exec(["sh", "-c", "cat " + " ".join(["{{DEP::w%d}}/o%d" % (i, i) for i in range(12)]) + " > {{OUTPUT_DIR}}/all.txt"])],
)
"#;

const ALL: &str = "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n";

#[test]
fn daemons_on_a_lan_find_each_other_by_mdns_and_survive_a_cut_link() {
    let test_started = Instant::now();
    let lan = match Lan::create(HOSTS) {
        Ok(lan) => lan,
        Err(reason) => {
            skip(&reason);
            return;
        }
    };

    // One team; every host joins it before its daemon starts.
    let token = new_team_token();
    let mut nodes = Daemons(Vec::new());
    for host in &lan.hosts {
        let home = tempfile::Builder::new()
            .prefix(&format!("{}-", host.ns))
            .tempdir_in("/tmp")
            .expect("home");
        let joined = Command::new(weft_bin())
            .arg("--home")
            .arg(home.path())
            .args(["team", "join", &token])
            .output()
            .expect("weft team join");
        std::fs::write(
            home.path().join("config.toml"),
            format!("accept_tools = {}\n", weft_tests::MESH_TOOLS),
        )
        .expect("config.toml");
        assert!(joined.status.success(), "{}", text(&joined));
        let mut node = TestNode {
            home,
            // The daemons listen on a port the system picks; they learn each other's by mDNS.
            port: 0,
            child: None,
            node_id: String::new(),
            daemon_args: Vec::new(),
        };
        // `team show` makes the identity now, before the daemon starts: run while the daemon
        // makes it, both would (see `node_key`).
        node.node_id = node_key(&node);
        nodes.push(node);
    }

    // One daemon per host, inside its namespace. The first, where the build is asked for, has
    // one slot; the others two, so that they steal.
    for (i, (node, host)) in nodes.iter_mut().zip(&lan.hosts).enumerate() {
        let slots = if i == 0 { "1" } else { "2" };
        let log = std::fs::File::create(node.home.path().join("daemon.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .arg(weft_bin())
            .arg("--home")
            .arg(node.home.path())
            .args([
                "--max-idle-secs",
                "300",
                "daemon",
                "--share",
                "always",
                "-j",
            ])
            .arg(slots)
            .arg("--listen")
            .arg(format!("/ip4/{}/udp/0/quic-v1", host.ip))
            .env("WEFT_LOG", "info,weft_node::mesh=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a daemon in its namespace");
        node.child = Some(child);
    }
    // Each must answer on its socket before any `weft` command runs against its home: a command
    // that finds no daemon may start one, and that one would run outside the namespace.
    for (node, host) in nodes.iter_mut().zip(&lan.hosts) {
        wait_for_daemon(node, &host.ns);
    }

    // Discovery by mDNS alone: no `--peer`, no config file.
    let started = Instant::now();
    for i in 0..HOSTS {
        let deadline = Instant::now() + Duration::from_secs(60);
        while nodes[i].admitted_peers() < HOSTS - 1 {
            assert_all_running(&mut nodes);
            assert!(
                Instant::now() < deadline,
                "timed out waiting for host {} to admit the other hosts, found by mDNS; \
                 its peers:\n{}\nlogs:\n{}",
                i + 1,
                peers_text(&nodes[i]),
                logs(&nodes)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "mesh_lan: {HOSTS} daemons admitted each other in {:?}",
        started.elapsed()
    );
    // They know each other by their LAN addresses.
    for node in nodes.iter() {
        let peers = peers_text(node);
        let on_lan = peers
            .lines()
            .filter(|l| {
                l.trim()
                    .strip_prefix("address")
                    .is_some_and(|a| a.trim().starts_with(&format!("/ip4/{}.", lan.subnet)))
            })
            .count();
        assert_eq!(on_lan, HOSTS - 1, "{peers}");
    }

    // A build through the first host.
    let ws = tempfile::Builder::new()
        .prefix(&format!("{NS_PREFIX}{}-ws-", std::process::id()))
        .tempdir_in("/tmp")
        .expect("workspace");
    std::fs::write(ws.path().join("weft.toml"), "[packages]\n").expect("weft.toml");
    std::fs::write(ws.path().join("BUILD"), BUILD).expect("BUILD");
    let events_path = ws.path().join("events.jsonl");
    let stdout = std::fs::File::create(ws.path().join("build.out")).expect("build.out");
    let stderr = std::fs::File::create(ws.path().join("build.err")).expect("build.err");
    let origin = &nodes[0];
    let mut build = KillOnDrop(Some(
        origin
            .cmd(ws.path())
            .arg("build")
            .arg("--events")
            .arg(&events_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("weft build"),
    ));

    // Wait for another host to run a stolen job, then pull its cable.
    let mut victim = None;
    wait_until(
        Duration::from_secs(120),
        "another host to start a stolen job",
        || {
            let events = read_events(&events_path);
            victim = (1..HOSTS).find(|&i| !running_on(&events, &nodes[i].node_id).is_empty());
            victim.is_some() || build.exited()
        },
    );
    let Some(victim) = victim else {
        panic!(
            "the build ended before any job ran on another host:\n{}\nevents: {:?}",
            build_text(ws.path(), &mut build),
            read_events(&events_path)
        );
    };
    lan.cut(victim);
    let cut_at = Instant::now();
    eprintln!(
        "mesh_lan: cut the link of host {} ({}) while it ran {:?}",
        victim + 1,
        lan.hosts[victim].veth,
        running_on(&read_events(&events_path), &nodes[victim].node_id)
    );

    let status = build.wait(Duration::from_secs(240));
    let events = read_events(&events_path);
    assert!(
        status.is_some_and(|s| s.success()),
        "{}\nevents: {events:?}\nlogs:\n{}",
        build_text(ws.path(), &mut build),
        logs(&nodes)
    );
    eprintln!(
        "mesh_lan: the build completed {:?} after the cut; its notices: {:?}",
        cut_at.elapsed(),
        events_of(&events, "Notice")
    );

    // Every output is right.
    let out = ws.path().join("weft-out");
    assert_eq!(
        std::fs::read_to_string(out.join("all.txt")).expect("all.txt"),
        ALL
    );
    let done = events_of(&events, "Done");
    assert_eq!(done.len(), 1, "{events:?}");
    assert_eq!(done[0]["n_failed"], 0, "{events:?}");
    let finished: BTreeSet<String> = events_of(&events, "Finished")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = (0..12)
        .map(|i| format!("//:w{i}"))
        .chain(["//:gather".to_owned()])
        .collect();
    assert_eq!(finished, expected, "{events:?}");

    // The work spread, and what the cut host was running when it went was run again elsewhere.
    let ran_on: BTreeSet<String> = started_nodes(&events).into_iter().collect();
    assert!(ran_on.len() >= 2, "jobs ran on {ran_on:?} only");
    let victim_id = &nodes[victim].node_id;
    let lost = running_on(&events, victim_id);
    assert!(
        !lost.is_empty(),
        "the cut host finished all its jobs before the cut: {events:?}"
    );
    for name in &lost {
        assert!(
            events_of(&events, "Finished")
                .iter()
                .any(|e| e["name"] == name.as_str() && e["node"] != victim_id.as_str()),
            "`{name}`, lost with the cut host, never finished elsewhere: {events:?}"
        );
    }
    let status = origin.status();
    assert!(status_count(&status, "leases requeued") >= 1, "{status}");

    drop(build);
    // The daemons stop before their namespaces go (as on a panic, where locals drop in reverse
    // order: `nodes`, then `lan`).
    drop(nodes);
    drop(lan);
    eprintln!("mesh_lan: done in {:?}", test_started.elapsed());
}

/// Says on the test process's own stderr, past the harness's capture, that the test is skipped
/// and why, so that the reason shows in CI logs even though the test passes.
fn skip(reason: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "mesh_lan: SKIPPED, network namespaces cannot be made here: {reason}"
    );
}

/// Waits until the daemon in `ns` has its socket and its pid file names it; panics with its
/// log if it exits.
fn wait_for_daemon(node: &mut TestNode, ns: &str) {
    let pid = node.pid();
    let pid_file = node.home.path().join("daemon.pid");
    let socket = node.home.path().join("daemon.sock");
    let log = node.home.path().join("daemon.log");
    wait_until(
        Duration::from_secs(60),
        &format!("the daemon in `{ns}` to start"),
        || {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the daemon in `{ns}` exited at start ({status}); its log:\n{}",
                    tail_of(&log, 30)
                );
            }
            socket.exists()
                && std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == pid.to_string())
        },
    );
}

/// The node key (hex, as build events name nodes) of a node, from `weft team show`.
///
/// `team show` makes the identity when there is none, and so does a starting daemon, and the
/// two are not safe together: each makes its own key, writes `identity.key.tmp` and renames it,
/// so one can fail (`cannot use the identity key ...: No such file or directory`; the daemon
/// then exits at start), or both succeed and one of them goes on with a key that is not the
/// one on disk.
fn node_key(node: &TestNode) -> String {
    let output = node
        .cmd(node.home.path())
        .args(["team", "show"])
        .output()
        .expect("weft team show");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("node key").map(|k| k.trim().to_owned()))
        .unwrap_or_else(|| panic!("`team show` prints no node key:\n{}", text(&output)))
}

/// `weft peers` of a node.
fn peers_text(node: &TestNode) -> String {
    let output = node
        .cmd(node.home.path())
        .arg("peers")
        .output()
        .expect("weft peers");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Panics, with its log, when a daemon has exited.
fn assert_all_running(nodes: &mut [TestNode]) {
    for i in 0..nodes.len() {
        let exited = nodes[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!(
                "the daemon of host {} exited ({status}); logs:\n{}",
                i + 1,
                logs(nodes)
            );
        }
    }
}

/// The names of the jobs that started on `node` and have not finished there.
fn running_on(events: &[Value], node: &str) -> BTreeSet<String> {
    let on_node = |kind: &str| -> BTreeSet<String> {
        events_of(events, kind)
            .iter()
            .filter(|e| e["node"] == node)
            .filter_map(|e| e["name"].as_str().map(str::to_owned))
            .collect()
    };
    &on_node("Started") - &on_node("Finished")
}

/// The end of every daemon's log, for assertion messages.
fn logs(nodes: &[TestNode]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            format!(
                "--- host {} ({}):\n{}\n",
                i + 1,
                node.home.path().display(),
                tail_of(&node.home.path().join("daemon.log"), 25)
            )
        })
        .collect()
}

/// The build's exit status and output, for assertion messages.
fn build_text(ws: &Path, build: &mut KillOnDrop) -> String {
    format!(
        "build status: {:?}\nstdout:\n{}\nstderr:\n{}",
        build.0.as_mut().and_then(|c| c.try_wait().ok().flatten()),
        std::fs::read_to_string(ws.join("build.out")).unwrap_or_default(),
        std::fs::read_to_string(ws.join("build.err")).unwrap_or_default()
    )
}

/// The daemons, stopped on drop with SIGTERM (SIGKILL for one that does not stop within 10 s).
///
/// [`TestNode`]'s own drop asks with `weft shutdown`, which waits up to 10 s for the pid to go:
/// a daemon that is our child stays a zombie until we reap it, so that wait always runs out.
struct Daemons(Vec<TestNode>);

impl std::ops::Deref for Daemons {
    type Target = Vec<TestNode>;
    fn deref(&self) -> &Vec<TestNode> {
        &self.0
    }
}

impl std::ops::DerefMut for Daemons {
    fn deref_mut(&mut self) -> &mut Vec<TestNode> {
        &mut self.0
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        let mut children: Vec<Child> = self.0.iter_mut().filter_map(|n| n.child.take()).collect();
        for child in &children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in &mut children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child process killed if it still runs when this is dropped.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Whether it has exited.
    fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Waits up to `timeout` for it to exit; `None` if it has not.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One host of the LAN: a network namespace, with `eth0` in it, whose peer `veth` is a port of
/// the bridge.
struct Host {
    ns: String,
    veth: String,
    ip: String,
}

/// Hosts on one bridge, all removed on drop (with whatever still runs in their namespaces).
struct Lan {
    bridge: String,
    /// The first three octets of the hosts' /24, e.g. `10.77.12`.
    subnet: String,
    hosts: Vec<Host>,
}

impl Lan {
    /// Makes `n` hosts on a bridge, or says why it cannot.
    fn create(n: usize) -> Result<Lan, String> {
        match effective_uid() {
            Some(0) => {}
            Some(uid) => return Err(format!("not root (uid {uid})")),
            None => return Err("cannot tell the user id from /proc/self/status".to_owned()),
        }
        match Command::new("ip").arg("-V").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => return Err(format!("`ip -V` fails:\n{}", text(&output))),
            Err(e) => return Err(format!("no `ip` command ({e}); install iproute2")),
        }
        remove_stale();
        let pid = std::process::id();
        let mut lan = Lan {
            bridge: format!("{BRIDGE_PREFIX}{pid}"),
            subnet: format!("10.77.{}", pid % 250),
            hosts: Vec::new(),
        };
        for i in 1..=n {
            let host = Host {
                ns: format!("{NS_PREFIX}{pid}-h{i}"),
                veth: format!("{VETH_PREFIX}{pid}h{i}"),
                ip: format!("{}.{i}", lan.subnet),
            };
            ip(&["netns", "add", &host.ns])?;
            lan.hosts.push(host);
        }
        ip(&["link", "add", &lan.bridge, "type", "bridge"])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        for host in &lan.hosts {
            let ns = host.ns.as_str();
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", &host.veth, "master", &lan.bridge, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lan)
    }

    /// Cuts host `i`'s link: its bridge port goes down.
    fn cut(&self, i: usize) {
        let veth = &self.hosts[i].veth;
        if let Err(e) = ip(&["link", "set", veth, "down"]) {
            panic!("cannot cut the link: {e}");
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for host in &self.hosts {
            kill_all_in(&host.ns);
            let _ = ip(&["netns", "delete", &host.ns]);
            // Deleting the namespace deletes the pair; this is for a veth whose namespace was
            // not made.
            let _ = ip(&["link", "delete", &host.veth]);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}

/// Runs `ip ARGS`; the error says what failed and why.
fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// SIGKILLs every process in the namespace `ns` (daemons and jobs a run left behind).
fn kill_all_in(ns: &str) {
    let Ok(pids) = ip(&["netns", "pids", ns]) else {
        return;
    };
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill")
            .args(["-KILL", pid])
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the namespaces, bridges, veths, daemon homes and workspaces of earlier runs whose
/// process is gone.
fn remove_stale() {
    let dead = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(entries) = std::fs::read_dir("/tmp") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if owner(name, NS_PREFIX, |rest| rest.starts_with('-')).is_some_and(dead)
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if let Some(pid) = owner(name, NS_PREFIX, |rest| rest.starts_with("-h"))
                && dead(pid)
            {
                kill_all_in(name);
                let _ = ip(&["netns", "delete", name]);
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        // Lines like `7: wftv123h1@if2: <BROADCAST,...`.
        for line in list.lines() {
            let Some(name) = line
                .split_whitespace()
                .nth(1)
                .map(|n| n.trim_end_matches(':'))
                .and_then(|n| n.split('@').next())
            else {
                continue;
            };
            let owner = owner(name, BRIDGE_PREFIX, str::is_empty).or_else(|| {
                owner(name, VETH_PREFIX, |rest| {
                    rest.strip_prefix('h')
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                })
            });
            if owner.is_some_and(dead) {
                let _ = ip(&["link", "delete", name]);
            }
        }
    }
}

/// The pid in a name this test makes: `prefix`, the pid's digits, then a rest that `rest_ok`
/// accepts.
fn owner(name: &str, prefix: &str, rest_ok: impl Fn(&str) -> bool) -> Option<u32> {
    let tail = name.strip_prefix(prefix)?;
    let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
    let pid = tail[..digits].parse().ok()?;
    rest_ok(&tail[digits..]).then_some(pid)
}

/// The effective user id, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
