//! [`FrontendError`]: everything that can go wrong between `weft.toml` and a [`TargetGraph`].
//!
//! Each error says what is wrong, where (the BUILD file's `file:line` when there is one, and
//! the label it is about), and what to do. Messages are lower-case and quote names in
//! backticks; [`fmt::Display`] prefixes them with `file:line: ` when the location is known.
//!
//! [`TargetGraph`]: super::TargetGraph

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use weft_protocol::{Label, LabelError, PackagePath, TemplateError};

/// A place in a BUILD (or `.star`) file: the workspace-relative path and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceLocation {
    /// The file, relative to the workspace root, such as `lib/BUILD`.
    pub file: String,
    /// The line, counting from 1.
    pub line: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A front-end failure: what went wrong ([`FrontendErrorKind`]) and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FrontendError {
    /// The BUILD-file location the error is about, when there is one.
    pub at: Option<SourceLocation>,
    /// What went wrong (boxed: some kinds are large, and errors travel through many
    /// `Result`s).
    pub kind: Box<FrontendErrorKind>,
}

impl FrontendError {
    /// An error with no location.
    pub fn new(kind: FrontendErrorKind) -> FrontendError {
        FrontendError::at(kind, None)
    }

    /// An error at `at`.
    pub fn at(kind: FrontendErrorKind, at: Option<SourceLocation>) -> FrontendError {
        FrontendError {
            at,
            kind: Box::new(kind),
        }
    }

    /// The same error, at `at` unless it already has a location.
    pub fn or_at(self, at: Option<SourceLocation>) -> FrontendError {
        FrontendError {
            at: self.at.or(at),
            kind: self.kind,
        }
    }

