//! [`Report`]: what a run measured, and how it prints.

use std::fmt;

use weft_node::core::CoreStats;
use weft_protocol::Digest;

use crate::sim::Sim;
use crate::sim::state::BuildState;
use crate::units::{show_bytes, show_micros};

/// What one run of the simulator measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// Nodes in the scenario.
    pub n_nodes: usize,
    /// Total slots over the nodes with the toolchain.
    pub n_slots: usize,
    /// From the first build's start to the last build's end, in microseconds; `None` when a
    /// build did not finish.
    pub makespan_us: Option<u64>,
    /// The lower bound on the makespan: over the builds, the latest of each build's start
    /// plus `max(critical path / fastest speed, its work / capacity)`, and all builds' work
    /// over the capacity, where the capacity is the sum of slots times speed over the nodes
    /// with the toolchain up at the build's start.
    pub lower_bound_us: u64,
    /// Each build.
    pub builds: Vec<BuildReport>,
    /// Each node group, in the scenario's order.
    pub groups: Vec<GroupReport>,
    /// Jobs of builds that did not finish although their origin was up at the end.
    pub jobs_lost: u64,
    /// Runs that completed, duplicates included.
    pub executed: u64,
    /// Completed runs of a job that had completed before somewhere.
    pub duplicated: u64,
    /// Runs that died with their node.
    pub lost_runs: u64,
    /// Runs stopped by a cancel.
    pub cancelled_runs: u64,
    /// Own runs that found deps' outputs gone (those deps ran again).
    pub deps_lost: u64,
    /// Stolen runs that could not fetch their inputs or deps.
    pub stolen_infra_failures: u64,
    /// Jobs that failed their build because they lost their worker too often.
    pub quarantined: u64,
    /// Payload bytes fetched (outputs and inputs).
    pub bytes_data: u64,
    /// Bytes of rpcs other than fetched payloads.
    pub bytes_rpc: u64,
    /// Bytes of gossip.
    pub bytes_gossip: u64,
    /// Jobs in all builds (cache hits included).
    pub n_jobs: u64,
    /// The cores' counters, summed over every node and life.
    pub core: CoreStats,
    /// Rpcs sent, lost, timed out (or failed with their connection).
    pub rpcs: u64,
    /// See `rpcs`.
    pub rpcs_lost: u64,
    /// See `rpcs`.
    pub rpcs_failed: u64,
    /// Beacons and `Have`s published, and gossip messages delivered to cores.
    pub beacons: u64,
    /// See `beacons`.
    pub haves: u64,
    /// See `beacons`.
    pub gossip_deliveries: u64,
    /// Gossip convergence per announced result: p50 and p99 in microseconds, how many were
    /// measured, how many never reached 99% of the nodes up.
    pub convergence_p50_us: Option<u64>,
    /// See `convergence_p50_us`.
    pub convergence_p99_us: Option<u64>,
    /// See `convergence_p50_us`.
    pub n_converged: u64,
    /// See `convergence_p50_us`.
    pub n_unconverged: u64,
    /// Leases of crashed thieves given out or run again by their victim, and the latest such
    /// re-run relative to the lease's deadline (microseconds, negative when before).
    pub orphans_rerun: u64,
    /// See `orphans_rerun`.
    pub orphan_worst_lateness_us: Option<i64>,
    /// Orphaned leases never run again (their build finished otherwise, or did not finish).
    pub orphans_left: u64,
    /// Fraction of the toolchain nodes' slot time spent running jobs, over the makespan.
    pub utilisation: f64,
    /// Events processed, core ticks, trace records.
    pub events: u64,
    /// See `events`.
    pub ticks: u64,
    /// See `events`.
    pub trace_records: u64,
    /// Simulated time at the end, in microseconds.
    pub end_us: u64,
    /// The hash of the ordered trace of every core's effects and every churn event.
    pub trace_hash: Digest,
}

