//! [`HostView`]: what of the machine a hermetic job sees, looked up once when the executor
//! starts: the toolchain directories, the few files of `/etc` and `/dev`, and the mount flags
//! that the kernel locks on each of their mounts.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::statvfs::{FsFlags, statvfs};

/// The directories of the toolchain every job sees, read-only, when they exist: `/usr`, `/bin`,
/// and every `/lib*` of the root (`lib`, `lib32`, `lib64`, `libx32`). A symlink among them
/// (merged `/usr`: `/bin -> usr/bin`) is made again as the same symlink.
pub const TOOLCHAIN_DIRS: [&str; 2] = ["/usr", "/bin"];

/// The files under `/etc` that tools need, bound read-only when they exist: the dynamic
/// loader's cache and the `alternatives` links. `passwd` and `group` are written anew for the
/// job's ids.
const ETC_ENTRIES: [&str; 2] = ["/etc/ld.so.cache", "/etc/alternatives"];

/// What a job that may use the network gets in `/etc` besides: name resolution and
/// certificates.
const NETWORK_ETC_ENTRIES: [&str; 6] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
];

/// The devices a job gets.
pub(crate) const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"];

/// One thing of the host that a job sees.
#[derive(Debug, Clone)]
pub(crate) enum HostEntry {
    /// A directory, bound read-only; `flags` are its mount's locked flags.
    Dir { path: CString, flags: MsFlags },
    /// A file (or a device), bound read-only.
    File { path: CString, flags: MsFlags },
    /// A symlink, made again with the same target.
    Symlink { path: CString, target: CString },
}

/// What of the host jobs see, and how to mount it.
#[derive(Debug, Clone)]
pub(crate) struct HostView {
    /// The toolchain directories, `/usr` first.
    pub(crate) toolchain: Vec<HostEntry>,
    /// `/etc` entries for every job.
    pub(crate) etc: Vec<HostEntry>,
    /// `/etc` entries for jobs that may use the network.
    pub(crate) network_etc: Vec<HostEntry>,
    /// The devices.
    pub(crate) devices: Vec<HostEntry>,
    /// The locked flags of the sandbox root's mount.
    pub(crate) sandbox_flags: MsFlags,
    /// The empty directory the job's new root (a tmpfs) is mounted on, in the job's own mount
    /// namespace: `<sandbox_root>/.root`.
    pub(crate) mount_point: CString,
    /// The daemon's uid and gid, which the job's are mapped to.
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The name of the mount point under the sandbox root.
pub(crate) const MOUNT_POINT: &str = ".root";

impl HostView {
    /// Looks at the host. `Err` says why the hermetic sandbox cannot be had here.
    pub(crate) fn new(sandbox_root: &Path) -> Result<HostView, String> {
        let mut dirs: Vec<PathBuf> = TOOLCHAIN_DIRS.iter().map(PathBuf::from).collect();
        let mut libs: Vec<PathBuf> = fs::read_dir("/")
            .map_err(|e| format!("cannot list `/`: {e}"))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("lib"))
            })
            .collect();
        libs.sort();
        dirs.extend(libs);
        let mut toolchain = Vec::new();
        for dir in &dirs {
            if let Some(entry) = entry(dir, true)? {
                toolchain.push(entry);
            }
        }
        // A sandbox root inside a toolchain directory would show the whole daemon home.
        for dir in &dirs {
            let real = fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            if sandbox_root.starts_with(&real) {
                return Err(format!(
                    "the sandbox root `{}` lies inside the toolchain directory `{}`, which \
                     every job sees; move the daemon's home",
                    sandbox_root.display(),
                    dir.display()
                ));
            }
        }
        let collect = |paths: &[&str]| -> Result<Vec<HostEntry>, String> {
            let mut entries = Vec::new();
            for path in paths {
                if let Some(entry) = entry(Path::new(path), false)? {
                    entries.push(entry);
                }
            }
            Ok(entries)
        };
        let etc = collect(&ETC_ENTRIES)?;
        let network_etc = collect(&NETWORK_ETC_ENTRIES)?;
        let devices = collect(&DEVICES)?;
        if devices.len() != DEVICES.len() {
            return Err(format!(
                "one of {} is missing on this machine",
                DEVICES.join(", ")
            ));
        }
        let sandbox_flags = locked_flags(sandbox_root)?;
        let mount_point = sandbox_root.join(MOUNT_POINT);
        match fs::create_dir(&mount_point) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create `{}`: {e}", mount_point.display())),
        }
        let (uid, gid) = {
            use std::os::unix::fs::MetadataExt;
            let me =
                fs::metadata("/proc/self").map_err(|e| format!("cannot stat `/proc/self`: {e}"))?;
            (me.uid(), me.gid())
        };
        Ok(HostView {
            toolchain,
            etc,
            network_etc,
            devices,
            sandbox_flags,
            mount_point: c_path(&mount_point)?,
            uid,
            gid,
        })
    }
}

/// The host entry at `path`, or `None` when there is nothing there. Symlinks are kept as
/// symlinks when `keep_symlinks` (the merged-`/usr` links of the root), else followed.
fn entry(path: &Path, keep_symlinks: bool) -> Result<Option<HostEntry>, String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot stat `{}`: {e}", path.display())),
    };
    if meta.file_type().is_symlink() && keep_symlinks {
        let target =
            fs::read_link(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        return Ok(Some(HostEntry::Symlink {
            path: c_path(path)?,
            target: c_path(&target)?,
        }));
    }
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        // A dangling symlink: nothing to show.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot stat `{}`: {e}", path.display())),
    };
    let flags = locked_flags(path)?;
    let path = c_path(path)?;
    Ok(Some(if meta.is_dir() {
        HostEntry::Dir { path, flags }
    } else {
        HostEntry::File { path, flags }
    }))
}

/// The flags of the mount holding `path` that a read-only remount of a bind of it must keep:
/// in a user namespace the kernel locks `nosuid`, `nodev`, `noexec` and the atime flags of the
/// mounts it copied, and refuses a remount that drops them.
pub(crate) fn locked_flags(path: &Path) -> Result<MsFlags, String> {
    let stat = statvfs(path).map_err(|e| format!("cannot `statvfs` `{}`: {e}", path.display()))?;
    let flags = stat.flags();
    let mut ms = MsFlags::empty();
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if flags.contains(fs_flag) {
            ms |= ms_flag;
        }
    }
    if !flags.intersects(FsFlags::ST_NOATIME | FsFlags::ST_RELATIME) {
        ms |= MsFlags::MS_STRICTATIME;
    }
    Ok(ms)
}

/// `path` as a C string.
pub(crate) fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("the path `{}` holds a NUL byte", path.display()))
}
