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
//!
//! In the hermetic sandbox (the default where the kernel allows it) each process starts in new
//! namespaces with a root of its own (see the `hermetic` module): the sandbox's directories keep
//! their paths there, so templates render the same in both modes. A peer's job runs only there.
//!
//! A job made only of `cat` commands gets no sandbox at all: see the `cat_tree` module.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;
use weft_protocol::path::check_relative_path;
use weft_protocol::{ActionResult, Cmd, Digest, Input, Job, OutputFile, Segment, Template, Tree};
use weft_store::{Store, StoreError, TreeSummary};

use super::cat_tree::CatTree;
use super::context::{RunContext, SandboxMode};
use super::error::ExecError;
use super::hermetic::{SpawnFailure, SpawnSpec};
use super::limits::{self, JobLimits};
use super::process::ProcessGroup;
use super::request::{CmdFailure, RunOutcome, RunRequest};
use super::sandbox::{self, CatError, Filling, Layout, Sandbox, SlotPool, Streams};

/// A `cat` whose output and text are rendered and checked, waiting to be written.
struct CatWrite {
    cmd_index: usize,
    /// The output path, relative to `out/`.
    rel: String,
    text: String,
}

/// How a job's commands are rendered: its sandbox's paths and its deps' directories.
struct Renderer<'a> {
    job: &'a Job,
    layout: Layout,
    /// Each dependency's hex id and the directory its outputs are in.
    dep_dirs: Vec<(String, String)>,
}

/// What every path through a run ends with.
struct Collected {
    /// Every output file; empty when the outputs were not collected.
    outputs: Vec<OutputFile>,
    /// The output tree; the (stored) empty tree when the outputs were not collected.
    output_tree: Digest,
    stdout: Digest,
    stderr: Digest,
    failure: Option<CmdFailure>,
}

