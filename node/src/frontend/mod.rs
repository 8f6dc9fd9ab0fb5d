//! The build front end: the workspace, BUILD files in Starlark, target patterns and the
//! target graph; and the distbuild JSON graph format.
//!
//! Entry points:
//! - [`Workspace::find`]: the workspace around a directory (`weft.toml` and its
//!   `[packages]`).
//! - [`Loader::load`]: target patterns to a checked [`TargetGraph`]. The daemon keeps one
//!   [`Loader`] alive between builds; it re-evaluates only the BUILD files whose inputs changed.
//! - [`Loader::query_targets`] and [`Loader::query_deps`]: for `weft query`.
//! - [`parse_distbuild`]: a seed-003 JSON graph to a [`DistGraph`].
//!
//! # BUILD files
//!
//! A directory with a file named `BUILD` (or `BUILD.weft`, which wins when both exist) is a
//! package; its labels are `//dir:name`. The file is Starlark, with the built-ins of
//! [`builtins`](self#built-ins) and the bundled prelude (`cc_library`, `cc_binary`):
//!
//! ```python
//! # lib/BUILD
//! cc_library(
//!     name = "util",
//!     srcs = glob(["*.c"]),
//!     hdrs = ["util.h"],
//! )
//!
//! job(
//!     name = "version_h",
//!     outs = ["version.h"],
//!     cmds = [cat("{{OUTPUT_DIR}}/version.h", "#define VERSION \"1.0\"\n")],
//! )
//!
//! # app/BUILD
//! load("//tools:defs.star", "warnings")
//!
//! cc_binary(
//!     name = "app",
//!     srcs = ["main.c"],                   # may `#include "lib/util.h"` or `"util.h"`
//!     deps = ["//lib:util", "//lib:version_h"],
//!     copts = warnings,
//! )
//!
//! job(
//!     name = "greeting",
//!     srcs = ["greeting.txt"],
//!     deps = [":app"],
//!     outs = ["out.txt"],
//!     cmds = [exec(["sh", "-c", "{{DEP::app}}/app < greeting.txt > {{OUTPUT_DIR}}/out.txt"])],
//!     info = {"kind": "demo"},
//! )
//! ```
//!
//! # Built-ins
//!
//! - `job(name, srcs=[], deps=[], outs=[], cmds=[], env={}, tools=[], info={},
//!   network=False)`: the one primitive rule; one target, which becomes one protocol job.
//!   - `srcs`: paths relative to the BUILD file's directory (`/` allowed, `..` not), or file
//!     labels such as `//lib:util.h` or `@curl//include:curl/curl.h` for files elsewhere.
//!   - `deps`: labels; `:name` and `name` are in the same package.
//!   - `outs`: paths under `{{OUTPUT_DIR}}`.
//!   - `cmds`: `exec(argv, env={}, cwd=None)` and `cat(output, template)` values. Strings may
//!     use `{{OUTPUT_DIR}}`, `{{SOURCE_DIR}}` (the source root, where `srcs` appear at their
//!     workspace paths) and `{{DEP:<label>}}` (a dep's output directory; relative labels such
//!     as `{{DEP::lib}}` are allowed and rewritten to the canonical label). An exec's `cwd`
//!     defaults to the target's directory under `{{SOURCE_DIR}}`.
//!   - `tools`: program names, besides each exec's `argv[0]`, for the toolchain fingerprint.
//!   - `info`: a dict of strings or lists of strings that other BUILD files read with
//!     `target_info(label)`; not part of the job.
//!   - `network`: `True` lets the commands use the host's network (a download, say); every
//!     other job runs with none. It is part of the job's id. Such a job runs only on this
//!     machine: it is never lent to a peer, and its result is never taken from a peer's
//!     cache.
//! - `glob(include, exclude=[])`: `*`, `?` and `**`; see the [`glob`](self#glob) rules below.
//! - `load("//path:file.star", "sym", alias = "sym2")`: `.star` files of the workspace or of
//!   an `@package`; `:file.star` is relative to the loading file's directory.
//! - `target_info(label)`: the `info` of another target. A target in another package makes
//!   that package evaluate; one in the same file must be defined above the call.
//! - `package_dir()`: the BUILD file's workspace-relative directory (`""` at the root);
//!   `package_label()`: its label prefix (`//lib`, `//`, `@curl//src`).
//!
//! # Glob
//!
//! Patterns are relative to the BUILD file's directory; `*` and `?` stay within a segment and
//! do not match a leading `.`; `**` matches any number of directories. Only files match. A
//! glob never enters a subdirectory with its own BUILD file, `weft-out/`, or an external
//! package's directory. The result is sorted.
//!
//! # The prelude
//!
//! `cc_library(name, srcs=[], hdrs=[], deps=[], copts=[])` makes one compile job per source
//! file (`<name>.<src>.o`, with `/` in the source path as `+`) and an archive job `name`
//! producing `lib<name>.a`. `cc_binary(name, srcs=[], deps=[], copts=[], linkopts=[])` makes
//! compile jobs and a link job `name` producing the executable `name`. A compile job sees only
//! its source, the library's headers and those of its deps (transitively), with
//! `-I{{SOURCE_DIR}}` and `-I{{SOURCE_DIR}}/<dir>` for each library. A dep that is a plain job
//! (a generated header, say) is a dep of every compile job, with `-I{{DEP:<label>}}`. See
//! [`PRELUDE`] for the source.
//!
//! # Choices worth knowing
//!
//! - `//path` always names the main workspace, also in BUILD and `.star` files of external
//!   packages; those name their own targets with `:name` or `@package//path:name`.
//! - `//...` walks every directory below the root except hidden ones, `weft-out/`, the
//!   directories of external packages, and directories whose names cannot appear in a label.
//! - Errors stop a load at the first one, as a compiler does; the caches keep whatever was
//!   evaluated successfully.
//! - Loads run on their own thread with a [`LOAD_STACK_SIZE`] stack, because `target_info`
//!   nests evaluations; past [`MAX_NESTING`] levels the load fails with an error.
//!
//! Architecture invariant: this module reads the workspace but never writes to it, runs
//! nothing, and knows nothing of the executor, the store or the network.

mod budget;
mod builtins;
mod declare;
mod distbuild;
mod error;
mod eval;
mod files;
mod glob;
mod graph;
mod loader;
mod pattern;
mod suggest;
mod workspace;

pub use budget::{EvalLimits, LoadCancel};
pub use distbuild::{DistGraph, DistJob, DistbuildError, DistbuildErrorKind, parse_distbuild};
pub use error::{EvalBudget, FrontendError, FrontendErrorKind, SourceLocation};
pub use error::{MEMORY_SETTING, TIME_SETTING};
pub use eval::{LoaderStats, MAX_NESTING};
pub use files::BUILD_FILE_NAMES;
pub use graph::{InfoValue, Target, TargetGraph};
pub use loader::{LOAD_STACK_SIZE, Loader, PRELUDE};
pub use pattern::TargetPattern;
pub use workspace::{OUTPUT_DIR_NAME, WORKSPACE_FILE, Workspace};
