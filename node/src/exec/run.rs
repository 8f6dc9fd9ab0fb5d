//! One run of one job: the steps behind [`Executor::run`](super::Executor::run).
//!
//! The environment of an `exec` command is built from nothing: the job's `env`, then the
//! command's own `env` (which wins), then `PATH` (the configured one), `TMPDIR` and `HOME`
//! (both `<sandbox>/tmp`), which win over anything declared. Values are rendered templates.
//! The working directory is the rendered `cwd` (relative to `{{SOURCE_DIR}}` when relative),
//! by default `{{SOURCE_DIR}}`, and must lie inside the sandbox. `argv[0]` without a `/` is
//! looked up on the configured `PATH`; with one, it is a path (relative to the working
//! directory). stdin is `/dev/null`; stdout and stderr are appended to the sandbox's stream
//! files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weft_protocol::path::check_relative_path;
use weft_protocol::{ActionResult, Cmd, Digest, Input, Job, OutputFile, Template, Tree};
use weft_store::{Store, StoreError, TreeSummary};

use super::error::ExecError;
use super::executor::{CmdFailure, Inner, RunOutcome, RunRequest};
use super::process::ProcessGroup;
use super::sandbox::{self, CatError, Filling, Layout, Sandbox, Streams};

/// A `cat` whose output and text are rendered and checked, waiting to be written.
struct CatWrite {
    cmd_index: usize,
    /// The output path, relative to `out/`.
    rel: String,
    text: String,
}

/// The state of one run while its commands execute.
struct JobRun<'a> {
    inner: &'a Inner,
    job: &'a Job,
    layout: Arc<Layout>,
    /// Each dependency's hex id and the directory its outputs are in.
    dep_dirs: Vec<(String, String)>,
    streams: Option<Streams>,
}

pub(crate) async fn run(inner: &Inner, req: RunRequest<'_>) -> Result<RunOutcome, ExecError> {
    let job = req.job;
    let mut deps = Vec::with_capacity(job.deps.len());
    for dep in &job.deps {
        let (_, tree) =
            req.deps
                .iter()
                .find(|(id, _)| id == dep)
                .ok_or_else(|| ExecError::MissingDep {
                    job: job.name.clone(),
                    dep: *dep,
                })?;
        deps.push((dep.to_string(), *tree));
    }
    let runs_processes = job.cmds.iter().any(|cmd| matches!(cmd, Cmd::Exec { .. }));
    let layout = Arc::new(Layout::new(inner.next_sandbox()));
    // Declared first, dropped last: a cancelled run kills its processes before this removes
    // the directory.
    let sandbox = Arc::new(Sandbox::new(PathBuf::from(&layout.root)));
    let mut run = JobRun {
        inner,
        job,
        dep_dirs: deps
            .iter()
            .map(|(hex, _)| (hex.clone(), layout.dep_dir(hex)))
            .collect(),
        layout: layout.clone(),
        streams: None,
    };

    let mut failure = bad_paths(job);
    let filling = Filling {
        inputs: if runs_processes {
            job.inputs.clone()
        } else {
            Vec::new()
        },
        deps: if runs_processes { deps } else { Vec::new() },
        runs_processes,
        read_only_src: !inner.is_root,
    };
    // A job that runs a process is set up before its commands; any other job is set up, run
    // and collected in one blocking step at the end.
    let mut fill_later = None;
    let made = failure.is_none() && runs_processes;
    if failure.is_none() {
        if runs_processes {
            let (store, sandbox, layout) = (inner.store.clone(), sandbox.clone(), layout.clone());
            run.streams =
                blocking(move || sandbox::fill(&store, &sandbox, &layout, &filling)).await??;
        } else {
            fill_later = Some(filling);
        }
    }

    let started = Instant::now();
    let deadline = req.timeout.map(|timeout| started + timeout);
    let mut cats = Vec::new();
    if failure.is_none() {
        for (cmd_index, cmd) in job.cmds.iter().enumerate() {
            let step = match cmd {
                Cmd::Cat { output, template } => run
                    .render_cat(cmd_index, output, template)
                    .map(|write| cats.push(write)),
                Cmd::Exec { argv, env, cwd } => {
                    let written = if cats.is_empty() {
                        Ok(())
                    } else {
                        let writes = std::mem::take(&mut cats);
                        let out = layout.out.clone();
                        blocking(move || write_cats(&out, &writes)).await??
                    };
                    match written {
                        Ok(()) => {
                            run.exec(cmd_index, argv, env, cwd.as_deref(), deadline, req.timeout)
                                .await?
                        }
                        Err(failed) => Err(failed),
                    }
                }
            };
            if let Err(failed) = step {
                failure = Some(failed);
                break;
            }
        }
    }
    let duration = started.elapsed();
    // Close the stream files before they are stored.
    let has_streams = run.streams.take().is_some();

    let collect = Collect {
        store: inner.store.clone(),
        sandbox: sandbox.clone(),
        layout,
        fill: fill_later,
        cats,
        outs: job.outs.clone(),
        n_cmds: job.cmds.len(),
        failure,
        has_streams,
        made,
        keep_failed: inner.config.keep_failed_sandboxes,
    };
    let collected = blocking(move || collect.run()).await??;
    let failure = collected.failure;
    let exit_code = match &failure {
        None => 0,
        Some(failed) => failed.exit_code.filter(|&code| code != 0).unwrap_or(-1),
    };
    if let Some(failed) = &failure {
        tracing::debug!(cmd_index = failed.cmd_index, message = %failed.message, "job failed");
    }
    Ok(RunOutcome {
        result: ActionResult {
            exit_code,
            outputs: collected.outputs,
            output_tree: collected.output_tree,
            stdout: collected.stdout,
            stderr: collected.stderr,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            executed_by: req.node,
            signature: None,
        },
        failure,
    })
}