    /// The target the error is about, when it is about one.
    pub fn label(&self) -> Option<&Label> {
        use FrontendErrorKind::*;
        match &*self.kind {
            UnknownTarget { label, .. }
            | NotYetDefined { label, .. }
            | DuplicateTarget { label, .. } => Some(label),
            MissingDep { target, .. }
            | MissingSource { target, .. }
            | OutEscapes { target, .. }
            | UndeclaredDepRef { target, .. }
            | BadTemplate { target, .. } => Some(target),
            BadArgument { target, .. } => target.as_ref(),
            DependencyCycle { cycle } => cycle.first(),
            _ => None,
        }
    }
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// What went wrong in the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendErrorKind {
    /// No `weft.toml` in the start directory or above it.
    NoWorkspace {
        /// Where the search started.
        start: PathBuf,
    },
    /// A file or directory could not be read.
    Io {
        /// The path, as shown to the user.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// `weft.toml` is malformed.
    BadConfig {
        /// The config file.
        path: String,
        /// What is wrong, with the TOML parser's line and column when it has them.
        message: String,
    },
    /// `@name` is not in `weft.toml`'s `[packages]`.
    UnknownPackage {
        /// The package name, without `@`.
        name: String,
        /// The packages that are defined.
        known: Vec<String>,
    },
    /// A `//path` lies inside a directory that `weft.toml` maps to an external package.
    InsideExternalPackage {
        /// The directory as written.
        dir: PackagePath,
        /// The package that owns it.
        package: String,
        /// The same directory, named through the package.
        suggestion: PackagePath,
    },
    /// A directory that should hold a BUILD file does not.
    NoBuildFile {
        /// The directory as a label prefix.
        dir: PackagePath,
        /// The workspace-relative directory.
        fs_dir: String,
    },
    /// A target pattern does not parse, or names nothing.
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it is refused.
        reason: String,
    },
    /// A label does not parse.
    BadLabel(LabelError),
    /// A built-in function got an argument it cannot use.
    BadArgument {
        /// The target being declared, when known.
        target: Option<Label>,
        /// The function, such as `job`.
        function: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A label names no target of an existing package.
    UnknownTarget {
        /// The missing target.
        label: Label,
        /// A close existing name, already formatted (`:name` or a full label).
        suggestion: Option<String>,
    },
    /// `target_info` names a target of the same BUILD file that is not defined (yet).
    NotYetDefined {
        /// The target asked for.
        label: Label,
        /// A close name defined above, if any.
        suggestion: Option<String>,
    },
    /// A target depends on a target that does not exist.
    MissingDep {
        /// The target with the bad dep.
        target: Label,
        /// The dep that does not exist.
        dep: Label,
        /// A close existing name, already formatted.
        suggestion: Option<String>,
    },
    /// A source file does not exist, or is not a file.
    MissingSource {
        /// The target that lists it.
        target: Label,
        /// The workspace-relative path.
        path: String,
        /// Whether something exists there that is not a regular file.
        not_a_file: bool,
    },
    /// The targets depend on each other in a cycle; the first label is repeated at the end.
    DependencyCycle {
        /// The cycle, `a -> b -> a`.
        cycle: Vec<Label>,
    },
    /// BUILD files ask each other for `target_info` in a cycle.
    InfoCycle {
        /// The packages, first repeated at the end.
        cycle: Vec<PackagePath>,
    },
    /// Evaluations wait on each other (through `target_info` or `load`) deeper than
    /// `limit` ([`MAX_NESTING`](super::MAX_NESTING)).
    TooDeep {
        /// What nests: `target_info` or `load`.
        through: &'static str,
        /// Where the chain starts.
        first: String,
        /// Where it was when it hit the limit.
        last: String,
        /// How deep evaluations may nest.
        limit: usize,
    },
    /// `.star` files load each other in a cycle.
    LoadCycle {
        /// The files as written in `load()`, first repeated at the end.
        cycle: Vec<String>,
    },
    /// Two targets of one package have the same name.
    DuplicateTarget {
        /// The label both would have.
        label: Label,
        /// Where the first one is defined.
        first: SourceLocation,
    },
    /// An out is not a normalized path inside the output directory.
    OutEscapes {
        /// The target.
        target: Label,
        /// The out as written.
        out: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `{{DEP:<ref>}}` names a target that is not in the target's `deps`.
    UndeclaredDepRef {
        /// The target.
        target: Label,
        /// The reference as written.
        reference: String,
        /// The label it resolves to.
        resolved: Label,
        /// Where it is, such as `cmds[0].argv[3]`.
        field: String,
    },
    /// A command string is not a valid template.
    BadTemplate {
        /// The target.
        target: Label,
        /// Where it is, such as `cmds[0].argv[3]`.
        field: String,
        /// The template parser's error.
        error: TemplateError,
    },
    /// A `load()` names a file that does not exist.
    MissingLoad {
        /// The module as written in `load()`.
        module: String,
        /// The workspace-relative path it resolves to.
        path: String,
    },
    /// A `load()` asks for a symbol the module does not define.
    MissingSymbol {
        /// The module as written in `load()`.
        module: String,
        /// The symbol asked for.
        symbol: String,
        /// A close public name the module defines, if any.
        suggestion: Option<String>,
    },
    /// Starlark refused the file: a syntax error, a type error, `fail()`... The diagnostic is
    /// starlark's own, with `file:line:col` and the source line.
    Starlark {
        /// The file that failed to evaluate.
        file: String,
        /// Starlark's rendering of the error.
        diagnostic: String,
    },
    /// A BUILD-only built-in was called while no BUILD file was being evaluated (at the top
    /// level of a `.star` file).
    NotInBuildFile {
        /// The function.
        function: &'static str,
    },
    /// Evaluating a BUILD or `.star` file went past one of its budgets
    /// ([`EvalLimits`](super::EvalLimits)).
    OverBudget {
        /// The file being evaluated.
        file: String,
        /// Which budget, and what went past it.
        budget: EvalBudget,
    },
    /// The load was cancelled ([`LoadCancel`](super::LoadCancel)): its client went away.
    Cancelled,
    /// The Starlark interpreter panicked while it evaluated a file. The load fails; the
    /// loader (and the daemon) go on.
    EvalPanicked {
        /// The file being evaluated.
        file: String,
        /// The panic's message.
        message: String,
    },
    /// A construct that BUILD and `.star` files may not use.
    Unsupported {
        /// The construct, as `x *= n`.
        construct: &'static str,
        /// Why not.
        reason: &'static str,
        /// What to write instead.
        instead: &'static str,
    },
    /// A broken invariant of the front end itself.
    Internal {
        /// What broke.
        message: String,
    },
}

impl fmt::Display for FrontendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FrontendErrorKind::*;
        match self {
            NoWorkspace { start } => write!(
                f,
                "no `weft.toml` in `{}` or any directory above it; create one at the root of \
                 your workspace (an empty file will do)",
                start.display()
            ),
            Io { path, message } => write!(f, "cannot read `{path}`: {message}"),
            BadConfig { path, message } => write!(f, "invalid `{path}`: {message}"),
            UnknownPackage { name, known } => {
                write!(f, "unknown package `@{name}`; ")?;
                if known.is_empty() {
                    write!(
                        f,
                        "`weft.toml` defines no packages; add `{name} = \"path/to/dir\"` under \
                         `[packages]`"
                    )
                } else {
                    let known: Vec<String> = known.iter().map(|k| format!("`@{k}`")).collect();
                    write!(
                        f,
                        "`weft.toml` defines {}; add `{name} = \"path/to/dir\"` under \
                         `[packages]` or use one of those",
                        known.join(", ")
                    )
                }
            }
            InsideExternalPackage {
                dir,
                package,
                suggestion,
            } => write!(
                f,
                "`{dir}` lies inside the directory of package `@{package}`; name it `{suggestion}`"
            ),
            NoBuildFile { dir, fs_dir } => {
                let shown = if fs_dir.is_empty() { "." } else { fs_dir };
                write!(
                    f,
                    "no BUILD file in `{shown}` (for `{dir}`); create `{}` or fix the label",
                    join_path(fs_dir, "BUILD")
                )
            }
            BadPattern { pattern, reason } => {
                write!(f, "invalid target pattern `{pattern}`: {reason}")
            }
            BadLabel(error) => write!(f, "{error}"),
            BadArgument {
                target,
                function,
                message,
            } => match target {
                Some(target) => write!(f, "target `{target}`: `{function}()`: {message}"),
                None => write!(f, "`{function}()`: {message}"),
            },
            UnknownTarget { label, suggestion } => {
                write!(
                    f,
                    "unknown target `{label}`: `{}` defines no target `{}`",
                    label.package_path(),
                    label.target()
                )?;
                write_suggestion(f, suggestion.as_deref())
            }
            NotYetDefined { label, suggestion } => {
                write!(
                    f,
                    "`target_info(\"{label}\")`: no target `{}` is defined above this line; \
                     `target_info` sees only targets defined earlier in the same BUILD file, \
                     so define it above this call",
                    label.target()
                )?;
                write_suggestion(f, suggestion.as_deref())
            }
            MissingDep {
                target,
                dep,
                suggestion,
            } => {
                write!(
                    f,
                    "target `{target}` depends on `{dep}`, which does not exist"
                )?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(f, "; define it or remove it from `deps`"),
                }
            }
            MissingSource {
                target,
                path,
                not_a_file,
            } => {
                if *not_a_file {
                    write!(
                        f,
                        "target `{target}`: source `{path}` is not a regular file; list the \
                         files inside it (`glob()` helps)"
                    )
                } else {
                    write!(
                        f,
                        "target `{target}`: source file `{path}` does not exist; create it or \
                         remove it from `srcs`"
                    )
                }
            }
            DependencyCycle { cycle } => write!(
                f,
                "dependency cycle: {}; remove one of these deps",
                arrows(cycle)
            ),
            InfoCycle { cycle } => write!(
                f,
                "`target_info` cycle between BUILD files: {}; a package cannot read the info \
                 of a package that reads its own",
                arrows(cycle)
            ),
            TooDeep {
                through,
                first,
                last,
                limit,
            } => write!(
                f,
                "`{through}` chains more than {limit} files deep, from `{first}` to `{last}`; \
                 flatten the chain"
            ),
            LoadCycle { cycle } => {
                let cycle: Vec<String> = cycle.iter().map(|c| format!("`{c}`")).collect();
                write!(
                    f,
                    "load cycle: {}; move the shared definitions into a file both can load",
                    cycle.join(" -> ")
                )
            }
            DuplicateTarget { label, first } => write!(
                f,
                "target `{label}` is defined twice: here and at `{first}`; rename one of them"
            ),
            OutEscapes {
                target,
                out,
                reason,
            } => write!(
                f,
                "target `{target}`: an out that escapes the output directory: `{out}` ({reason}); \
                 outs are normalized paths relative to `{{{{OUTPUT_DIR}}}}`"
            ),
            UndeclaredDepRef {
                target,
                reference,
                resolved,
                field,
            } => write!(
                f,
                "target `{target}`: `{{{{DEP:{reference}}}}}` in `{field}` names `{resolved}`, \
                 which is not in `deps`; add it to `deps`"
            ),
            BadTemplate {
                target,
                field,
                error,
            } => write!(f, "target `{target}`: `{field}`: {error}"),
            MissingLoad { module, path } => write!(
                f,
                "cannot load `{module}`: `{path}` does not exist; create it or fix the label"
            ),
            MissingSymbol {
                module,
                symbol,
                suggestion,
            } => {
                write!(f, "`{module}` defines no public symbol `{symbol}`")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(f, "; check the name in `load()`"),
                }
            }
            Starlark { file, diagnostic } => {
                write!(f, "`{file}` failed to evaluate:\n{}", diagnostic.trim_end())
            }
            NotInBuildFile { function } => write!(
                f,
                "`{function}()` can only be called while a BUILD file is evaluated (from the \
                 BUILD file or a function it calls), not at the top level of a `.star` file"
            ),
            OverBudget { file, budget } => match budget {
                EvalBudget::Time { limit } => write!(
                    f,
                    "`{file}` ran past its time budget of {}: one BUILD or `.star` file gets \
                     that long to evaluate (the files it waits on have their own); look for a \
                     loop that never ends, or raise `{}` in the daemon's `config.toml`",
                    seconds(*limit),
                    TIME_SETTING
                ),
                EvalBudget::Memory { limit, held, value } => {
                    write!(
                        f,
                        "`{file}` went past its memory budget of {}: ",
                        size(*limit)
                    )?;
                    match value {
                        Some(value) => write!(
                            f,
                            "this would make a value of {} beside the {} its Starlark heap holds",
                            size(*value),
                            size(*held)
                        )?,
                        None => write!(f, "its Starlark heap holds {}", size(*held))?,
                    }
                    write!(
                        f,
                        "; look for a value that grows without bound, or raise `{}` (in MiB) in \
                         the daemon's `config.toml`",
                        MEMORY_SETTING
                    )
                }
            },
            Cancelled => write!(f, "the load was cancelled: its client went away"),
            EvalPanicked { file, message } => write!(
                f,
                "the Starlark interpreter crashed while evaluating `{file}` (`{message}`); the \
                 daemon goes on, but this is a bug in weft or in the starlark crate: please \
                 report it with the line above, and change that line meanwhile"
            ),
            Unsupported {
                construct,
                reason,
                instead,
            } => write!(
                f,
                "`{construct}` is not allowed in BUILD and `.star` files ({reason}); write \
                 `{instead}`"
            ),
            Internal { message } => {
                write!(
                    f,
                    "internal error in the front end: {message}; please report it"
                )
            }
        }
    }
}

