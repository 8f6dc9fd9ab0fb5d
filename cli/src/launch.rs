//! Finding the daemon, starting it when none answers, and replacing one from another binary.
//!
//! Protocol flow:
//!
//! 1. connect to `<home>/daemon.sock` and greet; a daemon with our binary id is used as is;
//! 2. a daemon with another id is asked to shut down, and we wait for its pid to go;
//! 3. with no daemon, take `<home>/daemon.lock` (so two clients never start two daemons),
//!    look once more; when a process holds `<home>/daemon.pid` (a `weft daemon` started by
//!    hand and still setting up), wait for it; otherwise start `weft daemon` detached,
//!    logging to `<home>/daemon.log`;
//! 4. wait until it answers, or report why it did not, with the end of its log.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weft_node::daemon::ConnError;
use weft_node::daemon::Home;
use weft_node::daemon::client::Client;
use weft_protocol::wire::{ClientMessage, DaemonMessage};

/// The longest Unix socket path Linux accepts.
const MAX_SOCKET_PATH: usize = 107;

/// How long a starting daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a daemon that was asked to stop may take to exit.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The home directory: `--home`, else `$WEFT_HOME`, else `$XDG_STATE_HOME/weft`, else
/// `~/.local/state/weft`.
pub(crate) fn resolve_home(flag: Option<&Path>) -> Result<Home> {
    if let Some(dir) = flag {
        return Ok(Home::new(absolute(dir)?));
    }
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let root = if let Some(dir) = env_dir("WEFT_HOME") {
        dir
    } else if let Some(dir) = env_dir("XDG_STATE_HOME") {
        dir.join("weft")
    } else if let Some(dir) = env_dir("HOME") {
        dir.join(".local/state/weft")
    } else {
        bail!("cannot find a home for the daemon: set `WEFT_HOME` (or `HOME`)");
    };
    Ok(Home::new(absolute(&root)?))
}

/// `path` made absolute against the current directory, without touching the file system.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve `{}`", path.display()))
}

/// This binary's identity: the version and the executable's size and modification time, so
/// that any rebuild counts as another binary.
pub(crate) fn binary_id() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let stamp = std::env::current_exe()
        .and_then(|exe| exe.metadata())
        .map(|meta| {
            use std::os::unix::fs::MetadataExt;
            format!("{}.{}.{}", meta.size(), meta.mtime(), meta.mtime_nsec())
        })
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("weft {version} ({stamp})")
}

/// Connects to the daemon of `home`, starting or replacing it as needed.
pub(crate) async fn connect(home: &Home, max_idle_secs: u64) -> Result<Client> {
    let socket = home.socket();
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "the daemon socket path `{}` is longer than {MAX_SOCKET_PATH} bytes; set `WEFT_HOME` \
             to a shorter directory",
            socket.display()
        );
    }
    let ours = binary_id();
    if let Some(client) = try_connect(home, &ours).await? {
        return Ok(client);
    }
    home.create()
        .with_context(|| format!("cannot create the home `{}`", home.root().display()))?;
    let lock_path = home.start_lock();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open `{}`", lock_path.display()))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await?
        .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;
    // Another client may have started one while we waited for the lock.
    if let Some(client) = try_connect(home, &ours).await? {
        return Ok(client);
    }
    // A daemon started by hand (`weft daemon`) holds the pid file from early on but answers
    // only once its socket is bound: wait for it, rather than start a second one that would
    // take the home first and make it exit.
    if pid_file_is_held(home) {
        let client = wait_for_starting_daemon(home, &ours).await;
        drop::<File>(lock);
        return client;
    }
    let client = start(home, &ours, max_idle_secs).await;
    drop::<File>(lock);
    client
}

