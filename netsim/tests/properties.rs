//! The properties netsim checks over many seeds (issue 5, section 3).
//!
//! Each test runs a handful of seeds by default so that `cargo test` stays fast;
//! `WEFT_NETSIM_SEEDS=1000 cargo test --release -p weft-netsim` runs more.

use std::path::Path;

use weft_netsim::{Report, Scenario, Sim};

/// How many seeds each property runs: `WEFT_NETSIM_SEEDS`, or `default`.
fn seeds(default: u64) -> std::ops::Range<u64> {
    let n = std::env::var("WEFT_NETSIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    1..n + 1
}

fn scenario(text: &str) -> Scenario {
    match Scenario::parse(text, Path::new("test.toml"), Path::new(".")) {
        Ok(s) => s,
        Err(e) => panic!("bad test scenario: {e}"),
    }
}

fn run(scenario: &Scenario, seed: u64) -> Report {
    match Sim::from_scenario(scenario, seed) {
        Ok(mut sim) => sim.run_until_idle(),
        Err(e) => panic!("{e}"),
    }
}

/// Every build finished successfully, every job of it ran or came from a cache, and no
/// job was lost.
fn assert_complete(report: &Report, what: &str) {
    assert_eq!(report.jobs_lost, 0, "{what}: jobs lost\n{report}");
    for (i, build) in report.builds.iter().enumerate() {
        assert!(build.success, "{what}: build {i} did not succeed\n{report}");
        assert_eq!(
            build.n_ran + build.n_cached,
            build.n_jobs as u64,
            "{what}: build {i}'s counts do not add up\n{report}"
        );
    }
}

/// A small mesh: an origin that shares only when idle, workers that always share, and a
/// layered graph; `extra` adds tables.
fn mesh(workers: usize, jobs: usize, extra: &str) -> String {
    format!(
        r#"
        name = "property"
        until = "2h"
        [network]
        latency = {{ uniform = ["0.5ms", "2ms"] }}
        bandwidth = "1Gbit"
        detect = "3s"
        [core]
        lease_ttl = "2s"
        [[nodes]]
        name = "origin"
        slots = 2
        [[nodes]]
        name = "workers"
        count = {workers}
        slots = 2
        share = "always"
        [[dags]]
        name = "g"
        jobs = {jobs}
        layers = 6
        duration = {{ lognormal = "300ms", sigma = 0.6, max = "3s" }}
        output = {{ lognormal = "50KB", sigma = 1.0 }}
        [[builds]]
        graph = "g"
        origin = 0
        {extra}
        "#
    )
}

#[test]
fn every_build_completes_on_a_quiet_mesh() {
    let s = scenario(&mesh(6, 300, ""));
    for seed in seeds(6) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
        assert!(report.core.jobs_stolen > 0, "nothing was stolen\n{report}");
        assert_eq!(report.duplicated, 0, "{report}");
        // The groups account for every node and every run.
        let groups: Vec<(&str, usize)> = report
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.n_nodes))
            .collect();
        assert_eq!(groups, [("origin", 1), ("workers", 6)], "{report}");
        let runs: u64 = report.groups.iter().map(|g| g.executed).sum();
        assert_eq!(runs, report.executed, "{report}");
        assert!(
            report.groups[1].executed > 0,
            "the workers ran nothing\n{report}"
        );
    }
}

#[test]
fn every_build_completes_while_one_node_with_the_toolchain_remains() {
    // Every worker crashes for good at some point; two nodes never had the toolchain.
    // The origin (which has it) is left, and finishes alone.
    let extra = r#"
        [[nodes]]
        name = "no toolchain"
        count = 2
        slots = 4
        share = "always"
        toolchain = false
        [[churn]]
        at = "1s"
        nodes = [1, 2]
        action = "crash"
        store = "lost"
        [[churn]]
        at = "3s"
        nodes = [3, 4]
        action = "crash"
        [[churn]]
        at = "5s"
        nodes = [5, 6]
        action = "leave"
    "#;
    let s = scenario(&mesh(6, 300, extra));
    for seed in seeds(6) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
    }
}

#[test]
fn no_job_is_lost_under_random_churn() {
    let extra = r#"
        [random_churn]
        mean_up = "4s"
        down = { uniform = ["1s", "6s"] }
        action = "crash"
        store = "lost"
    "#;
    let s = scenario(&mesh(8, 400, extra));
    let mut crashed_runs = 0;
    for seed in seeds(6) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
        crashed_runs += report.lost_runs;
    }
    assert!(crashed_runs > 0, "the churn never hit a running job");
}

#[test]
fn no_job_is_lost_when_jobs_wait_for_fast_machines_that_crash() {
    // Two machines three times as fast, whom the origin keeps critical jobs back for; they
    // crash and come back at random, so jobs are held for machines that are gone, leased to
    // them and lost with them.
    let extra = r#"
        [[nodes]]
        name = "fast"
        count = 2
        slots = 4
        speed = 3.0
        share = "always"
        [random_churn]
        mean_up = "3s"
        down = { uniform = ["1s", "4s"] }
        action = "crash"
        store = "lost"
        spare = [0, 1, 2, 3]
    "#;
    let s = scenario(&mesh(4, 300, extra));
    let mut fast_runs = 0;
    for seed in seeds(6) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
        fast_runs += report.groups[2].executed;
    }
    assert!(fast_runs > 0, "the fast machines ran nothing");
}

