//! [`Job`], the unit of work, and the pieces it is made of.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::JobId;
use super::template::{Template, TemplateError};
use crate::Digest;
use crate::path::{PathError, check_relative_path};

/// A unit of work: commands that run on one machine, in a sandbox holding exactly the declared
/// inputs and the output directories of the declared deps.
///
/// Everything that can change what a job produces is part of its [`JobId`]; see
/// [`Job::id`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// A human-readable name, such as the target's label. Not part of the [`JobId`].
    pub name: String,
    /// Source files, at their workspace-relative paths.
    pub inputs: Vec<Input>,
    /// The jobs whose output directories this job reads, through `{{DEP:<hex id>}}`.
    pub deps: Vec<JobId>,
    /// The commands, run in order; the first failure fails the job.
    pub cmds: Vec<Cmd>,
    /// Environment for every command; a command's own `env` overrides it.
    pub env: BTreeMap<String, String>,
    /// The files the job promises to leave under `{{OUTPUT_DIR}}`, relative to it.
    pub outs: Vec<String>,
    /// What the commands run, and on which platform.
    pub toolchain: Toolchain,
    /// The commands may use the host's network (a BUILD file's `network = True`). Such a job
    /// runs only on the node that asked for it: it is never lent to a peer, and its result is
    /// never taken from a peer's cache (what it fetched is not covered by its id).
    pub network: bool,
}

/// One source file of a job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Input {
    /// Path relative to the workspace (and to `{{SOURCE_DIR}}` in the sandbox).
    pub path: String,
    /// The digest of the file's content.
    pub digest: Digest,
    /// Whether the file is executable.
    pub executable: bool,
}

/// One command of a job. Every string in it is a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cmd {
    /// Runs a process.
    Exec {
        /// The program and its arguments. `argv[0]` is looked up on the daemon's `PATH`.
        argv: Vec<String>,
        /// Environment entries for this command only.
        env: BTreeMap<String, String>,
        /// The working directory; when absent, the executor chooses (the target's directory
        /// under `{{SOURCE_DIR}}`, for jobs from BUILD files).
        cwd: Option<String>,
    },
    /// Writes a rendered template to a file.
    Cat {
        /// The file to write, normally under `{{OUTPUT_DIR}}`.
        output: String,
        /// The text to render into it.
        template: String,
    },
}

/// What a job's commands run: the digest of each tool binary and the platform.
///
/// Two machines with the same compiler binaries have equal toolchains, so their [`JobId`]s
/// agree and they can share results and steal each other's jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Toolchain {
    /// The operating system and architecture, such as `linux-x86_64`.
    pub platform: String,
    /// Each tool as the commands name it (`argv[0]`), with the digest of the binary it
    /// resolves to.
    pub tools: BTreeMap<String, Digest>,
    /// A digest of what the commands can read from the toolchain directories besides the
    /// tool binaries, and that can change what they make: the system header and library
    /// directories and each compiler's own files. `None` for a job that runs no process.
    pub system: Option<Digest>,
}

impl Toolchain {
    /// A short fingerprint of the whole toolchain, for beacons and logs.
    pub fn fingerprint(&self) -> Digest {
        let mut canon = crate::canon::Canon::new("weft.toolchain.v1");
        canon.str(&self.platform).len(self.tools.len());
        for (name, digest) in &self.tools {
            canon.str(name).digest(digest);
        }
        canon.finish()
    }
}

