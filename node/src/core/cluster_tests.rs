//! Several [`Core`]s wired together in memory, with a virtual clock: the mesh decisions,
//! tested without any IO. Messages arrive at once; jobs take the time their name says.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use weft_protocol::wire::SharePolicy;
use weft_protocol::{Cmd, Digest, Job, JobId, NodeId, Toolchain};

use super::{
    BuildEffect, BuildId, BuildOptions, BuildOutcome, Core, CoreConfig, Effect, Finished, Gossip,
    PlannedJob, Report, Reported, StolenOutcome, Time,
};

const CC: Digest = Digest::from_bytes([7; 32]);

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

/// A job named `name` that takes `ms` milliseconds, after `deps`.
fn job(name: &str, ms: u64, deps: &[JobId]) -> Job {
    Job {
        name: format!("{name}:{ms}"),
        inputs: vec![],
        deps: deps.to_vec(),
        cmds: vec![Cmd::Exec {
            argv: vec!["cc".into(), name.into()],
            env: Default::default(),
            cwd: None,
        }],
        env: Default::default(),
        outs: vec![],
        toolchain: Toolchain {
            platform: "linux".into(),
            tools: BTreeMap::from([("cc".into(), CC)]),
            system: None,
        },
        network: false,
    }
}

/// A thief's report reaches its victim, as the wire carries it (outputs are never wanted
/// here, so a success counts at once).
fn report(victim: &mut Core, now: Time, thief: NodeId, job: JobId, outcome: Reported) -> Report {
    match outcome {
        Reported::Succeeded => victim.on_thief_done(now, thief, job, job.0),
        Reported::Failed => victim.on_thief_failed(now, thief, job, false),
        Reported::Infrastructure | Reported::Refused => {
            victim.on_thief_failed(now, thief, job, true)
        }
    }
}

fn duration_of(job: &Job) -> Duration {
    let ms = job
        .name
        .rsplit(':')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(10);
    Duration::from_millis(ms)
}

struct Sim {
    now: Time,
    cores: BTreeMap<NodeId, Core>,
    /// Each node's speed in thousandths: a job runs `1000 / speed` times its named time.
    speeds: BTreeMap<NodeId, u32>,
    /// Results each node holds.
    results: BTreeMap<NodeId, HashSet<JobId>>,
    /// Nodes that crashed: they take no events and send nothing.
    crashed: BTreeSet<NodeId>,
    /// (finish time, node, what): jobs running.
    running: Vec<(Time, NodeId, Running)>,
    /// Which node ran each job (in order), for assertions.
    ran: Vec<(NodeId, JobId)>,
    done: BTreeMap<BuildId, BuildOutcome>,
    /// Thief reports to delay: when set, a thief's report waits until this time.
    hold_reports_until: Option<Time>,
    delayed: Vec<(Time, NodeId, NodeId, JobId, Reported)>,
}

#[derive(Debug, Clone)]
enum Running {
    Own { build: BuildId, job: JobId },
    Stolen { id: JobId, outcome: StolenOutcome },
}

impl Sim {
    fn new(specs: &[(u8, usize, SharePolicy, bool)]) -> Sim {
        Sim::with_speeds(specs, &[])
    }

    /// Nodes as in [`Sim::new`], those in `speeds` with that speed (the rest 1000).
    fn with_speeds(specs: &[(u8, usize, SharePolicy, bool)], speeds: &[(u8, u32)]) -> Sim {
        let mut sim = Sim {
            now: Time::ZERO,
            cores: BTreeMap::new(),
            speeds: BTreeMap::new(),
            results: BTreeMap::new(),
            crashed: BTreeSet::new(),
            running: Vec::new(),
            ran: Vec::new(),
            done: BTreeMap::new(),
            hold_reports_until: None,
            delayed: Vec::new(),
        };
        for (n, slots, share, has_cc) in specs {
            let mut config = CoreConfig::new(*slots);
            config.share = *share;
            config.lease_ttl = Duration::from_millis(300);
            config.speed = speeds
                .iter()
                .find(|(m, _)| m == n)
                .map_or(1000, |(_, speed)| *speed);
            sim.speeds.insert(node(*n), config.speed);
            let tools = if *has_cc {
                BTreeSet::from([CC])
            } else {
                BTreeSet::new()
            };
            sim.cores
                .insert(node(*n), Core::new(node(*n), "linux".into(), tools, config));
            sim.results.insert(node(*n), HashSet::new());
        }
        let ids: Vec<NodeId> = sim.cores.keys().copied().collect();
        for a in &ids {
            for b in &ids {
                if a != b {
                    let now = sim.now;
                    let _nothing_held_yet = sim.core(*a).on_peer_up(now, *b);
                }
            }
        }
        sim
    }