/// One node group in a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct GroupReport {
    /// Its name (`group<i>` when the scenario gave none).
    pub name: String,
    /// Its nodes.
    pub n_nodes: usize,
    /// Runs its nodes completed, duplicates included.
    pub executed: u64,
    /// Its nodes' busy slot time over their slots times the makespan.
    pub utilisation: f64,
}

/// One build in a [`Report`].
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// Its origin's index.
    pub origin: u32,
    /// Jobs in it.
    pub n_jobs: usize,
    /// When it first started, and ended (microseconds).
    pub start_us: Option<u64>,
    /// See `start_us`.
    pub end_us: Option<u64>,
    /// Whether it ended with every job done.
    pub success: bool,
    /// Jobs run and cached, by the core's count.
    pub n_ran: u64,
    /// See `n_ran`.
    pub n_cached: u64,
    /// How many times it started (restarts after its origin came back).
    pub attempts: u32,
    /// It was given up: its origin went away for good.
    pub abandoned: bool,
    /// Its own lower bound (microseconds).
    pub lower_bound_us: u64,
}

impl Report {
    /// The makespan over the lower bound.
    pub fn ratio(&self) -> Option<f64> {
        let makespan = self.makespan_us?;
        (self.lower_bound_us > 0).then(|| makespan as f64 / self.lower_bound_us as f64)
    }

    /// Whether every build finished successfully.
    pub fn all_succeeded(&self) -> bool {
        self.builds.iter().all(|b| b.success)
    }

    /// Data-plane bytes (fetches and rpcs) per job of the builds.
    pub fn bytes_per_job(&self) -> f64 {
        (self.bytes_data + self.bytes_rpc) as f64 / self.n_jobs.max(1) as f64
    }

