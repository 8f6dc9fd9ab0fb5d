//! [`Toolchains`]: which binary each command runs, and the fingerprint that goes into a
//! [`JobId`](weft_protocol::JobId).
//!
//! A tool is looked up on the daemon's configured `PATH` (never on the daemon's own
//! environment), the way a shell would: the first directory holding an executable regular file
//! of that name wins. Its digest is blake3 over the binary's bytes, after following symlinks, so
//! two machines with the same compiler binary agree however it was installed. Digests are cached
//! by the resolved path and the binary's size, mtime, inode and device: a cached tool costs the
//! `PATH` walk (one `stat` per directory tried) and no read.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_protocol::{Cmd, Digest, DigestHasher, Toolchain};

use super::error::ExecError;

/// Tool lookup and tool digests, cached. `Send + Sync`; share one per daemon.
#[derive(Debug)]
pub struct Toolchains {
    path_env: String,
    digests: Mutex<HashMap<PathBuf, ToolEntry>>,
    n_digested: AtomicU64,
}

/// A digested binary and the file state it was digested in.
#[derive(Debug, Clone, Copy)]
struct ToolEntry {
    stamp: ToolStamp,
    digest: Digest,
}

/// What must not change for a cached tool digest to stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ToolStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl ToolStamp {
    fn of(meta: &Metadata) -> ToolStamp {
        ToolStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

impl Toolchains {
    /// Tools are looked up on `path_env`, a `:`-separated list of directories (empty entries
    /// are skipped: the daemon's working directory means nothing to a build).
    pub fn new(path_env: String) -> Toolchains {
        Toolchains {
            path_env,
            digests: Mutex::new(HashMap::new()),
            n_digested: AtomicU64::new(0),
        }
    }

    /// The platform of this machine, as `<os>-<arch>` (for instance `linux-x86_64`).
    pub fn platform() -> String {
        format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
    }

    /// The `PATH` tools are looked up on.
    pub fn path_env(&self) -> &str {
        &self.path_env
    }

    /// Finds `tool` and digests its binary. A name with a `/` is taken as a path as it is; any
    /// other name is looked up on the configured `PATH`.
    pub fn resolve(&self, tool: &str) -> Result<(PathBuf, Digest), ExecError> {
        let not_found = || ExecError::ToolNotFound {
            tool: tool.to_owned(),
            path_env: self.path_env.clone(),
        };
        let (path, meta) = if tool.contains('/') {
            let path = PathBuf::from(tool);
            match fs::metadata(&path) {
                Ok(meta) if is_executable_file(&meta) => (path, meta),
                Ok(_) => return Err(not_found()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(not_found()),
                Err(err) => return Err(ExecError::io("inspect the tool", &path, err)),
            }
        } else {
            find_on_path(tool, &self.path_env).ok_or_else(not_found)?
        };
        let stamp = ToolStamp::of(&meta);
        if let Some(entry) = self.lock().get(&path)
            && entry.stamp == stamp
        {
            return Ok((path, entry.digest));
        }
        let digest = digest_file(&path)?;
        self.n_digested.fetch_add(1, Ordering::Relaxed);
        // Only cache what is known to match the digested bytes.
        let after = fs::metadata(&path).map_err(|e| ExecError::io("inspect the tool", &path, e))?;
        if ToolStamp::of(&after) == stamp {
            self.lock()
                .insert(path.clone(), ToolEntry { stamp, digest });
        }
        tracing::debug!(tool, path = %path.display(), %digest, "digested tool");
        Ok((path, digest))
    }

    /// The toolchain of a job: the digest of every program its `Exec` commands run, under the
    /// name the command gives it, plus `extra_tools` (programs the commands run indirectly,
    /// such as the compiler a wrapper script calls), plus the platform.
    ///
    /// An `argv[0]` that holds a template (`{{...}}`) names something the build itself makes,
    /// and a relative path with a `/` (`./configure`) names a file in the sandbox: both are
    /// covered by the job's inputs and deps and are skipped here.
    pub fn toolchain(
        &self,
        job_cmds: &[Cmd],
        extra_tools: &[String],
    ) -> Result<Toolchain, ExecError> {
        self.toolchain_memo(job_cmds, extra_tools, &mut HashMap::new())
    }

    /// [`Toolchains::toolchain`], with the tools already resolved during one planning pass in
    /// `memo`, so that a graph of ten thousand jobs walks `PATH` once per tool, not per job.
    /// Keep a memo for one pass only: it does not notice a tool that changes.
    pub fn toolchain_memo(
        &self,
        job_cmds: &[Cmd],
        extra_tools: &[String],
        memo: &mut HashMap<String, Digest>,
    ) -> Result<Toolchain, ExecError> {
        let mut toolchain = Toolchain {
            platform: Toolchains::platform(),
            tools: Default::default(),
            system: None,
        };
        let programs = job_cmds.iter().filter_map(|cmd| match cmd {
            Cmd::Exec { argv, .. } => argv.first(),
            Cmd::Cat { .. } => None,
        });
        for tool in programs.chain(extra_tools) {
            let in_sandbox = tool.contains("{{") || (tool.contains('/') && !tool.starts_with('/'));
            if in_sandbox || toolchain.tools.contains_key(tool) {
                continue;
            }
            let digest = match memo.get(tool) {
                Some(digest) => *digest,
                None => {
                    let (_, digest) = self.resolve(tool)?;
                    memo.insert(tool.clone(), digest);
                    digest
                }
            };
            toolchain.tools.insert(tool.clone(), digest);
        }
        Ok(toolchain)
    }

    /// How many times a binary was read and digested (cache misses).
    pub fn n_digested(&self) -> u64 {
        self.n_digested.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, ToolEntry>> {
        // The map holds plain values, each inserted whole: a panic elsewhere cannot leave it
        // half-changed, so a poisoned lock is taken as it is.
        self.digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Looks `name` (without a `/`) up on `path_env`: the first directory holding an executable
/// regular file of that name (symlinks followed), and that file's metadata.
pub(crate) fn find_on_path(name: &str, path_env: &str) -> Option<(PathBuf, Metadata)> {
    path_env
        .split(':')
        .filter(|dir| !dir.is_empty())
        .find_map(|dir| {
            let candidate = Path::new(dir).join(name);
            match fs::metadata(&candidate) {
                Ok(meta) if is_executable_file(&meta) => Some((candidate, meta)),
                _ => None,
            }
        })
}

fn is_executable_file(meta: &Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// blake3 over the file's bytes.
fn digest_file(path: &Path) -> Result<Digest, ExecError> {
    let read_error = |e| ExecError::io("read the tool", path, e);
    let mut file = File::open(path).map_err(read_error)?;
    let mut hasher = DigestHasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(read_error(err)),
        }
    }
    Ok(hasher.finalize())
}
