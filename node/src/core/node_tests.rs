//! One [`Core`] driven by hand: the instructions it hands its driver are complete, so that
//! the daemon's engine and netsim carry them out without deciding anything (where a dep's
//! outputs come from, what a lease lists, what a newcomer hears, when outputs must come
//! first, which tools are offered, how a thief's time counts here).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use weft_protocol::wire::{LeaseDep, LoadBeacon, SharePolicy, StealRequest};
use weft_protocol::{Cmd, Digest, Job, JobId, NodeId, Toolchain};

use super::{
    BuildEffect, BuildId, BuildOptions, Core, CoreConfig, Effect, Finished, Gossip, PlannedJob,
    Report, Reported, Time,
};

const CC: Digest = Digest::from_bytes([7; 32]);
const BUILD: BuildId = BuildId(1);

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn tree(n: u8) -> Digest {
    Digest::from_bytes([n; 32])
}

fn job(name: &str, deps: &[JobId]) -> Job {
    Job {
        name: name.into(),
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

/// Node 1 with `slots` slots, sharing always, and peers 2 and 3 admitted.
fn core(slots: usize, config: impl FnOnce(&mut CoreConfig)) -> Core {
    let mut settings = CoreConfig::new(slots);
    settings.share = SharePolicy::Always;
    config(&mut settings);
    let mut core = Core::new(node(1), "linux".into(), BTreeSet::from([CC]), settings);
    for peer in [2, 3] {
        let _ = core.on_peer_up(Time::ZERO, node(peer));
    }
    drain(&mut core);
    core
}

fn add_build(core: &mut Core, jobs: &[(&Job, bool)]) {
    let planned = jobs
        .iter()
        .map(|(job, wanted)| PlannedJob {
            id: job.id(),
            job: Arc::new((*job).clone()),
            estimate: Duration::ZERO,
            wanted: *wanted,
        })
        .collect();
    let options = BuildOptions {
        keep_going: false,
        max_parallel: 8,
    };
    core.add_build(Time::ZERO, BUILD, planned, options)
        .expect("a valid graph");
}

fn drain(core: &mut Core) -> Vec<Effect> {
    std::iter::from_fn(|| core.poll_effect()).collect()
}

fn beacon(queue_len: u32, speed: u32) -> LoadBeacon {
    LoadBeacon {
        free_slots: 0,
        queue_len,
        platform: "linux".into(),
        tools: vec![CC],
        share: SharePolicy::Always,
        max_shared_slots: 4,
        speed,
        reserved: 0,
    }
}

fn steal_request() -> StealRequest {
    StealRequest {
        max_jobs: 4,
        platform: "linux".into(),
        tools: vec![CC],
    }
}

/// `a` settled (a hit in the cache of node 3, which announced it before node 2 did), and
/// `b`, which depends on it: where does `b` look for `a`'s outputs?
fn a_made_by_3_announced_by_2(core: &mut Core) -> (Job, Job) {
    let a = job("a", &[]);
    let b = job("b", &[a.id()]);
    core.on_have(Time::ZERO, node(3), &[a.id()]);
    core.on_have(Time::ZERO, node(2), &[a.id()]);
    add_build(core, &[(&a, false), (&b, false)]);
    answer_a_from_3(core, &a, tree(9));
    (a, b)
}

/// Answers the lookups of `a`: missing here, a hit (`tree`) at node 3.
fn answer_a_from_3(core: &mut Core, a: &Job, tree: Digest) {
    for effect in drain(core) {
        match effect {
            Effect::Build(BuildEffect::LookupCache { build, job }) if job == a.id() => {
                core.on_local_cache(Time::ZERO, build, job, None);
            }
            _ => {}
        }
    }
    for effect in drain(core) {
        match effect {
            Effect::QueryPeer {
                build, job, peer, ..
            } if job == a.id() => {
                assert_eq!(peer, node(3), "the first to announce it is asked first");
                core.on_peer_cache(Time::ZERO, build, job, peer, Some(tree));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_start_lists_each_dep_s_maker_then_its_announcers_then_this_node() {
    let mut core = core(1, |_| {});
    let (a, b) = a_made_by_3_announced_by_2(&mut core);
    let mut started = None;
    for effect in drain(&mut core) {
        match effect {
            Effect::Build(BuildEffect::LookupCache { job, .. }) => {
                // `b` is nowhere: looked up here, and no peer announced it.
                core.on_local_cache(Time::ZERO, BUILD, job, None);
            }
            Effect::Build(BuildEffect::Start { id, deps, .. }) => started = Some((id, deps)),
            _ => {}
        }
    }
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::Start { id, deps, .. }) = effect {
            started = Some((id, deps));
        }
    }
    let expected = vec![LeaseDep {
        job: a.id(),
        tree: tree(9),
        holders: vec![node(3), node(2), node(1)],
    }];
    assert_eq!(started, Some((b.id(), expected)));
}

#[test]
fn a_lease_lists_where_the_deps_outputs_are() {
    // One slot, which a long job takes: `b` stays queued, and a thief takes it.
    let mut core = core(1, |_| {});
    let a = job("a", &[]);
    let b = job("b", &[a.id()]);
    let long = job("long", &[]);
    core.on_have(Time::ZERO, node(3), &[a.id()]);
    core.on_have(Time::ZERO, node(2), &[a.id()]);
    let planned = [(&a, 0), (&b, 0), (&long, 10_000)]
        .into_iter()
        .map(|(job, ms)| PlannedJob {
            id: job.id(),
            job: Arc::new(job.clone()),
            estimate: Duration::from_millis(ms),
            wanted: false,
        })
        .collect();
    let options = BuildOptions {
        keep_going: false,
        max_parallel: 8,
    };
    core.add_build(Time::ZERO, BUILD, planned, options)
        .expect("a valid graph");
    let mut started = Vec::new();
    loop {
        let effects = drain(&mut core);
        if effects.is_empty() {
            break;
        }
        for effect in effects {
            match effect {
                Effect::Build(BuildEffect::LookupCache { job, .. }) => {
                    core.on_local_cache(Time::ZERO, BUILD, job, None);
                }
                Effect::QueryPeer {
                    build, job, peer, ..
                } => core.on_peer_cache(Time::ZERO, build, job, peer, Some(tree(8))),
                Effect::Build(BuildEffect::Start { id, .. }) => started.push(id),
                _ => {}
            }
        }
    }
    assert_eq!(started, vec![long.id()]);
    let leases = core.on_steal_request(Time::ZERO, node(2), &steal_request());
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].job.id(), b.id());
    assert_eq!(
        leases[0].deps,
        vec![LeaseDep {
            job: a.id(),
            tree: tree(8),
            holders: vec![node(3), node(2), node(1)],
        }]
    );
}

#[test]
fn a_query_for_a_published_job_asks_for_its_outputs() {
    let mut core = core(1, |_| {});
    let published = job("published", &[]);
    let inner = job("inner", &[]);
    core.on_have(Time::ZERO, node(2), &[published.id(), inner.id()]);
    add_build(&mut core, &[(&published, true), (&inner, false)]);
    let mut queries = BTreeMap::new();
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::LookupCache { job, .. }) = effect {
            core.on_local_cache(Time::ZERO, BUILD, job, None);
        }
    }
    for effect in drain(&mut core) {
        if let Effect::QueryPeer {
            job,
            peer,
            with_outputs,
            ..
        } = effect
        {
            assert_eq!(peer, node(2));
            queries.insert(job, with_outputs);
        }
    }
    assert_eq!(
        queries,
        BTreeMap::from([(published.id(), true), (inner.id(), false)])
    );
}

