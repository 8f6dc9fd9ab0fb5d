//! The distbuild graph format (seed 003): a JSON object `{"Jobs": [...]}` with the Go field
//! names of the seed.
//!
//! ```json
//! {"Jobs": [
//!   {"ID": "gen", "Name": "write a header", "Cmds": [
//!     {"CatOutput": "{{OUTPUT_DIR}}/v.h", "CatTemplate": "#define V 1\n"}]},
//!   {"ID": "cc", "Inputs": ["main.c"], "Deps": ["gen"], "Cmds": [
//!     {"Exec": ["cc", "-I{{DEP:gen}}", "-o", "{{OUTPUT_DIR}}/main", "main.c"],
//!      "WorkingDirectory": "{{SOURCE_DIR}}", "Environ": ["LANG=C"]}]}
//! ]}
//! ```
//!
//! - `ID`s are strings the author chooses; each must be usable as a file name, because a
//!   job's outputs land in `OUT/<ID>/`. `{{DEP:<ID>}}` refers to them.
//! - Fields may be missing or `null` (Go's zero values): no inputs, no deps, no commands, an
//!   empty working directory (which means "the executor chooses"). Unknown fields are refused,
//!   which catches misspelt names.
//! - A Cmd is an exec when `Exec` is non-empty and a cat when `CatOutput` is set; exactly one
//!   of the two must hold.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use weft_protocol::Cmd;
use weft_protocol::Template;
use weft_protocol::path::{check_file_name, check_relative_path};

/// A parsed, checked distbuild graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistGraph {
    /// The jobs, each after all of its deps (and otherwise in file order).
    pub jobs: Vec<DistJob>,
}

/// One job of a [`DistGraph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistJob {
    /// The author's ID, unique in the graph and usable as a file name.
    pub id: String,
    /// The human-readable name; may be empty.
    pub name: String,
    /// Source files, relative to the source directory; sorted, without duplicates.
    pub inputs: Vec<String>,
    /// The IDs of the jobs whose outputs this one reads, as listed.
    pub deps: Vec<String>,
    /// The commands; `{{DEP:<ID>}}` names one of `deps`.
    pub cmds: Vec<Cmd>,
}

/// A distbuild graph that cannot be run: what is wrong, in which job and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DistbuildError {
    /// The ID of the job at fault (or its index, as `#3`, when it has no usable ID).
    pub job: Option<String>,
    /// The field at fault, such as `Cmds[1].Exec`.
    pub field: Option<String>,
    /// What is wrong.
    pub kind: DistbuildErrorKind,
}

/// What is wrong with a distbuild graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistbuildErrorKind {
    /// The text is not JSON of the expected shape.
    Json {
        /// serde_json's message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An ID is empty, or cannot be a file name or a `{{DEP:...}}` reference.
    BadId(String),
    /// Two jobs have the same ID.
    DuplicateId {
        /// The index of the first job with that ID.
        first: usize,
    },
    /// A dep names no job of the graph.
    UnknownDep {
        /// The dep as written.
        dep: String,
        /// A close ID, if any.
        suggestion: Option<String>,
    },
    /// A dep is listed twice.
    DuplicateDep(String),
    /// The jobs depend on each other in a cycle; the first ID is repeated at the end.
    Cycle(Vec<String>),
    /// A Cmd sets both `Exec` and `CatOutput`.
    BothKinds,
    /// A Cmd sets neither `Exec` nor `CatOutput`.
    NeitherKind,
    /// A cat Cmd sets `Environ` or `WorkingDirectory`, which only an exec uses.
    ExecFieldOnCat,
    /// An exec Cmd sets `CatTemplate`.
    CatFieldOnExec,
    /// An `Environ` entry is not `KEY=VALUE`.
    BadEnviron(String),
    /// An input path is not a normalized relative path.
    BadInput {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A string is not a valid template.
    BadTemplate(String),
    /// `{{DEP:x}}` names a job that is not in `Deps`.
    UndeclaredDep(String),
}

impl fmt::Display for DistbuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.job, &self.field) {
            (Some(job), Some(field)) => write!(f, "job `{job}`, field `{field}`: ")?,
            (Some(job), None) => write!(f, "job `{job}`: ")?,
            (None, Some(field)) => write!(f, "field `{field}`: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.kind)
    }
}