    /// How long `job` runs on `id`.
    fn run_time(&self, id: NodeId, job: &Job) -> Duration {
        duration_of(job) * 1000 / self.speeds[&id]
    }

    fn core(&mut self, id: NodeId) -> &mut Core {
        self.cores.get_mut(&id).expect("a node of the sim")
    }

    fn add_build(&mut self, origin: NodeId, build: BuildId, jobs: &[Job]) {
        let planned = jobs
            .iter()
            .map(|j| PlannedJob {
                id: j.id(),
                job: Arc::new(j.clone()),
                estimate: duration_of(j),
                wanted: false,
            })
            .collect();
        let now = self.now;
        self.core(origin)
            .add_build(
                now,
                build,
                planned,
                BuildOptions {
                    keep_going: false,
                    max_parallel: 64,
                },
            )
            .expect("a valid graph");
    }

    /// Delivers every effect of every live node until all are quiet.
    fn settle(&mut self) {
        loop {
            let mut progressed = false;
            let ids: Vec<NodeId> = self.cores.keys().copied().collect();
            for id in ids {
                if self.crashed.contains(&id) {
                    // A crashed node's effects go nowhere.
                    while self.core(id).poll_effect().is_some() {}
                    continue;
                }
                while let Some(effect) = self.core(id).poll_effect() {
                    progressed = true;
                    self.handle(id, effect);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn handle(&mut self, id: NodeId, effect: Effect) {
        let now = self.now;
        match effect {
            Effect::Build(BuildEffect::LookupCache { build, job }) => {
                let hit = self.results[&id].contains(&job).then_some(job.0);
                self.core(id).on_local_cache(now, build, job, hit);
            }
            Effect::QueryPeer {
                build, job, peer, ..
            } => {
                let hit = (!self.crashed.contains(&peer) && self.results[&peer].contains(&job))
                    .then_some(job.0);
                self.core(id).on_peer_cache(now, build, job, peer, hit);
            }
            Effect::Build(BuildEffect::Start {
                build,
                id: job,
                job: job_def,
                ..
            }) => {
                let duration = self.run_time(id, &job_def);
                self.running
                    .push((now + duration, id, Running::Own { build, job }));
            }
            Effect::RunStolen {
                id: job_id, job, ..
            } => {
                let outcome = if self.crashed.contains(&id) {
                    StolenOutcome::Cancelled
                } else {
                    StolenOutcome::Succeeded
                };
                self.running.push((
                    now + self.run_time(id, &job),
                    id,
                    Running::Stolen {
                        id: job_id,
                        outcome,
                    },
                ));
            }
            Effect::CancelStolen { id: job } => {
                self.running.retain(|(_, n, r)| {
                    !(*n == id && matches!(r, Running::Stolen { id: j, .. } if *j == job))
                });
                self.core(id)
                    .on_stolen_finished(now, job, StolenOutcome::Cancelled);
            }
            Effect::Build(BuildEffect::Cancel { build, job }) => {
                self.running.retain(|(_, n, r)| !(*n == id && matches!(r, Running::Own { build: b, job: j } if *b == build && *j == job)));
                self.core(id)
                    .on_job_finished(now, build, job, Finished::Cancelled);
            }
            Effect::SendSteal { peer, request } => {
                if self.crashed.contains(&peer) {
                    self.core(id).on_steal_failed(now, peer);
                } else {
                    let leases = self.core(peer).on_steal_request(now, id, &request);
                    self.core(id).on_granted(now, peer, leases);
                }
            }
            Effect::SendRenew { origin, jobs } => {
                if !self.crashed.contains(&origin) {
                    let lost = self.core(origin).on_renew(now, id, &jobs);
                    self.core(id).on_renewed(now, &lost);
                }
            }
            Effect::SendDone {
                origin,
                id: job,
                outcome,
            } => {
                if let Some(until) = self.hold_reports_until {
                    self.delayed.push((until, id, origin, job, outcome));
                } else if !self.crashed.contains(&origin) {
                    report(self.core(origin), now, id, job, outcome);
                }
            }
            Effect::SendDepsLost {
                origin,
                id: job,
                lost,
            } => {
                if !self.crashed.contains(&origin) {
                    self.core(origin).on_thief_deps_lost(now, id, job, &lost);
                }
            }
            Effect::Publish(gossip) => {
                let peers: Vec<NodeId> = self
                    .cores
                    .keys()
                    .copied()
                    .filter(|p| *p != id && !self.crashed.contains(p))
                    .collect();
                for peer in peers {
                    match &gossip {
                        Gossip::Beacon(beacon) => self.core(peer).on_beacon(now, id, beacon),
                        Gossip::Have(jobs) => self.core(peer).on_have(now, id, jobs),
                    }
                }
            }
            Effect::Build(BuildEffect::BuildDone { build, outcome }) => {
                self.done.insert(build, outcome);
            }
            Effect::GivenAway { .. }
            | Effect::Returned { .. }
            | Effect::Nondeterministic { .. }
            | Effect::Quarantined { .. }
            | Effect::Verify { .. }
            | Effect::Build(BuildEffect::Skipped { .. }) => {}
        }
    }

    /// Runs until `build` is done (or a minute of virtual time passes).
    fn run_until_done(&mut self, build: BuildId) -> BuildOutcome {
        let limit = Time::from_millis(60_000);
        loop {
            self.settle();
            if let Some(outcome) = self.done.get(&build) {
                return *outcome;
            }
            // Next: a job finishing, a delayed report, or a core's timer.
            let mut next = limit;
            for (at, node, _) in &self.running {
                if !self.crashed.contains(node) {
                    next = next.min(*at);
                }
            }
            for (at, ..) in &self.delayed {
                next = next.min(*at);
            }
            for (id, core) in &self.cores {
                if !self.crashed.contains(id) {
                    next = next.min(core.next_timeout().max(self.now + Duration::from_micros(1)));
                }
            }
            assert!(next < limit, "the build did not finish: {:?}", self.done);
            self.now = next;
            let now = self.now;
            // Jobs that finish now.
            let (finished, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.running = running;
            for (_, node, what) in finished {
                if self.crashed.contains(&node) {
                    continue;
                }
                match what {
                    Running::Own { build, job } => {
                        self.ran.push((node, job));
                        self.results.get_mut(&node).expect("node").insert(job);
                        self.core(node).on_job_finished(
                            now,
                            build,
                            job,
                            Finished::Succeeded(job.0),
                        );
                    }
                    Running::Stolen { id, outcome } => {
                        self.ran.push((node, id));
                        self.results.get_mut(&node).expect("node").insert(id);
                        self.core(node).on_stolen_finished(now, id, outcome);
                    }
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(at, ..)| *at <= now);
            self.delayed = later;
            for (_, thief, origin, job, outcome) in due {
                report(self.core(origin), now, thief, job, outcome);
            }
            let ids: Vec<NodeId> = self.cores.keys().copied().collect();
            for id in ids {
                if !self.crashed.contains(&id) && self.core(id).next_timeout() <= now {
                    self.core(id).tick(now);
                }
            }
        }
    }

    fn ran_on(&self, n: u8) -> usize {
        self.ran
            .iter()
            .filter(|(node, _)| *node == self::node(n))
            .count()
    }
}

fn independent(n: usize, ms: u64) -> Vec<Job> {
    (0..n).map(|i| job(&format!("j{i}"), ms, &[])).collect()
}

#[test]
fn an_idle_peer_steals_and_the_build_finishes_sooner() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 2, SharePolicy::Always, true),
    ]);
    let jobs = independent(9, 100);
    sim.add_build(node(1), BuildId(1), &jobs);
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    assert_eq!(outcome.n_ran, 9);
    assert!(sim.ran_on(2) >= 4, "the thief ran {} jobs", sim.ran_on(2));
    // 9 jobs of 100 ms on 3 slots: 300 ms at best, 900 ms alone.
    assert!(sim.now < Time::from_millis(500), "makespan {:?}", sim.now);
    let ids: HashSet<JobId> = sim.ran.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 9, "each job ran once");
    let thief = sim.cores[&node(2)].stats();
    assert!(thief.steal_successes > 0 && thief.jobs_stolen >= 4);
}

#[test]
fn a_thief_without_the_toolchain_gets_nothing() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 2, SharePolicy::Always, false),
    ]);
    sim.add_build(node(1), BuildId(1), &independent(4, 50));
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    assert_eq!(sim.ran_on(2), 0);
    assert_eq!(sim.ran_on(1), 4);
}

