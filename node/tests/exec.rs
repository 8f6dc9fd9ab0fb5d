//! The executor at its boundary: real sandboxes, real processes, a real store.

#![cfg(feature = "shell")]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use weft_node::exec::{
    ExecConfig, ExecError, Executor, JobLimits, RunOutcome, RunRequest, SandboxMode, SourceDigests,
    Toolchains,
};
use weft_protocol::{Cmd, Digest, Input, Job, JobId, NodeId, Toolchain};
use weft_store::{Store, Verify};

const PATH: &str = "/usr/bin:/bin";

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    exec: Executor,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_keep(false)
    }

    fn with_keep(keep_failed_sandboxes: bool) -> Fixture {
        Fixture::with(|config| config.keep_failed_sandboxes = keep_failed_sandboxes)
    }

    /// The weak sandbox, as where the kernel forbids namespaces.
    fn weak() -> Fixture {
        Fixture::with(|config| config.test_weak_sandbox = true)
    }

    /// An executor whose default configuration `change` changed.
    fn with(change: impl FnOnce(&mut ExecConfig)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("open store");
        let mut config = ExecConfig::new(dir.path().join("sandboxes"), PATH.to_owned());
        change(&mut config);
        let exec = Executor::new(store.clone(), config).expect("executor");
        Fixture { dir, store, exec }
    }

    /// The hermetic sandbox, or `None` (and a note why the test is skipped) where the kernel
    /// forbids it.
    fn hermetic(test: &str) -> Option<Fixture> {
        let f = Fixture::new();
        match f.exec.sandbox_mode() {
            SandboxMode::Hermetic => Some(f),
            SandboxMode::Weak { reason } => {
                eprintln!("skipped `{test}`: the hermetic sandbox needs user namespaces: {reason}");
                None
            }
        }
    }

    fn sandbox_root(&self) -> PathBuf {
        self.exec.config().sandbox_root.clone()
    }

    /// The sandboxes that are left (not the hermetic sandbox's mount point, `.root`).
    fn sandboxes(&self) -> Vec<PathBuf> {
        fs::read_dir(self.sandbox_root())
            .expect("read sandbox root")
            .map(|e| e.expect("entry").path())
            .filter(|path| !path.ends_with(".root"))
            .collect()
    }

    /// Checks that every sandbox left is an emptied one, waiting to be reused.
    fn assert_idle(&self) {
        for sandbox in self.sandboxes() {
            let mut names: Vec<String> = fs::read_dir(&sandbox)
                .expect("read sandbox")
                .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
                .collect();
            names.sort();
            assert_eq!(
                names,
                ["out", "src", "stderr", "stdout", "tmp"],
                "{}",
                sandbox.display()
            );
            for dir in ["out", "tmp"] {
                let dir = sandbox.join(dir);
                assert_eq!(
                    fs::read_dir(&dir).expect("read").count(),
                    0,
                    "{}",
                    dir.display()
                );
            }
            // `src/` may keep empty directories for the next run.
            let mut dirs = vec![
                sandbox.join("src"),
                sandbox.join("out"),
                sandbox.join("tmp"),
            ];
            while let Some(dir) = dirs.pop() {
                let mode = fs::symlink_metadata(&dir)
                    .expect("stat")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o7777, 0o755, "{}", dir.display());
                for entry in fs::read_dir(&dir).expect("read") {
                    let entry = entry.expect("entry");
                    let file_type = entry.file_type().expect("type");
                    assert!(file_type.is_dir(), "{} is left", entry.path().display());
                    dirs.push(entry.path());
                }
            }
            for file in ["stdout", "stderr"] {
                assert_eq!(fs::metadata(sandbox.join(file)).expect("stat").len(), 0);
            }
        }
    }

    async fn run(&self, job: &Job) -> RunOutcome {
        self.run_with(job, &[], None).await.expect("run")
    }

    async fn run_with(
        &self,
        job: &Job,
        deps: &[(JobId, Digest)],
        timeout: Option<Duration>,
    ) -> Result<RunOutcome, ExecError> {
        self.exec
            .run(RunRequest {
                id: job.id(),
                job,
                deps,
                timeout,
                node: NodeId([7; 32]),
                peer: false,
            })
            .await
    }

    /// Runs `job` as a peer's.
    async fn run_for_peer(&self, job: &Job) -> Result<RunOutcome, ExecError> {
        self.exec
            .run(RunRequest {
                id: job.id(),
                job,
                deps: &[],
                timeout: None,
                node: NodeId([7; 32]),
                peer: true,
            })
            .await
    }

    fn blob(&self, digest: &Digest) -> String {
        let bytes = self.store.read(digest, Verify::Yes).expect("read blob");
        String::from_utf8(bytes).expect("utf-8")
    }

    /// The content of the output `path` of a run.
    fn output(&self, outcome: &RunOutcome, path: &str) -> String {
        let file = outcome
            .result
            .outputs
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no output `{path}` in {:?}", outcome.result.outputs));
        self.blob(&file.digest)
    }

    /// An input whose content is put into the store.
    fn input(&self, path: &str, content: &str, executable: bool) -> Input {
        Input {
            path: path.to_owned(),
            digest: self.store.put(content.as_bytes()).expect("put"),
            executable,
        }
    }
}

fn job(cmds: Vec<Cmd>, outs: &[&str]) -> Job {
    Job {
        name: "//test:job".to_owned(),
        inputs: Vec::new(),
        deps: Vec::new(),
        cmds,
        env: BTreeMap::new(),
        outs: outs.iter().map(|s| s.to_string()).collect(),
        toolchain: Toolchain::default(),
        network: false,
    }
}

fn exec(argv: &[&str]) -> Cmd {
    Cmd::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
    }
}

fn exec_in(argv: &[&str], cwd: &str) -> Cmd {
    Cmd::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: Some(cwd.to_owned()),
    }
}

fn exec_env(argv: &[&str], env: &[(&str, &str)]) -> Cmd {
    Cmd::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: None,
    }
}

fn cat(output: &str, template: &str) -> Cmd {
    Cmd::Cat {
        output: output.to_owned(),
        template: template.to_owned(),
    }
}

fn sh(script: &str) -> Cmd {
    exec(&["sh", "-c", script])
}

