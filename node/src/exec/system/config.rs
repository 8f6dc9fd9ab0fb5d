//! [`SystemConfig`]: which system directories a toolchain's system digest covers, and where
//! its cache lives.

use std::path::PathBuf;

use super::tree::{Coverage, Root, normalize_roots};

/// What the system part of a toolchain fingerprint covers besides the compilers' own files
/// (which each compiler names itself: see `exec/system/probe.rs`), and where the digests of
/// the covered files are kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    /// Directories covered whole: every file, symlink and directory below them. Default:
    /// `/usr/local/include` and `/usr/include` (which holds the target's own,
    /// `/usr/include/<arch>-linux-gnu`).
    pub include_dirs: Vec<PathBuf>,
    /// Directories covered as a linker reads them: the shared and static libraries, objects
    /// and linker scripts directly in them (names ending in `.so`, `.a` or `.o`, or holding
    /// `.so.`), not their subdirectories. Default: the linker's own search path, as GNU ld
    /// has it built in (`ld --verbose`): `/usr/local/lib/<t>`, `/lib/<t>`, `/usr/lib/<t>`,
    /// `/usr/lib/<t>64`, `/usr/local/lib64`, `/lib64`, `/usr/lib64`, `/usr/local/lib`,
    /// `/lib`, `/usr/lib`, `/usr/<t>/lib64` and `/usr/<t>/lib`, where `<t>` is
    /// `<arch>-linux-gnu`; then the multilib directories a `-m32` or `-mx32` link searches,
    /// `/lib32`, `/usr/lib32`, `/libx32` and `/usr/libx32` (the hermetic sandbox shows every
    /// `/lib*`).
    pub library_dirs: Vec<PathBuf>,
    /// Where the covered files' digests are kept across restarts, so that a restarted daemon
    /// reads only files that changed. Default: none (the daemon uses
    /// `$WEFT_HOME/system-digests.json`).
    pub cache_file: Option<PathBuf>,
    /// Whether changes under the covered directories are watched with inotify, so that a
    /// build looks only at the directories that changed. Off (or where inotify is
    /// unavailable), every build lists every covered directory again and compares each file's
    /// stamp. Default: true.
    pub watch: bool,
}

impl SystemConfig {
    /// This machine's system directories, as documented on each field.
    pub fn host() -> SystemConfig {
        let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
        let library_dirs = [
            format!("/usr/local/lib/{triplet}"),
            format!("/lib/{triplet}"),
            format!("/usr/lib/{triplet}"),
            format!("/usr/lib/{triplet}64"),
            "/usr/local/lib64".to_owned(),
            "/lib64".to_owned(),
            "/usr/lib64".to_owned(),
            "/usr/local/lib".to_owned(),
            "/lib".to_owned(),
            "/usr/lib".to_owned(),
            format!("/usr/{triplet}/lib64"),
            format!("/usr/{triplet}/lib"),
            "/lib32".to_owned(),
            "/usr/lib32".to_owned(),
            "/libx32".to_owned(),
            "/usr/libx32".to_owned(),
        ];
        SystemConfig {
            include_dirs: vec!["/usr/local/include".into(), "/usr/include".into()],
            library_dirs: library_dirs.into_iter().map(PathBuf::from).collect(),
            cache_file: None,
            watch: true,
        }
    }

    /// The covered roots, in order: each directory after symlinks (one that does not exist
    /// as it is written, since it may appear), once, none inside an include directory.
    pub(crate) fn roots(&self) -> Vec<Root> {
        let whole = self
            .include_dirs
            .iter()
            .map(|p| (p.clone(), Coverage::Whole));
        let linker = self
            .library_dirs
            .iter()
            .map(|p| (p.clone(), Coverage::Linker));
        normalize_roots(whole.chain(linker), true)
    }
}