    pub(crate) fn from_sim(sim: &mut Sim) -> Report {
        let mut core = CoreStats::default();
        let mut n_slots = 0;
        let mut busy: u128 = 0;
        for node in &sim.nodes {
            crate::sim::world::add_stats(&mut core, &node.past_stats);
            if let Some(live) = &node.core {
                crate::sim::world::add_stats(&mut core, &live.stats());
            }
            if node.spec.toolchain {
                n_slots += node.spec.core.slots;
                busy += node.busy_us;
            }
        }
        let first = sim.builds.iter().filter_map(|b| b.first_start).min();
        let work_of = |jobs: &mut dyn Iterator<Item = &weft_protocol::JobId>| -> f64 {
            jobs.filter_map(|id| sim.jobs.get(id))
                .map(|info| info.duration_us as f64)
                .sum()
        };
        let mut lower_bound = 0u64;
        // Jobs left to do at some build's start, each once (two builds may share them).
        let mut counted: std::collections::HashSet<weft_protocol::JobId> = Default::default();
        let mut capacity: f64 = 0.0;
        let mut builds = Vec::new();
        let mut jobs_lost = 0;
        let mut n_jobs = 0;
        for build in &sim.builds {
            let instance = &build.instance;
            n_jobs += instance.jobs.len() as u64;
            let own_bound = match build.first_start {
                Some(_) => {
                    let cp = build.left_path_us as f64 / build.top_speed.max(1e-9);
                    let work = work_of(&mut build.left_jobs.iter()) / build.capacity.max(1e-9);
                    counted.extend(build.left_jobs.iter().copied());
                    capacity = capacity.max(build.capacity);
                    cp.max(work) as u64
                }
                None => 0,
            };
            if let (Some(start), Some(first)) = (build.first_start, first) {
                lower_bound = lower_bound.max(start.as_micros() - first.as_micros() + own_bound);
            }
            let outcome = build.outcome.unwrap_or_default();
            if matches!(build.state, BuildState::Running(_) | BuildState::Pending)
                && sim.nodes[build.origin as usize].is_up()
            {
                jobs_lost +=
                    (instance.jobs.len() as u64).saturating_sub(outcome.n_ran + outcome.n_cached);
            }
            builds.push(BuildReport {
                origin: build.origin,
                n_jobs: instance.jobs.len(),
                start_us: build.first_start.map(|t| t.as_micros()),
                end_us: build.end.map(|t| t.as_micros()),
                success: build.state == BuildState::Done && outcome.success,
                n_ran: outcome.n_ran,
                n_cached: outcome.n_cached,
                attempts: build.attempts,
                abandoned: build.state == BuildState::Abandoned,
                lower_bound_us: own_bound,
            });
        }
        let total_work = work_of(&mut counted.iter());
        if capacity > 0.0 {
            lower_bound = lower_bound.max((total_work / capacity) as u64);
        }
        let makespan_us = match (first, builds.iter().all(|b| b.end_us.is_some())) {
            (Some(first), true) => builds
                .iter()
                .filter_map(|b| b.end_us)
                .max()
                .map(|end| end - first.as_micros()),
            _ => None,
        };
        let mut convergence = std::mem::take(&mut sim.metrics.convergence);
        convergence.sort_unstable();
        let pick = |q: f64| -> Option<u64> {
            if convergence.is_empty() {
                return None;
            }
            let index =
                ((convergence.len() as f64 * q).ceil() as usize).clamp(1, convergence.len()) - 1;
            Some(convergence[index])
        };
        let m = &sim.metrics;
        let span = makespan_us.unwrap_or(sim.now.as_micros()).max(1);
        let mut groups: Vec<(GroupReport, usize, u128)> = Vec::new();
        for node in &sim.nodes {
            let at = match groups.iter().position(|(g, ..)| g.name == node.spec.group) {
                Some(at) => at,
                None => {
                    groups.push((
                        GroupReport {
                            name: node.spec.group.clone(),
                            n_nodes: 0,
                            executed: 0,
                            utilisation: 0.0,
                        },
                        0,
                        0,
                    ));
                    groups.len() - 1
                }
            };
            let (group, slots, busy) = &mut groups[at];
            group.n_nodes += 1;
            group.executed += node.executed;
            *slots += node.spec.core.slots;
            *busy += node.busy_us;
        }
        let groups = groups
            .into_iter()
            .map(|(mut group, slots, busy)| {
                group.utilisation = busy as f64 / (slots.max(1) as f64 * span as f64);
                group
            })
            .collect();
        Report {
            name: sim.name.clone(),
            seed: sim.seed,
            n_nodes: sim.nodes.len(),
            n_slots,
            makespan_us,
            lower_bound_us: lower_bound,
            builds,
            groups,
            jobs_lost,
            executed: m.executed,
            duplicated: m.duplicated,
            lost_runs: m.lost_runs,
            cancelled_runs: m.cancelled_runs,
            deps_lost: m.deps_lost,
            stolen_infra_failures: m.stolen_infra_failures,
            quarantined: m.quarantined,
            bytes_data: m.bytes_data,
            bytes_rpc: m.bytes_rpc,
            bytes_gossip: m.bytes_gossip,
            n_jobs,
            core,
            rpcs: m.rpcs,
            rpcs_lost: m.rpcs_lost,
            rpcs_failed: m.rpcs_failed,
            beacons: m.beacons,
            haves: m.haves,
            gossip_deliveries: m.gossip_deliveries,
            convergence_p50_us: pick(0.5),
            convergence_p99_us: pick(0.99),
            n_converged: convergence.len() as u64,
            n_unconverged: m.unconverged,
            orphans_rerun: m.orphans_rerun,
            orphan_worst_lateness_us: m.orphan_worst_lateness,
            orphans_left: m.orphaned_leases.len() as u64,
            utilisation: busy as f64 / (n_slots.max(1) as f64 * span as f64),
            events: m.events,
            ticks: m.ticks,
            trace_records: sim.trace.records,
            end_us: sim.now.as_micros(),
            trace_hash: sim.trace.finish(),
        }
    }
}