impl fmt::Display for DistbuildErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DistbuildErrorKind::*;
        match self {
            Json {
                message,
                line,
                column,
            } => write!(
                f,
                "malformed graph at line {line}, column {column}: {message}; expected \
                 `{{\"Jobs\": [...]}}` with the fields `ID`, `Name`, `Inputs`, `Deps`, `Cmds`"
            ),
            BadId(reason) => write!(f, "{reason}"),
            DuplicateId { first } => write!(
                f,
                "this ID is already used by job #{first}; IDs must be unique"
            ),
            UnknownDep { dep, suggestion } => {
                write!(f, "unknown dep `{dep}`: no job has this ID")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => Ok(()),
                }
            }
            DuplicateDep(dep) => write!(f, "dep `{dep}` is listed twice"),
            Cycle(ids) => write!(
                f,
                "dependency cycle: `{}`; remove one of these deps",
                ids.join(" -> ")
            ),
            BothKinds => f.write_str(
                "a Cmd sets both `Exec` and `CatOutput`; split it into an exec Cmd and a cat Cmd",
            ),
            NeitherKind => f.write_str(
                "a Cmd sets neither `Exec` nor `CatOutput`; set `Exec` to run a program or \
                 `CatOutput` (with `CatTemplate`) to write a file",
            ),
            ExecFieldOnCat => f.write_str(
                "`Environ` and `WorkingDirectory` apply to exec Cmds only; move them to one, or \
                 remove them",
            ),
            CatFieldOnExec => f.write_str(
                "`CatTemplate` applies to cat Cmds only; set `CatOutput` in a separate Cmd",
            ),
            BadEnviron(entry) => write!(
                f,
                "`{entry}` is not `KEY=VALUE` (the key must be non-empty, without NUL)"
            ),
            BadInput { path, reason } => write!(
                f,
                "input `{path}`: {reason}; inputs are paths relative to the source directory"
            ),
            BadTemplate(message) => write!(f, "{message}"),
            UndeclaredDep(dep) => write!(
                f,
                "`{{{{DEP:{dep}}}}}` names a job that is not in `Deps`; add `{dep}` to `Deps`"
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    #[serde(rename = "Jobs", default)]
    jobs: Option<Vec<RawJob>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Inputs", default)]
    inputs: Option<Vec<String>>,
    #[serde(rename = "Deps", default)]
    deps: Option<Vec<String>>,
    #[serde(rename = "Cmds", default)]
    cmds: Option<Vec<RawCmd>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCmd {
    #[serde(rename = "Exec", default)]
    exec: Option<Vec<String>>,
    #[serde(rename = "Environ", default)]
    environ: Option<Vec<String>>,
    #[serde(rename = "WorkingDirectory", default)]
    working_directory: Option<String>,
    #[serde(rename = "CatTemplate", default)]
    cat_template: Option<String>,
    #[serde(rename = "CatOutput", default)]
    cat_output: Option<String>,
}

/// Parses and checks a distbuild graph; see the module documentation.
pub fn parse_distbuild(json: &str) -> Result<DistGraph, DistbuildError> {
    let raw: RawGraph = serde_json::from_str(json).map_err(|e| DistbuildError {
        job: None,
        field: None,
        kind: DistbuildErrorKind::Json {
            message: e.to_string(),
            line: e.line(),
            column: e.column(),
        },
    })?;
    let raw_jobs = raw.jobs.unwrap_or_default();

    // IDs first, so that deps can be checked against all of them.
    let mut index: HashMap<String, usize> = HashMap::with_capacity(raw_jobs.len());
    for (i, job) in raw_jobs.iter().enumerate() {
        let id = job.id.clone().unwrap_or_default();
        let shown = if id.is_empty() {
            format!("#{i}")
        } else {
            id.clone()
        };
        let err = |kind| DistbuildError {
            job: Some(shown.clone()),
            field: Some("ID".into()),
            kind,
        };
        check_id(&id).map_err(|reason| err(DistbuildErrorKind::BadId(reason)))?;
        if let Some(first) = index.insert(id.clone(), i) {
            return Err(err(DistbuildErrorKind::DuplicateId { first }));
        }
    }

    let mut jobs = Vec::with_capacity(raw_jobs.len());
    for raw_job in raw_jobs {
        jobs.push(check_job(raw_job, &index)?);
    }
    let order = topological_order(&jobs, &index)?;
    let mut slots: Vec<Option<DistJob>> = jobs.into_iter().map(Some).collect();
    let jobs = order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect();
    Ok(DistGraph { jobs })
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("every job needs a non-empty `ID`".into());
    }
    check_file_name(id)
        .map_err(|e| format!("ID `{id}` cannot name an output directory: {}", e.kind))?;
    if id.contains("{{") || id.contains("}}") {
        return Err(format!(
            "ID `{id}` cannot hold `{{{{` or `}}}}`, which `{{{{DEP:<ID>}}}}` could not name"
        ));
    }
    Ok(())
}

