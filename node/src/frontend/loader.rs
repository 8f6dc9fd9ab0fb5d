//! [`Loader`]: from target patterns to a checked [`TargetGraph`], with warm caches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use starlark::environment::{FrozenModule, Globals, GlobalsBuilder, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::AstModule;
use weft_protocol::{Label, PackagePath};

use super::builtins;
use super::error::{FrontendError, FrontendErrorKind, join_path};
use super::eval::{
    Caches, EvaluatedPackage, LoaderStats, Session, dialect, internal, starlark_error,
};
use super::files::EntryKind;
use super::graph::{Target, TargetGraph, check_acyclic};
use super::pattern::TargetPattern;
use super::workspace::{OUTPUT_DIR_NAME, Workspace};

/// The bundled prelude: `cc_library` and `cc_binary`, in Starlark on top of `job()`. Its public
/// names are visible in every BUILD and `.star` file without `load()`.
pub const PRELUDE: &str = include_str!("prelude.star");

/// The stack of the thread a load runs on. Evaluations nest (a `target_info` evaluates the
/// package it names, which may call `target_info` in turn), each level taking tens of KiB of
/// stack in a debug build; this leaves room for [`MAX_NESTING`](super::MAX_NESTING) levels
/// of macro-heavy BUILD files. Only the pages touched are ever committed.
pub const LOAD_STACK_SIZE: usize = 256 << 20;

/// The name the prelude has in diagnostics.
const PRELUDE_NAME: &str = "<weft prelude>";

/// Loads BUILD files into target graphs. Keep one alive between builds: it remembers parsed
/// files, evaluated `.star` files and evaluated packages, and evaluates a package again only
/// when something it read has changed (see [`LoaderStats`]).
pub struct Loader {
    globals: Globals,
    prelude: Option<FrozenModule>,
    caches: Caches,
    stats: LoaderStats,
    /// The latest graphs, reused while nothing they came from has changed.
    graphs: VecDeque<GraphMemo>,
}

/// A graph, and what it came from: the workspace, the patterns, what they expanded to, and
/// the evaluated package of each of its targets.
struct GraphMemo {
    root: std::path::PathBuf,
    packages_map: BTreeMap<String, String>,
    patterns: Vec<String>,
    expanded: Vec<Expanded>,
    packages: Vec<Arc<EvaluatedPackage>>,
    graph: Arc<TargetGraph>,
}

/// How many graphs a [`Loader`] remembers.
const MEMO_GRAPHS: usize = 8;