fn opt_micros(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), show_micros)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario     {} (seed {})", self.name, self.seed)?;
        writeln!(
            f,
            "mesh         {} nodes, {} slots with the toolchain",
            self.n_nodes, self.n_slots
        )?;
        let ratio = self
            .ratio()
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"));
        writeln!(
            f,
            "makespan     {}   lower bound {}   ratio {}",
            opt_micros(self.makespan_us),
            show_micros(self.lower_bound_us),
            ratio
        )?;
        for (i, b) in self.builds.iter().enumerate() {
            let status = if b.success {
                "ok"
            } else if b.abandoned {
                "abandoned"
            } else if b.end_us.is_some() {
                "FAILED"
            } else {
                "UNFINISHED"
            };
            let took = match (b.start_us, b.end_us) {
                (Some(s), Some(e)) => show_micros(e - s),
                _ => "-".into(),
            };
            writeln!(
                f,
                "  build {i}    from node {}: {} jobs, {status} in {took} (bound {}), \
                 {} ran, {} cached, {} attempt(s)",
                b.origin,
                b.n_jobs,
                show_micros(b.lower_bound_us),
                b.n_ran,
                b.n_cached,
                b.attempts
            )?;
        }
        writeln!(
            f,
            "jobs         {} in builds, {} executed, {} duplicated, {} lost; runs killed by \
             crashes {}, cancelled {}",
            self.n_jobs,
            self.executed,
            self.duplicated,
            self.jobs_lost,
            self.lost_runs,
            self.cancelled_runs
        )?;
        writeln!(
            f,
            "             deps' outputs lost {}, stolen runs without inputs {}, quarantined {}; \
             slot utilisation {:.1}%",
            self.deps_lost,
            self.stolen_infra_failures,
            self.quarantined,
            self.utilisation * 100.0
        )?;
        for (i, g) in self.groups.iter().enumerate() {
            writeln!(
                f,
                "{:<13}{}: {} node{}, {} runs, slot utilisation {:.1}%",
                if i == 0 { "groups" } else { "" },
                g.name,
                g.n_nodes,
                if g.n_nodes == 1 { "" } else { "s" },
                g.executed,
                g.utilisation * 100.0
            )?;
        }
        writeln!(
            f,
            "bytes        data {}, rpc {}, gossip {}; data+rpc per job {}",
            show_bytes(self.bytes_data as f64),
            show_bytes(self.bytes_rpc as f64),
            show_bytes(self.bytes_gossip as f64),
            show_bytes(self.bytes_per_job())
        )?;
        writeln!(
            f,
            "stealing     {} attempts, {} successes, {} jobs stolen, {} leases requeued",
            self.core.steal_requests,
            self.core.steal_successes,
            self.core.jobs_stolen,
            self.core.leases_requeued
        )?;
        writeln!(
            f,
            "cache        {} local hits, {} peer hits",
            self.core.local_cache_hits, self.core.peer_cache_hits
        )?;
        writeln!(
            f,
            "gossip       {} beacons, {} haves, {} deliveries; convergence (99% of nodes) \
             p50 {} p99 {} over {} results, {} unconverged",
            self.beacons,
            self.haves,
            self.gossip_deliveries,
            opt_micros(self.convergence_p50_us),
            opt_micros(self.convergence_p99_us),
            self.n_converged,
            self.n_unconverged
        )?;
        writeln!(
            f,
            "rpcs         {} sent, {} messages lost, {} failed",
            self.rpcs, self.rpcs_lost, self.rpcs_failed
        )?;
        if self.orphans_rerun > 0 || self.orphans_left > 0 {
            let lateness = self.orphan_worst_lateness_us.map_or_else(
                || "-".to_owned(),
                |l| {
                    if l >= 0 {
                        format!("{} after", show_micros(l as u64))
                    } else {
                        format!("{} before", show_micros(l.unsigned_abs()))
                    }
                },
            );
            writeln!(
                f,
                "leases       crashed thieves' leases re-run {} (latest {lateness} the \
                 deadline), not re-run {}",
                self.orphans_rerun, self.orphans_left
            )?;
        }
        writeln!(
            f,
            "simulation   {} events, {} ticks, ended at {}",
            self.events,
            self.ticks,
            show_micros(self.end_us)
        )?;
        write!(f, "trace        {}", self.trace_hash)
    }
}