#[test]
fn no_job_is_lost_when_the_origin_crashes_and_comes_back() {
    // The origin itself goes down; the build starts again when it is back, and what was
    // built meanwhile comes from its own and its peers' caches.
    let extra = r#"
        [[churn]]
        at = "4s"
        nodes = [0]
        action = "crash"
        [[churn]]
        at = "8s"
        nodes = [0]
        action = "join"
    "#;
    let s = scenario(&mesh(6, 400, extra));
    for seed in seeds(4) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
        assert_eq!(report.builds[0].attempts, 2, "{report}");
        assert!(
            report.core.local_cache_hits + report.core.peer_cache_hits > 0,
            "{report}"
        );
    }
}

#[test]
fn no_job_is_lost_under_a_partition_that_heals_or_not() {
    let cases = [
        // Half the workers are cut off for a while.
        "[[partitions]]\nat = \"2s\"\nheal = \"9s\"\ngroups = [[0, 1, 2, 3], [4, 5, 6]]",
        // A random 40% are cut off for good: the origin's side finishes.
        "[[partitions]]\nat = \"1s\"\nisolate = 0.4",
        // Cut off from everyone: the origin finishes alone.
        "[[partitions]]\nat = \"3s\"\nheal = \"20s\"\ngroups = [[0], [1, 2, 3, 4, 5, 6]]",
    ];
    for (case, extra) in cases.iter().enumerate() {
        let s = scenario(&mesh(6, 300, extra));
        for seed in seeds(3) {
            let report = run(&s, seed);
            assert_complete(&report, &format!("case {case}, seed {seed}"));
        }
    }
}

#[test]
fn duplicates_are_allowed_and_counted() {
    // Lossy links lose `Done` reports and renewals: leases run out and jobs run twice.
    let extra = "[[nodes]]\ncount = 4\nslots = 2\nshare = \"always\"\nloss = 0.05";
    let text =
        mesh(4, 300, extra).replace("detect = \"3s\"", "detect = \"3s\"\nrpc_timeout = \"1s\"");
    let s = scenario(&text);
    let mut duplicated = 0;
    for seed in seeds(6) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
        // Every completed run is either the first of its job or counted as a duplicate.
        let distinct = report.executed - report.duplicated;
        assert!(distinct <= report.n_jobs, "{report}");
        duplicated += report.duplicated;
    }
    assert!(duplicated > 0, "no seed produced a duplicate");
}

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
    let extra = r#"
        [random_churn]
        mean_up = "5s"
        down = "2s"
        [[partitions]]
        at = "2s"
        heal = "4s"
        isolate = 0.3
    "#;
    let text = mesh(6, 200, extra).replace("bandwidth", "loss = 0.01\nbandwidth");
    let s = scenario(&text);
    let mut hashes = std::collections::BTreeSet::new();
    for seed in seeds(4) {
        let a = run(&s, seed);
        let b = run(&s, seed);
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is not reproducible"
        );
        assert_eq!(a.makespan_us, b.makespan_us);
        assert_eq!(a.events, b.events);
        assert!(
            hashes.insert(a.trace_hash),
            "seed {seed} repeats another seed's trace"
        );
    }
}

#[test]
fn a_crashed_thiefs_leases_run_again_within_the_deadline_plus_one_tick() {
    // Peers notice the crash only after 60 s, far beyond the 2 s lease: the lease deadline
    // is what brings the jobs back. Jobs take 1-3 s, so thieves die holding leases.
    let text = r#"
        name = "crashed thieves"
        [network]
        detect = "60s"
        [core]
        lease_ttl = "2s"
        [[nodes]]
        slots = 2
        [[nodes]]
        count = 6
        slots = 2
        share = "always"
        [[dags]]
        name = "g"
        jobs = 200
        layers = 4
        duration = { uniform = ["1s", "3s"] }
        [[builds]]
        graph = "g"
        origin = 0
        [[churn]]
        at = "2500ms"
        nodes = [1, 2]
        action = "crash"
        [[churn]]
        at = "6s"
        nodes = [3]
        action = "crash"
    "#;
    let s = scenario(text);
    // One tick of the core's clock: the beacon interval (1 s by default); in practice the
    // re-run comes within a few milliseconds of the deadline (see the report).
    let tick_us = 1_000_000;
    for seed in seeds(6) {
        let report = run(&s, seed);
        assert_complete(&report, &format!("seed {seed}"));
        assert!(
            report.orphans_rerun > 0,
            "seed {seed}: no orphaned lease\n{report}"
        );
        let late = report.orphan_worst_lateness_us.unwrap_or(0);
        assert!(
            late <= tick_us,
            "seed {seed}: re-run {late} us after the deadline\n{report}"
        );
        assert!(report.core.leases_requeued > 0, "{report}");
    }
}

#[test]
fn a_replayed_log_builds_like_any_graph() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let text = r#"
        name = "replay"
        [[nodes]]
        count = 4
        slots = 2
        share = "always"
        [[replays]]
        name = "cc"
        file = "data/cc-workspace.events.jsonl"
        [[builds]]
        graph = "cc"
        origin = 0
    "#;
    let s = match Scenario::parse(text, &dir.join("replay.toml"), &dir) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let report = run(&s, 1);
    assert_complete(&report, "replay");
    assert_eq!(report.n_jobs, 104, "{report}");
}

/// Every shipped scenario reads and checks; the small ones also run to completion.
#[test]
fn the_shipped_scenarios_load_and_the_small_ones_complete() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("scale")] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for path in files {
        let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let nodes: usize = scenario.nodes.iter().map(|g| g.count).sum();
        let jobs: usize = scenario.dags.iter().map(|d| d.jobs).sum();
        if nodes <= 50 && jobs <= 6_000 {
            let report = run(&scenario, scenario.seed);
            assert_complete(&report, &path.display().to_string());
        }
    }
}
