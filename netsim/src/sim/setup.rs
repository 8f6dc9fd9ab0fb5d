//! A [`Sim`] made from a [`Scenario`].

use std::time::Duration;

use weft_node::core::{CoreConfig, Time};

use super::state::NodeSpec;
use super::world::Sim;
use crate::rng::Rng;
use crate::scenario::{ChurnAction, CoreOverrides, Scenario, ScenarioError};
use crate::units::Value;
use crate::workload::{Graph, instantiate};

fn at(value: Option<Value<crate::units::Time>>) -> Time {
    Time::from_micros(value.map_or(0, |v| v.micros()))
}

fn duration(value: Value<crate::units::Time>) -> Duration {
    Duration::from_micros(value.micros())
}

/// `CoreConfig::new(slots)` with the scenario's values over it.
pub(crate) fn core_config(slots: usize, overrides: &CoreOverrides) -> CoreConfig {
    let mut config = CoreConfig::new(slots);
    if let Some(v) = overrides.steal_batch {
        config.steal_batch = v;
    }
    if let Some(v) = overrides.lease_ttl {
        config.lease_ttl = duration(v);
    }
    if let Some(v) = overrides.beacon_interval {
        config.beacon_interval = duration(v);
    }
    if let Some(v) = overrides.idle_beacon_interval {
        config.idle_beacon_interval = duration(v);
    }
    if let Some(v) = overrides.have_delay {
        config.have_delay = duration(v);
    }
    if let Some(v) = overrides.steal_backoff {
        config.steal_backoff = duration(v);
    }
    if let Some(v) = overrides.steal_fanout {
        config.steal_fanout = v;
    }
    if let Some(v) = overrides.max_peer_failures {
        config.max_peer_failures = v;
    }
    if let Some(v) = overrides.avoid_for {
        config.avoid_for = duration(v);
    }
    if let Some(v) = overrides.max_holder_entries {
        config.max_holder_entries = v;
    }
    if let Some(v) = overrides.max_shared_slots {
        config.max_shared_slots = v.max(1);
    }
    if let Some(v) = overrides.reserve_for {
        config.reserve_for = duration(v);
    }
    config
}

impl Sim {
    /// A simulation of `scenario` with `seed`: its nodes, workload, churn and partitions.
    /// Everything random (the graphs, the links, the churn) comes from `seed`.
    pub fn from_scenario(scenario: &Scenario, seed: u64) -> Result<Sim, ScenarioError> {
        let mut sim = Sim::new(seed);
        sim.set_name(&scenario.name);
        sim.set_network(scenario.network.clone());
        sim.set_gossip(scenario.gossip.clone());
        sim.set_until(Time::from_micros(scenario.until.micros()));
        // When each node joins, for those not there from the start.
        let mut joins_at: Vec<Option<Time>> = Vec::new();
        for (g, group) in scenario.nodes.iter().enumerate() {
            let overrides = scenario.core.overlaid(&group.core);
            for k in 0..group.count {
                let mut core = core_config(group.slots, &overrides);
                core.share = group.share.into();
                // The core's speed in thousandths, as the daemon's beacons carry it.
                core.speed = (group.speed * 1000.0)
                    .round()
                    .clamp(1.0, f64::from(u32::MAX)) as u32;
                let join_at = group.join_at.map(|first| {
                    let spread = group.join_spread.map_or(0.0, |s| s.base);
                    let offset = spread * k as f64 / group.count.max(1) as f64;
                    Time::from_micros((first.base + offset).round() as u64)
                });
                joins_at.push(join_at);
                sim.add_node(NodeSpec {
                    group: group.name.clone().unwrap_or_else(|| format!("group{g}")),
                    core,
                    speed: group.speed,
                    toolchain: group.toolchain,
                    bandwidth: group.bandwidth.unwrap_or(scenario.network.bandwidth).base,
                    extra_latency: group.extra_latency,
                    loss: group.loss,
                    join_at,
                });
            }
        }
        let mut rng = Rng::fork(seed, "workload");
        let mut graphs = Vec::new();
        for dag in &scenario.dags {
            graphs.push(Graph::random(dag, &mut rng));
        }
        for replay in &scenario.replays {
            let path = scenario.base_dir.join(&replay.file);
            let fail = |message: String| ScenarioError::Replay {
                path: scenario.base_dir.clone(),
                replay: replay.name.clone(),
                message,
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?;
            let graph = Graph::from_events(&text, replay, &mut rng)
                .map_err(|e| fail(format!("`{}`: {e}", path.display())))?;
            graphs.push(graph);
        }
        for (i, build) in scenario.builds.iter().enumerate() {
            let Some(graph) = graphs.iter().find(|g| g.name == build.graph) else {
                continue; // checked when the scenario was parsed
            };
            let instance = instantiate(graph, build.targets, build.changed, i as u64 + 1, &mut rng);
            sim.add_build(
                build.origin,
                at(build.at),
                instance,
                build.estimates,
                build.restart,
            );
        }
        for churn in &scenario.churn {
            for node in &churn.nodes {
                sim.churn(at(Some(churn.at)), *node, churn.action, churn.store);
            }
        }
        if let Some(random) = &scenario.random_churn {
            let mut rng = Rng::fork(seed, "churn");
            let spare = random
                .spare
                .clone()
                .unwrap_or_else(|| scenario.origins().into_iter().collect());
            let from = random.from.map_or(0.0, |v| v.base);
            let until = random.until.unwrap_or(scenario.until).base;
            for node in 0..scenario.n_nodes() {
                if spare.contains(&node) {
                    continue;
                }
                // A node that joins late is not brought down (and up) before it joined.
                let joined = joins_at
                    .get(node)
                    .copied()
                    .flatten()
                    .map_or(0.0, |at| at.as_micros() as f64);
                let mut t = from.max(joined) + rng.exponential(random.mean_up.base);
                while t < until {
                    sim.churn(
                        Time::from_micros(t as u64),
                        node,
                        random.action,
                        random.store,
                    );
                    let back = t + random.down.sample(&mut rng).max(1.0);
                    sim.churn(
                        Time::from_micros(back as u64),
                        node,
                        ChurnAction::Join,
                        random.store,
                    );
                    t = back + rng.exponential(random.mean_up.base);
                }
            }
        }
        let origins = scenario.origins();
        for (i, partition) in scenario.partitions.iter().enumerate() {
            let n = scenario.n_nodes();
            let mut sides = vec![0u16; n];
            if let Some(groups) = &partition.groups {
                for (side, group) in groups.iter().enumerate() {
                    for node in group {
                        sides[*node] = side as u16;
                    }
                }
            } else if let Some(fraction) = partition.isolate {
                let mut rng = Rng::fork(seed, &format!("partition{i}"));
                let mut candidates: Vec<usize> =
                    (0..n).filter(|node| !origins.contains(node)).collect();
                rng.shuffle(&mut candidates);
                let cut = (n as f64 * fraction).round() as usize;
                for node in candidates.into_iter().take(cut) {
                    sides[node] = 1;
                }
            }
            sim.partition(
                at(Some(partition.at)),
                partition.heal.map(|h| at(Some(h))),
                sides,
            );
        }
        Ok(sim)
    }
}
