//! A micro-benchmark of the executor: many tiny jobs through `Executor::run`, two at a time,
//! next to `ninja -j2` running the same work when ninja is installed.
//!
//! ```text
//! cargo test --release -p weft-node --test exec_bench -- --ignored --nocapture
//! ```
//!
//! `WEFT_BENCH_SCALE` multiplies the job counts (default 1: 2,000 cat jobs, 500 `true` jobs,
//! 500 `cp` jobs, 10,000 source digests). `WEFT_BENCH_ONLY=true,ninja` runs only the parts
//! whose names hold one of the words; `WEFT_BENCH_DIR` is where the files go (default: the
//! temporary directory). `WEFT_BENCH_WEAK=1` runs the jobs in the weak sandbox (no
//! namespaces), to compare with the hermetic one.

#![cfg(feature = "shell")]

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weft_node::exec::{ExecConfig, Executor, RunRequest, SourceDigests};
use weft_protocol::{Cmd, Input, Job, NodeId, Toolchain};
use weft_store::Store;

const PATH: &str = "/usr/bin:/bin";
const N_PARALLEL: usize = 2;

#[test]
#[ignore = "a benchmark: run it in release mode with --ignored --nocapture"]
fn executor_throughput() {
    let scale: usize = std::env::var("WEFT_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir_in(env_dir()).expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = ExecConfig::new(dir.path().join("sandboxes"), PATH.to_owned());
    config.test_weak_sandbox = std::env::var("WEFT_BENCH_WEAK").is_ok_and(|v| v == "1");
    let exec = Executor::new(store.clone(), config).expect("executor");
    println!("sandbox: {:?}", exec.sandbox_mode());

    // Sources: written once, digested cold (hash and store) and warm (stat only).
    let n_sources = 10_000 * scale;
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..n_sources {
        fs::write(src.join(format!("f{i}.txt")), format!("source file {i}\n")).expect("write");
    }
    // Age the files past the racy window, so that the warm pass can hit.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    for i in 0..n_sources {
        fs::File::options()
            .write(true)
            .open(src.join(format!("f{i}.txt")))
            .and_then(|f| f.set_modified(old))
            .expect("mtime");
    }
    let sources = SourceDigests::with_racy_window(store.clone(), Duration::ZERO);
    let paths: Vec<_> = (0..n_sources)
        .map(|i| src.join(format!("f{i}.txt")))
        .collect();
    let (cold, inputs) = timed(|| {
        paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let (digest, executable) = sources.digest(path).expect("digest");
                Input {
                    path: format!("src/f{i}.txt"),
                    digest,
                    executable,
                }
            })
            .collect::<Vec<_>>()
    });
    let (warm, ()) = timed(|| {
        for path in &paths {
            sources.digest(path).expect("digest");
        }
    });
    report("source digests, cold (hash + store)", n_sources, cold);
    report("source digests, warm (stat only)", n_sources, warm);

    let job = |i: usize, cmd: Cmd, out: String| Job {
        name: format!("job{i}"),
        inputs: vec![inputs[i % inputs.len()].clone()],
        deps: Vec::new(),
        cmds: vec![cmd],
        env: BTreeMap::new(),
        outs: vec![out],
        toolchain: Toolchain::default(),
        network: false,
    };
    let n_cat = 2_000 * scale;
    let cats: Vec<Job> = (0..n_cat)
        .map(|i| {
            let cmd = Cmd::Cat {
                output: format!("{{{{OUTPUT_DIR}}}}/f{i}.out"),
                template: format!("generated {i}\n"),
            };
            job(i, cmd, format!("f{i}.out"))
        })
        .collect();
    let n_exec = 500 * scale;
    let trues: Vec<Job> = (0..n_exec)
        .map(|i| {
            let mut job = job(i, exec_cmd(&["true"]), String::new());
            job.outs.clear();
            job
        })
        .collect();
    let cps: Vec<Job> = (0..n_exec)
        .map(|i| {
            let cmd = exec_cmd(&[
                "cp",
                &format!("{{{{SOURCE_DIR}}}}/src/f{i}.txt"),
                &format!("{{{{OUTPUT_DIR}}}}/f{i}.out"),
            ]);
            job(i, cmd, format!("f{i}.out"))
        })
        .collect();

    let cpu_before = cpu_seconds();
    let elapsed = runtime.block_on(spawn_all(n_exec, &dir.path().join("bare")));
    report("bare tokio spawn of `true` (the floor)", n_exec, elapsed);
    report_cpu(cpu_before, elapsed);
    for (name, jobs) in [
        ("cat jobs", &cats),
        ("`true` exec jobs", &trues),
        ("`cp` exec jobs", &cps),
    ] {
        if !wanted(name) {
            continue;
        }
        let cpu_before = cpu_seconds();
        let elapsed = runtime.block_on(run_all(&exec, jobs));
        report(&format!("weft {name}"), jobs.len(), elapsed);
        report_cpu(cpu_before, elapsed);
    }
    drop(exec);
    assert_eq!(
        fs::read_dir(dir.path().join("sandboxes"))
            .expect("read")
            // The hermetic sandbox's mount point stays.
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != ".root"))
            .count(),
        0,
        "every sandbox was removed"
    );

    if wanted("ninja") && Command::new("ninja").arg("--version").output().is_ok() {
        let ninja_dir = dir.path().join("ninja");
        fs::create_dir(&ninja_dir).expect("mkdir");
        let mut rules = String::from(
            "rule write\n  command = echo $text > $out\nrule true\n  command = true\n\
             rule cp\n  command = cp $in $out\n",
        );
        for i in 0..n_cat {
            rules += &format!(
                "build cat/f{i}.out: write {}/f{i}.txt\n  text = generated {i}\n",
                src.display()
            );
        }
        for i in 0..n_exec {
            rules += &format!("build true/f{i}.stamp: true {}/f{i}.txt\n", src.display());
            rules += &format!("build cp/f{i}.out: cp {}/f{i}.txt\n", src.display());
        }
        fs::write(ninja_dir.join("build.ninja"), rules).expect("write build.ninja");
        for (name, target_dir, n) in [
            ("cat", "cat", n_cat),
            ("true", "true", n_exec),
            ("cp", "cp", n_exec),
        ] {
            let targets: Vec<String> = match name {
                "cat" => (0..n).map(|i| format!("{target_dir}/f{i}.out")).collect(),
                "true" => (0..n).map(|i| format!("{target_dir}/f{i}.stamp")).collect(),
                _ => (0..n).map(|i| format!("{target_dir}/f{i}.out")).collect(),
            };
            // `ninja` wants the output directories to exist for `echo >` and `cp`.
            fs::create_dir_all(ninja_dir.join(target_dir)).expect("mkdir");
            let (elapsed, status) = timed(|| {
                Command::new("ninja")
                    .args(["-j2", "-C"])
                    .arg(&ninja_dir)
                    .args(&targets)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("ninja")
            });
            assert!(status.success());
            report(&format!("ninja -j2 {name} jobs"), n, elapsed);
        }
    }
}