/// Node 1 has `job` (published or not) queued, and lends it to node 2.
fn lent_to_2(wanted: bool) -> (Core, Job) {
    let mut core = core(1, |c| c.share = SharePolicy::Never);
    // A job that takes the one slot, so that `job` stays queued.
    let first = job("first", &[]);
    let lent = job("lent", &[]);
    add_build(&mut core, &[(&first, false), (&lent, wanted)]);
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::LookupCache { job, .. }) = effect {
            core.on_local_cache(Time::ZERO, BUILD, job, None);
        }
    }
    drain(&mut core);
    let leases = core.on_steal_request(Time::ZERO, node(2), &steal_request());
    assert_eq!(leases.len(), 1);
    drain(&mut core);
    let id = leases[0].job.id();
    let lent = if id == lent.id() { lent } else { first };
    (core, lent)
}

#[test]
fn a_thief_s_published_job_counts_once_its_outputs_are_fetched() {
    let (mut core, lent) = lent_to_2(true);
    let at = Time::from_millis(9_000);
    assert_eq!(
        core.on_thief_done(at, node(2), lent.id(), tree(5)),
        Report::FetchOutputs
    );
    // The lease was renewed at 9 s: it does not run out at its first deadline (10 s).
    core.tick(Time::from_millis(10_500));
    drain(&mut core);
    assert_eq!(core.stats().leases_requeued, 0);
    assert_eq!(
        core.on_thief_outputs(Time::from_millis(11_000), node(2), lent.id(), tree(5), true),
        Report::Accepted
    );
}

