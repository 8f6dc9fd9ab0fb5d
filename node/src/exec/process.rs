//! Processes: each command runs as the leader of its own process group, and the whole group is
//! killed when the command times out, when its run is cancelled, and after the leader exits
//! (so that nothing it left running in the background outlives the command).

use std::io;

/// The process group of a running command. Dropping it kills the group: that is how a
/// cancelled run (its future dropped) takes its processes down with it.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: Option<i32>,
}

impl ProcessGroup {
    /// The group led by the process `pid`, which was spawned with `process_group(0)`.
    pub(crate) fn led_by(pid: Option<u32>) -> ProcessGroup {
        ProcessGroup {
            pgid: pid.and_then(|pid| i32::try_from(pid).ok()),
        }
    }

    /// Sends `SIGKILL` to every process in the group.
    pub(crate) fn kill(&self) {
        if let Some(pgid) = self.pgid
            && let Err(err) = kill_process_group(pgid)
        {
            tracing::warn!(pgid, %err, "cannot kill a process group");
        }
    }

    /// Kills what is left of the group and forgets it. Called once the leader has exited.
    ///
    /// The leader has been reaped by then, so its pid is free again; but a pid is not reused
    /// while a process group of that number has members, and a group with no members left
    /// makes the kill fail harmlessly. Only an unrelated new group leader that got the very
    /// same pid in the microseconds since the reap could be hit, which needs the whole pid
    /// space to wrap around in that time.
    pub(crate) fn finish(mut self) {
        self.kill();
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `SIGKILL` to the process group `pgid`. A group that is already gone is fine.
#[allow(unsafe_code)] // kill(2) has no safe wrapper in std; see the SAFETY note.
fn kill_process_group(pgid: i32) -> io::Result<()> {
    // Group 0 would be our own group, and -1 every process we may signal: never send those.
    if pgid <= 1 {
        return Ok(());
    }
    // SAFETY: kill(2) takes two integers and touches no memory of this process. `-pgid`
    // addresses exactly the process group `pgid` (> 1, checked above), which this module
    // created by spawning its leader with `process_group(0)`.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(err)
}