/// Whether the process `pid` is gone (or a zombie, dead but not yet reaped by its parent).
fn is_dead(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn cat_writes_its_output_and_the_sandbox_goes_away() {
    let f = Fixture::new();
    let job = job(
        vec![
            cat("{{OUTPUT_DIR}}/gen/config.h", "#define X 1\n"),
            cat("{{OUTPUT_DIR}}/b.txt", "src={{SOURCE_DIR}}"),
        ],
        &["gen/config.h", "b.txt"],
    );
    let outcome = f.run(&job).await;
    assert_eq!(outcome.failure, None);
    assert_eq!(outcome.result.exit_code, 0);
    assert_eq!(outcome.result.executed_by, NodeId([7; 32]));
    assert_eq!(outcome.result.signature, None);
    let paths: Vec<&str> = outcome
        .result
        .outputs
        .iter()
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(paths, ["b.txt", "gen/config.h"]);
    assert_eq!(f.output(&outcome, "gen/config.h"), "#define X 1\n");
    assert!(f.output(&outcome, "b.txt").ends_with("/src"));
    assert!(!outcome.result.outputs[0].executable);
    assert_eq!(f.blob(&outcome.result.stdout), "");
    assert_eq!(f.blob(&outcome.result.stderr), "");
    // The output tree is in the store and holds the same files.
    let files = f
        .store
        .tree_files(&outcome.result.output_tree)
        .expect("tree");
    assert_eq!(files, outcome.result.outputs);
    assert_eq!(f.sandboxes(), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn exec_runs_with_streams_stored() {
    let f = Fixture::new();
    let job = job(
        vec![
            sh("echo hello; echo oops >&2; echo data > {{OUTPUT_DIR}}/o.txt"),
            sh("echo second"),
        ],
        &["o.txt"],
    );
    let outcome = f.run(&job).await;
    assert_eq!(outcome.failure, None);
    assert_eq!(f.output(&outcome, "o.txt"), "data\n");
    assert_eq!(f.blob(&outcome.result.stdout), "hello\nsecond\n");
    assert_eq!(f.blob(&outcome.result.stderr), "oops\n");
    f.assert_idle();
}

#[tokio::test]
async fn env_is_only_what_was_declared() {
    let f = Fixture::new();
    let mut job = job(
        vec![exec_env(
            &["env"],
            &[
                ("BOTH", "from-cmd"),
                ("CMD_ONLY", "{{OUTPUT_DIR}}"),
                ("PATH", "/evil"),
            ],
        )],
        &[],
    );
    job.env.insert("BOTH".into(), "from-job".into());
    job.env.insert("JOB_ONLY".into(), "j".into());
    let outcome = f.run(&job).await;
    assert_eq!(outcome.failure, None);
    let env: BTreeMap<String, String> = f
        .blob(&outcome.result.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let keys: Vec<&str> = env.keys().map(String::as_str).collect();
    // Nothing of the test process's environment (`CARGO_*`, `USER`, the real `HOME`) leaks.
    assert_eq!(
        keys,
        ["BOTH", "CMD_ONLY", "HOME", "JOB_ONLY", "PATH", "TMPDIR"]
    );
    assert_eq!(env["BOTH"], "from-cmd");
    assert_eq!(env["JOB_ONLY"], "j");
    assert_eq!(env["PATH"], PATH);
    assert!(env["CMD_ONLY"].ends_with("/out"), "{}", env["CMD_ONLY"]);
    assert!(env["TMPDIR"].ends_with("/tmp"));
    assert_eq!(env["HOME"], env["TMPDIR"]);
    assert!(env["TMPDIR"].starts_with(f.sandbox_root().to_str().expect("utf-8")));
}

#[tokio::test]
async fn cwd_defaults_to_the_source_dir_and_follows_templates() {
    let f = Fixture::new();
    let mut first = job(
        vec![
            exec(&["sh", "-c", "pwd > {{OUTPUT_DIR}}/default"]),
            exec_in(
                &["sh", "-c", "pwd > {{OUTPUT_DIR}}/templated"],
                "{{SOURCE_DIR}}/pkg",
            ),
            exec_in(&["sh", "-c", "pwd > {{OUTPUT_DIR}}/relative"], "pkg"),
            exec_in(&["sh", "-c", "pwd > ../out/outdir"], "{{OUTPUT_DIR}}"),
        ],
        &[],
    );
    first.inputs.push(f.input("pkg/a.c", "int a;", false));
    let outcome = f.run(&first).await;
    assert_eq!(outcome.failure, None);
    let root = f.sandbox_root();
    let default = f.output(&outcome, "default");
    let sandbox = Path::new(default.trim_end())
        .parent()
        .expect("parent")
        .to_owned();
    assert_eq!(sandbox.parent(), Some(root.as_path()));
    assert_eq!(
        default.trim_end(),
        sandbox.join("src").to_str().expect("utf-8")
    );
    let pkg = sandbox.join("src/pkg");
    assert_eq!(
        f.output(&outcome, "templated").trim_end(),
        pkg.to_str().expect("utf-8")
    );
    assert_eq!(
        f.output(&outcome, "relative").trim_end(),
        pkg.to_str().expect("utf-8")
    );
    let out = sandbox.join("out");
    assert_eq!(
        f.output(&outcome, "outdir").trim_end(),
        out.to_str().expect("utf-8")
    );

    for cwd in [
        "/tmp",
        "/",
        "//",
        "{{SOURCE_DIR}}/../..",
        "../x",
        "{{SOURCE_DIR}}/./pkg",
    ] {
        let outcome = f.run(&job_in(cwd)).await;
        let failure = outcome.failure.expect("a cwd outside fails");
        assert!(
            failure.message.contains("is not inside the sandbox"),
            "{cwd}: {}",
            failure.message
        );
    }
    // A working directory under `{{SOURCE_DIR}}` that no input lies in is made for the
    // command (an archive job's directory holds none of its inputs).
    let outcome = f.run(&job_in("{{SOURCE_DIR}}/nope/deeper")).await;
    assert_eq!(outcome.failure, None);
    f.assert_idle();

    fn job_in(cwd: &str) -> Job {
        job(vec![exec_in(&["true"], cwd)], &[])
    }
}

#[tokio::test]
async fn deps_are_materialized_under_their_ids() {
    let f = Fixture::new();
    let tree_dir = f.dir.path().join("dep-out");
    fs::create_dir_all(tree_dir.join("include")).expect("mkdir");
    fs::write(tree_dir.join("include/lib.h"), "int lib(void);\n").expect("write");
    let tree = f.store.put_tree(&tree_dir).expect("put tree").digest;
    let dep = JobId(Digest::of(b"the dep"));
    let hex = dep.to_string();
    let mut job = job(
        vec![
            exec(&[
                "cp",
                &format!("{{{{DEP:{hex}}}}}/include/lib.h"),
                "{{OUTPUT_DIR}}/copy.h",
            ]),
            cat("{{OUTPUT_DIR}}/where", &format!("{{{{DEP:{hex}}}}}")),
        ],
        &["copy.h"],
    );
    job.deps.push(dep);
    let outcome = f.run_with(&job, &[(dep, tree)], None).await.expect("run");
    assert_eq!(outcome.failure, None);
    assert_eq!(f.output(&outcome, "copy.h"), "int lib(void);\n");
    assert!(
        f.output(&outcome, "where")
            .ends_with(&format!("/deps/{hex}"))
    );

    // A dep without its tree in the request is the caller's mistake.
    let err = f.run_with(&job, &[], None).await.expect_err("missing dep");
    assert!(matches!(err, ExecError::MissingDep { .. }), "{err}");
    assert!(err.to_string().contains(&hex), "{err}");
    f.assert_idle();
}

#[tokio::test]
async fn inputs_are_materialized_read_only_with_their_exec_bits() {
    let f = Fixture::new();
    let mut job = job(
        vec![
            exec(&["tools/gen.sh", "{{OUTPUT_DIR}}/generated"]),
            sh("stat -c '%a %n' tools/gen.sh data/in.txt > {{OUTPUT_DIR}}/modes"),
            sh("cat data/in.txt > {{OUTPUT_DIR}}/copy"),
            sh("for d in . data; do \
                  if touch $d/new 2>/dev/null; then echo writable; else echo read-only; fi; \
                done > {{OUTPUT_DIR}}/src-dirs"),
        ],
        &["generated", "modes", "copy", "src-dirs"],
    );
    job.inputs
        .push(f.input("tools/gen.sh", "#!/bin/sh\necho generated > \"$1\"\n", true));
    job.inputs.push(f.input("data/in.txt", "payload", false));
    let outcome = f.run(&job).await;
    assert_eq!(
        outcome.failure,
        None,
        "{:?}",
        f.blob(&outcome.result.stderr)
    );
    assert_eq!(f.output(&outcome, "generated"), "generated\n");
    assert_eq!(
        f.output(&outcome, "modes"),
        "555 tools/gen.sh\n444 data/in.txt\n"
    );
    assert_eq!(f.output(&outcome, "copy"), "payload");
    // Root ignores modes, so the executor does not bother making `src/` read-only for it; the
    // hermetic sandbox mounts it read-only, for root too.
    let hermetic = f.exec.hermetic();
    let expected = if is_root() && !hermetic {
        "writable\nwritable\n"
    } else {
        "read-only\nread-only\n"
    };
    assert_eq!(f.output(&outcome, "src-dirs"), expected);
    f.assert_idle();
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test]
async fn a_missing_declared_out_fails_the_job() {
    let f = Fixture::new();
    let job = job(vec![sh("echo made > {{OUTPUT_DIR}}/a.o")], &["a.o", "b.o"]);
    let outcome = f.run(&job).await;
    let failure = outcome.failure.expect("failure");
    assert_eq!(failure.message, "declared out `b.o` is missing");
    assert_eq!(failure.cmd_index, 1);
    assert_eq!(failure.exit_code, None);
    assert_eq!(outcome.result.exit_code, -1);
    assert!(!outcome.result.success());
    f.assert_idle();
}

#[tokio::test]
async fn a_non_zero_exit_stops_the_job_and_reports_the_stderr_tail() {
    let f = Fixture::new();
    let job = job(
        vec![
            sh("for i in $(seq 1 30); do echo err$i >&2; done; exit 3"),
            cat("{{OUTPUT_DIR}}/never", "x"),
        ],
        &["never"],
    );
    let outcome = f.run(&job).await;
    let failure = outcome.failure.expect("failure");
    assert_eq!(failure.cmd_index, 0);
    assert_eq!(failure.exit_code, Some(3));
    assert_eq!(failure.message, "exited with code 3");
    assert_eq!(failure.argv[0], "sh");
    let expected: Vec<String> = (11..=30).map(|i| format!("err{i}")).collect();
    assert_eq!(failure.stderr_tail, expected.join("\n"));
    assert_eq!(outcome.result.exit_code, 3);
    assert_eq!(outcome.result.outputs, Vec::new());
    assert_eq!(f.blob(&outcome.result.stderr).lines().count(), 30);
    f.assert_idle();
}

#[tokio::test]
async fn a_signal_is_reported() {
    let f = Fixture::new();
    let outcome = f.run(&job(vec![sh("kill -9 $$")], &[])).await;
    let failure = outcome.failure.expect("failure");
    assert_eq!(failure.message, "killed by signal 9");
    assert_eq!(failure.exit_code, None);
    assert_eq!(outcome.result.exit_code, -1);
}

#[tokio::test]
async fn a_missing_tool_is_a_clear_failure() {
    let f = Fixture::new();
    let outcome = f
        .run(&job(vec![exec(&["no-such-tool-for-weft", "-c"])], &[]))
        .await;
    let failure = outcome.failure.expect("failure");
    assert_eq!(
        failure.message,
        "cannot start `no-such-tool-for-weft`: not found on PATH (/usr/bin:/bin)"
    );
    assert_eq!(failure.argv, ["no-such-tool-for-weft", "-c"]);
    f.assert_idle();
}

/// A marker no other process of the machine has in its command line.
fn marker(test: &str) -> String {
    format!("weft-{test}-{}-{:?}", std::process::id(), Instant::now())
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
}

/// Waits up to 5 s for every process with `marker` to be gone.
fn all_gone(marker: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if processes_with(marker).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

// The three tests below find the job's processes by a marker in their command lines: a job
// cannot write their pids outside its sandbox (it did in the weak sandbox, which these tests
// were first written for), and inside its pid namespace it sees other numbers.

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let f = Fixture::new();
    let marker = marker("timeout");
    let job = job(
        vec![sh(&format!(
            "sh -c 'sleep 100; : {marker}-bg' & sleep 100; : {marker}"
        ))],
        &[],
    );
    let started = Instant::now();
    let outcome = f
        .run_with(&job, &[], Some(Duration::from_millis(500)))
        .await
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(5));
    let failure = outcome.failure.expect("failure");
    assert_eq!(failure.message, "timed out after 500ms");
    assert_eq!(outcome.result.exit_code, -1);
    assert!(
        all_gone(&marker),
        "a process of the job survived the timeout"
    );
    f.assert_idle();
}

#[tokio::test]
async fn background_processes_do_not_outlive_their_command() {
    let f = Fixture::new();
    let marker = marker("background");
    let job = job(
        vec![sh(&format!(
            "sh -c 'sleep 100; : {marker}' & sleep 0.2; echo started"
        ))],
        &[],
    );
    let outcome = f.run(&job).await;
    assert_eq!(outcome.failure, None);
    assert_eq!(f.blob(&outcome.result.stdout), "started\n");
    assert!(all_gone(&marker), "the background process survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_kills_the_processes_and_removes_the_sandbox() {
    let f = Fixture::new();
    let marker = marker("drop");
    let job = job(
        vec![sh(&format!(
            "sh -c 'sleep 100; : {marker}-bg' & sleep 100; : {marker}"
        ))],
        &[],
    );
    let exec = f.exec.clone();
    let task = tokio::spawn(async move {
        let request = RunRequest {
            id: job.id(),
            job: &job,
            deps: &[],
            timeout: None,
            node: NodeId([0; 32]),
            peer: false,
        };
        exec.run(request).await
    });
    let started = Instant::now();
    while processes_with(&marker).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the job never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        f.sandboxes().len(),
        1,
        "the sandbox exists while the job runs"
    );
    task.abort();
    let joined = task.await;
    assert!(joined.is_err_and(|e| e.is_cancelled()));
    assert!(all_gone(&marker), "a process survived the cancellation");
    assert_eq!(f.sandboxes(), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn outputs_that_escape_fail_the_job() {
    let f = Fixture::new();
    let outside = f.dir.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let outside_text = outside.to_str().expect("utf-8");
    let cases: Vec<(Cmd, &str)> = vec![
        (
            cat("{{OUTPUT_DIR}}/../escape", "x"),
            "is not a file path inside the output directory",
        ),
        (
            cat(&format!("{outside_text}/x"), "x"),
            "is not a file path inside the output directory",
        ),
        (
            cat("{{SOURCE_DIR}}/x", "x"),
            "is not a file path inside the output directory",
        ),
        (
            cat("{{OUTPUT_DIR}}", "x"),
            "is not a file path inside the output directory",
        ),
        (
            exec(&["ln", "-s", "/etc/passwd", "{{OUTPUT_DIR}}/link"]),
            "points to `/etc/passwd`, outside the tree",
        ),
        (
            exec(&["ln", "-s", "../../x", "{{OUTPUT_DIR}}/up"]),
            "outside the tree",
        ),
    ];
    for (cmd, expected) in cases {
        let outcome = f.run(&job(vec![cmd.clone()], &[])).await;
        let failure = outcome
            .failure
            .unwrap_or_else(|| panic!("{cmd:?} succeeded"));
        assert!(
            failure.message.contains(expected),
            "{cmd:?}: {}",
            failure.message
        );
    }
    // A cat through a symlink that an earlier command planted is refused, and nothing is
    // written outside.
    let plant = exec(&["ln", "-s", outside_text, "{{OUTPUT_DIR}}/dir"]);
    let outcome = f
        .run(&job(
            vec![plant.clone(), cat("{{OUTPUT_DIR}}/dir/x", "evil")],
            &[],
        ))
        .await;
    let failure = outcome.failure.expect("failure");
    assert!(
        failure.message.contains("is in the way"),
        "{}",
        failure.message
    );
    assert_eq!(failure.cmd_index, 1);
    let plant_file = exec(&["ln", "-s", &format!("{outside_text}/y"), "{{OUTPUT_DIR}}/y"]);
    let outcome = f
        .run(&job(vec![plant_file, cat("{{OUTPUT_DIR}}/y", "evil")], &[]))
        .await;
    let failure = outcome.failure.expect("failure");
    assert!(
        failure.message.contains("is a symlink"),
        "{}",
        failure.message
    );
    assert_eq!(fs::read_dir(&outside).expect("read").count(), 0);
    // A symlink that stays inside is an output like any other.
    let outcome = f
        .run(&job(
            vec![sh("echo a > {{OUTPUT_DIR}}/a; ln -s a {{OUTPUT_DIR}}/b")],
            &["a"],
        ))
        .await;
    assert_eq!(outcome.failure, None);
    f.assert_idle();
}

#[tokio::test]
async fn bad_templates_and_paths_are_job_failures() {
    let f = Fixture::new();
    let outcome = f.run(&job(vec![exec(&["echo", "{{NOPE}}"])], &[])).await;
    let failure = outcome.failure.expect("failure");
    assert!(
        failure.message.starts_with("argv[1]: bad template"),
        "{}",
        failure.message
    );
    let outcome = f.run(&job(vec![exec(&["echo", "{{DEP:abc}}"])], &[])).await;
    let failure = outcome.failure.expect("failure");
    assert!(
        failure.message.contains("names no dependency"),
        "{}",
        failure.message
    );
    let mut bad = job(vec![exec(&["true"])], &[]);
    bad.inputs.push(f.input("../../etc/x", "x", false));
    let outcome = f.run(&bad).await;
    let failure = outcome.failure.expect("failure");
    assert!(
        failure.message.starts_with("input: bad relative path"),
        "{}",
        failure.message
    );
    f.assert_idle();
}

#[tokio::test]
async fn a_failed_sandbox_can_be_kept() {
    let f = Fixture::with_keep(true);
    let outcome = f
        .run(&job(vec![sh("echo x > {{OUTPUT_DIR}}/x; exit 1")], &[]))
        .await;
    let failure = outcome.failure.expect("failure");
    assert!(
        failure
            .message
            .starts_with("exited with code 1 (sandbox kept at `"),
        "{}",
        failure.message
    );
    let kept = f.sandboxes();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].clone();
    assert!(failure.message.contains(kept.to_str().expect("utf-8")));
    assert_eq!(fs::read_to_string(kept.join("out/x")).expect("read"), "x\n");
    assert_eq!(fs::read_to_string(kept.join("stdout")).expect("read"), "");
    // A successful job runs in another sandbox, which is emptied for reuse.
    let outcome = f.run(&job(vec![exec(&["true"])], &[])).await;
    assert_eq!(outcome.failure, None);
    assert_eq!(f.sandboxes().len(), 2);
    assert!(kept.join("out/x").exists());
}

#[test]
fn stale_sandboxes_are_removed_when_an_executor_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("sandboxes");
    // No pid is this large, so no process owns this one.
    let stale = root.join("999999999.0.3");
    fs::create_dir_all(stale.join("src/a")).expect("mkdir");
    fs::write(stale.join("src/a/f"), "x").expect("write");
    fs::set_permissions(stale.join("src/a"), fs::Permissions::from_mode(0o555)).expect("chmod");
    let live = root.join(format!("{}.99.0", std::process::id()));
    fs::create_dir_all(&live).expect("mkdir");
    let unrelated = root.join("notes");
    fs::create_dir_all(&unrelated).expect("mkdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    Executor::new(store, ExecConfig::new(root.clone(), PATH.to_owned())).expect("executor");
    assert!(!stale.exists());
    assert!(live.exists());
    assert!(unrelated.exists());
}

#[test]
fn source_digests_hit_without_rehashing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let sources = SourceDigests::with_racy_window(store.clone(), Duration::ZERO);
    let path = dir.path().join("a.c");
    fs::write(&path, "int a;").expect("write");
    let (digest, executable) = sources.digest(&path).expect("digest");
    assert_eq!(digest, Digest::of(b"int a;"));
    assert!(!executable);
    assert!(store.has(&digest), "a miss puts the file into the store");
    let stats = sources.stats();
    assert_eq!((stats.n_hits, stats.n_misses, stats.n_entries), (0, 1, 1));
    assert_eq!(sources.digest(&path).expect("digest").0, digest);
    let stats = sources.stats();
    assert_eq!((stats.n_hits, stats.n_misses), (1, 1));

    // A mode change is seen.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    let (again, executable) = sources.digest(&path).expect("digest");
    assert_eq!(again, digest);
    assert!(executable);
    assert_eq!(sources.stats().n_misses, 2);

    let not_a_file = sources.digest(dir.path()).expect_err("a directory");
    assert!(
        matches!(not_a_file, ExecError::NotAFile { .. }),
        "{not_a_file}"
    );
    let missing = sources
        .digest(&dir.path().join("none"))
        .expect_err("missing");
    assert!(missing.to_string().contains("none"), "{missing}");
}

#[test]
fn source_digests_see_same_size_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let sources = SourceDigests::with_racy_window(store, Duration::ZERO);
    let path = dir.path().join("a.c");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let write = |content: &str, mtime: SystemTime| {
        fs::write(&path, content).expect("write");
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(mtime))
            .expect("set mtime");
    };
    write("aaaa", old);
    assert_eq!(
        sources.digest(&path).expect("digest").0,
        Digest::of(b"aaaa")
    );
    // Same size, same mtime: only the ctime (which no one can set back) moves. Wait out the
    // coarsest kernel tick first.
    std::thread::sleep(Duration::from_millis(20));
    write("bbbb", old);
    assert_eq!(
        sources.digest(&path).expect("digest").0,
        Digest::of(b"bbbb")
    );
    // Same size, another mtime.
    write("cccc", old + Duration::from_secs(1));
    assert_eq!(
        sources.digest(&path).expect("digest").0,
        Digest::of(b"cccc")
    );
    assert_eq!(sources.stats().n_misses, 3);
    assert_eq!(
        sources.digest(&path).expect("digest").0,
        Digest::of(b"cccc")
    );
    assert_eq!(sources.stats().n_hits, 1);
}

#[test]
fn recently_written_sources_are_not_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let sources = SourceDigests::new(store);
    let path = dir.path().join("fresh.c");
    fs::write(&path, "int fresh;").expect("write");
    sources.digest(&path).expect("digest");
    sources.digest(&path).expect("digest");
    let stats = sources.stats();
    assert_eq!((stats.n_hits, stats.n_misses, stats.n_entries), (0, 2, 0));
}

