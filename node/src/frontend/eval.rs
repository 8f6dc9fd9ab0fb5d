//! Evaluating BUILD and `.star` files for one load, on top of the [`Loader`]'s warm caches.
//!
//! A [`Session`] lives for one call of [`Loader::load`] (or a query). It owns the caches
//! while it runs and hands them back afterwards. Within a session each package and each
//! `.star` file is evaluated at most once; across sessions, a package is evaluated again only
//! when one of its inputs changed:
//!
//! - its BUILD file's content, and the workspace's `[packages]`;
//! - each `.star` file it loads, with everything those load (their *key*);
//! - the result of each `glob()` it ran;
//! - the `info` of each target it read with `target_info()`.
//!
//! [`Loader`]: super::Loader
//! [`Loader::load`]: super::Loader::load

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use starlark::environment::{FrozenModule, Globals, Module};
use starlark::eval::{BeforeStmtFunc, Evaluator, FileLoader};
use starlark::syntax::ast::{AssignOp, AstStmt, StmtP};
use starlark::syntax::{AstModule, Dialect};
use weft_protocol::{Digest, DigestHasher, Label, PackagePath};

use super::budget::{Budget, CHECKED_OPERATORS, EvalLimits, LoadCancel, StatementCheck, Stop};
use super::declare::{PackageDir, parse_file_label};
use super::error::{
    FrontendError, FrontendErrorKind, NativeError, SourceLocation, join_path, line_number,
};
use super::files::{FsCache, KeptListings};
use super::glob::{GlobPattern, GlobRoot, glob};
use super::graph::{InfoValue, Target};
use super::suggest::closest;
use super::workspace::{OUTPUT_DIR_NAME, Workspace, io_error};

/// How many evaluations may wait on each other: a `target_info` that evaluates a package whose
/// `target_info` evaluates another..., or a `load` chain. Each level takes stack (the loader
/// runs on a thread with [`LOAD_STACK_SIZE`](super::loader::LOAD_STACK_SIZE) for that).
pub const MAX_NESTING: usize = 1000;

/// The Starlark dialect of BUILD and `.star` files: standard Starlark, plus `for` and `if`
/// at the top level, f-strings and keyword-only arguments.
pub(crate) fn dialect() -> Dialect {
    Dialect {
        enable_top_level_stmt: true,
        enable_f_strings: true,
        enable_keyword_only_arguments: true,
        ..Dialect::Standard
    }
}

/// What the [`Loader`](super::Loader) keeps between loads.
#[derive(Default)]
pub(crate) struct Caches {
    /// Parsed files by absolute path, with the digest of the content they were parsed from.
    pub(crate) asts: HashMap<PathBuf, (Digest, AstModule)>,
    /// Evaluated `.star` files by absolute path, with their key.
    pub(crate) stars: HashMap<PathBuf, (Digest, FrozenModule)>,
    /// Evaluated packages by the absolute path of their BUILD file.
    pub(crate) packages: HashMap<PathBuf, Arc<EvaluatedPackage>>,
    /// Directory listings, each with the stamp it was read under.
    pub(crate) listings: KeptListings,
}

/// Counters of the work loads did, to show that warm loads skip it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoaderStats {
    /// BUILD files evaluated.
    pub n_build_evals: u64,
    /// `.star` files evaluated.
    pub n_star_evals: u64,
    /// BUILD and `.star` files parsed.
    pub n_parses: u64,
    /// Packages reused from an earlier load without evaluating anything.
    pub n_package_hits: u64,
}

/// One evaluated BUILD file.
#[derive(Debug)]
pub(crate) struct EvaluatedPackage {
    pub(crate) package: PackageDir,
    /// The targets, in the order the file defines them.
    pub(crate) targets: Vec<Target>,
    by_name: HashMap<String, usize>,
    build_digest: Digest,
    ws_key: Digest,
    inputs: Vec<PackageInput>,
}

impl EvaluatedPackage {
    pub(crate) fn get(&self, name: &str) -> Option<&Target> {
        self.by_name.get(name).map(|i| &self.targets[*i])
    }

    /// A close existing target name: `:name` when asked from this package (`from`), else the
    /// full label.
    pub(crate) fn suggest(&self, name: &str, from: Option<&PackagePath>) -> Option<String> {
        let found = closest(name, self.targets.iter().map(|t| t.label.target()))?;
        if from == Some(&self.package.dir) {
            Some(format!(":{found}"))
        } else {
            self.package.dir.label(found).ok().map(|l| l.to_string())
        }
    }
}