impl Default for Loader {
    fn default() -> Loader {
        Loader::new()
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("n_packages", &self.caches.packages.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader with empty caches.
    pub fn new() -> Loader {
        let globals = GlobalsBuilder::extended_by(&[
            LibraryExtension::StructType,
            LibraryExtension::Map,
            LibraryExtension::Filter,
            LibraryExtension::Partial,
            LibraryExtension::Print,
            LibraryExtension::Json,
        ])
        .with(builtins::register)
        .build();
        Loader {
            globals,
            prelude: None,
            caches: Caches::default(),
            stats: LoaderStats::default(),
            graphs: VecDeque::new(),
        }
    }

    /// The targets `patterns` name, and everything they depend on. An empty list means
    /// `//...`. See [`TargetPattern`] for the forms.
    ///
    /// The graph is checked: every dep exists, every source file exists, and there is no
    /// cycle. When the patterns expand to the same targets and no package they come from has
    /// changed, the graph of the last such load is returned as it is (its sources are not
    /// checked again: lowering reads them anyway).
    pub fn load(
        &mut self,
        ws: &Workspace,
        patterns: &[String],
    ) -> Result<Arc<TargetGraph>, FrontendError> {
        let start = std::time::Instant::now();
        let before = self.stats;
        let result = self.on_load_thread(|loader| {
            let session = loader.session(ws)?;
            let result = loader.graph(&session, ws, patterns);
            loader.finish(&session);
            result
        });
        tracing::debug!(
            target: "weft::frontend",
            root = %ws.root.display(),
            ok = result.is_ok(),
            n_targets = result.as_ref().map_or(0, |g| g.targets.len()),
            n_build_evals = self.stats.n_build_evals - before.n_build_evals,
            n_package_hits = self.stats.n_package_hits - before.n_package_hits,
            elapsed_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            "load"
        );
        result
    }

    /// The targets `patterns` name (all of `//...` when empty), in the order the patterns
    /// name them: what `weft query targets` prints. They are loaded as for a build, deps
    /// and source files checked, so a target that could not build is an error here too.
    pub fn query_targets(
        &mut self,
        ws: &Workspace,
        patterns: &[String],
    ) -> Result<Vec<Label>, FrontendError> {
        Ok(self.load(ws, patterns)?.requested.clone())
    }

    /// Everything the targets `pattern` names depend on, directly or not, and that it does
    /// not name itself, sorted: what `weft query deps` prints.
    pub fn query_deps(
        &mut self,
        ws: &Workspace,
        pattern: &str,
    ) -> Result<Vec<Label>, FrontendError> {
        let graph = self.load(ws, &[pattern.to_owned()])?;
        let requested: BTreeSet<&Label> = graph.requested.iter().collect();
        Ok(graph
            .targets
            .keys()
            .filter(|label| !requested.contains(label))
            .cloned()
            .collect())
    }

    /// What the loads so far have done; a warm load of unchanged files adds only
    /// `n_package_hits`.
    pub fn stats(&self) -> LoaderStats {
        self.stats
    }

    /// Runs `work` on a thread with a [`LOAD_STACK_SIZE`] stack, so that deeply nested
    /// evaluations end in an error rather than a stack overflow, whatever thread calls.
    fn on_load_thread<R: Send>(
        &mut self,
        work: impl FnOnce(&mut Loader) -> Result<R, FrontendError> + Send,
    ) -> Result<R, FrontendError> {
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("weft-load".into())
                .stack_size(LOAD_STACK_SIZE)
                .spawn_scoped(scope, move || work(self));
            match spawned {
                Ok(handle) => match handle.join() {
                    Ok(result) => result,
                    // A bug (here or in starlark) must not take the daemon down: report it.
                    // The caches went with the thread, so the next load starts cold.
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "no message".to_owned());
                        Err(internal(&format!("the load panicked: {message}")))
                    }
                },
                Err(e) => Err(internal(&format!("cannot start the load thread: {e}"))),
            }
        })
    }

    fn graph(
        &mut self,
        session: &Rc<Session>,
        ws: &Workspace,
        patterns: &[String],
    ) -> Result<Arc<TargetGraph>, FrontendError> {
        let expanded = expand_packages(session, patterns)?;
        let memo = self.graphs.iter().position(|m| {
            m.root == ws.root
                && m.packages_map == ws.packages
                && m.patterns == patterns
                && m.expanded.len() == expanded.len()
                && m.expanded.iter().zip(&expanded).all(|(a, b)| a.same_as(b))
        });
        if let Some(index) = memo {
            let memo = &self.graphs[index];
            let unchanged = memo.packages.iter().all(|package| {
                session
                    .package(&package.package.dir)
                    .is_ok_and(|now| Arc::ptr_eq(&now, package))
            });
            if unchanged {
                return Ok(memo.graph.clone());
            }
            self.graphs.remove(index);
        }
        let requested = labels_of(&expanded, patterns.len() > 1);
        let graph = Arc::new(build_graph(session, requested)?);
        let mut dirs: Vec<&PackagePath> = graph.targets.keys().map(|l| l.package_path()).collect();
        dirs.dedup();
        let packages = dirs
            .into_iter()
            .map(|dir| session.package(dir))
            .collect::<Result<Vec<_>, _>>()?;
        if self.graphs.len() == MEMO_GRAPHS {
            self.graphs.pop_front();
        }
        self.graphs.push_back(GraphMemo {
            root: ws.root.clone(),
            packages_map: ws.packages.clone(),
            patterns: patterns.to_vec(),
            expanded,
            packages,
            graph: graph.clone(),
        });
        Ok(graph)
    }

    fn session(&mut self, ws: &Workspace) -> Result<Rc<Session>, FrontendError> {
        let prelude = self.prelude()?;
        Ok(Session::new(
            ws,
            self.globals.clone(),
            prelude,
            std::mem::take(&mut self.caches),
            self.stats,
        ))
    }

    fn finish(&mut self, session: &Session) {
        let (caches, stats) = session.finish();
        self.caches = caches;
        self.stats = stats;
    }

    fn prelude(&mut self) -> Result<FrozenModule, FrontendError> {
        if let Some(prelude) = &self.prelude {
            return Ok(prelude.clone());
        }
        let ast = AstModule::parse(PRELUDE_NAME, PRELUDE.to_owned(), &dialect())
            .map_err(|e| starlark_error(PRELUDE_NAME, e))?;
        let prelude = Module::with_temp_heap(|module| {
            {
                let mut eval = Evaluator::new(&module);
                eval.eval_module(ast, &self.globals)
                    .map_err(|e| starlark_error(PRELUDE_NAME, e))?;
            }
            module
                .freeze()
                .map_err(|e| internal(&format!("cannot freeze the prelude: {e:?}")))
        })?;
        self.prelude = Some(prelude.clone());
        Ok(prelude)
    }
}