fn check_job(raw: RawJob, index: &HashMap<String, usize>) -> Result<DistJob, DistbuildError> {
    let id = raw.id.unwrap_or_default();
    let err = |field: String, kind| DistbuildError {
        job: Some(id.clone()),
        field: Some(field),
        kind,
    };

    let mut inputs = raw.inputs.unwrap_or_default();
    for (i, input) in inputs.iter().enumerate() {
        check_relative_path(input).map_err(|e| {
            err(
                format!("Inputs[{i}]"),
                DistbuildErrorKind::BadInput {
                    path: input.clone(),
                    reason: e.kind.to_string(),
                },
            )
        })?;
    }
    inputs.sort_unstable();
    inputs.dedup();

    let deps = raw.deps.unwrap_or_default();
    for (i, dep) in deps.iter().enumerate() {
        let field = format!("Deps[{i}]");
        if !index.contains_key(dep) {
            let suggestion =
                super::suggest::closest(dep, index.keys().map(String::as_str)).map(str::to_owned);
            return Err(err(
                field,
                DistbuildErrorKind::UnknownDep {
                    dep: dep.clone(),
                    suggestion,
                },
            ));
        }
        if deps[..i].contains(dep) {
            return Err(err(field, DistbuildErrorKind::DuplicateDep(dep.clone())));
        }
    }

    let check_template = |field: String, text: &str| -> Result<(), DistbuildError> {
        let template = Template::parse(text).map_err(|e| {
            err(
                field.clone(),
                DistbuildErrorKind::BadTemplate(e.to_string()),
            )
        })?;
        for dep in template.deps() {
            if !deps.iter().any(|d| d == dep) {
                return Err(err(
                    field,
                    DistbuildErrorKind::UndeclaredDep(dep.to_owned()),
                ));
            }
        }
        Ok(())
    };

    let mut cmds = Vec::new();
    for (i, raw_cmd) in raw.cmds.unwrap_or_default().into_iter().enumerate() {
        let exec = raw_cmd.exec.unwrap_or_default();
        let environ = raw_cmd.environ.unwrap_or_default();
        let cwd = raw_cmd.working_directory.unwrap_or_default();
        let cat_template = raw_cmd.cat_template.unwrap_or_default();
        let cat_output = raw_cmd.cat_output.unwrap_or_default();
        let field = |name: &str| format!("Cmds[{i}].{name}");
        cmds.push(match (!exec.is_empty(), !cat_output.is_empty()) {
            (true, true) => return Err(err(format!("Cmds[{i}]"), DistbuildErrorKind::BothKinds)),
            (false, false) => {
                return Err(err(format!("Cmds[{i}]"), DistbuildErrorKind::NeitherKind));
            }
            (true, false) => {
                if !cat_template.is_empty() {
                    return Err(err(
                        field("CatTemplate"),
                        DistbuildErrorKind::CatFieldOnExec,
                    ));
                }
                for (j, arg) in exec.iter().enumerate() {
                    check_template(format!("Cmds[{i}].Exec[{j}]"), arg)?;
                }
                if exec[0].is_empty() {
                    return Err(err(
                        format!("Cmds[{i}].Exec[0]"),
                        DistbuildErrorKind::BadTemplate(
                            "the program to run cannot be empty".into(),
                        ),
                    ));
                }
                let mut env = BTreeMap::new();
                for (j, entry) in environ.iter().enumerate() {
                    let entry_field = format!("Cmds[{i}].Environ[{j}]");
                    let Some((key, value)) = entry.split_once('=') else {
                        return Err(err(
                            entry_field,
                            DistbuildErrorKind::BadEnviron(entry.clone()),
                        ));
                    };
                    if key.is_empty() || key.contains('\0') || value.contains('\0') {
                        return Err(err(
                            entry_field,
                            DistbuildErrorKind::BadEnviron(entry.clone()),
                        ));
                    }
                    check_template(entry_field, value)?;
                    // As in Go's os/exec, a later entry for the same key wins.
                    env.insert(key.to_owned(), value.to_owned());
                }
                let cwd = if cwd.is_empty() {
                    None
                } else {
                    check_template(field("WorkingDirectory"), &cwd)?;
                    Some(cwd)
                };
                Cmd::Exec {
                    argv: exec,
                    env,
                    cwd,
                }
            }
            (false, true) => {
                if !environ.is_empty() {
                    return Err(err(field("Environ"), DistbuildErrorKind::ExecFieldOnCat));
                }
                if !cwd.is_empty() {
                    return Err(err(
                        field("WorkingDirectory"),
                        DistbuildErrorKind::ExecFieldOnCat,
                    ));
                }
                check_template(field("CatOutput"), &cat_output)?;
                check_template(field("CatTemplate"), &cat_template)?;
                Cmd::Cat {
                    output: cat_output,
                    template: cat_template,
                }
            }
        });
    }

    Ok(DistJob {
        name: raw.name.unwrap_or_default(),
        id,
        inputs,
        deps,
        cmds,
    })
}