impl JobRun<'_> {
    /// Renders a template string of the job.
    fn render(&self, text: &str) -> Result<String, String> {
        if !text.contains("{{") {
            return Ok(text.to_owned());
        }
        let template = Template::parse(text).map_err(|e| e.to_string())?;
        template
            .render(&self.layout.out, &self.layout.src, |dep| {
                self.dep_dirs
                    .iter()
                    .find(|(hex, _)| hex == dep)
                    .map(|(_, dir)| dir.clone())
            })
            .map_err(|e| e.to_string())
    }

    fn render_cat(
        &self,
        cmd_index: usize,
        output: &str,
        template: &str,
    ) -> Result<CatWrite, CmdFailure> {
        let fail = |message| failure(cmd_index, Vec::new(), None, message);
        let output = self
            .render(output)
            .map_err(|e| fail(format!("cat output: {e}")))?;
        let rel = sandbox::inside(&output, &self.layout.out).ok_or_else(|| {
            fail(format!(
                "cat output `{output}` is not a file path inside the output directory `{}`",
                self.layout.out
            ))
        })?;
        let text = self
            .render(template)
            .map_err(|e| fail(format!("cat template: {e}")))?;
        Ok(CatWrite {
            cmd_index,
            rel: rel.to_owned(),
            text,
        })
    }

    /// Runs one `exec` command to its end. `Ok(Err(..))` is the command's failure.
    async fn exec(
        &self,
        cmd_index: usize,
        argv_templates: &[String],
        env_templates: &BTreeMap<String, String>,
        cwd_template: Option<&str>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<Result<(), CmdFailure>, ExecError> {
        let mut argv = Vec::with_capacity(argv_templates.len());
        for (arg_index, arg) in argv_templates.iter().enumerate() {
            match self.render(arg) {
                Ok(arg) => argv.push(arg),
                Err(e) => {
                    let message = format!("argv[{arg_index}]: {e}");
                    return Ok(Err(failure(cmd_index, argv, None, message)));
                }
            }
        }
        let fail =
            |argv: &[String], message| Ok(Err(failure(cmd_index, argv.to_vec(), None, message)));
        let Some(name) = argv.first().cloned() else {
            return fail(&argv, "an exec command needs a program to run".to_owned());
        };
        let mut env = Vec::with_capacity(self.job.env.len() + env_templates.len());
        for (key, value) in self.job.env.iter().chain(env_templates) {
            match self.render(value) {
                Ok(value) => env.push((key.as_str(), value)),
                Err(e) => return fail(&argv, format!("env `{key}`: {e}")),
            }
        }
        let cwd = match cwd_template {
            None => self.layout.src.clone(),
            Some(template) => match self.render(template) {
                Ok(cwd) => {
                    let cwd = cwd.trim_end_matches('/');
                    if cwd.starts_with('/') {
                        cwd.to_owned()
                    } else {
                        format!("{}/{cwd}", self.layout.src)
                    }
                }
                Err(e) => return fail(&argv, format!("cwd: {e}")),
            },
        };
        if cwd != self.layout.root && sandbox::inside(&cwd, &self.layout.root).is_none() {
            return fail(
                &argv,
                format!("the working directory `{cwd}` is not inside the sandbox"),
            );
        }
        let path_env = &self.inner.config.path_env;
        let Some(streams) = &self.streams else {
            return Err(ExecError::Internal(
                "an exec command ran in a sandbox without stream files".to_owned(),
            ));
        };
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            let message = timed_out(timeout);
            return fail(&argv, message);
        }

        let mut attempt = 0;
        let mut child = loop {
            attempt += 1;
            let program = if name.contains('/') {
                Path::new(&cwd).join(&name)
            } else {
                match self.inner.program(&name) {
                    Some(program) => program,
                    None => {
                        return fail(
                            &argv,
                            format!("cannot start `{name}`: not found on PATH ({path_env})"),
                        );
                    }
                }
            };
            let stream = |file: &std::fs::File| {
                file.try_clone()
                    .map(Stdio::from)
                    .map_err(|e| ExecError::io("share the stream files of", self.sandbox_path(), e))
            };
            let mut command = tokio::process::Command::new(&program);
            command
                .arg0(&name)
                .args(&argv[1..])
                .env_clear()
                .envs(env.iter().map(|(key, value)| (key, value)))
                .env("PATH", path_env)
                .env("TMPDIR", &self.layout.tmp)
                .env("HOME", &self.layout.tmp)
                .current_dir(&cwd)
                .stdin(Stdio::null())
                .stdout(stream(&streams.stdout)?)
                .stderr(stream(&streams.stderr)?)
                .process_group(0)
                .kill_on_drop(true);
            match command.spawn() {
                Ok(child) => break child,
                // A program that moved since it was found: look it up again, once.
                Err(err)
                    if err.kind() == std::io::ErrorKind::NotFound
                        && attempt == 1
                        && !name.contains('/')
                        && self.inner.forget_program(&name) => {}
                Err(err) if is_resource_shortage(&err) => {
                    return Err(ExecError::io(
                        "start a process in",
                        self.sandbox_path(),
                        err,
                    ));
                }
                Err(err) => return fail(&argv, spawn_failure(&name, &program, &cwd, &err)),
            }
        };

        let group = ProcessGroup::led_by(child.id());
        let waited = match deadline {
            None => Some(child.wait().await),
            Some(deadline) => tokio::time::timeout_at(deadline, child.wait()).await.ok(),
        };
        let Some(status) = waited else {
            group.kill();
            let _ = child.wait().await;
            group.finish();
            return fail(&argv, timed_out(timeout));
        };
        group.finish();
        let status =
            status.map_err(|e| ExecError::io("wait for a command in", self.sandbox_path(), e))?;
        if status.success() {
            return Ok(Ok(()));
        }
        use std::os::unix::process::ExitStatusExt;
        let (exit_code, message) = match (status.code(), status.signal()) {
            (Some(code), _) => (Some(code), format!("exited with code {code}")),
            (None, Some(signal)) => (None, format!("killed by signal {signal}")),
            (None, None) => (None, format!("ended with status {status}")),
        };
        Ok(Err(failure(cmd_index, argv, exit_code, message)))
    }

    fn sandbox_path(&self) -> &Path {
        Path::new(&self.layout.root)
    }
}

