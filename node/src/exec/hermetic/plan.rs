//! [`SpawnPlan`]: everything the child side needs to build a job's namespaces and root, made
//! before the fork (every path a C string, every file's contents in memory), and the words for
//! each step that can fail.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;

use super::host::{HostEntry, HostView, c_path};
use crate::exec::limits::JobLimits;
use crate::exec::sandbox::Layout;

/// The job's uid and gid inside its user namespace: the daemon's own are mapped to them. One
/// fixed, unprivileged identity on every machine: outputs that record an owner (`tar`, `ar`
/// without `D`) come out the same everywhere, and a job never runs as root of its namespace,
/// so it holds no capability in it after `execve`.
pub(crate) const JOB_UID: u32 = 1000;

/// The job's host name (its own UTS namespace).
pub(crate) const HOSTNAME: &str = "weft";

/// One step of building the job's root, run by the job's init process before `pivot_root`.
#[derive(Debug)]
pub(crate) enum Step {
    /// `mkdir(path, 0755)`; an existing directory is fine.
    Dir { path: CString },
    /// An empty file to bind a file onto.
    File { path: CString },
    /// A file with these contents (`passwd`, `group`).
    Write { path: CString, contents: Vec<u8> },
    /// A symlink.
    Symlink { target: CString, path: CString },
    /// A bind mount (not recursive).
    Bind { source: CString, target: CString },
    /// A read-only remount of the bind at `target`, with `flags` besides (the source mount's
    /// locked flags, `nosuid` and the like).
    ReadOnly { target: CString, flags: MsFlags },
    /// The new root: a small tmpfs.
    Tmpfs { target: CString },
    /// A fresh `/proc` of the job's pid namespace.
    Proc { target: CString },
}

/// Where the child side stopped, sent back over the report pipe as three `u32`/`i32` words:
/// the stage, the step index (for [`Stage::Step`]) and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    Unshare = 1,
    SetGroups = 2,
    UidMap = 3,
    GidMap = 4,
    StatusPipe = 5,
    ForkInit = 6,
    Step = 7,
    PivotRoot = 8,
    DetachOldRoot = 9,
    PidMax = 10,
    ProcReadOnly = 11,
    Hostname = 12,
    ForkJob = 13,
    Limits = 14,
    NoNewPrivs = 15,
    WorkingDir = 16,
    CloseFds = 17,
}

impl Stage {
    pub(crate) fn from_u32(n: u32) -> Option<Stage> {
        use Stage::*;
        [
            Unshare,
            SetGroups,
            UidMap,
            GidMap,
            StatusPipe,
            ForkInit,
            Step,
            PivotRoot,
            DetachOldRoot,
            PidMax,
            ProcReadOnly,
            Hostname,
            ForkJob,
            Limits,
            NoNewPrivs,
            WorkingDir,
            CloseFds,
        ]
        .into_iter()
        .find(|stage| *stage as u32 == n)
    }
}

/// What one spawn needs on the child side. Built in the daemon; the child only reads it.
#[derive(Debug)]
pub(crate) struct SpawnPlan {
    /// The namespaces to make: all of them, but the network for a job that may use it.
    pub(crate) clone_flags: CloneFlags,
    /// `deny`, then the uid and gid maps, for `/proc/self/{setgroups,uid_map,gid_map}`.
    pub(crate) uid_map: Vec<u8>,
    pub(crate) gid_map: Vec<u8>,
    /// The new root's mount point on the host, and where `pivot_root` goes.
    pub(crate) new_root: CString,
    /// Building the root, in order.
    pub(crate) steps: Vec<Step>,
    /// What to write to the job's `/proc/sys/kernel/pid_max` (the process limit), if anything.
    pub(crate) pid_max: Option<Vec<u8>>,
    /// The limits of the job's processes.
    pub(crate) rlimits: Vec<(Resource, u64)>,
    /// The job's working directory, in its new root (the same path as on the host).
    pub(crate) cwd: CString,
    /// The write end of the report pipe (close-on-exec): where a failing step says which it
    /// was.
    pub(crate) report: OwnedFd,
}

