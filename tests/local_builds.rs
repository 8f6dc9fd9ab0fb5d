//! End-to-end tests of local builds: the real `weft` binary and its daemon, on temporary
//! workspaces, each test with its own home.

use std::process::Stdio;
use std::time::{Duration, Instant};

use weft_tests::{
    TestEnv, alive, events_of, have_cc, hermetic_or_skip, names_of, processes_with, text,
    wait_until,
};

const THREE_JOBS: &str = r#"
job(
    name = "a",
    srcs = ["a.txt"],
    outs = ["a.out"],
    cmds = [exec(["sh", "-c", "cat a.txt > {{OUTPUT_DIR}}/a.out"])],
)

job(
    name = "b",
    deps = [":a"],
    outs = ["b.out"],
    cmds = [exec(["sh", "-c", "cat {{DEP::a}}/a.out {{DEP::a}}/a.out > {{OUTPUT_DIR}}/b.out"])],
)

job(
    name = "c",
    outs = ["c.out"],
    cmds = [cat("{{OUTPUT_DIR}}/c.out", "static\n")],
)
"#;

fn three_jobs() -> TestEnv {
    let env = TestEnv::new();
    env.write("BUILD", THREE_JOBS);
    env.write("a.txt", "A\n");
    env
}

#[test]
fn build_then_noop_rebuild_runs_nothing() {
    let env = three_jobs();
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(names_of(&events, "Started"), ["//:a", "//:b", "//:c"]);
    assert_eq!(env.read("weft-out/b.out"), "A\nA\n");
    assert_eq!(env.read("weft-out/c.out"), "static\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("3 jobs ran, 0 from cache"),
        "last line: {last}"
    );

    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        events_of(&events, "Started").is_empty(),
        "nothing runs: {events:?}"
    );
    assert_eq!(names_of(&events, "CacheHit"), ["//:a", "//:b", "//:c"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("0 jobs ran, 3 from cache")
    );

    // A published output that went away comes back, without running anything.
    std::fs::remove_file(env.ws.path().join("weft-out/b.out")).expect("remove");
    env.write("weft-out/c.out", "edited by hand\n");
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(events_of(&events, "Started").is_empty());
    assert_eq!(env.read("weft-out/b.out"), "A\nA\n");
    assert_eq!(env.read("weft-out/c.out"), "static\n");

    // After `weft clean`, everything comes back as it was built, without running anything,
    // an output edited in place before the clean too (the daemon's kept link of it changed
    // with it, so it is copied from the store again).
    env.write("weft-out/b.out", "edited in place\n");
    let clean = env.run(&["clean"]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(!env.ws.path().join("weft-out").exists());
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(events_of(&events, "Started").is_empty());
    assert_eq!(env.read("weft-out/b.out"), "A\nA\n");
    assert_eq!(env.read("weft-out/c.out"), "static\n");

    // With the store emptied, the same build runs everything again. First the source gets
    // old enough (2 s) for its digest to be cached by stamp, and a build caches it: the
    // sandbox of `//:a` then needs its blob, which the gc removes, so the daemon must see
    // that the blob went and store the file again.
    std::thread::sleep(Duration::from_millis(2100));
    let (output, _) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    let gc = env.run(&["cache", "gc", "--max-size", "0"]);
    assert!(gc.status.success(), "{}", text(&gc));
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(names_of(&events, "Started"), ["//:a", "//:b", "//:c"]);
    assert_eq!(env.read("weft-out/b.out"), "A\nA\n");
}

#[test]
fn editing_a_source_reruns_only_its_dependents() {
    let env = three_jobs();
    let (output, _) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    env.write("a.txt", "changed\n");
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(names_of(&events, "Started"), ["//:a", "//:b"]);
    assert_eq!(names_of(&events, "CacheHit"), ["//:c"]);
    assert_eq!(env.read("weft-out/b.out"), "changed\nchanged\n");
}

#[test]
fn a_failing_job_reports_its_label_command_exit_code_and_stderr() {
    let env = TestEnv::new();
    env.write(
        "BUILD",
        r#"job(name = "bad", cmds = [exec(["sh", "-c", "echo boom >&2; exit 3"])])
job(name = "after", deps = [":bad"], cmds = [cat("{{OUTPUT_DIR}}/x", "x")])
"#,
    );
    let (output, events) = env.build(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FAILED: `//:bad`"), "{stderr}");
    assert!(
        stderr.contains("command: sh -c 'echo boom >&2; exit 3'"),
        "{stderr}"
    );
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(stderr.contains("boom"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("build FAILED"),
        "{stderr}"
    );
    assert!(names_of(&events, "Started").iter().all(|n| n != "//:after"));
}

#[test]
fn cycles_and_bad_labels_are_reported_with_file_and_line() {
    let env = TestEnv::new();
    env.write(
        "BUILD",
        "job(name = \"x\", deps = [\":y\"])\njob(name = \"y\", deps = [\":x\"])\n",
    );
    let output = env.run(&["build"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dependency cycle"), "{stderr}");
    assert!(
        stderr.contains("//:x -> //:y -> //:x") || stderr.contains("//:y -> //:x -> //:y"),
        "{stderr}"
    );
    assert!(stderr.contains("BUILD:"), "{stderr}");

    env.write(
        "BUILD",
        "job(name = \"ok\")\n\njob(name = \"z\", deps = [\"//a b\"])\n",
    );
    let output = env.run(&["build"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BUILD:3"), "{stderr}");
    assert!(stderr.contains("invalid label `//a b`"), "{stderr}");

    env.write("BUILD", "job(name = \"nape\")\n");
    let output = env.run(&["build", "//:nope"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr.contains("`nope`"), "{stderr}");
    assert!(stderr.contains("did you mean `//:nape`?"), "{stderr}");
}

/// A word no other test's job has in its command line: `what` and the test's home.
fn unique_marker(env: &TestEnv, what: &str) -> String {
    let home = env.home.path().file_name().expect("a home name");
    format!("weft-test-{what}-{}", home.to_string_lossy())
}

#[test]
fn one_build_per_workspace_waits_or_fails_fast() {
    let env = TestEnv::new();
    // A job cannot write outside its sandbox: it is seen running by a word in its command line.
    let marker = unique_marker(&env, "slow");
    env.write(
        "BUILD",
        &format!(
            "job(name = \"slow\", cmds = [exec([\"sh\", \"-c\", \": {marker}; sleep 2\"])])\n"
        ),
    );
    let mut first = env
        .cmd()
        .arg("build")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_until(
        Duration::from_secs(30),
        "the first build to start its job",
        || !processes_with(&marker).is_empty(),
    );

    let output = env.run(&["build", "--no-block-for-lock"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another build (client pid"), "{stderr}");

    let output = env.run(&["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("waiting for another build in this workspace"),
        "{stderr}"
    );
    assert!(first.wait().expect("first build").success());
}

#[test]
fn a_daemon_from_another_binary_is_replaced() {
    let env = TestEnv::new();
    env.write(
        "BUILD",
        "job(name = \"c\", cmds = [cat(\"{{OUTPUT_DIR}}/c\", \"c\")])\n",
    );
    let output = env.run(&["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let old_pid = env.daemon_pid().expect("a daemon runs");

    // A copy of the binary counts as another build of weft (its size and mtime differ).
    let copy = env.home.path().join("weft-other");
    std::fs::copy(weft_tests::weft_bin(), &copy).expect("copy the binary");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .expect("open")
        .set_len(std::fs::metadata(&copy).expect("stat").len() + 1)
        .expect("grow");
    // A child that another test forks while the copy is open for writing holds it open
    // until that child execs: running the copy fails with "text file busy" until then.
    wait_until(Duration::from_secs(10), "the copy to be executable", || {
        std::process::Command::new(&copy)
            .arg("--help")
            .output()
            .map_or_else(
                |e| e.kind() != std::io::ErrorKind::ExecutableFileBusy,
                |_| true,
            )
    });
    let env = env.with_bin(copy);
    let output = env.run(&["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("replacing the daemon"), "{stderr}");
    let new_pid = env.daemon_pid().expect("a daemon runs");
    assert_ne!(old_pid, new_pid);
    wait_until(Duration::from_secs(10), "the old daemon to exit", || {
        !alive(old_pid)
    });
}

#[test]
fn an_idle_daemon_shuts_down() {
    let mut env = TestEnv::new();
    env.max_idle_secs = 1;
    env.write(
        "BUILD",
        "job(name = \"c\", cmds = [cat(\"{{OUTPUT_DIR}}/c\", \"c\")])\n",
    );
    let output = env.run(&["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let pid = env.daemon_pid().expect("a daemon runs");
    wait_until(Duration::from_secs(15), "the idle daemon to exit", || {
        !alive(pid)
    });
    // Like every command but `shutdown`, `status` starts a daemon when none runs.
    let status = env.run(&["status"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.starts_with("daemon pid "), "{stdout}");
    assert!(
        !stdout.starts_with(&format!("daemon pid {pid} ")),
        "{stdout}"
    );
}

#[test]
fn a_killed_client_cancels_its_build_and_the_daemon_goes_on() {
    let env = TestEnv::new();
    let marker = unique_marker(&env, "slow");
    env.write(
        "BUILD",
        &format!(
            "job(name = \"slow\", outs = [\"o\"], cmds = [exec([\"sh\", \"-c\", \": {marker}; \
             sleep 60; touch {{{{OUTPUT_DIR}}}}/o\"])])\n"
        ),
    );
    let mut client = env
        .cmd()
        .arg("build")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(30), "the job to start", || {
        !processes_with(&marker).is_empty()
    });
    let job_pid: u32 = processes_with(&marker)[0];
    assert!(alive(job_pid));
    client.kill().expect("kill -9 the client");
    client.wait().expect("reap");
    wait_until(
        Duration::from_secs(15),
        "the job's process to be killed",
        || !alive(job_pid),
    );
    assert!(
        !env.ws.path().join("weft-out/o").exists(),
        "nothing partial is published"
    );

    // The daemon goes on, the lock is free, and the next build succeeds.
    let daemon = env.daemon_pid().expect("a daemon runs");
    assert!(alive(daemon));
    env.write(
        "BUILD",
        "job(name = \"quick\", outs = [\"q\"], cmds = [cat(\"{{OUTPUT_DIR}}/q\", \"q\")])\n",
    );
    let output = env.run(&["build", "--no-block-for-lock"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(env.read("weft-out/q"), "q");
    assert_eq!(env.daemon_pid(), Some(daemon));
}

#[test]
fn a_distbuild_graph_runs_with_cat_exec_and_deps() {
    let env = TestEnv::new();
    env.write("src/in.txt", "input\n");
    env.write(
        "graph.json",
        r#"{"Jobs": [
            {"ID": "gen", "Name": "generate", "Cmds": [
                {"CatTemplate": "generated from {{SOURCE_DIR}}\n", "CatOutput": "{{OUTPUT_DIR}}/gen.txt"}
            ]},
            {"ID": "use", "Name": "use", "Inputs": ["in.txt"], "Deps": ["gen"], "Cmds": [
                {"Exec": ["sh", "-c", "cat in.txt {{DEP:gen}}/gen.txt > {{OUTPUT_DIR}}/out.txt; echo done; echo warn >&2"],
                 "Environ": ["LANG=C"], "WorkingDirectory": "{{SOURCE_DIR}}"}
            ]}
        ]}"#,
    );
    let out = env.ws.path().join("out");
    let output = env.run(&[
        "graph",
        "run",
        "graph.json",
        "--source-dir",
        "src",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let produced = std::fs::read_to_string(out.join("use/out.txt")).expect("use/out.txt");
    assert!(produced.starts_with("input\ngenerated from "), "{produced}");
    assert!(std::fs::read_to_string(out.join("gen/gen.txt")).is_ok());
    assert_eq!(
        std::fs::read_to_string(out.join("use.stdout")).expect("stdout"),
        "done\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("use.stderr")).expect("stderr"),
        "warn\n"
    );

    env.write("bad.json", r#"{"Jobs": [{"ID": "x", "Deps": ["nope"]}]}"#);
    let output = env.run(&[
        "graph",
        "run",
        "bad.json",
        "--source-dir",
        "src",
        "--out",
        "o2",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`nope`"));
}

#[test]
fn the_bundled_example_builds_and_runs() {
    if !have_cc() {
        eprintln!("skipping: no `cc`/`ar` on PATH (install gcc and binutils; .ci/deps does)");
        return;
    }
    let env = TestEnv::new();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    for file in [
        "weft.toml",
        "lib/BUILD",
        "lib/greet.h",
        "lib/greet.c",
        "lib/shout.c",
        "app/BUILD",
        "app/main.c",
    ] {
        env.write(
            file,
            &std::fs::read_to_string(example.join(file)).expect("example file"),
        );
    }
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(events_of(&events, "Started").len(), 6);
    let hello = env.ws.path().join("weft-out/app/hello");
    let run = std::process::Command::new(&hello)
        .args(["mesh", "--shout"])
        .output()
        .expect("run hello");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "HELLO, MESH (GREET 1.0)\n"
    );
}

#[test]
fn two_targets_that_would_publish_the_same_file_are_an_error() {
    let env = TestEnv::new();
    env.write(
        "BUILD",
        r#"job(name = "a", outs = ["o"], cmds = [cat("{{OUTPUT_DIR}}/o", "a")])
job(name = "b", outs = ["o"], cmds = [cat("{{OUTPUT_DIR}}/o", "b")])
"#,
    );
    let output = env.run(&["build"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`//:a` and `//:b` both declare the out `o`"),
        "{stderr}"
    );
    assert!(stderr.contains("`weft-out/o`"), "{stderr}");
    // One of them alone is fine.
    let output = env.run(&["build", "//:b"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(env.read("weft-out/o"), "b");
}

/// `long` alone, and `short` with a job after it. Both read `seed.txt`.
const LONG_AND_SHORT: &str = r#"
job(name = "long", srcs = ["seed.txt"], outs = ["long.out"],
    cmds = [exec(["sh", "-c", "sleep 0.4; cat seed.txt > {{OUTPUT_DIR}}/long.out"])])
job(name = "short", srcs = ["seed.txt"], outs = ["short.out"],
    cmds = [exec(["sh", "-c", "sleep 0.05; cat seed.txt > {{OUTPUT_DIR}}/short.out"])])
job(name = "tail", deps = [":short"], outs = ["tail.out"],
    cmds = [exec(["sh", "-c", "sleep 0.05; cat {{DEP::short}}/short.out > {{OUTPUT_DIR}}/tail.out"])])
"#;

/// The names of the jobs started, in the order they started.
fn start_order(events: &[serde_json::Value]) -> Vec<String> {
    events_of(events, "Started")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn job_durations_outlive_the_daemon() {
    let env = TestEnv::new();
    env.write("BUILD", LONG_AND_SHORT);
    env.write("seed.txt", "1\n");
    // Nothing known: the deeper chain goes first, then the job queued first.
    let (output, events) = env.build(&["-j1"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(start_order(&events), ["//:short", "//:long", "//:tail"]);
    let file = env.home.path().join("durations.json");
    wait_until(Duration::from_secs(10), "durations.json", || file.exists());

    // A new daemon, and every job runs again: `long` is known to be the longest path.
    let stopped = env.run(&["shutdown"]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    env.write("seed.txt", "2\n");
    let (output, events) = env.build(&["-j1"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(start_order(&events), ["//:long", "//:short", "//:tail"]);

    // A broken file costs the estimates, not the build.
    let stopped = env.run(&["shutdown"]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    std::fs::write(env.home.path().join("durations.json"), "not json").expect("write");
    env.write("seed.txt", "3\n");
    let (output, events) = env.build(&["-j1"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(start_order(&events), ["//:short", "//:long", "//:tail"]);
}

/// A BUILD file that would run for hours: 10^10 steps of a loop, one statement each.
const RUNAWAY: &str =
    "x = 0\nfor i in range(100000):\n    for j in range(100000):\n        x = i + j\n";

/// `VmHWM` of a process (its peak resident set) in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a VmHWM line");
    kib * 1024
}

/// The CPU time a process has used, in clock ticks (`utime + stime`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command may hold spaces: the fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')').expect("a command") + 2..];
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("a number"))
        .collect();
    fields.iter().sum()
}

/// Runs `cmd` to its end, or kills it after `timeout` and returns `None`.
fn output_within(
    cmd: &mut std::process::Command,
    timeout: Duration,
) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("output"))
}

/// Issue 17, test 10: a BUILD file with a runaway loop and one with a huge string each fail
/// with the budget named, and meanwhile a build of another workspace on the same daemon
/// succeeds; the daemon's memory stays small and it goes on.
#[test]
fn runaway_and_huge_build_files_fail_with_their_budget_while_another_workspace_builds() {
    let env = TestEnv::new();
    std::fs::write(
        env.home.path().join("config.toml"),
        "eval_time_limit_secs = 10\n",
    )
    .expect("config.toml");
    env.write("BUILD", RUNAWAY);
    let huge =
        weft_tests::workspace(&[("BUILD", "x = 1\ny = \"x\" * (1 << 30)\njob(name = \"h\")\n")]);
    let other = weft_tests::workspace(&[(
        "BUILD",
        "job(name = \"ok\", outs = [\"o\"], cmds = [cat(\"{{OUTPUT_DIR}}/o\", \"ok\")])\n",
    )]);
    assert!(env.run(&["status"]).status.success(), "the daemon starts");
    let daemon = env.daemon_pid().expect("a daemon runs");

    let started = Instant::now();
    let runaway = {
        let mut cmd = env.cmd();
        cmd.arg("build");
        std::thread::spawn(move || output_within(&mut cmd, Duration::from_secs(120)))
    };
    std::thread::sleep(Duration::from_millis(300));

    let output = env
        .cmd()
        .current_dir(huge.path())
        .arg("build")
        .output()
        .expect("weft runs");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "BUILD:2: `BUILD` went past its memory budget of 512 MiB: this would make a value \
             of 1024 MiB"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("`eval_memory_limit_mib`"), "{stderr}");

    let output = env
        .cmd()
        .current_dir(other.path())
        .arg("build")
        .output()
        .expect("weft runs");
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(other.path().join("weft-out/o")).expect("published"),
        "ok"
    );
    let meanwhile = started.elapsed();

    let output = runaway
        .join()
        .expect("the runaway build's thread")
        .expect("the runaway build ends, within two minutes");
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BUILD:4: `BUILD` ran past its time budget of 10 s"),
        "{stderr}"
    );
    assert!(stderr.contains("`eval_time_limit_secs`"), "{stderr}");
    assert!(
        meanwhile < took,
        "the other builds ended ({meanwhile:?}) while the runaway one evaluated ({took:?})"
    );
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(60),
        "{took:?}"
    );

    assert_eq!(env.daemon_pid(), Some(daemon), "the daemon goes on");
    assert!(alive(daemon));
    let peak = peak_rss(daemon);
    assert!(
        peak < 1 << 30,
        "the daemon's peak RSS is {} MiB",
        peak >> 20
    );
    // And it still builds that workspace once the file is fixed.
    env.write(
        "BUILD",
        "job(name = \"fixed\", outs = [\"f\"], cmds = [cat(\"{{OUTPUT_DIR}}/f\", \"f\")])\n",
    );
    let output = env.run(&["build"]);
    assert!(output.status.success(), "{}", text(&output));
}

/// Issue 17, section 5: a killed client cancels its BUILD file's evaluation at once, and the
/// workspace's lock is free: the next build of it does not wait (under a time budget of ten
/// minutes, only the cancellation can free it).
#[test]
fn a_killed_client_cancels_its_evaluation_and_frees_the_lock_at_once() {
    let env = TestEnv::new();
    std::fs::write(
        env.home.path().join("config.toml"),
        "eval_time_limit_secs = 600\n",
    )
    .expect("config.toml");
    env.write("BUILD", RUNAWAY);
    assert!(env.run(&["status"]).status.success(), "the daemon starts");
    let daemon = env.daemon_pid().expect("a daemon runs");
    // The daemon's work at start (hashing the toolchain's system directories) would pass for
    // an evaluation below: wait until it is done.
    let log = env.home.path().join("daemon.log");
    wait_until(
        Duration::from_secs(120),
        "the toolchain digest at start",
        || {
            std::fs::read_to_string(&log)
                .is_ok_and(|log| log.contains("toolchain system digest ready"))
        },
    );
    let mut client = env
        .cmd()
        .arg("build")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the daemon is busy evaluating.
    let before = cpu_ticks(daemon);
    wait_until(Duration::from_secs(30), "the daemon to evaluate", || {
        cpu_ticks(daemon) > before + 20
    });
    client.kill().expect("kill -9 the client");
    client.wait().expect("reap");

    env.write(
        "BUILD",
        "job(name = \"quick\", outs = [\"q\"], cmds = [cat(\"{{OUTPUT_DIR}}/q\", \"q\")])\n",
    );
    let started = Instant::now();
    let output = output_within(env.cmd().arg("build"), Duration::from_secs(30))
        .expect("the next build does not wait for the killed one's evaluation");
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.read("weft-out/q"), "q");

    // Nothing evaluates any more: the daemon is idle.
    let before = cpu_ticks(daemon);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(daemon) - before;
    assert!(used < 30, "the daemon used {used} ticks in a second");
    assert_eq!(env.daemon_pid(), Some(daemon));
}

/// A shell loop that prints `reaches PATH` for each path the job can see.
fn probe_paths(paths: &[String]) -> String {
    format!(
        "for p in {}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"reaches $p\"; fi; done",
        paths.join(" ")
    )
}

/// What a hostile job would look for on a node: its key, team token, store, socket and log,
/// and files outside the sandbox and the toolchain.
fn node_secrets(home: &std::path::Path) -> Vec<String> {
    let home = home.display();
    let mut paths: Vec<String> = [
        "identity.key",
        "team.toml",
        "store",
        "daemon.sock",
        "daemon.log",
        "config.toml",
    ]
    .iter()
    .map(|file| format!("{home}/{file}"))
    .collect();
    for path in [
        "/root",
        "/home",
        "/var",
        "/etc/shadow",
        "/etc/hostname",
        "/run",
        "/sys",
        "/dev/shm",
        "/dev/sda",
        "/proc/1/root/etc",
    ] {
        paths.push(path.to_owned());
    }
    paths
}

/// Issue 17, test 1 (local runs): a job cannot read `$WEFT_HOME/identity.key`, `team.toml`,
/// the store, the daemon's socket, nor any file outside its sandbox and the toolchain
/// directories. It can read its declared inputs and run the toolchain.
#[test]
fn a_job_cannot_read_the_daemon_home_nor_files_outside_its_sandbox() {
    let env = TestEnv::new();
    // A team (so that there is a `team.toml`), with a mesh that stays on loopback.
    std::fs::write(
        env.home.path().join("config.toml"),
        "mdns = false\nlisten = [\"/ip4/127.0.0.1/udp/0/quic-v1\"]\nshare = \"never\"\n",
    )
    .expect("config.toml");
    let created = env.run(&["team", "create"]);
    assert!(created.status.success(), "{}", text(&created));
    let status = text(&env.run(&["status"]));
    if !hermetic_or_skip(&status, "a_job_cannot_read_the_daemon_home") {
        return;
    }
    for file in ["identity.key", "team.toml", "daemon.sock", "store"] {
        assert!(
            env.home.path().join(file).exists(),
            "{file} is there to steal"
        );
    }
    env.write("secret.txt", "not declared\n");
    let mut paths = node_secrets(env.home.path());
    paths.push(env.ws.path().join("secret.txt").display().to_string());
    paths.push(env.ws.path().join("weft.toml").display().to_string());
    let script = format!(
        "{} > {{{{OUTPUT_DIR}}}}/reach; cat data.txt > {{{{OUTPUT_DIR}}}}/data; \
         cc --version > /dev/null && echo cc runs > {{{{OUTPUT_DIR}}}}/tool",
        probe_paths(&paths)
    );
    env.write(
        "BUILD",
        &format!(
            "job(name = \"probe\", srcs = [\"data.txt\"], outs = [\"reach\", \"data\", \"tool\"],\n    \
             cmds = [exec([\"sh\", \"-c\", {script:?}])])\n"
        ),
    );
    env.write("data.txt", "declared\n");
    let (output, _) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(env.read("weft-out/reach"), "", "the job reached these");
    assert_eq!(env.read("weft-out/data"), "declared\n");
    assert_eq!(env.read("weft-out/tool"), "cc runs\n");
}

/// Issue 17, test 2: a job has no network (TCP to 127.0.0.1 fails), sees only its own
/// processes, and leaves none behind, not even one that left its process group.
#[test]
fn a_job_has_no_network_sees_only_its_processes_and_leaves_none_behind() {
    let env = TestEnv::new();
    let status = text(&env.run(&["status"]));
    if !hermetic_or_skip(&status, "a_job_has_no_network") {
        return;
    }
    let daemon = env.daemon_pid().expect("a daemon");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let marker = format!("weft-left-behind-{}", std::process::id());
    let script = format!(
        "if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo connected; else echo no network; fi > {{{{OUTPUT_DIR}}}}/net; \
         if [ -e /proc/{daemon} ]; then echo sees the daemon; fi > {{{{OUTPUT_DIR}}}}/daemon; \
         ls /proc | grep -c '^[0-9]' > {{{{OUTPUT_DIR}}}}/n; \
         setsid sh -c 'sleep 300; : {marker}' > /dev/null 2>&1 < /dev/null & \
         sh -c 'sleep 300; : {marker}' > /dev/null 2>&1 & \
         sleep 0.2"
    );
    env.write(
        "BUILD",
        &format!(
            "job(name = \"net\", outs = [\"net\", \"daemon\", \"n\"],\n    \
             cmds = [exec([\"bash\", \"-c\", {script:?}])])\n"
        ),
    );
    let (output, _) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(env.read("weft-out/net"), "no network\n");
    assert!(
        listener.accept().is_err(),
        "the job's connection reached the test's listener"
    );
    assert_eq!(env.read("weft-out/daemon"), "", "the job sees the daemon");
    // The job's own: its init, `bash`, `ls` and `grep`.
    let n: u32 = env.read("weft-out/n").trim().parse().expect("a count");
    assert!(n <= 4, "the job sees {n} processes");
    wait_until(Duration::from_secs(5), "the job's processes to end", || {
        processes_with(&marker).is_empty()
    });
}

/// Where the kernel forbids namespaces (forced here with the test hook), local jobs still run,
/// without namespaces, and every build and `weft status` say so.
#[test]
fn without_namespaces_builds_and_status_say_so() {
    let env = TestEnv::new();
    let mut daemon = env
        .cmd()
        .args(["daemon", "--no-mdns", "--test-weak-sandbox"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft daemon");
    let socket = env.home.path().join("daemon.sock");
    wait_until(Duration::from_secs(30), "the daemon's socket", || {
        socket.exists()
    });
    let status = text(&env.run(&["status"]));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("sandbox     weak:") && l.contains("--test-weak-sandbox")),
        "{status}"
    );
    env.write(
        "BUILD",
        "job(name = \"a\", outs = [\"a\"], cmds = [exec([\"sh\", \"-c\", \"echo a > {{OUTPUT_DIR}}/a\"])])\n",
    );
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(env.read("weft-out/a"), "a\n");
    let notices: Vec<_> = events_of(&events, "Notice")
        .into_iter()
        .filter(|e| e.to_string().contains("no hermetic sandbox"))
        .collect();
    assert_eq!(notices.len(), 1, "{events:?}");
    let said = String::from_utf8_lossy(&output.stderr)
        .matches("no hermetic sandbox")
        .count();
    assert_eq!(said, 1, "{}", text(&output));
    let _ = env.run(&["shutdown"]);
    let _ = daemon.wait();
}

/// A dep's output, and a job that reads it and two sources.
const CORRUPTIBLE: &str = r#"
job(
    name = "lib",
    srcs = ["lib.txt"],
    outs = ["lib.out"],
    cmds = [exec(["sh", "-c", "(echo LIB; cat lib.txt) > {{OUTPUT_DIR}}/lib.out"])],
)

job(
    name = "app",
    srcs = ["app.txt", "flags.txt"],
    deps = [":lib"],
    outs = ["app.out"],
    cmds = [exec(["sh", "-c", "cat {{DEP::lib}}/lib.out app.txt flags.txt > {{OUTPUT_DIR}}/app.out"])],
)
"#;

/// Flips the first byte of the store's blob that holds `content` (the size stays).
fn corrupt_blob(env: &TestEnv, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let cas = env.home.path().join("store").join("cas");
    let blob = std::fs::read_dir(&cas)
        .expect("the store's cas directory")
        .flat_map(|fanout| std::fs::read_dir(fanout.expect("entry").path()).expect("fan-out"))
        .map(|entry| entry.expect("entry").path())
        .find(|path| std::fs::read(path).is_ok_and(|bytes| bytes == content.as_bytes()))
        .unwrap_or_else(|| panic!("no blob holds {content:?}"));
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = content.as_bytes().to_vec();
    bytes[0] ^= 0x20;
    std::fs::write(&blob, bytes).expect("corrupt the blob");
}

/// Issue 17, test 9: a blob found corrupt in the store in the middle of a build is made again
/// within that build, as a deleted one is: a dep's output by running the dep again, a
/// source's from the workspace file.
#[test]
fn a_blob_found_corrupt_mid_build_is_made_again_in_the_same_build() {
    let env = TestEnv::new();
    env.write("BUILD", CORRUPTIBLE);
    env.write("lib.txt", "library source\n");
    env.write("app.txt", "application source\n");
    env.write("flags.txt", "-O1\n");
    // Old enough for their digests to be cached by stamp: then nothing but the sandbox
    // would look at their blobs again.
    std::thread::sleep(Duration::from_millis(2100));
    let (output, _) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));

    // The dep's output blob goes bad; `//:app` must run again, and finds it.
    corrupt_blob(&env, "LIB\nlibrary source\n");
    env.write("flags.txt", "-O2\n");
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    // (sorted) `//:app` started, found the bad blob, `//:lib` ran again, then `//:app`.
    assert_eq!(names_of(&events, "Started"), ["//:app", "//:app", "//:lib"]);
    assert_eq!(
        env.read("weft-out/app.out"),
        "LIB\nlibrary source\napplication source\n-O2\n"
    );
    let said = |events: &[serde_json::Value], what: &str| {
        events_of(events, "Notice")
            .iter()
            .filter(|n| n.as_str().is_some_and(|n| n.contains(what)))
            .count()
    };
    assert_eq!(said(&events, "found corrupt in the store"), 1, "{events:?}");

    // A source's blob goes bad; the workspace file is unchanged, so it is stored again.
    corrupt_blob(&env, "application source\n");
    env.write("flags.txt", "-O3\n");
    let (output, events) = env.build(&[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(names_of(&events, "Started"), ["//:app", "//:app"]);
    assert_eq!(
        env.read("weft-out/app.out"),
        "LIB\nlibrary source\napplication source\n-O3\n"
    );
    assert_eq!(
        said(&events, "stored it again from the workspace"),
        1,
        "{events:?}"
    );
}

/// Sends SIGKILL to `pid`.
fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// Issue 17, test 8 (locally): a job its daemon dies in three times (here the test kills the
/// daemon while it runs) is quarantined: the next build fails it at once, naming it and
/// what happened, and the build after tries it once more.
#[test]
fn a_job_its_daemon_keeps_dying_in_is_quarantined_after_three_tries() {
    let env = TestEnv::new();
    let marker = unique_marker(&env, "deadly");
    env.write(
        "BUILD",
        &format!(
            "job(name = \"deadly\", outs = [\"d\"], cmds = [exec([\"sh\", \"-c\", \": {marker}; \
             sleep 30; touch {{{{OUTPUT_DIR}}}}/d\"])])\n"
        ),
    );
    for round in 1..=3 {
        let mut client = env
            .cmd()
            .arg("build")
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        wait_until(
            Duration::from_secs(30),
            &format!("the job to start (round {round})"),
            || !processes_with(&marker).is_empty(),
        );
        kill_9(env.daemon_pid().expect("a daemon runs"));
        assert!(!client.wait().expect("reap").success(), "round {round}");
        for pid in processes_with(&marker) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }

    let started = Instant::now();
    let (output, events) = env.build(&[]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not run"
    );
    assert!(events_of(&events, "Started").is_empty(), "{events:?}");
    let failed = events_of(&events, "Failed");
    assert_eq!(failed.len(), 1, "{events:?}");
    let message = failed[0]["message"].as_str().unwrap_or_default();
    assert_eq!(failed[0]["name"], "//:deadly", "{failed:?}");
    assert!(
        message.contains("quarantined") && message.contains("lost its worker 3 times"),
        "{message}"
    );

    // The next build tries it once more; this time nothing kills the daemon.
    env.write(
        "BUILD",
        &format!(
            "job(name = \"deadly\", outs = [\"d\"], cmds = [exec([\"sh\", \"-c\", \": {marker}; \
             sleep 30; touch {{{{OUTPUT_DIR}}}}/d\"])])\n"
        ),
    );
    let mut client = env
        .cmd()
        .arg("build")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until(Duration::from_secs(30), "the job to be tried again", || {
        !processes_with(&marker).is_empty()
    });
    let _ = client.kill();
    let _ = client.wait();
}
