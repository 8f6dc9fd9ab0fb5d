//! What a run is asked to do ([`RunRequest`]) and what it came to ([`RunOutcome`], with a
//! [`CmdFailure`] when the job failed on its own).

use std::time::Duration;

use weft_protocol::{ActionResult, Digest, Job, JobId, NodeId};

/// One job to run.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    /// The job's id.
    pub id: JobId,
    /// The job.
    pub job: &'a Job,
    /// The output tree (`ActionResult::output_tree`) of each of the job's deps; every dep of
    /// the job must be here, and its tree in the store.
    pub deps: &'a [(JobId, Digest)],
    /// The longest the commands may run together; the whole process group of the running
    /// command is killed when it is over. The wall-time limit of
    /// [`JobLimits`](super::JobLimits) applies when this is `None` or longer.
    pub timeout: Option<Duration>,
    /// This node, recorded as the result's `executed_by`.
    pub node: NodeId,
    /// The job is a peer's (stolen): it runs in the hermetic sandbox or not at all
    /// ([`ExecError::PeerJobRefused`](super::ExecError::PeerJobRefused)), and never with the
    /// network.
    pub peer: bool,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The result, unsigned (the caller signs it):
    /// - `exit_code`: that of the last command that ran (0 for `cat`); -1 when a signal or the
    ///   executor ended the job (timeout, missing tool, missing out, escaping output);
    /// - `outputs` and `output_tree`: what was left under `out/` (empty for a job whose
    ///   command failed: its outputs are not collected);
    /// - `stdout` and `stderr`: the digests of the blobs holding the commands' streams;
    /// - `duration_ms`: the time the commands ran, without sandbox set-up and collection.
    pub result: ActionResult,
    /// Why the job failed; `None` when it succeeded.
    pub failure: Option<CmdFailure>,
}

impl RunOutcome {
    /// Whether the job succeeded.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdFailure {
    /// The command that failed, as an index into `Job::cmds`; `cmds.len()` for a failure found
    /// after all commands ran (a missing or escaping output).
    pub cmd_index: usize,
    /// The failing `exec` command's argv, rendered; empty for `cat` and for failures after
    /// the commands.
    pub argv: Vec<String>,
    /// The process's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// What went wrong, such as `exited with code 1`, `killed by signal 9`,
    /// `timed out after 5s`, ``declared out `x` is missing`` or
    /// ``cannot start `cc`: not found on PATH (/usr/bin:/bin)``.
    pub message: String,
    /// The last lines of the job's stderr (at most 20 lines and 4 KiB).
    pub stderr_tail: String,
}

impl std::fmt::Display for CmdFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.argv.is_empty() {
            write!(f, "command {}: {}", self.cmd_index, self.message)
        } else {
            write!(
                f,
                "command {} (`{}`): {}",
                self.cmd_index,
                self.argv.join(" "),
                self.message
            )
        }
    }
}
