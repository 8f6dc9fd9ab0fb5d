//! The child side of a hermetic spawn: what runs in the process `std` forked for the job,
//! between `fork` and `exec`, from a [`SpawnPlan`] made before the fork.
//!
//! Three processes, each with one job:
//!
//! ```text
//! daemon ── fork ──> middle ── fork ──> init (pid 1) ── fork ──> job (pid 2) ── exec
//!            (std)   host pid namespace, new user/mount/net/IPC/UTS namespaces
//! ```
//!
//! 1. The middle process (the child `std` made, leader of the job's process group) unshares
//!    every namespace, maps the daemon's uid and gid to [`JOB_UID`](super::plan::JOB_UID),
//!    forks the init, closes every file but 0-2 (so the daemon's `spawn`, which waits for its
//!    close-on-exec pipe to close, returns as soon as the job has exec'd), waits for the init
//!    and ends as the job ended: the same exit code, or the same signal.
//! 2. The init is pid 1 of the new pid namespace. It builds the job's root (the plan's steps),
//!    `pivot_root`s into it, sets the process limit and makes `/proc` read-only, forks the job,
//!    and reaps every process until the job ends; then it hands the job's status to the middle
//!    process and exits, and with it every process left in the namespace dies. It is there so
//!    that the job is not pid 1 itself, which ignores the signals it has no handler for
//!    (`kill -9 $$` would do nothing) and inherits every orphan.
//! 3. The job sets its resource limits and `no_new_privs`, enters its working directory, marks
//!    every file but 0-2 close-on-exec, and returns to `std`, which execs the program.
//!
//! A step that fails writes `(stage, step index, errno)` to the plan's report pipe and returns
//! the errno to `std`, which reports it to the daemon through its own pipe.
//!
//! Everything here is async-signal-safe: system calls through `nix` with paths that are C
//! strings already, fixed-size buffers on the stack, no allocation, no lock.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::unshare;
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigHandler, Signal, raise, signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, mkdir, pipe2, pivot_root, read, symlinkat, write};

use super::plan::{HOSTNAME, SpawnPlan, Stage, Step};

/// `close_range(2)`'s flag that marks the files close-on-exec instead of closing them.
const CLOSE_RANGE_CLOEXEC: u32 = 4;

/// Runs in the child `std` forked for the job (the middle process); returns in the job's own
/// process, ready for `exec`. See the module documentation.
pub(crate) fn enter(plan: &SpawnPlan) -> io::Result<()> {
    default_signals();
    let fail = |stage: Stage, index: usize, errno: Errno| report(plan, stage, index, errno);
    unshare(plan.clone_flags).map_err(|e| fail(Stage::Unshare, 0, e))?;
    write_file(c"/proc/self/setgroups", b"deny").map_err(|e| fail(Stage::SetGroups, 0, e))?;
    write_file(c"/proc/self/uid_map", &plan.uid_map).map_err(|e| fail(Stage::UidMap, 0, e))?;
    write_file(c"/proc/self/gid_map", &plan.gid_map).map_err(|e| fail(Stage::GidMap, 0, e))?;
    let (status_read, status_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| fail(Stage::StatusPipe, 0, e))?;
    match fork_here().map_err(|e| fail(Stage::ForkInit, 0, e))? {
        ForkResult::Parent { child } => {
            drop(status_write);
            middle(child, status_read)
        }
        ForkResult::Child => drop(status_read),
    }

    // The init, pid 1 of the job's pid namespace. If the middle process is killed on its
    // own, so is the init, and with it the namespace.
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    for (index, step) in plan.steps.iter().enumerate() {
        run_step(step).map_err(|e| fail(Stage::Step, index, e))?;
    }
    chdir(plan.new_root.as_c_str()).map_err(|e| fail(Stage::PivotRoot, 0, e))?;
    pivot_root(c".", c".").map_err(|e| fail(Stage::PivotRoot, 0, e))?;
    umount2(c".", MntFlags::MNT_DETACH).map_err(|e| fail(Stage::DetachOldRoot, 0, e))?;
    chdir(c"/").map_err(|e| fail(Stage::DetachOldRoot, 0, e))?;
    if let Some(pid_max) = &plan.pid_max {
        write_file(c"/proc/sys/kernel/pid_max", pid_max).map_err(|e| fail(Stage::PidMax, 0, e))?;
    }
    // Nothing in `/proc` is for a job to write: the kernel's settings of `/proc/sys` check
    // only the writer's uid, which is the daemon's.
    let proc_flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(
        None::<&CStr>,
        c"/proc",
        None::<&CStr>,
        proc_flags,
        None::<&CStr>,
    )
    .map_err(|e| fail(Stage::ProcReadOnly, 0, e))?;
    nix::unistd::sethostname(HOSTNAME).map_err(|e| fail(Stage::Hostname, 0, e))?;
    match fork_here().map_err(|e| fail(Stage::ForkJob, 0, e))? {
        ForkResult::Parent { child } => init(child, status_write),
        ForkResult::Child => drop(status_write),
    }

    // The job.
    for &(resource, limit) in &plan.rlimits {
        set_limit(resource, limit).map_err(|e| fail(Stage::Limits, 0, e))?;
    }
    prctl::set_no_new_privs().map_err(|e| fail(Stage::NoNewPrivs, 0, e))?;
    chdir(plan.cwd.as_c_str()).map_err(|e| fail(Stage::WorkingDir, 0, e))?;
    if !close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC) {
        mark_cloexec_from(3).map_err(|e| fail(Stage::CloseFds, 0, e))?;
    }
    Ok(())
}