fn build_graph(session: &Rc<Session>, requested: Vec<Label>) -> Result<TargetGraph, FrontendError> {
    let mut targets: BTreeMap<Label, Target> = BTreeMap::new();
    let mut queued: HashSet<Label> = requested.iter().cloned().collect();
    let mut queue: VecDeque<Label> = requested.iter().cloned().collect();
    // Most deps are in the package of the target that names them: keep it at hand.
    let mut package: Option<Arc<EvaluatedPackage>> = None;
    while let Some(label) = queue.pop_front() {
        let package = match package.take() {
            Some(p) if p.package.dir == *label.package_path() => package.insert(p),
            _ => package.insert(session.package(label.package_path())?),
        };
        let Some(target) = package.get(label.target()) else {
            return Err(internal(&format!("`{label}` vanished from its package")));
        };
        for dep in &target.deps {
            if queued.contains(dep) {
                continue;
            }
            let at = Some(target.defined_at.clone());
            let missing = |suggestion| {
                FrontendError::at(
                    FrontendErrorKind::MissingDep {
                        target: label.clone(),
                        dep: dep.clone(),
                        suggestion,
                    },
                    at.clone(),
                )
            };
            let other;
            let dep_package = if dep.package_path() == label.package_path() {
                &**package
            } else {
                other = match session.package(dep.package_path()) {
                    Ok(p) => p,
                    Err(e) if matches!(*e.kind, FrontendErrorKind::NoBuildFile { .. }) => {
                        return Err(missing(None));
                    }
                    Err(e) => return Err(e.or_at(at)),
                };
                &*other
            };
            if dep_package.get(dep.target()).is_none() {
                return Err(missing(
                    dep_package.suggest(dep.target(), Some(label.package_path())),
                ));
            }
            queued.insert(dep.clone());
            queue.push_back(dep.clone());
        }
        targets.insert(label, target.clone());
    }
    check_sources(session, &targets)?;
    check_acyclic(&targets)?;
    Ok(TargetGraph { requested, targets })
}

/// Fails on the first source file (in label order) that is missing or not a regular file.
fn check_sources(
    session: &Session,
    targets: &BTreeMap<Label, Target>,
) -> Result<(), FrontendError> {
    // Many compile jobs share headers: look at each path once.
    let mut seen: HashMap<&str, Option<bool>> = HashMap::new();
    for target in targets.values() {
        for src in &target.srcs {
            let problem = *seen.entry(src.as_str()).or_insert_with(|| {
                match std::fs::metadata(session.ws.abs(src)) {
                    Ok(meta) if meta.is_file() => None,
                    Ok(_) => Some(true),
                    Err(_) => Some(false),
                }
            });
            if let Some(not_a_file) = problem {
                return Err(FrontendError::at(
                    FrontendErrorKind::MissingSource {
                        target: target.label.clone(),
                        path: src.clone(),
                        not_a_file,
                    },
                    Some(target.defined_at.clone()),
                ));
            }
        }
    }
    Ok(())
}

/// One part of what target patterns match: a package's targets, or one of them.
struct Expanded {
    package: Arc<EvaluatedPackage>,
    /// The one target, or none for all of the package's.
    target: Option<Label>,
}