impl Job {
    /// Checks everything a job must satisfy before anyone runs it, whoever sent it:
    /// paths are relative and normalized, names and outs are unique, every string in a
    /// command is a valid template, and every `{{DEP:...}}` names one of `deps` by its hex id.
    pub fn validate(&self) -> Result<(), JobError> {
        let err = |field: String, kind: JobErrorKind| {
            Err(JobError {
                job: crate::path::shorten(&self.name),
                field,
                kind,
            })
        };
        if self.name.is_empty() {
            return err("name".into(), JobErrorKind::EmptyName);
        }
        let mut seen = BTreeSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if let Err(e) = check_relative_path(&input.path) {
                return err(format!("inputs[{i}]"), JobErrorKind::Path(e));
            }
            if !seen.insert(input.path.as_str()) {
                return err(
                    format!("inputs[{i}]"),
                    JobErrorKind::Duplicate(input.path.clone()),
                );
            }
        }
        let mut seen = BTreeSet::new();
        for (i, out) in self.outs.iter().enumerate() {
            if let Err(e) = check_relative_path(out) {
                return err(format!("outs[{i}]"), JobErrorKind::Path(e));
            }
            if !seen.insert(out.as_str()) {
                return err(format!("outs[{i}]"), JobErrorKind::Duplicate(out.clone()));
            }
        }
        let deps: BTreeSet<String> = self.deps.iter().map(|d| d.to_string()).collect();
        if deps.len() != self.deps.len() {
            return err("deps".into(), JobErrorKind::DuplicateDep);
        }
        let check_template = |field: String, text: &str| -> Result<(), JobError> {
            let template = Template::parse(text).map_err(|e| JobError {
                job: crate::path::shorten(&self.name),
                field: field.clone(),
                kind: JobErrorKind::Template(e),
            })?;
            for dep in template.deps() {
                if !deps.contains(dep) {
                    return Err(JobError {
                        job: crate::path::shorten(&self.name),
                        field,
                        kind: JobErrorKind::UnknownDep(dep.to_owned()),
                    });
                }
            }
            Ok(())
        };
        let check_env = |field: &str, env: &BTreeMap<String, String>| -> Result<(), JobError> {
            for (key, value) in env {
                if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                    return Err(JobError {
                        job: crate::path::shorten(&self.name),
                        field: format!("{field}[{}]", crate::path::shorten(key)),
                        kind: JobErrorKind::BadEnv,
                    });
                }
                check_template(format!("{field}[{key}]"), value)?;
            }
            Ok(())
        };
        check_env("env", &self.env)?;
        for (i, cmd) in self.cmds.iter().enumerate() {
            match cmd {
                Cmd::Exec { argv, env, cwd } => {
                    if argv.first().is_none_or(|a| a.is_empty()) {
                        return err(format!("cmds[{i}].argv"), JobErrorKind::EmptyArgv);
                    }
                    for (j, arg) in argv.iter().enumerate() {
                        if arg.contains('\0') {
                            return err(format!("cmds[{i}].argv[{j}]"), JobErrorKind::Nul);
                        }
                        check_template(format!("cmds[{i}].argv[{j}]"), arg)?;
                    }
                    check_env(&format!("cmds[{i}].env"), env)?;
                    if let Some(cwd) = cwd {
                        check_template(format!("cmds[{i}].cwd"), cwd)?;
                    }
                }
                Cmd::Cat { output, template } => {
                    check_template(format!("cmds[{i}].output"), output)?;
                    check_template(format!("cmds[{i}].template"), template)?;
                }
            }
        }
        Ok(())
    }
}

/// A job that [`Job::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job `{job}`, field `{field}`: {kind}")]
pub struct JobError {
    /// The job's name.
    pub job: String,
    /// The field at fault, such as `cmds[2].argv[0]`.
    pub field: String,
    /// What is wrong with it.
    pub kind: JobErrorKind,
}

/// What is wrong with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobErrorKind {
    /// The job has no name.
    EmptyName,
    /// An input or out path is not a normalized relative path.
    Path(PathError),
    /// The same input or out is listed twice.
    Duplicate(String),
    /// The same dep is listed twice.
    DuplicateDep,
    /// An exec command has no program.
    EmptyArgv,
    /// A string has a NUL byte, which no process argument can hold.
    Nul,
    /// An environment key is empty or holds `=` or NUL, or a value holds NUL.
    BadEnv,
    /// A string is not a valid template.
    Template(TemplateError),
    /// A `{{DEP:...}}` names no dep of the job.
    UnknownDep(String),
}

impl fmt::Display for JobErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobErrorKind::EmptyName => f.write_str("a job needs a name"),
            JobErrorKind::Path(e) => write!(f, "{e}"),
            JobErrorKind::Duplicate(path) => write!(f, "`{path}` is listed twice"),
            JobErrorKind::DuplicateDep => f.write_str("a dependency is listed twice"),
            JobErrorKind::EmptyArgv => f.write_str("an exec command needs a program to run"),
            JobErrorKind::Nul => f.write_str("a process argument cannot hold a NUL byte"),
            JobErrorKind::BadEnv => f.write_str(
                "environment keys must be non-empty without `=` or NUL, and values without NUL",
            ),
            JobErrorKind::Template(e) => write!(f, "{e}"),
            JobErrorKind::UnknownDep(dep) => write!(
                f,
                "`{{{{DEP:{dep}}}}}` names no dependency of this job; add it to `deps`"
            ),
        }
    }
}
