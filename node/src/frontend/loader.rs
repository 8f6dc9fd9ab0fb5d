//! [`Loader`]: from target patterns to a checked [`TargetGraph`], with warm caches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use starlark::environment::{FrozenModule, Globals, GlobalsBuilder, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::AstModule;
use weft_protocol::{Label, PackagePath};

use super::budget::{EvalLimits, LoadCancel};
use super::builtins;
use super::error::{FrontendError, FrontendErrorKind, join_path};
use super::eval::{
    Caches, EvaluatedPackage, LoaderStats, Session, dialect, internal, panic_message,
    starlark_error,
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
    limits: EvalLimits,
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
    /// A loader with empty caches and the default [`EvalLimits`].
    pub fn new() -> Loader {
        Loader::with_limits(EvalLimits::default())
    }

    /// A loader with empty caches that evaluates each file under `limits`.
    pub fn with_limits(limits: EvalLimits) -> Loader {
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
            limits,
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
        self.load_cancellable(ws, patterns, &LoadCancel::new())
    }

    /// [`load`](Self::load), stopped with [`FrontendErrorKind::Cancelled`] soon after `cancel`
    /// is cancelled (from another thread): the evaluation in progress stops at its next
    /// budget check, and nothing more is evaluated.
    pub fn load_cancellable(
        &mut self,
        ws: &Workspace,
        patterns: &[String],
        cancel: &LoadCancel,
    ) -> Result<Arc<TargetGraph>, FrontendError> {
        let start = std::time::Instant::now();
        let before = self.stats;
        let result = self.on_load_thread(|loader| {
            let session = loader.session(ws, cancel)?;
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
        cancel: &LoadCancel,
    ) -> Result<Vec<Label>, FrontendError> {
        Ok(self
            .load_cancellable(ws, patterns, cancel)?
            .requested
            .clone())
    }

    /// Everything the targets `pattern` names depend on, directly or not, and that it does
    /// not name itself, sorted: what `weft query deps` prints.
    pub fn query_deps(
        &mut self,
        ws: &Workspace,
        pattern: &str,
        cancel: &LoadCancel,
    ) -> Result<Vec<Label>, FrontendError> {
        let graph = self.load_cancellable(ws, &[pattern.to_owned()], cancel)?;
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
                    // A panic inside an evaluation is caught closer, in its file (see
                    // `Session::run`); one elsewhere takes the caches with the thread, so the
                    // next load starts cold.
                    Err(panic) => Err(internal(&format!(
                        "the load panicked: {}",
                        panic_message(&*panic)
                    ))),
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

    fn session(
        &mut self,
        ws: &Workspace,
        cancel: &LoadCancel,
    ) -> Result<Rc<Session>, FrontendError> {
        let prelude = self.prelude()?;
        Ok(Session::new(
            ws,
            self.globals.clone(),
            prelude,
            (self.limits, cancel.clone()),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::frontend::{EvalBudget, InfoValue, MEMORY_SETTING, SourceLocation, TIME_SETTING};

    /// A temporary workspace with `files`, and its `Workspace`.
    fn workspace(files: &[(&str, &str)]) -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("weft.toml"), "").expect("weft.toml");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let ws = Workspace::find(dir.path()).expect("workspace");
        (dir, ws)
    }

    fn limits(time_ms: u64, memory: usize) -> EvalLimits {
        EvalLimits {
            time: Duration::from_millis(time_ms),
            memory,
        }
    }

    /// The error of loading `//...` of `build` (the root BUILD file) under `limits`, and how
    /// long the load took.
    fn fail(build: &str, limits: EvalLimits) -> (FrontendError, Duration) {
        let (_dir, ws) = workspace(&[("BUILD", build)]);
        let start = Instant::now();
        let result = Loader::with_limits(limits).load(&ws, &[]);
        let elapsed = start.elapsed();
        match result {
            Ok(graph) => panic!("loaded {:?}", graph.targets.keys()),
            Err(e) => (e, elapsed),
        }
    }

    fn at(line: u32) -> Option<SourceLocation> {
        Some(SourceLocation {
            file: "BUILD".into(),
            line,
        })
    }

    #[test]
    fn a_runaway_loop_fails_with_the_time_budget_named() {
        let loops = [
            // Statements in a loop: the statement hook sees them.
            (
                "x = 0\nfor i in range(100000):\n    for j in range(100000):\n        x = i\n",
                4,
            ),
            // A comprehension has no statements: starlark's periodic check sees its steps.
            (
                "x = [i for i in range(100000) for j in range(100000) if False]\n",
                1,
            ),
        ];
        for (build, line) in loops {
            let (err, elapsed) = fail(build, limits(200, 64 << 20));
            assert_eq!(
                *err.kind,
                FrontendErrorKind::OverBudget {
                    file: "BUILD".into(),
                    budget: EvalBudget::Time {
                        limit: Duration::from_millis(200)
                    },
                },
                "{build}: {err}"
            );
            assert_eq!(err.at, at(line), "{build}");
            assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "BUILD:{line}: `BUILD` ran past its time budget of 0.2 s"
                )),
                "{message}"
            );
            assert!(message.contains(&format!("`{TIME_SETTING}`")), "{message}");
        }
    }

    #[test]
    fn a_huge_value_is_refused_before_it_is_made() {
        let cases = [
            // One go: sized by the checked `*`.
            ("x = 1\ny = \"x\" * (1 << 30)\n", 2, Some(1 << 30)),
            ("y = [None] * (1 << 28)\n", 1, Some(8 << 28)),
            ("y = (1, 2) * (1 << 28)\n", 1, Some(16 << 28)),
            // Doubling, one statement at a time: sized by the checked `+`...
            (
                "s = \"x\"\nfor i in range(64):\n    s = s + s\n",
                3,
                Some(1 << 19),
            ),
            // ... or seen by the statement hook after one doubling too many.
            (
                "s = \"x\"\nfor i in range(64):\n    s = \"%s%s\" % (s, s)\n",
                3,
                None,
            ),
        ];
        for (build, line, value) in cases {
            let start = Instant::now();
            let (err, _) = fail(build, limits(60_000, 1 << 20));
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{build}: fails fast"
            );
            let FrontendErrorKind::OverBudget {
                file,
                budget:
                    EvalBudget::Memory {
                        limit, value: v, ..
                    },
            } = &*err.kind
            else {
                panic!("{build}: {err}");
            };
            assert_eq!((file.as_str(), *limit), ("BUILD", 1 << 20), "{build}");
            assert_eq!(*v, value, "{build}: {err}");
            assert_eq!(err.at, at(line), "{build}: {err}");
            let message = err.to_string();
            assert!(
                message.contains("`BUILD` went past its memory budget of 1 MiB"),
                "{message}"
            );
            assert!(
                message.contains(&format!("`{MEMORY_SETTING}`")),
                "{message}"
            );
        }
        let (err, _) = fail("x = \"x\" * (1 << 30)\n", EvalLimits::default());
        assert!(
            err.to_string().starts_with(
                "BUILD:1: `BUILD` went past its memory budget of 512 MiB: this would make a \
                 value of 1024 MiB beside the "
            ),
            "{err}"
        );
    }

    #[test]
    fn checked_operators_keep_their_meaning() {
        let build = "a = [1] + [2] * 2\nb = 'ab' * 2 + 'c'\nc = 3 * (1, 2)\nd = 6 * 7 + 1\n\
                     e = 2 * ['x']\njob(name = 't', info = {'v': [str(a), b, str(c), str(d), str(e)]})\n";
        let (_dir, ws) = workspace(&[("BUILD", build)]);
        let graph = Loader::new().load(&ws, &[]).expect("load");
        let target = graph.targets.values().next().expect("a target");
        assert_eq!(
            target.info.get("v"),
            Some(&InfoValue::List(vec![
                "[1, 2, 2]".into(),
                "ababc".into(),
                "(1, 2, 1, 2, 1, 2)".into(),
                "43".into(),
                "[\"x\", \"x\"]".into(),
            ]))
        );
        let (err, _) = fail("x = 1\ny = 1 + 'a'\n", EvalLimits::default());
        assert_eq!(err.at, at(2), "{err}");
        assert!(
            err.to_string()
                .contains("not supported for types `int` and `string`")
                && !err.to_string().contains("_weft_"),
            "{err}"
        );
    }

    #[test]
    fn repeating_in_place_is_refused_at_parse() {
        let (err, _) = fail("x = 'ab'\nx *= 3\n", EvalLimits::default());
        assert_eq!(err.at, at(2));
        assert_eq!(
            err.to_string(),
            "BUILD:2: `x *= n` is not allowed in BUILD and `.star` files (the memory budget \
             cannot size what it makes before it is made); write `x = x * n`"
        );
    }

    #[test]
    fn a_cancelled_load_stops_at_once() {
        let (_dir, ws) = workspace(&[(
            "BUILD",
            "x = 0\nfor i in range(100000):\n    for j in range(100000):\n        x = i\n",
        )]);
        let cancel = LoadCancel::new();
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                cancel.cancel();
                Instant::now()
            })
        };
        let result =
            Loader::with_limits(limits(3_600_000, 64 << 20)).load_cancellable(&ws, &[], &cancel);
        let stopped = Instant::now();
        let cancelled_at = canceller.join().expect("canceller");
        let err = result.expect_err("cancelled");
        assert_eq!(*err.kind, FrontendErrorKind::Cancelled);
        assert!(
            stopped.duration_since(cancelled_at) < Duration::from_secs(2),
            "stopped {:?} after the cancel",
            stopped.duration_since(cancelled_at)
        );
    }

    #[test]
    fn a_panic_in_the_evaluator_is_an_error_in_its_file_and_the_loader_goes_on() {
        let (_dir, ws) = workspace(&[
            ("ok/BUILD", "job(name = 'a')\n"),
            ("bad/BUILD", "job(name = 'b')\n_weft_test_panic()\n"),
            ("star/BUILD", "load(':defs.star', 'v')\njob(name = 'c')\n"),
            ("star/defs.star", "v = 1\n_weft_test_panic()\n"),
        ]);
        let mut loader = Loader::new();
        loader.load(&ws, &["//ok:all".into()]).expect("ok loads");
        let err = loader
            .load(&ws, &["//bad:all".into()])
            .expect_err("the panic is an error");
        assert_eq!(
            *err.kind,
            FrontendErrorKind::EvalPanicked {
                file: "bad/BUILD".into(),
                message: "a bug in the evaluator".into(),
            }
        );
        assert_eq!(
            err.at,
            Some(SourceLocation {
                file: "bad/BUILD".into(),
                line: 2
            })
        );
        assert!(
            err.to_string().starts_with(
                "bad/BUILD:2: the Starlark interpreter crashed while evaluating `bad/BUILD` \
                 (`a bug in the evaluator`); the daemon goes on"
            ),
            "{err}"
        );
        let err = loader
            .load(&ws, &["//star:all".into()])
            .expect_err("the panic is an error");
        assert!(
            matches!(&*err.kind, FrontendErrorKind::EvalPanicked { file, .. } if file == "star/defs.star"),
            "{err}"
        );
        // The caches survived: the package evaluated before is not evaluated again.
        let before = loader.stats();
        loader.load(&ws, &["//ok:all".into()]).expect("ok loads");
        assert_eq!(loader.stats().n_build_evals, before.n_build_evals);
        assert_eq!(loader.stats().n_package_hits, before.n_package_hits + 1);
    }

    #[test]
    fn time_spent_in_another_package_does_not_count() {
        // `//top` waits on five packages through `target_info`; each takes a while, and all
        // of them together take longer than one package's budget. Only `//top`'s own few
        // statements count against it.
        let slow = "x = 0\nfor i in range(2000):\n    for j in range(100):\n        x = i\n\
                    job(name = 's', info = {'k': 'v'})\n";
        let n = 5;
        let mut files: Vec<(String, String)> = (0..n)
            .map(|i| (format!("slow{i}/BUILD"), slow.to_owned()))
            .collect();
        let top: String = (0..n)
            .map(|i| format!("v{i} = target_info('//slow{i}:s')\n"))
            .collect();
        files.push(("top/BUILD".into(), format!("{top}job(name = 't')\n")));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let (_dir, ws) = workspace(&files);
        // How long one of them takes alone, at best of three.
        let alone = (0..3)
            .map(|_| {
                let start = Instant::now();
                Loader::new()
                    .load(&ws, &["//slow0:all".into()])
                    .expect("slow loads");
                start.elapsed()
            })
            .min()
            .expect("three runs");
        // Room for each of them, not for all five.
        let budget = alone * 5 / 2;
        let mut loader = Loader::with_limits(EvalLimits {
            time: budget,
            memory: 64 << 20,
        });
        loader
            .load(&ws, &["//top:all".into()])
            .unwrap_or_else(|e| panic!("with a budget of {budget:?} ({alone:?} alone): {e}"));
    }
}
