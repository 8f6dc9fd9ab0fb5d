//! Helpers for the workspace-level tests: the real `weft` binary, run on temporary workspaces,
//! each test with its own daemon home.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `weft` binary, built once per test process with the same cargo that runs the tests.
pub fn weft_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "weft-cli", "--bin", "weft"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building `weft` failed");
        // The test executable lives in `<target>/<profile>/deps/`; the binary one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir");
        let bin = profile_dir.join("weft");
        assert!(
            bin.exists(),
            "`{}` is missing after the build",
            bin.display()
        );
        bin
    })
}

/// A temporary workspace with its own daemon home. Dropping it stops the daemon.
pub struct TestEnv {
    /// The daemon's home.
    pub home: tempfile::TempDir,
    /// The workspace root.
    pub ws: tempfile::TempDir,
    /// `--max-idle-secs` for the daemons this env starts.
    pub max_idle_secs: u64,
    bin: PathBuf,
}

impl Default for TestEnv {
    fn default() -> TestEnv {
        TestEnv::new()
    }
}

impl TestEnv {
    /// An empty workspace (with `weft.toml`) and a fresh home.
    pub fn new() -> TestEnv {
        let env = TestEnv {
            // Short paths: the daemon's socket path must fit in 107 bytes.
            home: tempfile::Builder::new()
                .prefix("wh")
                .tempdir_in("/tmp")
                .expect("temp home"),
            ws: tempfile::Builder::new()
                .prefix("ws")
                .tempdir_in("/tmp")
                .expect("temp workspace"),
            max_idle_secs: 120,
            bin: weft_bin().to_path_buf(),
        };
        env.write("weft.toml", "[packages]\n");
        env
    }

    /// Uses another `weft` binary from now on.
    pub fn with_bin(mut self, bin: PathBuf) -> TestEnv {
        self.bin = bin;
        self
    }

    /// Writes a workspace file, creating its directories.
    pub fn write(&self, path: &str, text: &str) {
        let path = self.ws.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }

    /// Reads a workspace file.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.ws.path().join(path))
            .unwrap_or_else(|e| panic!("reading `{path}`: {e}"))
    }

    /// A `weft` command in the workspace, with this env's home.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.ws.path())
            .env("WEFT_HOME", self.home.path())
            .env_remove("WEFT_LOG")
            .arg("--max-idle-secs")
            .arg(self.max_idle_secs.to_string());
        cmd
    }

    /// Runs `weft ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("weft runs")
    }

    /// Runs `weft build ARGS --events FILE` and returns the output and the events.
    pub fn build(&self, args: &[&str]) -> (Output, Vec<Value>) {
        let events = self.home.path().join(format!("events-{}.jsonl", unique()));
        let mut cmd = self.cmd();
        cmd.arg("build").args(args).arg("--events").arg(&events);
        let output = cmd.output().expect("weft runs");
        (output, read_events(&events))
    }

    /// The daemon's pid, from its pid file.
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home.path().join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = self.cmd().arg("shutdown").output();
    }
}

/// Reads a `--events` file.
pub fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each event line is JSON"))
        .collect()
}

/// The events of one kind, such as `Started`.
pub fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter_map(|e| e.get(kind)).collect()
}