#[test]
fn toolchains_resolve_and_cache_tools() {
    let tools = Toolchains::new(PATH.to_owned());
    let (path, digest) = tools.resolve("sh").expect("sh");
    assert!(
        path.is_absolute() && path.ends_with("sh"),
        "{}",
        path.display()
    );
    let real = fs::canonicalize(&path).expect("canonicalize");
    assert_eq!(digest, Digest::of(&fs::read(&real).expect("read sh")));
    assert_eq!(tools.n_digested(), 1);
    assert_eq!(tools.resolve("sh").expect("sh"), (path.clone(), digest));
    assert_eq!(tools.n_digested(), 1, "the second lookup is cached");
    assert_eq!(
        tools
            .resolve(path.to_str().expect("utf-8"))
            .expect("by path")
            .1,
        digest
    );

    let err = tools.resolve("no-such-tool-for-weft").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "tool `no-such-tool-for-weft` was not found on PATH (`/usr/bin:/bin`); install it, or \
         add its directory to the daemon's PATH"
    );

    let cmds = vec![
        exec(&["sh", "-c", "true"]),
        exec(&["{{DEP:abc}}/bin/tool"]),
        exec(&["./configure"]),
        cat("{{OUTPUT_DIR}}/x", "y"),
        exec(&["sh"]),
    ];
    let toolchain = tools
        .toolchain(&cmds, &["cat".to_owned()])
        .expect("toolchain");
    assert_eq!(toolchain.platform, Toolchains::platform());
    assert!(toolchain.platform.starts_with(std::env::consts::OS));
    let names: Vec<&str> = toolchain.tools.keys().map(String::as_str).collect();
    assert_eq!(names, ["cat", "sh"]);
    assert_eq!(toolchain.tools["sh"], digest);
    assert!(
        tools
            .toolchain(&[exec(&["no-such-tool-for-weft"])], &[])
            .is_err()
    );
}