/// Everything after the commands, in one blocking step.
struct Collect {
    store: Store,
    sandbox: Arc<Sandbox>,
    layout: Arc<Layout>,
    /// For a job that runs no process: the sandbox is made here.
    fill: Option<Filling>,
    cats: Vec<CatWrite>,
    outs: Vec<String>,
    n_cmds: usize,
    failure: Option<CmdFailure>,
    has_streams: bool,
    /// Whether the sandbox directory has been made (a job that runs processes).
    made: bool,
    keep_failed: bool,
}

struct Collected {
    /// Every output file; empty when the outputs were not collected.
    outputs: Vec<OutputFile>,
    /// The output tree; the (stored) empty tree when the outputs were not collected.
    output_tree: Digest,
    stdout: Digest,
    stderr: Digest,
    failure: Option<CmdFailure>,
}

impl Collect {
    fn run(mut self) -> Result<Collected, ExecError> {
        let store = &self.store;
        let layout = &self.layout;
        if self.failure.is_none()
            && let Some(filling) = &self.fill
        {
            sandbox::fill(store, &self.sandbox, layout, filling)?;
            self.made = true;
        }
        if self.failure.is_none() {
            self.failure = write_cats(&layout.out, &self.cats)?.err();
        }
        let mut summary = None;
        if self.failure.is_none() {
            let out = Path::new(&layout.out);
            match store.put_tree(out) {
                Ok(tree) => {
                    let missing: Vec<&str> = self
                        .outs
                        .iter()
                        .filter(|declared| {
                            tree.files
                                .binary_search_by(|file| file.path.as_str().cmp(declared))
                                .is_err()
                        })
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        let message = match missing.as_slice() {
                            [one] => format!("declared out `{one}` is missing"),
                            many => format!("declared outs `{}` are missing", many.join("`, `")),
                        };
                        self.failure = Some(failure(self.n_cmds, Vec::new(), None, message));
                    }
                    summary = Some(tree);
                }
                Err(err) if is_bad_output(&err) => {
                    let message = format!("bad output: {err}");
                    self.failure = Some(failure(self.n_cmds, Vec::new(), None, message));
                }
                Err(err) => return Err(ExecError::store("collect the outputs in", out, err)),
            }
        }
        let empty = || {
            store
                .put(b"")
                .map_err(|e| ExecError::store("store an empty stream for", self.sandbox.path(), e))
        };
        let put_stream = |path: &str| {
            store
                .put_file(Path::new(path))
                .map(|(digest, _)| digest)
                .map_err(|e| ExecError::store("store the stream", Path::new(path), e))
        };
        let (stdout, stderr) = if self.has_streams {
            (put_stream(&layout.stdout)?, put_stream(&layout.stderr)?)
        } else {
            let digest = empty()?;
            (digest, digest)
        };
        let (outputs, output_tree) = match summary {
            Some(TreeSummary { digest, files }) => (files, digest),
            None => {
                let empty_tree = store.put(&Tree::default().encode()).map_err(|e| {
                    ExecError::store("store an empty tree for", self.sandbox.path(), e)
                })?;
                (Vec::new(), empty_tree)
            }
        };
        if let Some(failed) = &mut self.failure {
            if self.has_streams {
                failed.stderr_tail = sandbox::tail(Path::new(&layout.stderr));
            }
            if self.keep_failed && self.made {
                self.sandbox.keep();
                failed.message = format!(
                    "{} (sandbox kept at `{}`)",
                    failed.message,
                    self.sandbox.path().display()
                );
            }
        }
        self.sandbox.remove();
        Ok(Collected {
            outputs,
            output_tree,
            stdout,
            stderr,
            failure: self.failure,
        })
    }
}

