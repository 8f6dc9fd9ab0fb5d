//! The built-in functions of BUILD and `.star` files.
//!
//! - `job(name, srcs=[], deps=[], outs=[], cmds=[], env={}, tools=[], info={}, network=False)`
//!   declares a target. Every argument but `name` must be passed by keyword.
//! - `exec(argv, env={}, cwd=None)` and `cat(output, template)` make commands for `cmds`.
//! - `glob(include, exclude=[])` lists files; see [`super::glob`].
//! - `target_info(label)` returns the `info` dict of another target.
//! - `package_dir()` is the workspace-relative directory of the BUILD file being evaluated
//!   (`""` at the root); `package_label()` is its label prefix (`//lib`, `//`, `@curl//src`).
//!
//! `job`, `glob`, `target_info`, `package_dir` and `package_label` need a BUILD file being
//! evaluated: they work in BUILD files and in functions BUILD files call, not at the top level
//! of a `.star` file.

// `job()` has one parameter per attribute of the rule, and the function `#[starlark_module]`
// generates for it lies outside any item an `allow` could be put on.
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use starlark::environment::GlobalsBuilder;
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::values::dict::{AllocDict, UnpackDictEntries};
use starlark::values::list::AllocList;
use starlark::values::list_or_tuple::UnpackListOrTuple;
use starlark::values::none::{NoneOr, NoneType};
use starlark::values::structs::{AllocStruct, StructRef};
use starlark::values::{Heap, UnpackValue, Value};
use weft_protocol::Label;

use super::budget::{Operator, check_operator};
use super::declare::{JobArgs, RawCmd, resolve_job};
use super::error::{FrontendError, FrontendErrorKind, SourceLocation};
use super::error::{NativeError, line_number};
use super::eval::{EvalCtx, PackageInput, PackageState, info_digest};
use super::glob::GlobPattern;
use super::graph::InfoValue;
use super::suggest::closest;

/// Adds weft's built-ins to `builder`.
pub(crate) fn register(builder: &mut GlobalsBuilder) {
    weft_builtins(builder);
    checked_operators(builder);
    #[cfg(test)]
    test_builtins(builder);
}

/// What the parser turns `*` and `+` into (see [`CHECKED_OPERATORS`](super::budget)): the
/// operator, once the evaluation's memory budget has room for what it makes.
#[starlark_module]
fn checked_operators(builder: &mut GlobalsBuilder) {
    /// `lhs * rhs`, with a repeated string, list or tuple sized before it is made.
    fn _weft_mul<'v>(
        lhs: Value<'v>,
        rhs: Value<'v>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        check_budget(eval, Operator::Mul, lhs, rhs)?;
        lhs.mul(rhs, eval.heap())
    }

    /// `lhs + rhs`, with a concatenated string, list or tuple sized before it is made.
    fn _weft_add<'v>(
        lhs: Value<'v>,
        rhs: Value<'v>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        check_budget(eval, Operator::Add, lhs, rhs)?;
        lhs.add(rhs, eval.heap())
    }
}

/// Checks `lhs op rhs` against the budget of the evaluation in progress. Code that runs
/// without weft's context (the prelude's own top level) is not checked.
fn check_budget<'v>(
    eval: &Evaluator<'v, '_, '_>,
    op: Operator,
    lhs: Value<'v>,
    rhs: Value<'v>,
) -> starlark::Result<()> {
    match eval.extra.and_then(|extra| extra.downcast_ref::<EvalCtx>()) {
        Some(ctx) => check_operator(&ctx.budget, op, lhs, rhs, eval.heap().allocated_bytes()),
        None => Ok(()),
    }
}

/// Built-ins that only unit tests see.
#[cfg(test)]
#[starlark_module]
fn test_builtins(builder: &mut GlobalsBuilder) {
    /// Panics, as a bug in the evaluator would.
    fn _weft_test_panic() -> starlark::Result<NoneType> {
        panic!("a bug in the evaluator")
    }
}