#[test]
fn a_changed_tool_gets_a_new_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let tool = bin.join("mytool");
    fs::write(&tool, "#!/bin/sh\necho 1\n").expect("write");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    let tools = Toolchains::new(format!("{}:{PATH}", bin.display()));
    let (path, first) = tools.resolve("mytool").expect("resolve");
    assert_eq!(path, tool);
    fs::write(&tool, "#!/bin/sh\necho 22\n").expect("write");
    let (_, second) = tools.resolve("mytool").expect("resolve");
    assert_ne!(first, second);
    assert_eq!(second, Digest::of(b"#!/bin/sh\necho 22\n"));
    // Not executable: not a tool.
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(tools.resolve("mytool").is_err());
}

#[tokio::test]
async fn a_reused_sandbox_is_as_good_as_new() {
    let f = Fixture::new();
    // A messy job: junk in every corner, odd modes, and `out/` and `tmp/` contents that
    // point outside through symlinks.
    let victim = f.dir.path().join("victim");
    fs::create_dir(&victim).expect("mkdir");
    fs::write(victim.join("keep"), "keep").expect("write");
    let mut messy = job(
        vec![exec_env(
            &[
                "sh",
                "-c",
                "pwd > ../tmp/where; echo junk > ../junk; mkdir -p ../deps/x sub; \
                 echo x > $TMPDIR/t; ln -s \"$VICTIM\" $TMPDIR/link; \
                 mkdir {{OUTPUT_DIR}}/d; echo o > {{OUTPUT_DIR}}/d/o; chmod 500 {{OUTPUT_DIR}}/d; \
                 ln -s \"$VICTIM\" {{OUTPUT_DIR}}/../src/evil; chmod 700 {{OUTPUT_DIR}}; \
                 echo out; echo err >&2",
            ],
            &[("VICTIM", victim.to_str().expect("utf-8"))],
        )],
        &["d/o"],
    );
    messy.inputs.push(f.input("pkg/in.txt", "in", false));
    let outcome = f.run(&messy).await;
    // The `src/evil` symlink and the `sub` directory only work for root, who may write into
    // the read-only `src/`; either way the job ends.
    let _ = outcome.failure;
    f.assert_idle();
    assert_eq!(
        fs::read_to_string(victim.join("keep")).expect("read"),
        "keep"
    );

    let check = job(
        vec![sh(
            "pwd; ls -A ..; echo -; ls -A .; echo -; ls -A $TMPDIR; echo -; ls -A {{OUTPUT_DIR}}; \
             stat -c %a {{OUTPUT_DIR}}",
        )],
        &[],
    );
    let outcome = f.run(&check).await;
    assert_eq!(outcome.failure, None);
    // The stream files were emptied (the last job's `err` is not in this one's).
    assert_eq!(f.blob(&outcome.result.stderr), "");
    let sandbox = &f.sandboxes()[0];
    // A hermetic job does not see the stream files, which are the daemon's.
    let streams = if f.exec.hermetic() {
        ""
    } else {
        "stderr\nstdout\n"
    };
    let expected = format!(
        "{}/src\nout\nsrc\n{streams}tmp\n-\n-\n-\n755\n",
        sandbox.display()
    );
    assert_eq!(
        f.blob(&outcome.result.stdout),
        expected,
        "the second job ran in the first one's sandbox"
    );
    f.assert_idle();
}