/// Something other than its BUILD file that a package's evaluation read.
#[derive(Debug, Clone)]
pub(crate) enum PackageInput {
    Star {
        file: StarFile,
        key: Digest,
    },
    Glob {
        include: Vec<String>,
        exclude: Vec<String>,
        result: Vec<String>,
    },
    TargetInfo {
        label: Label,
        digest: Digest,
    },
}

/// A `.star` file: its workspace-relative path and the directory labels inside it are
/// relative to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StarFile {
    pub(crate) path: String,
    pub(crate) dir: PackagePath,
    /// How it is shown: `//dir:file.star`.
    pub(crate) shown: String,
}

enum Slot {
    InProgress,
    Done(Arc<EvaluatedPackage>),
}

enum StarSlot {
    InProgress,
    Done(FrozenModule, Digest),
}

/// The state of one load. See the module documentation.
pub(crate) struct Session {
    pub(crate) ws: Workspace,
    ws_key: Digest,
    globals: Globals,
    prelude: FrozenModule,
    limits: EvalLimits,
    cancel: LoadCancel,
    /// The budgets of the evaluations in progress, outermost first: each waits on the next.
    budgets: RefCell<Vec<Rc<Budget>>>,
    pub(crate) fs: FsCache,
    caches: RefCell<Caches>,
    stats: Cell<LoaderStats>,
    packages: RefCell<HashMap<PackagePath, Slot>>,
    /// The packages being evaluated, outermost first: one waits on the next's
    /// `target_info`.
    package_stack: RefCell<Vec<PackagePath>>,
    stars: RefCell<HashMap<PathBuf, StarSlot>>,
    star_stack: RefCell<Vec<String>>,
}

impl Session {
    pub(crate) fn new(
        ws: &Workspace,
        globals: Globals,
        prelude: FrozenModule,
        (limits, cancel): (EvalLimits, LoadCancel),
        mut caches: Caches,
        stats: LoaderStats,
    ) -> Rc<Session> {
        let mut hasher = DigestHasher::new();
        hasher.update(b"weft.workspace.v1\0");
        hasher.update(ws.root.to_string_lossy().as_bytes());
        for (name, dir) in &ws.packages {
            hasher.update(b"\0");
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(dir.as_bytes());
        }
        Rc::new(Session {
            ws: ws.clone(),
            ws_key: hasher.finalize(),
            globals,
            prelude,
            limits,
            cancel,
            budgets: RefCell::new(Vec::new()),
            fs: FsCache::with_kept(std::mem::take(&mut caches.listings)),
            caches: RefCell::new(caches),
            stats: Cell::new(stats),
            packages: RefCell::new(HashMap::new()),
            package_stack: RefCell::new(Vec::new()),
            stars: RefCell::new(HashMap::new()),
            star_stack: RefCell::new(Vec::new()),
        })
    }

    /// Gives the caches and counters back to the loader.
    pub(crate) fn finish(&self) -> (Caches, LoaderStats) {
        let mut caches = std::mem::take(&mut *self.caches.borrow_mut());
        caches.listings = self.fs.take_kept();
        (caches, self.stats.get())
    }