#[starlark_module]
fn weft_builtins(builder: &mut GlobalsBuilder) {
    /// Declares a target: the one primitive rule. See the module documentation.
    fn job<'v>(
        name: &str,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        srcs: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        deps: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        outs: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        cmds: UnpackListOrTuple<Value<'v>>,
        #[starlark(require = named, default = UnpackDictEntries::default())] env: UnpackDictEntries<
            String,
            String,
        >,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        tools: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackDictEntries::default())]
        info: UnpackDictEntries<String, Value<'v>>,
        #[starlark(require = named, default = false)] network: bool,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<NoneType> {
        let ctx = context(eval)?;
        let result = (|| {
            let state = ctx.package("job")?;
            let at = call_site(eval, state);
            let bad = |message: String| {
                FrontendError::at(
                    FrontendErrorKind::BadArgument {
                        target: state.package.dir.label(name).ok(),
                        function: "job",
                        message,
                    },
                    Some(at.clone()),
                )
            };
            let mut raw_cmds = Vec::with_capacity(cmds.items.len());
            for (i, value) in cmds.items.iter().enumerate() {
                raw_cmds
                    .push(cmd_from_value(*value).map_err(|m| bad(format!("`cmds[{i}]`: {m}")))?);
            }
            let mut raw_info = Vec::with_capacity(info.entries.len());
            for (key, value) in &info.entries {
                let value = info_value(*value).ok_or_else(|| {
                    bad(format!(
                        "`info[\"{key}\"]` must be a string or a list of strings, not `{}`",
                        value.get_type()
                    ))
                })?;
                raw_info.push((key.clone(), value));
            }
            let args = JobArgs {
                name: name.to_owned(),
                srcs: srcs.items,
                deps: deps.items,
                outs: outs.items,
                cmds: raw_cmds,
                env: env.entries,
                tools: tools.items,
                info: raw_info,
                network,
            };
            let target = resolve_job(&ctx.session.ws, &state.package, args, &at)?;
            state.declare(target)
        })();
        result.map_err(|e| ctx.fail(e))?;
        Ok(NoneType)
    }

    /// A command that runs `argv[0]` with the arguments `argv[1:]`. `cwd` defaults to the
    /// target's directory under `{{SOURCE_DIR}}`.
    fn exec<'v>(
        argv: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackDictEntries::default())] env: UnpackDictEntries<
            String,
            String,
        >,
        #[starlark(require = named, default = NoneOr::None)] cwd: NoneOr<String>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        if argv.items.first().is_none_or(|a| a.is_empty()) {
            let ctx = context(eval)?;
            return Err(ctx.fail(FrontendError::at(
                FrontendErrorKind::BadArgument {
                    target: None,
                    function: "exec",
                    message: "`argv` needs at least the program to run, as \
                              `exec([\"cc\", \"-c\", \"a.c\"])`"
                        .into(),
                },
                outer_call_site(eval),
            )));
        }
        let heap = eval.heap();
        let argv = heap.alloc(AllocList(argv.items.iter().map(String::as_str)));
        let env = heap.alloc(AllocDict(
            env.entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ));
        let cwd = match cwd.into_option() {
            Some(cwd) => heap.alloc(cwd.as_str()),
            None => Value::new_none(),
        };
        Ok(heap.alloc(AllocStruct([
            ("kind", heap.alloc("exec")),
            ("argv", argv),
            ("env", env),
            ("cwd", cwd),
        ])))
    }

    /// A command that writes the rendered `template` to the file `output`.
    fn cat<'v>(output: &str, template: &str, heap: Heap<'v>) -> starlark::Result<Value<'v>> {
        Ok(heap.alloc(AllocStruct([
            ("kind", heap.alloc("cat")),
            ("output", heap.alloc(output)),
            ("template", heap.alloc(template)),
        ])))
    }

    /// The files below the BUILD file's directory that match `include` and no `exclude`,
    /// sorted, relative to that directory.
    fn glob<'v>(
        include: UnpackListOrTuple<String>,
        #[starlark(require = named, default = UnpackListOrTuple::default())]
        exclude: UnpackListOrTuple<String>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Vec<String>> {
        let ctx = context(eval)?;
        let result = (|| {
            let state = ctx.package("glob")?;
            for pattern in include.items.iter().chain(&exclude.items) {
                GlobPattern::parse(pattern).map_err(|message| {
                    FrontendError::at(
                        FrontendErrorKind::BadArgument {
                            target: None,
                            function: "glob",
                            message,
                        },
                        Some(call_site(eval, state)),
                    )
                })?;
            }
            let found = ctx
                .session
                .run_glob(&state.package, &include.items, &exclude.items)
                .map_err(|e| super::eval::internal(&e))?;
            state.inputs.borrow_mut().push(PackageInput::Glob {
                include: include.items.clone(),
                exclude: exclude.items.clone(),
                result: found.clone(),
            });
            Ok(found)
        })();
        result.map_err(|e| ctx.fail(e))
    }

    /// The `info` dict of the target `label`. A target of another package makes that
    /// package evaluate first; one of this package must be defined above the call.
    fn target_info<'v>(
        label: &str,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> starlark::Result<Value<'v>> {
        let ctx = context(eval)?;
        let heap = eval.heap();
        let result = (|| {
            let state = ctx.package("target_info")?;
            let at = call_site(eval, state);
            let with_at = |kind| FrontendError::at(kind, Some(at.clone()));
            let wanted = Label::parse_relative(label, &state.package.dir)
                .map_err(|e| with_at(FrontendErrorKind::BadLabel(e)))?;
            if wanted.package_path() == &state.package.dir {
                let by_name = state.by_name.borrow();
                return match by_name.get(wanted.target()) {
                    Some(i) => Ok(state.targets.borrow()[*i].info.clone()),
                    None => {
                        let suggestion =
                            closest(wanted.target(), by_name.keys().map(String::as_str))
                                .map(|s| format!(":{s}"));
                        Err(with_at(FrontendErrorKind::NotYetDefined {
                            label: wanted,
                            suggestion,
                        }))
                    }
                };
            }
            let package = ctx
                .session
                .package(wanted.package_path())
                .map_err(|e| e.or_at(Some(at.clone())))?;
            let Some(target) = package.get(wanted.target()) else {
                let suggestion = package.suggest(wanted.target(), Some(&state.package.dir));
                return Err(with_at(FrontendErrorKind::UnknownTarget {
                    label: wanted,
                    suggestion,
                }));
            };
            state.inputs.borrow_mut().push(PackageInput::TargetInfo {
                label: wanted,
                digest: info_digest(&target.info),
            });
            Ok(target.info.clone())
        })();
        match result {
            Ok(info) => Ok(alloc_info(heap, &info)),
            Err(e) => Err(ctx.fail(e)),
        }
    }

    /// The workspace-relative directory of the BUILD file being evaluated; `""` at the root.
    fn package_dir(eval: &mut Evaluator<'_, '_, '_>) -> starlark::Result<String> {
        let ctx = context(eval)?;
        match ctx.package("package_dir") {
            Ok(state) => Ok(state.package.fs_dir.clone()),
            Err(e) => Err(ctx.fail(e)),
        }
    }

    /// The label prefix of the BUILD file being evaluated: `//lib`, `//`, `@curl//src`.
    fn package_label(eval: &mut Evaluator<'_, '_, '_>) -> starlark::Result<String> {
        let ctx = context(eval)?;
        match ctx.package("package_label") {
            Ok(state) => Ok(state.package.dir.to_string()),
            Err(e) => Err(ctx.fail(e)),
        }
    }
}

