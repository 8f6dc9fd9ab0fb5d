//! The strict sandbox (opt-in, [`ExecConfig::strict`](super::ExecConfig::strict)): every process
//! of a job starts through util-linux `unshare`, in new user, network, mount and pid
//! namespaces.
//!
//! - user: the daemon's user is mapped to root inside, so nothing needs privileges;
//! - network: only a loopback interface, which is down: the job has no network;
//! - pid: the job's process is pid 1 and sees no other process (`--fork`); `/proc` is mounted
//!   anew for it (`--mount-proc`, which needs the mount namespace);
//! - `--kill-child`: if `unshare` dies (the process group is killed on a timeout or a
//!   cancellation), so does everything in the namespace.
//!
//! The file system is not hidden: the job still sees the host's files, and the sandbox
//! directory is only a convention. Exit codes and signals pass through `unshare`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::error::ExecError;
use super::toolchain::find_on_path;

/// The options that make the namespaces.
const FLAGS: [&str; 7] = [
    "--user",
    "--map-root-user",
    "--net",
    "--mount",
    "--pid",
    "--fork",
    "--kill-child",
];

/// Finds `unshare` and checks that it can make the namespaces here, by running itself
/// (`unshare --version`) inside them. Returns its path.
pub(crate) fn probe(path_env: &str) -> Result<PathBuf, ExecError> {
    let unavailable = |reason: String| ExecError::StrictUnavailable { reason };
    let (unshare, _) = find_on_path("unshare", path_env)
        .or_else(|| find_on_path("unshare", "/usr/bin:/bin"))
        .ok_or_else(|| unavailable("util-linux `unshare` is not installed".to_owned()))?;
    let output = std::process::Command::new(&unshare)
        .args(FLAGS)
        .arg("--mount-proc")
        .arg("--")
        .arg(&unshare)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| unavailable(format!("cannot run `{}`: {e}", unshare.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(unavailable(format!(
            "`{} {}` failed: {}",
            unshare.display(),
            FLAGS.join(" "),
            stderr.trim()
        )));
    }
    Ok(unshare)
}

/// A command that runs `program` with `args` through `unshare`.
pub(crate) fn wrap(unshare: &Path, program: &Path, args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(unshare);
    command
        .args(FLAGS)
        .arg("--mount-proc")
        .arg("--")
        .arg(program)
        .args(args);
    command
}
