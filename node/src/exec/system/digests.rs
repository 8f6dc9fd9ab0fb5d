//! [`SystemDigests`]: the digests of the system directories and of each compiler's own files,
//! computed once, kept current, and cached across restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weft_protocol::Digest;

use super::cache;
use super::config::SystemConfig;
use super::probe::{self, CompilerFiles};
use super::tree::{Covered, Encoder, Root};
use crate::stat::RACY_WINDOW;

/// The system part of a toolchain, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SystemView {
    /// Counts the changes seen in the covered directories since the daemon started: while it
    /// is the same, so is every digest.
    pub(crate) generation: u64,
    /// The digest of the configured system directories.
    pub(crate) base: Digest,
}

/// What the system digests cost and cover, for logs and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemStats {
    /// Covered directories (roots): the configured ones and every probed compiler's.
    pub n_roots: usize,
    /// Directories listed under them.
    pub n_dirs: usize,
    /// Files whose digest is cached.
    pub n_cached: usize,
    /// Files read and hashed since the daemon started.
    pub n_hashed: u64,
    /// Bytes read for them.
    pub bytes_hashed: u64,
    /// Directory listings made since the daemon started.
    pub n_listed: u64,
    /// Whether changes are watched with inotify (else each build lists every covered
    /// directory again).
    pub watching: bool,
    /// Changes seen since the daemon started.
    pub generation: u64,
    /// Compilers asked for their files.
    pub n_probed: usize,
}

/// The system digests of one daemon; `Send + Sync`.
#[derive(Debug)]
pub(crate) struct SystemDigests {
    roots: Vec<Root>,
    cache_file: Option<PathBuf>,
    racy_window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `None` until first needed: then the cache file is read and the roots covered.
    covered: Option<Covered>,
    generation: u64,
    /// Each compiler's answers, by the path it runs from and its binary's digest; forgotten
    /// when anything covered changes (a new gcc installed can change what clang uses).
    probes: HashMap<(PathBuf, Digest), Arc<CompilerFiles>>,
    /// Whether to watch with inotify ([`SystemConfig::watch`]).
    watch: bool,
}

impl SystemDigests {
    pub(crate) fn new(config: SystemConfig) -> SystemDigests {
        SystemDigests::with_racy_window(config, RACY_WINDOW)
    }

    /// With another racy window: zero is for tests that write files and want them cached.
    pub(crate) fn with_racy_window(config: SystemConfig, racy_window: Duration) -> SystemDigests {
        SystemDigests {
            roots: config.roots(),
            cache_file: config.cache_file.clone(),
            racy_window,
            state: Mutex::new(State {
                covered: None,
                generation: 0,
                probes: HashMap::new(),
                watch: config.watch,
            }),
        }
    }

    /// The system digest as it is now: what changed since the last call is looked at first.
    pub(crate) fn current(&self) -> SystemView {
        let mut state = self.lock();
        let covered = self.covered(&mut state);
        if covered.refresh() {
            state.generation += 1;
            state.probes.clear();
            tracing::info!(
                generation = state.generation,
                "toolchain system directories changed"
            );
        }
        let view = SystemView {
            generation: state.generation,
            base: self.base(&mut state),
        };
        self.save(&mut state);
        view
    }

    /// What the compiler at `tool` (whose binary has `digest`) reads besides its binary,
    /// asking it the first time.
    pub(crate) fn compiler_files(
        &self,
        tool: &Path,
        digest: Digest,
        path_env: &str,
    ) -> Arc<CompilerFiles> {
        let key = (tool.to_owned(), digest);
        if let Some(files) = self.lock().probes.get(&key) {
            return files.clone();
        }
        // Asked without the lock: a driver takes milliseconds per question.
        let started = Instant::now();
        let files = Arc::new(probe::probe(tool, path_env));
        if files.roots.is_empty() && files.programs.is_empty() {
            tracing::warn!(
                tool = %tool.display(),
                "a tool named like a C or C++ compiler named none of its own files (it answered \
                 no `-print-search-dirs` nor `-print-prog-name`): they are not in its jobs' ids"
            );
        }
        tracing::debug!(
            tool = %tool.display(),
            n_roots = files.roots.len(),
            programs = ?files.programs,
            millis = started.elapsed().as_millis() as u64,
            "asked a compiler for its files"
        );
        self.lock().probes.insert(key, files.clone());
        files
    }

    /// The digest of a compiler's own files: its directories' digests (covered from now on)
    /// and the digests of the programs it runs (`None`: not found).
    pub(crate) fn compiler_digest(
        &self,
        files: &CompilerFiles,
        programs: &[(String, Option<Digest>)],
    ) -> Digest {
        let mut state = self.lock();
        let covered = self.covered(&mut state);
        let mut encoder = Encoder::new("weft.system.compiler.v1");
        encoder.bytes(&(files.roots.len() as u64).to_le_bytes());
        for root in &files.roots {
            encoder.digest(&covered.cover(root));
        }
        encoder.bytes(&(programs.len() as u64).to_le_bytes());
        for (name, digest) in programs {
            encoder.bytes(name.as_bytes());
            match digest {
                Some(digest) => {
                    encoder.tag(1);
                    encoder.digest(digest);
                }
                None => encoder.tag(0),
            }
        }
        self.save(&mut state);
        encoder.finish()
    }