/// The session state behind `eval.extra`.
fn context<'a>(eval: &Evaluator<'_, 'a, '_>) -> starlark::Result<&'a EvalCtx> {
    eval.extra
        .and_then(|extra| extra.downcast_ref::<EvalCtx>())
        .ok_or_else(|| {
            starlark::Error::new_native(NativeError(
                "internal error: weft's built-ins ran without their context".into(),
            ))
        })
}

/// The line of the BUILD file being evaluated that led to this call: the outermost call on
/// the stack, so that a target a macro declares points at the macro's call.
fn call_site(eval: &Evaluator<'_, '_, '_>, state: &PackageState) -> SourceLocation {
    outer_call_site(eval).unwrap_or_else(|| SourceLocation {
        file: state.package.build_file.clone(),
        line: 0,
    })
}

fn outer_call_site(eval: &Evaluator<'_, '_, '_>) -> Option<SourceLocation> {
    // Frame 0 (from the bottom) is the module itself; frame 1 is the call the module's code
    // made, which is what `nth_location` counts down to from the top.
    let count = eval.call_stack_count();
    let span = count
        .checked_sub(2)
        .and_then(|n| eval.call_stack_nth_location(n))
        .or_else(|| eval.call_stack_top_location())?;
    Some(SourceLocation {
        file: span.filename().to_owned(),
        line: line_number(span.resolve_span().begin.line),
    })
}