/// The `name` of every event of one kind.
pub fn names_of(events: &[Value], kind: &str) -> Vec<String> {
    let mut names: Vec<String> = events_of(events, kind)
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// stdout and stderr of a run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits until `check` holds, or panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process is alive.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        // A zombie (state `Z`) has exited; it only waits to be reaped.
        .map(|stat| {
            stat.split_whitespace()
                .nth(2)
                .is_none_or(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether a C toolchain (`cc` and `ar`) is installed.
pub fn have_cc() -> bool {
    ["cc", "ar"].iter().all(|tool| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// What the daemons of a test mesh run for each other (`accept_tools`): the shell the test
/// jobs use, and the compiler and archiver of the example.
pub const MESH_TOOLS: &str = r#"["sh", "cc", "gcc", "ar"]"#;

/// A mesh of real daemons on loopback, each with its own home, joined by static peers.
pub struct TestMesh {
    /// The nodes, in the order they were asked for.
    pub nodes: Vec<TestNode>,
    /// The team's join token.
    pub token: String,
}

/// One daemon of a [`TestMesh`].
pub struct TestNode {
    /// The daemon's home.
    pub home: tempfile::TempDir,
    /// Its QUIC port on 127.0.0.1.
    pub port: u16,
    /// Its process.
    pub child: Option<std::process::Child>,
    /// Its node id in hex, as build events show it.
    pub node_id: String,
    /// How its daemon is started (after `--home`), for restarts; empty for a daemon started
    /// by other means (`mesh_lan.rs`), which [`TestNode::restart`] cannot restart.
    pub daemon_args: Vec<String>,
}

/// How one node of a [`TestMesh`] runs.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Job slots (`-j`).
    pub slots: usize,
    /// `always`, `idle` or `never`.
    pub share: &'static str,
    /// Whether it serves corrupt blobs.
    pub corrupt: bool,
    /// Whether it has its own team rather than the mesh's.
    pub wrong_team: bool,
    /// Its `speed` in `config.toml`; measured at start when `None`.
    pub speed: Option<f64>,
    /// Its `accept_tools`, a TOML list. Default: [`MESH_TOOLS`].
    pub tools: &'static str,
    /// More lines of its `config.toml`.
    pub config: &'static str,
    /// Whether it runs jobs in the weak sandbox (`--test-weak-sandbox`), as where the kernel
    /// forbids namespaces.
    pub weak_sandbox: bool,
}

impl NodeSpec {
    /// A node with `slots` slots that shares always.
    pub fn sharing(slots: usize) -> NodeSpec {
        NodeSpec {
            slots,
            share: "always",
            corrupt: false,
            wrong_team: false,
            speed: None,
            tools: MESH_TOOLS,
            config: "",
            weak_sandbox: false,
        }
    }
}

impl TestMesh {
    /// Starts one daemon per spec, every one dialing every other, and waits until each
    /// well-behaved node has admitted the others of its team.
    pub fn start(specs: &[NodeSpec]) -> TestMesh {
        let bin = weft_bin();
        let token = create_team(bin);
        let mut nodes = Vec::new();
        for spec in specs {
            let home = tempfile::Builder::new()
                .prefix("wm")
                .tempdir_in("/tmp")
                .expect("home");
            let node_token = if spec.wrong_team {
                create_team(bin)
            } else {
                token.clone()
            };
            let joined = Command::new(bin)
                .arg("--home")
                .arg(home.path())
                .args(["team", "join", &node_token])
                .output()
                .expect("weft team join");
            assert!(joined.status.success(), "{}", text(&joined));
            // The test jobs run `sh`, which a daemon does not run for peers unless told to.
            let mut config = format!("accept_tools = {}\n", spec.tools);
            if let Some(speed) = spec.speed {
                config.push_str(&format!("speed = {speed}\n"));
            }
            config.push_str(spec.config);
            std::fs::write(home.path().join("config.toml"), config).expect("config.toml");
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
            let port = socket.local_addr().expect("addr").port();
            drop(socket);
            nodes.push(TestNode {
                home,
                port,
                child: None,
                node_id: String::new(),
                daemon_args: Vec::new(),
            });
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        for (i, (node, spec)) in nodes.iter_mut().zip(specs).enumerate() {
            let mut args: Vec<String> = [
                "--max-idle-secs",
                "300",
                "daemon",
                "--no-mdns",
                "--share",
                spec.share,
                "-j",
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
            args.push(spec.slots.to_string());
            args.push("--listen".to_owned());
            args.push(format!("/ip4/127.0.0.1/udp/{}/quic-v1", node.port));
            if spec.corrupt {
                args.push("--test-corrupt-blobs".to_owned());
            }
            if spec.weak_sandbox {
                args.push("--test-weak-sandbox".to_owned());
            }
            for (j, port) in ports.iter().enumerate() {
                if j != i {
                    args.push("--peer".to_owned());
                    args.push(format!("/ip4/127.0.0.1/udp/{port}/quic-v1"));
                }
            }
            node.daemon_args = args;
            node.spawn_daemon();
        }
        let mut mesh = TestMesh { nodes, token };
        // Each daemon answers on its socket before anything asks it: a `weft peers` that
        // came first would start a default daemon of its own in that home.
        for node in &mut mesh.nodes {
            node.wait_for_socket();
        }
        for (i, spec) in specs.iter().enumerate() {
            let expected = specs
                .iter()
                .enumerate()
                .filter(|(j, s)| *j != i && s.wrong_team == spec.wrong_team)
                .count();
            let node = &mesh.nodes[i];
            wait_until(
                Duration::from_secs(60),
                "the nodes to admit each other",
                || node.admitted_peers() >= expected,
            );
        }
        for node in &mut mesh.nodes {
            node.node_id = node.node_key();
        }
        mesh
    }
}

fn create_team(bin: &Path) -> String {
    let home = tempfile::tempdir().expect("home");
    let output = Command::new(bin)
        .arg("--home")
        .arg(home.path())
        .args(["team", "create"])
        .output()
        .expect("team create");
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("weft team join ")
                .map(str::to_owned)
        })
        .expect("`team create` prints the join command")
}

impl TestNode {
    /// Starts the daemon, its output appended to `daemon.log`, without waiting for it.
    fn spawn_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.path().join("daemon.log"))
            .expect("log");
        let child = Command::new(weft_bin())
            .arg("--home")
            .arg(self.home.path())
            .args(&self.daemon_args)
            .env_remove("WEFT_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a daemon");
        self.child = Some(child);
    }

    /// Waits until the daemon answers on its socket.
    fn wait_for_socket(&mut self) {
        let socket = self.home.path().join("daemon.sock");
        let child = self.child.as_mut().expect("started");
        wait_until(Duration::from_secs(30), "the daemon's socket", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("a daemon exited at start ({status}); see its daemon.log");
            }
            socket.exists()
        });
    }

    /// Stops the daemon (`weft shutdown`, which a `weft team` command may have done
    /// already) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.weft(&["shutdown"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again as it was first started, and waits for its socket (not for
    /// any admission).
    pub fn restart(&mut self) {
        assert!(
            !self.daemon_args.is_empty(),
            "this daemon was not started by `TestMesh`"
        );
        self.stop();
        self.spawn_daemon();
        self.wait_for_socket();
    }

    /// Runs `weft ARGS` against this node's home, in the home.
    pub fn weft(&self, args: &[&str]) -> Output {
        self.cmd(self.home.path())
            .args(args)
            .output()
            .expect("weft runs")
    }

    /// A `weft` command against this node's daemon, run in `dir`.
    pub fn cmd(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(weft_bin());
        cmd.current_dir(dir)
            .arg("--home")
            .arg(self.home.path())
            .args(["--max-idle-secs", "300"])
            .env_remove("WEFT_LOG");
        cmd
    }

    /// Builds the workspace `dir` through this node, with events.
    pub fn build(&self, dir: &Path, args: &[&str]) -> (Output, Vec<Value>) {
        let events = self.home.path().join(format!("events-{}.jsonl", unique()));
        let output = self
            .cmd(dir)
            .arg("build")
            .args(args)
            .arg("--events")
            .arg(&events)
            .output()
            .expect("weft build");
        (output, read_events(&events))
    }

    /// How many peers this node has admitted.
    pub fn admitted_peers(&self) -> usize {
        self.peers_text()
            .lines()
            .filter(|l| l.trim() == "admission admitted")
            .count()
    }

    /// `weft peers`, as text.
    pub fn peers_text(&self) -> String {
        let output = self
            .cmd(self.home.path())
            .arg("peers")
            .output()
            .expect("weft peers");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `weft status`, as text.
    pub fn status(&self) -> String {
        let output = self
            .cmd(self.home.path())
            .arg("status")
            .output()
            .expect("weft status");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// This node's key in hex (as build events name nodes), from `weft team show`.
    pub fn node_key(&self) -> String {
        let output = self
            .cmd(self.home.path())
            .args(["team", "show"])
            .output()
            .expect("team show");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("node key").map(|k| k.trim().to_owned()))
            .expect("`team show` prints the node key")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("a running daemon")
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes files into a new temporary workspace.
pub fn workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ws")
        .tempdir_in("/tmp")
        .expect("workspace");
    std::fs::write(dir.path().join("weft.toml"), "[packages]\n").expect("weft.toml");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    dir
}

/// The `node` of every `Started` event, in hex.
pub fn started_nodes(events: &[Value]) -> Vec<String> {
    events_of(events, "Started")
        .iter()
        .filter_map(|e| e["node"].as_str().map(str::to_owned))
        .collect()
}

/// Every file under `dir`, with its content.
pub fn tree_contents(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(current) = todo.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                files.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

/// The number just before `label` in `weft status` output, e.g. `leases requeued`.
pub fn status_count(status: &str, label: &str) -> u64 {
    status
        .lines()
        .find_map(|line| {
            let at = line.find(label)?;
            line[..at]
                .split([' ', ','])
                .rev()
                .find(|w| !w.is_empty())?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `{label}` in:\n{status}"))
}

/// A new team's join token (for `weft team join`), made in a throwaway home.
pub fn new_team_token() -> String {
    create_team(weft_bin())
}

/// The last `lines` lines of a file, or a note that it cannot be read: for assertion messages
/// that show a daemon's log.
pub fn tail_of(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read `{}`: {e})", path.display()),
    }
}

/// The pids of the live processes whose command line holds `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let zombie =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
                });
            !zombie
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .collect()
}

/// Whether the `weft status` text says jobs run in the hermetic sandbox. A status without a
/// sandbox line (a daemon from before the hermetic sandbox) counts as hermetic, so that a test
/// of it fails there instead of skipping. When false, prints why `test` is skipped.
pub fn hermetic_or_skip(status: &str, test: &str) -> bool {
    match status.lines().find(|line| line.starts_with("sandbox")) {
        Some(line) if !line.contains("hermetic") => {
            eprintln!(
                "skipped `{test}`: this machine cannot give the hermetic sandbox (it needs user \
                 namespaces, or root): {line}"
            );
            false
        }
        _ => true,
    }
}