/// Connects to a running daemon of our binary, replacing one of another binary. `None` when
/// no daemon answers.
async fn try_connect(home: &Home, ours: &str) -> Result<Option<Client>> {
    let mut client = match Client::connect(&home.socket(), ours).await {
        Ok(client) => client,
        Err(ConnError::Io(_)) => return Ok(None),
        Err(e) => {
            // Something answers, but not in our protocol: a daemon of a much older or newer
            // weft. Stop it by its pid.
            eprintln!("weft: the running daemon speaks another protocol ({e}); stopping it");
            stop_by_pid(home).await?;
            return Ok(None);
        }
    };
    if client.daemon_binary_id == ours {
        return Ok(Some(client));
    }
    let pid = client.daemon_pid;
    eprintln!(
        "weft: replacing the daemon (pid {pid}) that runs another binary ({})",
        client.daemon_binary_id
    );
    if client.send(&ClientMessage::Shutdown).await.is_ok() {
        while let Ok(Some(message)) = client.recv().await {
            if matches!(message, DaemonMessage::ShuttingDown) {
                break;
            }
        }
    }
    drop(client);
    if !wait_for_exit(pid, STOP_TIMEOUT).await {
        // It did not understand, or does not stop: ask the way every process understands.
        signal(pid, libc::SIGTERM);
        if !wait_for_exit(pid, STOP_TIMEOUT).await {
            bail!("the old daemon (pid {pid}) does not stop; kill it and retry");
        }
    }
    Ok(None)
}

/// Whether the pid in the home's pid file is a live `weft daemon`: one runs or is starting.
/// It only reads: taking the file's lock, even for an instant, could make that daemon's own
/// attempt to take it fail.
fn pid_file_is_held(home: &Home) -> bool {
    let Ok(text) = std::fs::read_to_string(home.pid_file()) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return false;
    };
    // A stale pid may have been reused: the process must also be a daemon.
    !exited(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == b"daemon"))
}

/// Waits for the daemon that holds the pid file to answer on its socket.
async fn wait_for_starting_daemon(home: &Home, ours: &str) -> Result<Client> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(client) = try_connect(home, ours).await? {
            return Ok(client);
        }
        if !pid_file_is_held(home) {
            bail!(
                "a daemon was starting with the home `{}` and stopped before it answered; see its \
                 log `{}`, then retry",
                home.root().display(),
                home.log().display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "a daemon holds `{}` but has not answered on `{}` within {}s; see its log `{}`, \
                 or stop it with `weft shutdown`",
                home.pid_file().display(),
                home.socket().display(),
                START_TIMEOUT.as_secs(),
                home.log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops the daemon whose pid is in the home's pid file, if one holds the file's lock.
async fn stop_by_pid(home: &Home) -> Result<()> {
    let path = home.pid_file();
    let Ok(file) = File::open(&path) else {
        return Ok(());
    };
    if file.try_lock().is_ok() {
        // Nobody holds it: no daemon runs, whatever answered is gone.
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let Ok(pid) = text.trim().parse::<u32>() else {
        bail!(
            "a daemon holds `{}` but its pid cannot be read; stop it by hand",
            path.display()
        );
    };
    signal(pid, libc::SIGTERM);
    if !wait_for_exit(pid, STOP_TIMEOUT).await {
        bail!("the old daemon (pid {pid}) does not stop; kill it and retry");
    }
    Ok(())
}

/// Whether `pid` exited within `limit`.
pub(crate) async fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !exited(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Whether `pid` is gone, or a zombie that only waits for its parent to reap it.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Sends `signal` to `pid`.
#[allow(unsafe_code)]
fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is the
    // daemon's, read from the lock-held pid file or from its own greeting.
    unsafe {
        libc::kill(pid, signal);
    }
}

async fn start(home: &Home, ours: &str, max_idle_secs: u64) -> Result<Client> {
    let exe = std::env::current_exe().context("cannot find the weft executable")?;
    let log_path = home.log();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the daemon log `{}`", log_path.display()))?;
    let mut child = Command::new(&exe)
        .arg("--home")
        .arg(home.root())
        .arg("--max-idle-secs")
        .arg(max_idle_secs.to_string())
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at the terminal stops the client, not the daemon.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start the daemon `{}`", exe.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(client) = Client::connect(&home.socket(), ours).await {
            return Ok(client);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the daemon exited at start ({status}); the end of its log `{}`:\n{}",
                log_path.display(),
                tail(&log_path)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not answer within {}s; see its log `{}`",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