/// Writes the failed stage to the report pipe, and returns the error for `std`.
fn report(plan: &SpawnPlan, stage: Stage, index: usize, errno: Errno) -> io::Error {
    let mut message = [0u8; 12];
    message[..4].copy_from_slice(&(stage as u32).to_le_bytes());
    message[4..8].copy_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_le_bytes());
    message[8..].copy_from_slice(&(errno as i32).to_le_bytes());
    // A pipe takes 12 bytes at once; if this fails, `std` still reports the errno.
    let _ = write(plan.report.as_fd(), &message);
    io::Error::from_raw_os_error(errno as i32)
}

fn run_step(step: &Step) -> nix::Result<()> {
    let none = None::<&CStr>;
    match step {
        Step::Dir { path } => match mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        },
        Step::File { path } => {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC;
            open(path.as_c_str(), flags, Mode::from_bits_truncate(0o644)).map(drop)
        }
        Step::Write { path, contents } => {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
            let file = open(path.as_c_str(), flags, Mode::from_bits_truncate(0o644))?;
            write_all(&file, contents)
        }
        Step::Symlink { target, path } => symlinkat(target.as_c_str(), AT_FDCWD, path.as_c_str()),
        Step::Bind { source, target } => mount(
            Some(source.as_c_str()),
            target.as_c_str(),
            none,
            MsFlags::MS_BIND,
            none,
        ),
        Step::ReadOnly { target, flags } => mount(
            none,
            target.as_c_str(),
            none,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | *flags,
            none,
        ),
        Step::Tmpfs { target } => mount(
            Some(c"tmpfs"),
            target.as_c_str(),
            Some(c"tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(c"mode=0755,size=1m,nr_inodes=4096"),
        ),
        Step::Proc { target } => mount(
            Some(c"proc"),
            target.as_c_str(),
            Some(c"proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            none,
        ),
    }
}

/// Writes `contents` to the existing file `path` (a file of `/proc`).
fn write_file(path: &CStr, contents: &[u8]) -> nix::Result<()> {
    let file = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    write_all(&file, contents)
}

fn write_all(file: &OwnedFd, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match write(file.as_fd(), bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets both the soft and the hard limit of `resource` to `limit`, or to the hard limit the
/// daemon has when that is lower (an unprivileged process cannot raise it).
fn set_limit(resource: Resource, limit: u64) -> nix::Result<()> {
    let (_, hard) = getrlimit(resource)?;
    let limit = limit.min(hard);
    setrlimit(resource, limit, limit)
}

/// How the job ended, as the init tells the middle process: `[0, code]` or `[1, signal]`.
fn encode(status: WaitStatus) -> Option<[u8; 8]> {
    let (kind, value): (u32, i32) = match status {
        WaitStatus::Exited(_, code) => (0, code),
        WaitStatus::Signaled(_, signal, _) => (1, signal as i32),
        _ => return None,
    };
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&kind.to_le_bytes());
    bytes[4..].copy_from_slice(&value.to_le_bytes());
    Some(bytes)
}

/// The middle process: waits for the init and ends as the job did.
fn middle(init: Pid, status_read: OwnedFd) -> ! {
    close_all_but(status_read.as_raw_fd());
    let init_status = loop {
        match waitpid(init, None) {
            Err(Errno::EINTR) => {}
            other => break other.ok(),
        }
    };
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match read(status_read.as_fd(), &mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    let (kind, value) = if filled == bytes.len() {
        let word = |range: std::ops::Range<usize>| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[range]);
            word
        };
        (
            u32::from_le_bytes(word(0..4)),
            i32::from_le_bytes(word(4..8)),
        )
    } else {
        // The init died before it could tell (killed with the process group): end the same.
        match init_status {
            Some(WaitStatus::Exited(_, code)) => (0, code),
            Some(WaitStatus::Signaled(_, signal, _)) => (1, signal as i32),
            _ => (0, 127),
        }
    };
    if kind == 1
        && let Ok(signal) = Signal::try_from(value)
    {
        die_by(signal);
    }
    exit_now(value)
}

/// The init: reaps every process of the namespace until the job ends, then tells the middle
/// process how it ended and exits (which kills whatever is left in the namespace).
fn init(job: Pid, status_write: OwnedFd) -> ! {
    close_all_but(status_write.as_raw_fd());
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(job) => {
                if let Some(bytes) = encode(status) {
                    let _ = write_all(&status_write, &bytes);
                }
                exit_now(0);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => exit_now(127),
        }
    }
}