#[test]
fn a_thief_s_outputs_that_cannot_be_fetched_send_the_job_elsewhere() {
    let (mut core, lent) = lent_to_2(true);
    assert_eq!(
        core.on_thief_done(Time::ZERO, node(2), lent.id(), tree(5)),
        Report::FetchOutputs
    );
    let report = core.on_thief_outputs(Time::ZERO, node(2), lent.id(), tree(5), false);
    assert_eq!(report, Report::Accepted);
    assert_eq!(core.stats().leases_requeued, 1);
    assert_eq!(core.peers()[0].failures, 1, "it counts against the thief");
}

#[test]
fn a_thief_s_unpublished_job_counts_at_once() {
    let (mut core, lent) = lent_to_2(false);
    assert_eq!(
        core.on_thief_done(Time::ZERO, node(2), lent.id(), tree(5)),
        Report::Accepted
    );
}

#[test]
fn a_newcomer_hears_of_the_latest_results_newest_first() {
    let mut core = core(4, |c| c.have_snapshot = 3);
    core.restore_results([job("old", &[]).id()]);
    let jobs: Vec<Job> = (0..4).map(|i| job(&format!("j{i}"), &[])).collect();
    let refs: Vec<(&Job, bool)> = jobs.iter().map(|j| (j, false)).collect();
    add_build(&mut core, &refs);
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::LookupCache { job, .. }) = effect {
            core.on_local_cache(Time::ZERO, BUILD, job, None);
        }
    }
    let mut order = Vec::new();
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::Start { id, .. }) = effect {
            order.push(id);
        }
    }
    for id in &order {
        core.on_job_finished(Time::ZERO, BUILD, *id, Finished::Succeeded(tree(1)));
    }
    let snapshot = core.on_peer_up(Time::ZERO, node(4));
    let newest: Vec<JobId> = order.iter().rev().take(3).copied().collect();
    assert_eq!(snapshot, vec![newest]);
    // Results are announced by gossip too, in a batch.
    core.tick(Time::from_millis(100));
    let announced: Vec<Vec<JobId>> = drain(&mut core)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Publish(Gossip::Have(jobs)) => Some(jobs),
            _ => None,
        })
        .collect();
    assert_eq!(announced, vec![order]);
}

#[test]
fn a_thief_s_run_time_counts_here_at_this_node_s_speed() {
    let mut core = core(1, |c| c.speed = 1000);
    core.on_beacon(Time::ZERO, node(2), &beacon(0, 2000));
    let there = Duration::from_secs(3);
    assert_eq!(core.local_duration(&node(2), there), Duration::from_secs(6));
    // A peer whose speed is not known yet counts as this node's.
    assert_eq!(core.local_duration(&node(3), there), there);
}

#[test]
fn only_the_tools_a_node_accepts_are_offered_not_those_of_its_own_builds() {
    let mut settings = CoreConfig::new(1);
    settings.share = SharePolicy::Always;
    let mut core = Core::new(node(1), "linux".into(), BTreeSet::new(), settings);
    let _ = core.on_peer_up(Time::ZERO, node(2));
    drain(&mut core);
    // A busy peer: an idle node asks it for work, with the tools it runs for peers.
    core.on_beacon(Time::ZERO, node(2), &beacon(3, 1000));
    let asked = |effects: Vec<Effect>| {
        effects.into_iter().find_map(|e| match e {
            Effect::SendSteal { request, .. } => Some(request.tools),
            _ => None,
        })
    };
    let tools = asked(drain(&mut core)).expect("an idle sharing node asks for work");
    assert!(tools.is_empty());
    // A build of its own that uses `cc` (all from its cache) does not make it offer `cc`.
    let compile = job("compile", &[]);
    add_build(&mut core, &[(&compile, false)]);
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::LookupCache { job, .. }) = effect {
            core.on_local_cache(Time::ZERO, BUILD, job, Some(tree(1)));
        }
    }
    drain(&mut core);
    core.on_steal_failed(Time::from_millis(5_000), node(2));
    drain(&mut core);
    core.tick(Time::from_millis(10_000));
    let tools = asked(drain(&mut core)).expect("it asks again");
    assert!(tools.is_empty());
    // A victim that lends it a `cc` job anyway is refused: nothing runs.
    let lease = weft_protocol::wire::Lease {
        job: job("lent", &[]),
        ttl_ms: 10_000,
        deps: vec![],
    };
    let id = lease.job.id();
    core.on_granted(Time::from_millis(10_001), node(2), vec![lease]);
    let effects = drain(&mut core);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::SendDone { id: done, outcome: Reported::Refused, .. } if *done == id
        )),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::RunStolen { .. }))
    );
    assert_eq!(core.running(), 0);
}