    /// Counters.
    pub(crate) fn stats(&self) -> SystemStats {
        let state = self.lock();
        let covered = state
            .covered
            .as_ref()
            .map(Covered::stats)
            .unwrap_or_default();
        SystemStats {
            n_roots: state.covered.as_ref().map_or(0, Covered::n_roots),
            n_dirs: covered.n_dirs,
            n_cached: covered.n_cached,
            n_hashed: covered.n_hashed,
            bytes_hashed: covered.bytes_hashed,
            n_listed: covered.n_listed,
            watching: covered.watching,
            generation: state.generation,
            n_probed: state.probes.len(),
        }
    }

    /// The covered directories, set up the first time: the cache file read, every configured
    /// root listed, watched and digested.
    fn covered<'s>(&self, state: &'s mut State) -> &'s mut Covered {
        let watch = state.watch;
        state.covered.get_or_insert_with(|| {
            let files = match &self.cache_file {
                Some(path) => cache::load(path).unwrap_or_else(|error| {
                    tracing::warn!(%error, "hashing the toolchain's system files again");
                    HashMap::new()
                }),
                None => HashMap::new(),
            };
            let mut covered = Covered::new(files, self.racy_window, watch);
            for root in &self.roots {
                covered.cover(root);
            }
            covered
        })
    }

    /// The digest of the configured roots, in order.
    fn base(&self, state: &mut State) -> Digest {
        let covered = self.covered(state);
        let mut encoder = Encoder::new("weft.system.base.v1");
        encoder.bytes(&(self.roots.len() as u64).to_le_bytes());
        for root in &self.roots {
            encoder.digest(&covered.cover(root));
        }
        encoder.finish()
    }

    /// Writes the cache file when digests were cached since it was last written.
    fn save(&self, state: &mut State) {
        let (Some(path), Some(covered)) = (&self.cache_file, &mut state.covered) else {
            return;
        };
        if !covered.take_cache_changed() {
            return;
        }
        if let Err(error) = cache::save(path, &covered.cached_files()) {
            tracing::warn!(%error, "the toolchain's system files will be hashed again at the next start");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => {
                // A panic midway through a refresh can leave some roots' digests behind their
                // files: everything is covered again from the start.
                let mut state = poisoned.into_inner();
                state.covered = None;
                state.probes.clear();
                state.generation += 1;
                self.state.clear_poison();
                state
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(root: &Path, cache_file: Option<PathBuf>) -> SystemDigests {
        SystemDigests::with_racy_window(
            SystemConfig {
                include_dirs: vec![root.join("include")],
                library_dirs: vec![root.join("lib")],
                cache_file,
                watch: true,
            },
            Duration::ZERO,
        )
    }

    fn files(root: &Path) {
        std::fs::create_dir_all(root.join("include/sys")).expect("mkdir");
        std::fs::create_dir_all(root.join("lib")).expect("mkdir");
        std::fs::write(root.join("include/stdio.h"), "int printf();").expect("write");
        std::fs::write(root.join("include/sys/types.h"), "typedef int t;").expect("write");
        std::fs::write(root.join("lib/libc.so.6"), "elf").expect("write");
    }

    #[test]
    fn a_restart_with_the_cache_file_reads_no_file_and_a_damaged_one_only_costs_a_rehash() {
        let dir = tempfile::tempdir().expect("tempdir");
        files(dir.path());
        let cache_file = dir.path().join("system-digests.json");
        let first = system(dir.path(), Some(cache_file.clone()));
        let view = first.current();
        assert_eq!(first.stats().n_hashed, 3);
        assert!(cache_file.exists(), "written after the first digest");

        let restarted = system(dir.path(), Some(cache_file.clone()));
        assert_eq!(restarted.current(), view);
        assert_eq!(
            restarted.stats().n_hashed,
            0,
            "every file's stamp is in the cache"
        );

        std::fs::write(&cache_file, b"{\"version\":1,\"fil").expect("damage");
        let damaged = system(dir.path(), Some(cache_file.clone()));
        assert_eq!(damaged.current(), view);
        assert_eq!(damaged.stats().n_hashed, 3);
        // Written whole again.
        let again = system(dir.path(), Some(cache_file));
        assert_eq!(again.current(), view);
        assert_eq!(again.stats().n_hashed, 0);
    }

    #[test]
    fn a_change_moves_the_generation_and_the_base_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        files(dir.path());
        let system = system(dir.path(), None);
        let before = system.current();
        assert_eq!(system.current(), before, "nothing changed");
        std::fs::write(dir.path().join("lib/libm.so.6"), "elf").expect("write");
        let after = system.current();
        assert_eq!(after.generation, before.generation + 1);
        assert_ne!(after.base, before.base);
        assert_eq!(system.stats().generation, after.generation);
    }
}