/// Which budget of [`EvalLimits`](super::EvalLimits) an evaluation went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalBudget {
    /// It ran longer than `limit`.
    Time {
        /// The time budget.
        limit: Duration,
    },
    /// Its Starlark heap would hold more than `limit` bytes.
    Memory {
        /// The memory budget, in bytes.
        limit: usize,
        /// What the heap held, in bytes.
        held: usize,
        /// The size of the one value that would not fit, when that is what was refused.
        value: Option<usize>,
    },
}

/// `5 s`, or `1.5 s` for a time that is not whole seconds.
fn seconds(time: Duration) -> String {
    if time.subsec_nanos() == 0 {
        format!("{} s", time.as_secs())
    } else {
        format!("{:.1} s", time.as_secs_f64())
    }
}

/// Bytes in MiB (`512 MiB`, `1.5 MiB`), in KiB below 1 MiB, in bytes below 1 KiB.
fn size(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < MIB {
        format!("{} KiB", bytes / 1024)
    } else if bytes.is_multiple_of(MIB) || bytes >= 100 * MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

fn write_suggestion(f: &mut fmt::Formatter<'_>, suggestion: Option<&str>) -> fmt::Result {
    match suggestion {
        Some(s) => write!(f, "; did you mean `{s}`?"),
        None => Ok(()),
    }
}

fn arrows<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("`{}`", items.join(" -> "))
}

/// `dir/name`, or `name` when `dir` is the root.
pub(crate) fn join_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The `config.toml` setting of [`EvalLimits::time`](super::EvalLimits::time), in seconds;
/// errors name it.
pub const TIME_SETTING: &str = "eval_time_limit_secs";

/// The `config.toml` setting of [`EvalLimits::memory`](super::EvalLimits::memory), in MiB;
/// errors name it.
pub const MEMORY_SETTING: &str = "eval_memory_limit_mib";

/// The message of an error raised from a built-in; the structured error waits in
/// the evaluation's context (`EvalCtx::pending`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NativeError(pub(crate) String);

/// A 0-based line from starlark as a 1-based line number.
pub(crate) fn line_number(line: usize) -> u32 {
    u32::try_from(line.saturating_add(1)).unwrap_or(u32::MAX)
}