#[test]
fn a_checked_peer_hit_that_differs_flags_the_job() {
    let mut core = core(2, |c| c.verify_per_million = 1_000_000);
    let a = job("a", &[]);
    core.on_have(Time::ZERO, node(3), &[a.id()]);
    add_build(&mut core, &[(&a, false)]);
    answer_a_from_3(&mut core, &a, tree(9));
    let effects = drain(&mut core);
    let verify = effects.iter().find_map(|e| match e {
        Effect::Verify { id, peer, .. } => Some((*id, *peer)),
        _ => None,
    });
    assert_eq!(verify, Some((a.id(), node(3))), "{effects:?}");
    // The build did not wait for the check.
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Build(BuildEffect::BuildDone { .. })))
    );
    core.on_verified(Time::ZERO, a.id(), Some(tree(8)));
    let effects = drain(&mut core);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Nondeterministic { job, first, second }
                if *job == a.id() && *first == node(3) && *second == node(1)
        )),
        "{effects:?}"
    );
    assert!(core.is_nondeterministic(&a.id()));
    // One that agrees concludes nothing bad.
    let mut agreeing = core_checking_all();
    let b = job("b", &[]);
    agreeing.on_have(Time::ZERO, node(3), &[b.id()]);
    add_build(&mut agreeing, &[(&b, false)]);
    answer_a_from_3(&mut agreeing, &b, tree(9));
    drain(&mut agreeing);
    agreeing.on_verified(Time::ZERO, b.id(), Some(tree(9)));
    assert!(!agreeing.is_nondeterministic(&b.id()));
    assert_eq!(agreeing.stats().nondeterministic, 0);
}

fn core_checking_all() -> Core {
    core(2, |c| c.verify_per_million = 1_000_000)
}

#[test]
fn network_jobs_and_nondeterministic_ones_stay_home() {
    let mut core = core(1, |_| {});
    let fetch = Job {
        network: true,
        ..job("fetch", &[])
    };
    let flaky = job("flaky", &[]);
    let long = job("long", &[]);
    core.on_have(Time::ZERO, node(2), &[fetch.id(), flaky.id()]);
    core.on_nondeterministic(Time::ZERO, flaky.id(), node(2), node(3));
    let planned = [(&long, 10_000), (&fetch, 0), (&flaky, 0)]
        .into_iter()
        .map(|(job, ms)| PlannedJob {
            id: job.id(),
            job: Arc::new(job.clone()),
            estimate: Duration::from_millis(ms),
            wanted: false,
        })
        .collect();
    let options = BuildOptions {
        keep_going: false,
        max_parallel: 8,
    };
    core.add_build(Time::ZERO, BUILD, planned, options)
        .expect("a valid graph");
    let effects = drain(&mut core);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Nondeterministic { job, .. } if *job == flaky.id()))
    );
    for effect in effects {
        if let Effect::Build(BuildEffect::LookupCache { job, .. }) = effect {
            // Even a local hit does not count for the nondeterministic job.
            let hit = (job == flaky.id()).then_some(tree(4));
            core.on_local_cache(Time::ZERO, BUILD, job, hit);
        }
    }
    let effects = drain(&mut core);
    // Neither is asked of node 2, which announced both.
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::QueryPeer { .. })),
        "{effects:?}"
    );
    // `long` runs here; a thief gets neither of the others.
    let leases = core.on_steal_request(Time::ZERO, node(2), &steal_request());
    assert!(leases.is_empty(), "{leases:?}");
    assert_eq!(core.stats().nondeterministic, 1);
}