#[tokio::test]
async fn dropping_the_executor_removes_idle_sandboxes() {
    let f = Fixture::new();
    let outcome = f.run(&job(vec![exec(&["true"])], &[])).await;
    assert_eq!(outcome.failure, None);
    assert_eq!(f.sandboxes().len(), 1);
    let root = f.sandbox_root();
    let Fixture { dir, store, exec } = f;
    drop(exec);
    // What is left is the hermetic sandbox's (empty) mount point.
    let left: Vec<_> = fs::read_dir(&root)
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .filter(|name| name != ".root")
        .collect();
    assert_eq!(left, Vec::<std::ffi::OsString>::new());
    drop((dir, store));
}

#[tokio::test]
async fn cat_trees_in_memory_match_trees_from_disk() {
    let f = Fixture::new();
    let cats = vec![
        cat("{{OUTPUT_DIR}}/b/deep/x.h", "x"),
        cat("{{OUTPUT_DIR}}/a.txt", "first"),
        cat("{{OUTPUT_DIR}}/b/y", ""),
        cat("{{OUTPUT_DIR}}/a.txt", "second"),
        cat("c", "relative"),
    ];
    let in_memory = f.run(&job(cats.clone(), &["a.txt", "b/deep/x.h"])).await;
    assert_eq!(in_memory.failure, None);
    // The same writes after a process ran go to a real `out/` and through `put_tree`.
    let mut on_disk = cats;
    on_disk.insert(0, exec(&["true"]));
    let on_disk = f.run(&job(on_disk, &["a.txt", "b/deep/x.h"])).await;
    assert_eq!(on_disk.failure, None);
    assert_eq!(in_memory.result.output_tree, on_disk.result.output_tree);
    assert_eq!(in_memory.result.outputs, on_disk.result.outputs);
    assert_eq!(f.output(&in_memory, "a.txt"), "second");
    assert_eq!(f.output(&in_memory, "c"), "relative");

    // Conflicts fail the same way in memory and on disk.
    for (first, second, expected) in [
        (
            "{{OUTPUT_DIR}}/a",
            "{{OUTPUT_DIR}}/a/b",
            "cannot write `a/b`: `a` is in the way and is not a directory",
        ),
        (
            "{{OUTPUT_DIR}}/a/b",
            "{{OUTPUT_DIR}}/a",
            "cannot write `a`: it is a directory",
        ),
    ] {
        for prefix in [vec![], vec![exec(&["true"])]] {
            let mut cmds = prefix;
            cmds.push(cat(first, "1"));
            cmds.push(cat(second, "2"));
            let n_before = cmds.len() - 1;
            let outcome = f.run(&job(cmds, &[])).await;
            let failure = outcome.failure.expect("a conflict fails");
            assert_eq!(failure.message, expected);
            assert_eq!(failure.cmd_index, n_before);
        }
    }
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
                && !is_dead(*pid)
        })
        .collect()
}