#[test]
fn sharing_never_means_never() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 2, SharePolicy::Never, true),
    ]);
    sim.add_build(node(1), BuildId(1), &independent(4, 50));
    assert!(sim.run_until_done(BuildId(1)).success);
    assert_eq!(sim.ran_on(2), 0);
    assert_eq!(sim.cores[&node(2)].stats().steal_requests, 0);
}

#[test]
fn a_crashed_thiefs_leases_run_out_and_the_jobs_run_elsewhere() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 2, SharePolicy::Always, true),
    ]);
    sim.add_build(node(1), BuildId(1), &independent(6, 100));
    sim.settle();
    assert!(sim.cores[&node(2)].running() > 0, "the thief took jobs");
    // It dies silently: no disconnect reaches the victim, only silence.
    sim.crashed.insert(node(2));
    let crash_at = sim.now;
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    assert_eq!(sim.ran_on(2), 0);
    assert_eq!(sim.ran_on(1), 6);
    let victim = sim.cores[&node(1)].stats();
    assert!(victim.leases_requeued >= 1);
    // The lease is 300 ms; the jobs came back no later than that after the crash.
    assert!(sim.now <= crash_at + Duration::from_millis(300 + 6 * 100));
}

#[test]
fn a_dropped_connection_requeues_at_once() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 2, SharePolicy::Always, true),
    ]);
    sim.add_build(node(1), BuildId(1), &independent(6, 100));
    sim.settle();
    sim.crashed.insert(node(2));
    let now = sim.now;
    sim.core(node(1)).on_peer_down(now, node(2));
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    // No waiting for the lease: six jobs one after another on one slot.
    assert_eq!(sim.now, now + Duration::from_millis(600));
}

