//! The daemon's side of a hermetic spawn: [`Hermetic`] (what the probe found at start) makes a
//! [`Prepared`] spawn per command, which installs the child side as a pre-exec hook and, when
//! the spawn fails, reads back which step failed.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, read};

use super::host::{HostEntry, HostView};
use super::plan::{SpawnPlan, SpawnSpec, Stage};
use crate::exec::limits::JobLimits;
use crate::exec::toolchain::find_on_path;

/// The hermetic sandbox as this machine gives it.
#[derive(Debug)]
pub(crate) struct Hermetic {
    host: HostView,
    /// Whether a job's pid namespace can count its processes (`pid_max`, Linux 6.14+).
    pid_max_works: bool,
}

/// Why a hermetic spawn failed.
#[derive(Debug)]
pub(crate) enum SpawnFailure {
    /// The job's working directory is not there (a job's own doing).
    WorkingDir { errno: i32 },
    /// Setting up the sandbox failed: what, and what to do.
    Sandbox { what: String, fix: &'static str },
}

/// One spawn, made ready before the fork.
pub(crate) struct Prepared {
    plan: Arc<SpawnPlan>,
    report: OwnedFd,
}

impl Hermetic {
    /// Checks that this machine can give the hermetic sandbox, by running `true` in one (the
    /// very steps every job takes, its sandbox directories aside). `Err` says why not.
    pub(crate) fn probe(
        sandbox_root: &Path,
        path_env: &str,
        limits: &JobLimits,
    ) -> Result<Hermetic, String> {
        let host = HostView::new(sandbox_root)?;
        let program = find_on_path("true", path_env)
            .or_else(|| find_on_path("true", "/usr/bin:/bin"))
            .map(|(path, _)| path)
            .ok_or_else(|| "no `true` to probe the sandbox with on PATH".to_owned())?;
        let mut hermetic = Hermetic {
            host,
            pid_max_works: true,
        };
        match hermetic.try_probe(&program, sandbox_root, limits) {
            Err(Some(Stage::PidMax)) => {
                hermetic.pid_max_works = false;
                hermetic
                    .try_probe(&program, sandbox_root, limits)
                    .map_err(|_| "the probe failed".to_owned())?;
            }
            Err(_) => {
                // Run again for the words.
                return Err(hermetic.probe_error(&program, sandbox_root, limits));
            }
            Ok(()) => {}
        }
        Ok(hermetic)
    }

    /// Whether the process limit is counted by the job's pid namespace.
    pub(crate) fn counts_processes(&self) -> bool {
        self.pid_max_works
    }

    fn probe_spec<'a>(&self, sandbox_root: &'a Path, limits: &'a JobLimits) -> SpawnSpec<'a> {
        SpawnSpec {
            layout: None,
            has_deps: false,
            network: false,
            limits,
            pid_max_works: self.pid_max_works,
            cwd: "/",
            probe_root: Some(sandbox_root),
        }
    }

    /// One probe run; `Err` holds the stage that failed, when known.
    fn try_probe(
        &self,
        program: &Path,
        sandbox_root: &Path,
        limits: &JobLimits,
    ) -> Result<(), Option<Stage>> {
        let spec = self.probe_spec(sandbox_root, limits);
        let prepared = self.prepare(&spec).map_err(|_| None)?;
        let mut command = std::process::Command::new(program);
        command
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        prepared.install(&mut command);
        match command.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(_) => Err(None),
            Err(_) => Err(prepared.failed_stage()),
        }
    }

    fn probe_error(&self, program: &Path, sandbox_root: &Path, limits: &JobLimits) -> String {
        let spec = self.probe_spec(sandbox_root, limits);
        let prepared = match self.prepare(&spec) {
            Ok(prepared) => prepared,
            Err(reason) => return reason,
        };
        let mut command = std::process::Command::new(program);
        command
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        prepared.install(&mut command);
        match command.status() {
            Ok(status) if status.success() => "the probe failed once, then passed".to_owned(),
            Ok(status) => format!("`{}` in the sandbox ended with {status}", program.display()),
            Err(err) => match prepared.failure() {
                Some(SpawnFailure::Sandbox { what, fix }) => format!("cannot {what}; {fix}"),
                Some(SpawnFailure::WorkingDir { errno }) => format!(
                    "cannot enter `/` in the sandbox: {}",
                    std::io::Error::from_raw_os_error(errno)
                ),
                None => format!("cannot start `{}` in the sandbox: {err}", program.display()),
            },
        }
    }

    /// Makes a spawn ready: its plan and its report pipe.
    pub(crate) fn prepare(&self, spec: &SpawnSpec<'_>) -> Result<Prepared, String> {
        let (report, report_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| format!("cannot make a pipe: {e}"))?;
        let plan = SpawnPlan::new(&self.host, spec, report_write)?;
        Ok(Prepared {
            plan: Arc::new(plan),
            report,
        })
    }

    /// Whether `program` is in what a job sees: under a toolchain directory or `sandbox`.
    pub(crate) fn shows(&self, program: &Path, sandbox: &Path) -> bool {
        if program.starts_with(sandbox) {
            return true;
        }
        self.host.toolchain.iter().any(|entry| {
            let path = match entry {
                HostEntry::Dir { path, .. }
                | HostEntry::File { path, .. }
                | HostEntry::Symlink { path, .. } => path,
            };
            path.to_str().is_ok_and(|dir| program.starts_with(dir))
        })
    }

    /// The toolchain directories jobs see, for messages.
    pub(crate) fn toolchain_list(&self) -> String {
        let names: Vec<String> = self
            .host
            .toolchain
            .iter()
            .map(|entry| match entry {
                HostEntry::Dir { path, .. }
                | HostEntry::File { path, .. }
                | HostEntry::Symlink { path, .. } => format!("`{}`", path.to_string_lossy()),
            })
            .collect();
        names.join(", ")
    }
}

impl Prepared {
    /// Installs the child side on `command`.
    #[allow(unsafe_code)]
    pub(crate) fn install(&self, command: &mut std::process::Command) {
        let plan = self.plan.clone();
        // SAFETY: the hook runs in the forked child before `exec`. It only reads `plan`, which
        // was made whole before the fork and is not changed by anyone, and makes only
        // async-signal-safe calls (system calls with prepared C strings and stack buffers; no
        // allocation, no lock): see `child.rs`.
        unsafe {
            command.pre_exec(move || super::child::enter(&plan));
        }
    }

    /// The stage the child side reported as failed, if any.
    fn failed_stage(&self) -> Option<Stage> {
        self.read_report().map(|(stage, _, _)| stage)
    }

    fn read_report(&self) -> Option<(Stage, u32, i32)> {
        let mut bytes = [0u8; 12];
        let mut filled = 0;
        while filled < bytes.len() {
            match read(self.report.as_fd(), &mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if filled < bytes.len() {
            return None;
        }
        let word = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[at..at + 4]);
            word
        };
        let stage = Stage::from_u32(u32::from_le_bytes(word(0)))?;
        Some((
            stage,
            u32::from_le_bytes(word(4)),
            i32::from_le_bytes(word(8)),
        ))
    }

    /// After a failed spawn: which step of the sandbox failed, or `None` when they all worked
    /// (the `exec` itself failed).
    pub(crate) fn failure(&self) -> Option<SpawnFailure> {
        let (stage, index, errno) = self.read_report()?;
        if stage == Stage::WorkingDir {
            return Some(SpawnFailure::WorkingDir { errno });
        }
        let (what, fix) = self.plan.describe(stage, index, errno);
        Some(SpawnFailure::Sandbox { what, fix })
    }
}