#[tokio::test]
async fn the_hermetic_sandbox_has_no_network_and_sees_no_other_process() {
    let Some(f) = Fixture::hermetic("the_hermetic_sandbox_has_no_network") else {
        return;
    };
    // The job is pid 2 (under the sandbox's init), its uid is the fixed job uid, and its
    // network namespace has a loopback interface only, which is down.
    let script = format!(
        "echo pid=$$; echo uid=$(id -u); tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; \
         cat /sys/class/net/lo/operstate 2>/dev/null; \
         test -e /proc/{} && echo sees-the-daemon; ls /proc | grep -c '^[0-9]'; \
         echo out > {{{{OUTPUT_DIR}}}}/o",
        std::process::id()
    );
    let outcome = f.run(&job(vec![sh(&script)], &["o"])).await;
    assert_eq!(outcome.failure, None, "{}", f.blob(&outcome.result.stderr));
    // Processes: the init, the shell, `ls` and `grep`.
    assert_eq!(f.blob(&outcome.result.stdout), "pid=2\nuid=1000\nlo\n4\n");
    assert_eq!(f.output(&outcome, "o"), "out\n");

    let outcome = f.run(&job(vec![sh("exit 7")], &[])).await;
    assert_eq!(
        outcome.failure.expect("failure").message,
        "exited with code 7"
    );
    // A signal the job sends itself kills it as it would outside (it is not pid 1).
    let outcome = f.run(&job(vec![sh("kill -TERM $$; sleep 5")], &[])).await;
    assert_eq!(
        outcome.failure.expect("failure").message,
        "killed by signal 15"
    );
    let outcome = f
        .run(&job(vec![exec(&["no-such-tool-for-weft"])], &[]))
        .await;
    assert!(
        outcome
            .failure
            .expect("failure")
            .message
            .contains("not found on PATH")
    );
    let marker = marker("hermetic");
    let outcome = f
        .run_with(
            &job(vec![sh(&format!("sleep 100 & sleep 100; : {marker}"))], &[]),
            &[],
            Some(Duration::from_millis(300)),
        )
        .await
        .expect("run");
    assert_eq!(
        outcome.failure.expect("failure").message,
        "timed out after 300ms"
    );
    assert!(all_gone(&marker), "the namespace outlived its timeout");
    f.assert_idle();
}