/// Whether the part `name` is to run: all of them, unless `WEFT_BENCH_ONLY` names some
/// (a comma-separated list of words found in the parts' names).
fn wanted(name: &str) -> bool {
    std::env::var("WEFT_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|word| name.contains(word)))
}

fn env_dir() -> std::path::PathBuf {
    std::env::var_os("WEFT_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into)
}

fn exec_cmd(argv: &[&str]) -> Cmd {
    Cmd::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
    }
}

/// Runs every job, `N_PARALLEL` at a time; returns the wall time.
async fn run_all(exec: &Executor, jobs: &[Job]) -> Duration {
    let jobs: Arc<Vec<Job>> = Arc::new(jobs.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..N_PARALLEL)
        .map(|_| {
            let (exec, jobs, next) = (exec.clone(), jobs.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let outcome = exec
                        .run(RunRequest {
                            id: job.id(),
                            job,
                            deps: &[],
                            timeout: None,
                            node: NodeId([0; 32]),
                            peer: false,
                        })
                        .await
                        .expect("run");
                    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    started.elapsed()
}

/// Spawns and waits for `true` `n` times, `N_PARALLEL` at a time, the way the executor starts
/// a process but with no sandbox around it.
async fn spawn_all(n: usize, cwd: &std::path::Path) -> Duration {
    fs::create_dir_all(cwd).expect("mkdir");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..N_PARALLEL)
        .map(|_| {
            let next = next.clone();
            let cwd = cwd.to_owned();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let status = tokio::process::Command::new("/usr/bin/true")
                        .env_clear()
                        .env("PATH", PATH)
                        .current_dir(&cwd)
                        .stdin(std::process::Stdio::null())
                        .process_group(0)
                        .status()
                        .await
                        .expect("spawn");
                    assert!(status.success());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    started.elapsed()
}

/// CPU seconds used by this process and its reaped children, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // Fields 14 to 17 (utime, stime, cutime, cstime) are the 12th to 15th after the name.
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

fn report_cpu(before: f64, elapsed: Duration) {
    let used = cpu_seconds() - before;
    let cores = used / elapsed.as_secs_f64();
    println!("{:40} cpu {used:.2}s = {cores:.2} cores busy", "");
}

fn timed<T>(work: impl FnOnce() -> T) -> (Duration, T) {
    let started = Instant::now();
    let value = work();
    (started.elapsed(), value)
}

fn report(name: &str, n: usize, elapsed: Duration) {
    let per_second = n as f64 / elapsed.as_secs_f64();
    let micros = elapsed.as_secs_f64() * 1e6 / n as f64;
    println!("{name:40} {n:>6} in {elapsed:>10.3?}: {per_second:>9.0}/s, {micros:>7.1} µs each");
}