impl Expanded {
    /// Whether both match the same targets: the same evaluation of a package, and the same
    /// target of it.
    fn same_as(&self, other: &Expanded) -> bool {
        Arc::ptr_eq(&self.package, &other.package) && self.target == other.target
    }
}

/// The labels `expanded` matches, in order; with `dedup`, each once (several patterns may
/// match one target).
fn labels_of(expanded: &[Expanded], dedup: bool) -> Vec<Label> {
    let mut labels = Vec::new();
    for e in expanded {
        match &e.target {
            Some(label) => labels.push(label.clone()),
            None => labels.extend(e.package.targets.iter().map(|t| t.label.clone())),
        }
    }
    if dedup {
        let mut seen = HashSet::new();
        labels.retain(|label| seen.insert(label.clone()));
    }
    labels
}

/// What each pattern matches, in order. An empty list means `//...`.
fn expand_packages(
    session: &Rc<Session>,
    patterns: &[String],
) -> Result<Vec<Expanded>, FrontendError> {
    let parsed = if patterns.is_empty() {
        vec![TargetPattern::Recursive(root_dir()?)]
    } else {
        patterns
            .iter()
            .map(|p| TargetPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut expanded = Vec::new();
    for pattern in &parsed {
        expand(session, pattern, &mut expanded)?;
    }
    Ok(expanded)
}

fn root_dir() -> Result<PackagePath, FrontendError> {
    PackagePath::new(None, "").map_err(|e| FrontendError::new(FrontendErrorKind::BadLabel(e)))
}

fn expand(
    session: &Rc<Session>,
    pattern: &TargetPattern,
    expanded: &mut Vec<Expanded>,
) -> Result<(), FrontendError> {
    match pattern {
        TargetPattern::Target(label) => {
            let package = session.package(label.package_path())?;
            if package.get(label.target()).is_none() {
                return Err(FrontendError::new(FrontendErrorKind::UnknownTarget {
                    label: label.clone(),
                    suggestion: package.suggest(label.target(), None),
                }));
            }
            expanded.push(Expanded {
                package,
                target: Some(label.clone()),
            });
        }
        TargetPattern::AllInPackage(dir) => {
            let package = session.package(dir)?;
            expanded.push(Expanded {
                package,
                target: None,
            });
        }
        TargetPattern::Recursive(dir) => {
            for package_dir in find_packages(session, dir, pattern)? {
                let package = session.package(&package_dir)?;
                expanded.push(Expanded {
                    package,
                    target: None,
                });
            }
        }
    }
    Ok(())
}

/// Every directory at or below `dir` with a BUILD file, in sorted depth-first order. Hidden
/// directories, `weft-out/` and the directories of external packages (other than the one
/// `dir` is in) are skipped, as are directories whose names cannot appear in a label.
fn find_packages(
    session: &Session,
    dir: &PackagePath,
    pattern: &TargetPattern,
) -> Result<Vec<PackagePath>, FrontendError> {
    let fs_dir = session.ws.dir_of(dir)?;
    if !session.ws.abs(&fs_dir).is_dir() {
        return Err(FrontendError::new(FrontendErrorKind::BadPattern {
            pattern: pattern.to_string(),
            reason: format!(
                "`{}` is not a directory of the workspace",
                if fs_dir.is_empty() { "." } else { &fs_dir }
            ),
        }));
    }
    let mut found = Vec::new();
    // (workspace-relative directory, its label directory)
    let mut stack = vec![(fs_dir, dir.clone())];
    while let Some((fs_dir, label_dir)) = stack.pop() {
        let abs = session.ws.abs(&fs_dir);
        if session.fs.build_file_name(&abs).is_some() {
            found.push(label_dir.clone());
        }
        let listing = session.fs.list(&abs);
        for entry in listing.iter().rev() {
            if entry.kind != EntryKind::Dir || entry.name.starts_with('.') {
                continue;
            }
            let sub_fs = join_path(&fs_dir, &entry.name);
            if sub_fs == OUTPUT_DIR_NAME || session.ws.is_external_root(&sub_fs) {
                continue;
            }
            let sub_path = join_path(label_dir.path(), &entry.name);
            let Ok(sub_dir) = PackagePath::new(label_dir.package(), &sub_path) else {
                continue;
            };
            stack.push((sub_fs, sub_dir));
        }
    }
    Ok(found)
}