/// Node 1 with `first` running in its one slot and `lent` queued, for a thief to take.
fn one_to_lend() -> Core {
    let mut core = core(1, |c| c.share = SharePolicy::Never);
    let first = job("first", &[]);
    let lent = job("lent", &[]);
    add_build(&mut core, &[(&first, false), (&lent, false)]);
    for effect in drain(&mut core) {
        if let Effect::Build(BuildEffect::LookupCache { job, .. }) = effect {
            core.on_local_cache(Time::ZERO, BUILD, job, None);
        }
    }
    drain(&mut core);
    core
}

fn quarantined(effects: Vec<Effect>) -> Option<(JobId, u32)> {
    effects.into_iter().find_map(|e| match e {
        Effect::Quarantined { job, losses, .. } => Some((job, losses)),
        _ => None,
    })
}

#[test]
fn a_thief_that_goes_away_or_goes_quiet_does_not_get_its_jobs_quarantined() {
    // Machines leave, crash and lose their network: that is no job's fault.
    let mut core = one_to_lend();
    let mut now = Time::ZERO;
    for round in 0..4 {
        let _ = core.on_peer_up(now, node(2));
        drain(&mut core);
        let leases = core.on_steal_request(now, node(2), &steal_request());
        assert_eq!(leases.len(), 1, "round {round}");
        if round % 2 == 0 {
            core.on_peer_down(now, node(2));
        } else {
            // Its renewals stop coming (the lease is 10 s).
            now = now + Duration::from_secs(11);
            core.tick(now);
        }
        assert_eq!(quarantined(drain(&mut core)), None, "round {round}");
    }
    assert_eq!(core.stats().leases_requeued, 4);
}

#[test]
fn a_job_whose_thieves_daemons_died_running_it_is_quarantined() {
    // Thieves that come back say their daemon died while the job ran (their machine did not
    // restart): the third such report fails the job, queued again meanwhile.
    let mut core = one_to_lend();
    let mut lent = None;
    for round in 0..3 {
        let now = Time::from_millis(round * 100);
        let _ = core.on_peer_up(now, node(2));
        drain(&mut core);
        let leases = core.on_steal_request(now, node(2), &steal_request());
        let id = leases[0].job.id();
        lent = Some(id);
        core.on_peer_down(now, node(2));
        drain(&mut core);
        let _ = core.on_peer_up(now, node(2));
        core.on_worker_died(now, node(2), &[id]);
        let found = quarantined(drain(&mut core));
        if round < 2 {
            assert_eq!(found, None, "round {round}");
        } else {
            assert_eq!(found, Some((id, 3)));
        }
    }
    // A restarted daemon of its own counts as well.
    let mut other = one_to_lend();
    other.restore_losses(lent.map(|id| (id, 2)));
    assert_eq!(other.losses(&lent.expect("a job")), 2);
}

#[test]
fn a_job_this_daemon_died_in_three_times_sits_out_every_other_build() {
    let crasher = job("crasher", &[]);
    let mut core = core(2, |_| {});
    core.restore_losses([(crasher.id(), 3)]);
    let mut outcomes = Vec::new();
    for round in 0..3 {
        let build = BuildId(10 + round);
        let planned = vec![PlannedJob {
            id: crasher.id(),
            job: Arc::new(crasher.clone()),
            estimate: Duration::ZERO,
            wanted: false,
        }];
        let options = BuildOptions {
            keep_going: false,
            max_parallel: 8,
        };
        core.add_build(Time::ZERO, build, planned, options)
            .expect("a valid graph");
        let mut started = false;
        let mut outcome = None;
        for _ in 0..3 {
            for effect in drain(&mut core) {
                match effect {
                    Effect::Build(BuildEffect::LookupCache { job, .. }) => {
                        core.on_local_cache(Time::ZERO, build, job, None)
                    }
                    Effect::Build(BuildEffect::Start { id, .. }) => {
                        started = true;
                        // It dies with the daemon again: the build is left unfinished here
                        // (a restarted daemon would count the loss), so end it by hand.
                        core.on_job_finished(Time::ZERO, build, id, Finished::Failed);
                    }
                    Effect::Build(BuildEffect::BuildDone { outcome: o, .. }) => outcome = Some(o),
                    _ => {}
                }
            }
        }
        assert!(outcome.is_some_and(|o| !o.success), "round {round}");
        outcomes.push(started);
    }
    // Quarantined (not run), tried once more, quarantined again.
    assert_eq!(outcomes, [false, true, false]);
    assert_eq!(core.stats().quarantined, 2);
}