/// Ends this process by `signal`, as the job ended, without a core dump.
fn die_by(signal: Signal) -> ! {
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    set_default(signal);
    let _ = raise(signal);
    exit_now(128 + signal as i32)
}

/// Closes every file from 3 up but `keep`.
fn close_all_but(keep: RawFd) {
    let keep = u32::try_from(keep).unwrap_or(u32::MAX);
    let ok = (keep <= 3 || close_range(3, keep - 1, 0))
        && (keep == u32::MAX || close_range(keep + 1, u32::MAX, 0));
    if !ok {
        let last = open_files_limit();
        for fd in 3..last {
            if fd != keep {
                close_raw(fd);
            }
        }
    }
}

/// Marks every file from `first` up close-on-exec, one by one (kernels before 5.11).
fn mark_cloexec_from(first: u32) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use std::os::fd::BorrowedFd;
    for fd in first..open_files_limit() {
        let Ok(raw) = RawFd::try_from(fd) else { break };
        // SAFETY: the descriptor is only used for this one `fcntl`, which fails with `EBADF`
        // when nothing is open there; nothing closes it meanwhile (one thread).
        #[allow(unsafe_code)]
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        match fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            Ok(_) | Err(Errno::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The highest file number to try when `close_range` is missing: the soft limit, at most
/// 65,536.
fn open_files_limit() -> u32 {
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| u32::try_from(soft.min(65_536)).unwrap_or(65_536))
        .unwrap_or(1024)
}

/// `fork(2)`.
#[allow(unsafe_code)]
fn fork_here() -> nix::Result<ForkResult> {
    // SAFETY: this process is already the single-threaded child of a fork (std's pre-exec
    // hook), so no lock can be held by another thread; both sides of this fork go on with
    // async-signal-safe calls only, up to `exec` or `_exit`.
    unsafe { nix::unistd::fork() }
}

/// Resets every signal to its default action (the daemon's runtime handles some; an ignored
/// signal would stay ignored across `exec`).
#[allow(unsafe_code)]
fn default_signals() {
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installs no handler (only the default action), so no Rust code can run
            // in a signal context.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
}

fn set_default(sig: Signal) {
    #[allow(unsafe_code)]
    // SAFETY: as in `default_signals`.
    let _ = unsafe { signal(sig, SigHandler::SigDfl) };
}

/// `close_range(2)`; false when the kernel does not have it (before 5.9, or 5.11 for the
/// close-on-exec flag).
#[allow(unsafe_code)]
fn close_range(first: u32, last: u32, flags: u32) -> bool {
    // SAFETY: a system call on integers; the files it closes are this (single-threaded,
    // forked) process's own, and none of them is used afterwards but the one kept.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) == 0 }
}

fn close_raw(fd: u32) {
    if let Ok(fd) = libc::c_int::try_from(fd) {
        #[allow(unsafe_code)]
        // SAFETY: closes a file of this single-threaded forked process that nothing uses.
        unsafe {
            libc::close(fd);
        }
    }
}

/// `_exit(2)`: ends this process without running anything of the daemon's (no `atexit`
/// handlers, no destructors, no flush of the daemon's buffers).
#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and touches no memory.
    unsafe { libc::_exit(code) }
}