    fn count(&self, f: impl FnOnce(&mut LoaderStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// The evaluated package of `dir`, from this session, the warm cache, or a fresh
    /// evaluation.
    pub(crate) fn package(
        self: &Rc<Self>,
        dir: &PackagePath,
    ) -> Result<Arc<EvaluatedPackage>, FrontendError> {
        self.check_cancelled()?;
        match self.packages.borrow().get(dir) {
            Some(Slot::Done(package)) => return Ok(package.clone()),
            Some(Slot::InProgress) => {
                let stack = self.package_stack.borrow();
                let start = stack.iter().position(|d| d == dir).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(dir.clone());
                return Err(FrontendError::new(FrontendErrorKind::InfoCycle { cycle }));
            }
            None => {}
        }
        if let Some(error) = too_deep("target_info", &self.package_stack.borrow(), dir) {
            return Err(error);
        }
        self.packages
            .borrow_mut()
            .insert(dir.clone(), Slot::InProgress);
        self.package_stack.borrow_mut().push(dir.clone());
        let result = self.package_uncached(dir);
        self.package_stack.borrow_mut().pop();
        let mut packages = self.packages.borrow_mut();
        match &result {
            Ok(package) => {
                packages.insert(dir.clone(), Slot::Done(package.clone()));
            }
            Err(_) => {
                packages.remove(dir);
            }
        }
        result
    }

    /// Fails once the load is cancelled, so that nothing more is evaluated.
    fn check_cancelled(&self) -> Result<(), FrontendError> {
        if self.cancel.is_cancelled() {
            return Err(FrontendError::new(FrontendErrorKind::Cancelled));
        }
        Ok(())
    }

    /// The budget of an evaluation that starts now.
    fn budget(&self) -> Rc<Budget> {
        Rc::new(Budget::start(self.limits, self.cancel.clone()))
    }

    /// The workspace-relative directory of `dir` and the name of its BUILD file.
    pub(crate) fn locate(&self, dir: &PackagePath) -> Result<PackageDir, FrontendError> {
        let fs_dir = self.ws.dir_of(dir)?;
        let Some(name) = self.fs.build_file_name(&self.ws.abs(&fs_dir)) else {
            return Err(FrontendError::new(FrontendErrorKind::NoBuildFile {
                dir: dir.clone(),
                fs_dir,
            }));
        };
        Ok(PackageDir {
            dir: dir.clone(),
            build_file: join_path(&fs_dir, name),
            fs_dir,
        })
    }

    fn package_uncached(
        self: &Rc<Self>,
        dir: &PackagePath,
    ) -> Result<Arc<EvaluatedPackage>, FrontendError> {
        let package = self.locate(dir)?;
        let build_abs = self.ws.abs(&package.build_file);
        let (digest, text) = self
            .fs
            .read(&build_abs)
            .map_err(|e| io_error(&build_abs, &e))?;
        let cached = self.caches.borrow().packages.get(&build_abs).cloned();
        if let Some(cached) = cached
            && cached.build_digest == digest
            && cached.ws_key == self.ws_key
            && cached.package == package
            && self.inputs_unchanged(&cached)
        {
            self.count(|s| s.n_package_hits += 1);
            return Ok(cached);
        }
        let evaluated = Arc::new(self.evaluate_build(package, digest, &text)?);
        self.caches
            .borrow_mut()
            .packages
            .insert(build_abs, evaluated.clone());
        Ok(evaluated)
    }

    fn inputs_unchanged(self: &Rc<Self>, cached: &EvaluatedPackage) -> bool {
        cached.inputs.iter().all(|input| match input {
            PackageInput::Star { file, key } => self
                .star(file, None)
                .is_ok_and(|(_, new_key)| new_key == *key),
            PackageInput::Glob {
                include,
                exclude,
                result,
            } => self
                .run_glob(&cached.package, include, exclude)
                .is_ok_and(|new| new == *result),
            PackageInput::TargetInfo { label, digest } => {
                self.package(label.package_path()).is_ok_and(|p| {
                    p.get(label.target())
                        .is_some_and(|t| info_digest(&t.info) == *digest)
                })
            }
        })
    }

    fn evaluate_build(
        self: &Rc<Self>,
        package: PackageDir,
        digest: Digest,
        text: &str,
    ) -> Result<EvaluatedPackage, FrontendError> {
        let build_abs = self.ws.abs(&package.build_file);
        let ast = self.parse(&build_abs, &package.build_file, digest, text)?;
        let loads = self.resolve_loads(&ast, &package.dir)?;
        let ctx = EvalCtx {
            session: self.clone(),
            package: Some(PackageState {
                package: package.clone(),
                targets: RefCell::new(Vec::new()),
                by_name: RefCell::new(HashMap::new()),
                inputs: RefCell::new(
                    loads
                        .iter()
                        .map(|load| PackageInput::Star {
                            file: load.file.clone(),
                            key: load.key,
                        })
                        .collect(),
                ),
            }),
            pending: RefCell::new(None),
            budget: self.budget(),
        };
        let result = self.run(ast, &loads, &ctx, &package.build_file);
        self.count(|s| s.n_build_evals += 1);
        if let Some(error) = ctx.pending.take() {
            return Err(error);
        }
        result?;
        let Some(state) = ctx.package else {
            return Err(internal("a BUILD file evaluated without its package state"));
        };
        let targets = state.targets.into_inner();
        let by_name = state.by_name.into_inner();
        Ok(EvaluatedPackage {
            package,
            targets,
            by_name,
            build_digest: digest,
            ws_key: self.ws_key,
            inputs: state.inputs.into_inner(),
        })
    }

    /// Evaluates `ast` in a fresh module that sees the prelude and the `loads`, under
    /// `ctx.budget`, and returns the frozen module. A panic inside the evaluator is caught here,
    /// on the loader's thread, and becomes an error in `file`: the session (and its caches) go
    /// on.
    fn run(
        &self,
        ast: AstModule,
        loads: &[ResolvedLoad],
        ctx: &EvalCtx,
        file: &str,
    ) -> Result<FrozenModule, FrontendError> {
        let budget = ctx.budget.clone();
        self.budgets.borrow_mut().push(budget.clone());
        // Unwind safety: what the evaluation may leave half-changed is its own module and
        // heap, dropped on the way out, and `ctx`, which the caller drops on an error. The
        // session's own cells are only borrowed for moments inside built-ins, and a borrow
        // ends as the panic unwinds.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.evaluate(ast, loads, ctx, file)
        }));
        self.budgets.borrow_mut().pop();
        if let Some(outer) = self.budgets.borrow().last() {
            outer.waited(budget.elapsed());
        }
        result.unwrap_or_else(|panic| {
            tracing::error!(target: "weft::frontend", file, "the starlark evaluator panicked");
            Err(FrontendError::at(
                FrontendErrorKind::EvalPanicked {
                    file: file.to_owned(),
                    message: panic_message(&*panic),
                },
                budget.location(),
            ))
        })
    }

    /// [`run`](Self::run) without the guards.
    fn evaluate(
        &self,
        ast: AstModule,
        loads: &[ResolvedLoad],
        ctx: &EvalCtx,
        file: &str,
    ) -> Result<FrozenModule, FrontendError> {
        let loader = PreparedLoads(
            loads
                .iter()
                .map(|load| (load.module_id.clone(), load.module.clone()))
                .collect(),
        );
        let print = TracingPrint {
            file: file.to_owned(),
        };
        let budget = &ctx.budget;
        Module::with_temp_heap(|module| {
            module.import_public_symbols(&self.prelude);
            {
                let mut eval = Evaluator::new(&module);
                eval.set_loader(&loader);
                eval.set_print_handler(&print);
                eval.extra = Some(ctx);
                // Every 1,000 calls and loop steps, comprehensions included.
                let heap = module.heap();
                let ticks = budget.clone();
                eval.set_check_cancelled(Box::new(move || {
                    ticks.check(heap.allocated_bytes()).is_some()
                }));
                // Before every statement.
                eval.before_stmt_for_dap(BeforeStmtFunc::from_dyn(Box::new(StatementCheck(
                    budget.clone(),
                ))));
                if let Err(e) = eval.eval_module(ast, &self.globals) {
                    return Err(match budget.stopped() {
                        Some(stop) => {
                            let at = budget.location().or_else(|| error_location(&e));
                            stopped_error(file, stop, at)
                        }
                        None => starlark_error(file, e),
                    });
                }
            }
            module.freeze().map_err(|e| {
                FrontendError::new(FrontendErrorKind::Starlark {
                    file: file.to_owned(),
                    diagnostic: format!("cannot freeze the module: {e:?}"),
                })
            })
        })
    }

    /// Parses `text`, the content of `abs` (shown as `shown`), or reuses the parse of the same
    /// content.
    fn parse(
        &self,
        abs: &Path,
        shown: &str,
        digest: Digest,
        text: &str,
    ) -> Result<AstModule, FrontendError> {
        if let Some((cached, ast)) = self.caches.borrow().asts.get(abs)
            && *cached == digest
        {
            return Ok(ast.clone());
        }
        self.count(|s| s.n_parses += 1);
        let mut ast = AstModule::parse(shown, text.to_owned(), &dialect())
            .map_err(|e| starlark_error(shown, e))?;
        refuse_unchecked(&ast)?;
        let checked: HashMap<String, String> = CHECKED_OPERATORS
            .iter()
            .map(|(op, function)| ((*op).to_owned(), (*function).to_owned()))
            .collect();
        ast.replace_binary_operators(&checked);
        self.caches
            .borrow_mut()
            .asts
            .insert(abs.to_owned(), (digest, ast.clone()));
        Ok(ast)
    }

    /// Evaluates (or reuses) every module `ast` loads, relative to `dir`, and checks the
    /// symbols it asks for.
    fn resolve_loads(
        self: &Rc<Self>,
        ast: &AstModule,
        dir: &PackagePath,
    ) -> Result<Vec<ResolvedLoad>, FrontendError> {
        let mut resolved = Vec::new();
        for load in ast.loads() {
            let span = load.span.resolve_span();
            let at = Some(SourceLocation {
                file: load.span.filename().to_owned(),
                line: line_number(span.begin.line),
            });
            let with_at = |e: FrontendError| e.or_at(at.clone());
            let module_id = load.module_id.to_owned();
            let (file_dir, file) = parse_file_label(&module_id, dir).map_err(|message| {
                FrontendError::at(
                    FrontendErrorKind::BadArgument {
                        target: None,
                        function: "load",
                        message,
                    },
                    at.clone(),
                )
            })?;
            let fs_dir = self.ws.dir_of(&file_dir).map_err(with_at)?;
            let path = join_path(&fs_dir, &file);
            let (sub, name) = match file.rsplit_once('/') {
                Some((sub, name)) => (join_path(file_dir.path(), sub), name),
                None => (file_dir.path().to_owned(), file.as_str()),
            };
            let star_dir = PackagePath::new(file_dir.package(), &sub)
                .map_err(|e| with_at(FrontendError::new(FrontendErrorKind::BadLabel(e))))?;
            let star = StarFile {
                path,
                shown: format!("{star_dir}:{name}"),
                dir: star_dir,
            };
            let (module, key) = self.star(&star, at.clone()).map_err(with_at)?;
            for their in load.symbols.values() {
                let found =
                    !their.starts_with('_') && matches!(module.get_option(their), Ok(Some(_)));
                if !found {
                    let names: Vec<String> =
                        module.names().map(|n| n.as_str().to_owned()).collect();
                    let suggestion =
                        closest(their, names.iter().map(String::as_str)).map(str::to_owned);
                    return Err(FrontendError::at(
                        FrontendErrorKind::MissingSymbol {
                            module: module_id,
                            symbol: (*their).to_owned(),
                            suggestion,
                        },
                        at,
                    ));
                }
            }
            resolved.push(ResolvedLoad {
                module_id,
                file: star,
                module,
                key,
            });
        }
        Ok(resolved)
    }

    /// The evaluated `.star` file and its key, evaluating it (and what it loads) when needed.
    /// `at` is where it is loaded from, for a missing file.
    fn star(
        self: &Rc<Self>,
        file: &StarFile,
        at: Option<SourceLocation>,
    ) -> Result<(FrozenModule, Digest), FrontendError> {
        let abs = self.ws.abs(&file.path);
        match self.stars.borrow().get(&abs) {
            Some(StarSlot::Done(module, key)) => return Ok((module.clone(), *key)),
            Some(StarSlot::InProgress) => {
                let stack = self.star_stack.borrow();
                let start = stack.iter().position(|s| *s == file.shown).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(file.shown.clone());
                return Err(FrontendError::at(
                    FrontendErrorKind::LoadCycle { cycle },
                    at,
                ));
            }
            None => {}
        }
        self.check_cancelled()?;
        if let Some(error) = too_deep("load", &self.star_stack.borrow(), &file.shown) {
            return Err(error.or_at(at));
        }
        self.stars
            .borrow_mut()
            .insert(abs.clone(), StarSlot::InProgress);
        self.star_stack.borrow_mut().push(file.shown.clone());
        let result = self.star_uncached(file, &abs, at);
        self.star_stack.borrow_mut().pop();
        let mut stars = self.stars.borrow_mut();
        match &result {
            Ok((module, key)) => {
                stars.insert(abs, StarSlot::Done(module.clone(), *key));
            }
            Err(_) => {
                stars.remove(&abs);
            }
        }
        result
    }

    fn star_uncached(
        self: &Rc<Self>,
        file: &StarFile,
        abs: &Path,
        at: Option<SourceLocation>,
    ) -> Result<(FrozenModule, Digest), FrontendError> {
        let (digest, text) = self.fs.read(abs).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FrontendError::at(
                    FrontendErrorKind::MissingLoad {
                        module: file.shown.clone(),
                        path: file.path.clone(),
                    },
                    at,
                )
            } else {
                io_error(abs, &e)
            }
        })?;
        let ast = self.parse(abs, &file.path, digest, &text)?;
        let loads = self.resolve_loads(&ast, &file.dir)?;
        let mut hasher = DigestHasher::new();
        hasher.update(b"weft.star.v1\0");
        hasher.update(digest.as_bytes());
        for load in &loads {
            hasher.update(load.module_id.as_bytes());
            hasher.update(b"\0");
            hasher.update(load.key.as_bytes());
        }
        let key = hasher.finalize();
        if let Some((cached_key, module)) = self.caches.borrow().stars.get(abs)
            && *cached_key == key
        {
            return Ok((module.clone(), key));
        }
        let ctx = EvalCtx {
            session: self.clone(),
            package: None,
            pending: RefCell::new(None),
            budget: self.budget(),
        };
        let result = self.run(ast, &loads, &ctx, &file.path);
        self.count(|s| s.n_star_evals += 1);
        if let Some(error) = ctx.pending.take() {
            return Err(error);
        }
        let module = result?;
        self.caches
            .borrow_mut()
            .stars
            .insert(abs.to_owned(), (key, module.clone()));
        Ok((module, key))
    }

    /// Runs a glob in `package`'s directory; the patterns are already checked to parse.
    pub(crate) fn run_glob(
        &self,
        package: &PackageDir,
        include: &[String],
        exclude: &[String],
    ) -> Result<Vec<String>, String> {
        let include = include
            .iter()
            .map(|p| GlobPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude = exclude
            .iter()
            .map(|p| GlobPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let skip = |ws_path: &str| ws_path == OUTPUT_DIR_NAME || self.ws.is_external_root(ws_path);
        let root = GlobRoot {
            fs: &self.fs,
            dir: self.ws.abs(&package.fs_dir),
            skip: &skip,
            ws_dir: package.fs_dir.clone(),
        };
        Ok(glob(&root, &include, &exclude))
    }
}

/// A `load()` resolved to its module.
struct ResolvedLoad {
    module_id: String,
    file: StarFile,
    module: FrozenModule,
    key: Digest,
}

/// Hands starlark the modules resolved before evaluation.
struct PreparedLoads(HashMap<String, FrozenModule>);

impl FileLoader for PreparedLoads {
    fn load(&self, path: &str) -> starlark::Result<FrozenModule> {
        self.0.get(path).cloned().ok_or_else(|| {
            starlark::Error::new_native(NativeError(format!(
                "internal error: `{path}` was not resolved before evaluation"
            )))
        })
    }
}

/// Sends `print()` to tracing: nothing below the CLI writes to the terminal.
struct TracingPrint {
    file: String,
}

impl starlark::PrintHandler for TracingPrint {
    fn println(&self, text: &str) -> starlark::Result<()> {
        tracing::info!(target: "weft::build_file", file = %self.file, text, "print");
        Ok(())
    }
}

/// What the built-ins see through `eval.extra`.
///
/// The `ProvidesStaticType` derive expands to an `unsafe impl`: it is how the starlark crate
/// lets a native function downcast `eval.extra`, and no unsafe code is written by hand here.
#[allow(unsafe_code)]
mod ctx {
    use super::*;

    /// The session, the package being evaluated (none for a `.star` file), the first
    /// error a built-in raised, and the evaluation's budget.
    #[derive(starlark::values::ProvidesStaticType)]
    pub(crate) struct EvalCtx {
        pub(crate) session: Rc<Session>,
        pub(crate) package: Option<PackageState>,
        pub(crate) pending: RefCell<Option<FrontendError>>,
        pub(crate) budget: Rc<Budget>,
    }
}
pub(crate) use ctx::EvalCtx;

impl EvalCtx {
    /// Keeps `error` (the first one wins) and returns the starlark error that aborts the
    /// evaluation.
    pub(crate) fn fail(&self, error: FrontendError) -> starlark::Error {
        let message = error.kind.to_string();
        let mut pending = self.pending.borrow_mut();
        if pending.is_none() {
            *pending = Some(error);
        }
        starlark::Error::new_native(NativeError(message))
    }

    /// The package being evaluated, or the error for `function` called outside one.
    pub(crate) fn package(&self, function: &'static str) -> Result<&PackageState, FrontendError> {
        self.package
            .as_ref()
            .ok_or_else(|| FrontendError::new(FrontendErrorKind::NotInBuildFile { function }))
    }
}

/// What a BUILD file's evaluation has declared and read so far.
pub(crate) struct PackageState {
    pub(crate) package: PackageDir,
    pub(crate) targets: RefCell<Vec<Target>>,
    pub(crate) by_name: RefCell<HashMap<String, usize>>,
    pub(crate) inputs: RefCell<Vec<PackageInput>>,
}

impl PackageState {
    /// Adds `target`, refusing a second target of the same name.
    pub(crate) fn declare(&self, target: Target) -> Result<(), FrontendError> {
        let mut by_name = self.by_name.borrow_mut();
        let mut targets = self.targets.borrow_mut();
        if let Some(first) = by_name.get(target.label.target()) {
            return Err(FrontendError::at(
                FrontendErrorKind::DuplicateTarget {
                    label: target.label.clone(),
                    first: targets[*first].defined_at.clone(),
                },
                Some(target.defined_at),
            ));
        }
        by_name.insert(target.label.target().to_owned(), targets.len());
        targets.push(target);
        Ok(())
    }
}

/// The error for going one level deeper than [`MAX_NESTING`] into `stack`.
fn too_deep<T: std::fmt::Display>(
    through: &'static str,
    stack: &[T],
    next: &T,
) -> Option<FrontendError> {
    if stack.len() < MAX_NESTING {
        return None;
    }
    Some(FrontendError::new(FrontendErrorKind::TooDeep {
        through,
        first: stack.first().map_or_else(String::new, ToString::to_string),
        last: next.to_string(),
        limit: MAX_NESTING,
    }))
}

/// A digest of an `info` dict, to notice when what another package read has changed.
pub(crate) fn info_digest(info: &std::collections::BTreeMap<String, InfoValue>) -> Digest {
    let mut hasher = DigestHasher::new();
    hasher.update(b"weft.info.v1\0");
    for (key, value) in info {
        hasher.update(key.as_bytes());
        match value {
            InfoValue::Str(s) => {
                hasher.update(b"\0s");
                hasher.update(s.as_bytes());
            }
            InfoValue::List(items) => {
                hasher.update(b"\0l");
                hasher.update(&(items.len() as u64).to_le_bytes());
                for item in items {
                    hasher.update(item.as_bytes());
                    hasher.update(b"\0");
                }
            }
        }
        hasher.update(b"\0");
    }
    hasher.finalize()
}

/// Refuses what no budget check would see before it allocates: `x *= n` (the parser turns
/// `*` into a checked call, but not `*=`).
fn refuse_unchecked(ast: &AstModule) -> Result<(), FrontendError> {
    fn find(stmt: &AstStmt, found: &mut Option<starlark::codemap::Span>) {
        if found.is_some() {
            return;
        }
        if let StmtP::AssignModify(_, AssignOp::Multiply, _) = &stmt.node {
            *found = Some(stmt.span);
            return;
        }
        stmt.visit_stmt(|inner| find(inner, found));
    }
    let mut found = None;
    find(ast.statement(), &mut found);
    let Some(span) = found else {
        return Ok(());
    };
    let span = ast.file_span(span);
    Err(FrontendError::at(
        FrontendErrorKind::Unsupported {
            construct: "x *= n",
            reason: "the memory budget cannot size what it makes before it is made",
            instead: "x = x * n",
        },
        Some(SourceLocation {
            file: span.filename().to_owned(),
            line: line_number(span.resolve_span().begin.line),
        }),
    ))
}

/// The error of an evaluation of `file` that was stopped at `at`.
fn stopped_error(file: &str, stop: Stop, at: Option<SourceLocation>) -> FrontendError {
    match stop {
        Stop::Over(budget) => FrontendError::at(
            FrontendErrorKind::OverBudget {
                file: file.to_owned(),
                budget,
            },
            at,
        ),
        Stop::Cancelled => FrontendError::new(FrontendErrorKind::Cancelled),
    }
}

/// A panic's message, when it has one.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Where starlark's error points, when it has a span.
fn error_location(error: &starlark::Error) -> Option<SourceLocation> {
    error.span().map(|span| SourceLocation {
        file: span.filename().to_owned(),
        line: line_number(span.resolve_span().begin.line),
    })
}

/// Starlark's error, with its diagnostic, located at its span when it has one.
pub(crate) fn starlark_error(file: &str, error: starlark::Error) -> FrontendError {
    let at = error_location(&error);
    FrontendError::at(
        FrontendErrorKind::Starlark {
            file: file.to_owned(),
            diagnostic: error.to_string(),
        },
        at,
    )
}

pub(crate) fn internal(message: &str) -> FrontendError {
    FrontendError::new(FrontendErrorKind::Internal {
        message: message.to_owned(),
    })
}
