//! Turning the arguments of one `job()` call into a checked [`Target`]: labels resolved
//! against the BUILD file's package, paths made workspace-relative, templates rewritten to
//! canonical labels, outs checked.

use std::collections::{BTreeMap, BTreeSet};

use weft_protocol::path::check_relative_path;
use weft_protocol::{Cmd, Label, PackagePath, Template};

use super::error::{FrontendError, FrontendErrorKind, SourceLocation, join_path};
use super::graph::{InfoValue, Target};
use super::workspace::Workspace;

/// The package a BUILD file defines: its label directory, its workspace-relative directory
/// and the BUILD file's workspace-relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageDir {
    pub(crate) dir: PackagePath,
    pub(crate) fs_dir: String,
    pub(crate) build_file: String,
}

/// The arguments of a `job()` call, unpacked from Starlark but not yet checked.
#[derive(Debug, Default)]
pub(crate) struct JobArgs {
    pub(crate) name: String,
    pub(crate) srcs: Vec<String>,
    pub(crate) deps: Vec<String>,
    pub(crate) outs: Vec<String>,
    pub(crate) cmds: Vec<RawCmd>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) tools: Vec<String>,
    pub(crate) info: Vec<(String, InfoValue)>,
    pub(crate) network: bool,
}

/// A command as `exec()` or `cat()` made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawCmd {
    Exec {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
    },
    Cat {
        output: String,
        template: String,
    },
}

/// Checks and resolves the arguments of a `job()` call made at `at` in `package`.
pub(crate) fn resolve_job(
    ws: &Workspace,
    package: &PackageDir,
    args: JobArgs,
    at: &SourceLocation,
) -> Result<Target, FrontendError> {
    let fail = |kind| Err(FrontendError::at(kind, Some(at.clone())));
    let bad = |target: Option<&Label>, message: String| {
        FrontendError::at(
            FrontendErrorKind::BadArgument {
                target: target.cloned(),
                function: "job",
                message,
            },
            Some(at.clone()),
        )
    };
    if args.name == "all" {
        return Err(bad(
            None,
            "`all` is reserved for the pattern `:all`; pick another name".into(),
        ));
    }
    let label = package
        .dir
        .label(&args.name)
        .map_err(|e| bad(None, format!("`name`: `{}` {}", args.name, e.kind)))?;

    let mut srcs = Vec::with_capacity(args.srcs.len());
    for (i, src) in args.srcs.iter().enumerate() {
        let path = source_path(ws, package, src)
            .map_err(|message| bad(Some(&label), format!("`srcs[{i}]`: {message}")))?;
        srcs.push(path);
    }
    srcs.sort_unstable();
    srcs.dedup();

    let mut deps = Vec::with_capacity(args.deps.len());
    for (i, dep) in args.deps.iter().enumerate() {
        let dep = Label::parse_relative(dep, &package.dir)
            .map_err(|e| bad(Some(&label), format!("`deps[{i}]`: {e}")))?;
        deps.push(dep);
    }
    deps.sort_unstable();
    deps.dedup();

    let mut seen_outs = BTreeSet::new();
    for out in &args.outs {
        if let Err(e) = check_relative_path(out) {
            return fail(FrontendErrorKind::OutEscapes {
                target: label.clone(),
                out: out.clone(),
                reason: e.kind.to_string(),
            });
        }
        if !seen_outs.insert(out.as_str()) {
            return Err(bad(
                Some(&label),
                format!("out `{out}` is listed twice in `outs`"),
            ));
        }
    }

    let rewriter = Rewriter {
        label: &label,
        dir: &package.dir,
        deps: &deps,
        at,
    };
    let mut env = BTreeMap::new();
    for (key, value) in &args.env {
        check_env_key(key).map_err(|m| bad(Some(&label), format!("`env`: {m}")))?;
        env.insert(
            key.clone(),
            rewriter.rewrite(value, || format!("env[{key}]"))?,
        );
    }
    let default_cwd = if package.fs_dir.is_empty() {
        "{{SOURCE_DIR}}".to_owned()
    } else {
        format!("{{{{SOURCE_DIR}}}}/{}", package.fs_dir)
    };
    let mut cmds = Vec::with_capacity(args.cmds.len());
    for (i, cmd) in args.cmds.into_iter().enumerate() {
        cmds.push(match cmd {
            RawCmd::Exec { argv, env, cwd } => {
                if argv.first().is_none_or(|a| a.is_empty()) {
                    return Err(bad(
                        Some(&label),
                        format!("`cmds[{i}]`: an exec needs a program, as `exec([\"cc\", ...])`"),
                    ));
                }
                let mut new_argv = Vec::with_capacity(argv.len());
                for (j, arg) in argv.iter().enumerate() {
                    new_argv.push(rewriter.rewrite(arg, || format!("cmds[{i}].argv[{j}]"))?);
                }
                let mut new_env = BTreeMap::new();
                for (key, value) in &env {
                    check_env_key(key)
                        .map_err(|m| bad(Some(&label), format!("`cmds[{i}].env`: {m}")))?;
                    new_env.insert(
                        key.clone(),
                        rewriter.rewrite(value, || format!("cmds[{i}].env[{key}]"))?,
                    );
                }
                let cwd = match cwd {
                    Some(cwd) => rewriter.rewrite(&cwd, || format!("cmds[{i}].cwd"))?,
                    None => default_cwd.clone(),
                };
                Cmd::Exec {
                    argv: new_argv,
                    env: new_env,
                    cwd: Some(cwd),
                }
            }
            RawCmd::Cat { output, template } => Cmd::Cat {
                output: rewriter.rewrite(&output, || format!("cmds[{i}].output"))?,
                template: rewriter.rewrite(&template, || format!("cmds[{i}].template"))?,
            },
        });
    }

    let mut tools = args.tools;
    for tool in &tools {
        if tool.is_empty() || tool.contains('\0') {
            return Err(bad(
                Some(&label),
                "`tools`: a tool is a program name, as `\"ld\"`".into(),
            ));
        }
    }
    tools.sort_unstable();
    tools.dedup();

    Ok(Target {
        label,
        defined_at: at.clone(),
        srcs,
        deps,
        cmds,
        env,
        outs: args.outs,
        tools,
        info: args.info.into_iter().collect(),
        network: args.network,
    })
}