#[test]
fn results_held_by_a_peer_are_not_built_again() {
    let mut sim = Sim::new(&[
        (1, 2, SharePolicy::Never, true),
        (2, 2, SharePolicy::Never, true),
    ]);
    let jobs = independent(3, 100);
    sim.add_build(node(2), BuildId(1), &jobs);
    assert!(sim.run_until_done(BuildId(1)).success);
    // Let the announcements go out.
    let later = sim.now + Duration::from_millis(100);
    sim.now = later;
    for n in [1, 2] {
        sim.core(node(n)).tick(later);
    }
    sim.settle();
    assert_eq!(sim.cores[&node(1)].holders(&jobs[0].id()), &[node(2)]);
    sim.add_build(node(1), BuildId(2), &jobs);
    let outcome = sim.run_until_done(BuildId(2));
    assert!(outcome.success);
    assert_eq!((outcome.n_ran, outcome.n_cached), (0, 3));
    assert_eq!(sim.cores[&node(1)].stats().peer_cache_hits, 3);
}

#[test]
fn a_late_report_after_the_lease_ran_out_is_harmless() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 1, SharePolicy::Always, true),
    ]);
    // The thief's reports arrive long after its lease ran out.
    sim.hold_reports_until = Some(Time::from_millis(2_000));
    sim.add_build(node(1), BuildId(1), &independent(2, 100));
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    let count = |s: &Sim| {
        s.ran
            .iter()
            .map(|(_, id)| *id)
            .collect::<HashSet<_>>()
            .len()
    };
    assert_eq!(count(&sim), 2);
    sim.hold_reports_until = None;
    // Deliver the late report: the build is over, so it is a duplicate.
    sim.now = Time::from_millis(2_000);
    let late: Vec<_> = std::mem::take(&mut sim.delayed);
    for (_, thief, origin, job, outcome) in late {
        let now = sim.now;
        report(sim.core(origin), now, thief, job, outcome);
    }
    assert!(sim.cores[&node(1)].stats().duplicates >= 1);
}

#[test]
fn a_thief_that_keeps_failing_for_its_own_reasons_is_avoided() {
    // The thief asks by hand here (its own policy is `Never`, so it does not on its own).
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 1, SharePolicy::Never, true),
    ]);
    sim.add_build(node(1), BuildId(1), &independent(6, 100));
    sim.settle();
    let now = sim.now;
    let mut failures = 0;
    for _ in 0..10 {
        let leases = sim.core(node(1)).on_steal_request(
            now,
            node(2),
            &weft_protocol::wire::StealRequest {
                max_jobs: 1,
                platform: "linux".into(),
                tools: vec![CC],
            },
        );
        let Some(lease) = leases.first() else { break };
        report(
            sim.core(node(1)),
            now,
            node(2),
            lease.job.id(),
            Reported::Infrastructure,
        );
        failures += 1;
    }
    assert_eq!(failures, 3, "after three failures the thief gets nothing");
    let view = sim.cores[&node(1)].peers();
    assert!(view[0].avoided_until.is_some());
    while sim.core(node(1)).poll_effect().is_some() {}
}