/// Job indices, each after its deps; among ready jobs, file order. Fails on a cycle.
fn topological_order(
    jobs: &[DistJob],
    index: &HashMap<String, usize>,
) -> Result<Vec<usize>, DistbuildError> {
    let dep_indices: Vec<Vec<usize>> = jobs
        .iter()
        .map(|job| {
            job.deps
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect()
        })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    let mut waiting: Vec<usize> = vec![0; jobs.len()];
    for (i, deps) in dep_indices.iter().enumerate() {
        waiting[i] = deps.len();
        for &d in deps {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..jobs.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(jobs.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &dependent in &dependents[i] {
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() == jobs.len() {
        return Ok(order);
    }
    // Every job left waits on another job left: walking deps from any of them must
    // come back to a job already on the path.
    let start = (0..jobs.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut on_path: HashMap<usize, usize> = HashMap::from([(start, 0)]);
    while let Some(&current) = path.last() {
        let Some(&next) = dep_indices[current].iter().find(|&&d| waiting[d] > 0) else {
            break;
        };
        if let Some(&pos) = on_path.get(&next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|&i| jobs[i].id.clone()).collect();
            cycle.push(jobs[next].id.clone());
            return Err(DistbuildError {
                job: Some(jobs[next].id.clone()),
                field: Some("Deps".into()),
                kind: DistbuildErrorKind::Cycle(cycle),
            });
        }
        on_path.insert(next, path.len());
        path.push(next);
    }
    Err(DistbuildError {
        job: Some(jobs[start].id.clone()),
        field: Some("Deps".into()),
        kind: DistbuildErrorKind::Cycle(vec![jobs[start].id.clone()]),
    })
}