/// Writes the rendered `cat` outputs in order. `Ok(Err(..))` is the job's failure.
fn write_cats(out: &str, writes: &[CatWrite]) -> Result<Result<(), CmdFailure>, ExecError> {
    for write in writes {
        match sandbox::write_cat(out, &write.rel, &write.text) {
            Ok(()) => {}
            Err(CatError::Job(message)) => {
                return Ok(Err(failure(write.cmd_index, Vec::new(), None, message)));
            }
            Err(CatError::Exec(err)) => return Err(err),
        }
    }
    Ok(Ok(()))
}

/// A job whose input or out paths could reach outside their directories (a job that
/// [`Job::validate`] would refuse, from a careless or hostile peer).
fn bad_paths(job: &Job) -> Option<CmdFailure> {
    let bad_input = job.inputs.iter().find_map(|Input { path, .. }| {
        check_relative_path(path)
            .err()
            .map(|e| format!("input: {e}"))
    });
    let bad_out = || {
        job.outs
            .iter()
            .find_map(|out| check_relative_path(out).err().map(|e| format!("out: {e}")))
    };
    let message = bad_input.or_else(bad_out)?;
    Some(failure(0, Vec::new(), None, message))
}

fn failure(
    cmd_index: usize,
    argv: Vec<String>,
    exit_code: Option<i32>,
    message: String,
) -> CmdFailure {
    CmdFailure {
        cmd_index,
        argv,
        exit_code,
        message,
        stderr_tail: String::new(),
    }
}

/// Errors of `put_tree` that the job's outputs caused.
fn is_bad_output(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::SymlinkEscapes { .. }
            | StoreError::SymlinkLoop { .. }
            | StoreError::UnsupportedFileType { .. }
            | StoreError::BadName { .. }
            | StoreError::TreeTooLarge { .. }
    )
}

/// Spawn errors that mean the machine is short of something, not that the job is wrong.
fn is_resource_shortage(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(err.kind(), ErrorKind::OutOfMemory | ErrorKind::WouldBlock)
}

fn spawn_failure(name: &str, program: &Path, cwd: &str, err: &std::io::Error) -> String {
    if !Path::new(cwd).is_dir() {
        return format!("cannot start `{name}`: the working directory `{cwd}` does not exist");
    }
    if err.kind() == std::io::ErrorKind::NotFound {
        return format!(
            "cannot start `{name}`: `{}` or its interpreter does not exist",
            program.display()
        );
    }
    format!("cannot start `{name}` (`{}`): {err}", program.display())
}

fn timed_out(timeout: Option<Duration>) -> String {
    let timeout = timeout.unwrap_or_default();
    if timeout.subsec_millis() == 0 {
        format!("timed out after {}s", timeout.as_secs())
    } else if timeout.as_secs() == 0 {
        format!("timed out after {}ms", timeout.as_millis())
    } else {
        format!("timed out after {:.1}s", timeout.as_secs_f64())
    }
}

/// Runs `work` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ExecError::Internal(format!("a blocking sandbox task failed: {e}")))
}