/// A command value (a struct that `exec()` or `cat()` made) as a [`RawCmd`].
fn cmd_from_value(value: Value<'_>) -> Result<RawCmd, String> {
    let not_a_command = || {
        format!(
            "expected a command made by `exec()` or `cat()`, not `{}`",
            value.get_type()
        )
    };
    let fields = StructRef::from_value(value).ok_or_else(not_a_command)?;
    let mut by_name = BTreeMap::new();
    for (name, field) in fields.iter() {
        by_name.insert(name.as_str().to_owned(), field);
    }
    let field = |name: &str| by_name.get(name).copied();
    let string = |name: &str| -> Result<String, String> {
        field(name)
            .and_then(|v| v.unpack_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("`{name}` must be a string"))
    };
    match field("kind").and_then(|v| v.unpack_str()) {
        Some("exec") => {
            let argv = field("argv")
                .and_then(UnpackListOrTuple::<String>::unpack_value_opt)
                .ok_or_else(|| "`argv` must be a list of strings".to_owned())?;
            let env = match field("env") {
                None => Vec::new(),
                Some(v) => {
                    UnpackDictEntries::<String, String>::unpack_value_opt(v)
                        .ok_or_else(|| "`env` must be a dict of strings".to_owned())?
                        .entries
                }
            };
            let cwd = match field("cwd") {
                Some(v) if !v.is_none() => Some(string("cwd")?),
                _ => None,
            };
            Ok(RawCmd::Exec {
                argv: argv.items,
                env,
                cwd,
            })
        }
        Some("cat") => Ok(RawCmd::Cat {
            output: string("output")?,
            template: string("template")?,
        }),
        _ => Err(not_a_command()),
    }
}

/// An `info` value: a string or a list (or tuple) of strings.
fn info_value(value: Value<'_>) -> Option<InfoValue> {
    if let Some(s) = value.unpack_str() {
        return Some(InfoValue::Str(s.to_owned()));
    }
    UnpackListOrTuple::<String>::unpack_value_opt(value).map(|list| InfoValue::List(list.items))
}

fn alloc_info<'v>(heap: Heap<'v>, info: &BTreeMap<String, InfoValue>) -> Value<'v> {
    heap.alloc(AllocDict(info.iter().map(|(key, value)| {
        let value = match value {
            InfoValue::Str(s) => heap.alloc(s.as_str()),
            InfoValue::List(items) => heap.alloc(AllocList(items.iter().map(String::as_str))),
        };
        (key.as_str(), value)
    })))
}