#[test]
fn a_thief_that_cannot_fetch_a_deps_outputs_has_the_dep_run_again_not_the_job_lent_out_again() {
    // The thief asks by hand (its policy is `Never`); the origin is busy with a long job.
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Idle, true),
        (2, 1, SharePolicy::Never, true),
    ]);
    let a = job("a", 100, &[]);
    let b = job("b", 100, &[a.id()]);
    let long = job("long", 5_000, &[]);
    sim.add_build(node(1), BuildId(1), &[a.clone(), b.clone(), long]);
    sim.settle();
    let request = weft_protocol::wire::StealRequest {
        max_jobs: 1,
        platform: "linux".into(),
        tools: vec![CC],
    };
    let steal = |sim: &mut Sim| {
        let now = sim.now;
        let leases = sim.core(node(1)).on_steal_request(now, node(2), &request);
        assert_eq!(leases.len(), 1, "{leases:?}");
        leases[0].job.id()
    };
    assert_eq!(steal(&mut sim), a.id());
    let now = sim.now;
    report(sim.core(node(1)), now, node(2), a.id(), Reported::Succeeded);
    sim.settle();
    assert_eq!(steal(&mut sim), b.id());
    // The thief cannot get `a`'s outputs from anyone: `a` runs again, and `b` waits for it.
    let report = sim
        .core(node(1))
        .on_thief_deps_lost(now, node(2), b.id(), &[a.id()]);
    assert_eq!(report, Report::Accepted);
    assert_eq!(sim.cores[&node(1)].stats().deps_lost_by_thieves, 1);
    sim.settle();
    assert_eq!(steal(&mut sim), a.id(), "the lost dep comes first");
    // A report for a lease the thief does not hold changes nothing.
    let report = sim
        .core(node(1))
        .on_thief_deps_lost(now, node(2), b.id(), &[a.id()]);
    assert_eq!(report, Report::Unknown);
    assert!(sim.cores[&node(1)].peers()[0].avoided_until.is_none());
    while sim.core(node(1)).poll_effect().is_some() {}
}

#[test]
fn dependents_prefer_the_thief_that_holds_their_deps() {
    // Victim 1 queues `free` and `b1`; `b1` depends on a result peer 2 holds. The thief asks
    // by hand (its own policy is `Never`).
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Never, true),
        (2, 1, SharePolicy::Never, true),
    ]);
    let base = job("base", 10, &[]);
    let now = sim.now;
    sim.core(node(1)).on_have(now, node(2), &[base.id()]);
    sim.results
        .get_mut(&node(1))
        .expect("node")
        .insert(base.id());
    let jobs = vec![
        base.clone(),
        job("blocker", 1000, &[]),
        job("free", 50, &[]),
        job("b1", 50, &[base.id()]),
    ];
    sim.add_build(node(1), BuildId(1), &jobs);
    sim.settle();
    let leases = sim.core(node(1)).on_steal_request(
        now,
        node(2),
        &weft_protocol::wire::StealRequest {
            max_jobs: 1,
            platform: "linux".into(),
            tools: vec![CC],
        },
    );
    assert_eq!(leases.len(), 1);
    assert!(
        leases[0].job.name.starts_with("b1"),
        "got {}",
        leases[0].job.name
    );
    while sim.core(node(1)).poll_effect().is_some() {}
}