pub(crate) async fn run(
    context: &RunContext,
    req: RunRequest<'_>,
) -> Result<RunOutcome, ExecError> {
    let job = req.job;
    if req.peer {
        if let SandboxMode::Weak { reason } = &context.mode {
            return Err(ExecError::PeerJobRefused {
                reason: format!("this node has no hermetic sandbox ({reason})"),
            });
        }
        if job.network {
            return Err(ExecError::PeerJobRefused {
                reason: "a job that may use the network runs only on its own node".to_owned(),
            });
        }
    }
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
    let started = Instant::now();
    let (collected, duration) = if let Some(failure) = bad_paths(job) {
        let store = context.store.clone();
        let collected = blocking(move || without_outputs(&store, failure)).await??;
        (collected, Duration::ZERO)
    } else if job.cmds.iter().all(|cmd| matches!(cmd, Cmd::Cat { .. })) {
        let collected = run_cats(context, job, &deps).await?;
        (collected, started.elapsed())
    } else {
        run_in_sandbox(context, &req, deps).await?
    };

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

/// Runs a job made only of `cat` commands, without a sandbox.
async fn run_cats(
    context: &RunContext,
    job: &Job,
    deps: &[(String, Digest)],
) -> Result<Collected, ExecError> {
    // The sandbox paths that templates render to, though nothing is made there.
    let renderer = Renderer::new(job, Layout::new(context.next_sandbox()), deps);
    let mut writes = Vec::with_capacity(job.cmds.len());
    let mut failure = None;
    for (cmd_index, cmd) in job.cmds.iter().enumerate() {
        if let Cmd::Cat { output, template } = cmd {
            match renderer.render_cat(cmd_index, output, template) {
                Ok(write) => writes.push(write),
                Err(failed) => {
                    failure = Some(failed);
                    break;
                }
            }
        }
    }
    let (store, outs, n_cmds) = (context.store.clone(), job.outs.clone(), job.cmds.len());
    blocking(move || match failure {
        Some(failure) => without_outputs(&store, failure),
        None => collect_cats(&store, &writes, &outs, n_cmds),
    })
    .await?
}

/// Runs a job with at least one `exec` command in a sandbox.
async fn run_in_sandbox(
    context: &RunContext,
    req: &RunRequest<'_>,
    deps: Vec<(String, Digest)>,
) -> Result<(Collected, Duration), ExecError> {
    let job = req.job;
    let has_deps = !deps.is_empty();
    let filling = Filling {
        inputs: job.inputs.clone(),
        deps: deps.clone(),
        read_only_src: !context.is_root,
        work_dirs: work_dirs(job),
    };
    let (store, pool, new_root) = (
        context.store.clone(),
        context.pool.clone(),
        context.next_sandbox(),
    );
    // Owned here from now on: dropping the run (a cancellation) drops it, which deletes the
    // directory, after the running command's process group has been killed.
    let sandbox =
        blocking(move || Sandbox::prepare(&store, &pool, || new_root, &filling)).await??;
    let renderer = Renderer::new(job, sandbox.layout.clone(), &deps);

    let started = Instant::now();
    let limits = &context.config.limits;
    let wall = match req.timeout {
        Some(timeout) if timeout <= limits.wall_time => WallTime {
            timeout,
            from_limits: false,
        },
        _ => WallTime {
            timeout: limits.wall_time,
            from_limits: true,
        },
    };
    let deadline = started + wall.timeout;
    let mut cats = Vec::new();
    let mut failure = None;
    for (cmd_index, cmd) in job.cmds.iter().enumerate() {
        let step = match cmd {
            Cmd::Cat { output, template } => renderer
                .render_cat(cmd_index, output, template)
                .map(|write| cats.push(write)),
            Cmd::Exec { argv, env, cwd } => {
                let written = if cats.is_empty() {
                    Ok(())
                } else {
                    let writes = std::mem::take(&mut cats);
                    let out = sandbox.layout.out.clone();
                    blocking(move || write_cats(&out, &writes)).await??
                };
                match written {
                    Ok(()) => {
                        let command = Command {
                            cmd_index,
                            argv,
                            env,
                            cwd: cwd.as_deref(),
                        };
                        let run = Run {
                            sandbox: &sandbox,
                            has_deps,
                            network: job.network,
                            deadline,
                            wall,
                        };
                        exec(context, &renderer, command, run).await?
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

    let duration = started.elapsed();
    let collect = Collect {
        store: context.store.clone(),
        pool: context.pool.clone(),
        sandbox,
        cats,
        outs: job.outs.clone(),
        n_cmds: job.cmds.len(),
        failure,
        keep_failed: context.config.keep_failed_sandboxes,
        limits: context.config.limits.clone(),
        hermetic: context.hermetic.is_some(),
    };
    let collected = blocking(move || collect.run()).await??;
    Ok((collected, duration))
}

impl<'a> Renderer<'a> {
    fn new(job: &'a Job, layout: Layout, deps: &[(String, Digest)]) -> Renderer<'a> {
        let dep_dirs = deps
            .iter()
            .map(|(hex, _)| (hex.clone(), layout.dep_dir(hex)))
            .collect();
        Renderer {
            job,
            layout,
            dep_dirs,
        }
    }

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
}

/// One `exec` command, as the job states it.
struct Command<'a> {
    cmd_index: usize,
    argv: &'a [String],
    env: &'a BTreeMap<String, String>,
    cwd: Option<&'a str>,
}

/// The wall time a job's commands have.
#[derive(Debug, Clone, Copy)]
struct WallTime {
    timeout: Duration,
    /// Whether it is the limit of the configuration (not the build's own, shorter, timeout).
    from_limits: bool,
}

impl WallTime {
    fn message(&self) -> String {
        let text = timed_out(self.timeout);
        if self.from_limits {
            format!("{text}: the wall-time limit ({})", limits::WALL_SETTING)
        } else {
            text
        }
    }
}

/// What every command of one run shares.
struct Run<'a> {
    sandbox: &'a Sandbox,
    has_deps: bool,
    network: bool,
    deadline: Instant,
    wall: WallTime,
}

/// Runs one `exec` command to its end. `Ok(Err(..))` is the command's failure.
async fn exec(
    context: &RunContext,
    renderer: &Renderer<'_>,
    command: Command<'_>,
    run: Run<'_>,
) -> Result<Result<(), CmdFailure>, ExecError> {
    let sandbox = run.sandbox;
    let cmd_index = command.cmd_index;
    let layout = &sandbox.layout;
    let mut argv = Vec::with_capacity(command.argv.len());
    for (arg_index, arg) in command.argv.iter().enumerate() {
        match renderer.render(arg) {
            Ok(arg) => argv.push(arg),
            Err(e) => {
                let message = format!("argv[{arg_index}]: {e}");
                return Ok(Err(failure(cmd_index, argv, None, message)));
            }
        }
    }
    let fail = |argv: &[String], message| Ok(Err(failure(cmd_index, argv.to_vec(), None, message)));
    let Some(name) = argv.first().cloned() else {
        return fail(&argv, "an exec command needs a program to run".to_owned());
    };
    let mut env = Vec::with_capacity(renderer.job.env.len() + command.env.len());
    for (key, value) in renderer.job.env.iter().chain(command.env) {
        match renderer.render(value) {
            Ok(value) => env.push((key.as_str(), value)),
            Err(e) => return fail(&argv, format!("env `{key}`: {e}")),
        }
    }
    let cwd = match command.cwd {
        None => layout.src.clone(),
        Some(template) => match renderer.render(template) {
            Ok(cwd) => {
                let trimmed = cwd.trim_end_matches('/');
                let cwd = if trimmed.is_empty() { &cwd } else { trimmed };
                if cwd.starts_with('/') {
                    cwd.to_owned()
                } else {
                    format!("{}/{cwd}", layout.src)
                }
            }
            Err(e) => return fail(&argv, format!("cwd: {e}")),
        },
    };
    if cwd != layout.root && sandbox::inside(&cwd, &layout.root).is_none() {
        return fail(
            &argv,
            format!("the working directory `{cwd}` is not inside the sandbox"),
        );
    }
    if Instant::now() >= run.deadline {
        return fail(&argv, run.wall.message());
    }

    let path_env = &context.config.path_env;
    let program = if name.contains('/') {
        Path::new(&cwd).join(&name)
    } else {
        match context.program(&name) {
            Some(program) => program,
            None => {
                let message = format!("cannot start `{name}`: not found on PATH ({path_env})");
                return fail(&argv, message);
            }
        }
    };
    let stream = |file: &std::fs::File| {
        file.try_clone()
            .map(Stdio::from)
            .map_err(|e| ExecError::io("share the stream files of", sandbox.path(), e))
    };
    let mut process = tokio::process::Command::new(&program);
    process.arg0(&name).args(&argv[1..]);
    let prepared = match &context.hermetic {
        None => {
            process.current_dir(&cwd);
            None
        }
        Some(hermetic) => {
            if !hermetic.shows(&program, sandbox.path()) {
                let message = format!(
                    "cannot start `{name}`: `{}` is outside what the sandbox shows (the \
                     toolchain directories {} and the job's own)",
                    program.display(),
                    hermetic.toolchain_list()
                );
                return fail(&argv, message);
            }
            let spec = SpawnSpec {
                layout: Some(layout),
                has_deps: run.has_deps,
                network: run.network,
                limits: &context.config.limits,
                pid_max_works: hermetic.counts_processes(),
                cwd: &cwd,
                probe_root: None,
            };
            let prepared = hermetic.prepare(&spec).map_err(|what| ExecError::Sandbox {
                what: format!("prepare it: {what}"),
                fix: "choose a sandbox root whose path is plain UTF-8",
            })?;
            prepared.install(process.as_std_mut());
            Some(prepared)
        }
    };
    process
        .env_clear()
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("PATH", path_env)
        .env("TMPDIR", &layout.tmp)
        .env("HOME", &layout.tmp)
        .stdin(Stdio::null())
        .stdout(stream(&sandbox.streams.stdout)?)
        .stderr(stream(&sandbox.streams.stderr)?)
        .process_group(0)
        .kill_on_drop(true);
    // A hermetic spawn forks the daemon and waits until the job has exec'd, after its
    // namespaces and mounts are made: milliseconds that must not hold a runtime thread.
    let (spawned, prepared) = if prepared.is_some() {
        tokio::task::spawn_blocking(move || (process.spawn(), prepared))
            .await
            .map_err(|e| ExecError::Internal(format!("the spawn task failed: {e}")))?
    } else {
        (process.spawn(), prepared)
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if is_resource_shortage(&err) => {
            return Err(ExecError::io("start a process in", sandbox.path(), err));
        }
        Err(err) => {
            return match prepared.as_ref().and_then(|prepared| prepared.failure()) {
                Some(SpawnFailure::Sandbox { what, fix }) => Err(ExecError::Sandbox { what, fix }),
                Some(SpawnFailure::WorkingDir { errno }) => {
                    let err = std::io::Error::from_raw_os_error(errno);
                    fail(&argv, spawn_failure(&name, &program, &cwd, &err))
                }
                None => fail(&argv, spawn_failure(&name, &program, &cwd, &err)),
            };
        }
    };

    let group = ProcessGroup::led_by(child.id());
    let waited = tokio::time::timeout_at(run.deadline, child.wait())
        .await
        .ok();
    let Some(status) = waited else {
        group.kill();
        let _ = child.wait().await;
        group.finish();
        return fail(&argv, run.wall.message());
    };
    group.finish();
    let status = status.map_err(|e| ExecError::io("wait for a command in", sandbox.path(), e))?;
    if status.success() {
        return Ok(Ok(()));
    }
    use std::os::unix::process::ExitStatusExt;
    let (exit_code, message) = match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exited with code {code}")),
        (None, Some(libc::SIGXFSZ)) if context.config.limits.output_bytes.is_some() => {
            let max = context.config.limits.output_bytes.unwrap_or_default();
            let message = format!(
                "killed by signal {} (SIGXFSZ): a file it wrote grew past the output limit of {} ({})",
                libc::SIGXFSZ,
                limits::mib(max),
                limits::OUTPUT_SETTING
            );
            (None, message)
        }
        (None, Some(signal)) => (None, format!("killed by signal {signal}")),
        (None, None) => (None, format!("ended with status {status}")),
    };
    Ok(Err(failure(cmd_index, argv, exit_code, message)))
}

/// Everything after the commands of a sandboxed job, in one blocking step.
struct Collect {
    store: Store,
    pool: std::sync::Arc<SlotPool>,
    sandbox: Sandbox,
    cats: Vec<CatWrite>,
    outs: Vec<String>,
    n_cmds: usize,
    failure: Option<CmdFailure>,
    keep_failed: bool,
    limits: JobLimits,
    /// Whether the job ran in the hermetic sandbox (so under its memory and process limits).
    hermetic: bool,
}

impl Collect {
    fn run(mut self) -> Result<Collected, ExecError> {
        let store = &self.store;
        let layout = &self.sandbox.layout;
        if self.failure.is_none() {
            self.failure = write_cats(&layout.out, &self.cats)?.err();
        }
        let mut summary = None;
        if self.failure.is_none() {
            let out = Path::new(&layout.out);
            match store.put_tree(out) {
                Ok(tree) => {
                    self.failure = check_output_size(&tree, &self.limits, self.n_cmds)
                        .or_else(|| check_outs(&tree, &self.outs, self.n_cmds));
                    summary = Some(tree);
                }
                Err(err) if is_bad_output(&err) => {
                    let message = format!("bad output: {err}");
                    self.failure = Some(failure(self.n_cmds, Vec::new(), None, message));
                }
                Err(err) => return Err(ExecError::store("collect the outputs in", out, err)),
            }
        }
        let mut empty = None;
        let path = self.sandbox.path();
        let streams = &self.sandbox.streams;
        let stdout = Streams::store(store, &streams.stdout, &mut empty, path)?;
        let stderr = Streams::store(store, &streams.stderr, &mut empty, path)?;
        let (outputs, output_tree) = match summary {
            Some(TreeSummary { digest, files }) => (files, digest),
            None => (Vec::new(), store_empty_tree(store)?),
        };
        if let Some(failed) = &mut self.failure {
            failed.stderr_tail = sandbox::tail(&streams.stderr);
            let ran = failed.cmd_index < self.n_cmds && !failed.argv.is_empty();
            if self.hermetic
                && ran
                && let Some(hint) = self.limits.hint(&failed.stderr_tail)
            {
                failed.message = format!("{}; {hint}", failed.message);
            }
            if self.keep_failed {
                failed.message =
                    format!("{} (sandbox kept at `{}`)", failed.message, path.display());
                self.sandbox.keep();
            } else {
                // Dropped: deleted. A failed job may have left anything behind.
                drop(self.sandbox);
            }
        } else {
            self.sandbox.recycle(&self.pool);
        }
        Ok(Collected {
            outputs,
            output_tree,
            stdout,
            stderr,
            failure: self.failure,
        })
    }
}

/// The outputs of a job made only of `cat` commands, built in memory and stored.
fn collect_cats(
    store: &Store,
    writes: &[CatWrite],
    outs: &[String],
    n_cmds: usize,
) -> Result<Collected, ExecError> {
    let mut tree = CatTree::default();
    for write in writes {
        if let Err(message) = tree.write(&write.rel, &write.text) {
            return without_outputs(store, failure(write.cmd_index, Vec::new(), None, message));
        }
    }
    let summary = match tree.store(store)? {
        Ok(summary) => summary,
        Err(message) => return without_outputs(store, failure(n_cmds, Vec::new(), None, message)),
    };
    let empty = store
        .put(b"")
        .map_err(|e| ExecError::store("store an empty stream for", store.root(), e))?;
    Ok(Collected {
        failure: check_outs(&summary, outs, n_cmds),
        outputs: summary.files,
        output_tree: summary.digest,
        stdout: empty,
        stderr: empty,
    })
}

/// The result of a job that failed before it made any output or stream.
fn without_outputs(store: &Store, failure: CmdFailure) -> Result<Collected, ExecError> {
    let empty = store
        .put(b"")
        .map_err(|e| ExecError::store("store an empty stream for", store.root(), e))?;
    Ok(Collected {
        outputs: Vec::new(),
        output_tree: store_empty_tree(store)?,
        stdout: empty,
        stderr: empty,
        failure: Some(failure),
    })
}

fn store_empty_tree(store: &Store) -> Result<Digest, ExecError> {
    store
        .put(&Tree::default().encode())
        .map_err(|e| ExecError::store("store an empty tree in", store.root(), e))
}

/// The failure for outputs that hold more than the output limit together.
fn check_output_size(tree: &TreeSummary, limits: &JobLimits, n_cmds: usize) -> Option<CmdFailure> {
    let max = limits.output_bytes?;
    let total: u64 = tree.files.iter().map(|file| file.size).sum();
    (total > max).then(|| {
        let message = format!(
            "the outputs hold {} together, over the output limit of {} ({})",
            limits::mib(total),
            limits::mib(max),
            limits::OUTPUT_SETTING
        );
        failure(n_cmds, Vec::new(), None, message)
    })
}

/// The failure for declared outs that are not regular files of the output tree.
fn check_outs(tree: &TreeSummary, outs: &[String], n_cmds: usize) -> Option<CmdFailure> {
    let missing: Vec<&str> = outs
        .iter()
        .filter(|declared| {
            tree.files
                .binary_search_by(|file| file.path.as_str().cmp(declared))
                .is_err()
        })
        .map(String::as_str)
        .collect();
    let message = match missing.as_slice() {
        [] => return None,
        [one] => format!("declared out `{one}` is missing"),
        many => format!("declared outs `{}` are missing", many.join("`, `")),
    };
    Some(failure(n_cmds, Vec::new(), None, message))
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
            | StoreError::NotADirectory { .. }
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

fn timed_out(timeout: Duration) -> String {
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

/// The directories under `{{SOURCE_DIR}}` that the job's commands run in, relative to it:
/// each `cwd` that is `{{SOURCE_DIR}}/<dir>` or a plain relative `<dir>`.
fn work_dirs(job: &Job) -> Vec<String> {
    let mut dirs = Vec::new();
    for cmd in &job.cmds {
        let Cmd::Exec { cwd: Some(cwd), .. } = cmd else {
            continue;
        };
        let Ok(template) = Template::parse(cwd) else {
            continue;
        };
        let rel = match template.segments() {
            [Segment::SourceDir, Segment::Literal(rest)] => rest.strip_prefix('/'),
            [Segment::Literal(rel)] if !rel.starts_with('/') => Some(*rel),
            _ => None,
        };
        let Some(rel) = rel.map(|r| r.trim_end_matches('/')) else {
            continue;
        };
        if !rel.is_empty() && check_relative_path(rel).is_ok() && !dirs.iter().any(|d| d == rel) {
            dirs.push(rel.to_owned());
        }
    }
    dirs
}
