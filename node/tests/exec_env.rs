//! The daemon's own environment never reaches a job. This is its own test binary because it
//! changes the process environment, which is only sound while no other thread runs.

#![cfg(feature = "shell")]

use std::collections::BTreeMap;

use weft_node::exec::{ExecConfig, Executor, RunRequest};
use weft_protocol::{Cmd, Job, NodeId, Toolchain};
use weft_store::{Store, Verify};

#[test]
fn the_daemon_environment_does_not_leak_into_jobs() {
    set_daemon_variable();
    assert_eq!(std::env::var("WEFT_DAEMON_SECRET").as_deref(), Ok("leaked"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let exec = Executor::new(
        store.clone(),
        ExecConfig::new(dir.path().join("sandboxes"), "/usr/bin:/bin".to_owned()),
    )
    .expect("executor");
    let job = Job {
        name: "env".to_owned(),
        inputs: Vec::new(),
        deps: Vec::new(),
        cmds: vec![Cmd::Exec {
            argv: vec!["env".to_owned()],
            env: BTreeMap::new(),
            cwd: None,
        }],
        env: BTreeMap::from([("DECLARED".to_owned(), "yes".to_owned())]),
        outs: Vec::new(),
        toolchain: Toolchain::default(),
        network: false,
    };
    let outcome = runtime
        .block_on(exec.run(RunRequest {
            id: job.id(),
            job: &job,
            deps: &[],
            timeout: None,
            node: NodeId([0; 32]),
            peer: false,
        }))
        .expect("run");
    assert_eq!(outcome.failure, None);
    let stdout = store
        .read(&outcome.result.stdout, Verify::Yes)
        .expect("stdout");
    let stdout = String::from_utf8(stdout).expect("utf-8");
    assert!(!stdout.contains("WEFT_DAEMON_SECRET"), "{stdout}");
    assert!(
        stdout.lines().any(|line| line == "DECLARED=yes"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line == "PATH=/usr/bin:/bin"),
        "{stdout}"
    );
    let keys: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys.len(),
        4,
        "only DECLARED, PATH, TMPDIR and HOME: {stdout}"
    );
}

#[allow(unsafe_code)] // `set_var` is unsafe since edition 2024; see the SAFETY note.
fn set_daemon_variable() {
    // SAFETY: this is the only test in this binary, and it calls this before it starts a
    // runtime or any other thread, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("WEFT_DAEMON_SECRET", "leaked") };
}
