//! [`Toolchains`]: which binary each command runs, and the fingerprint that goes into a
//! [`JobId`](weft_protocol::JobId).
//!
//! A tool is looked up on the daemon's configured `PATH` (never on the daemon's own
//! environment), the way a shell would: the first directory holding an executable regular file
//! of that name wins. Its digest is blake3 over the binary's bytes, after following symlinks, so
//! two machines with the same compiler binary agree however it was installed. Digests are cached
//! by the resolved path and the binary's size, mtime, inode and device: a cached tool costs the
//! `PATH` walk (one `stat` per directory tried) and no read.
//!
//! A job that runs a process also gets the toolchain's system digest (`Toolchain::system`):
//! the configured system directories ([`SystemConfig`]), and for each C or C++ compiler among
//! its tools (by the name the job gives it or the name of the file it resolves to: `cc`,
//! `c++`, `gcc`, `g++`, `cpp`, `clang`, `clang++`, `clang-cpp`, with a target prefix or a
//! version suffix), that compiler's own files and the `as` and `ld` it runs. See
//! `exec/system/` for what is read and how it is kept current. A job made only of `cat`
//! commands reads nothing of the machine and gets none.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_protocol::{Cmd, Digest, DigestHasher, Toolchain};

use super::error::ExecError;
use super::system::{Encoder, SystemConfig, SystemDigests, SystemStats, is_compiler};

/// Tool lookup, tool digests and the system digest, cached. `Send + Sync`; share one per
/// daemon.
#[derive(Debug)]
pub struct Toolchains {
    path_env: String,
    digests: Mutex<HashMap<PathBuf, ToolEntry>>,
    n_digested: AtomicU64,
    system: SystemDigests,
}

/// What one planning pass resolved (see [`Toolchains::toolchain_memo`]), and what it depended
/// on: while [`Toolchains::unchanged`] says so, lowering the same jobs again gives the same
/// toolchains.
#[derive(Debug, Default)]
pub struct ToolchainMemo {
    /// Each tool a job names, as resolved.
    tools: HashMap<String, (PathBuf, Digest)>,
    /// The programs compilers run (`as`, `ld`), as resolved (`None`: not found).
    programs: HashMap<String, Option<Digest>>,
    /// The system digest's state when the pass first needed it.
    system: Option<super::system::SystemView>,
    /// Each tool's compiler digest, `None` for a tool that is no compiler.
    compilers: HashMap<String, Option<Digest>>,
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
    /// are skipped: the daemon's working directory means nothing to a build). The system
    /// digest covers this machine's directories ([`SystemConfig::host`]), with no cache file.
    pub fn new(path_env: String) -> Toolchains {
        Toolchains::with_system(path_env, SystemConfig::host())
    }

    /// [`Toolchains::new`], with the system digest covering what `system` says.
    pub fn with_system(path_env: String, system: SystemConfig) -> Toolchains {
        Toolchains::with_digests(path_env, SystemDigests::new(system))
    }

    pub(crate) fn with_digests(path_env: String, system: SystemDigests) -> Toolchains {
        Toolchains {
            path_env,
            digests: Mutex::new(HashMap::new()),
            n_digested: AtomicU64::new(0),
            system,
        }
    }

    /// Computes the system digest, and the own files' digests of the compilers found on
    /// `PATH` under the usual names, so that the first build finds them ready: run it off the
    /// request path when the daemon starts. With a warm cache file it lists and watches the
    /// covered directories and reads no file.
    pub fn prepare(&self) -> SystemStats {
        let mut memo = ToolchainMemo {
            system: Some(self.system.current()),
            ..ToolchainMemo::default()
        };
        let found: Vec<(&str, PathBuf, Digest)> = ["cc", "c++", "gcc", "g++", "clang", "clang++"]
            .into_iter()
            .filter_map(|name| self.resolve(name).ok().map(|(p, d)| (name, p, d)))
            .collect();
        // The compilers are asked at once (each question is a process start), then covered
        // one after the other.
        std::thread::scope(|scope| {
            for (_, path, digest) in &found {
                scope.spawn(|| self.system.compiler_files(path, *digest, &self.path_env));
            }
        });
        for (name, path, digest) in found {
            memo.tools.insert(name.to_owned(), (path, digest));
            self.compiler_memo(name, &mut memo);
        }
        self.system.stats()
    }

