//! [`JobLimits`]: what one job may use, and the words a job that hit a limit is failed with.
//!
//! How each is enforced, in the hermetic sandbox (the weak one has the wall time and the output
//! size only):
//! - wall time: the executor kills the job's process group when it is over;
//! - memory: `RLIMIT_AS` of the job's processes (address space, so a little above what they
//!   touch). cgroup v2's `memory.max` would count what they touch instead, but a daemon may make
//!   a cgroup only where the machine delegated one to it, which neither a developer's login
//!   session nor a container usually does; `RLIMIT_AS` works everywhere;
//! - processes: the `pid_max` of the job's own pid namespace (Linux 6.14 and later), which
//!   counts every process of the job whatever its user; the kernel's floor is 301, so a limit
//!   under 299 is 299 there. Where the kernel cannot, `RLIMIT_NPROC`, which in a user namespace
//!   of its own counts the job's processes only, but which the kernel does not apply to a
//!   daemon running as root. A cgroup's `pids.max` has the delegation problem of `memory.max`;
//! - output size: `RLIMIT_FSIZE` (no file the job writes, its streams included, may grow past
//!   it: the writer gets `SIGXFSZ`), and the total under `out/` is checked afterwards.

use std::time::Duration;

/// What one job may use. Every limit has a default that a compile never hits; `None` turns a
/// limit off. Set in the daemon's `config.toml`, table `[job_limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimits {
    /// The longest a job's commands may run together, when its build does not ask for less.
    /// Setting `job_limits.wall_secs`. Default: 2 hours.
    pub wall_time: Duration,
    /// The address space of each of a job's processes, in bytes. Setting
    /// `job_limits.memory_mib`. Default: 32 GiB.
    pub memory_bytes: Option<u64>,
    /// How many processes a job may have at once. Setting `job_limits.processes`. Default: 4096.
    pub max_processes: Option<u64>,
    /// The largest file a job may write, and the most its outputs may hold together, in bytes.
    /// Setting `job_limits.output_mib`. Default: 8 GiB.
    pub output_bytes: Option<u64>,
}

impl Default for JobLimits {
    fn default() -> JobLimits {
        JobLimits {
            wall_time: Duration::from_secs(2 * 3600),
            memory_bytes: Some(32 << 30),
            max_processes: Some(4096),
            output_bytes: Some(8 << 30),
        }
    }
}

/// The setting behind each limit, as failure messages name it.
pub(crate) const WALL_SETTING: &str = "`job_limits.wall_secs` in the daemon's `config.toml`";
pub(crate) const MEMORY_SETTING: &str = "`job_limits.memory_mib` in the daemon's `config.toml`";
pub(crate) const PROCESSES_SETTING: &str = "`job_limits.processes` in the daemon's `config.toml`";
pub(crate) const OUTPUT_SETTING: &str = "`job_limits.output_mib` in the daemon's `config.toml`";

/// `n` bytes in MiB, for messages.
pub(crate) fn mib(n: u64) -> String {
    let mib = n as f64 / f64::from(1u32 << 20);
    if mib.fract() == 0.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

impl JobLimits {
    /// What to add to the message of a failed job whose stderr ends with `stderr_tail`, when
    /// that looks like one of its processes hit the memory or the process limit: those limits
    /// make a call fail (`ENOMEM`, `EAGAIN`) rather than kill, so the program's own words are
    /// the only sign.
    pub(crate) fn hint(&self, stderr_tail: &str) -> Option<String> {
        let text = stderr_tail.to_ascii_lowercase();
        let forked = text.contains("fork")
            && ["cannot fork", "resource temporarily unavailable", "retry"]
                .iter()
                .any(|s| text.contains(s));
        if forked && let Some(max) = self.max_processes {
            return Some(format!(
                "the job may have hit its limit of {max} processes ({PROCESSES_SETTING})"
            ));
        }
        let memory = [
            "out of memory",
            "cannot allocate memory",
            "memory exhausted",
            "bad_alloc",
            "memoryerror",
            "memory allocation of",
            "failed to allocate",
        ]
        .iter()
        .any(|s| text.contains(s));
        if memory && let Some(max) = self.memory_bytes {
            return Some(format!(
                "the job may have hit its memory limit of {} ({MEMORY_SETTING})",
                mib(max)
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_limit_and_the_setting() {
        let limits = JobLimits::default();
        let cases = [
            ("sh: 1: Cannot fork", Some("4096 processes")),
            (
                "bash: fork: retry: Resource temporarily unavailable",
                Some("4096 processes"),
            ),
            (
                "cc1: out of memory allocating 65536 bytes",
                Some("32768 MiB"),
            ),
            ("MemoryError", Some("32768 MiB")),
            ("error: expected `;`", None),
        ];
        for (stderr, wanted) in cases {
            let hint = limits.hint(stderr);
            match wanted {
                None => assert_eq!(hint, None, "{stderr}"),
                Some(wanted) => {
                    let hint = hint.expect(stderr);
                    assert!(
                        hint.contains(wanted) && hint.contains("job_limits."),
                        "{hint}"
                    );
                }
            }
        }
        assert_eq!(mib(3 << 19), "1.5 MiB");
    }
}