#[tokio::test]
async fn a_hermetic_job_sees_only_its_sandbox_and_the_toolchain() {
    let Some(f) = Fixture::hermetic("a_hermetic_job_sees_only_its_sandbox") else {
        return;
    };
    let secret = f.dir.path().join("secret");
    fs::write(&secret, "the team token").expect("write");
    let secret = secret.to_str().expect("utf-8");
    let store = f.dir.path().join("store");
    let store = store.to_str().expect("utf-8");
    let script = format!(
        "ls / > {{{{OUTPUT_DIR}}}}/root; ls /dev > {{{{OUTPUT_DIR}}}}/dev; \
         ls /etc > {{{{OUTPUT_DIR}}}}/etc; ls .. > {{{{OUTPUT_DIR}}}}/sandbox; \
         for path in {secret} {store} /root /home /var /tmp/x /usr/x data.txt /proc/sys/kernel/x; do \
           if cat $path >/dev/null 2>&1 || ls $path >/dev/null 2>&1; then echo \"reads $path\"; fi; \
           if touch $path 2>/dev/null; then echo \"writes $path\"; fi; \
         done > {{{{OUTPUT_DIR}}}}/reach; \
         echo written > $TMPDIR/t && cat $TMPDIR/t > {{{{OUTPUT_DIR}}}}/tmp"
    );
    let mut listing = job(
        vec![sh(&script)],
        &["root", "dev", "etc", "sandbox", "reach", "tmp"],
    );
    listing.inputs.push(f.input("data.txt", "input", false));
    let outcome = f.run(&listing).await;
    assert_eq!(outcome.failure, None, "{}", f.blob(&outcome.result.stderr));
    // `/`: the toolchain directories there are, `/etc`, `/dev`, `/proc`, and the first
    // directory of the sandbox's path.
    let mut expected: Vec<String> = ["dev", "etc", "proc", "usr", "bin"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for entry in fs::read_dir("/").expect("ls /") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if name.starts_with("lib") {
            expected.push(name);
        }
    }
    let top = f.sandbox_root();
    let first = top.components().nth(1).expect("a first directory");
    expected.push(first.as_os_str().to_str().expect("utf-8").to_owned());
    expected.sort();
    expected.dedup();
    let mut root: Vec<String> = f
        .output(&outcome, "root")
        .lines()
        .map(str::to_owned)
        .collect();
    root.sort();
    assert_eq!(root, expected);
    assert_eq!(
        f.output(&outcome, "dev"),
        "fd\nfull\nnull\nstderr\nstdin\nstdout\nurandom\nzero\n"
    );
    let etc = f.output(&outcome, "etc");
    for name in ["group", "passwd"] {
        assert!(etc.lines().any(|l| l == name), "{etc}");
    }
    assert!(
        etc.lines()
            .all(|l| ["alternatives", "group", "ld.so.cache", "passwd"].contains(&l)),
        "{etc}"
    );
    // The sandbox shows its directories, not the stream files.
    assert_eq!(f.output(&outcome, "sandbox"), "out\nsrc\ntmp\n");
    // Only the declared input is readable, and nothing outside `out/` and `tmp/` is writable.
    assert_eq!(f.output(&outcome, "reach"), "reads data.txt\n");
    assert_eq!(f.output(&outcome, "tmp"), "written\n");
    f.assert_idle();
}