#[test]
fn the_holder_map_is_bounded_and_forgets_the_least_recently_announced() {
    let mut sim = Sim::new(&[
        (1, 1, SharePolicy::Never, true),
        (2, 1, SharePolicy::Never, true),
        (3, 1, SharePolicy::Never, true),
    ]);
    let now = sim.now;
    let core = sim.core(node(1));
    // A small cap, for the test.
    let cap = 100;
    let mut config = core.config().clone();
    config.max_holder_entries = cap;
    let mut core = Core::new(node(1), "linux".into(), BTreeSet::from([CC]), config);
    let _ = core.on_peer_up(now, node(2));
    let _ = core.on_peer_up(now, node(3));
    let ids: Vec<JobId> = (0..400u32)
        .map(|i| JobId(Digest::of(&i.to_le_bytes())))
        .collect();
    for chunk in ids.chunks(10) {
        core.on_have(now, node(2), chunk);
    }
    let kept: usize = core.peers().iter().map(|p| p.n_results).sum();
    assert!(kept <= cap && kept >= cap / 2, "{kept} entries kept");
    assert!(core.holders(&ids[0]).is_empty(), "the oldest went first");
    assert_eq!(core.holders(&ids[399]), &[node(2)]);
    // Announced by another peer too: two holders.
    core.on_have(now, node(3), &ids[399..]);
    assert_eq!(core.holders(&ids[399]), &[node(2), node(3)]);
    // A peer that goes away takes its entries along.
    core.on_peer_down(now, node(2));
    assert_eq!(core.holders(&ids[399]), &[node(3)]);
    assert!(core.holders(&ids[398]).is_empty());
    assert_eq!(core.peers().iter().map(|p| p.n_results).sum::<usize>(), 1);
    while core.poll_effect().is_some() {}
}

/// A chain of `n` jobs of `ms` each, and `wide` independent jobs of `ms` beside it.
fn chain_and_crowd(n: usize, wide: usize, ms: u64) -> (Vec<Job>, Vec<JobId>) {
    let mut jobs = Vec::new();
    let mut chain = Vec::new();
    for i in 0..n {
        let deps: Vec<JobId> = chain.last().copied().into_iter().collect();
        let j = job(&format!("c{i}"), ms, &deps);
        chain.push(j.id());
        jobs.push(j);
    }
    jobs.extend((0..wide).map(|i| job(&format!("w{i}"), ms, &[])));
    (jobs, chain)
}

/// Node 1 (4 slots, sharing when idle) and node 2 (2 slots, always sharing) at `speed`,
/// after their first beacons, so that each knows the other's speed.
fn origin_and_peer_at(speed: u32) -> Sim {
    let mut sim = Sim::with_speeds(
        &[
            (1, 4, SharePolicy::Idle, true),
            (2, 2, SharePolicy::Always, true),
        ],
        &[(2, speed)],
    );
    sim.settle();
    sim
}

#[test]
fn the_critical_path_goes_to_a_much_faster_peer() {
    // The origin could run everything itself, but node 2 runs at twice its speed.
    let mut sim = origin_and_peer_at(2000);
    let (jobs, chain) = chain_and_crowd(5, 3, 1000);
    sim.add_build(node(1), BuildId(1), &jobs);
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    for id in &chain {
        let runner = sim.ran.iter().find(|(_, j)| j == id).map(|(n, _)| *n);
        assert_eq!(runner, Some(node(2)), "a chain job ran on {runner:?}");
    }
    // Five seconds of chain at twice the speed, a moment of waiting for each.
    assert!(sim.now < Time::from_millis(2_600), "makespan {:?}", sim.now);
}

#[test]
fn a_faster_peer_that_never_comes_costs_at_most_the_reserve_window() {
    let mut sim = origin_and_peer_at(2000);
    // Node 2 said it is idle and fast, then stopped answering without its link going down.
    sim.crashed.insert(node(2));
    let (jobs, chain) = chain_and_crowd(5, 0, 1000);
    sim.add_build(node(1), BuildId(1), &jobs);
    let outcome = sim.run_until_done(BuildId(1));
    assert!(outcome.success);
    assert!(sim.ran.iter().all(|(n, _)| *n == node(1)));
    assert_eq!(sim.ran.len(), chain.len());
    // Each chain job waited at most `reserve_for` (100 ms) for node 2 before starting here.
    let window = CoreConfig::new(1).reserve_for;
    let worst = Time::from_millis(5_000) + window * 5;
    assert!(
        sim.now > Time::from_millis(5_000) && sim.now <= worst,
        "makespan {:?}",
        sim.now
    );
}

#[test]
fn machines_of_one_speed_keep_nothing_back() {
    // 10% apart is noise in a measured speed, not a faster machine.
    let mut sim = origin_and_peer_at(1100);
    let (jobs, _) = chain_and_crowd(3, 0, 1000);
    sim.add_build(node(1), BuildId(1), &jobs);
    assert!(sim.run_until_done(BuildId(1)).success);
    // The origin had free slots: it ran the chain at once, without waiting for anyone.
    assert!(sim.ran.iter().all(|(n, _)| *n == node(1)));
    assert_eq!(sim.now, Time::from_millis(3_000));
}