    /// What the system digest covers and what it cost so far.
    pub fn system_stats(&self) -> SystemStats {
        self.system.stats()
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
    /// such as the compiler a wrapper script calls), plus the platform, plus (for a job that
    /// runs a process) the system digest; see the module documentation.
    ///
    /// An `argv[0]` that holds a template (`{{...}}`) names something the build itself makes,
    /// and a relative path with a `/` (`./configure`) names a file in the sandbox: both are
    /// covered by the job's inputs and deps and are skipped here.
    pub fn toolchain(
        &self,
        job_cmds: &[Cmd],
        extra_tools: &[String],
    ) -> Result<Toolchain, ExecError> {
        self.toolchain_memo(job_cmds, extra_tools, &mut ToolchainMemo::default())
    }

    /// [`Toolchains::toolchain`], with the tools already resolved during one planning pass in
    /// `memo`, so that a graph of ten thousand jobs walks `PATH` once per tool, and looks at
    /// the system directories once, not per job. Keep a memo for one pass only: it does not
    /// notice a change by itself; [`Toolchains::unchanged`] tells whether one happened since.
    pub fn toolchain_memo(
        &self,
        job_cmds: &[Cmd],
        extra_tools: &[String],
        memo: &mut ToolchainMemo,
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
            let digest = match memo.tools.get(tool) {
                Some((_, digest)) => *digest,
                None => {
                    let (path, digest) = self.resolve(tool)?;
                    memo.tools.insert(tool.clone(), (path, digest));
                    digest
                }
            };
            toolchain.tools.insert(tool.clone(), digest);
        }
        let runs_processes = job_cmds.iter().any(|cmd| matches!(cmd, Cmd::Exec { .. }));
        if runs_processes {
            let view = *memo.system.get_or_insert_with(|| self.system.current());
            let mut encoder = Encoder::new("weft.toolchain.system.v1");
            encoder.digest(&view.base);
            for name in toolchain.tools.keys() {
                if let Some(digest) = self.compiler_memo(name, memo) {
                    encoder.bytes(name.as_bytes());
                    encoder.digest(&digest);
                }
            }
            toolchain.system = Some(encoder.finish());
        }
        Ok(toolchain)
    }

    /// Whether everything `memo` resolved is as it was: every tool resolves to the same file
    /// with the same digest, so does every program a compiler runs, and nothing covered by
    /// the system digest changed. One `PATH` walk per tool, and for the system directories
    /// what [`SystemDigests`] costs when nothing changed (one `read` of the inotify queue).
    pub fn unchanged(&self, memo: &ToolchainMemo) -> bool {
        memo.tools
            .iter()
            .all(|(tool, then)| self.resolve(tool).is_ok_and(|now| now == *then))
            && memo
                .programs
                .iter()
                .all(|(program, then)| self.resolve(program).ok().map(|(_, d)| d) == *then)
            && memo
                .system
                .is_none_or(|then| self.system.current().generation == then.generation)
    }

    /// The digest of the compiler's own files when the tool `name` (resolved in `memo`) is a
    /// compiler, by its name or the name of the file it resolves to.
    fn compiler_memo(&self, name: &str, memo: &mut ToolchainMemo) -> Option<Digest> {
        if let Some(digest) = memo.compilers.get(name) {
            return *digest;
        }
        let (path, digest) = memo.tools.get(name)?.clone();
        let resolves_to_compiler = || {
            fs::canonicalize(&path).ok().is_some_and(|real| {
                real.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_compiler)
            })
        };
        let compiler = if is_compiler(name) || resolves_to_compiler() {
            let files = self.system.compiler_files(&path, digest, &self.path_env);
            let programs: Vec<(String, Option<Digest>)> = files
                .programs
                .iter()
                .map(|program| {
                    let digest = *memo
                        .programs
                        .entry(program.clone())
                        .or_insert_with(|| self.resolve(program).ok().map(|(_, d)| d));
                    (program.clone(), digest)
                })
                .collect();
            Some(self.system.compiler_digest(&files, &programs))
        } else {
            None
        };
        memo.compilers.insert(name.to_owned(), compiler);
        compiler
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
