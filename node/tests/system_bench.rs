//! What the toolchain's system digest costs on this machine's real system directories
//! (`SystemConfig::host()` and the compilers found on `/usr/bin:/bin`): at a daemon's first
//! start (no cache file), at a restart (a warm cache file), and per build when nothing changed
//! (watching with inotify, and in the fallback that lists everything again). Medians of
//! `WEFT_BENCH_RUNS` runs (default 5; the per-build figures of 101 and 11 calls).
//!
//! ```text
//! cargo test --release -p weft-node --test system_bench -- --ignored --nocapture
//! ```
//!
//! `WEFT_BENCH_EVICT=1` also measures first starts from the disk: before each, the files
//! under the covered directories are dropped from the page cache (`posix_fadvise(DONTNEED)`,
//! through `python3`; pages mapped by running programs stay). Nothing is written outside a
//! temporary directory.

#![cfg(feature = "shell")]

use std::process::Command;
use std::time::{Duration, Instant};

use weft_node::exec::{SystemConfig, SystemStats, Toolchains};
use weft_protocol::Cmd;

const PATH: &str = "/usr/bin:/bin";

/// Drops every file under these directories from the page cache.
const EVICT: &str = "import os, sys\n\
for top in sys.argv[1:]:\n\
\x20   for d, _, fs in os.walk(top):\n\
\x20       for f in fs:\n\
\x20           try:\n\
\x20               fd = os.open(os.path.join(d, f), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)\n\
\x20           except OSError:\n\
\x20               continue\n\
\x20           os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n\
\x20           os.close(fd)\n";

fn exec(argv: &[&str]) -> Cmd {
    Cmd::Exec {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        env: Default::default(),
        cwd: None,
    }
}

/// A daemon's start: what `server.rs` runs off the request path.
fn start(config: &SystemConfig) -> (Toolchains, Duration, SystemStats) {
    let toolchains = Toolchains::with_system(PATH.to_owned(), config.clone());
    let started = Instant::now();
    let stats = toolchains.prepare();
    (toolchains, started.elapsed(), stats)
}

fn evict() {
    let status = Command::new("python3")
        .args(["-c", EVICT])
        .args([
            "/usr/include",
            "/usr/local/include",
            "/usr/lib",
            "/usr/local/lib",
        ])
        .status()
        .expect("python3 runs");
    assert!(status.success(), "evicting failed");
}

fn runs() -> usize {
    std::env::var("WEFT_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5)
}

/// The median and the range of `times`.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.3} ms ({:.3} to {:.3} ms, {} runs)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

fn timed(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

#[test]
#[ignore = "a benchmark: run it in release mode with --ignored --nocapture"]
fn system_digest_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_file = dir.path().join("system-digests.json");
    let with_cache = SystemConfig {
        cache_file: Some(cache_file.clone()),
        ..SystemConfig::host()
    };
    let no_cache = SystemConfig::host();
    let n = runs();

    let (_, _, stats) = start(&with_cache);
    println!(
        "covered: {} roots, {} directories, {} files ({} MiB), {} compilers asked; cache \
         file {} KiB; watching: {}",
        stats.n_roots,
        stats.n_dirs,
        stats.n_cached,
        stats.bytes_hashed >> 20,
        stats.n_probed,
        std::fs::metadata(&cache_file).map_or(0, |m| m.len()) >> 10,
        stats.watching
    );
    if std::env::var_os("WEFT_BENCH_EVICT").is_some() {
        let cold = (0..n)
            .map(|_| {
                evict();
                start(&no_cache).1
            })
            .collect();
        println!("first start, files from the disk: {}", summary(cold));
        let cold_restart = (0..n)
            .map(|_| {
                evict();
                let (_, took, stats) = start(&with_cache);
                assert_eq!(stats.n_hashed, 0, "every file is in the cache file");
                took
            })
            .collect();
        println!(
            "restart, warm cache file, files from the disk: {}",
            summary(cold_restart)
        );
    }
    let first = timed(n, || {
        start(&no_cache);
    });
    println!("first start, page cache warm: {}", summary(first));
    let restart = timed(n, || {
        let (_, _, stats) = start(&with_cache);
        assert_eq!(stats.n_hashed, 0, "every file is in the cache file");
    });
    println!("restart, warm cache file: {}", summary(restart));

    let cmds = [exec(&["gcc", "-c", "x.c"])];
    let (watching, _, _) = start(&with_cache);
    let toolchain = watching.toolchain(&cmds, &[]).expect("toolchain");
    assert!(toolchain.system.is_some());
    let quiet = timed(101, || {
        assert_eq!(
            watching.toolchain(&cmds, &[]).expect("toolchain"),
            toolchain
        );
    });
    println!(
        "per build, nothing changed, watching (a gcc job's toolchain): {}",
        summary(quiet)
    );
    let (polling, _, _) = start(&SystemConfig {
        watch: false,
        ..with_cache.clone()
    });
    let listed = timed(11, || {
        assert_eq!(polling.toolchain(&cmds, &[]).expect("toolchain"), toolchain);
    });
    println!(
        "per build, nothing changed, not watching (lists everything again): {}",
        summary(listed)
    );
}