#[tokio::test]
async fn a_peer_job_needs_the_hermetic_sandbox_and_no_network() {
    let weak = Fixture::weak();
    let SandboxMode::Weak { reason } = weak.exec.sandbox_mode() else {
        panic!("the test hook asks for the weak sandbox");
    };
    assert!(reason.contains("--test-weak-sandbox"), "{reason}");
    assert!(!weak.exec.hermetic());
    let plain = job(vec![sh("echo hi")], &[]);
    let refused = weak.run_for_peer(&plain).await;
    assert!(
        matches!(&refused, Err(ExecError::PeerJobRefused { reason }) if reason.contains("no hermetic sandbox")),
        "{refused:?}"
    );
    // Local jobs still run, as before: without namespaces.
    let outcome = weak
        .run(&job(
            vec![sh(&format!(
                "test -e /proc/{} && echo sees",
                std::process::id()
            ))],
            &[],
        ))
        .await;
    assert_eq!(outcome.failure, None);
    assert_eq!(weak.blob(&outcome.result.stdout), "sees\n");

    let Some(f) = Fixture::hermetic("a_peer_job_needs_the_hermetic_sandbox") else {
        return;
    };
    let outcome = f.run_for_peer(&plain).await.expect("run");
    assert_eq!(outcome.failure, None);
    let mut network = plain.clone();
    network.network = true;
    let refused = f.run_for_peer(&network).await;
    assert!(
        matches!(&refused, Err(ExecError::PeerJobRefused { reason }) if reason.contains("network")),
        "{refused:?}"
    );
    // A local job with `network` keeps the host's network namespace.
    let outcome = f
        .run(&{
            let mut job = job(
                vec![sh(
                    "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | grep -vx lo | wc -l",
                )],
                &[],
            );
            job.network = true;
            job
        })
        .await;
    assert_eq!(outcome.failure, None, "{}", f.blob(&outcome.result.stderr));
    let host_interfaces = fs::read_to_string("/proc/net/dev")
        .expect("read")
        .lines()
        .skip(2)
        .filter(|l| l.split(':').next().is_some_and(|n| n.trim() != "lo"))
        .count();
    assert_eq!(
        f.blob(&outcome.result.stdout).trim(),
        host_interfaces.to_string()
    );
}

#[tokio::test]
async fn hitting_a_limit_names_the_limit_and_its_setting() {
    let limits = JobLimits {
        wall_time: Duration::from_millis(400),
        memory_bytes: Some(256 << 20),
        max_processes: Some(50),
        output_bytes: Some(1 << 20),
    };
    let failure = |outcome: RunOutcome| outcome.failure.expect("a failure").message;
    // Wall time, when the build asks for no shorter timeout.
    let f = Fixture::with(|config| config.limits = limits.clone());
    let message = failure(f.run(&job(vec![sh("sleep 5")], &[])).await);
    assert_eq!(
        message,
        "timed out after 400ms: the wall-time limit (`job_limits.wall_secs` in the daemon's `config.toml`)"
    );
    let f = Fixture::with(|config| {
        config.limits = JobLimits {
            wall_time: Duration::from_secs(60),
            ..limits
        }
    });
    if !f.exec.hermetic() {
        eprintln!(
            "skipped the rest of `hitting_a_limit_names_the_limit`: no hermetic sandbox here"
        );
        return;
    }
    // One file past the output limit: the writer gets SIGXFSZ.
    let message = failure(
        f.run(&job(
            vec![sh("exec head -c 2000000 /dev/zero > {{OUTPUT_DIR}}/big")],
            &[],
        ))
        .await,
    );
    assert!(
        message.contains("SIGXFSZ")
            && message.contains("output limit of 1 MiB")
            && message.contains("`job_limits.output_mib`"),
        "{message}"
    );
    // Outputs past the limit together.
    let message = failure(
        f.run(&job(
            vec![sh(
                "for i in 1 2 3; do head -c 600000 /dev/zero > {{OUTPUT_DIR}}/f$i; done",
            )],
            &[],
        ))
        .await,
    );
    assert!(
        message.contains("over the output limit of 1 MiB")
            && message.contains("`job_limits.output_mib`"),
        "{message}"
    );
    // Processes: the kernel refuses the fork.
    let message = failure(
        f.run(&job(
            vec![sh(
                "i=0; while [ $i -lt 400 ]; do sleep 3 & i=$((i+1)); done; wait",
            )],
            &[],
        ))
        .await,
    );
    assert!(
        message.contains("processes") && message.contains("`job_limits.processes`"),
        "{message}"
    );
    // Memory: an allocation fails.
    let message = failure(
        f.run(&job(
            vec![exec(&["python3", "-c", "b = bytearray(600 << 20)"])],
            &[],
        ))
        .await,
    );
    assert!(
        message.contains("memory limit of 256 MiB") && message.contains("`job_limits.memory_mib`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_reused_sandbox_holds_only_the_declared_inputs() {
    let f = Fixture::new();
    let list = || sh("find . | sort > {{OUTPUT_DIR}}/files");
    let cases: [(&[&str], &str); 5] = [
        (
            &["a/b/x.txt", "a/y.txt"],
            ".\n./a\n./a/b\n./a/b/x.txt\n./a/y.txt\n",
        ),
        (&["a/z.txt"], ".\n./a\n./a/z.txt\n"),
        (&["c/d/e.txt"], ".\n./c\n./c/d\n./c/d/e.txt\n"),
        // A file where the last run had a directory.
        (&["c"], ".\n./c\n"),
        (&[], ".\n"),
    ];
    let mut sandbox = None;
    for (inputs, expected) in cases {
        let mut listing = job(vec![list(), sh("pwd > {{OUTPUT_DIR}}/pwd")], &["files"]);
        for path in inputs {
            listing.inputs.push(f.input(path, path, false));
        }
        let outcome = f.run(&listing).await;
        assert_eq!(
            outcome.failure,
            None,
            "{inputs:?}: {}",
            f.blob(&outcome.result.stderr)
        );
        assert_eq!(f.output(&outcome, "files"), expected, "{inputs:?}");
        let pwd = f.output(&outcome, "pwd");
        assert_eq!(
            *sandbox.get_or_insert_with(|| pwd.clone()),
            pwd,
            "one sandbox, reused"
        );
        f.assert_idle();
    }
}

#[test]
fn the_handles_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Executor>();
    shareable::<SourceDigests>();
    shareable::<Toolchains>();
    fn sendable<T: Send>(_: &T) {}
    let job = job(vec![], &[]);
    let f = Fixture::new();
    let run = f.exec.run(RunRequest {
        id: job.id(),
        job: &job,
        deps: &[],
        timeout: None,
        node: NodeId([0; 32]),
        peer: false,
    });
    sendable(&run);
}
