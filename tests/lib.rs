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
        .map(|stat| {
            !stat
                .split_whitespace()
                .nth(2)
                .is_some_and(|state| state == "Z")
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