/// The workspace-relative path of a `srcs` entry: a path relative to the BUILD file's
/// directory, or a file label (`//dir:file`, `@pkg//dir:sub/file`, `:file`).
pub(crate) fn source_path(
    ws: &Workspace,
    package: &PackageDir,
    src: &str,
) -> Result<String, String> {
    if src.starts_with("//") || src.starts_with('@') || src.starts_with(':') {
        let (dir, file) = parse_file_label(src, &package.dir)?;
        let fs_dir = ws.dir_of(&dir).map_err(|e| e.kind.to_string())?;
        return Ok(join_path(&fs_dir, &file));
    }
    check_relative_path(src).map_err(|e| {
        format!(
            "{e}; a source is a path relative to the BUILD file's directory, or a file label \
             such as `//dir:file.c` for a file elsewhere"
        )
    })?;
    Ok(join_path(&package.fs_dir, src))
}

/// Splits a file label into the directory it is relative to and the file path inside it:
/// `//lib:include/util.h` is (`//lib`, `include/util.h`), `:x.star` in `//a` is (`//a`,
/// `x.star`). Unlike a target name, the file part may hold `/`.
pub(crate) fn parse_file_label(
    text: &str,
    current: &PackagePath,
) -> Result<(PackagePath, String), String> {
    let (dir, file) = if let Some(file) = text.strip_prefix(':') {
        (current.clone(), file)
    } else {
        let slashes = text.find("//").ok_or_else(|| {
            format!("invalid file label `{text}`: expected `//` after `@package`")
        })?;
        let (dir_text, file) = match text[slashes..].find(':') {
            Some(colon) => (&text[..slashes + colon], &text[slashes + colon + 1..]),
            None => {
                return Err(format!(
                    "`{text}` names a directory, not a file; write the file after `:`, as \
                     `//dir:file`"
                ));
            }
        };
        let dir = super::pattern::package_path(dir_text)
            .map_err(|e| format!("invalid file label `{text}`: {}", e.kind))?;
        (dir, file)
    };
    check_relative_path(file).map_err(|e| format!("invalid file label `{text}`: {e}"))?;
    Ok((dir, file.to_owned()))
}

fn check_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(format!(
            "`{key}` is not a valid variable name (it must be non-empty, without `=` or NUL)"
        ));
    }
    Ok(())
}

/// Rewrites `{{DEP:<ref>}}` to `{{DEP:<canonical label>}}`, checking that each names a dep.
struct Rewriter<'a> {
    label: &'a Label,
    dir: &'a PackagePath,
    /// Sorted.
    deps: &'a [Label],
    at: &'a SourceLocation,
}

impl Rewriter<'_> {
    fn rewrite(&self, text: &str, field: impl Fn() -> String) -> Result<String, FrontendError> {
        let at = Some(self.at.clone());
        if text.contains('\0') {
            return Err(FrontendError::at(
                FrontendErrorKind::BadArgument {
                    target: Some(self.label.clone()),
                    function: "job",
                    message: format!("`{}` holds a NUL byte", field()),
                },
                at,
            ));
        }
        let template = Template::parse(text).map_err(|error| {
            FrontendError::at(
                FrontendErrorKind::BadTemplate {
                    target: self.label.clone(),
                    field: field(),
                    error,
                },
                at.clone(),
            )
        })?;
        template.rewrite_deps(|reference| {
            let resolved = Label::parse_relative(reference, self.dir).map_err(|e| {
                FrontendError::at(
                    FrontendErrorKind::BadArgument {
                        target: Some(self.label.clone()),
                        function: "job",
                        message: format!("`{}`: `{{{{DEP:{reference}}}}}`: {e}", field()),
                    },
                    at.clone(),
                )
            })?;
            if self.deps.binary_search(&resolved).is_err() {
                return Err(FrontendError::at(
                    FrontendErrorKind::UndeclaredDepRef {
                        target: self.label.clone(),
                        reference: reference.to_owned(),
                        resolved,
                        field: field(),
                    },
                    at.clone(),
                ));
            }
            Ok(resolved)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_labels() {
        let here = PackagePath::new(None, "a").expect("valid");
        let cases = [
            (":x.star", "//a", "x.star"),
            ("//lib:include/util.h", "//lib", "include/util.h"),
            ("//:defs.star", "//", "defs.star"),
            ("@curl//src:x.h", "@curl//src", "x.h"),
        ];
        for (text, dir, file) in cases {
            let (d, f) = parse_file_label(text, &here).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((d.to_string().as_str(), f.as_str()), (dir, file), "{text}");
        }
        for bad in ["//lib/util.h", "//lib:../x", "//a b:x", ":", "@x"] {
            assert!(parse_file_label(bad, &here).is_err(), "{bad}");
        }
    }
}