/// What a hermetic spawn is asked for.
pub(crate) struct SpawnSpec<'a> {
    /// The sandbox, or `None` for the probe (which sees the toolchain only).
    pub(crate) layout: Option<&'a Layout>,
    /// Whether `deps/` is there to bind.
    pub(crate) has_deps: bool,
    /// The job may use the host's network.
    pub(crate) network: bool,
    pub(crate) limits: &'a JobLimits,
    /// Whether the kernel counts processes in the job's pid namespace (`pid_max`).
    pub(crate) pid_max_works: bool,
    pub(crate) cwd: &'a str,
    /// The probe binds the sandbox root itself, to see that its file system can be bound.
    pub(crate) probe_root: Option<&'a Path>,
}

/// The kernel's floor for a pid namespace's `pid_max`.
const PID_MAX_FLOOR: u64 = 301;

impl SpawnPlan {
    pub(crate) fn new(
        host: &HostView,
        spec: &SpawnSpec<'_>,
        report: OwnedFd,
    ) -> Result<SpawnPlan, String> {
        let mut clone_flags = CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS;
        if !spec.network {
            clone_flags |= CloneFlags::CLONE_NEWNET;
        }
        let root = host
            .mount_point
            .to_str()
            .map_err(|_| "the sandbox root is not UTF-8".to_owned())?
            .to_owned();
        let inside = |path: &CStr| -> Result<CString, String> {
            let mut bytes = root.as_bytes().to_vec();
            bytes.extend_from_slice(path.to_bytes());
            CString::new(bytes).map_err(|_| "a path holds a NUL byte".to_owned())
        };
        let text = |path: &str| -> Result<CString, String> {
            CString::new(path).map_err(|_| format!("the path `{path}` holds a NUL byte"))
        };
        let mut steps = vec![Step::Tmpfs {
            target: host.mount_point.clone(),
        }];
        let add = |entry: &HostEntry, extra: MsFlags, steps: &mut Vec<Step>| {
            match entry {
                HostEntry::Symlink { path, target } => steps.push(Step::Symlink {
                    target: target.clone(),
                    path: inside(path)?,
                }),
                HostEntry::Dir { path, flags } | HostEntry::File { path, flags } => {
                    let target = inside(path)?;
                    steps.push(if matches!(entry, HostEntry::Dir { .. }) {
                        Step::Dir {
                            path: target.clone(),
                        }
                    } else {
                        Step::File {
                            path: target.clone(),
                        }
                    });
                    steps.push(Step::Bind {
                        source: path.clone(),
                        target: target.clone(),
                    });
                    steps.push(Step::ReadOnly {
                        target,
                        flags: *flags | extra,
                    });
                }
            }
            Ok::<(), String>(())
        };
        let plain = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        for entry in &host.toolchain {
            add(entry, plain, &mut steps)?;
        }
        steps.push(Step::Dir {
            path: inside(c"/etc")?,
        });
        for entry in &host.etc {
            add(entry, plain, &mut steps)?;
        }
        if spec.network {
            for entry in &host.network_etc {
                add(entry, plain, &mut steps)?;
            }
        }
        let home = spec.layout.map_or("/", |layout| layout.tmp.as_str());
        steps.push(Step::Write {
            path: inside(c"/etc/passwd")?,
            contents: format!(
                "root:x:0:0:root:/:/usr/sbin/nologin\n\
                 weft:x:{JOB_UID}:{JOB_UID}:weft job:{home}:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            )
            .into_bytes(),
        });
        steps.push(Step::Write {
            path: inside(c"/etc/group")?,
            contents: format!("root:x:0:\nweft:x:{JOB_UID}:\nnogroup:x:65534:\n").into_bytes(),
        });
        steps.push(Step::Dir {
            path: inside(c"/dev")?,
        });
        for device in &host.devices {
            add(device, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, &mut steps)?;
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            steps.push(Step::Symlink {
                target: text(target)?,
                path: inside(&text(&format!("/dev/{name}"))?)?,
            });
        }
        steps.push(Step::Dir {
            path: inside(c"/proc")?,
        });
        steps.push(Step::Proc {
            target: inside(c"/proc")?,
        });
        let sandbox_ro = host.sandbox_flags | plain;
        if let Some(root_dir) = spec.probe_root {
            let path = c_path(root_dir)?;
            push_parents(&mut steps, root.len(), &inside(&path)?)?;
            steps.push(Step::Bind {
                source: path,
                target: inside(&c_path(root_dir)?)?,
            });
            steps.push(Step::ReadOnly {
                target: inside(&c_path(root_dir)?)?,
                flags: sandbox_ro,
            });
        }
        if let Some(layout) = spec.layout {
            let deps = format!("{}/deps", layout.root);
            push_parents(&mut steps, root.len(), &inside(&text(&layout.root)?)?)?;
            let dirs: [(&str, bool); 4] = [
                (&layout.src, true),
                (&deps, true),
                (&layout.out, false),
                (&layout.tmp, false),
            ];
            for (dir, read_only) in dirs {
                if dir == deps && !spec.has_deps {
                    continue;
                }
                let source = text(dir)?;
                let target = inside(&source)?;
                steps.push(Step::Dir {
                    path: target.clone(),
                });
                steps.push(Step::Bind {
                    source,
                    target: target.clone(),
                });
                if read_only {
                    steps.push(Step::ReadOnly {
                        target,
                        flags: sandbox_ro,
                    });
                }
            }
        }
        steps.push(Step::ReadOnly {
            target: host.mount_point.clone(),
            flags: plain,
        });

        let limits = spec.limits;
        let mut rlimits = vec![(Resource::RLIMIT_CORE, 0)];
        if let Some(bytes) = limits.memory_bytes {
            rlimits.push((Resource::RLIMIT_AS, bytes));
        }
        if let Some(bytes) = limits.output_bytes {
            rlimits.push((Resource::RLIMIT_FSIZE, bytes));
        }
        let mut pid_max = None;
        if let Some(n) = limits.max_processes {
            // The job's init and the process between it and the daemon are in its user
            // namespace too.
            rlimits.push((Resource::RLIMIT_NPROC, n.saturating_add(2)));
            if spec.pid_max_works {
                // Pids 1 (the init) to pid_max - 1.
                let max = n.saturating_add(2).max(PID_MAX_FLOOR);
                pid_max = Some(format!("{max}\n").into_bytes());
            }
        }
        Ok(SpawnPlan {
            clone_flags,
            uid_map: format!("{JOB_UID} {} 1\n", host.uid).into_bytes(),
            gid_map: format!("{JOB_UID} {} 1\n", host.gid).into_bytes(),
            new_root: host.mount_point.clone(),
            steps,
            pid_max,
            rlimits,
            cwd: text(spec.cwd)?,
            report,
        })
    }

    /// What failed, in words, and what to do about it.
    pub(crate) fn describe(&self, stage: Stage, index: u32, errno: i32) -> (String, &'static str) {
        let err = std::io::Error::from_raw_os_error(errno);
        let fix_kernel = "allow user namespaces (`sysctl kernel.unprivileged_userns_clone=1`, \
                          `sysctl user.max_user_namespaces=10000`; AppArmor's \
                          `kernel.apparmor_restrict_unprivileged_userns=0`), or run the daemon \
                          where they are allowed";
        let report_bug = "this is a bug of weft's sandbox on this kernel: please report it";
        let show = |c: &CStr| c.to_string_lossy().into_owned();
        let (what, fix) = match stage {
            Stage::Unshare => (
                "create the job's user, mount, pid, network, IPC and UTS namespaces (`unshare`)"
                    .to_owned(),
                fix_kernel,
            ),
            Stage::SetGroups | Stage::UidMap | Stage::GidMap => (
                format!(
                    "map the daemon's user to the job's (`/proc/self/{}`)",
                    match stage {
                        Stage::SetGroups => "setgroups",
                        Stage::UidMap => "uid_map",
                        _ => "gid_map",
                    }
                ),
                fix_kernel,
            ),
            Stage::StatusPipe | Stage::ForkInit | Stage::ForkJob => (
                "start the job's init process in its pid namespace (`fork`)".to_owned(),
                "the machine may be out of processes or memory; try again",
            ),
            Stage::Step => match self.steps.get(index as usize) {
                Some(Step::Tmpfs { target }) => (
                    format!("mount the job's new root (a tmpfs) at `{}`", show(target)),
                    report_bug,
                ),
                Some(Step::Proc { target }) => (
                    format!(
                        "mount a `/proc` for the job's pid namespace at `{}`",
                        show(target)
                    ),
                    "the kernel refuses a new `/proc` where the host's is partly hidden (as in \
                     some containers); run the daemon where `/proc` is not masked",
                ),
                Some(Step::Bind { source, target }) => (
                    format!("bind `{}` at `{}`", show(source), show(target)),
                    "check that it exists and that the daemon's user can read it",
                ),
                Some(Step::ReadOnly { target, flags }) => (
                    format!("remount `{}` read-only (with {flags:?})", show(target)),
                    report_bug,
                ),
                Some(Step::Dir { path }) => {
                    (format!("create the directory `{}`", show(path)), report_bug)
                }
                Some(Step::File { path }) | Some(Step::Write { path, .. }) => {
                    (format!("create the file `{}`", show(path)), report_bug)
                }
                Some(Step::Symlink { target, path }) => (
                    format!("create the symlink `{}` -> `{}`", show(path), show(target)),
                    report_bug,
                ),
                None => (format!("step {index} of the sandbox"), report_bug),
            },
            Stage::PivotRoot | Stage::DetachOldRoot => (
                format!(
                    "make `{}` the job's root (`pivot_root`) and detach the old one",
                    show(&self.new_root)
                ),
                report_bug,
            ),
            Stage::PidMax => (
                "limit the job's processes (`/proc/sys/kernel/pid_max` of its pid namespace)"
                    .to_owned(),
                report_bug,
            ),
            Stage::ProcReadOnly => ("make the job's `/proc` read-only".to_owned(), report_bug),
            Stage::Hostname => ("set the job's host name".to_owned(), report_bug),
            Stage::Limits => (
                "set the job's resource limits (`setrlimit`)".to_owned(),
                "lower the `[job_limits]` of the daemon's `config.toml` under the hard limits \
                 the daemon was started with",
            ),
            Stage::NoNewPrivs => ("set `no_new_privs` for the job".to_owned(), report_bug),
            Stage::WorkingDir => (
                format!("enter the working directory `{}`", show(&self.cwd)),
                report_bug,
            ),
            Stage::CloseFds => ("close the daemon's files in the job".to_owned(), report_bug),
        };
        (format!("{what}: {err}"), fix)
    }
}

/// Steps that make every directory above `path` (a path inside the new root, whose mount point
/// is its first `root_len` bytes), and `path`.
fn push_parents(steps: &mut Vec<Step>, root_len: usize, path: &CStr) -> Result<(), String> {
    let bytes = path.to_bytes();
    for (i, &byte) in bytes.iter().enumerate().skip(root_len + 1) {
        if byte == b'/' {
            steps.push(Step::Dir {
                path: CString::new(&bytes[..i]).map_err(|_| "NUL in a path".to_owned())?,
            });
        }
    }
    steps.push(Step::Dir {
        path: path.to_owned(),
    });
    Ok(())
}
